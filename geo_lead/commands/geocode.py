"""`geo-lead geocode-address`, `geo-lead geocode-file` and `geo-lead geocode`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geo_lead.commands import add_store_argument


def _add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", type=Path, action="append", metavar="FILE",
                   help="reference file (repeatable): full LOJIC address points, street centerlines "
                        "with per-side address ranges (TIGER ADDRFEAT/EDGES-like), Census results or "
                        "an intersection table; default: the shipped sample in data/reference/")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "geocode-address", help="geocode one address offline and print the result",
        description="Geocode one LMPD block address, intersection or street address offline.\n\n"
                    "example: geo-lead geocode-address \"2700 BLOCK W MADISON ST\" --zip 40211 --json",
        formatter_class=fmt)
    p.add_argument("address", help='the address, e.g. "2700 BLOCK W MADISON ST" or "N 26TH ST / BANK ST"')
    p.add_argument("--zip", default="", help="ZIP code (breaks ties between same-named streets)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: input, lon, lat, match_type, score, matched_address, reason")
    _add_reference(p)
    p.set_defaults(func=_run_address)

    f = sub.add_parser(
        "geocode-file", help="geocode an address column of a CSV file into a new CSV",
        description="Write every input row (same count, same order) with lon, lat, match_type, score, "
                    "matched_address and geocode_reason appended, and print the match rate by type.\n\n"
                    "example: geo-lead geocode-file data/lmpd/crime_data_2017_drug_sample.csv "
                    "--address-column BLOCK_ADDRESS --zip-column ZIP_CODE --out geocoded.csv",
        formatter_class=fmt)
    f.add_argument("input", type=Path, metavar="IN.csv")
    f.add_argument("--address-column", required=True, metavar="COL",
                   help="column holding the address (e.g. BLOCK_ADDRESS, 'Block Address')")
    f.add_argument("--zip-column", metavar="COL", help="column holding the ZIP code (optional)")
    f.add_argument("--out", type=Path, required=True, metavar="OUT.csv",
                   help="where to write the input rows with the result columns appended (text "
                        "cells starting with = + - @ tab or CR get a leading ' so a spreadsheet "
                        "does not run them as formulas)")
    f.add_argument("--encoding", default="utf-8", help="text encoding of IN.csv (default utf-8)")
    f.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_reference(f)
    f.set_defaults(func=_run_file)

    s = sub.add_parser(
        "geocode", help="geocode the store's records that have no point yet",
        description="Geocode the store's records with no point yet, through the geocode_cache table "
                    "(a rerun only geocodes new addresses; the cache is dropped when the reference "
                    "changes). Offline unless --online-census is given.\n\n"
                    "example: geo-lead geocode --store data/lead.gpkg",
        formatter_class=fmt)
    add_store_argument(s)
    s.add_argument("--all", action="store_true", help="geocode every record again, not only missing ones")
    s.add_argument("--online-census", action="store_true",
                   help="also ask the US Census batch geocoder (network!) about addresses left unmatched")
    s.add_argument("--json", action="store_true", help="print the counts as JSON")
    _add_reference(s)
    s.set_defaults(func=_run_store)


def _geocoder(args: argparse.Namespace):
    from geo_lead.geocode import Geocoder

    return Geocoder(reference_files=args.reference)


def _run_address(args: argparse.Namespace) -> int:
    from geo_lead.cli import print_json

    row = _geocoder(args).geocode_one(args.address, args.zip)
    if args.json:
        print_json(row)
    else:
        for k, v in row.items():
            print(f"{k:>16}: {v}")
    return 0


def _summary_lines(counts: dict[str, int], total: int) -> list[str]:
    from geo_lead.geocode import MATCH_TYPES

    return [f"{t:>13}: {counts.get(t, 0):>8,} ({100.0 * counts.get(t, 0) / max(total, 1):5.1f}%)"
            for t in MATCH_TYPES]


def _run_file(args: argparse.Namespace) -> int:
    import pandas as pd

    from geo_lead.cli import print_json, writable_output
    from geo_lead.errors import InputFileError, MissingColumnError
    from geo_lead.outputs import write_csv
    from geo_lead.progress import Progress

    if not args.input.exists():
        raise InputFileError(f"{args.input}: file not found.")
    writable_output(args.out)
    try:
        frame = pd.read_csv(args.input, dtype=str, keep_default_na=False, encoding=args.encoding)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputFileError(f"{args.input}: cannot read as CSV ({exc}).") from None
    for col in (args.address_column, args.zip_column):
        if col and col not in frame.columns:
            raise MissingColumnError(str(args.input), col, list(frame.columns))
    geocoder = _geocoder(args)
    zips = frame[args.zip_column].tolist() if args.zip_column else None
    n_unique = int(frame[args.address_column].nunique())
    progress = Progress("geocode addresses", total=n_unique)
    res = geocoder.geocode(frame[args.address_column].tolist(), zips, progress=progress)
    progress.close()
    out = frame.copy()
    for col, src in (("lon", "lon"), ("lat", "lat"), ("match_type", "match_type"), ("score", "score"),
                     ("matched_address", "matched_address"), ("geocode_reason", "reason")):
        out[col] = res[src].to_numpy()
    write_csv(out, args.out)  # atomic, formula cells neutralised (see --help)
    counts = res["match_type"].value_counts().to_dict()
    if args.json:
        print_json({"rows": len(out), "out": str(args.out), "by_match_type": counts})
    else:
        print(f"{args.input}: {len(out):,} rows -> {args.out}")
        print("\n".join(_summary_lines(counts, len(out))))
    return 0


def _run_store(args: argparse.Namespace) -> int:
    from geo_lead.cli import print_json
    from geo_lead.geocode import geocode_store
    from geo_lead.progress import Progress
    from geo_lead.store import opened

    online = None
    if args.online_census:
        from geo_lead.geocode.census import CensusBatchGeocoder

        online = CensusBatchGeocoder()
        print("geo-lead: --online-census sends unmatched addresses to geocoding.geo.census.gov",
              file=sys.stderr)
    geocoder = _geocoder(args)
    progress = Progress("geocode addresses")
    with opened(args.store, create=False) as store:
        counts = geocode_store(store, geocoder, progress=progress, only_missing=not args.all, online=online)
    progress.close()
    if args.json:
        print_json(counts)
        return 0
    print(f"{counts['records']:,} records geocoded ({counts['addresses_new']:,} new addresses, "
          f"{counts['geocoded_from_cache']:,} records from the cache)")
    print("\n".join(_summary_lines(counts["by_match_type"], counts["records"])))
    if counts["unmatched_reasons"]:
        print("unmatched, by reason:")
        for reason, n in sorted(counts["unmatched_reasons"].items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {n:>6,}  {reason}")
    return 0
