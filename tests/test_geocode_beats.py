"""The record's beat chooses among candidate places; the geocoder defect families of issue 15.

Every reference here is built in code (street points and table rows placed on a grid in
EPSG:2246 feet around downtown Louisville), so each expected place is known by construction.
The last tests use the shipped reference and beats on the five real examples of the issue,
against where the streets' own reference points put the crossings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from geo_lead import settings
from geo_lead.beats import BeatIndex
from geo_lead.geocode import Geocoder, geocode_store
from geo_lead.geocode.beat_check import beat_check_table, rates_table, review_records
from geo_lead.geocode.reference import build_reference, to_lonlat, to_projected
from geo_lead.store import opened

X0, Y0 = 1_200_000.0, 270_000.0  # EPSG:2246 feet, west Louisville


def _lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = to_lonlat(np.array([X0 + x]), np.array([Y0 + y]))
    return float(lon[0]), float(lat[0])


def _xy(lon: float, lat: float) -> tuple[float, float]:
    x, y = to_projected(np.array([lon]), np.array([lat]))
    return float(x[0]) - X0, float(y[0]) - Y0


def _points(rows: list[tuple[str, float, float]], zip_code: str = "40202") -> pd.DataFrame:
    """Address points (text, x ft, y ft relative to the origin)."""
    ll = [_lonlat(x, y) for _, x, y in rows]
    return pd.DataFrame({"street": [r[0] for r in rows], "postcode": zip_code,
                         "longitude": [p[0] for p in ll], "latitude": [p[1] for p in ll]})


def _table(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    ll = [_lonlat(x, y) for *_, x, y in rows]
    return pd.DataFrame({"MAINSTREET": [r[0] for r in rows], "CROSSSTREET": [r[1] for r in rows],
                         "X": [p[0] for p in ll], "Y": [p[1] for p in ll]})


def _geocoder(tmp_path: Path, points: pd.DataFrame, table: pd.DataFrame | None = None,
              census: pd.DataFrame | None = None, beats: BeatIndex | None = None) -> Geocoder:
    files = [tmp_path / "pts.csv"]
    points.to_csv(files[0], index=False)
    if table is not None:
        files.append(tmp_path / "signals.csv")
        table.to_csv(files[-1], index=False)
    if census is not None:
        files.append(tmp_path / "census.csv")
        census.to_csv(files[-1], index=False)
    return Geocoder(build_reference(files), beats=beats)


def _beats(**boxes: tuple[float, float, float, float]) -> BeatIndex:
    """Beats as boxes (x0, y0, x1, y1 in feet relative to the origin)."""
    return BeatIndex.from_geometries(list(boxes), [box(X0 + a, Y0 + b, X0 + c, Y0 + d)
                                                   for a, b, c, d in boxes.values()])


def _line(name: str, numbers: range, x0: float, y0: float, dx: float, dy: float) -> list[tuple[str, float, float]]:
    return [(f"{n} {name}", x0 + i * dx, y0 + i * dy) for i, n in enumerate(numbers)]


# --- item 2: the beat chooses, never invents --------------------------------------------------

def test_beat_chooses_between_same_named_streets(tmp_path: Path) -> None:
    # two unrelated ELM STs in the same ZIP, 100-300 each, 20,000 ft apart
    pts = _points(_line("ELM ST", range(100, 400, 100), 0, 0, 500, 0)
                  + _line("ELM ST", range(100, 400, 100), 20_000, 0, 500, 0))
    beats = _beats(WEST=(-1000, -1000, 2000, 1000), EAST=(19_000, -1000, 22_000, 1000))
    g = _geocoder(tmp_path, pts, beats=beats)
    east = g.geocode(["250 ELM ST"], ["40202"], beats=["EAST"]).iloc[0]
    west = g.geocode(["250 ELM ST"], ["40202"], beats=["WEST"]).iloc[0]
    # hand computation: halfway between 200 and 300 of each street (x 750 and 20,750 ft)
    assert _xy(east["lon"], east["lat"])[0] == pytest.approx(20_750, abs=5)
    assert _xy(west["lon"], west["lat"])[0] == pytest.approx(750, abs=5)
    # a beat containing neither street changes nothing, and never moves the point toward it
    none = g.geocode(["250 ELM ST"], ["40202"]).iloc[0]
    far = g.geocode(["250 ELM ST"], ["40202"], beats=["NOWHERE"]).iloc[0]
    assert (far["lon"], far["lat"]) == (none["lon"], none["lat"])


def test_beat_chooses_between_duplicate_table_rows(tmp_path: Path) -> None:
    pts = _points(_line("OAK ST", range(100, 1100, 100), 0, 0, 1000, 0)
                  + _line("PINE ST", range(100, 300, 100), 0, -200, 0, 400)
                  + _line("PINE ST", range(900, 1100, 100), 8000, -200, 0, 400))
    table = _table([("OAK", "PINE", 0, 0), ("OAK", "PINE", 8000, 0)])  # two signals, same names
    beats = _beats(B1=(-1000, -1000, 1000, 1000), B2=(7000, -1000, 9000, 1000))
    g = _geocoder(tmp_path, pts, table, beats=beats)
    for beat, want_x in (("B1", 0), ("B2", 8000)):
        hit = g.geocode(["OAK ST / PINE ST"], [""], beats=[beat]).iloc[0]
        assert hit["match_type"] == "intersection" and "record's beat" in hit["reason"]
        assert _xy(hit["lon"], hit["lat"])[0] == pytest.approx(want_x, abs=5)


def test_beat_chooses_between_two_crossings_of_the_same_streets(tmp_path: Path) -> None:
    # MAIN ST runs east along y = 0; LOOP RD goes north at x = 0, east, and back south at
    # x = 6000: it crosses MAIN ST twice (no table)
    loop = (_line("LOOP RD", range(100, 600, 100), 0, -2000, 0, 1000)
            + _line("LOOP RD", range(600, 1200, 100), 1000, 2000, 1000, 0)
            + _line("LOOP RD", range(1200, 1700, 100), 6000, 2000, 0, -1000))
    pts = _points(_line("MAIN ST", range(100, 1000, 100), -1000, 0, 1000, 0) + loop)
    beats = _beats(WEST=(-500, -3000, 500, 3000), EAST=(5500, -3000, 6500, 3000))
    g = _geocoder(tmp_path, pts, beats=beats)
    for beat, want_x in (("WEST", 0), ("EAST", 6000)):
        hit = g.geocode(["MAIN ST / LOOP RD"], [""], beats=[beat]).iloc[0]
        x, y = _xy(hit["lon"], hit["lat"])
        assert hit["match_type"] == "intersection"
        assert x == pytest.approx(want_x, abs=5) and y == pytest.approx(0, abs=5)


# --- item 3: the defect families ---------------------------------------------------------

def test_table_entry_with_another_stated_type_is_not_taken(tmp_path: Path) -> None:
    """SOUTHERN HEIGHTS @ 3RD is not S 3RD ST / SOUTHERN PKWY (the real case: 1.27 km off)."""
    pts = _points(_line("S 3RD ST", range(100, 1100, 100), 0, 0, 0, 1000)
                  + _line("SOUTHERN PKWY", range(100, 600, 100), -2000, 9000, 1000, 0)
                  + _line("W SOUTHERN HEIGHTS AVE", range(100, 300, 100), -1000, 3000, 1000, 0))
    table = _table([("SOUTHERN HEIGHTS", "3RD", 0, 3000)])
    g = _geocoder(tmp_path, pts, table)
    hit = g.geocode_one("S 3RD ST / SOUTHERN PKY")
    assert hit["reason"].startswith("crossing")
    assert _xy(hit["lon"], hit["lat"]) == pytest.approx((0, 9000), abs=5)
    # the street the table does name still finds its row
    row = g.geocode_one("S 3RD ST / W SOUTHERN HEIGHTS AVE")
    assert row["reason"].startswith("intersection table")
    assert _xy(row["lon"], row["lat"]) == pytest.approx((0, 3000), abs=5)


def test_untyped_table_name_nearer_another_type_is_that_street(tmp_path: Path) -> None:
    """TYLER at Bardstown Road is TYLER LN, not TYLER PKWY (the real case: 3.5 km off)."""
    pts = _points(_line("BARDSTOWN RD", range(100, 1500, 100), 0, 0, 1000, 0)
                  + _line("TYLER LN", range(100, 400, 100), 12_000, -1000, 0, 1000)
                  + _line("TYLER PKWY", range(100, 400, 100), 2000, -1000, 0, 1000))
    table = _table([("BARDSTOWN", "TYLER", 12_000, 0)])
    g = _geocoder(tmp_path, pts, table)
    pkwy = g.geocode_one("BARDSTOWN RD / TYLER PKY")
    assert _xy(pkwy["lon"], pkwy["lat"]) == pytest.approx((2000, 0), abs=5)
    lane = g.geocode_one("BARDSTOWN RD / TYLER LN")
    assert lane["reason"].startswith("intersection table")
    assert _xy(lane["lon"], lane["lat"]) == pytest.approx((12_000, 0), abs=5)


def test_of_two_table_rows_the_one_on_both_streets(tmp_path: Path) -> None:
    """CHEROKEE @ GRINSTEAD twice: one is CHEROKEE PKWY's crossing, the other CHEROKEE RD's."""
    pts = _points(_line("GRINSTEAD DR", range(100, 1100, 100), 0, 0, 1000, 0)
                  + _line("CHEROKEE RD", range(100, 400, 100), 0, -1000, 0, 1000)
                  + _line("CHEROKEE PKWY", range(100, 400, 100), 8000, -1000, 0, 1000))
    table = _table([("CHEROKEE", "GRINSTEAD", 8000, 0), ("CHEROKEE", "GRINSTEAD", 0, 0)])
    g = _geocoder(tmp_path, pts, table)
    hit = g.geocode_one("CHEROKEE RD / GRINSTEAD DR")
    assert _xy(hit["lon"], hit["lat"]) == pytest.approx((0, 0), abs=5)


def test_name_beginning_with_a_direction_word(tmp_path: Path) -> None:
    """SOUTH PARK RD is that street, not PARK RD (the real case: 8.2 km off)."""
    pts = _points(_line("PRESTON HWY", range(100, 2100, 100), 0, 0, 0, 1000)
                  + _line("PARK RD", range(100, 400, 100), -1000, 15_000, 1000, 0)
                  # SOUTH PARK RD ends 300 ft short of PRESTON HWY (a T junction)
                  + _line("SOUTH PARK RD", range(100, 400, 100), -2300, 2000, 1000, 0))
    g = _geocoder(tmp_path, pts)
    hit = g.geocode_one("PRESTON HWY / SOUTH PARK RD")
    x, y = _xy(hit["lon"], hit["lat"])
    assert hit["matched_address"] == "PRESTON HWY / S PARK RD"
    assert abs(y - 2000) < 50 and abs(x) < 400
    # the street without the direction still answers for itself
    plain = g.geocode_one("PRESTON HWY / PARK RD")
    assert _xy(plain["lon"], plain["lat"]) == pytest.approx((0, 15_000), abs=5)


def test_extrapolation_is_capped_in_numbers_and_feet(tmp_path: Path) -> None:
    # 5 ft per number: 200 past the end is 1,000 ft (allowed), 449 past is beyond 300 numbers
    near_pts = _line("ILLINOIS AVE", range(3800, 4300, 100), 0, 0, 500, 0)
    # 20 ft per number: 100 past is 2,000 ft, beyond the 1,500 ft cap
    far_pts = _line("LONG RD", range(100, 400, 100), 0, 5000, 2000, 0)
    g = _geocoder(tmp_path, _points(near_pts + far_pts))
    ok = g.geocode_one("4400 ILLINOIS AVE")
    assert ok["match_type"] == "interpolated" and "extrapolated" in ok["reason"]
    for text, last_x in (("4650 ILLINOIS AVE", 2000.0), ("4600 BLOCK ILLINOIS AVE", 2000.0), ("400 LONG RD", 4000.0)):
        hit = g.geocode_one(text)
        assert hit["match_type"] == "street" and hit["score"] <= 0.3
        assert "extrapolation cap" in hit["reason"]
        x, _ = _xy(hit["lon"], hit["lat"])
        assert last_x <= x <= last_x + settings.GEOCODE_EXTRAPOLATION_CAP_FT + 1


def test_fuzzy_match_never_replaces_a_known_street(tmp_path: Path) -> None:
    """MARCH BLVD is named by the Census inputs (no point): it is not MARCY BLVD."""
    pts = _points(_line("MARCY BLVD", range(100, 400, 100), 0, 0, 500, 0))
    census = pd.DataFrame({"id": [1], "o_address": ["MARCH BLVD / E WHEATMORE DR"], "o_city": ["LOUISVILLE"],
                           "o_state": ["KY"], "o_zip": ["40215"], "status": ["No_Match"], "quality": [""],
                           "m_address": [""], "m_city": [""], "m_state": [""], "m_zip": [""], "long": [""],
                           "lat": [""], "tiger_line_id": [""], "side": [""]})
    g = _geocoder(tmp_path, pts, census=census)
    hit = g.geocode_one("200 BLOCK MARCH BLVD")
    assert hit["match_type"] == "unmatched" and "MARCH BLVD" in hit["reason"]
    typo = g.geocode_one("200 BLOCK MARCI BLVD")  # named nowhere: a typo, fuzzy-matched
    assert typo["match_type"] == "block" and typo["matched_address"] == "250 MARCY BLVD"


# --- item 1: the stored beat check ------------------------------------------------------------

def test_rates_table_by_hand() -> None:
    counts = pd.DataFrame({"match_type": ["block", "block", "block", "intersection", "intersection"],
                           "beat_check": ["same", "adjacent", "no_beat", "same", "other"],
                           "records": [8, 1, 3, 3, 1]})
    t = rates_table(counts).set_index("match_type")
    assert t.loc["block", "checked"] == 9 and t.loc["block", "same_share"] == pytest.approx(8 / 9)
    assert t.loc["intersection", "same_or_adjacent_share"] == pytest.approx(3 / 4)
    assert t.loc["all", "same"] == 11 and t.loc["all", "no_beat"] == 3 and t.loc["all", "checked"] == 13


def test_store_beat_check_and_review(store_path: Path) -> None:
    """The real examples on the shipped reference and beats, through the store."""
    recs = pd.DataFrame({
        "record_id": ["r0", "r1", "r2", "r3", "r4"],
        "address_raw": ["S 3RD ST / SOUTHERN PKY", "CHEROKEE RD / GRINSTEAD DR", "2700 BLOCK W MADISON ST",
                        "2700 BLOCK W MADISON ST", "COMMUNITY / LARGE"],
        "zip": ["40214", "40204", "40211", "40211", "40211"],
        "beat": ["424", "512", "METRO", "811", "211"],
        "content_hash": ["a", "b", "c", "d", "e"]})
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(recs, "2024-01-01T00:00:00Z")
        counts = geocode_store(store)
        got = store.read_records(["record_id", "beat_check"]).set_index("record_id")["beat_check"]
        assert got.loc["r0"] == "same" and got.loc["r1"] == "same"
        assert got.loc["r2"] == "no_beat" and got.loc["r3"] == "other"
        assert got.isna().loc["r4"]  # not placed: no check
        assert counts["beat_check_by_match_type"]["all"]["checked"] == 3
        table = beat_check_table(store).set_index("match_type")
        assert table.loc["all", "other"] == 1 and table.loc["block", "no_beat"] == 1
        review = review_records(store)
        assert review["record_id"].tolist() == ["r3"]
        assert review.loc[0, "beat"] == "811" and review.loc[0, "beat_at_point"] not in ("", "811")


# --- the issue's five real examples on the shipped reference ----------------------------------

def _dist_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    x, y = to_projected(np.array([a[0], b[0]]), np.array([a[1], b[1]]))
    return float(np.hypot(x[0] - x[1], y[0] - y[1]) * settings.M_PER_FT)


@pytest.mark.parametrize(("text", "zip_code", "beat", "where"), [
    # where the two streets' own reference points meet (closest approach of S 3RD ST and
    # SOUTHERN PKWY, ...), computed from the shipped address points and Census matches
    ("S 3RD ST / SOUTHERN PKY", "40214", "424", (-85.76517, 38.20056)),
    ("BARDSTOWN RD / TYLER PKY", "40204", "", (-85.71173, 38.23316)),
    ("CHEROKEE RD / GRINSTEAD DR", "40204", "512", (-85.71825, 38.23945)),
    ("PRESTON HWY / SOUTH PARK RD", "40219", "736", (-85.67847, 38.11844)),
])
def test_issue_examples_land_near_the_streets_crossing(text: str, zip_code: str, beat: str,
                                                       where: tuple[float, float]) -> None:
    hit = Geocoder().geocode([text], [zip_code], beats=[beat]).iloc[0]
    assert hit["match_type"] == "intersection"
    assert _dist_m((hit["lon"], hit["lat"]), where) < 300


def test_issue_extrapolation_example_is_a_street_match() -> None:
    hit = Geocoder().geocode_one("4600 BLOCK ILLINOIS AVE", "40213", "613")
    assert hit["match_type"] == "street" and "4201" in hit["reason"] and "cap" in hit["reason"]


def test_cli_beat_options_and_review(capsys: pytest.CaptureFixture[str], tmp_path: Path, store_path: Path) -> None:
    import json

    from geo_lead import cli

    assert cli.main(["geocode-address", "CHEROKEE RD / GRINSTEAD DR", "--zip", "40204", "--beat", "512", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["match_type"] == "intersection"
    src = pd.DataFrame({"ADDR": ["2700 BLOCK W MADISON ST", "2700 BLOCK W MADISON ST", "COMMUNITY / LARGE"],
                        "ZIP": ["40211"] * 3, "BEAT": ["811", "METRO", "211"]})
    src.to_csv(tmp_path / "in.csv", index=False)
    assert cli.main(["geocode-file", str(tmp_path / "in.csv"), "--address-column", "ADDR", "--zip-column", "ZIP",
                     "--beat-column", "BEAT", "--out", str(tmp_path / "out.csv"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["beat_check"].tolist() == ["other", "no_beat", ""]
    assert summary["beat_check_by_match_type"]["all"] == {
        "same": 0, "adjacent": 0, "other": 1, "no_beat": 1, "checked": 1, "same_share": 0.0,
        "same_or_adjacent_share": 0.0}
    recs = pd.DataFrame({"record_id": ["r0"], "address_raw": ["2700 BLOCK W MADISON ST"], "zip": ["40211"],
                         "beat": ["811"], "content_hash": ["a"]})
    with opened(store_path) as store, store.write():
        store.upsert_records(recs, "2024-01-01T00:00:00Z")
    assert cli.main(["geocode", "--store", str(store_path), "--review"]) == 0
    text = capsys.readouterr().out
    assert "1 records lie outside their own beat" in text and "named beat 811" in text
    assert "in the record's own LMPD beat" in text


def test_cache_keys_carry_the_beat() -> None:
    from geo_lead.geocode.cache import cache_key, cache_keys

    assert cache_key("150 MAIN ST", "40202", "112") == cache_key("150 Main Street", "40202", " 112 ")
    assert cache_key("150 MAIN ST", "40202", "112") != cache_key("150 MAIN ST", "40202")
    assert cache_key("150 MAIN ST", "40202", "") == cache_key("150 MAIN ST", "40202")
    keys = cache_keys(pd.Series(["150 MAIN ST", "150 MAIN\x1fST"]), pd.Series(["40202", "40202"]),
                      pd.Series(["112", "112"]))
    assert keys[0].endswith("|40202|112") and keys[1].endswith("|40202|112")
