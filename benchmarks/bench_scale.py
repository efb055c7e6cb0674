"""Scale benchmark: full runs at 100k, 300k and 1M records, and a rerun adding 10,000 records.

SYNTHETIC DATA, FOR TIMING ONLY. The records are made by replicating the real shipped LMPD
rows (data/lmpd/crime_data_2016/2017_drug_sample.csv, 2023 sample) with new incident numbers
(prefixed ``SYN``) and their hundred-block numbers jittered along the same street
(``2700 BLOCK W MADISON ST`` -> ``2900 BLOCK W MADISON ST``); intersections and place names
are kept as published. Nothing here is a real incident; never analyse these files.

Every measured step runs in a fresh ``python -m geo_lead`` subprocess, and its peak RSS is
that process's own ``ru_maxrss`` (``os.wait4``), so the figures are what a user would see.

It prints, for each size (default 100,000, 300,000 and 1,000,000 records, each a fresh
store): the full run's time, time per record and peak RSS; whether the time per record stays
flat (linear cost); then, on the largest store, a rerun adding 10,000 new records as a share
of the full run; and the full run against the sum of the heavy stages' limits
(`bench_limits.stage_limits`, measured in this process on the same generated rows). Targets
(issue 19): peak RSS < 1.5 GB, rerun <= 8%, full run <= 3x the limits, linear cost.

usage::

    python benchmarks/bench_scale.py                          # 100k, 300k, 1M + a 10k rerun
    python benchmarks/bench_scale.py --sizes 20000,60000      # a quicker look
    python benchmarks/bench_scale.py --rows 1000000 --extras  # + export and join-count (dask)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_lead import settings  # noqa: E402

_BLOCK = re.compile(r"^(\d+)\s+BLOCK\s+(.*)$", re.IGNORECASE)
#: Hundred-blocks moved by up to this many blocks either way along the same street.
JITTER_BLOCKS = 5


def _real_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [r for r in reader if r]


def jitter_block(address: str, rng: random.Random) -> str:
    """``2700 BLOCK W MADISON ST`` -> another hundred-block of the same street (>= 0)."""
    m = _BLOCK.match(address)
    if not m:
        return address
    number = max(0, int(m.group(1)) + 100 * rng.randint(-JITTER_BLOCKS, JITTER_BLOCKS))
    return f"{number} BLOCK {m.group(2)}"


def make_synthetic(out_dir: Path, n_rows: int, seed: int, tag: str) -> list[Path]:
    """Write `n_rows` synthetic rows split over the three shipped files' formats.

    Incident numbers are ``SYN<tag>-<n>``, unique per (tag, n), so two calls with different
    tags give disjoint records (the incremental batch).
    """
    rng = random.Random(seed)
    sources = [p for p in settings.SHIPPED_LMPD_FILES if p.exists()]
    tables = [_real_rows(p) for p in sources]
    total_real = sum(len(rows) for _, rows in tables)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    serial = 0
    for (header, rows), src in zip(tables, sources, strict=True):
        share = round(n_rows * len(rows) / total_real) if src != sources[-1] else n_rows - serial
        norm = [h.strip().upper().replace(" ", "_") for h in header]
        i_inc = norm.index("INCIDENT_NUMBER")
        i_addr = norm.index("BLOCK_ADDRESS")
        out = out_dir / f"synthetic_{tag}_{src.name}"
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for k in range(share):
                row = list(rows[k % len(rows)])
                row[i_inc] = f"SYN{tag}-{serial:09d}"
                row[i_addr] = jitter_block(row[i_addr], rng)
                w.writerow(row)
                serial += 1
        written.append(out)
    return written


def run_measured(argv: list[str], cwd: Path, results: Path | None = None) -> tuple[float, float, dict]:
    """Run one geo-lead command in a child; return (wall seconds, its peak RSS in MB, JSON).

    `results`: the child's `geo_lead.result_cache` folder (``GEO_LEAD_RESULT_CACHE_DIR``).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if results is not None:
        env["GEO_LEAD_RESULT_CACHE_DIR"] = str(results)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "geo_lead", *argv, "--json"], cwd=cwd,
                                stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"geo-lead {' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{err.read().decode()[-3000:]}")
        text = out.read()
    return seconds, usage.ru_maxrss / 1024.0, json.loads(text or b"{}")


