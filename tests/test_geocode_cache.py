"""geocode_store through the geocode_cache table; the CLI commands; the faked Census provider."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo_lead import cli
from geo_lead.geocode import Geocoder, geocode_store
from geo_lead.geocode.cache import CACHE_TABLE, cache_key
from geo_lead.geocode.census import CENSUS_BATCH_URL, CensusBatchGeocoder
from geo_lead.geocode.reference import build_reference
from geo_lead.store import opened

POINTS = pd.DataFrame({
    "street": ["100 MAIN ST", "200 MAIN ST", "100 OAK AVE", "300 OAK AVE"],
    "postcode": ["40202"] * 4,
    "longitude": [-85.760, -85.750, -85.755, -85.755],
    "latitude": [38.250, 38.250, 38.245, 38.255],
})


@pytest.fixture
def small_geocoder(tmp_path: Path) -> Geocoder:
    POINTS.to_csv(tmp_path / "pts.csv", index=False)
    return Geocoder(build_reference([tmp_path / "pts.csv"]))


def _records(addresses: list[str], start: int = 0) -> pd.DataFrame:
    n = len(addresses)
    return pd.DataFrame({"record_id": [f"r{start + i}" for i in range(n)], "address_raw": addresses,
                         "zip": ["40202"] * n, "content_hash": [f"h{start + i}" for i in range(n)]})


def test_cache_key_normalises() -> None:
    assert cache_key("150 main street", "40202-1111") == cache_key("150 MAIN ST", "40202")
    assert cache_key("150 MAIN ST", "40202") != cache_key("150 MAIN ST", "40203")


def test_geocode_store_counts_cache_and_invalidation(store_path: Path, small_geocoder: Geocoder,
                                                     tmp_path: Path) -> None:
    addrs = ["150 MAIN ST", "150 Main Street", "MAIN ST / OAK AVE", "COMMUNITY / LARGE", "", "9 NOWHERE RD"]
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(_records(addrs), "2024-01-01T00:00:00Z")
        c1 = geocode_store(store, small_geocoder)
        assert c1["records"] == 6 == sum(c1["by_match_type"].values())
        assert c1["geocoded_new"] == 6 and c1["geocoded_from_cache"] == 0
        assert c1["by_match_type"] == {"interpolated": 2, "intersection": 1, "unmatched": 3}
        assert sum(c1["unmatched_reasons"].values()) == 3
        assert store.count(CACHE_TABLE) == 5  # the two spellings of 150 MAIN ST share a key
        rec = store.read_records(["record_id", "lon", "lat", "match_type", "geocode_reason"]).set_index("record_id")
        assert rec.loc["r0", "lon"] == pytest.approx(-85.755, abs=1e-5)
        assert rec.loc["r2", "lat"] == pytest.approx(38.250, abs=1e-4)
        assert rec.loc["r3", "match_type"] == "unmatched" and rec.loc["r3", "geocode_reason"]
        geom = store.conn.execute("SELECT COUNT(*) FROM records WHERE geom IS NOT NULL").fetchone()[0]
        assert geom == 3

        # a rerun with new records: only the 2 new records are looked at; the 3 the same
        # reference left unmatched are not tried again (the cache would answer the same)
        with store.write():
            store.upsert_records(_records(["150 MAIN ST", "100 OAK AVE"], start=10), "2024-01-02T00:00:00Z")
        c2 = geocode_store(store, small_geocoder)
        assert c2["records"] == 2
        assert c2["geocoded_new"] == 1 and c2["geocoded_from_cache"] == 1
        assert c2["addresses_new"] == 1 and c2["addresses_from_cache"] == 1
        assert c2["by_match_type"] == {"interpolated": 1, "exact": 1}
        assert geocode_store(store, small_geocoder)["records"] == 0  # nothing new: nothing read
        rec = store.read_records(["record_id", "match_type", "geocode_reason"]).set_index("record_id")
        assert (rec["match_type"] == "unmatched").sum() == 3 and rec.loc["r3", "geocode_reason"]

        # another reference: the cache is dropped and every record (the unmatched ones too)
        # is geocoded again
        POINTS.assign(longitude=POINTS["longitude"] + 0.001).to_csv(tmp_path / "pts2.csv", index=False)
        other = Geocoder(build_reference([tmp_path / "pts2.csv"]))
        c3 = geocode_store(store, other)
        assert c3["records"] == 8 and c3["geocoded_from_cache"] == 0
        assert c3["by_match_type"]["unmatched"] == 3
        hashes = {r[0] for r in store.conn.execute(f"SELECT reference_hash FROM {CACHE_TABLE}")}
        assert hashes == {other.reference_hash}


def test_new_matcher_version_regeocodes_the_store(small_geocoder: Geocoder, store_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Same reference, new placement rules (an upgrade): cached results are not reused."""
    import geo_lead.geocode.geocoder as geocoder_module

    with opened(store_path) as store:
        with store.write():
            store.upsert_records(_records(["150 MAIN ST", "100 OAK AVE"]), "2024-01-01T00:00:00Z")
        assert geocode_store(store, small_geocoder)["geocoded_new"] == 2
        assert geocode_store(store, small_geocoder)["records"] == 0
        before = small_geocoder.reference_hash
        monkeypatch.setattr(geocoder_module, "MATCHER_VERSION", "matcher-next")
        assert small_geocoder.reference_hash != before
        again = geocode_store(store, small_geocoder)
        assert again["records"] == 2 and again["geocoded_new"] == 2 and again["geocoded_from_cache"] == 0


