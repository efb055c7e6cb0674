"""`geo-lead run`: the whole pipeline on the shipped data (or the store's data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import add_boundary_arguments, add_sample_fraction_argument, add_store_argument


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
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.pipeline import run_pipeline

    writable_output(args.out, directory=True)  # now, not after minutes of work
    summary = run_pipeline(args.store, args.files or list(settings.SHIPPED_LMPD_FILES),
                           out_dir=args.out, echo=None if args.json else print, engine=args.engine,
                           rules_path=args.rules, sample_fraction=args.sample_fraction,
                           boundary=args.boundary, boundary_tolerance_ft=args.boundary_tolerance_ft)
    if args.json:
        print_json(summary)
    return 0
