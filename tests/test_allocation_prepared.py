"""The join's prepared boundary tests against brute force on the real neighborhoods: every
placed point's units within the tolerance by a plain ``distance`` loop over all units, and
beat settling by a plain loop over (record, candidate) pairs. Points are seeded and lie near
the units' edges, where the answers are decided."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo_lead import settings
from geo_lead.allocation import SEPARATOR, ProjectedUnits, near_units_xy
from geo_lead.beats import load_beats, normalize_beat
from geo_lead.boundaries import load_neighborhoods
from geo_lead.spatial_join import join_records, points_from_lonlat

FT = settings.CRS_PROJECTED


def _near_edge_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    polys = load_neighborhoods().to_crs(FT).geometry.to_numpy()
    rings = shapely.boundary(polys)
    lens = shapely.length(rings)
    pick = rng.choice(len(rings), size=n, p=lens / lens.sum())
    xy = shapely.get_coordinates(shapely.line_interpolate_point(rings[pick], rng.uniform(0, 1, n) * lens[pick]))
    xy += rng.normal(size=(n, 2)) * rng.choice([0.0, 20.0, 80.0, 400.0], size=n)[:, None]
    verts = shapely.get_coordinates(polys)  # a tenth exactly on vertices: on shared edges
    xy[: n // 10] = verts[rng.integers(0, len(verts), n // 10)]
    return xy[:, 0], xy[:, 1]


def _brute_near(x: np.ndarray, y: np.ndarray, tol: float) -> list[str]:
    nh = load_neighborhoods().to_crs(FT)
    names, polys = nh["NH_NAME"].astype(str).tolist(), nh.geometry.tolist()
    out = []
    for px, py in zip(x, y, strict=True):
        pt = shapely.Point(px, py)
        near = [name for name, poly in zip(names, polys, strict=True) if poly.distance(pt) <= tol]
        out.append(SEPARATOR.join(near) if len(near) >= 2 else "")
    return out


@pytest.mark.parametrize("tol", [0.0, 50.0, 300.0])
def test_near_units_match_a_distance_loop(tol: float) -> None:
    x, y = _near_edge_points(1500, seed=7)
    units = ProjectedUnits.from_frame(load_neighborhoods())
    placed = np.zeros(len(x), dtype=bool)
    for poly in units.polygons:  # the oracle's own placement: any unit covering the point
        placed |= shapely.intersects_xy(poly, x, y)
    want = np.where(placed, _brute_near(x, y, tol), "")
    got = near_units_xy(x[placed], y[placed], units, tol)
    assert got.tolist() == want[placed].tolist()
    assert any(SEPARATOR in g for g in got)  # the points do test shared edges


def test_join_records_boundary_units_and_settling_match_loops() -> None:
    x, y = _near_edge_points(800, seed=11)
    beats = load_beats()
    lonlat = gpd.GeoSeries(shapely.points(x, y), crs=FT).to_crs(settings.CRS_STORE)
    own_beat = gpd.sjoin(gpd.GeoDataFrame(geometry=gpd.GeoSeries(shapely.points(x, y), crs=FT)).to_crs(beats.crs),
                         beats[["beat", "geometry"]], how="left", predicate="intersects")
    own_beat = own_beat[~own_beat.index.duplicated()]["beat"].fillna("").astype(str).to_numpy(object)
    recs = points_from_lonlat(pd.DataFrame({"lon": lonlat.x, "lat": lonlat.y, "beat": own_beat}))
    nh = load_neighborhoods().to_crs(settings.CRS_STORE)
    plain = join_records(recs, nh)
    tol, radius = settings.BOUNDARY_TOLERANCE_FT, settings.BEAT_SETTLE_RADIUS_FT
    placed = (plain["neighborhood"] != "").to_numpy()
    assert plain["boundary_units"].tolist() == np.where(placed, _brute_near(x, y, tol), "").tolist()
    settled = join_records(recs, nh, beats=beats)["boundary_units"].tolist()
    # oracle: a candidate counts when the point is closer than the radius to
    # (its beat shrunk by the tolerance) n (the candidate unit), polygonal parts only
    shrunk = {normalize_beat(b): g.buffer(-tol) for b, g in zip(beats["beat"], beats.to_crs(FT).geometry, strict=True)}
    unit_geom = dict(zip(nh["NH_NAME"].astype(str), nh.to_crs(FT).geometry, strict=True))
    moved = 0
    for i, listed in enumerate(plain["boundary_units"]):
        want = listed
        beat = normalize_beat(own_beat[i])
        if SEPARATOR in listed and beat in shrunk:
            pt = shapely.Point(x[i], y[i])
            near = []
            for unit in listed.split(SEPARATOR):
                cut = shrunk[beat].intersection(unit_geom[unit])
                parts = [g for g in shapely.get_parts(cut) if g.geom_type == "Polygon"]
                if parts and shapely.union_all(parts).area > 0 and shapely.union_all(parts).distance(pt) < radius:
                    near.append(unit)
            if len(near) == 1:
                want, moved = near[0], moved + 1
        assert settled[i] == want, (i, listed, beat)
    assert moved > 0


def test_a_point_just_inside_the_tolerance_at_an_inner_corner_is_shared() -> None:
    """buffer(-tol) draws inner corners as chords, up to 0.24 ft nearer the edge than 50 ft: the
    deep-core skip must not drop a point there. This one (found by bench_limits' plain-library
    limit among 300,000 uniform points) lies inside HIKES POINT, 49.98 ft from UNNAMED #49."""
    x, y = 1243433.748319058, 265880.811328494
    nh = load_neighborhoods()
    polys = nh.to_crs(FT).set_index("NH_NAME").geometry
    assert polys["HIKES POINT"].contains(shapely.Point(x, y))
    assert 49.9 < polys["UNNAMED #49"].distance(shapely.Point(x, y)) < 50.0  # the oracle
    lonlat = gpd.GeoSeries([shapely.Point(x, y)], crs=FT).to_crs(settings.CRS_STORE)
    recs = points_from_lonlat(pd.DataFrame({"lon": lonlat.x, "lat": lonlat.y}))
    got = join_records(recs, nh.to_crs(settings.CRS_STORE), tolerance_ft=50.0, beats=None)
    assert got["neighborhood"].tolist() == ["HIKES POINT"]
    assert set(got["boundary_units"].iloc[0].split(SEPARATOR)) == {"HIKES POINT", "UNNAMED #49"}