def test_cli_geocode_address_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    POINTS.to_csv(tmp_path / "pts.csv", index=False)
    code = cli.main(["geocode-address", "150 MAIN ST", "--zip", "40202", "--json",
                     "--reference", str(tmp_path / "pts.csv")])
    assert code == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"input", "lon", "lat", "match_type", "score", "matched_address", "reason"}
    assert obj["match_type"] == "interpolated" and obj["lon"] == pytest.approx(-85.755, abs=1e-5)
    code = cli.main(["geocode-address", "COMMUNITY / LARGE", "--json", "--reference", str(tmp_path / "pts.csv")])
    obj = json.loads(capsys.readouterr().out)
    assert obj["lon"] is None and obj["match_type"] == "unmatched" and obj["reason"]


def test_cli_geocode_file_keeps_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    POINTS.to_csv(tmp_path / "pts.csv", index=False)
    src = pd.DataFrame({"id": range(5), "ADDR": ["150 MAIN ST", "", "MAIN ST / OAK AVE", "150 MAIN ST", "x,y"],
                        "ZIP": ["40202", "", "", "40202", ""]})
    src.to_csv(tmp_path / "in.csv", index=False)
    code = cli.main(["geocode-file", str(tmp_path / "in.csv"), "--address-column", "ADDR", "--zip-column", "ZIP",
                     "--out", str(tmp_path / "out.csv"), "--reference", str(tmp_path / "pts.csv")])
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["id"].tolist() == list(range(5))
    assert {"lon", "lat", "match_type", "score", "matched_address"} <= set(out.columns)
    assert "interpolated" in capsys.readouterr().out
    assert cli.main(["geocode-file", str(tmp_path / "in.csv"), "--address-column", "NOPE",
                     "--out", str(tmp_path / "o.csv"), "--reference", str(tmp_path / "pts.csv")]) == 2


