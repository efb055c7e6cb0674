"""The GeoPackage RTree index of every feature layer the store writes (issue 19, item 5).

Oracles: GDAL's own bbox read (which uses the index) against a shapely filter of all the
points, and the index's boxes against the stored points, after inserts, moves and clears.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geo_lead.sources import RECORD_COLUMNS
from geo_lead.store import RTREE_EXTENSION, open_store

BBOX = (-85.80, 38.20, -85.70, 38.28)  # minx, miny, maxx, maxy: west/central Louisville


def _records(n: int, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-05-01T10:00:00", source_line=i + 2,
                   source_file="x.csv", content_hash=f"h{i}")
        rows.append(row)
    lon = rng.uniform(-85.95, -85.45, n)
    lat = rng.uniform(38.00, 38.40, n)
    return pd.DataFrame(rows), lon, lat


def _index_boxes(path: Path, table: str) -> dict[int, tuple[float, float, float, float]]:
    conn = sqlite3.connect(path)
    try:
        return {int(r[0]): tuple(r[1:]) for r in conn.execute(
            f"SELECT id, minx, maxx, miny, maxy FROM rtree_{table}_geom")}
    finally:
        conn.close()


def _stored_points(path: Path) -> dict[int, tuple[float, float]]:
    conn = sqlite3.connect(path)
    try:
        return {int(f): (x, y) for f, x, y in conn.execute(
            "SELECT fid, lon, lat FROM records WHERE lon IS NOT NULL AND lat IS NOT NULL")}
    finally:
        conn.close()


def _assert_index_matches_points(path: Path) -> None:
    pts = _stored_points(path)
    boxes = _index_boxes(path, "records")
    assert set(boxes) == set(pts)
    for fid, (x, y) in pts.items():
        minx, maxx, miny, maxy = boxes[fid]
        # the rtree stores 32-bit floats rounded outward
        assert minx <= x <= maxx and miny <= y <= maxy and maxx - minx < 1e-4 and maxy - miny < 1e-4


def test_records_index_follows_inserts_moves_and_clears(tmp_path: Path) -> None:
    path = tmp_path / "s.gpkg"
    frame, lon, lat = _records(400)
    store = open_store(path)
    with store.write():
        store.upsert_records(frame, "2026-01-01T00:00:00Z")
        assert store.count("rtree_records_geom") == 0  # nothing placed yet
        store.update_records(pd.DataFrame({"record_id": frame["record_id"], "lon": lon, "lat": lat}))
    store.close()
    _assert_index_matches_points(path)

    # GDAL sees the index and its bbox read equals a shapely filter of every point
    info = pyogrio.read_info(path, layer="records")
    assert info["capabilities"]["fast_spatial_filter"]
    got = pyogrio.read_dataframe(path, layer="records", bbox=BBOX, columns=["record_id"])
    box = shapely.box(*BBOX)
    want = frame["record_id"][shapely.intersects(box, shapely.points(lon, lat))]
    assert sorted(got["record_id"]) == sorted(want) and len(want) > 10

    # move some points, clear others, add new records: the index keeps in step
    store = open_store(path)
    with store.write():
        moved = pd.DataFrame({"record_id": [f"r{i}" for i in range(0, 50)],
                              "lon": lon[:50] + 0.01, "lat": lat[:50] - 0.01})
        store.update_records(moved)
        store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(50, 60)],
                                           "lon": [np.nan] * 10, "lat": [np.nan] * 10}))
        more, lon2, lat2 = _records(10, seed=8)
        more["record_id"] = [f"n{i}" for i in range(10)]
        store.upsert_records(more, "2026-01-02T00:00:00Z")
        store.update_records(pd.DataFrame({"record_id": more["record_id"], "lon": lon2, "lat": lat2}))
        ids = store.spatial_index_ids("records", BBOX)
    store.close()
    _assert_index_matches_points(path)
    pts = _stored_points(path)
    inside = sorted(f for f, (x, y) in pts.items() if BBOX[0] <= x <= BBOX[2] and BBOX[1] <= y <= BBOX[3])
    assert set(inside) <= set(ids)  # the index's candidates hold every point in the box

    # an edit through GDAL (as QGIS makes) keeps it in step too (GDAL's own ST_* functions)
    extra = gpd.GeoDataFrame({"record_id": ["g1"], "content_hash": ["hg"]},
                             geometry=[shapely.Point(-85.75, 38.25)], crs=4326)
    pyogrio.write_dataframe(extra, path, layer="records", append=True)
    assert len(pyogrio.read_dataframe(path, layer="records", bbox=(-85.7501, 38.2499, -85.7499, 38.2501))) == 1


def test_replaced_feature_layers_get_an_index(tmp_path: Path) -> None:
    path = tmp_path / "s.gpkg"
    polys = gpd.GeoDataFrame({"name": ["a", "b", "c"]}, geometry=[
        shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 4), shapely.Polygon()], crs=4326)
    store = open_store(path)
    store.replace_features("scores", polys, "POLYGON")
    assert _index_boxes(path, "scores") == {1: (0.0, 1.0, 0.0, 1.0), 2: (2.0, 3.0, 2.0, 4.0)}
    store.replace_features("scores", polys.iloc[1:], "POLYGON")  # replaced: the index follows
    assert _index_boxes(path, "scores") == {1: (2.0, 3.0, 2.0, 4.0)}
    ext = store.conn.execute("SELECT table_name, column_name, extension_name FROM gpkg_extensions "
                             "ORDER BY table_name").fetchall()
    assert ext == [("records", "geom", RTREE_EXTENSION[0]), ("scores", "geom", RTREE_EXTENSION[0])]
    store.close()
    got = pyogrio.read_dataframe(path, layer="scores", bbox=(2.5, 2.5, 2.6, 2.6))
    assert list(got["name"]) == ["b"]
