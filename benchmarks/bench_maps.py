"""Benchmark: a 100,000-record site-selection map and timeline, size and opening time.

Run from the project root::

    python benchmarks/bench_maps.py [--records 100000] [--distinct]

Records are SYNTHETIC: 100,000 draws (fixed seed) of real Jefferson County address points
(the OpenAddresses sample, else random points inside the real neighborhoods), with made-up
offences and dates over 24 months. The scores layer is the real neighborhoods with the
synthetic counts; the KDE layer is a 500 ft grid over the neighborhoods. `--distinct` jitters
every record to its own point (the worst case: no aggregation possible).

Prints: build time, HTML sizes, and the time headless Chromium takes from navigation to
the map's layers being in the DOM (load event + markers/polygons drawn), median of 3 runs.
Targets (issue #6): the map <= 10 MB, opening < 3 s.

With ``--store STORE [--next NEXT]`` it times instead, in this one process, what the outputs
stage renders from a store made by ``geo-lead run``: the map pages (`maps.write_maps`), the
report page (`report.build_report_html`; the data it reads from the store, collected first,
is not timed) and the zone page, each ``--repeats`` times:

* ``cold``: nothing reused (``GEO_LEAD_RESULT_CACHE=0``: every figure drawn, every page rendered);
* ``same``: again on the same store with the figure and page records of the previous build;
* ``next`` (with ``--next``, a copy of STORE after a rerun that added records): built on STORE
  first, then timed on NEXT (what changed is drawn again, the rest reused).

and prints each as seconds with the min-max over the repeats and as a share of ``cold``
(ratios from one process; absolute times move with the machine's load). The result cache is a
temporary folder of its own.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geo_lead import boundaries, maps, offline, settings

ADDRESSES_CSVS = (settings.REFERENCE_DIR / "openaddresses_jefferson_sample.csv",
                  Path("/work/shared/data/geocoding/openaddresses_jefferson_sample.csv"))
OFFENCES = ("POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN", "DRUG PARAPHERNALIA - BUY/POSSESS",
            "TRAFF IN CONT SUB, 1ST OFFENSE(CARFENTANIL OR FENTANIL)", "OVERDOSE",
            "POSSESSION OF MARIJUANA")


def synthetic_inputs(n: int, distinct: bool, seed: int = 1) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    nb = boundaries.load_neighborhoods()
    csv = next((p for p in ADDRESSES_CSVS if p.exists()), None)
    if csv is not None:
        pts = pd.read_csv(csv, usecols=["street", "longitude", "latitude"])
    else:
        sample = nb.to_crs(settings.CRS_PROJECTED).sample_points(100, rng=seed).explode().to_crs(4326)
        pts = pd.DataFrame({"street": [f"{i} BLOCK SYNTHETIC ST" for i in range(len(sample))],
                            "longitude": sample.x.to_numpy(), "latitude": sample.y.to_numpy()})
    pick = rng.integers(0, len(pts), n)
    lon = pts["longitude"].to_numpy()[pick]
    lat = pts["latitude"].to_numpy()[pick]
    if distinct:
        lon = lon + rng.normal(0, 0.0005, n)
        lat = lat + rng.normal(0, 0.0005, n)
    months = rng.integers(0, 24, n)
    recs = pd.DataFrame({
        "address_raw": pts["street"].to_numpy()[pick], "lon": lon, "lat": lat,
        "match_type": rng.choice(["exact", "interpolated", "block", "intersection"], n),
        "offense_text": rng.choice(OFFENCES, n),
        "occurred_at": [f"{2016 + m // 12}-{m % 12 + 1:02d}-15T12:00:00" for m in months],
    })
    recs["opiate"] = recs["offense_text"].str.contains("HEROIN|FENTANIL").astype(int)
    pts_g = gpd.GeoDataFrame(geometry=gpd.points_from_xy(recs.lon, recs.lat), crs=4326)
    joined = gpd.sjoin(pts_g, nb[["NH_NAME", "geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated()]
    recs["neighborhood"] = joined["NH_NAME"].fillna("").to_numpy()
    counts = recs.groupby("neighborhood").size()
    proj = nb.to_crs(settings.CRS_PROJECTED)
    scores = nb.rename(columns={"NH_NAME": "neighborhood"})
    scores["in_area"] = scores["is_named"].astype(bool)
    scores["area_sqmi"] = proj.area.to_numpy() / settings.SQFT_PER_SQMI
    scores["count"] = scores["neighborhood"].map(counts).fillna(0).astype(int)
    scores["density_per_sqmi"] = scores["count"] / scores["area_sqmi"]
    scores["score"] = scores["density_per_sqmi"] / scores["density_per_sqmi"].max()
    scores["rank"] = scores["score"].rank(ascending=False)
    scores["rank_low"], scores["rank_high"] = scores["rank"] - 1, scores["rank"] + 1
    xmin, ymin, xmax, ymax = proj.total_bounds
    xs, ys = np.meshgrid(np.arange(xmin, xmax, 500.0), np.arange(ymin, ymax, 500.0))
    cells = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 500.0, ys.ravel() + 500.0)
    dens = rng.gamma(0.6, 40.0, len(cells))
    kde = gpd.GeoDataFrame({"density_per_sqmi": dens, "is_hotspot": dens > np.quantile(dens, 0.95),
                            "bandwidth_ft": 1200.0}, geometry=cells, crs=settings.CRS_PROJECTED)
    return {"records": recs, "scores": scores, "kde": kde, "neighborhoods": nb}


def open_time_s(path: Path, selector: str, runs: int = 3, done_js: str | None = None) -> float | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not installed: opening time not measured")
        return None
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_ARGS

    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        for _ in range(runs):
            page = browser.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:", "blob:")) else r.abort())
            t0 = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_selector(selector, timeout=60_000)
            if done_js:
                page.wait_for_function(done_js, timeout=120_000)
            times.append(time.perf_counter() - t0)
            page.close()
        browser.close()
    return statistics.median(times)


def _render_outputs(store_path: Path, out: Path) -> dict[str, float]:
    """Seconds of the maps, the report page and the zone page rendered from `store_path` into `out`."""
    from geo_lead import pipeline
    from geo_lead.maps import read_layer, read_map_records, write_maps
    from geo_lead.report import build_report_html, collect_report_data
    from geo_lead.store import open_store
    from geo_lead.zone_page import write_page

    store = open_store(store_path)
    try:
        records = pipeline.analysis_records(store)
        map_records = read_map_records(store, read_layer(store, "scores"), flagged_only=True)
        data = collect_report_data(store, records)
        streets = pipeline.zone_street_index()
        times = {}
        t0 = time.perf_counter()
        write_maps(store, out, offline=True, prefetched=map_records)
        times["maps"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_report_html(data)
        times["report"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_page(out / "zone_check.html", streets=streets)
        times["zone page"] = time.perf_counter() - t0
    finally:
        store.close()
    times["total"] = sum(times.values())
    return times


def reuse_main(store: Path, nxt: Path | None, repeats: int) -> None:
    """`--store`: cold / same / next timings of the rendered outputs (see the module docstring)."""
    import os

    work = Path(tempfile.mkdtemp(prefix="bench_outputs_"))
    os.environ["GEO_LEAD_RESULT_CACHE_DIR"] = str(work / "results")
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "same": [], "next": []}
    for i in range(repeats):
        out = work / f"out{i}"
        os.environ["GEO_LEAD_RESULT_CACHE"] = "0"
        runs["cold"].append(_render_outputs(store, out))
        os.environ["GEO_LEAD_RESULT_CACHE"] = "1"
        shutil.rmtree(work / "results", ignore_errors=True)
        _render_outputs(store, out)  # the records of this build
        runs["same"].append(_render_outputs(store, out))
        if nxt is not None:
            runs["next"].append(_render_outputs(nxt, out))
    print(f"store {store}" + (f", next {nxt}" if nxt else "") + f"; {repeats} repeats; {_load()}")
    cold = {k: statistics.median(r[k] for r in runs["cold"]) for k in runs["cold"][0]}
    for kind, rows in runs.items():
        if not rows:
            continue
        cells = []
        for part in rows[0]:
            vals = [r[part] for r in rows]
            med = statistics.median(vals)
            cells.append(f"{part} {med:.2f} s ({min(vals):.2f}-{max(vals):.2f}, {med / cold[part]:.0%} of cold)")
        print(f"  {kind:>4}: " + "; ".join(cells))
    shutil.rmtree(work, ignore_errors=True)


def _load() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--distinct", action="store_true", help="every record at its own point (worst case)")
    ap.add_argument("--store", type=Path, help="time the outputs rendered from this store (see above)")
    ap.add_argument("--next", type=Path, help="with --store: the same store after a rerun that added records")
    ap.add_argument("--repeats", type=int, default=3, help="with --store: repeats of each measurement")
    args = ap.parse_args()
    if args.store is not None:
        reuse_main(args.store, args.next, args.repeats)
        return
    t0 = time.perf_counter()
    inp = synthetic_inputs(args.records, args.distinct)
    t_inputs = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp(prefix="bench_maps_"))
    t0 = time.perf_counter()
    points = maps.aggregate_points(inp["records"])
    site = maps.build_site_map(maps.SiteMapInputs(inp["scores"], inp["kde"], None, None, points,
                                                  neighborhoods=inp["neighborhoods"]))
    site_path = offline.save_map(site, out / "site_selection.html")
    t_site = time.perf_counter() - t0
    t0 = time.perf_counter()
    timeline = maps.build_timeline_map(inp["records"], inp["scores"], name_col="neighborhood")
    tl_path = offline.save_map(timeline, out / "timeline.html")
    t_tl = time.perf_counter() - t0
    site_open = open_time_s(site_path, "path.geo-lead-score")
    site_all = open_time_s(site_path, "path.geo-lead-score", done_js="window.geoLeadPointsLoaded === true")
    tl_open = open_time_s(tl_path, "path.geo-lead-timeline-areas")
    mb = lambda p: p.stat().st_size / 1e6  # noqa: E731
    print(f"records: {args.records:,} ({'distinct points' if args.distinct else 'drawn from real address points'}); "
          f"block points on the map: {len(points):,}; KDE cells: {len(inp['kde']):,} (synthetic inputs built in {t_inputs:.1f} s)")
    print(f"site_selection.html: {mb(site_path):.2f} MB, built in {t_site:.1f} s, "
          f"opens in {site_open:.2f} s, all points clustered after {site_all:.2f} s "
          "(medians of 3, headless Chromium)" if site_open is not None else
          f"site_selection.html: {mb(site_path):.2f} MB, built in {t_site:.1f} s")
    print(f"timeline.html:       {mb(tl_path):.2f} MB, built in {t_tl:.1f} s, "
          f"opens in {tl_open:.2f} s (median of 3, headless Chromium)" if tl_open is not None else
          f"timeline.html: {mb(tl_path):.2f} MB, built in {t_tl:.1f} s")
    ok = mb(site_path) <= 10 and (site_all is None or site_all < 3)
    print(f"target (map <= 10 MB, open with every point clustered < 3 s): {'met' if ok else 'NOT met'}")
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
