"""Timing of the spatial join, population interpolation and scoring (prints figures).

Points are drawn uniformly over the LOJIC neighborhoods' bounding box (synthetic positions
for timing only; nothing is written). Run: python benchmarks/bench_scoring.py [N]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.boundaries import build_first_division, first_division_members, load_neighborhoods
from geo_lead.population import interpolate_population, load_tracts
from geo_lead.scoring import score_neighborhoods
from geo_lead.spatial_join import join_records, points_from_lonlat


def main(n: int = 200_000) -> None:
    rng = np.random.default_rng(0)
    nh = load_neighborhoods()
    t0 = time.perf_counter()
    pop = interpolate_population(load_tracts(), nh).population
    t_pop = time.perf_counter() - t0
    x0, y0, x1, y1 = nh.total_bounds
    frame = pd.DataFrame({"lon": rng.uniform(x0, x1, n), "lat": rng.uniform(y0, y1, n)})
    frame.loc[rng.random(n) < 0.1, ["lon", "lat"]] = np.nan  # 10% not geocoded
    t0 = time.perf_counter()
    joined = join_records(points_from_lonlat(frame), nh)
    t_join = time.perf_counter() - t0
    joined["occurred_at"] = "2017-06-01T00:00:00"
    joined["reported_at"] = "2017-06-01T00:00:00"
    joined["source_file"] = "crime_data_2017_drug_sample.csv"
    joined["lead_eligible"] = rng.random(n) < 0.3
    fd = build_first_division(nh, first_division_members(nh, None), "lmpd-description")
    timings = {}
    for area in ("first-division", "city"):
        t0 = time.perf_counter()
        score_neighborhoods(joined, nh, pop, area=area, first_division=fd,
                            n_boot=settings.BOOTSTRAP_REPLICATES)
        timings[area] = time.perf_counter() - t0
    print(f"population interpolation (216 tracts -> 90 units): {t_pop:.2f} s")
    print(f"spatial join of {n:,} records (90% geocoded): {t_join:.2f} s "
          f"({n / t_join:,.0f} records/s)")
    for area, sec in timings.items():
        print(f"score_neighborhoods, {area}, {n:,} records, {settings.BOOTSTRAP_REPLICATES} bootstrap "
              f"replicates: {sec:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
