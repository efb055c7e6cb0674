"""``geo-lead evaluate``: eligible records before and after the pilot began (DiD)."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import add_store_argument, at_least, fraction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="before/after the pilot start: pilot zone vs comparison area (DiD)",
        description=(
            "LEAD-eligible records per month (weighted by each year's sampling frame) in the pilot "
            "zone, the comparison area (the one `geo-lead site` stored) and the rest of the city, "
            "before vs after the pilot start; the pilot zone's change relative to the comparison as "
            "a difference in differences of log mean monthly records, with a seeded block-bootstrap "
            "interval (months resampled in blocks); the design's limits written out. Diversion "
            "removes charges from the records by design: a fall inside the zone is expected and is "
            "not an outcome. Stores the answer as meta evaluation_result.\n\n"
            f"examples: geo-lead evaluate --pilot-start {settings.PILOT_ANNOUNCEMENT_DATE}\n"
            "          geo-lead evaluate --pilot-start 2018-10-01 --comparison SHAWNEE,CALIFORNIA --json\n"
            "          geo-lead evaluate --pilot-start 2018-08-22 --figure maps/evaluation.png"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_argument(p)
    p.add_argument("--pilot-start", required=True, metavar="YYYY-MM-DD",
                   help=f"first day of the pilot (the city announced it on {settings.PILOT_ANNOUNCEMENT_DATE}; "
                        "set the real start of diversions)")
    p.add_argument("--indicator", default="lead_eligible", help="record flag to count (default %(default)s)")
    p.add_argument("--comparison", default=None, metavar="NAME,NAME",
                   help="comparison neighborhoods (default: the comparison area `geo-lead site` stored)")
    p.add_argument("--block-months", type=at_least(1), default=settings.EVALUATION_BLOCK_MONTHS,
                   help="months per bootstrap block (default %(default)s)")
    p.add_argument("--replicates", type=at_least(99), default=settings.EVALUATION_REPLICATES,
                   help="bootstrap replicates, at least 99 (default %(default)s)")
    p.add_argument("--level", type=fraction, default=settings.EVALUATION_INTERVAL_LEVEL,
                   help="interval level (default %(default)s)")
    p.add_argument("--seed", type=int, default=settings.RANDOM_SEED, help="bootstrap seed (default %(default)s)")
    p.add_argument("--figure", type=Path, default=None, metavar="PATH",
                   help="also write the monthly series with the start marked as a PNG")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.errors import StoreError
    from geo_lead.evaluation import EvaluationParams, evaluate_store, format_evaluation
    from geo_lead.store import opened

    if not Path(args.store).exists():
        raise StoreError(f"{args.store}: no store here yet; run `geo-lead run` first.")
    figure = writable_output(args.figure, option="--figure") if args.figure else None
    params = EvaluationParams(pilot_start=args.pilot_start, indicator=args.indicator,
                              block_months=args.block_months, replicates=args.replicates,
                              level=args.level, seed=args.seed)
    comparison = [c for c in args.comparison.split(",") if c.strip()] if args.comparison else None
    with opened(args.store, create=False) as store:
        result = evaluate_store(store, params, comparison=comparison)
        store.put_json("evaluation_result", result.to_dict())
    if figure is not None:
        from geo_lead.figures import png_bytes
        from geo_lead.outputs import write_bytes
        from geo_lead.pilot_figures import monthly_series_figure

        write_bytes(figure, png_bytes(monthly_series_figure(result)))  # atomic
    if args.json:
        print_json(result.to_dict())
        return 0
    print(format_evaluation(result))
    if figure is not None:
        print(f"  figure: {figure}")
    return 0
