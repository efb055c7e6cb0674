"""``geo-lead zone check | serve | page``: the officer's "is this stop inside the pilot zone?".

Only the standard library is imported here; shapely/pyproj (and the geocoder, FastAPI,
uvicorn) are imported inside the handlers so a cold ``zone check`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geo_lead import settings
from geo_lead.commands import at_least, port

if TYPE_CHECKING:  # types only: shapely/pyproj load inside the handlers
    from geo_lead.zone import ZoneChecker

_ZONE_HELP = (f"zone GeoJSON in EPSG:4326 (default {settings.PILOT_ZONE_FILE.name}: "
              "Russell + Portland); its 'members' property names its neighborhoods")
_TOL_HELP = (f"distance in feet within which an answer is flagged near_boundary "
             f"(default {settings.NEAR_BOUNDARY_FT:g}, about a phone GPS or block-geocode error)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zone", help="officers: is this stop inside the LEAD pilot zone?",
        description="Check a stop against the LEAD pilot zone (Russell + Portland): by "
                    "coordinate, by address, over HTTP, or from an offline page on a phone.",
    )
    zsub = p.add_subparsers(dest="zone_command", metavar="ZONE_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = zsub.add_parser(
        "check", help="answer for one coordinate or address",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Say whether one point is inside the pilot zone, which neighborhood it is\n"
                    "in, how far it is from the zone boundary and whether that is close enough\n"
                    "to double-check. Exit 0 whatever the answer; 2 for bad input.\n\n"
                    "examples:\n"
                    "  geo-lead zone check --lat 38.2587 --lon -85.7930\n"
                    '  geo-lead zone check --address "2700 BLOCK W MADISON ST" --json',
    )
    c.add_argument("--lat", help="latitude, decimal degrees (WGS 84), e.g. 38.2587")
    c.add_argument("--lon", help="longitude, decimal degrees (WGS 84), e.g. -85.7930")
    c.add_argument("--address", help='street address or LMPD block address, e.g. "2700 BLOCK W MADISON ST"')
    c.add_argument("--zip", dest="zip_code", default=None, help="ZIP code for --address (optional)")
    c.add_argument("--zone", type=Path, default=settings.PILOT_ZONE_FILE, help=_ZONE_HELP)
    c.add_argument("--near-boundary-ft", type=at_least(0.0, float), default=settings.NEAR_BOUNDARY_FT, help=_TOL_HELP)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_run_check)

    s = zsub.add_parser(
        "serve", help="HTTP service: GET /zone?lat=..&lon=.. or ?address=.., and a phone page at /",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the zone check over HTTP (FastAPI + uvicorn).\n"
                    "  GET /zone?lat=38.2587&lon=-85.7930   GET /zone?address=...&zip=40203\n"
                    "  GET /healthz                          GET /  (page: use my location / address)\n"
                    "Queried locations are NOT logged unless --log-queries is given.\n\n"
                    "example:\n  geo-lead zone serve --host 127.0.0.1 --port 8000",
    )
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=port, default=8000, help="TCP port, 1-65535 (default 8000)")
    s.add_argument("--zone", type=Path, default=settings.PILOT_ZONE_FILE, help=_ZONE_HELP)
    s.add_argument("--near-boundary-ft", type=at_least(0.0, float), default=settings.NEAR_BOUNDARY_FT, help=_TOL_HELP)
    s.add_argument("--log-queries", action="store_true",
                   help="log each request line and queried location (off by default for privacy)")
    s.set_defaults(func=_run_serve)

    g = zsub.add_parser(
        "page", help="write the offline zone-check page (one HTML file, no server, no network)",
        description="Write one self-contained HTML file with the zone polygons embedded: it "
                    "uses the phone's location (or a typed coordinate) and answers with no "
                    "network. Example: geo-lead zone page --out maps/zone_check.html",
    )
    g.add_argument("--out", type=Path, default=settings.MAPS_DIR / "zone_check.html",
                   help="output HTML file (default maps/zone_check.html)")
    g.add_argument("--zone", type=Path, default=settings.PILOT_ZONE_FILE, help=_ZONE_HELP)
    g.add_argument("--near-boundary-ft", type=at_least(0.0, float), default=settings.NEAR_BOUNDARY_FT, help=_TOL_HELP)
    g.set_defaults(func=_run_page)


def _checker(args: argparse.Namespace) -> ZoneChecker:
    from geo_lead.zone import ZoneChecker

    return ZoneChecker(args.zone, near_boundary_ft=args.near_boundary_ft)


def _run_check(args: argparse.Namespace) -> int:
    from geo_lead.errors import ZoneInputError

    has_coord = args.lat is not None or args.lon is not None
    if has_coord and args.address:
        raise ZoneInputError("give either --lat/--lon or --address, not both.")
    if not has_coord and not args.address:
        raise ZoneInputError("nothing to check: give --lat and --lon, or --address "
                             '(e.g. geo-lead zone check --lat 38.2587 --lon -85.7930).')
    if has_coord:
        from geo_lead.zone import parse_coordinate

        lat, lon = parse_coordinate(args.lat, "lat"), parse_coordinate(args.lon, "lon")
        answer = _checker(args).check(lat, lon).to_dict()
        west, south, east, north = settings.JEFFERSON_BBOX  # (a swapped pair raised in check)
        if not (west <= lon <= east and south <= lat <= north):
            print(f"geo-lead: note: {lat}, {lon} is outside Jefferson County, KY.", file=sys.stderr)
    else:
        from geo_lead.zone import check_address

        answer = check_address(_checker(args), args.address, args.zip_code)
    if args.json:
        from geo_lead.console import print_json

        print_json(answer)
    else:
        print(format_answer(answer, args.near_boundary_ft))
    return 0


def format_answer(answer: dict, near_boundary_ft: float) -> str:
    """The plain-text answer an officer reads (first line is the yes/no)."""
    where = f" ({answer['neighborhood']})" if answer.get("neighborhood") else ""
    lines = [("INSIDE" if answer["inside"] else "OUTSIDE") + f" the LEAD pilot zone{where}"]
    dist = answer.get("distance_to_boundary_ft")
    if dist is not None and dist == dist:
        lines.append(f"  {dist:,.0f} ft from the zone boundary")
    if answer.get("near_boundary"):
        lines.append(f"  NEAR THE BOUNDARY (within {near_boundary_ft:,.0f} ft): GPS and geocodes "
                     "can be off by this much; confirm the exact location.")
    if "match_type" in answer:
        lines.append(f"  located by address: {answer.get('matched_address') or '?'} "
                     f"(match_type {answer['match_type']}, score {answer.get('score', float('nan')):.2f}; "
                     f"lat {answer['lat']:.6f}, lon {answer['lon']:.6f})")
    lines.append(f"  zone version {answer['zone_version']}")
    return "\n".join(lines)


def _run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from geo_lead.errors import GeocodeError
    from geo_lead.zone import default_geocoder
    from geo_lead.zone_service import create_app, uvicorn_log_config

    try:  # load the geocoder's reference now, so the first address query is not slow
        geocoder = default_geocoder()
    except GeocodeError as exc:
        geocoder = None
        print(f"geo-lead: note: {exc} Address queries will answer 503.", file=sys.stderr)
    app = create_app(_checker(args), geocoder=geocoder, log_queries=args.log_queries)
    print(f"zone service on http://{args.host}:{args.port}/ (Ctrl-C to stop); "
          f"query logging {'ON' if args.log_queries else 'off'}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.log_queries,
                log_config=uvicorn_log_config(args.log_queries))
    return 0


def _run_page(args: argparse.Namespace) -> int:
    from geo_lead.console import writable_output
    from geo_lead.zone_page import write_page

    out = write_page(writable_output(args.out), _checker(args))
    print(f"wrote {out} ({out.stat().st_size / 1024:,.0f} KiB); copy it to a phone and open it "
          "in the browser: it works with no network.")
    return 0
