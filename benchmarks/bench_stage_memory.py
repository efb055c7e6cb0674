"""Ingest, geocode and join stages in one process: seconds, peak RSS and rollback-journal peak
of each stage, for a full run and a rerun adding new records (issue 19).

SYNTHETIC DATA, FOR TIMING ONLY (`bench_scale.make_synthetic`: the shipped LMPD rows with new
incident numbers and jittered hundred-blocks). Linux only: each stage's peak RSS is the
process's ``VmHWM`` after ``/proc/self/clear_refs`` reset it at the stage's start; the journal
peak is the largest size of ``<store>-journal`` seen by a thread polling it every 10 ms.

usage::

    python benchmarks/bench_stage_memory.py --rows 300000 --workdir /tmp/stage_mem
    python benchmarks/bench_stage_memory.py --rows 1000000 --incremental-rows 10000 --plain

Stages run as `geo-lead run` runs them: each new record written once, enriched at ingest
(`geo_lead.enrich`); ``--plain`` also runs them the old way (insert, then an update by the
geocode and by the join stage) on a second store, in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("GEO_LEAD_NO_FORK", "1")

from bench_scale import make_synthetic  # noqa: E402

from geo_lead import settings  # noqa: E402
from geo_lead.enrich import Enricher  # noqa: E402
from geo_lead.pipeline import bulk_gc, stage_geocode, stage_ingest, stage_join  # noqa: E402
from geo_lead.store import Store, opened  # noqa: E402


def _status() -> dict[str, int]:
    """``VmHWM`` and ``VmRSS`` of this process, MB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) // 1024
    return out


class JournalWatch:
    """The largest size the store's rollback journal reached since `reset`."""

    def __init__(self, store_path: Path) -> None:
        self.path = Path(f"{store_path}-journal")
        self.peak = 0
        self.stop = False
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self.stop:
            with contextlib.suppress(OSError):  # no journal between writes
                self.peak = max(self.peak, self.path.stat().st_size)
            time.sleep(0.01)

    def reset(self) -> None:
        self.peak = 0


def run_stages(store_path: Path, files: list[Path], enrich: bool = True) -> dict[str, dict[str, float]]:
    """Run ingest, geocode and join on `files` as `geo-lead run` does (`enrich`: new records
    written geocoded and joined, `geo_lead.enrich`; False: inserted, then updated by each stage);
    per stage: wall and CPU seconds (CPU time moves less when other work shares the machine),
    RSS before, peak and after, journal peak MB."""
    watch = JournalWatch(store_path)
    out: dict[str, dict[str, float]] = {}

    def stages(store: Store) -> list[tuple[str, Callable[[], object]]]:
        quiet: Callable[[str], None] = lambda _s: None  # noqa: E731
        enricher = Enricher() if enrich else None
        return [("ingest", lambda: stage_ingest(store, files, quiet, None, enrich=enricher)),
                ("geocode", lambda: stage_geocode(store, quiet, None, enricher)),
                ("join", lambda: stage_join(store, quiet))]

    with bulk_gc(), opened(store_path) as store:
        for name, fn in stages(store):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            watch.reset()
            before = _status()["VmRSS"]
            started, cpu = time.perf_counter(), time.process_time()
            fn()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            time.sleep(0.05)
            now = _status()
            out[name] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "rss_before_mb": before, "peak_rss_mb": now["VmHWM"],
                         "rss_after_mb": now["VmRSS"], "journal_peak_mb": round(watch.peak / 1e6, 1)}
    watch.stop = True
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--incremental-rows", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/geo_lead_stage_memory"))
    ap.add_argument("--seed", type=int, default=settings.RANDOM_SEED)
    ap.add_argument("--plain", action="store_true",
                    help="also run the stages without enrichment (insert, then update), after, in this process")
    args = ap.parse_args(argv)
    full = make_synthetic(args.workdir / f"full_{args.rows}", args.rows, args.seed, tag="F")
    inc = make_synthetic(args.workdir / f"inc_{args.incremental_rows}", args.incremental_rows, args.seed + 1, tag="I")
    result: dict[str, object] = {"rows": args.rows}
    for mode in ("enriched", "plain") if args.plain else ("enriched",):
        store = args.workdir / f"stages_{args.rows}_{mode}.gpkg"
        for leftover in (store, Path(f"{store}-journal")):
            leftover.unlink(missing_ok=True)
        enrich = mode == "enriched"
        result[mode] = {"full": run_stages(store, full, enrich),
                        "rerun": run_stages(store, inc, enrich)}  # same process: modules already imported
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
