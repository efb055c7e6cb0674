"""`geo-lead runs`: list the run manifest."""

from __future__ import annotations

import argparse

from geo_lead.commands import add_store_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs", help="list past runs: inputs with sha256, parameters, counts, outputs, changes",
        description="List the run manifest kept in the store, newest first: when each "
                    "`geo-lead run` ran, the package version, its input files (sha256), "
                    "parameters, counts per stage, output paths and what changed since the "
                    "run before.\n\nexample: geo-lead runs --store data/lead.gpkg --limit 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_argument(p)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="show only the N newest runs")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of runs (every manifest field, JSON columns decoded)")
    p.set_defaults(func=_run_runs)


def _run_runs(args: argparse.Namespace) -> int:
    from geo_lead.changes import describe
    from geo_lead.console import print_json
    from geo_lead.manifest import list_runs
    from geo_lead.store import opened

    with opened(args.store, create=False) as store:
        runs = list_runs(store, limit=args.limit)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print(f"{args.store}: no runs recorded yet (`geo-lead run` records one)")
        return 0
    for run in runs:
        print(f"{run['run_id']}  {run['status']:<6} {run['command']}  geo_lead {run['package_version']}"
              f"  {run['started_at']} .. {run['finished_at']} ({run['duration_s']:.1f} s)")
        if run.get("error"):
            print(f"  error: {run['error']}")
        for item in run.get("inputs") or []:
            frac = item.get("sample_fraction")
            print(f"  input  {item['name']}  sha256 {item['sha256'][:16]}…  {item['bytes'] or 0:,} bytes"
                  + (f"  sample fraction {frac:g}" if frac is not None else ""))
        for stage, counts in (run.get("counts") or {}).items():
            text = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
            print(f"  {stage}: {text}")
        for out in run.get("outputs") or []:
            print(f"  output {out}")
        if run.get("changes"):
            for line in describe(run["changes"], max_moves=5):
                print(f"  {line}")
    return 0
