"""`geo-lead geocode-address`, `geo-lead geocode-file` and `geo-lead geocode`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geo_lead.commands import add_store_argument

if TYPE_CHECKING:  # types only: this command imports pandas and the geocoder in its handlers
    import pandas as pd

    from geo_lead.geocode import Geocoder


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
    p.add_argument("--beat", default="", help="LMPD beat code, e.g. 112 (chooses among candidate places "
                                             "inside that beat first, then by ZIP; never moves a point)")
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
    f.add_argument("--beat-column", metavar="COL",
                   help="column holding the LMPD beat (optional, e.g. LMPD_BEAT): chooses among candidate "
                        "places, and adds a beat_check column (same/adjacent/other/no_beat)")
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
    s.add_argument("--review", action="store_true",
                   help="after geocoding, list the records whose point lies outside their own LMPD beat and "
                        "every beat touching it (beat_check = other), with both beats and the match details")
    _add_reference(s)
    s.set_defaults(func=_run_store)


def _geocoder(args: argparse.Namespace) -> Geocoder:
    from geo_lead.geocode import Geocoder

    return Geocoder(reference_files=args.reference)


def _run_address(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json

    row = _geocoder(args).geocode_one(args.address, args.zip, args.beat)
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

    from geo_lead.console import print_json, writable_output
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
    for col in (args.address_column, args.zip_column, args.beat_column):
        if col and col not in frame.columns:
            raise MissingColumnError(str(args.input), col, list(frame.columns))
    geocoder = _geocoder(args)
    zips = frame[args.zip_column].tolist() if args.zip_column else None
    n_unique = int(frame[args.address_column].nunique())
    progress = Progress("geocode addresses", total=n_unique)
    beats = frame[args.beat_column].tolist() if args.beat_column else None
    res = geocoder.geocode(frame[args.address_column].tolist(), zips, progress=progress, beats=beats)
    progress.close()
    out = frame.copy()
    for col, src in (("lon", "lon"), ("lat", "lat"), ("match_type", "match_type"), ("score", "score"),
                     ("matched_address", "matched_address"), ("geocode_reason", "reason")):
        out[col] = res[src].to_numpy()
    rates = None
    if beats is not None:
        import geo_lead.geocode.beat_check as bc

        checks = bc.checks_for(res["lon"].to_numpy(float), res["lat"].to_numpy(float), beats, bc.shipped_index())
        out["beat_check"] = checks
        tally = pd.DataFrame({"match_type": res["match_type"], "beat_check": checks}).dropna()
        rates = bc.rates_table(tally.groupby(["match_type", "beat_check"]).size().rename("records").reset_index())
    write_csv(out, args.out)  # atomic, formula cells neutralised (see --help)
    counts = res["match_type"].value_counts().to_dict()
    if args.json:
        print_json({"rows": len(out), "out": str(args.out), "by_match_type": counts,
                    **({"beat_check_by_match_type": bc.rates_json(rates)} if rates is not None else {})})
    else:
        print(f"{args.input}: {len(out):,} rows -> {args.out}")
        print("\n".join(_summary_lines(counts, len(out))))
        if rates is not None:
            print("\n".join(_beat_lines(rates)))
    return 0


def _beat_lines(rates: pd.DataFrame) -> list[str]:
    """The beat agreement table (`geo_lead.geocode.beat_check.rates_table`) as text lines."""
    if not len(rates):
        return []
    lines = ["in the record's own LMPD beat, by match type (of the records whose beat has a polygon):"]
    for row in rates.itertuples(index=False):
        share = "   n/a" if row.checked == 0 else f"{100 * row.same_share:5.1f}%"
        near = "" if row.checked == 0 else f", same or adjacent {100 * row.same_or_adjacent_share:5.1f}%"
        lines.append(f"{row.match_type:>13}: same {share} of {row.checked:,}{near}; "
                     f"other {row.other:,}, no beat polygon {row.no_beat:,}")
    return lines


def _run_store(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json
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
        review = None
        if args.review:
            from geo_lead.geocode.beat_check import review_records

            review = review_records(store)
    if args.json:
        if review is not None:
            counts["review"] = review.to_dict("records")
        print_json(counts)
        return 0
    print(f"{counts['records']:,} records geocoded ({counts['addresses_new']:,} new addresses, "
          f"{counts['geocoded_from_cache']:,} records from the cache)")
    print("\n".join(_summary_lines(counts["by_match_type"], counts["records"])))
    if counts["unmatched_reasons"]:
        print("unmatched, by reason:")
        for reason, n in sorted(counts["unmatched_reasons"].items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {n:>6,}  {reason}")
    if counts.get("beat_check_by_match_type"):
        from geo_lead.geocode.beat_check import rates_table

        print("\n".join(_beat_lines(rates_table(_rates_frame(counts["beat_check_by_match_type"])))))
    if review is not None:
        print(f"{len(review):,} records lie outside their own beat and every beat touching it (review them):")
        for row in review.itertuples(index=False):
            print(f"  {row.record_id}  {row.address_raw!s} {row.zip or ''}: named beat {row.beat}, point in "
                  f"{row.beat_at_point or 'no beat'}; {row.match_type} {row.score:.2f} "
                  f"{row.matched_address or ''} ({row.geocode_reason or ''}) at {row.lat:.6f}, {row.lon:.6f}")
    return 0


def _rates_frame(by_type: dict) -> object:
    """``beat_check_by_match_type`` JSON back to (match_type, beat_check, records) counts."""
    import pandas as pd

    rows = [(mt, chk, v[chk]) for mt, v in by_type.items() if mt != "all"
            for chk in ("same", "adjacent", "other", "no_beat") if v.get(chk)]
    return pd.DataFrame(rows, columns=["match_type", "beat_check", "records"])