def test_units_and_cores_are_made_once_per_distinct_input() -> None:
    """`ProjectedUnits.from_frame` and the join's shrunk cores are memoised per process by
    their inputs' content: equal inputs hit (same answers as with empty memos, the brute-force
    loop's), and a change of the CRS, a name, a geometry or the tolerance misses."""
    from geo_lead import allocation

    nh = load_neighborhoods()
    x, y = _near_edge_points(600, seed=11)
    allocation._UNITS_MEMO.clear()
    allocation._CORE_MEMO.clear()
    units = ProjectedUnits.from_frame(nh)
    assert len(allocation._UNITS_MEMO) == 1
    again = ProjectedUnits.from_frame(nh.copy())
    assert len(allocation._UNITS_MEMO) == 1  # a hit
    assert all(a.equals(b) for a, b in zip(units.polygons, again.polygons, strict=True))
    placed = np.zeros(len(x), dtype=bool)
    for poly in units.polygons:
        placed |= shapely.intersects_xy(poly, x, y)
    own = np.full(len(x), -1)
    for pos, poly in enumerate(units.polygons):
        own[(own < 0) & shapely.intersects_xy(poly, x, y)] = pos
    want = np.where(placed, _brute_near(x, y, 50.0), "")[placed]
    first = near_units_xy(x[placed], y[placed], units, 50.0, own[placed])
    assert len(allocation._CORE_MEMO) == 1
    assert near_units_xy(x[placed], y[placed], again, 50.0, own[placed]).tolist() == first.tolist() == want.tolist()
    assert len(allocation._CORE_MEMO) == 1  # the same cores
    near_units_xy(x[placed], y[placed], units, 60.0, own[placed])
    assert len(allocation._CORE_MEMO) == 2  # another tolerance: other cores
    moved = nh.copy()
    moved.loc[moved.index[0], "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], 1e-6, 0)
    changed = [nh.to_crs(FT), nh.assign(NH_NAME=nh["NH_NAME"].astype(str) + "x"), moved]
    for frame in changed:
        before = len(allocation._UNITS_MEMO)
        ProjectedUnits.from_frame(frame)
        assert len(allocation._UNITS_MEMO) == min(before + 1, allocation.GEOMETRY_MEMO_SIZE)
        assert allocation._digest(frame.crs.to_wkt(), frame["NH_NAME"].astype(str), frame.geometry.to_numpy()) \
            not in {allocation._digest(nh.crs.to_wkt(), nh["NH_NAME"].astype(str), nh.geometry.to_numpy())}
    moved_units = ProjectedUnits.from_frame(moved)
    near_units_xy(x[placed], y[placed], moved_units, 50.0, own[placed])
    assert len(allocation._CORE_MEMO) == 3  # moved geometry: other cores


def test_geometry_memos_are_per_thread() -> None:
    """The join prepares the memoised geometry and queries it; GEOS does not allow two threads
    to do that at once on one geometry (the dask engine joins partitions in threads), so each
    thread memoises its own: a thread's units are not another's, and equal in value."""
    import threading

    from geo_lead import allocation

    nh = load_neighborhoods()
    allocation._UNITS_MEMO.clear()
    mine = ProjectedUnits.from_frame(nh)
    assert len(allocation._UNITS_MEMO) == 1
    theirs: list[object] = []

    def other() -> None:
        theirs.append((len(allocation._UNITS_MEMO), ProjectedUnits.from_frame(nh), len(allocation._UNITS_MEMO)))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    before, units, after = theirs[0]  # type: ignore[misc]
    assert (before, after, len(allocation._UNITS_MEMO)) == (0, 1, 1)
    assert not any(a is b for a, b in zip(units.polygons, mine.polygons, strict=True))
    assert shapely.equals_exact(units.polygons, mine.polygons, tolerance=0).all()
