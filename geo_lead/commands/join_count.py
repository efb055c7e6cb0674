"""`geo-lead join-count`: the join/count stage on pandas or dask-geopandas partitions."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import add_store_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "join-count", help="join geocoded records to neighborhoods and count them (pandas or dask)",
        description="Join the geocoded records to the neighborhood units (EPSG:2246) and count "
                    "them per neighborhood, overall and per indicator flag, with the accounting "
                    "records = joined + outside + not geocoded. --engine dask runs the same code "
                    "on dask partitions (local threads, a local cluster, or a remote scheduler); "
                    "--records reads a GeoParquet export instead of the store, e.g. a month-"
                    "partitioned dataset on shared storage.\n\n"
                    "examples: geo-lead join-count --engine dask --scheduler local\n"
                    "          geo-lead join-count --engine dask --records records_by_month/ "
                    "--scheduler tcp://scheduler:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                   help="pandas (default) or dask-geopandas partitions")
    add_store_argument(p, "the GeoPackage store to read records from")
    p.add_argument("--records", metavar="PATH",
                   help="read records from a GeoParquet file/directory (geo-lead export) instead")
    p.add_argument("--neighborhoods", type=Path, default=settings.NEIGHBORHOODS_FILE, metavar="PATH",
                   help="neighborhood units (default: the shipped LOJIC layer)")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="dask partitions when reading from the store (default: 2 per core)")
    p.add_argument("--scheduler", default="threads", metavar="NAME",
                   help="dask scheduler: threads (default), processes, synchronous, local "
                        "(a local distributed cluster) or tcp://HOST:PORT")
    p.add_argument("--write", action="store_true",
                   help="also run the join stage: write each record's neighborhood into the store "
                        "(what `geo-lead run` does), on the chosen engine")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: engine, records, joined, outside, not_geocoded, counts")
    p.set_defaults(func=_run_join_count)


def _run_join_count(args: argparse.Namespace) -> int:
    import time

    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.console import print_json
    from geo_lead.dask_engine import join_and_count, store_points
    from geo_lead.store import opened

    started = time.perf_counter()
    if args.records:
        if args.write:
            from geo_lead.errors import GeoLeadError

            raise GeoLeadError("--write updates the store; it cannot be combined with --records.")
        records = args.records
    else:
        with opened(args.store, create=False) as store:
            if args.write:
                from geo_lead.dask_engine import join_store

                join_store(store, engine=args.engine, npartitions=args.partitions,
                           scheduler=args.scheduler)
            records = store_points(store)
    result = join_and_count(records, load_neighborhoods(args.neighborhoods), engine=args.engine,
                            npartitions=args.partitions, scheduler=args.scheduler)
    result["seconds"] = round(time.perf_counter() - started, 3)
    counts = result.pop("counts")
    if args.json:
        print_json({**result, "counts": counts.to_dict("records")})
        return 0
    print(f"{result['records']:,} records = {result['joined']:,} joined + {result['outside']:,} outside "
          f"every neighborhood + {result['not_geocoded']:,} not geocoded  ({args.engine}, "
          f"{result['seconds']:.1f} s)")
    top = counts.sort_values("records", ascending=False).head(15)
    print(f"{'neighborhood':<34} {'records':>8} {'opiate':>7} {'per sq mi':>10}")
    for row in top.itertuples(index=False):
        print(f"{row.neighborhood[:34]:<34} {row.records:>8,} {row.opiate:>7,} {row.density_per_sqmi:>10,.1f}")
    return 0
