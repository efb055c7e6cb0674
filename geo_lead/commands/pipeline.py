"""`geo-lead run`: the whole pipeline on the shipped data (or the store's data)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import (
    add_boundary_arguments,
    add_sample_fraction_argument,
    add_store_argument,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the whole pipeline: ingest, geocode, join, score, site, map, report",
        description="Run every stage in order. With no FILE it ingests the embedded LMPD data "
                    "(data/lmpd/); files already in the store add nothing, so a rerun only does "
                    "the new work.\n\nexample: geo-lead run\n         geo-lead run NEW_EXTRACT.csv --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="LMPD files to ingest first (default: the shipped data/lmpd files)")
    add_store_argument(p)
    p.add_argument("--out", type=Path, default=settings.MAPS_DIR, metavar="DIR",
                   help="where maps and the report go (default: %(default)s)")
    p.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                   help="run the spatial join on pandas (default) or on dask partitions "
                        "(same code, same result; see geo-lead join-count)")
    p.add_argument("--rules", type=Path, metavar="PATH",
                   help="indicator rules file (default: the shipped geo_lead/rules/opiate_rules.toml); "
                        "stored records flagged by other rules are re-flagged first")
    add_sample_fraction_argument(p)
    add_boundary_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="rebuild everything even when the inputs (by sha256), the options and the "
                        "outputs are as the last run left them (by default that rerun only says "
                        "'nothing changed'), and compute every result again: nothing is reused from "
                        "the result cache (statistics, figures, pages)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    p.set_defaults(func=_run)


#: Options that change only how the answer is shown, never what a run computes.
_NOT_FINGERPRINTED = frozenset({"func", "json", "force", "command"})


def _run(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.pipeline import run_fingerprint, run_pipeline, unchanged_since

    writable_output(args.out, directory=True)  # now, not after minutes of work
    files = args.files or list(settings.SHIPPED_LMPD_FILES)
    # every parsed option (those added later too), with the files' contents, keys the rerun
    params = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_FINGERPRINTED}
    params["files"] = [str(Path(f).resolve()) for f in files]
    params["store"], params["out"] = str(Path(args.store).resolve()), str(Path(args.out).resolve())
    fingerprint = run_fingerprint(files, params)
    if not args.force:
        last, why = unchanged_since(args.store, fingerprint)
        if last is not None:
            outputs = list(((last.get("counts") or {}).get("outputs") or {}).get("sha256") or {})
            if args.json:
                print_json({"nothing_changed": True, "run_id": last["run_id"], "outputs": outputs})
            else:
                print(f"nothing changed since run {last['run_id']} ({last['finished_at']}): same inputs "
                      f"(sha256), options, data and code, and its {len(outputs)} outputs are as it "
                      "wrote them; nothing rebuilt (--force rebuilds).")
            return 0
        if not args.json:
            print(f"[run] {why}: running every stage")
    from geo_lead.result_cache import switched_off

    with switched_off() if args.force else contextlib.nullcontext():
        summary = run_pipeline(args.store, files,
                               out_dir=args.out, echo=None if args.json else print, engine=args.engine,
                               rules_path=args.rules, sample_fraction=args.sample_fraction,
                               boundary=args.boundary, boundary_tolerance_ft=args.boundary_tolerance_ft,
                               fingerprint=fingerprint["key"])
    if args.json:
        print_json(summary)
    return 0
