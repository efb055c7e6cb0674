"""`geo-lead score`: rank neighborhoods for an indicator and a time window."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from geo_lead import settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="rank First Division (or city) neighborhoods by an indicator",
        description=(
            "Join the store's geocoded records to the LOJIC neighborhoods, then score each "
            "neighborhood: count, share, count per year (sample files scaled to a year), density "
            "per sq mi, 2020 population, rate and Empirical Bayes smoothed rate per 1,000 "
            "residents, a composite score and its rank with a seeded 90%% bootstrap interval. "
            "Writes the `scores` layer of the store and a CSV.\n\n"
            "examples: geo-lead score\n"
            "          geo-lead score --indicator opiate --area city --since 2017-01-01 --json\n"
            "          geo-lead score --weights count=0.5,eb_rate_per_1000=0.5"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, default=settings.DEFAULT_STORE, metavar="PATH",
                   help="the GeoPackage store (default: %(default)s)")
    p.add_argument("--indicator", default="lead_eligible",
                   help="record flag to count: lead_eligible (default), opiate, possession, "
                        "trafficking, paraphernalia, overdose, other_drug")
    p.add_argument("--area", choices=("first-division", "city"), default="first-division",
                   help="neighborhoods to rank (default: %(default)s)")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="first day of the window (occurrence date)")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="last day of the window, inclusive")
    p.add_argument("--weights", metavar="NAME=W,...",
                   help="composite weights over count, density_per_sqmi, eb_rate_per_1000, "
                        "rate_per_1000 (default: count, density and EB rate, 1/3 each)")
    p.add_argument("--seed", type=int, default=settings.RANDOM_SEED,
                   help="bootstrap seed (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=settings.BOOTSTRAP_REPLICATES,
                   help="bootstrap replicates for the rank interval (default: %(default)s)")
    p.add_argument("--csv", type=Path, metavar="PATH",
                   help="CSV of the scores (default: scores.csv next to the store)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of the ranked neighborhoods instead of the table")
    p.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from geo_lead.cli import print_json
    from geo_lead.errors import StoreError
    from geo_lead.scoring import parse_weights, score_store, scores_json, write_csv
    from geo_lead.spatial_join import join_store
    from geo_lead.store import opened

    if not Path(args.store).exists():
        raise StoreError(f"{args.store}: no store here yet; run `geo-lead run` first.")
    weights = parse_weights(args.weights) if args.weights else None
    with opened(args.store, create=False) as store:
        joined = join_store(store) if "lon" in store.columns("records") else None
        scores = score_store(store, indicator=args.indicator, area=args.area, since=args.since,
                             until=args.until, weights=weights, seed=args.seed, n_boot=args.replicates)
    csv_path = args.csv or Path(args.store).with_name("scores.csv")
    write_csv(scores, csv_path)
    if args.json:
        print_json(scores_json(scores))
        return 0
    print(format_table(scores, joined))
    print(f"\nscores layer written to {args.store}; CSV: {csv_path}")
    return 0


def format_table(scores: Any, joined: dict[str, int] | None = None) -> str:
    """The ranked table a planner reads (pilot neighborhoods marked with *)."""
    a = scores.attrs
    lines = []
    if joined is not None:
        lines.append(f"records: {joined['records']:,} = {joined['joined']:,} in a neighborhood + "
                     f"{joined['outside']:,} outside every neighborhood + {joined['not_geocoded']:,} not geocoded")
    ind = scores["indicator"].iloc[0] if len(scores) else "?"
    lines.append(f"indicator {ind}, area {a.get('area')}: {a.get('records_in_window', 0):,} records in the "
                 f"window, {a.get('area_total', 0):,} in the area; data cover {a.get('years_covered', 0):.2f} years")
    lines.append("per_year = count scaled by each file's sampling fraction (2016 sample 0.15, 2017 "
                 "sample 0.14) / years covered; rates use the unscaled count and 2020 population")
    head = (f"{'rank':>4} {'90% int':>7}  {'neighborhood':<28} {'count':>6} {'per_year':>9} "
            f"{'per_sqmi':>9} {'pop':>7} {'rate/1k':>8} {'EB/1k':>7} {'score':>6}")
    lines += [head, "-" * len(head)]
    ranked = scores[scores["rank"].notna()]
    for r in ranked.itertuples(index=False):
        star = "*" if r.neighborhood in settings.PILOT_NEIGHBORHOODS else " "
        lines.append(
            f"{int(r.rank):>4} {f'{int(r.rank_low)}-{int(r.rank_high)}':>7} {star}{r.neighborhood[:28]:<28} "
            f"{int(r.count):>6} {_num(r.count_per_year, 9, 1)} {_num(r.density_per_sqmi, 9, 1)} "
            f"{_num(r.population, 7, 0)} {_num(r.rate_per_1000, 8, 2)} {_num(r.eb_rate_per_1000, 7, 2)} "
            f"{_num(r.score, 6, 3)}")
    unranked = scores[scores["in_area"] & scores["rank"].isna() & (scores["count"] > 0)]
    if len(unranked):
        lines.append("not ranked (remainder / unnamed pieces, or no residents): " + ", ".join(
            f"{n} ({c})" for n, c in zip(unranked["neighborhood"], unranked["count"], strict=True)))
    lines.append("* pilot zone neighborhood")
    return "\n".join(lines)


def _num(value: float, width: int, digits: int) -> str:
    if value != value:  # NaN
        return f"{'-':>{width}}"
    return f"{value:>{width},.{digits}f}"
