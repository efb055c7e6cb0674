"""Set-based writes of the store (issue 19, items 1 and 5): `Store.update_records` applies a
frame with one statement from a temporary table and keeps the records' RTree index correct.

Oracles: shapely's ISO WKB wrapped by the byte-by-byte `gpkg_blob` (for the vectorised point
blobs), GDAL's own read of the layer and its bbox read through the index against a shapely
filter of the points, SQLite's ``rtreecheck`` (the index's internal consistency), and the
values given compared with the values read back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geo_lead import store as store_mod
from geo_lead.sources import RECORD_COLUMNS
from geo_lead.store import RTREE_FILL, gpkg_blob, open_store, point_blobs, rtree_pages

BBOX = (-85.80, 38.20, -85.70, 38.28)  # minx, miny, maxx, maxy


def _records(n: int, prefix: str = "r") -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = dict.fromkeys(RECORD_COLUMNS, "")
        row.update(record_id=f"{prefix}{i}", occurred_at="2017-05-01T10:00:00", source_line=i + 2,
                   source_file="x.csv", content_hash=f"h{i}")
        rows.append(row)
    return pd.DataFrame(rows)


def _values(column: pd.Series) -> list[object]:
    """A column read back, missing values as None (whatever the string dtype's NA)."""
    return [None if pd.isna(v) else v for v in column.tolist()]


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-85.95, -85.45, n), rng.uniform(38.00, 38.40, n)


def _check_index(path: Path) -> None:
    """The records' RTree holds exactly the placed records, each box around its point, is
    internally consistent, and GDAL's bbox read through it equals a shapely filter."""
    conn = sqlite3.connect(path)
    try:
        pts = {int(f): (x, y) for f, x, y in conn.execute(
            "SELECT fid, lon, lat FROM records WHERE lon IS NOT NULL AND lat IS NOT NULL")}
        boxes = {int(r[0]): r[1:] for r in conn.execute("SELECT id, minx, maxx, miny, maxy FROM rtree_records_geom")}
        assert conn.execute("SELECT rtreecheck('rtree_records_geom')").fetchone()[0] == "ok"
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        conn.close()
    assert set(boxes) == set(pts)
    for fid, (x, y) in pts.items():
        minx, maxx, miny, maxy = boxes[fid]
        assert minx <= x <= maxx and miny <= y <= maxy and maxx - minx < 1e-4 and maxy - miny < 1e-4
    assert {f"rtree_records_geom_{s}" for s in store_mod._RTREE_TRIGGERS} <= triggers  # back after the update
    got = pyogrio.read_dataframe(path, layer="records", bbox=BBOX, columns=["record_id"])
    box = shapely.box(*BBOX)
    want = sorted(rid for rid, (x, y) in _points_by_id(path).items() if shapely.intersects(box, shapely.Point(x, y)))
    assert sorted(got["record_id"]) == want


def _points_by_id(path: Path) -> dict[str, tuple[float, float]]:
    conn = sqlite3.connect(path)
    try:
        return {r: (x, y) for r, x, y in conn.execute(
            "SELECT record_id, lon, lat FROM records WHERE lon IS NOT NULL AND lat IS NOT NULL")}
    finally:
        conn.close()


def test_point_blobs_equal_the_wkb_wrapper() -> None:
    lon = np.array([-85.75, 0.0, np.nan, -85.7, 1e300])
    lat = np.array([38.25, -0.0, 38.2, np.nan, -1e-300])
    blobs = point_blobs(lon, lat)
    for x, y, blob in zip(lon, lat, blobs, strict=True):
        if np.isnan(x) or np.isnan(y):
            assert blob is None
        else:
            assert blob == gpkg_blob(shapely.to_wkb(shapely.Point(x, y), flavor="iso", byte_order=1))
    with pytest.raises(ValueError, match="shape"):
        point_blobs(lon, lat[:2])


