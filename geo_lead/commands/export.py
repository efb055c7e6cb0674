"""`geo-lead export`: records or scores as GeoPackage, GeoParquet or CSV for GIS users."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead.commands import add_store_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export records or scores as GeoPackage, GeoParquet or CSV",
        description="Write the store's records (one row per record, point geometry, no person "
                    "fields) or its neighborhood scores (polygons) for QGIS/ArcGIS, pandas, "
                    "DuckDB or Spark. Records as GeoParquet can be partitioned by month of "
                    "occurrence (a directory of month=YYYY-MM/ files).\n\n"
                    "examples: geo-lead export --what records --format gpkg --out records.gpkg\n"
                    "          geo-lead export --what records --format geoparquet --partition month --out records/\n"
                    "          geo-lead export --what scores --format csv --out scores.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=("records", "scores"), required=True, help="what to export")
    p.add_argument("--format", choices=("gpkg", "geoparquet", "csv"), required=True, dest="fmt",
                   help="file format (csv: records keep lon/lat columns, scores get geometry_wkt; "
                        "a CSV text cell starting with = + - @ tab or CR is prefixed with ' so a "
                        "spreadsheet shows it as text instead of running it; gpkg/geoparquet "
                        "values are written unchanged)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH",
                   help="target file (a directory with --partition month)")
    p.add_argument("--partition", choices=("none", "month"), default="none",
                   help="GeoParquet records only: one file per month of occurred_at (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_store_argument(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: what, format, out, rows, geocoded, partitions, files")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.export import export
    from geo_lead.store import opened

    writable_output(Path(args.out).parent, directory=True)  # the export is written beside it, then moved
    with opened(args.store, create=False) as store:
        result = export(store, args.what, args.fmt, args.out, partition=args.partition,
                        overwrite=args.overwrite)
    if args.json:
        print_json(result)
        return 0
    where = f"{result['partitions']} monthly files under {result['out']}" if result["partitions"] else result["out"]
    print(f"exported {result['rows']:,} {result['what']} ({result['geocoded']:,} with a geometry) "
          f"as {result['format']} to {where}")
    return 0