def _points_for_join(store: Path, out: Path, seed: int) -> str:
    """Write lon/lat + flags of every stored record to GeoParquet for the join timing.

    Uses the store's geocodes when it has them; otherwise (no geocoder on this branch) puts
    each record at a uniformly random point of the neighborhoods' bounding box: SYNTHETIC,
    timing only.
    """
    import sqlite3

    import numpy as np
    import pandas as pd

    from geo_lead.store import FLAG_COLUMNS

    conn = sqlite3.connect(store)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(records)")]
    want = [c for c in ("lon", "lat", *FLAG_COLUMNS) if c in cols]
    frame = pd.read_sql_query(f"SELECT {', '.join(want)} FROM records", conn)
    conn.close()
    note = "the store's geocodes"
    if "lon" not in frame or frame["lon"].notna().sum() == 0:
        from geo_lead.boundaries import load_neighborhoods

        rng = np.random.default_rng(seed)
        x0, y0, x1, y1 = load_neighborhoods().total_bounds
        frame["lon"] = rng.uniform(x0, x1, len(frame))
        frame["lat"] = rng.uniform(y0, y1, len(frame))
        note = "SYNTHETIC uniform points in the neighborhoods' bounding box (no geocoder on this branch)"
    for col in FLAG_COLUMNS:
        frame[col] = pd.to_numeric(frame.get(col, 0), errors="coerce").fillna(0).astype("int8")
    frame.to_parquet(out, index=False)
    return f"{len(frame):,} records, {note}"


def _added(summary: dict) -> int:
    """Records added, from `geo-lead ingest --json` or `geo-lead run --json`."""
    if "added" in summary:
        return int(summary["added"])
    ingest = summary.get("ingest", {})
    return int(ingest.get("added", 0)) if isinstance(ingest, dict) else 0


def _stage_seconds(store: Path, cwd: Path) -> str:
    """Per-stage wall times of the newest run, from the manifest (`geo-lead runs --json`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "geo_lead", "runs", "--store", str(store), "--limit", "1",
                          "--json"], cwd=cwd, capture_output=True, text=True, env=env)
    runs = json.loads(out.stdout or "[]")
    if not runs:
        return "(no run recorded)"
    return ", ".join(f"{k} {v.get('seconds', 0):.1f} s (RSS so far {v.get('peak_rss_mb') or 0:,.0f} MB)"
                     for k, v in (runs[0].get("counts") or {}).items() if isinstance(v, dict) and k != "store")


def _load() -> str:
    """The load average (other work on the machine slows every figure below)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min)"


@dataclass
class SizeResult:
    """One size's full run, measured in its own ``python -m geo_lead`` child."""

    rows: int
    seconds: float
    rss_mb: float
    added: int
    stages: str

    @property
    def us_per_record(self) -> float:
        return 1e6 * self.seconds / self.rows


#: The issue's targets (ratios printed by this benchmark).
TARGET_RSS_MB = 1_500.0
TARGET_RERUN_SHARE = 0.08
TARGET_LIMITS_RATIO = 3.0
#: Largest / smallest size's time per record still called linear.
LINEAR_TOLERANCE = 1.25


def full_run(work: Path, rows: int, seed: int, command: str) -> tuple[SizeResult, Path, list[Path]]:
    """Generate `rows` synthetic rows and time a full `geo-lead run` (or ingest) on a fresh store,
    with an empty result cache (`results_dir`)."""
    store = work / f"bench_{rows}.gpkg"
    if store.exists():
        store.unlink()
    shutil.rmtree(results_dir(work, rows), ignore_errors=True)
    files = make_synthetic(work / f"full_{rows}", rows, seed, tag="F")
    sec, rss, js = run_measured([command, *map(str, files), "--store", str(store)], work, results_dir(work, rows))
    stages = _stage_seconds(store, work) if command == "run" else ""
    return SizeResult(rows, sec, rss, _added(js), stages), store, files