def test_update_returns_the_rows_given_and_gdal_reads_the_points(tmp_path: Path) -> None:
    path = tmp_path / "s.gpkg"
    recs = _records(6)
    lon, lat = _points(6, seed=1)
    store = open_store(path)
    with store.write():
        store.upsert_records(recs, "2026-01-01T00:00:00Z")
        upd = pd.DataFrame({"record_id": recs["record_id"], "lon": lon, "lat": lat,
                            "match_type": ["block", None, "intersection", "block", "block", "street"],
                            "score": [1.0, np.nan, 0.5, 1, 1, 0.9]})
        upd.loc[5, ["lon", "lat"]] = np.nan  # unplaced: no geometry
        assert store.update_records(upd) == 6
        back = store.read_records(["record_id", "lon", "lat", "match_type", "score"])
    store.close()
    assert _values(back["match_type"]) == ["block", None, "intersection", "block", "block", "street"]
    assert back["score"].isna().tolist() == [False, True, False, False, False, False]
    gdf = pyogrio.read_dataframe(path, layer="records", columns=["record_id"])
    for i in range(5):
        assert gdf.geometry.iloc[i].equals(shapely.Point(lon[i], lat[i]))
    assert gdf.geometry.iloc[5] is None
    _check_index(path)


def test_repeated_key_last_row_wins(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(_records(2), "t")
        upd = pd.DataFrame({"record_id": ["r0", "r1", "r0"], "match_type": ["a", "b", "c"]})
        assert store.update_records(upd) == 3
        assert store.read_records(["record_id", "match_type"])["match_type"].tolist() == ["c", "b"]
    store.close()


def test_unknown_key_is_named_and_nothing_changes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(_records(3), "t")
        store.update_records(pd.DataFrame({"record_id": ["r0", "r1", "r2"], "match_type": ["x", "x", "x"]}))
    with pytest.raises(ValueError, match=r"record_id not in the store: 'nope-7'"), store.write():
        store.update_records(pd.DataFrame({"record_id": ["r0", "nope-7", "r2"], "match_type": ["y", "y", "y"]}))
    with store.write():  # inside a caller's transaction the failed update is undone as well
        with pytest.raises(ValueError, match="nope"):
            store.update_records(pd.DataFrame({"record_id": ["r1", "nope"], "match_type": ["z", "z"]}))
        assert store.read_records(["match_type"])["match_type"].tolist() == ["x", "x", "x"]
    with pytest.raises(ValueError, match="no key column"), store.write():
        store.update_records(pd.DataFrame({"match_type": ["y"]}))
    store.close()


@pytest.mark.parametrize("triggers_off_from", [1, 10**9])
@pytest.mark.parametrize("share", [0.1, 1.0])
def test_index_correct_for_small_and_large_updates(tmp_path: Path, share: float, triggers_off_from: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Below `RTREE_REBUILD_SHARE` the updated records' entries are replaced; from it on the
    index is refilled. Both leave the index a trigger-kept one would: checked after placing,
    moving, clearing and adding records, and after attribute updates, with the triggers off
    (from `TRIGGERS_OFF_MIN_ROWS` rows) or on."""
    monkeypatch.setattr(store_mod, "TRIGGERS_OFF_MIN_ROWS", triggers_off_from)
    path = tmp_path / "s.gpkg"
    n = 400
    recs = _records(n)
    lon, lat = _points(n, seed=3)
    store = open_store(path)
    with store.write():
        store.upsert_records(recs, "t")
        store.update_records(pd.DataFrame({"record_id": recs["record_id"], "lon": lon, "lat": lat}))
    k = int(share * n)
    mlon, mlat = _points(k, seed=4)
    with store.write():
        moved = pd.DataFrame({"record_id": recs["record_id"][:k], "lon": mlon, "lat": mlat})
        moved.loc[moved.index[::7], ["lon", "lat"]] = np.nan  # some lose their point
        assert store.update_records(moved) == k
        more = _records(5, prefix="n")
        store.upsert_records(more, "t2")
        nlon, nlat = _points(5, seed=5)
        store.update_records(pd.DataFrame({"record_id": more["record_id"], "lon": nlon, "lat": nlat}))
        store.update_records(pd.DataFrame({"record_id": recs["record_id"], "neighborhood": "X"}))
    store.close()
    _check_index(path)
    pts = _points_by_id(path)
    assert len(pts) == n + 5 - len(moved.index[::7])
    assert pts["r1"] == (mlon[1], mlat[1]) and pts[f"r{n - 2}"] == ((mlon[n - 2], mlat[n - 2]) if k == n
                                                                   else (lon[n - 2], lat[n - 2]))


def test_moved_point_clears_its_neighborhood(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(_records(3), "t")
        store.update_records(pd.DataFrame({"record_id": ["r0", "r1", "r2"], "neighborhood": ["A", "B", "C"]}))
        store.update_records(pd.DataFrame({"record_id": ["r1"], "lon": [-85.7], "lat": [38.2]}))
        assert _values(store.read_records(["neighborhood"])["neighborhood"]) == ["A", None, "C"]
        # a frame that sets the neighborhood with the point keeps it
        store.update_records(pd.DataFrame({"record_id": ["r2"], "lon": [-85.7], "lat": [38.2],
                                           "neighborhood": ["D"]}))
        assert _values(store.read_records(["neighborhood"])["neighborhood"]) == ["A", None, "D"]
    store.close()


@pytest.mark.parametrize("fill", [1.0, 0.7, 0.01])
@pytest.mark.parametrize("n", [0, 1, 35, 36, 51, 52, 5_000])
def test_bulk_loaded_rtree_is_one_the_module_accepts(n: int, fill: float) -> None:
    """`rtree_pages` written into a fresh rtree's shadow tables: SQLite's ``rtreecheck`` says
    ok, box queries equal a brute-force filter, and the module's own inserts and deletes
    afterwards keep it consistent (1 leaf, 2 leaves, 3 levels; nodes full, 70% full (35 of
    51 cells) and 2 cells each, the least `fill` gives)."""
    rng = np.random.default_rng(n)
    x, y = rng.uniform(-85.95, -85.45, n), rng.uniform(38.0, 38.4, n)
    ids = rng.permutation(np.arange(10, 10 + 3 * n, 3))[:n].astype(np.int64)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING rtree(id, minx, maxx, miny, maxy)")
    node_bytes = conn.execute("SELECT length(data) FROM t_node WHERE nodeno = 1").fetchone()[0]
    pages = rtree_pages(ids, x, y, node_bytes, fill=fill)
    cells = [int.from_bytes(blob[2:4], "big") for _, blob in pages.node]
    assert max(cells) <= max(2, int((node_bytes - 4) // 24 * fill))
    for shadow, rows in (("node", pages.node), ("rowid", pages.rowid), ("parent", pages.parent)):
        conn.execute(f"DELETE FROM t_{shadow}")
        conn.executemany(f"INSERT INTO t_{shadow} VALUES (?, ?)", rows)
    assert conn.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == n

    def query(x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return sorted(int(r[0]) for r in conn.execute(
            "SELECT id FROM t WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?", (x0, x1, y0, y1)))

    box = (-85.80, 38.20, -85.70, 38.28)
    inside = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
    assert query(*box) == sorted(ids[inside].tolist())
    for i in range(n):  # every point is found by its own degenerate box
        if i % max(1, n // 50) == 0:
            assert int(ids[i]) in query(x[i], y[i], x[i], y[i])
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [(1_000_000 + i, -85.7, -85.7, 38.2, 38.2) for i in range(60)])
    conn.executemany("DELETE FROM t WHERE id = ?", [(int(i),) for i in ids[: n // 2]])
    assert conn.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == n - n // 2 + 60
    conn.close()


def test_rtree_pages_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        rtree_pages(np.arange(3), np.zeros(3), np.zeros(2), 1228)
    with pytest.raises(ValueError, match="fewer than 2 cells"):
        rtree_pages(np.arange(3), np.zeros(3), np.zeros(3), 40)
    for fill in (0.0, 1.5):
        with pytest.raises(ValueError, match="fill"):
            rtree_pages(np.arange(3), np.zeros(3), np.zeros(3), 1228, fill=fill)


def _nodes_after_inserts(fill: float, n: int = 20_000, new: int = 2_000) -> tuple[int, int]:
    """Nodes of a bulk-loaded tree of `n` random points (`fill`), before and after the module
    inserts `new` more from the same area."""
    rng = np.random.default_rng(7)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING rtree(id, minx, maxx, miny, maxy)")
    node_bytes = conn.execute("SELECT length(data) FROM t_node WHERE nodeno = 1").fetchone()[0]
    x, y = rng.uniform(-85.95, -85.45, n), rng.uniform(38.0, 38.4, n)
    pages = rtree_pages(np.arange(1, n + 1, dtype=np.int64), x, y, node_bytes, fill=fill)
    for shadow, rows in (("node", pages.node), ("rowid", pages.rowid), ("parent", pages.parent)):
        conn.execute(f"DELETE FROM t_{shadow}")
        conn.executemany(f"INSERT INTO t_{shadow} VALUES (?, ?)", rows)
    before = conn.execute("SELECT COUNT(*) FROM t_node").fetchone()[0]
    nx, ny = rng.uniform(-85.95, -85.45, new), rng.uniform(38.0, 38.4, new)
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                     [(n + 1 + i, a, a, b, b) for i, (a, b) in enumerate(zip(nx, ny, strict=True))])
    assert conn.execute("SELECT rtreecheck('t')").fetchone()[0] == "ok"
    after = conn.execute("SELECT COUNT(*) FROM t_node").fetchone()[0]
    conn.close()
    return before, after


def test_bulk_loaded_rtree_leaves_room_for_a_rerun_s_points() -> None:
    """Nodes filled to `RTREE_FILL` take a rerun's points (10% more, spread over the area)
    with few splits; full nodes split at nearly every insert (issue 19: ~0.5 s of a +10k
    rerun at 1M records)."""
    full_before, full_after = _nodes_after_inserts(1.0)
    before, after = _nodes_after_inserts(RTREE_FILL)
    assert full_after - full_before > 200  # full leaves: a split (or two) for most inserts
    assert after - before < 0.2 * (full_after - full_before)


def test_writes_in_chunks_keep_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inserts and updates converted `WRITE_CHUNK_ROWS` rows at a time: every row written once."""
    monkeypatch.setattr(store_mod, "WRITE_CHUNK_ROWS", 3)
    monkeypatch.setattr(store_mod, "TRIGGERS_OFF_MIN_ROWS", 4)
    path = tmp_path / "s.gpkg"
    recs = _records(10)
    lon, lat = _points(10, seed=9)
    store = open_store(path)
    with store.write():
        assert store.upsert_records(recs, "t") == {"added": 10, "unchanged": 0, "updated": 0}
        assert store.update_records(pd.DataFrame({"record_id": recs["record_id"][::-1], "lon": lon[::-1],
                                                  "lat": lat[::-1], "match_type": [f"m{i}" for i in range(10)][::-1]})) == 10
        back = store.read_records(["record_id", "source_line", "lon", "lat", "match_type"])
    store.close()
    assert back["record_id"].tolist() == recs["record_id"].tolist()
    assert back["source_line"].tolist() == list(range(2, 12))
    assert back["lon"].tolist() == lon.tolist() and back["lat"].tolist() == lat.tolist()
    assert back["match_type"].tolist() == [f"m{i}" for i in range(10)]
    _check_index(path)


def test_missing_coordinates_of_any_kind_clear_the_point(tmp_path: Path) -> None:
    path = tmp_path / "s.gpkg"
    store = open_store(path)
    with store.write():
        store.upsert_records(_records(3), "t")
        store.update_records(pd.DataFrame({"record_id": ["r0", "r1", "r2"], "lon": [-85.7, -85.71, -85.72],
                                           "lat": [38.2, 38.21, 38.22]}))
        store.update_records(pd.DataFrame({"record_id": ["r0", "r1"], "lon": pd.Series([None, pd.NA], dtype=object),
                                           "lat": pd.Series([38.2, 38.21], dtype="Float64")}))
    store.close()
    assert set(_points_by_id(path)) == {"r2"}
    _check_index(path)


@pytest.mark.parametrize("share", [0.1, 1.0])
def test_update_in_chunks_equals_one_update(tmp_path: Path, share: float) -> None:
    """`update_records_chunks` leaves the records and their index exactly as one
    `update_records` of the frames' concatenation (the index brought in step once: entries
    replaced below `RTREE_REBUILD_SHARE`, refilled from it); a key given in two chunks takes
    the later chunk's row."""
    n = 300
    recs = _records(n)
    lon, lat = _points(n, seed=11)
    k = int(share * n)
    mlon, mlat = _points(k, seed=12)
    frame = pd.DataFrame({"record_id": recs["record_id"][:k], "lon": mlon, "lat": mlat, "match_type": "m"})
    frame.loc[frame.index[::5], ["lon", "lat"]] = np.nan
    again = frame.iloc[[1, 2]].assign(lon=-85.7, lat=38.2, match_type="later")  # repeated keys: last wins
    paths = {}
    for how in ("one", "chunks"):
        paths[how] = path = tmp_path / f"{how}.gpkg"
        store = open_store(path)
        with store.write():
            store.upsert_records(recs, "t")
            store.update_records(pd.DataFrame({"record_id": recs["record_id"], "lon": lon, "lat": lat}))
            store.update_records(pd.DataFrame({"record_id": recs["record_id"], "neighborhood": "X"}))
        with store.write():
            if how == "one":
                assert store.update_records(pd.concat([frame, again], ignore_index=True)) == k + 2
            else:
                parts = [frame.iloc[i:i + 7] for i in range(0, k, 7)] + [frame.iloc[:0], again]
                assert store.update_records_chunks(iter(parts)) == k + 2
        store.close()
        _check_index(path)
    rows = {}
    for how, path in paths.items():
        conn = sqlite3.connect(path)
        rows[how] = (conn.execute("SELECT record_id, lon, lat, match_type, geom, neighborhood FROM records "
                                  "ORDER BY fid").fetchall(),
                     conn.execute("SELECT * FROM rtree_records_geom ORDER BY id").fetchall())
        conn.close()
    assert rows["one"] == rows["chunks"]
    assert _points_by_id(paths["chunks"])["r1"] == (-85.7, 38.2)


def test_update_in_chunks_missing_key_undoes_every_chunk(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(_records(4), "t")
        store.update_records(pd.DataFrame({"record_id": ["r0", "r1", "r2", "r3"], "match_type": "x"}))
    parts = [pd.DataFrame({"record_id": ["r0", "r1"], "match_type": ["a", "a"]}),
             pd.DataFrame({"record_id": ["r2", "nope"], "match_type": ["b", "b"]})]
    with pytest.raises(ValueError, match="'nope'"), store.write():
        store.update_records_chunks(iter(parts))
    assert store.read_records(["match_type"])["match_type"].tolist() == ["x"] * 4
    with pytest.raises(ValueError, match="no key column"), store.write():
        store.update_records_chunks([pd.DataFrame({"match_type": ["y"]})])
    store.close()


def test_read_records_at_reads_exactly_the_fids_asked(tmp_path: Path) -> None:
    """Oracle: the same columns read whole and indexed by fid."""
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(_records(30), "t")
    every = store.read_records(["record_id", "source_line"])
    fids = store.record_fids()
    assert fids.tolist() == list(range(1, 31))
    for ask in ([3, 4, 5], [1, 7, 30], [12], []):
        got = store.read_records_at(["record_id", "source_line"], np.array(ask, dtype=np.int64))
        want = every.iloc[[f - 1 for f in ask]].reset_index(drop=True)
        assert got["record_id"].tolist() == want["record_id"].tolist()
        assert got["source_line"].tolist() == want["source_line"].tolist()
    with pytest.raises(ValueError, match="sorted"):
        store.read_records_at(["record_id"], np.array([5, 2]))
    store.close()


def test_pair_rows_iterate_like_zip_again_and_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "WRITE_CHUNK_ROWS", 3)
    a, b = np.arange(8, dtype=np.int64), np.arange(8, dtype=np.int64) * 10
    rows = store_mod.PairRows(a, b)
    assert list(rows) == list(zip(a.tolist(), b.tolist(), strict=True)) == list(rows) and len(rows) == 8
    with pytest.raises(ValueError, match="shapes"):
        store_mod.PairRows(a, b[:3])
