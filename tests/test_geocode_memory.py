"""The geocode and join stages a chunk of records at a time (issue 19: memory at a million
records): the stored results, the counts and the index do not depend on the chunk size.

Oracles: the one-shot run (one chunk holding every record) for the whole store, and the
geocoder asked directly, address by address, for each record's own answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo_lead.geocode import Geocoder, geocode_store
from geo_lead.geocode.beat_check import refresh_store
from geo_lead.geocode.cache import key_records
from geo_lead.geocode.reference import build_reference
from geo_lead.spatial_join import join_store
from geo_lead.store import opened

POINTS = pd.DataFrame({
    "street": ["100 MAIN ST", "200 MAIN ST", "100 OAK AVE", "300 OAK AVE", "500 W BROADWAY", "900 W BROADWAY"],
    "postcode": ["40202", "40202", "40202", "40202", "40203", "40203"],
    "longitude": [-85.760, -85.750, -85.755, -85.755, -85.765, -85.775],
    "latitude": [38.250, 38.250, 38.245, 38.255, 38.246, 38.246],
})
ADDRESSES = ["150 MAIN ST", "150 Main Street", "MAIN ST / OAK AVE", "COMMUNITY / LARGE", "", "9 NOWHERE RD",
             "200 OAK AVE", "700 W BROADWAY", "150 MAIN ST", "250 OAK AVE", "100 MAIN ST", "800 W BROADWAY"]
BEATS = ["1-1", "", "4-2", "1-1", "", "2-3", "4-2", "1-1", "4-2", "", "1-1", "2-3"]
#: The table compared between runs: every column but the ingest and update timestamps.
SKIP = {"ingested_at", "updated_at"}


@pytest.fixture(scope="module")
def geocoder(tmp_path_factory: pytest.TempPathFactory) -> Geocoder:
    folder = tmp_path_factory.mktemp("ref")
    POINTS.to_csv(folder / "pts.csv", index=False)
    return Geocoder(build_reference([folder / "pts.csv"]))


def _records(start: int, n: int) -> pd.DataFrame:
    idx = [(start + i) % len(ADDRESSES) for i in range(n)]
    return pd.DataFrame({
        "record_id": [f"r{start + i}" for i in range(n)],
        "address_raw": [ADDRESSES[i] for i in idx],
        "zip": [None if i == 3 else ("40203" if "BROADWAY" in ADDRESSES[i] else "40202") for i in idx],
        "beat": [BEATS[i] or None for i in idx],
        "content_hash": [f"h{start + i}" for i in range(n)],
    })


def _build(path: Path, geocoder: Geocoder, chunk_rows: int) -> list[dict[str, object]]:
    """Two batches, each ingested, geocoded and joined; a record's address changes in the
    second (it loses its point and is placed again). Returns the stages' counts."""
    counts: list[dict[str, object]] = []
    with opened(path) as store:
        for start, n in ((0, 30), (30, 11)):
            with store.write():
                store.upsert_records(_records(start, n), "2024-01-01T00:00:00Z")
            counts.append(geocode_store(store, geocoder, chunk_rows=chunk_rows))
            counts.append(join_store(store, chunk_rows=chunk_rows))
        with store.write():
            store.upsert_records(_records(4, 1).assign(address_raw="300 OAK AVE", content_hash="x"),
                                 "2024-02-01T00:00:00Z")
        counts.append(geocode_store(store, geocoder, chunk_rows=chunk_rows))
        counts.append(join_store(store, chunk_rows=chunk_rows))
    return counts


def _tables(path: Path) -> tuple[list[tuple[object, ...]], ...]:
    conn = sqlite3.connect(path)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(records)") if r[1] not in SKIP]
        sel = ", ".join(f'"{c}"' for c in cols)
        return (conn.execute(f"SELECT {sel} FROM records ORDER BY fid").fetchall(),
                conn.execute("SELECT * FROM rtree_records_geom ORDER BY id").fetchall(),
                conn.execute("SELECT key, lon, lat, match_type, score, matched_address, reason "
                             "FROM geocode_cache ORDER BY key").fetchall(),
                [tuple(cols)])
    finally:
        conn.close()


@pytest.mark.parametrize("chunk_rows", [1, 4, 7])
def test_chunked_stages_store_exactly_the_one_shot_answer(tmp_path: Path, geocoder: Geocoder,
                                                           chunk_rows: int) -> None:
    one = _build(tmp_path / "one.gpkg", geocoder, chunk_rows=10**6)
    chunked = _build(tmp_path / "chunked.gpkg", geocoder, chunk_rows=chunk_rows)
    assert chunked == one  # counts, dict order included
    assert _tables(tmp_path / "chunked.gpkg") == _tables(tmp_path / "one.gpkg")
    assert one[0]["records"] == 30 and one[2]["records"] == 11 and one[4]["records"] == 1


def test_each_record_gets_its_own_addresses_answer(tmp_path: Path, geocoder: Geocoder) -> None:
    """Independent of the cache and the chunks: every record holds what the geocoder says about
    the first record of its key (here: its own address, spelling variants aside)."""
    _build(tmp_path / "s.gpkg", geocoder, chunk_rows=3)
    with opened(tmp_path / "s.gpkg", create=False) as store:
        rec = store.read_records(["record_id", "address_raw", "zip", "beat", "lon", "lat", "match_type"])
    plain = rec[rec["address_raw"] != "150 Main Street"]
    res = geocoder.geocode(plain["address_raw"].tolist(), plain["zip"].fillna("").tolist(),
                           beats=plain["beat"].fillna("").tolist())
    assert plain["match_type"].tolist() == res["match_type"].tolist()
    got = pd.to_numeric(plain["lon"]).to_numpy(float)
    want = res["lon"].to_numpy(float)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(got[~np.isnan(got)], want[~np.isnan(want)])


def test_key_records_first_record_represents_its_key(tmp_path: Path, geocoder: Geocoder) -> None:
    with opened(tmp_path / "s.gpkg") as store:
        with store.write():
            store.upsert_records(_records(0, 24), "t")
        fids = store.record_fids()
        whole = key_records(store, fids, has_beat=True, chunk_rows=10**6)
        for rows in (1, 5):
            part = key_records(store, fids, has_beat=True, chunk_rows=rows)
            assert part.keys == whole.keys and part.reps == whole.reps
            assert part.codes.tolist() == whole.codes.tolist()
        assert len(whole.keys) < 24 and whole.reps[0] == ("150 MAIN ST", "40202", "1-1")
        with pytest.raises(ValueError, match="chunk_rows"):
            key_records(store, fids, has_beat=True, chunk_rows=0)
        with pytest.raises(ValueError, match="chunk_rows"):
            refresh_store(store, chunk_rows=0)
