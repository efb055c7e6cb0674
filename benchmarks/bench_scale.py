"""Scale benchmark: a 1,000,000-record store, full run and an incremental 10,000-row run.

SYNTHETIC DATA, FOR TIMING ONLY. The records are made by replicating the real shipped LMPD
rows (data/lmpd/crime_data_2016/2017_drug_sample.csv, 2023 sample) with new incident numbers
(prefixed ``SYN``) and their hundred-block numbers jittered along the same street
(``2700 BLOCK W MADISON ST`` -> ``2900 BLOCK W MADISON ST``); intersections and place names
are kept as published. Nothing here is a real incident; never analyse these files.

Every measured step runs in a fresh ``python -m geo_lead`` subprocess, and its peak RSS is
that process's own ``ru_maxrss`` (``os.wait4``), so the figures are what a user would see.

usage::

    python benchmarks/bench_scale.py                 # 1,000,000 + 10,000 rows
    python benchmarks/bench_scale.py --rows 100000   # a quicker look
    python benchmarks/bench_scale.py --engine dask   # join/score on dask-geopandas too
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
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


def run_measured(argv: list[str], cwd: Path) -> tuple[float, float, dict]:
    """Run one geo-lead command in a child; return (wall seconds, its peak RSS in MB, JSON)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows in the full store")
    ap.add_argument("--incremental-rows", type=int, default=10_000, help="new rows for the rerun")
    ap.add_argument("--workdir", type=Path, help="keep files here (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=settings.RANDOM_SEED)
    ap.add_argument("--command", default="run", choices=("run", "ingest"),
                    help="what to time: the whole pipeline (run) or the ingest alone")
    ap.add_argument("--engine", choices=("pandas", "dask"), default="dask",
                    help="time `geo-lead join-count` with pandas, and with dask on a local "
                         "cluster too when dask (default)")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="geo_lead_bench_") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    store = work / "bench.gpkg"
    if store.exists():
        store.unlink()

    print("SYNTHETIC DATA (real shipped rows replicated, new ids, blocks jittered) - timing only")
    print(f"machine: {os.cpu_count()} cores, {_load()}")
    t0 = time.perf_counter()
    full = make_synthetic(work / "full", args.rows, args.seed, tag="F")
    inc = make_synthetic(work / "inc", args.incremental_rows, args.seed + 1, tag="I")
    print(f"generated {args.rows:,} + {args.incremental_rows:,} rows in {time.perf_counter() - t0:.1f} s")

    extra = ["--store", str(store)]
    sec_full, rss_full, js_full = run_measured([args.command, *map(str, full), *extra], work)
    added_full = _added(js_full)
    print(f"full {args.command}: {args.rows:,} rows -> {added_full:,} added in {sec_full:.1f} s, "
          f"peak RSS {rss_full:,.0f} MB")
    if args.command == "run":
        print(f"  stages: {_stage_seconds(store, work)}")
    sec_inc, rss_inc, js_inc = run_measured([args.command, *map(str, inc), *extra], work)
    added_inc = _added(js_inc)
    print(f"incremental {args.command}: {args.incremental_rows:,} new rows -> {added_inc:,} added in "
          f"{sec_inc:.1f} s ({100 * sec_inc / sec_full:.1f}% of full), peak RSS {rss_inc:,.0f} MB")
    if args.command == "run":
        print(f"  stages: {_stage_seconds(store, work)}; geocoded_new {js_inc.get('geocoded_new')}, "
              f"from cache {js_inc.get('geocoded_from_cache')}; changed: {js_inc.get('changes', {}).get('changed')}")
    sec_re, rss_re, js_re = run_measured([args.command, *map(str, inc), *extra], work)
    added_re = _added(js_re)
    print(f"repeat {args.command} of the same {args.incremental_rows:,} rows -> {added_re:,} added in "
          f"{sec_re:.1f} s, peak RSS {rss_re:,.0f} MB")
    print(f"store size: {store.stat().st_size / 1e6:,.0f} MB")
    print(f"after the timed runs: {_load()}")
    ok = sec_full <= 120 and rss_full <= 4096 and sec_inc <= 0.1 * sec_full
    print(f"targets: full <= 120 s and <= 4,096 MB; incremental <= 10% of full ({'met' if ok else 'NOT met'})")

    sec, rss, js = run_measured(["export", "--what", "records", "--format", "geoparquet", "--partition",
                                 "month", "--out", str(work / "records_by_month"), "--overwrite", *extra], work)
    print(f"export records as GeoParquet by month: {js['rows']:,} rows, {js['partitions']} files "
          f"in {sec:.1f} s, peak RSS {rss:,.0f} MB")
    if args.engine:
        points = work / "points.parquet"
        note = _points_for_join(store, points, args.seed)
        print(f"join-count input: {note}")
        for engine, sched in (("pandas", "threads"), ("dask", "local")):
            if engine == "dask" and args.engine != "dask":
                continue
            sec, rss, js = run_measured(["join-count", "--engine", engine, "--scheduler", sched,
                                         "--records", str(points)], work)
            print(f"join-count --engine {engine}{' --scheduler local (2 worker processes)' if engine == 'dask' else ''}: "
                  f"{js['records']:,} records = {js['joined']:,} joined + {js['outside']:,} outside "
                  f"+ {js['not_geocoded']:,} not geocoded in {sec:.1f} s, peak RSS {rss:,.0f} MB "
                  f"(driver process)")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
