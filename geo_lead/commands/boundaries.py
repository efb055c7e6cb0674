"""`geo-lead boundaries rebuild`: regenerate the boundary GeoJSON files."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "boundaries", help="rebuild neighborhoods, pilot zone and First Division GeoJSON",
        description=(
            "rebuild: regenerate boundaries/neighborhoods.geojson and pilot_zone.geojson from the "
            "LOJIC shapefile, lmpd_beats.geojson and lmpd_divisions.geojson from the LMPD beats "
            "shapefile (boundaries/source/lmpd_beats/), and first_division.geojson: LMPD's official "
            "1st Division polygon from those divisions (a neighborhood is in when at least half its "
            "area is inside), or a user's official LMPD division file (--divisions), or with "
            "--from-records the store's geocoded records (each neighborhood takes the division "
            "holding most of its records; LMPD's description when there is no store). The "
            "records' division is printed beside the official one as a cross-check.\n\n"
            "examples: geo-lead boundaries rebuild\n"
            "          geo-lead boundaries rebuild --divisions LMPD_Divisions.shp"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="boundaries_command", metavar="ACTION")
    r = bsub.add_parser("rebuild", help="regenerate the boundary files",
                        description="Regenerate the boundary GeoJSON files (see `geo-lead boundaries -h`).")
    r.add_argument("--divisions", type=Path, metavar="PATH",
                   help="official LMPD division polygons (any GDAL vector file); its First Division replaces the derived one")
    r.add_argument("--from-records", action="store_true",
                   help="decide the First Division from the store's records instead of LMPD's polygon")
    r.add_argument("--store", type=Path, default=settings.DEFAULT_STORE, metavar="PATH",
                   help="store whose geocoded records give the cross-check, or the First Division "
                        "itself with --from-records (default: %(default)s; when missing, LMPD's "
                        "description is used)")
    r.add_argument("--out", type=Path, default=settings.BOUNDARIES_DIR, metavar="DIR",
                   help="where the GeoJSON files go (default: the project's boundaries/)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=_run_rebuild)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])


def _run_rebuild(args: argparse.Namespace) -> int:
    from geo_lead.boundaries import rebuild
    from geo_lead.console import print_json, writable_output
    from geo_lead.division_records import deriver
    from geo_lead.divisions import (
        divisions_for_store,
        format_comparison,
        write_official_first_division,
    )
    from geo_lead.store import opened

    writable_output(args.out, directory=True)
    comparison = None
    if args.divisions is None and Path(args.store).exists():
        with opened(args.store, create=False) as store:
            summary = rebuild(args.out, derive=deriver(store))
            if not args.from_records:
                fd = write_official_first_division(args.out)
                comparison = divisions_for_store(store)
    else:
        summary = rebuild(args.out, divisions=args.divisions)
        if args.divisions is None and not args.from_records:
            fd = write_official_first_division(args.out)
    if comparison is not None or (args.divisions is None and not args.from_records):
        summary["first_division_method"] = fd["method"].iloc[0]
        summary["first_division_members"] = [m for m in fd["members"].iloc[0].split(";") if m]
        summary["disagreements"] = []
        summary["division_comparison"] = comparison.to_dict() if comparison is not None else None
    if args.json:
        print_json(summary)
        return 0
    print(f"wrote neighborhoods ({summary['neighborhoods']} units), pilot zone and First Division to {summary['out_dir']}")
    print(f"wrote LMPD beats ({summary['beats']}) and divisions ({summary['divisions']})")
    if comparison is None:
        members = summary["first_division_members"]
        assert isinstance(members, list)
        print(f"First Division ({summary['first_division_method']}): "
              + (", ".join(members) or "official polygon"))
    notes = summary["disagreements"]
    assert isinstance(notes, list)
    for note in notes:
        print(f"  differs from LMPD's description: {note}")
    if comparison is not None:
        print(format_comparison(comparison))
    return 0