def results_dir(work: Path, rows: int) -> Path:
    """The result cache of the store of `rows` records (the full run starts it empty)."""
    return work / f"results_{rows}"


def rerun(work: Path, store: Path, full_rows: int, rows: int, seed: int, command: str) -> tuple[float, float, dict]:
    """Time the same command adding `rows` new synthetic rows to `store` (with its result cache)."""
    inc = make_synthetic(work / f"inc_{rows}", rows, seed + 1, tag="I")
    return run_measured([command, *map(str, inc), "--store", str(store)], work, results_dir(work, full_rows))


def limits_seconds(files: list[Path], n_records: int) -> tuple[float, list[str]]:
    """Sum of the heavy stages' limits for `n_records` (`bench_limits.stage_limits` on the
    first file's rows and `n_records` points, each limit scaled to `n_records` by rows)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_limits import stage_limits

    total, lines = 0.0, []
    for name, ours, limit, measured in stage_limits(files[0], n_records):
        scaled = limit * n_records / measured
        total += scaled
        lines.append(f"  {name}: geo_lead {ours:.2f} s, limit {limit:.2f} s on {measured:,} rows "
                     f"({ours / limit:.1f}x) -> limit {scaled:.2f} s at {n_records:,}")
    return total, lines


def _extras(work: Path, store: Path, engine: str, seed: int) -> None:
    """GeoParquet export and `join-count` (pandas, and dask when asked) on the largest store."""
    extra = ["--store", str(store)]
    sec, rss, js = run_measured(["export", "--what", "records", "--format", "geoparquet", "--partition",
                                 "month", "--out", str(work / "records_by_month"), "--overwrite", *extra], work)
    print(f"export records as GeoParquet by month: {js['rows']:,} rows, {js['partitions']} files "
          f"in {sec:.1f} s, peak RSS {rss:,.0f} MB")
    points = work / "points.parquet"
    print(f"join-count input: {_points_for_join(store, points, seed)}")
    for name, sched in (("pandas", "threads"), ("dask", "local")):
        if name == "dask" and engine != "dask":
            continue
        sec, rss, js = run_measured(["join-count", "--engine", name, "--scheduler", sched,
                                     "--records", str(points)], work)
        print(f"join-count --engine {name}: {js['records']:,} records = {js['joined']:,} joined + "
              f"{js['outside']:,} outside + {js['not_geocoded']:,} not geocoded in {sec:.1f} s, "
              f"peak RSS {rss:,.0f} MB (driver process)")


def _print_size(r: SizeResult, command: str) -> None:
    """One size's full run, printed as soon as it is measured."""
    print(f"full {command}: {r.rows:,} rows -> {r.added:,} added in {r.seconds:.1f} s "
          f"({r.us_per_record:.1f} us per record), peak RSS {r.rss_mb:,.0f} MB; {_load()}", flush=True)
    if r.stages:
        print(f"  stages: {r.stages}", flush=True)


