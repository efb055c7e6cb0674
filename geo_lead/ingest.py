"""Files -> the store: read, flag, and add records idempotently, with full accounting.

`ingest_files` runs in one store transaction: a crash leaves the store as before, and two
ingests at once serialise. For each file it returns rows_read = accepted + rejected, and
accepted = added + unchanged + updated (see `Store.upsert_records` for the update rule).

Each file is stored with its declared sample fraction (`geo_lead.frames.declared_fraction`:
a shipped file's from ``data/lmpd/sampling.csv`` by sha256, else the caller's, default 1),
its report years and its report-date span (`Store.put_file_frame`).

A file already ingested (same sha256, sample fraction and source) is not parsed again: its
counts are taken from that ingest (``FileReport.skipped``), every accepted row unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from geo_lead import frames, indicators, settings
from geo_lead.outputs import sha256_file
from geo_lead.progress import Progress, null_progress
from geo_lead.sources import Chunk, iter_chunks, load_mapping
from geo_lead.store import PendingRecords, Store

log = logging.getLogger(__name__)

#: Named points of `ingest_files` at which `checkpoint_hook` is called.
CRASH_POINTS: tuple[str, ...] = ("before-write", "after-begin", "after-enrich", "after-first-chunk",
                                 "before-commit", "after-commit")
#: The points only an ingest with an enricher (`IngestOptions.enrich`) passes.
ENRICH_CRASH_POINTS: frozenset[str] = frozenset({"after-enrich"})

#: Called with the name of each point of `CRASH_POINTS` that `ingest_files` passes ("after-enrich"
#: and "after-first-chunk" once per chunk of records written: with an enricher, once per batch of
#: new records, `_flush`); None: nothing is called. Production code never sets it;
#: tests/test_crash_safety.py sets it in the ingest process it starts, to pause at a point and
#: SIGKILL the process there.
checkpoint_hook: Callable[[str], None] | None = None


def _crash_point(name: str) -> None:
    """Call `checkpoint_hook` with `name`, when one is set."""
    hook = checkpoint_hook
    if hook is not None:
        hook(name)


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
    sample_fraction: float = 1.0
    fraction_from: str = ""
    years: tuple[int, ...] = ()
    #: True when the file (same sha256, source and sample fraction) was ingested before and
    #: so was not parsed again: its counts are the earlier ingest's, all accepted unchanged.
    skipped: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class RecordEnricher(Protocol):
    """What `ingest_with` asks to complete new records before their insert (implemented by
    `geo_lead.enrich.Enricher`, above this layer)."""

    def __call__(self, store: Store, records: pd.DataFrame) -> pd.DataFrame:
        """The new records of one chunk (inside the ingest's transaction) with the columns to
        store with them, same rows in the same order."""
        ...

    def finish(self, store: Store) -> None:
        """Called once after the last chunk, inside the ingest's transaction."""
        ...


@dataclass(frozen=True)
class IngestOptions:
    """How `ingest_with` reads and stores files (`ingest_files`' arguments after `paths`).

    Attributes
    ----------
    enrich
        Given the new records before their insert (`RecordEnricher`), so each is written once
        with what the later stages would add; None: inserted as read. The new records of
        successive chunks and files are given to it together, up to `chunk_rows` at a time
        (`geo_lead.store.PendingRecords`): its set-up is paid per batch, not per small file.
    chunk_rows
        Rows read per chunk (`geo_lead.sources.iter_chunks`); the store left does not depend
        on it.
    """

    source: str | None = None
    mapping: Path | str | None = None
    encoding: str = "utf-8"
    rules: indicators.Rules | None = None
    progress: Progress | None = None
    sample_fraction: float | None = None
    enrich: RecordEnricher | None = None
    chunk_rows: int = settings.READ_CHUNK_ROWS


def ingest_files(
    store: Store,
    paths: Sequence[Path | str],
    source: str | None = None,
    mapping: Path | str | None = None,
    encoding: str = "utf-8",
    rules: indicators.Rules | None = None,
    progress: Progress | None = None,
    sample_fraction: float | None = None,
) -> list[FileReport]:
    """Read each file, flag its records and add them to the store in one transaction.

    `sample_fraction`: the share of its year's rows each file holds (0 < F <= 1), for files
    the shipped manifest does not list; None = 1 (complete). A shipped file always takes the
    manifest's value (`geo_lead.frames.declared_fraction`).

    Returns
    -------
    list[FileReport]
        Per-file counts; ``rows_read == accepted + rejected`` and
        ``accepted == added + unchanged + updated`` for each.
    """
    return ingest_with(store, paths, IngestOptions(source, mapping, encoding, rules, progress, sample_fraction))


def ingest_with(store: Store, paths: Sequence[Path | str], options: IngestOptions) -> list[FileReport]:
    """`ingest_files` with its options in one object (and `IngestOptions.enrich`).

    With an enricher, the new records are passed to it a batch at a time (those of several
    chunks or files together, `geo_lead.store.PendingRecords`) and inserted with what it adds
    (crash point ``after-enrich`` between the two), and its ``finish`` runs before the commit:
    still one transaction, the store before or after the whole ingest.
    """
    rules = options.rules or indicators.load_rules()
    mapping_data = load_mapping(options.mapping) if options.mapping else None
    progress = options.progress or null_progress()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    reports: list[FileReport] = []
    enrich = _enrich_hook(store, options.enrich)
    pending = None if enrich is None else PendingRecords(enrich, max(1, options.chunk_rows))
    _crash_point("before-write")
    with store.write():
        _crash_point("after-begin")
        reflag_if_rules_changed(store, rules)  # old and new records flagged by the same rules
        seen = set(store.read_ingested_files()["file_sha256"])
        for path in map(Path, paths):
            sha = sha256_file(path) if path.is_file() else ""  # else iter_chunks says why
            fraction, origin = frames.declared_fraction(sha, options.sample_fraction, path.name)
            report = FileReport(file=path.name, source=options.source or "", sha256=sha,
                                sample_fraction=fraction, fraction_from=origin)
            if _skip_known_file(store, report, options.source):
                _record_ingest(store, report, path, now)
                reports.append(report)
                continue
            dates: list[pd.Series] = []
            for chunk in iter_chunks(path, source=options.source, mapping=mapping_data, encoding=options.encoding,
                                     chunk_rows=options.chunk_rows):
                dates.append(frames.report_dates(chunk.records))
                _store_chunk(store, chunk, report, _ChunkContext(rules, now, enrich, pending))
                progress.update(chunk.rows_read)
            declared = frames.file_frame(sha, path.name, report.source, fraction,
                                         pd.concat(dates) if dates else pd.Series(dtype="datetime64[ns]"))
            report.years = declared.years
            if sha:
                store.put_file_frame({"file_sha256": sha, "source_file": path.name, "source": report.source,
                                      "sample_fraction": fraction, "years": ";".join(map(str, declared.years)),
                                      "report_first": declared.first, "report_last": declared.last})
            if fraction < 1.0 and report.unchanged and sha not in seen:
                log.warning("%s: %d of its records were already stored from another file: samples of a "
                            "year must be disjoint, or the frame's fraction overstates them",
                            path.name, report.unchanged)
            _record_ingest(store, report, path, now)
            reports.append(report)
        if pending is not None:
            _flush(store, pending)
        if options.enrich is not None:
            options.enrich.finish(store)
        store.touch("records")
        _crash_point("before-commit")
    _crash_point("after-commit")
    return reports


def _enrich_hook(store: Store, enricher: RecordEnricher | None) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """`enricher` as `Store.upsert_records`' ``enrich`` (with the ``after-enrich`` crash point)."""
    if enricher is None:
        return None

    def enrich(records: pd.DataFrame) -> pd.DataFrame:
        out = enricher(store, records)
        _crash_point("after-enrich")
        return out

    return enrich


@dataclass(frozen=True)
class _ChunkContext:
    """What `_store_chunk` needs besides the chunk and its file's report."""

    rules: indicators.Rules
    now: str
    enrich: Callable[[pd.DataFrame], pd.DataFrame] | None
    #: With an enricher: the new records kept for its next batch (`Store.upsert_records`).
    pending: PendingRecords | None = None


def _store_chunk(store: Store, chunk: Chunk, report: FileReport, ctx: _ChunkContext) -> None:
    """Flag and upsert one chunk's records, store its rejects and person fields; count them."""
    report.rows_read += chunk.rows_read
    report.rejected += len(chunk.rejects)
    report.accepted += len(chunk.records)
    report.source = chunk.source or report.source
    if len(chunk.records):
        flagged = pd.concat([chunk.records, indicators.classify(chunk.records, ctx.rules)], axis=1)
        flushes = ctx.pending.flushes if ctx.pending is not None else 0
        counts = store.upsert_records(flagged, ingested_at=ctx.now, enrich=ctx.enrich, pending=ctx.pending)
        report.added += counts["added"]
        report.unchanged += counts["unchanged"]
        report.updated += counts["updated"]
        if ctx.pending is None or ctx.pending.flushes > flushes:
            _crash_point("after-first-chunk")
    if len(chunk.rejects):
        rejects = chunk.rejects.assign(file_sha256=report.sha256, ingested_at=ctx.now)
        store.insert_rows("rejects", rejects, or_ignore=True)
    person_cols = [c for c in chunk.persons.columns if c != "record_id"]
    if person_cols and len(chunk.persons):
        store.insert_rows("persons", chunk.persons, or_ignore=True)


def _flush(store: Store, pending: PendingRecords) -> None:
    """Write the new records `pending` still keeps (crash point ``after-first-chunk`` after)."""
    if store.flush_records(pending):
        _crash_point("after-first-chunk")


def _skip_known_file(store: Store, report: FileReport, source: str | None) -> bool:
    """Fill `report` from the earlier ingest of the same file and return True, when there is one.

    Same file = same sha256, and the same sample fraction and source as asked for now (a new
    declaration or a forced format parses it again). Its records, rejects and person fields
    are already stored (keyed by record_id and by sha256 and line), so parsing would only find
    them unchanged: rows_read = accepted + rejected come from that ingest, accepted = unchanged.
    """
    before = store.previous_ingest(report.sha256)
    if before is None or float(before["sample_fraction"]) != report.sample_fraction:
        return False
    if source and (before["source"] or "") != source:
        return False
    report.source = before["source"] or ""
    report.rows_read, report.accepted = int(before["rows_read"]), int(before["accepted"])
    report.rejected, report.unchanged = int(before["rejected"]), int(before["accepted"])
    report.years = tuple(int(y) for y in str(before["years"] or "").split(";") if y.strip().isdigit())
    report.skipped = True
    log.info("%s: already ingested (sha256 %s...): not parsed again; %d rows = %d accepted + %d rejected",
             report.file, report.sha256[:12], report.rows_read, report.accepted, report.rejected)
    return True


def _record_ingest(store: Store, report: FileReport, path: Path, now: str) -> None:
    """Add `report` as one row of the ``ingests`` table (inside `write`)."""
    row = pd.DataFrame([{
        "source_file": report.file, "path": str(path.resolve()), "file_sha256": report.sha256,
        "source": report.source, "rows_read": report.rows_read,
        "accepted": report.accepted, "rejected": report.rejected, "added": report.added,
        "unchanged": report.unchanged, "updated": report.updated, "ingested_at": now,
        "sample_fraction": report.sample_fraction}])
    store.ensure_columns("ingests", row)
    store.insert_rows("ingests", row)
    log.info("%s: %d read, %d accepted, %d rejected, %d added", report.file,
             report.rows_read, report.accepted, report.rejected, report.added)


#: Store meta key: the indicator rules (sha256, path, version) that flagged the stored records.
META_RULES = "indicator_rules"


def reflag_if_rules_changed(store: Store, rules: indicators.Rules) -> int:
    """Re-flag the stored records when `rules` are not the rules that flagged them (inside `write`).

    Records keep the flags of the rules they were ingested with; after the rules file changes
    (an upgrade, or ``--rules``) old and new records would be counted by different rules. So
    every record is classified again and those whose flags or rule ids differ are updated
    (the store then says which rules flagged it). `ingest_files` calls this in its own
    transaction; a caller that wants to print the count calls it first (then that is a no-op).
    Returns how many records changed.
    """
    stored = store.get_json(META_RULES) or {}
    if stored.get("sha256") == rules.sha256:
        return 0
    changed = 0
    if "records" in store.tables():
        changed = reclassify_store(store, rules)
        log.info("indicator rules changed (%s -> %s): %d records re-flagged",
                 stored.get("path", "unrecorded"), rules.path, changed)
    store.put_json(META_RULES, {"sha256": rules.sha256, "path": str(rules.path), "version": rules.version})
    return changed


def reclassify_store(store: Store, rules: indicators.Rules) -> int:
    """Classify every stored record with `rules`; update those whose flags or rule ids differ
    (inside `write`). Returns how many records changed."""
    have = set(store.columns("records"))
    flag_cols = [c for f in rules.all_flags for c in (f, f"{f}_rule")]
    records = store.read_records(["record_id", "offense_text", *(["statute"] if "statute" in have else []),
                                  *[c for c in flag_cols if c in have]])
    if records.empty:
        return 0
    new = indicators.classify(records, rules)
    differs = pd.Series(False, index=records.index)
    for col in flag_cols:
        old = records[col] if col in records else pd.Series(None, index=records.index, dtype=object)
        if col.endswith("_rule"):
            differs |= old.fillna("").astype(str) != new[col]
        else:
            differs |= pd.to_numeric(old, errors="coerce").fillna(-1).astype(int) != new[col].astype(int)
    updates = new.loc[differs, flag_cols].copy()
    for flag in rules.all_flags:
        updates[flag] = updates[flag].astype(int)
    updates.insert(0, "record_id", records.loc[differs, "record_id"])
    store.update_records(updates)
    return int(differs.sum())
