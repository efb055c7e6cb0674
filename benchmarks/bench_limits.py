"""Limits benchmark: each heavy stage of geo_lead beside the fastest plain-library way to do it.

SYNTHETIC DATA, FOR TIMING ONLY: the CSV rows are the shipped LMPD rows replicated with new
incident numbers (`bench_scale.make_synthetic`), the points uniform over the neighborhoods'
bounding box. Nothing here is a real incident.

In one process, on the same generated data, best of ``--repeat`` runs per step:

* join        -- `spatial_join.join_records` (first unit + boundary units, no beats) against
                 the same semantics written in plain pyproj/shapely/numpy (the limit: one
                 transform, the prepared kernel, then an STRtree ``dwithin`` query or prepared
                 units' ``dwithin``, the faster) and against the bare point-in-polygon kernel
                 `spatial_join.first_unit_containing`; the old ``sjoin(predicate="intersects")``
                 + first unit against the kernel;
* store write -- geo_lead's write of the records (insert at ingest, then the geocode's points
                 and the join's neighborhoods as updates) against ``pyogrio.write_dataframe``
                 of the same finished frame to a GeoPackage with its spatial index;
* flags       -- `indicators.classify` against a plain factorize of each record's text + the
                 rules once per distinct text + numpy takes (same columns, checked equal);
* CSV read    -- `sources.iter_chunks` (parse, clean, dates, hashes) against
                 ``pyarrow.csv.read_csv`` + vectorised trim + two ``to_datetime``.

It prints seconds and the ratio geo_lead / limit (the issue's target: within 2x).

usage::

    python benchmarks/bench_limits.py                 # 200,000 rows
    python benchmarks/bench_limits.py --rows 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402

from geo_lead import settings, spatial_join  # noqa: E402
from geo_lead.boundaries import load_neighborhoods  # noqa: E402


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _sjoin_first(x: np.ndarray, y: np.ndarray, polys: gpd.GeoDataFrame) -> np.ndarray:
    pts = gpd.GeoDataFrame({"rec_pos": np.arange(len(x))}, geometry=shapely.points(x, y), crs=polys.crs)
    hits = gpd.sjoin(pts, polys.assign(nh_pos=np.arange(len(polys)))[["nh_pos", "geometry"]],
                     how="inner", predicate="intersects").sort_values(["rec_pos", "nh_pos"])
    first = hits.drop_duplicates("rec_pos")
    unit = np.full(len(x), -1, dtype=np.int64)
    unit[first["rec_pos"].to_numpy()] = first["nh_pos"].to_numpy()
    return unit


def _limit_join(lon: np.ndarray, lat: np.ndarray, geoms: np.ndarray, tol: float,
                strtree: bool) -> tuple[np.ndarray, np.ndarray]:
    """join_records' semantics in plain pyproj/shapely/numpy: first unit per point and the
    points within `tol` of two or more units (no frames, no names, no deep-core skip).

    One transform to feet, the prepared kernel, then either ``STRtree.query(points,
    predicate="dwithin")`` or each prepared unit's ``dwithin`` on its bounding-box candidates.
    """
    from pyproj import Transformer

    x, y = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True).transform(lon, lat)
    unit, _ = spatial_join.first_unit_containing(x, y, geoms)
    placed = np.flatnonzero(unit >= 0)
    pts = shapely.points(x[placed], y[placed])
    if strtree:
        rec, _nh = shapely.STRtree(geoms).query(pts, predicate="dwithin", distance=tol)
    else:
        px, py = x[placed], y[placed]
        parts = []
        for poly in geoms:
            minx, miny, maxx, maxy = shapely.bounds(poly)
            cand = np.flatnonzero((px >= minx - tol) & (px <= maxx + tol) & (py >= miny - tol) & (py <= maxy + tol))
            shapely.prepare(poly)
            parts.append(cand[shapely.dwithin(poly, pts[cand], tol)])
        rec = np.concatenate(parts)
    shared = np.zeros(len(x), dtype=bool)
    shared[placed] = np.bincount(rec, minlength=len(placed)) >= 2
    return unit, shared


def bench_join(n: int, repeat: int) -> list[tuple[str, float, float]]:
    """join_records (first unit + boundary units, no beats) beside the bare kernel, the same
    semantics in plain libraries (the limit: the faster of its two variants) and the old sjoin."""
    nh = load_neighborhoods()
    polys = nh.to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    rng = np.random.default_rng(19)
    minx, miny, maxx, maxy = polys.total_bounds
    x, y = rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)
    lonlat = gpd.GeoSeries(shapely.points(x, y), crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    lon, lat = lonlat.x.to_numpy(), lonlat.y.to_numpy()
    recs = spatial_join.points_from_lonlat(pd.DataFrame({"lon": lon, "lat": lat}))
    nh4326 = nh.to_crs(settings.CRS_STORE)
    geoms = np.asarray(polys.geometry.values)
    tol = settings.BOUNDARY_TOLERANCE_FT
    ours = spatial_join.join_records(recs, nh4326, beats=None)
    for strtree in (True, False):  # same answers, or the limit measures something else
        unit, shared = _limit_join(lon, lat, geoms, tol, strtree)
        if not (np.array_equal(unit >= 0, (ours["neighborhood"] != "").to_numpy())
                and np.array_equal(shared, (ours["boundary_units"] != "").to_numpy())):
            raise AssertionError(f"bench_join: the limit (strtree={strtree}) disagrees with join_records")
    kernel = best(lambda: spatial_join.first_unit_containing(x, y, geoms), repeat)
    limit = min(best(lambda: _limit_join(lon, lat, geoms, tol, True), repeat),
                best(lambda: _limit_join(lon, lat, geoms, tol, False), repeat))
    join = best(lambda: spatial_join.join_records(recs, nh4326, beats=None), repeat)
    old = best(lambda: _sjoin_first(x, y, polys), 1)
    return [("join: join_records vs limit", join, limit), ("join: join_records vs kernel", join, kernel),
            ("join: limit vs kernel", limit, kernel), ("join: old sjoin vs kernel", old, kernel)]


def _records_frame(path: Path) -> pd.DataFrame:
    from geo_lead.sources import iter_chunks

    return pd.concat([c.records for c in iter_chunks(path)], ignore_index=True)


class _JournalPeak:
    """Largest size of ``<store>-journal`` / ``-wal`` seen while it runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            if self.path is None:
                continue
            for suffix in ("-journal", "-wal"):
                with contextlib.suppress(OSError):
                    self.peak_bytes = max(self.peak_bytes, os.path.getsize(f"{self.path}{suffix}"))

    def __enter__(self) -> _JournalPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_store(records: pd.DataFrame, repeat: int) -> list[tuple[str, float, float]]:
    """geo_lead's write of a run's records (`geo-lead run`: each new record inserted once with
    its flags, geocode and neighborhood, `Store.upsert_records(enrich=)`, then the RTree brought
    in step, `Store.index_new_points`; one transaction) against ``pyogrio.write_dataframe`` of
    the finished frame to a GeoPackage with its spatial index. Also prints the old way's writes
    (insert, then the geocode and the join updates, one transaction each) in the best run, and
    each way's journal peak."""
    from geo_lead import indicators
    from geo_lead.store import Store, open_store

    rules = indicators.load_rules()
    flagged = pd.concat([records, indicators.classify(records, rules)], axis=1)
    rng = np.random.default_rng(7)
    n = len(flagged)
    geo = pd.DataFrame({"record_id": flagged["record_id"], "lon": rng.uniform(-85.9, -85.6, n),
                        "lat": rng.uniform(38.1, 38.3, n), "match_type": "block"})
    hood = pd.DataFrame({"record_id": flagged["record_id"], "neighborhood": "RUSSELL", "boundary_units": ""})
    tmp = Path(tempfile.mkdtemp(prefix="bench_limits_"))
    parts: list[tuple[float, ...]] = []
    old_parts: list[tuple[float, ...]] = []
    extra = geo.drop(columns="record_id").join(hood.drop(columns="record_id"))

    def enrich(new: pd.DataFrame) -> pd.DataFrame:  # the columns are computed: here only attached
        return new.join(extra)

    def ingest_insert(store: Store, enriched: bool) -> None:  # as `ingest.ingest_with` does: a chunk at a time
        for start in range(0, n, settings.READ_CHUNK_ROWS):
            store.upsert_records(flagged.iloc[start:start + settings.READ_CHUNK_ROWS], "2026-01-01T00:00:00Z",
                                 enrich=enrich if enriched else None)
        if enriched:
            store.index_new_points(1)

    def geo_lead_write() -> None:
        path = tmp / f"s{time.monotonic_ns()}.gpkg"
        with _JournalPeak() as journal:
            journal.path = path
            store = open_store(path)
            t = time.perf_counter()
            with store.write():
                ingest_insert(store, True)
            t = time.perf_counter() - t
            store.close()
        parts.append((t, journal.peak_bytes / 2**20))
        path.unlink()

    def old_write() -> None:
        path = tmp / f"o{time.monotonic_ns()}.gpkg"
        with _JournalPeak() as journal:
            journal.path = path
            store = open_store(path)
            t = [time.perf_counter()]
            for step in (lambda: ingest_insert(store, False), lambda: store.update_records(geo),
                         lambda: store.update_records(hood)):
                with store.write():
                    step()
                t.append(time.perf_counter())
            store.close()
        old_parts.append((*np.diff(t), journal.peak_bytes / 2**20))
        path.unlink()

    finished = flagged.merge(geo, on="record_id").merge(hood, on="record_id")
    gdf = gpd.GeoDataFrame(finished, geometry=shapely.points(finished["lon"], finished["lat"]), crs=4326)

    def limit_write() -> None:
        import pyogrio

        out = tmp / f"l{time.monotonic_ns()}.gpkg"
        pyogrio.write_dataframe(gdf, out, layer="records", driver="GPKG", layer_options={"SPATIAL_INDEX": "YES"})
        out.unlink()

    ours, limit = best(geo_lead_write, repeat), best(limit_write, repeat)
    best(old_write, repeat)
    shutil.rmtree(tmp, ignore_errors=True)
    fastest = min(old_parts, key=lambda p: sum(p[:3]))
    print(f"store write, {n:,} records: one enriched insert {min(p[0] for p in parts):.2f} s, journal peak "
          f"{max(p[1] for p in parts):.0f} MB; the old way: insert {fastest[0]:.2f} s + geocode update "
          f"{fastest[1]:.2f} s + join update {fastest[2]:.2f} s (best run), journal peak "
          f"{max(p[3] for p in old_parts):.0f} MB")
    return [("store write vs pyogrio GPKG", ours, limit)]