def _report_sizes(results: list[SizeResult], command: str) -> bool:
    """Print whether cost is linear and RSS in target; True when both."""
    small, large = results[0], results[-1]
    growth = large.us_per_record / small.us_per_record
    linear = growth <= LINEAR_TOLERANCE
    print(f"time per record at {large.rows:,} / at {small.rows:,}: {growth:.2f} "
          f"({'linear or better' if linear else 'NOT linear'}: target <= {LINEAR_TOLERANCE:g})")
    rss_ok = max(r.rss_mb for r in results) < TARGET_RSS_MB
    print(f"peak RSS: {max(r.rss_mb for r in results):,.0f} MB (target < {TARGET_RSS_MB:,.0f} MB: "
          f"{'met' if rss_ok else 'NOT met'})")
    return linear and rss_ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000,1000000",
                    help="comma-separated synthetic row counts, each a fresh store (default: %(default)s)")
    ap.add_argument("--rows", type=int, help="one size only (same as --sizes ROWS)")
    ap.add_argument("--incremental-rows", type=int, default=10_000,
                    help="new rows for the rerun on the largest store")
    ap.add_argument("--workdir", type=Path, help="keep files here (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=settings.RANDOM_SEED)
    ap.add_argument("--command", default="run", choices=("run", "ingest"),
                    help="what to time: the whole pipeline (run) or the ingest alone")
    ap.add_argument("--no-limits", action="store_true",
                    help="skip the stage limits (bench_limits) the largest full run is compared with")
    ap.add_argument("--extras", action="store_true",
                    help="also time the GeoParquet export and join-count on the largest store")
    ap.add_argument("--engine", choices=("pandas", "dask"), default="dask",
                    help="with --extras: time join-count with pandas, and with dask too when dask")
    args = ap.parse_args(argv)
    sizes = [args.rows] if args.rows else sorted(int(s) for s in args.sizes.split(",") if s.strip())

    tmp = tempfile.TemporaryDirectory(prefix="geo_lead_bench_") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print("SYNTHETIC DATA (real shipped rows replicated, new ids, blocks jittered) - timing only")
    # the code timed is byte-compiled as scripts/setup.sh leaves it (see bench_rerun)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "geo_lead")], check=True)
    print(f"machine: {os.cpu_count()} cores, {_load()}")
    results: list[SizeResult] = []
    for rows in sizes:
        result, store, files = full_run(work, rows, args.seed, args.command)
        _print_size(result, args.command)
        results.append(result)
    ok = _report_sizes(results, args.command)
    largest = results[-1]
    sec_inc, rss_inc, js_inc = rerun(work, store, largest.rows, args.incremental_rows, args.seed, args.command)
    share = sec_inc / largest.seconds
    print(f"rerun adding {args.incremental_rows:,} new rows to {largest.rows:,}: {_added(js_inc):,} added in "
          f"{sec_inc:.1f} s = {100 * share:.1f}% of the full {args.command} (target <= "
          f"{100 * TARGET_RERUN_SHARE:g}%: {'met' if share <= TARGET_RERUN_SHARE else 'NOT met'}), "
          f"peak RSS {rss_inc:,.0f} MB")
    if args.command == "run":
        print(f"  stages: {_stage_seconds(store, work)}; geocoded_new {js_inc.get('geocoded_new')}, "
              f"from cache {js_inc.get('geocoded_from_cache')}")
    ok = ok and share <= TARGET_RERUN_SHARE
    if not args.no_limits:
        try:
            limit, lines = limits_seconds(files, largest.rows)
        except AssertionError as exc:  # bench_limits checks its limits give geo_lead's answers
            print(f"stage limits not measured: {exc}")
            limit, lines = float("nan"), []
        print(f"stage limits at {largest.rows:,} records (bench_limits, this process):")
        for line in lines:
            print(line)
        ratio = largest.seconds / limit
        print(f"full {args.command} at {largest.rows:,}: {largest.seconds:.1f} s = {ratio:.1f}x the sum of the "
              f"stage limits {limit:.1f} s (target <= {TARGET_LIMITS_RATIO:g}x: "
              f"{'met' if ratio <= TARGET_LIMITS_RATIO else 'NOT met'})")
        ok = ok and ratio <= TARGET_LIMITS_RATIO
    print(f"store size at {largest.rows:,}: {store.stat().st_size / 1e6:,.0f} MB; after the timed runs: {_load()}")
    print(f"targets {'met' if ok else 'NOT met'}")
    if args.extras:
        _extras(work, store, args.engine, args.seed)
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
