"""`geo-lead score`: rank neighborhoods for an indicator and a time window."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import add_boundary_arguments, add_store_argument, at_least


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="rank First Division (or city) neighborhoods by an indicator",
        description=(
            "Join the store's geocoded records to the LOJIC neighborhoods, then score each "
            "neighborhood: weighted count (each record weighs 1 / its year's declared sample "
            "fraction, and records near an edge shared by two or more neighborhoods are split "
            "among them: --boundary), count from shared records, count per year, density "
            "per sq mi, 2020 population, rate and Empirical Bayes smoothed rate per 1,000 "
            "residents, a composite score and its rank with a seeded 90% bootstrap interval, and "
            "its rank if every shared record went to it / away from it. "
            "Writes the `scores` layer of the store and a CSV.\n\n"
            "examples: geo-lead score\n"
            "          geo-lead score --indicator opiate --area city --since 2017-01-01 --json\n"
            "          geo-lead score --weights count=0.5,eb_rate_per_1000=0.5"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_argument(p)
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
    p.add_argument("--replicates", type=at_least(1), default=settings.BOOTSTRAP_REPLICATES,
                   help="bootstrap replicates for the rank interval (default: %(default)s)")
    p.add_argument("--csv", type=Path, metavar="PATH",
                   help="CSV of the scores (default: <store name>_scores.csv next to the store, e.g. data/lead_scores.csv)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of the ranked neighborhoods instead of the table")
    p.add_argument("--by", choices=("year",), default=None,
                   help="score each calendar year of the data on its own (each year weighted by its "
                        "own sampling fraction); stored as meta scores_by_year, the scores layer is kept")
    add_boundary_arguments(p)
    p.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.errors import StoreError
    from geo_lead.scoring import format_table, parse_weights, score_store, scores_json, write_csv
    from geo_lead.spatial_join import join_store
    from geo_lead.store import opened

    if not Path(args.store).exists():
        raise StoreError(f"{args.store}: no store here yet; run `geo-lead run` first.")
    weights = parse_weights(args.weights) if args.weights else None
    if args.by == "year":
        return _run_by_year(args, weights)
    csv_path = writable_output(args.csv or Path(args.store).with_name(f"{Path(args.store).stem}_scores.csv"),
                               option="--csv")
    with opened(args.store, create=False) as store:
        joined = join_store(store, tolerance_ft=args.boundary_tolerance_ft) \
            if "lon" in store.columns("records") else None
        scores = score_store(store, indicator=args.indicator, area=args.area, since=args.since,
                             until=args.until, weights=weights, seed=args.seed, n_boot=args.replicates,
                             boundary=args.boundary)
    write_csv(scores, csv_path)
    if args.json:
        print_json(scores_json(scores))
        return 0
    print(format_table(scores, joined))
    print(f"\nscores layer written to {args.store}; CSV: {csv_path}")
    return 0


def _run_by_year(args: argparse.Namespace, weights: dict[str, float] | None) -> int:
    from geo_lead.by_year import format_scores_by_year, score_by_year_store
    from geo_lead.console import print_json
    from geo_lead.spatial_join import join_store
    from geo_lead.store import opened

    since_until = {"since": args.since, "until": args.until}
    if any(since_until.values()):
        from geo_lead.errors import GeoLeadError

        raise GeoLeadError("--by year sets each window itself; drop --since/--until")
    with opened(args.store, create=False) as store:
        if "lon" in store.columns("records"):
            join_store(store, tolerance_ft=args.boundary_tolerance_ft)
        result = score_by_year_store(store, indicator=args.indicator, area=args.area, weights=weights,
                                     seed=args.seed, n_boot=args.replicates, boundary=args.boundary)
        store.put_json("scores_by_year", result.to_dict())
    if args.json:
        print_json(result.to_dict())
        return 0
    print(format_scores_by_year(result))
    return 0
