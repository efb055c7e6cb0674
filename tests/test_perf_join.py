"""The prepared point-in-polygon kernel of the spatial join (issue 19, item 3).

Oracle: the join as it was, ``geopandas.sjoin(predicate="intersects")`` and the lowest unit
position per point, on 200k generated points plus points placed exactly on the units' edges
and vertices (where the shared-edge rule decides).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_lead import settings, spatial_join
from geo_lead.boundaries import load_neighborhoods


def _sjoin_first(x: np.ndarray, y: np.ndarray, polys: gpd.GeoDataFrame) -> tuple[np.ndarray, int]:
    pts = gpd.GeoDataFrame({"rec_pos": np.arange(len(x))}, geometry=shapely.points(x, y), crs=polys.crs)
    hits = gpd.sjoin(pts, polys.assign(nh_pos=np.arange(len(polys)))[["nh_pos", "geometry"]],
                     how="inner", predicate="intersects").sort_values(["rec_pos", "nh_pos"])
    ties = int(hits["rec_pos"].duplicated().sum())
    first = hits.drop_duplicates("rec_pos")
    unit = np.full(len(x), -1, dtype=np.int64)
    unit[first["rec_pos"].to_numpy()] = first["nh_pos"].to_numpy()
    return unit, ties


def _test_points(polys: gpd.GeoDataFrame, n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(19)
    minx, miny, maxx, maxy = polys.total_bounds
    pad = 0.1 * (maxx - minx)
    x = rng.uniform(minx - pad, maxx + pad, n)
    y = rng.uniform(miny - pad, maxy + pad, n)
    # every vertex of every unit, and the midpoint of every edge: on the edges shared by units
    rings = shapely.get_coordinates(shapely.boundary(np.asarray(polys.geometry.values)))
    mids = (rings[:-1] + rings[1:]) / 2
    return np.concatenate([x, rings[:, 0], mids[:, 0]]), np.concatenate([y, rings[:, 1], mids[:, 1]])


def test_kernel_equals_the_sjoin_it_replaces() -> None:
    polys = load_neighborhoods().to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    x, y = _test_points(polys)
    want, want_ties = _sjoin_first(x, y, polys)
    got, got_ties = spatial_join.first_unit_containing(x, y, np.asarray(polys.geometry.values))
    assert np.array_equal(got, want)
    assert got_ties == want_ties and got_ties > 100  # the edge points do tie
    assert (got >= 0).sum() > 50_000 and (got < 0).sum() > 50_000


def test_kernel_skips_missing_units_and_keeps_file_order() -> None:
    a, b = shapely.box(0, 0, 2, 2), shapely.box(2, 0, 4, 2)  # shared edge x = 2
    x = np.array([1.0, 2.0, 3.0, 5.0, 2.0])
    y = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    unit, ties = spatial_join.first_unit_containing(x, y, np.array([None, a, shapely.Polygon(), b], dtype=object))
    assert unit.tolist() == [1, 1, 3, -1, 1] and ties == 2
    unit, ties = spatial_join.first_unit_containing(x, y, np.array([b, a], dtype=object))
    assert unit.tolist() == [1, 0, 0, -1, 0] and ties == 2


def test_join_records_unchanged_on_generated_points() -> None:
    nh = load_neighborhoods()
    polys = nh.to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    x, y = _test_points(polys, n=20_000)
    lonlat = gpd.GeoSeries(shapely.points(x, y), crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    frame = pd.DataFrame({"record_id": [f"r{i}" for i in range(len(x))],
                          "lon": lonlat.x.to_numpy(), "lat": lonlat.y.to_numpy()})
    frame.loc[::97, ["lon", "lat"]] = np.nan  # some not geocoded
    recs = spatial_join.points_from_lonlat(frame)
    joined = spatial_join.join_records(recs, nh.to_crs(settings.CRS_STORE))
    # oracle on the same projected points the join uses
    has = ~(recs.geometry.isna() | recs.geometry.is_empty).to_numpy()
    proj = recs.geometry[has].to_crs(settings.CRS_PROJECTED)
    want, _ = _sjoin_first(proj.x.to_numpy(), proj.y.to_numpy(), polys)
    names = np.full(len(recs), "", dtype=object)
    names[np.flatnonzero(has)[want >= 0]] = nh["NH_NAME"].to_numpy()[want[want >= 0]]
    assert joined["neighborhood"].tolist() == names.tolist()
    assert spatial_join.join_counts(joined)["not_geocoded"] == int((~has).sum())
