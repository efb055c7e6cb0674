"""`geo-lead maps` and `geo-lead report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings
from geo_lead.commands import add_store_argument


def _store_arg(p: argparse.ArgumentParser) -> None:
    add_store_argument(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "maps", help="write the interactive site-selection and timeline maps (offline HTML)",
        description="Write maps/site_selection.html (score choropleth, density surface, Gi* hot "
                    "spots, records by block point, pilot/best/comparison outlines) and "
                    "maps/timeline.html (records by month with a slider) from the store. Pages "
                    "are self-contained: Leaflet is inlined and they send no request, so they open "
                    "on a laptop with no internet. Layers a stage has not produced yet are left "
                    "out and said in the page's notes.\n\n"
                    "example: geo-lead maps\n         geo-lead maps --tiles --out /tmp/maps   "
                    "# adds *_tiles.html pages that load OpenStreetMap tiles",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _store_arg(p)
    p.add_argument("--out", type=Path, default=settings.MAPS_DIR, metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True,
                   help="inline Leaflet and plugins so the page sends no request (default); "
                        "--no-offline loads them from CDNs instead (smaller files)")
    p.add_argument("--tiles", action="store_true",
                   help="also write site_selection_tiles.html and timeline_tiles.html with an "
                        "OpenStreetMap basemap (those pages load tiles from the internet); the "
                        "offline pages are still written and never replaced")
    p.add_argument("--json", action="store_true", help="print {name: path, ...} as JSON")
    p.set_defaults(func=_run_maps)

    r = sub.add_parser(
        "report", help="write the self-contained site-selection report (maps/report.html)",
        description="Write one HTML page with the question, the data (sources, dates, counts, "
                    "geocoding match rates by type), the ranked neighborhoods, the figures "
                    "(inlined PNG), the verdict with its numbers, the comparison area, the method "
                    "and its limits.\n\nexample: geo-lead report\n         geo-lead report --out /tmp/report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _store_arg(r)
    r.add_argument("--out", type=Path, default=settings.MAPS_DIR / "report.html", metavar="PATH",
                   help="output file (default: %(default)s)")
    r.add_argument("--json", action="store_true", help="print {\"report\": path} as JSON")
    r.set_defaults(func=_run_report)


def _run_maps(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.maps import write_maps
    from geo_lead.store import opened

    writable_output(args.out, directory=True)
    with opened(args.store, create=False) as store:
        paths = write_maps(store, args.out, offline=args.offline, tiles=args.tiles)
    if args.json:
        print_json({k: str(v) for k, v in paths.items()})
    else:
        for name, path in paths.items():
            where = "loads map tiles from the internet" if name.endswith("_tiles") else "opens offline"
            print(f"{name:<21} {path}  ({path.stat().st_size / 1e6:.2f} MB, {where})")
        if args.tiles:
            print("note: the *_tiles.html pages load OpenStreetMap tiles from the internet when "
                  "opened (and tell the tile server which area is viewed); the other pages send no request.")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json, writable_output
    from geo_lead.report import write_report
    from geo_lead.store import opened

    writable_output(args.out)
    with opened(args.store, create=False) as store:
        path = write_report(store, args.out)
    if args.json:
        print_json({"report": str(path)})
    else:
        print(f"report {path}  ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
