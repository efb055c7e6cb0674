"""Reading and ingest speed on a large LMPD-format file (prints figures; not a test).

Builds a file of about ``--mb`` megabytes by repeating the real rows of the shipped 2017
extract with new incident numbers, then times `sources.iter_chunks` (in a fresh process, to
measure its peak memory growth) and `ingest.ingest_files` into a temporary store.

    python benchmarks/bench_sources.py --mb 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_lead import settings  # noqa: E402

_READ = """
import json, resource, sys, time
from geo_lead.sources import iter_chunks
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); c0 = time.process_time(); rows = chunks = 0
for c in iter_chunks(sys.argv[1]):
    rows += c.rows_read; chunks += 1
dt = time.perf_counter() - t0
print(json.dumps({"rows": rows, "chunks": chunks, "seconds": dt, "cpu_seconds": time.process_time() - c0,
                  "growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def build(path: Path, target_bytes: int) -> int:
    lines = (settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv").read_bytes().split(b"\n")
    header, body = lines[0], [ln for ln in lines[1:] if ln.strip()]
    n = 0
    with path.open("wb") as fh:
        fh.write(header + b"\n")
        while fh.tell() < target_bytes:
            for row in body:
                fh.write(b"BENCH-%09d" % n + row[row.index(b","):] + b"\n")
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="file size to build (default 50)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        n = build(path, int(args.mb * 1e6))
        size_mb = path.stat().st_size / 1e6
        read = json.loads(subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True,
                                         text=True, check=True, cwd=ROOT).stdout)
        print(f"file: {size_mb:.1f} MB, {n:,} rows (real 2017 rows repeated); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"read (iter_chunks, {settings.READ_CHUNK_ROWS:,}-row chunks): {read['seconds']:.1f} s, "
              f"{read['rows'] / read['seconds']:,.0f} rows/s, {size_mb / read['seconds']:.1f} MB/s, "
              f"{read['chunks']} chunks, peak RSS growth {read['growth_mb']:.0f} MB; "
              f"CPU {read['cpu_seconds']:.1f} s = {read['rows'] / read['cpu_seconds']:,.0f} rows per CPU-second")
        from geo_lead.ingest import ingest_files
        from geo_lead.store import opened

        with opened(Path(tmp) / "lead.gpkg") as store:
            t0 = time.perf_counter()
            rep = ingest_files(store, [path])[0]
            t1 = time.perf_counter()
            again = ingest_files(store, [path])[0]
            t2 = time.perf_counter()
        print(f"ingest (read + flag + store): {t1 - t0:.1f} s, {rep.rows_read / (t1 - t0):,.0f} rows/s, "
              f"added {rep.added:,}")
        print(f"re-ingest of the same file: {t2 - t1:.1f} s, added {again.added:,}, unchanged {again.unchanged:,}")
        print(f"store size: {(Path(tmp) / 'lead.gpkg').stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
