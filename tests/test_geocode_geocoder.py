"""The matcher on the shipped (real) reference and on a small centerline fixture built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead import settings
from geo_lead.geocode import MATCH_TYPES, RESULT_COLUMNS, Geocoder
from geo_lead.geocode.reference import build_reference, load_reference, to_projected

REF = settings.REFERENCE_DIR


@pytest.fixture(scope="session")
def geocoder(tmp_path_factory: pytest.TempPathFactory) -> Geocoder:
    return Geocoder(index_dir=tmp_path_factory.mktemp("geocode-index"))


def _dist_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    x, y = to_projected(np.array([lon1, lon2]), np.array([lat1, lat2]))
    return float(np.hypot(x[0] - x[1], y[0] - y[1]) * settings.M_PER_FT)


def test_columns_alignment_and_order(geocoder: Geocoder) -> None:
    inputs = ["N 26TH ST / BANK ST", "", "2700 BLOCK W MADISON ST", None, "N 26TH ST / BANK ST"]
    res = geocoder.geocode(inputs, ["40212", "", "40211", None, "40212"])  # type: ignore[list-item]
    assert list(res.columns) == list(RESULT_COLUMNS)
    assert len(res) == 5 and res["input"].tolist()[2] == "2700 BLOCK W MADISON ST"
    assert res.loc[0].drop("input").equals(res.loc[4].drop("input"))
    assert set(res["match_type"]) <= set(MATCH_TYPES)
    assert res.loc[[1, 3], "match_type"].eq("unmatched").all()
    assert res.loc[[1, 3], "lon"].isna().all()
    # published at 7 decimals (about 1 cm): rounding there again changes nothing
    ok = res["lon"].notna()
    assert (res.loc[ok, "lon"].round(7) == res.loc[ok, "lon"]).all()
    assert (res.loc[ok, "lat"].round(7) == res.loc[ok, "lat"]).all()


def test_known_point_is_exact(geocoder: Geocoder) -> None:
    oa = pd.read_csv(REF / "openaddresses_jefferson_sample.csv", nrows=1)  # 2722 ELLIOTT AVE
    row = geocoder.geocode_one(oa.loc[0, "street"], "40211")
    assert row["match_type"] == "exact" and row["score"] == 1.0
    assert _dist_m(row["lon"], row["lat"], oa.loc[0, "longitude"], oa.loc[0, "latitude"]) < 1.0


def test_hundred_block_goes_to_middle_of_block(geocoder: Geocoder) -> None:
    # Census places 2700 W MADISON ST at the start of the block (-85.795845, 38.254253);
    # West End numbers grow westward, so 2750 lies west of it, within a block length.
    row = geocoder.geocode_one("2700 BLOCK W MADISON ST", "40211")
    assert row["match_type"] == "block" and row["matched_address"] == "2750 W MADISON ST"
    assert row["lon"] < -85.795845
    assert 20 < _dist_m(row["lon"], row["lat"], -85.795845, 38.254253) < 200


def test_intersection_from_table_and_estimate(geocoder: Geocoder) -> None:
    table = pd.read_csv(REF / "signalized_intersections.csv", encoding="utf-8-sig")
    want = table[(table["MAINSTREET"] == "BROADWAY") & (table["CROSSSTREET"] == "FLOYD")].iloc[0]
    row = geocoder.geocode_one("E BROADWAY / S FLOYD ST")
    assert row["match_type"] == "intersection"
    assert _dist_m(row["lon"], row["lat"], want["X"], want["Y"]) < 30
    # the same crossing estimated from the streets alone (no intersection table)
    alone = Geocoder(build_reference([REF / "openaddresses_jefferson_sample.csv",
                                      REF / "census_geocoder_block_addresses.csv"]))
    est = alone.geocode_one("E BROADWAY / S FLOYD ST")
    assert est["match_type"] == "intersection"
    assert _dist_m(est["lon"], est["lat"], want["X"], want["Y"]) < 150


@pytest.mark.parametrize(("text", "reason_word"), [
    ("COMMUNITY / LARGE", "large"), ("@FERN CREEK PARK", "place"), ("I265N AT I65", "interstate"),
    ("100 BLOCK NOSUCHPLACE XYZZY RD", "no such street"), ("", "empty"),
    ("<script>alert(1)</script>", ""), ("'; DROP TABLE records;--", ""), ("Ünïcödé ßtraße", ""),
    ("9" * 50, "no street"), ("x" * 10_000, "longer"),
])
def test_unmatched_with_reason(geocoder: Geocoder, text: str, reason_word: str) -> None:
    row = geocoder.geocode_one(text)
    assert row["match_type"] in MATCH_TYPES
    if row["match_type"] == "unmatched":
        assert row["reason"] and reason_word in row["reason"].lower()
        assert np.isnan(row["lon"]) and np.isnan(row["lat"])


def test_shipped_2017_records_rate(geocoder: Geocoder) -> None:
    d = pd.read_csv(settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv", dtype=str,
                    keep_default_na=False)
    res = geocoder.geocode(d["BLOCK_ADDRESS"].tolist(), d["ZIP_CODE"].tolist())
    assert len(res) == len(d)
    assert res["lon"].notna().mean() >= 0.93
    um = res["match_type"] == "unmatched"
    assert res.loc[um, "reason"].str.len().gt(0).all()
    assert res.loc[~um, "lon"].notna().all()


def test_zip_breaks_ties_between_same_named_streets(tmp_path: Path) -> None:
    pts = pd.DataFrame({  # two unrelated "MAIN ST" in different ZIPs, 100-300 each
        "street": ["100 MAIN ST", "300 MAIN ST", "100 MAIN ST", "300 MAIN ST"],
        "postcode": ["40202", "40202", "40299", "40299"],
        "longitude": [-85.76, -85.75, -85.52, -85.51], "latitude": [38.25, 38.25, 38.20, 38.20],
    })
    pts.to_csv(tmp_path / "pts.csv", index=False)
    g = Geocoder(build_reference([tmp_path / "pts.csv"]))
    east = g.geocode_one("200 MAIN ST", "40299")
    west = g.geocode_one("200 MAIN ST", "40202")
    assert east["lon"] == pytest.approx(-85.515, abs=1e-4) and west["lon"] == pytest.approx(-85.755, abs=1e-4)


def test_fuzzy_street_name_lowers_score(geocoder: Geocoder) -> None:
    good = geocoder.geocode_one("2700 BLOCK W MADISON ST")
    typo = geocoder.geocode_one("2700 BLOCK W MADDISON ST")
    assert typo["match_type"] == "block" and typo["score"] < good["score"]
    assert typo["lon"] == pytest.approx(good["lon"])


def _centerlines(tmp_path: Path) -> Path:
    """Two streets (TIGER ADDRFEAT-like columns) meeting at a shared node; TEST ST bends."""
    import geopandas as gpd
    from shapely import LineString

    gdf = gpd.GeoDataFrame({
        "FULLNAME": ["Test St", "Cross Ave"],
        "LFROMHN": ["101", "1"], "LTOHN": ["199", "99"], "RFROMHN": ["100", "2"], "RTOHN": ["198", "98"],
        "ZIPL": ["40211", "40211"], "ZIPR": ["40211", "40211"],
    }, geometry=[LineString([(-85.760, 38.250), (-85.750, 38.250), (-85.750, 38.260)]),
                 LineString([(-85.750, 38.260), (-85.740, 38.260)])], crs="EPSG:4326")
    path = tmp_path / "centerlines.geojson"
    gdf.to_file(path, driver="GeoJSON")
    return path


def test_centerline_interpolation_follows_the_line(tmp_path: Path) -> None:
    g = Geocoder(load_reference([_centerlines(tmp_path)], index_dir=tmp_path / "idx"))
    # hand computation: 150 on the even side (100-198) is 50/98 of the way along the line;
    # the first (east-west) leg is shorter than that, so the point is north of the bend
    leg1 = _dist_m(-85.760, 38.250, -85.750, 38.250)
    leg2 = _dist_m(-85.750, 38.250, -85.750, 38.260)
    past_bend_m = 50 / 98 * (leg1 + leg2) - leg1
    row = g.geocode_one("150 TEST ST")
    assert row["match_type"] == "interpolated"
    assert row["lon"] == pytest.approx(-85.750, abs=1e-6)
    assert _dist_m(row["lon"], row["lat"], -85.750, 38.250) == pytest.approx(past_bend_m, abs=5)
    quarter = g.geocode_one("125 Test Street")  # a quarter of the way: on the first leg
    assert quarter["lat"] == pytest.approx(38.250, abs=1e-4)
    node = g.geocode_one("TEST ST & CROSS AVE")
    assert node["match_type"] == "intersection"
    assert _dist_m(node["lon"], node["lat"], -85.750, 38.260) < 5
    far = g.geocode_one("5000 TEST ST")
    assert far["match_type"] == "unmatched" and "far outside" in far["reason"]


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=60),
    st.builds(lambda n, s: f"{n} BLOCK {s}", st.integers(0, 20000),
              st.sampled_from(["W MADISON ST", "OUTER LOOP", "S 4TH ST", "DIXIE HWY", "BARDSTOWN RD"])),
    st.builds(lambda a, b: f"{a} / {b}", st.sampled_from(["S 4TH ST", "W BROADWAY", "DIXIE HWY", "BANK ST"]),
              st.sampled_from(["W OAK ST", "N 26TH ST", "HILL ST", "ZZZ"])),
))
def test_coordinates_inside_county_or_null(geocoder: Geocoder, text: str) -> None:
    row = geocoder.geocode([text]).iloc[0]
    w, s, e, n = settings.JEFFERSON_BBOX
    if row["match_type"] == "unmatched":
        assert np.isnan(row["lon"]) and np.isnan(row["lat"]) and row["reason"]
    else:
        assert w <= row["lon"] <= e and s <= row["lat"] <= n
        assert 0 < row["score"] <= 1


def test_index_is_cached_by_reference_hash(tmp_path: Path) -> None:
    pts = tmp_path / "pts.csv"
    pd.DataFrame({"number": ["100", "300"], "street_name": ["Main Street", "Main Street"],
                  "lon": [-85.76, -85.75], "lat": [38.25, 38.25]}).to_csv(pts, index=False)
    first = load_reference([pts], index_dir=tmp_path / "idx")
    cached = list((tmp_path / "idx").glob("reference-*.pkl"))
    assert len(cached) == 1
    again = load_reference([pts], index_dir=tmp_path / "idx")
    assert again.hash == first.hash and again.n_points == 2
    pts.write_text(pts.read_text() + "500,Main Street,-85.74,38.25\n")
    changed = load_reference([pts], index_dir=tmp_path / "idx")
    assert changed.hash != first.hash and changed.n_points == 3
    assert len(list((tmp_path / "idx").glob("reference-*.pkl"))) == 2
    row = Geocoder(changed).geocode_one("400 MAIN ST")
    assert row["lon"] == pytest.approx(-85.745, abs=1e-4) and row["match_type"] == "interpolated"


def test_reference_rows_are_accounted_for(tmp_path: Path) -> None:
    ref = build_reference(sorted(REF.glob("*.csv")))
    census = pd.read_csv(REF / "census_geocoder_block_addresses.csv", usecols=["status"])
    points_in = (census["status"] == "Match").sum() + len(pd.read_csv(REF / "openaddresses_jefferson_sample.csv"))
    c = ref.counts
    assert c["census_points"] + c["address_points"] + c["skipped_no_address"] + c["skipped_no_coordinates"] \
        + c["skipped_outside_county"] == points_in
    assert c["intersections"] == 1091
    projected = tmp_path / "feet.csv"
    pd.DataFrame({"street": ["100 MAIN ST"], "x": [1210000.0], "y": [270000.0]}).to_csv(projected, index=False)
    from geo_lead.errors import GeocodeError

    with pytest.raises(GeocodeError, match="projected"):
        build_reference([projected])


def test_zip_given_as_number(geocoder: Geocoder) -> None:
    as_text = geocoder.geocode(["2700 BLOCK W MADISON ST"], ["40211"])
    for z in (40211, 40211.0, np.int64(40211), "40211-1234"):
        assert geocoder.geocode(["2700 BLOCK W MADISON ST"], [z]).equals(as_text)  # type: ignore[list-item]


def test_numbered_street_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # W MAIN ST known at 2800 and 3200 only; 30th Street crosses it at 3000 (Louisville grid)
    pd.DataFrame({"street": ["2800 W MAIN ST", "3200 W MAIN ST"],
                  "longitude": [-85.800, -85.810], "latitude": [38.260, 38.260]}).to_csv(tmp_path / "p.csv", index=False)
    g = Geocoder(build_reference([tmp_path / "p.csv"]))
    row = g.geocode_one("S 30TH ST / W MAIN ST")
    assert row["match_type"] == "intersection" and "grid" in row["reason"]
    assert row["lon"] == pytest.approx(-85.805, abs=1e-5)
    monkeypatch.setattr(settings, "GEOCODE_NUMBERED_STREET_GRID", False)
    off = Geocoder(build_reference([tmp_path / "p.csv"])).geocode_one("S 30TH ST / W MAIN ST")
    assert off["match_type"] == "unmatched" and "30TH" in off["reason"]


def test_sibling_street_of_another_type_gives_a_street_match(tmp_path: Path) -> None:
    """``AUTUMN BENT WAY`` is absent; the same-named CT in the same ZIP places the number."""
    pts = pd.DataFrame({
        "street": ["100 AUTUMN BENT CT", "200 AUTUMN BENT CT", "100 OTHER RD", "300 OTHER RD",
                   "100 W MAPLE ST", "300 W MAPLE ST"],
        "postcode": ["40291", "40291", "40202", "40202", "40202", "40202"],
        "longitude": [-85.60, -85.59, -85.76, -85.75, -85.76, -85.77],
        "latitude": [38.15, 38.15, 38.25, 38.25, 38.24, 38.24],
    })
    pts.to_csv(tmp_path / "pts.csv", index=False)
    g = Geocoder(build_reference([tmp_path / "pts.csv"]))
    hit = g.geocode_one("150 AUTUMN BENT WAY", "40291")
    # hand computation: halfway between the CT's 100 and 200 -> lon -85.595, lat 38.15
    assert hit["match_type"] == "street"
    assert hit["lon"] == pytest.approx(-85.595, abs=1e-6) and hit["lat"] == pytest.approx(38.15, abs=1e-6)
    assert hit["score"] <= settings.GEOCODE_SIBLING_STREET_SCORE and "AUTUMN BENT CT" in hit["reason"]
    assert g.geocode_one("150 AUTUMN BENT WAY")["match_type"] == "street"  # unique name, no ZIP
    # another ZIP: a different place, not placed
    other = g.geocode_one("150 AUTUMN BENT WAY", "40202")
    assert other["match_type"] == "unmatched" and "no such street" in other["reason"]
    # next to the sibling's numbers: at its nearest known number (no extrapolation along it)
    near = g.geocode_one("260 AUTUMN BENT WAY", "40291")
    assert near["match_type"] == "street" and near["lon"] == pytest.approx(-85.59, abs=1e-6)
    assert near["score"] < hit["score"]
    # far from them: not placed
    assert g.geocode_one("900 AUTUMN BENT WAY", "40291")["match_type"] == "unmatched"
    # E and W streets number away from a common baseline: 200 E MAPLE is not near 200 W MAPLE
    assert g.geocode_one("200 E MAPLE ST", "40202")["match_type"] == "unmatched"
    assert g.geocode_one("200 MAPLE AVE", "40202")["match_type"] == "street"  # another type, no direction
    # the exact street, when known, is still preferred (OTHER RD interpolates normally)
    assert g.geocode_one("200 OTHER RD", "40202")["match_type"] == "interpolated"


def test_sibling_fallback_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts = pd.DataFrame({"street": ["100 AUTUMN BENT CT", "200 AUTUMN BENT CT"], "postcode": ["40291"] * 2,
                        "longitude": [-85.60, -85.59], "latitude": [38.15, 38.15]})
    pts.to_csv(tmp_path / "pts.csv", index=False)
    monkeypatch.setattr(settings, "GEOCODE_SIBLING_STREET_FALLBACK", False)
    g = Geocoder(build_reference([tmp_path / "pts.csv"]))
    assert g.geocode_one("150 AUTUMN BENT WAY", "40291")["match_type"] == "unmatched"


def test_census_input_spelling_is_an_alias_of_the_matched_street(tmp_path: Path) -> None:
    cen = pd.DataFrame({
        "id": [1, 2, 3],
        "o_address": ["4700 GLASER LN", "100 E MAIN ST", "300 3RD ST"],
        "o_zip": ["40219", "40202", "40202"],
        "status": ["Match"] * 3, "quality": ["Non_Exact", "Non_Exact", "Exact"],
        "m_address": ["4700 Glaser Rd", "100 W Main St", "300 S 3rd St"],
        "m_zip": ["40219", "40202", "40202"],
        "long": [-85.66, -85.75, -85.757], "lat": [38.14, 38.257, 38.25],
        "tiger_line_id": ["1", "2", "3"], "side": ["L", "R", "L"],
    })
    cen.to_csv(tmp_path / "census.csv", index=False)
    ref = build_reference([tmp_path / "census.csv"])
    # GLASER LN (input) -> GLASER RD (TIGER): indexed under both names
    assert {"GLASER RD", "GLASER LN"} <= set(ref.key_to_id)
    # never across a directional, and not for a merely missing direction
    assert "E MAIN ST" not in ref.key_to_id and "3RD ST" not in ref.key_to_id
    assert ref.counts["census_alias_points"] == 1 and ref.counts["census_points"] == 3
    hit = Geocoder(ref).geocode_one("4700 GLASER LN", "40219")
    assert hit["match_type"] == "exact"
    assert hit["lon"] == pytest.approx(-85.66) and hit["lat"] == pytest.approx(38.14)