def _limit_flags(records: pd.DataFrame, rules: object) -> pd.DataFrame:
    """The flag columns the plain way: one vectorised text per record, ``pd.factorize``, the
    rules once per distinct text, numpy takes into a new frame."""
    from geo_lead import indicators

    text = (records["offense_text"].fillna("").astype(str) + " "
            + records["statute"].fillna("").astype(str)).str.strip()
    codes, uniques = pd.factorize(text)
    answers = [indicators.classify_text(t, rules) for t in uniques]  # type: ignore[arg-type]
    cols: dict[str, np.ndarray] = {}
    for flag in rules.all_flags:  # type: ignore[attr-defined]
        cols[flag] = np.array([flag in a for a in answers], dtype=bool)[codes]
        cols[f"{flag}_rule"] = np.array([a.get(flag, "") for a in answers], dtype=object)[codes]
    return pd.DataFrame(cols, index=records.index)


def bench_flags(records: pd.DataFrame, repeat: int) -> list[tuple[str, float, float]]:
    """`indicators.classify` (seven flags and their rule ids) against `_limit_flags`."""
    from geo_lead import indicators

    rules = indicators.load_rules()
    pd.testing.assert_frame_equal(indicators.classify(records, rules), _limit_flags(records, rules))
    ours = best(lambda: indicators.classify(records, rules), repeat)
    return [("flags: classify vs factorize+rules", ours, best(lambda: _limit_flags(records, rules), repeat))]


