"""Files -> the store: read, flag, and add records idempotently, with full accounting.

`ingest_files` runs in one store transaction: a crash leaves the store as before, and two
ingests at once serialise. For each file it returns rows_read = accepted + rejected, and
accepted = added + unchanged + updated (see `Store.upsert_records` for the update rule).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from geo_lead import indicators
from geo_lead.progress import Progress, null_progress
from geo_lead.sources import iter_chunks, load_mapping
from geo_lead.store import Store

log = logging.getLogger(__name__)


@dataclass
class FileReport:
    file: str
    source: str
    sha256: str
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    added: int = 0
    unchanged: int = 0
    updated: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sha256_file(path: Path, block_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def ingest_files(
    store: Store,
    paths: Sequence[Path | str],
    source: str | None = None,
    mapping: Path | str | None = None,
    encoding: str = "utf-8",
    rules: indicators.Rules | None = None,
    progress: Progress | None = None,
) -> list[FileReport]:
    """Read each file, flag its records and add them to the store in one transaction.

    Returns
    -------
    list[FileReport]
        Per-file counts; ``rows_read == accepted + rejected`` and
        ``accepted == added + unchanged + updated`` for each.
    """
    rules = rules or indicators.load_rules()
    mapping_data = load_mapping(mapping) if mapping else None
    progress = progress or null_progress()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    reports: list[FileReport] = []
    with store.write():
        for path in map(Path, paths):
            sha = sha256_file(path) if path.is_file() else ""  # else iter_chunks says why
            report = FileReport(file=path.name, source=source or "", sha256=sha)
            for chunk in iter_chunks(path, source=source, mapping=mapping_data, encoding=encoding):
                report.rows_read += chunk.rows_read
                report.rejected += len(chunk.rejects)
                report.accepted += len(chunk.records)
                report.source = chunk.source or report.source
                if len(chunk.records):
                    flagged = pd.concat([chunk.records, indicators.classify(chunk.records, rules)], axis=1)
                    counts = store.upsert_records(flagged, ingested_at=now)
                    report.added += counts["added"]
                    report.unchanged += counts["unchanged"]
                    report.updated += counts["updated"]
                if len(chunk.rejects):
                    rejects = chunk.rejects.assign(file_sha256=sha, ingested_at=now)
                    store.insert_rows("rejects", rejects, or_ignore=True)
                person_cols = [c for c in chunk.persons.columns if c != "record_id"]
                if person_cols and len(chunk.persons):
                    store.insert_rows("persons", chunk.persons, or_ignore=True)
                progress.update(chunk.rows_read)
            store.insert_rows("ingests", pd.DataFrame([{
                "source_file": path.name, "path": str(path.resolve()), "file_sha256": sha,
                "source": report.source, "rows_read": report.rows_read,
                "accepted": report.accepted, "rejected": report.rejected, "added": report.added,
                "unchanged": report.unchanged, "updated": report.updated, "ingested_at": now}]))
            log.info("%s: %d read, %d accepted, %d rejected, %d added", path.name,
                     report.rows_read, report.accepted, report.rejected, report.added)
            reports.append(report)
        store.touch("records")
    return reports


def reclassify_store(store: Store, rules: indicators.Rules | None = None) -> int:
    """Recompute every record's flags with `rules` (after the rules file changed)."""
    rules = rules or indicators.load_rules()
    records = store.read_records(["record_id", "offense_text", "statute"])
    flags = indicators.classify(records, rules)
    flags.insert(0, "record_id", records["record_id"])
    for flag in rules.all_flags:
        flags[flag] = flags[flag].astype(int)
    with store.write():
        return store.update_records(flags)
