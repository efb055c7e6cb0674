"""``geo-lead hotspots`` and ``geo-lead site``: hotspot maps and the pilot-zone verdict."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from geo_lead import settings
from geo_lead.commands import add_boundary_arguments, add_store_argument, at_least, fraction

if TYPE_CHECKING:
    from geo_lead.store import Store

AREA_HELP = ("study area / candidate neighborhoods: first-division (default; from "
             "boundaries/first_division.geojson, else the records' LMPD division) or city (every named "
             "neighborhood)")


def _common(p: argparse.ArgumentParser) -> None:
    add_store_argument(p)
    p.add_argument("--indicator", default="lead_eligible",
                   help="record flag to analyse: lead_eligible (default), opiate, possession, ...")
    p.add_argument("--area", choices=("first-division", "city"), default="first-division", help=AREA_HELP)
    p.add_argument("--candidates", default=None,
                   help="comma-separated neighborhood names to use instead of --area, e.g. 'RUSSELL,PORTLAND,SHAWNEE'")
    p.add_argument("--permutations", type=at_least(99), default=None,
                   help="conditional permutations for Gi* pseudo p-values, at least 99 (default: enough "
                        "that the strictest FDR level, 1%%, is attainable for the number of units "
                        "tested; with fewer, the levels out of reach are not offered)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_boundary_arguments(p)


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser(
        "hotspots", help="kernel density and Getis-Ord Gi* hotspots of eligible records",
        description="Kernel density (scikit-learn, bandwidth in feet by likelihood cross-validation "
                    "or Scott's rule) and Getis-Ord Gi* (esda, conditional permutations with a fixed "
                    "seed, two-sided pseudo p, Benjamini-Hochberg FDR; labels such as 'hot, FDR 5%') on neighborhoods and on a 1,000 ft grid; writes the "
                    "hotspot_kde, hotspot_gistar_neighborhoods and hotspot_gistar_grid layers.\n"
                    "Example: geo-lead hotspots --indicator opiate --grid-ft 800 --json")
    _common(h)
    h.add_argument("--bandwidth", choices=("scott", "silverman", "cv"), default="cv",
                   help="KDE bandwidth rule (default %(default)s)")
    h.add_argument("--kde-cell-ft", type=at_least(50, float), default=500.0, help="KDE surface cell size in feet (default %(default)s)")
    h.add_argument("--hotspot-sd", type=at_least(0, float), default=2.0,
                   help="KDE hotspot cells: density > mean + N sd (default %(default)s)")
    h.add_argument("--grid-ft", type=at_least(100, float), default=1000.0, help="Gi* grid cell size in feet (default %(default)s)")
    h.set_defaults(func=_run_hotspots)

    s = sub.add_parser(
        "site", help="is Russell+Portland the right pilot zone? best zones, capacity, comparison area",
        description="Compare the pilot zone with every contiguous zone of its size (share, PAI and "
                    "PEI on a train and a holdout period, rank, bootstrap and yearly stability), "
                    "find the exact best contiguous zone of k neighborhoods (MILP, CBC), the "
                    "smallest zone that fills the program's capacity, and a comparison area; "
                    "prints every check (pass / fail / insufficient, with its value, threshold and "
                    "the measure it uses: reach or concentration) and the verdict (justified / revise "
                    "/ inconclusive) naming the check that decides it.\n"
                    "Example: geo-lead site --k 3 --capacity 50 --months 18 --json")
    _common(s)
    s.add_argument("--k", type=at_least(1), default=None, help="size of the best zone to report (default: the pilot's size)")
    s.add_argument("--capacity", type=at_least(1), default=settings.PILOT_CAPACITY_PARTICIPANTS,
                   help="program capacity in participants (default %(default)s)")
    s.add_argument("--months", type=at_least(1), default=settings.PILOT_MONTHS, help="program length in months (default %(default)s)")
    s.add_argument("--objective", choices=("records", "rate"), default="records",
                   help="zone objective: eligible records (default) or EB-smoothed rate x population")
    s.add_argument("--take-up", type=fraction, default=settings.SITE_TAKE_UP_RATE,
                   help="share of eligible stops that become participants (default %(default)s, an assumption)")
    s.add_argument("--persons-per-record", type=at_least(0.01, float), default=None,
                   help="distinct persons per eligible record (default: distinct incidents / records, from data)")
    s.add_argument("--train", default=None, help="training period START:END (YYYY-MM-DD:YYYY-MM-DD); "
                   "default months 1-8 of every year")
    s.add_argument("--test", default=None, help="holdout period START:END; default months 9-12 of every year, or every date outside --train when only --train is given")
    s.add_argument("--replicates", type=at_least(1), default=settings.BOOTSTRAP_REPLICATES,
                   help="bootstrap resamples for stability (default %(default)s)")
    s.add_argument("--by", choices=("year",), default=None,
                   help="site each calendar year of the data on its own (train months 1-8, test 9-12 "
                        "of the year): verdict, checks, the pilot's rank, share and PAI per year; stored "
                        "as meta site_by_year, the site result is kept")
    s.add_argument("--window", default=None,
                   help="only records that occurred in START:END (YYYY-MM-DD:YYYY-MM-DD, END inclusive), "
                        "e.g. one year: 2017-01-01:2017-12-31; default every record")
    s.set_defaults(func=_run_site)


def _candidates(args: argparse.Namespace) -> list[str] | None:
    return [c.strip() for c in args.candidates.split(",")] if args.candidates else None


def _rejoin_if_tolerance(store: Store, args: argparse.Namespace) -> None:
    """With --boundary-tolerance-ft, join again (only when it differs from the stored join's)."""
    if args.boundary_tolerance_ft is not None:
        from geo_lead.spatial_join import join_store

        join_store(store, tolerance_ft=args.boundary_tolerance_ft)


def _run_hotspots(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json
    from geo_lead.hotspots import format_hotspots, hotspots_store
    from geo_lead.store import opened

    with opened(args.store, create=False) as store:
        _rejoin_if_tolerance(store, args)
        result = hotspots_store(store, indicator=args.indicator, area=args.area, boundary=args.boundary,
                                candidates=_candidates(args), kde_cell_ft=args.kde_cell_ft,
                                bandwidth_method=args.bandwidth, hotspot_sd=args.hotspot_sd,
                                grid_cell_ft=args.grid_ft, permutations=args.permutations)
    if args.json:
        print_json(result)
        return 0
    print(format_hotspots(result))
    return 0


def _run_site(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json
    from geo_lead.progress import Progress
    from geo_lead.siting import format_site, site_store
    from geo_lead.store import opened

    if args.by == "year":
        return _run_site_by_year(args)
    progress = Progress("bootstrap resamples", total=args.replicates)
    with opened(args.store, create=False) as store:
        _rejoin_if_tolerance(store, args)
        result = site_store(store, k=args.k, capacity=args.capacity, months=args.months, boundary=args.boundary,
                            indicator=args.indicator, area=args.area, candidates=_candidates(args),
                            objective=args.objective, take_up_rate=args.take_up,
                            persons_per_record=args.persons_per_record, train=args.train,
                            test=args.test, replicates=args.replicates, window=args.window,
                            progress=progress)
    progress.close()
    if args.json:
        print_json(result)
        return 0
    print(format_site(result))
    return 0


def _run_site_by_year(args: argparse.Namespace) -> int:
    from geo_lead.by_year import format_sites_by_year, site_by_year_store
    from geo_lead.console import print_json
    from geo_lead.errors import GeoLeadError
    from geo_lead.store import opened

    if args.train or args.test:
        raise GeoLeadError("--by year splits each year itself (months 1-8 vs 9-12); drop --train/--test")
    with opened(args.store, create=False) as store:
        _rejoin_if_tolerance(store, args)
        result = site_by_year_store(store, indicator=args.indicator, area=args.area, boundary=args.boundary,
                                    candidates=_candidates(args), k=args.k, capacity=args.capacity,
                                    months=args.months, objective=args.objective,
                                    take_up_rate=args.take_up, persons_per_record=args.persons_per_record,
                                    replicates=args.replicates)
        store.put_json("site_by_year", result.to_dict())
    if args.json:
        print_json(result.to_dict())
        return 0
    print(format_sites_by_year(result))
    return 0
