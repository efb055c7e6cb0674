"""`geo-lead ingest` and `geo-lead indicators`."""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead.commands import add_sample_fraction_argument, add_store_argument

SOURCE_CHOICES = ("crime-pre2023", "crime-2023", "citations")


def add_reading_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=SOURCE_CHOICES,
                   help="force the file format instead of detecting it from the header")
    p.add_argument("--mapping", type=Path, metavar="PATH",
                   help="TOML/JSON file mapping canonical fields to your file's column names "
                        "(see docs/ARCHITECTURE.md); for releases with renamed columns")
    p.add_argument("--encoding", default="utf-8",
                   help="text encoding of the files (default utf-8; e.g. latin-1). Rows not valid "
                        "in it are rejected with their line number")
    p.add_argument("--rules", type=Path, metavar="PATH",
                   help="indicator rules file (default: the shipped geo_lead/rules/opiate_rules.toml); "
                        "stored records flagged by other rules are re-flagged first")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="read LMPD crime/citation CSV files into the store",
        description="Read LMPD Crime Data (pre-2023 or 2023+) or Uniform Citation Data CSV files, "
                    "flag opiate indicators and add the records to the store. Re-ingesting a file "
                    "adds nothing; rows that cannot be read go to the store's rejects table with "
                    "file, line and reason. Each file is stored with its sha256 and its declared sample "
                    "fraction (--sample-fraction; shipped files: data/lmpd/sampling.csv).\n\n"
                    "example: geo-lead ingest data/lmpd/crime_data_2017_drug_sample.csv\n"
                    "         geo-lead ingest another_2017_sample.csv --sample-fraction 0.05",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_reading_arguments(p)
    add_sample_fraction_argument(p)
    add_store_argument(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: rows_read, accepted, rejected, added, unchanged, updated, files")
    p.set_defaults(func=_run_ingest)

    q = sub.add_parser(
        "indicators", help="show how the rules classify each offence text (for review)",
        description="Read files (no store needed) and print offence text -> class, the rules that "
                    "fired and the record count, so an analyst can review the indicator rules.\n\n"
                    "example: geo-lead indicators data/lmpd/crime_data_2017_drug_sample.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_reading_arguments(q)
    q.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    q.set_defaults(func=_run_indicators)


def _run_ingest(args: argparse.Namespace) -> int:
    from geo_lead.console import print_json
    from geo_lead.indicators import load_rules
    from geo_lead.ingest import ingest_files, reflag_if_rules_changed
    from geo_lead.progress import Progress
    from geo_lead.store import opened

    rules = load_rules(args.rules)
    progress = Progress("ingest rows")
    with opened(args.store) as store:
        with store.write():
            reflagged = reflag_if_rules_changed(store, rules)
        reports = ingest_files(store, args.files, source=args.source, mapping=args.mapping,
                               encoding=args.encoding, rules=rules, progress=progress,
                               sample_fraction=args.sample_fraction)
    progress.close()
    keys = ("rows_read", "accepted", "rejected", "added", "unchanged", "updated")
    totals = {k: sum(getattr(r, k) for r in reports) for k in keys}
    if args.json:
        print_json({**totals, "reflagged": reflagged, "store": str(args.store),
                    "files": [r.as_dict() for r in reports]})
        return 0
    if reflagged:
        print(f"indicator rules changed ({rules.path}): {reflagged:,} stored records re-flagged")
    for r in reports:
        print(f"{r.file} ({r.source}): {r.rows_read:,} rows read = {r.accepted:,} accepted + "
              f"{r.rejected:,} rejected; added {r.added:,}, unchanged {r.unchanged:,}, updated {r.updated:,}; "
              f"sample fraction {r.sample_fraction:g} ({r.fraction_from}), report years "
              f"{', '.join(map(str, r.years)) or '-'}"
              + ("; already ingested (same sha256): not parsed again" if r.skipped else ""))
    if len(reports) > 1:
        print(f"total: {totals['rows_read']:,} rows read = {totals['accepted']:,} accepted + "
              f"{totals['rejected']:,} rejected; added {totals['added']:,}")
    print(f"store: {args.store}" + ("  (rejects: see its `rejects` table)" if totals["rejected"] else ""))
    return 0


def _run_indicators(args: argparse.Namespace) -> int:
    import pandas as pd

    from geo_lead.console import print_json
    from geo_lead.indicators import load_rules, review_table
    from geo_lead.sources import read_records

    rules = load_rules(args.rules)
    frames = [read_records(f, source=args.source, mapping=args.mapping, encoding=args.encoding).records
              for f in args.files]
    records = pd.concat(frames, ignore_index=True)
    table = review_table(records, rules)
    if args.json:
        print_json(table.to_dict("records"))
        return 0
    print(f"rules: {rules.path} (version {rules.version})")
    if table.empty:
        print("no records to classify (every row was rejected, or the files have no rows)")
        return 0
    width = min(max(int(table["offense_text"].str.len().max()), 10), 70)
    print(f"{'records':>7}  {'class':<18} {'eligible':<8} {'offence text':<{width}}  rules")
    for row in table.itertuples(index=False):
        print(f"{row.records:>7}  {row._1:<18} {'yes' if row.lead_eligible else 'no':<8} "
              f"{row.offense_text[:width]:<{width}}  {row.rules}")
    by_class = table.groupby("class")["records"].sum().sort_values(ascending=False)
    print("\nrecords by class: " + ", ".join(f"{k} {v:,}" for k, v in by_class.items()))
    return 0
