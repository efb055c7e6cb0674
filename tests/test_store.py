"""geo_lead.store: a GeoPackage that GDAL (pyogrio) opens, idempotent upserts, clear errors.

GDAL is the independent oracle for "is this a GeoPackage": every layer is read back with
pyogrio, which goes through GDAL's own GPKG driver.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely.geometry import Point, box

from geo_lead import settings
from geo_lead.errors import StoreBusyError, StoreError
from geo_lead.sources import RECORD_COLUMNS
from geo_lead.store import (
    FLAG_COLUMNS,
    GPKG_APPLICATION_ID,
    gpkg_blob,
    open_store,
    opened,
    wkb_from_gpkg,
)


def _records(n: int = 3, offense: str = "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN") -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = dict.fromkeys(RECORD_COLUMNS, "")
        row.update(record_id=f"crime-pre2023:T-{i}:abcd:0", source="crime-pre2023",
                   incident_number=f"T-{i}", occurred_at="2017-07-09T13:36:00", offense_text=offense,
                   division="1ST DIVISION", address_raw="2700 BLOCK W MADISON ST",
                   source_file="t.csv", source_line=i + 2, content_hash=f"h{i}")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for flag in FLAG_COLUMNS:
        frame[flag] = flag in ("opiate", "possession", "lead_eligible")
        frame[f"{flag}_rule"] = "r" if frame[flag].iloc[0] else ""
    return frame


def test_new_store_is_a_geopackage_gdal_opens(store_path: Path) -> None:
    with opened(store_path) as store:
        assert store.count("records") == 0
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == GPKG_APPLICATION_ID
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    layers = dict(pyogrio.list_layers(store_path))
    assert layers["records"] == "Point"
    assert {"rejects", "ingests", "record_history"} <= set(layers)
    assert "persons" not in layers and "meta" not in layers
    info = pyogrio.read_info(store_path, layer="records")
    assert info["crs"] == "EPSG:4326" and info["features"] == 0


def test_records_round_trip_through_gdal(store_path: Path) -> None:
    recs = _records(3)
    with opened(store_path) as store:
        with store.write():
            assert store.upsert_records(recs, "2026-01-01T00:00:00Z") == {"added": 3, "unchanged": 0, "updated": 0}
            upd = pd.DataFrame({"record_id": recs["record_id"][:2], "lon": [-85.80, -85.79],
                                "lat": [38.26, 38.25], "match_type": ["block", "intersection"]})
            assert store.update_records(upd) == 2
        back = store.read_records()
    assert back[list(FLAG_COLUMNS)].dtypes.eq(bool).all()
    assert back["lead_eligible"].all()
    gdf = pyogrio.read_dataframe(store_path, layer="records")
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 3
    assert list(gdf["record_id"]) == list(recs["record_id"])
    assert gdf.geometry.iloc[0].equals(Point(-85.80, 38.26))
    assert gdf.geometry.iloc[1].equals(Point(-85.79, 38.25))
    assert gdf.geometry.iloc[2] is None  # not geocoded yet
    assert gdf["match_type"].tolist()[:2] == ["block", "intersection"]
    assert gdf["source_line"].tolist() == [2, 3, 4]


def test_upsert_is_idempotent_and_keeps_history(store_path: Path) -> None:
    recs = _records(3)
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(recs, "t1")
        with store.write():
            assert store.upsert_records(recs, "t2") == {"added": 0, "unchanged": 3, "updated": 0}
        changed = recs.copy()
        changed.loc[1, ["address_raw", "content_hash"]] = ["2800 BLOCK W MADISON ST", "h1-new"]
        with store.write():
            assert store.upsert_records(changed, "t3") == {"added": 0, "unchanged": 2, "updated": 1}
        assert store.count("records") == 3
        hist = store.read_table("record_history")
        now = store.read_records(where="record_id = ?", params=[recs.loc[1, "record_id"]])
    assert len(hist) == 1 and hist.loc[0, "content_hash"] == "h1"
    assert '"address_raw": "2700 BLOCK W MADISON ST"' in hist.loc[0, "old_json"]
    assert now.loc[0, "address_raw"] == "2800 BLOCK W MADISON ST" and now.loc[0, "updated_at"] == "t3"


def test_failed_write_rolls_back(store_path: Path) -> None:
    with opened(store_path) as store:
        with pytest.raises(RuntimeError), store.write():
            store.upsert_records(_records(2), "t1")
            raise RuntimeError("crash mid-command")
        assert store.count("records") == 0


def test_busy_store_fails_clearly(store_path: Path) -> None:
    open_store(store_path).close()
    blocker = sqlite3.connect(store_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        # Opening only reads (readers are not blocked by a writer); the write then fails.
        store = open_store(store_path, busy_timeout_s=0.05)
        with pytest.raises(StoreBusyError, match="another geo-lead process"), store.write():
            pass
        store.close()
    finally:
        blocker.rollback()
        blocker.close()


@pytest.mark.parametrize("content", [b"this is not a database, just text\n" * 10, b"\x00" * 4096])
def test_not_a_store(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.gpkg"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"x\.gpkg"):
        open_store(path)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a geo_lead GeoPackage"):
        open_store(path)


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="geo-lead ingest"):
        open_store(tmp_path / "none.gpkg", create=False)
    assert not (tmp_path / "none.gpkg").exists()


def test_gpkg_blob_round_trip_and_envelopes() -> None:
    wkb = shapely.to_wkb(Point(-85.8, 38.2), flavor="iso")
    blob = gpkg_blob(wkb)
    assert blob[:2] == b"GP" and struct.unpack("<i", blob[4:8])[0] == 4326
    assert wkb_from_gpkg(blob) == wkb
    # A blob written by GDAL with an XY envelope (flags bit 1) is unwrapped too.
    env = b"GP\x00\x03" + struct.pack("<i", 4326) + struct.pack("<4d", -85.8, -85.8, 38.2, 38.2) + wkb
    assert wkb_from_gpkg(env) == wkb
    assert gpkg_blob(None) is None and wkb_from_gpkg(None) is None


def test_replace_features_reprojects_and_gdal_reads_it(store_path: Path) -> None:
    # A 1,000 ft square in Kentucky North feet, stored as lon/lat.
    square = gpd.GeoDataFrame({"name": ["sq"], "area_sqmi": [1000.0**2 / settings.SQFT_PER_SQMI]},
                              geometry=[box(1_200_000, 280_000, 1_201_000, 281_000)],
                              crs=settings.CRS_PROJECTED)
    with opened(store_path) as store:
        store.replace_features("test_layer", square, "POLYGON")
        store.replace_features("test_layer", square, "POLYGON")  # replacing twice is fine
    back = pyogrio.read_dataframe(store_path, layer="test_layer")
    assert back.crs.to_epsg() == 4326 and len(back) == 1
    area_sqft = back.to_crs(settings.CRS_PROJECTED).geometry.area.iloc[0]
    assert area_sqft == pytest.approx(1_000_000, rel=1e-6)


def test_json_meta(store_path: Path) -> None:
    with opened(store_path) as store:
        assert store.get_json("k", default={}) == {}
        store.put_json("k", {"a": [1, 2]})
        assert store.get_json("k") == {"a": [1, 2]}


def test_ungeocoded_fids_on_the_covering_index_and_on_a_store_made_before_it(store_path: Path) -> None:
    """`ungeocoded_fids(skip_unmatched=True)` = the records never geocoded (NULL match_type)
    or without a point and not ``unmatched``, brute force over every combination; the same on
    a store made before ``records_unlocated_match`` existed, which `ensure_record_indexes`
    then gives it (the migration), and the query then reads that index."""
    import itertools

    import numpy as np

    combos = list(itertools.product([None, 1.0], [None, 2.0], [None, "unmatched", "block", "exact"]))
    recs = _records(len(combos))
    recs["lon"] = [c[0] for c in combos]
    recs["lat"] = [c[1] for c in combos]
    recs["match_type"] = [c[2] for c in combos]
    recs["neighborhood"] = ""
    expected = [i + 1 for i, (lon, lat, mt) in enumerate(combos)
                if mt is None or ((lon is None or lat is None) and mt != "unmatched")]
    with opened(store_path) as store:
        with store.write():
            store.upsert_records(recs, "t1")  # (inserted as given: no enrich, so no geom)
        assert store.ungeocoded_fids(skip_unmatched=True).tolist() == expected
        plan = " ".join(str(r[-1]) for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT fid FROM records INDEXED BY records_unlocated_match "
            "WHERE (lon IS NULL OR lat IS NULL) AND match_type IS NOT 'unmatched'"))
        assert "records_unlocated_match" in plan
        with store.write():
            store.conn.execute("DROP INDEX records_unlocated_match")  # a store from before
        assert store.ungeocoded_fids(skip_unmatched=True).tolist() == expected
        with store.write():
            store.ensure_record_indexes()
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_unlocated_match" in names
        assert store.ungeocoded_fids(skip_unmatched=True).tolist() == expected
        assert store.ungeocoded_fids(skip_unmatched=False).tolist() == [
            i + 1 for i, (lon, lat, _) in enumerate(combos) if lon is None or lat is None]
        assert isinstance(store.ungeocoded_fids(skip_unmatched=True), np.ndarray)


def test_year_and_month_reads_on_the_month_index_and_on_a_store_made_before_it(store_path: Path) -> None:
    """`records_of_years`, `iter_record_rows(month=)` and `record_months` give what a prefix
    test in Python gives, odd values included, on the ``records_occurred_month`` index, on a
    store made before it (``records_occurred`` on the whole value), and after the migration
    `ensure_record_indexes` does (old index dropped, new one made, and read)."""
    values = ["2017-05-01T10:00:00", "2017-05", "2017-05-", "2017-", "2017", "", None, "2016-12-31T23:59:59",
              "2017.5", " 2017-05-01", "2017-051", "2017-05-31T23:59:59", "2018-01-01T00:00:00", "abcd-ef-gh",
              "2017-05-01", "20170501"]
    recs = _records(len(values))
    recs["occurred_at"] = values

    def expected_years(year: int) -> list[str]:
        return [r for r, v in zip(recs["record_id"], values, strict=True) if v is not None and v.startswith(f"{year}-")]

    def expected_month(month: str) -> list[str]:
        return [r for r, v in zip(recs["record_id"], values, strict=True) if v is not None and v.startswith(f"{month}-")]

    def check(store: object) -> None:
        for years in ([2017], [2016, 2018], [2017, 2018], [2019]):
            got = store.records_of_years(["record_id"], years)["record_id"].tolist()  # type: ignore[attr-defined]
            want = {x for y in years for x in expected_years(y)}
            assert got == [r for r in recs["record_id"] if r in want], years
        for month in ("2017-05", "2016-12", "2017", "2017-05-0", "2017-05-01T1", "2019-01"):
            frames = store.iter_record_rows(["record_id"], month)  # type: ignore[attr-defined]
            assert [r for f in frames for r in f["record_id"]] == expected_month(month), month
        months = store.record_months()  # type: ignore[attr-defined]
        assert sorted(months, key=str) == sorted({None if v is None else v[:7] for v in values}, key=str)
        assert len(months) == len(set(months))

    with opened(store_path) as store:
        with store.write():
            store.upsert_records(recs, "t1")
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_occurred_month" in names and "records_occurred" not in names
        check(store)
        plan = " ".join(str(r[-1]) for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT fid FROM records WHERE occurred_at >= '2017-' AND occurred_at < '2017.' "
            "AND substr(occurred_at, 1, 8) >= '2017-' AND substr(occurred_at, 1, 8) < '2017.'"))
        assert "records_occurred_month" in plan
        with store.write():  # a store made before: the whole-value index only
            store.conn.execute("DROP INDEX records_occurred_month")
            store.conn.execute("CREATE INDEX records_occurred ON records(occurred_at)")
        check(store)
        with store.write():
            store.ensure_record_indexes()
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_occurred_month" in names and "records_occurred" not in names
        check(store)


def test_is_empty(store_path: Path) -> None:
    with opened(store_path) as store:
        assert store.is_empty("records") and store.is_empty("no_such_table")
        with store.write():
            store.upsert_records(_records(1), "t1")
        assert not store.is_empty("records") and store.is_empty("rejects")
        with store.write():
            store.conn.execute("DELETE FROM records")
        assert store.is_empty("records") == (store.count("records") == 0)