def test_cli_geocode_store(capsys: pytest.CaptureFixture[str], tmp_path: Path, store_path: Path) -> None:
    POINTS.to_csv(tmp_path / "pts.csv", index=False)
    with opened(store_path) as store, store.write():
        store.upsert_records(_records(["150 MAIN ST", "COMMUNITY / LARGE"]), "2024-01-01T00:00:00Z")
    assert cli.main(["geocode", "--store", str(store_path), "--json", "--reference", str(tmp_path / "pts.csv")]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["records"] == 2 and obj["by_match_type"] == {"interpolated": 1, "unmatched": 1}


CENSUS_REPLY = (
    '"0","2750 W MADISON ST, LOUISVILLE, KY, 40211","Match","Exact","2750 W MADISON ST, LOUISVILLE, KY, 40211",'
    '"-85.79667,38.25434","96841619","L"\n'
    '"2","12 NOWHERE RD, LOUISVILLE, KY, ","No_Match"\n'
    '"3","1 FAR AWAY ST, LOUISVILLE, KY, ","Match","Exact","1 FAR AWAY ST","-84.0,39.0","1","L"\n'
)


def test_census_provider_with_faked_http() -> None:
    calls: list[tuple[str, bytes, str]] = []

    def fake_post(url: str, body: bytes, ctype: str) -> str:
        calls.append((url, body, ctype))
        return CENSUS_REPLY

    res = CensusBatchGeocoder(post=fake_post).geocode(
        ["2700 BLOCK W MADISON ST", "N 26TH ST / BANK ST", "12 NOWHERE RD", "1 FAR AWAY ST"],
        ["40211", "", "", ""])
    assert len(calls) == 1 and calls[0][0] == CENSUS_BATCH_URL
    body = calls[0][1].decode()
    assert "2750 W MADISON ST" in body and "BANK ST" not in body  # intersections are not sent
    assert res.loc[0, "match_type"] == "interpolated" and res.loc[0, "lon"] == pytest.approx(-85.79667)
    assert res["match_type"].tolist()[1:] == ["unmatched"] * 3
    assert "outside Jefferson County" in res.loc[3, "reason"] and np.isnan(res.loc[3, "lon"])


def test_online_provider_fills_offline_misses_into_cache(store_path: Path, small_geocoder: Geocoder) -> None:
    reply = '"0","9 NOWHERE RD","Match","Non_Exact","9 NOWHERE RD","-85.7,38.2","1","L"\n'
    online = CensusBatchGeocoder(post=lambda url, body, ctype: reply)
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(_records(["9 NOWHERE RD", "150 MAIN ST"]), "2024-01-01T00:00:00Z")
        counts = geocode_store(store, small_geocoder, online=online)
        assert counts["by_match_type"] == {"interpolated": 2}
        row = store.read_table(CACHE_TABLE, ["key", "reason"], where="key LIKE '%NOWHERE%'")
        assert "Census" in row.loc[0, "reason"]


def test_cli_bad_reference_is_a_clean_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["geocode-address", "1 MAIN ST", "--reference", str(tmp_path / "missing.csv")]) == 2
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert cli.main(["geocode-address", "1 MAIN ST", "--reference", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "bad.csv" in err and "Traceback" not in err


def test_online_run_retries_cached_misses_and_keeps_the_cache(store_path: Path,
                                                             small_geocoder: Geocoder) -> None:
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(_records(["9 NOWHERE RD", "150 MAIN ST"]), "2024-01-01T00:00:00Z")
        offline = geocode_store(store, small_geocoder)
        assert offline["by_match_type"] == {"unmatched": 1, "interpolated": 1}
        reply = '"0","9 NOWHERE RD","Match","Exact","9 NOWHERE RD","-85.7,38.2","1","L"\n'
        online = CensusBatchGeocoder(post=lambda url, body, ctype: reply)
        again = geocode_store(store, small_geocoder, online=online)
        assert again["records"] == 1 and again["by_match_type"] == {"interpolated": 1}
        assert store.count(CACHE_TABLE) == 2
        # an offline rerun keeps the online answer (same reference, same cache)
        later = geocode_store(store, small_geocoder, only_missing=False)
        assert later["by_match_type"] == {"interpolated": 2} and later["addresses_new"] == 0


def test_unchanged_results_are_not_rewritten(store_path: Path, small_geocoder: Geocoder) -> None:
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(_records(["150 MAIN ST", "COMMUNITY / LARGE"]), "2024-01-01T00:00:00Z")
        first = geocode_store(store, small_geocoder)
        assert first["records_written"] == 2
        again = geocode_store(store, small_geocoder, only_missing=False)
        assert again["records"] == 2 and again["records_written"] == 0
        assert again["by_match_type"] == {"interpolated": 1, "unmatched": 1}
        rec = store.read_records(["record_id", "lon"]).set_index("record_id")
        assert rec.loc["r0", "lon"] == pytest.approx(-85.755, abs=1e-5)


def test_beat_checks_once_per_key_and_beat_equal_per_record_checks() -> None:
    """`_KeyResults` checks each distinct (key, beat as `normalize_beat` reads it) once; the
    labels equal `beat_check.checks_for` record by record (shared keys, beat spellings that
    read alike, no beat, unplaced keys)."""
    import numpy as np
    import pandas as pd

    import geo_lead.geocode.beat_check as bc
    from geo_lead.beats import read_beat_index
    from geo_lead.geocode.cache import _KeyResults

    index = read_beat_index()
    rng = np.random.default_rng(3)
    n_keys = 40
    lon = rng.uniform(-85.85, -85.6, n_keys)
    lat = rng.uniform(38.15, 38.3, n_keys)
    lon[:3] = np.nan  # unmatched keys
    table = pd.DataFrame({"lon": lon, "lat": lat, "score": 1.0, "match_type": "block",
                          "matched_address": "x", "reason": ""})
    at = rng.integers(0, n_keys, 600)
    spellings = np.array(["111", " 111", "111.0", 111.0, "112", "113", "214", None, "", "NULL", "METRO", "999"],
                         dtype=object)
    beats = pd.Series(spellings[rng.integers(0, len(spellings), 600)], dtype=object)
    got = _KeyResults(table).updates(pd.Series([f"r{i}" for i in range(600)]), beats, at, index)
    want = bc.checks_for(lon[at], lat[at], beats.fillna(""), index)
    assert got["beat_check"].tolist() == list(want)
    assert {"same", "adjacent", "other", "no_beat", None} & set(got["beat_check"]) >= {"no_beat", None}
