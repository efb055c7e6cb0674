"""Spatial join: hand-built polygons and points, CRS checks, accounting, the store edge."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.errors import CRSMismatchError
from geo_lead.sources import RECORD_COLUMNS
from geo_lead.spatial_join import join_records, join_store, points_from_lonlat, records_gdf
from geo_lead.store import open_store


def _squares() -> gpd.GeoDataFrame:
    # Two 1000 ft squares sharing the edge x = 1000.
    return gpd.GeoDataFrame({"NH_NAME": ["WEST", "EAST"]},
                            geometry=[box(0, 0, 1000, 1000), box(1000, 0, 2000, 1000)],
                            crs=settings.CRS_PROJECTED)


def test_hand_built_points() -> None:
    pts = gpd.GeoDataFrame(
        {"record_id": list("abcde")},
        geometry=[Point(500, 500), Point(1500, 500), Point(1000, 500), Point(5000, 5000), None],
        crs=settings.CRS_PROJECTED)
    out = join_records(pts, _squares())
    assert out["neighborhood"].tolist() == ["WEST", "EAST", "WEST", "", ""]
    assert out["join_status"].tolist() == ["joined", "joined", "joined", "outside", "not_geocoded"]
    assert list(out.index) == list(pts.index)
    assert out.crs == pts.crs


def test_join_reprojects_to_feet_and_keeps_input_crs() -> None:
    nh = _squares().to_crs(settings.CRS_STORE)
    pts = gpd.GeoDataFrame({"record_id": ["a"]}, geometry=[Point(250, 750)],
                           crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    out = join_records(pts, nh)
    assert out["neighborhood"].tolist() == ["WEST"]
    assert out.crs.to_epsg() == 4326


def test_crs_mismatch_names_both_inputs() -> None:
    pts = gpd.GeoDataFrame({"record_id": ["a"]}, geometry=[Point(-85.76, 38.25)], crs=settings.CRS_STORE)
    with pytest.raises(CRSMismatchError, match=r"records=EPSG:4326, neighborhoods=EPSG:2246"):
        join_records(pts, _squares())
    with pytest.raises(CRSMismatchError, match="records=none"):
        join_records(pts.set_crs(None, allow_override=True), _squares())


def test_points_from_lonlat_keeps_unmatched() -> None:
    frame = pd.DataFrame({"record_id": ["a", "b", "c"], "lon": [-85.76, np.nan, None],
                          "lat": [38.25, 38.2, None]})
    gdf = points_from_lonlat(frame)
    assert len(gdf) == 3
    assert gdf.geometry.isna().tolist() == [False, True, True]


def _store_with_records(path: Path, lonlat: list[tuple[float, float] | None]) -> None:
    rows = []
    for i, _ in enumerate(lonlat):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-05-01T10:00:00", source_line=i + 2,
                   source_file="x.csv", content_hash=f"h{i}")
        rows.append(row)
    store = open_store(path)
    with store.write():
        store.upsert_records(pd.DataFrame(rows), "2026-01-01T00:00:00Z")
        geo = pd.DataFrame({"record_id": [f"r{i}" for i in range(len(lonlat))],
                            "lon": [p[0] if p else np.nan for p in lonlat],
                            "lat": [p[1] if p else np.nan for p in lonlat]})
        store.update_records(geo)
    store.close()


def test_join_store_on_real_boundaries(store_path: Path) -> None:
    nh = load_neighborhoods()
    russell = nh[nh["NH_NAME"] == "RUSSELL"].geometry.iloc[0].representative_point()
    portland = nh[nh["NH_NAME"] == "PORTLAND"].geometry.iloc[0].representative_point()
    # Jeffersontown (suburban, outside the pre-merger city) and an unmatched record.
    lonlat = [(russell.x, russell.y), (portland.x, portland.y), (-85.5644, 38.1942), None]
    _store_with_records(store_path, lonlat)
    store = open_store(store_path)
    try:
        counts = join_store(store)
        assert counts == {"records": 4, "joined": 2, "outside": 1, "not_geocoded": 1}
        got = store.read_records(["record_id", "neighborhood"]).set_index("record_id")["neighborhood"]
        assert got.fillna("").tolist() == ["RUSSELL", "PORTLAND", "", ""]
        gdf = records_gdf(store, ["record_id"])
        assert gdf.crs.to_epsg() == 4326 and gdf.geometry.isna().sum() == 1
    finally:
        store.close()
