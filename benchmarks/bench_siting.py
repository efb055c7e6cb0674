"""Time the siting hot paths on the real LOJIC neighborhoods (records built in code).

    python benchmarks/bench_siting.py [--points 20000]

Prints: Gi* with 999 conditional permutations on a 1,000 ft grid over the First Division
(downtown, Butchertown, Phoenix Hill, Portland, Russell), the exact best contiguous zone
(MILP, CBC) for k = 1..6 over the First Division and over all 69 named neighborhoods, KDE,
and the whole `site` answer. Records are uniform random points (fixed seed) with a heavier
density in a few units, so the numbers measure speed, not Louisville.
"""

from __future__ import annotations

import argparse
import platform
import time

import geopandas as gpd
import numpy as np
import shapely

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.hotspots import gistar_grid, indicator_points, kde_surface, study_area
from geo_lead.siting import SiteParams, site
from geo_lead.zones_milp import best_zone, queen_adjacency

FIRST_DIVISION = ["BUTCHERTOWN", "CENTRAL BUSINESS DISTRICT", "PHOENIX HILL", "PORTLAND", "RUSSELL"]


def records(neighborhoods: gpd.GeoDataFrame, n: int, seed: int = 1) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED)
    heavy = proj["NH_NAME"].isin(["RUSSELL", "PORTLAND", "SHAWNEE", "CENTRAL BUSINESS DISTRICT"])
    weights = np.where(heavy, 8.0, 1.0) * proj.area.to_numpy()
    units = rng.choice(len(proj), size=n, p=weights / weights.sum())
    pts = []
    for u in units:
        g = proj.geometry.iloc[u]
        minx, miny, maxx, maxy = g.bounds
        while True:
            p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if g.contains(p):
                pts.append(p)
                break
    month = rng.integers(1, 13, n)
    return gpd.GeoDataFrame({
        "occurred_at": [f"{2016 + i % 2}-{m:02d}-15" for i, m in enumerate(month)],
        "lead_eligible": True, "incident_number": np.arange(n).astype(str),
        "neighborhood": np.where(proj["is_named"].to_numpy()[units], proj["NH_NAME"].to_numpy()[units], ""),
    }, geometry=pts, crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)


def timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<62} {time.perf_counter() - t0:8.2f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=20_000)
    args = ap.parse_args()
    print(f"geo_lead siting benchmark: {platform.python_version()}, {platform.machine()}, "
          f"{args.points:,} records citywide")
    nh = load_neighborhoods()
    recs = records(nh, args.points)
    pts, _ = indicator_points(recs)
    area = study_area(nh, FIRST_DIVISION)
    fd_pts = pts[pts.within(area)]
    grid = timed(f"Gi* grid 1,000 ft over First Division, 999 perms ({len(fd_pts):,} pts)",
                 gistar_grid, fd_pts, area, 1000.0, None, 999)
    print(f"    {len(grid)} cells, {int(grid['label'].str.startswith('hot').sum())} hot")
    timed("KDE 500 ft surface over First Division (likelihood-CV bandwidth)", kde_surface, fd_pts, area, 500.0)
    w_unit = recs.groupby("neighborhood").size().to_dict()
    for label, names in (("First Division (5 units)", FIRST_DIVISION),
                         ("all named neighborhoods (69 units)", sorted(nh.loc[nh["is_named"], "NH_NAME"]))):
        adj = queen_adjacency(nh, names)
        t0 = time.perf_counter()
        for k in range(1, min(6, len(adj)) + 1):
            zone, total = best_zone(w_unit, adj, k)
            if label.startswith("all"):
                print(f"    k={k}: {' + '.join(zone)} ({total:.0f})")
        print(f"{'MILP best zone k=1..min(6,n), ' + label:<62} {time.perf_counter() - t0:8.2f} s")
    timed("site(): full answer, First Division, 500 bootstrap resamples", site, recs, nh, FIRST_DIVISION,
          params=SiteParams())
    timed("site(): full answer, all named neighborhoods (--area city)", site, recs, nh,
          sorted(nh.loc[nh["is_named"], "NH_NAME"]), params=SiteParams())


if __name__ == "__main__":
    main()