def bench_csv(path: Path, repeat: int) -> list[tuple[str, float, float]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from geo_lead.sources import iter_chunks

    def geo_lead_read() -> None:
        for _ in iter_chunks(path):
            pass

    def limit_read() -> None:
        header = path.open(encoding="utf-8").readline().strip().split(",")
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}))
        frame = table.to_pandas()
        for col in frame.columns:
            frame[col] = frame[col].str.strip().str.replace(r"\s+", " ", regex=True)
        for col in ("DATE_REPORTED", "DATE_OCCURED"):  # this file's one format, then ISO text
            pd.to_datetime(frame[col], errors="coerce", format="%m/%d/%y %I:%M %p").dt.strftime("%Y-%m-%dT%H:%M:%S")

    return [("CSV read vs pyarrow.csv", best(geo_lead_read, repeat), best(limit_read, repeat))]


# --- the limits bench_scale sums (issue 19: the full run against the sum of its stages' limits)
def stage_limits(csv_path: Path, n_points: int, repeat: int = 1) -> list[tuple[str, float, float, int]]:
    """``(stage, geo_lead s, limit s, rows measured)`` of each heavy stage: the join on
    `n_points` uniform points (`bench_join`'s first row), the CSV read, the indicator flags
    and the store write on the rows of `csv_path` (`bench_csv`, `bench_flags`, `bench_store`). `bench_scale` scales each limit to
    its run's records by rows and sums them."""
    with csv_path.open(encoding="utf-8") as fh:
        n_csv = sum(1 for _ in fh) - 1
    rows = [(*r, n_points) for r in bench_join(n_points, repeat)[:1]]
    rows += [(*r, n_csv) for r in bench_csv(csv_path, repeat)]
    records = _records_frame(csv_path)
    rows += [(*r, n_csv) for r in bench_flags(records, repeat)]
    rows += [(*r, n_csv) for r in bench_store(records, repeat)]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from bench_scale import make_synthetic

    tmp = Path(tempfile.mkdtemp(prefix="bench_limits_csv_"))
    t0 = time.perf_counter()
    files = make_synthetic(tmp, args.rows, seed=19, tag="L")
    csv_path = files[0]  # the pre-2023 crime format (the largest share)
    print(f"synthetic data: {args.rows:,} rows in {len(files)} files ({time.perf_counter() - t0:.1f} s); "
          f"CSV stage on {csv_path.name}")
    rows = bench_join(args.rows, args.repeat)
    rows += bench_csv(csv_path, args.repeat)
    rows += bench_store(_records_frame(csv_path), args.repeat)
    rows += bench_flags(_records_frame(csv_path), args.repeat)
    print(f"{'stage':34s} {'geo_lead s':>11s} {'limit s':>9s} {'ratio':>7s}")
    for name, ours, limit in rows:
        print(f"{name:34s} {ours:11.2f} {limit:9.2f} {ours / limit:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
