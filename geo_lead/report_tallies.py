"""The report's tallies of every stored record: by file, by geocode match type, by flag, and why
records were not placed.

`tallies_of_store` counts them in the store (GROUP BY: `geo_lead.store.Store.records_by_file`,
`Store.count_by`, `Store.count_flagged`, `Store.unmatched_reasons`), so the report reads no
million-row frame; `tallies_of_frame` computes the same from a records frame (a report built
from data in memory). Both give equal tables: the store's only when every stored date is in
ingest's ISO format (`Store.odd_record_dates`), else the per-file date range is taken from
the dates read and parsed here, as the frame's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from geo_lead.map_layers import parse_when

if TYPE_CHECKING:
    from geo_lead.store import Store

MATCH_TYPES: tuple[str, ...] = ("exact", "interpolated", "block", "intersection", "street", "unmatched")
#: A record without a match type (never geocoded), in the match-rate table.
NOT_GEOCODED = "not geocoded yet"
#: The flags the report counts (each when the store has its column).
TALLY_FLAGS: tuple[str, ...] = ("opiate", "lead_eligible")
#: Unmatched records' reasons the report lists (most frequent first).
TOP_REASONS = 10
#: Record columns a tally reads.
TALLY_COLUMNS: tuple[str, ...] = ("source", "source_file", "occurred_at", "match_type", "geocode_reason",
                                  *TALLY_FLAGS)
_SOURCE_COLUMNS = ["source_file", "source", "records", "first", "last"]


@dataclass(frozen=True)
class RecordTallies:
    """Every stored record, tallied for the report's data section.

    Attributes
    ----------
    total
        Records in the store.
    sources
        `source_summary`: records per file and format with the first and last occurrence date.
    match_rates
        `match_rates`: records per geocode match type (+ ``not geocoded yet``) and share.
    flags
        Flag -> records it is set on (`TALLY_FLAGS` the records have).
    unmatched_reasons
        ``reason``, ``records``: the `TOP_REASONS` most frequent reasons of the unmatched
        records (empty when none; None without a ``geocode_reason`` column).
    """

    total: int
    sources: pd.DataFrame
    match_rates: pd.DataFrame
    flags: dict[str, int]
    unmatched_reasons: pd.DataFrame | None

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "sources": self.sources.to_dict("records"),
                "match_rates": self.match_rates.to_dict("records"), "flags": dict(self.flags),
                "unmatched_reasons": None if self.unmatched_reasons is None
                else self.unmatched_reasons.to_dict("records")}


# --- from a frame -----------------------------------------------------------------------------
def source_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Records per source file with the date range of ``occurred_at``."""
    if records.empty or "source_file" not in records:
        return pd.DataFrame(columns=_SOURCE_COLUMNS)
    when = parse_when(records["occurred_at"]) if "occurred_at" in records else pd.Series(pd.NaT, index=records.index)
    frame = pd.DataFrame({"source_file": records["source_file"].fillna("(unknown)"),
                          "source": records.get("source", pd.Series("", index=records.index)).fillna(""),
                          "when": when})
    out = frame.groupby(["source_file", "source"], dropna=False).agg(
        records=("when", "size"), first=("when", "min"), last=("when", "max")).reset_index()
    return _dates_as_days(out)


def _dates_as_days(out: pd.DataFrame) -> pd.DataFrame:
    for c in ("first", "last"):
        out[c] = out[c].dt.strftime("%Y-%m-%d").fillna("n/a")
    return out


def match_rates(records: pd.DataFrame) -> pd.DataFrame:
    """Records by geocode match type (plus ``not geocoded yet``), with shares summing to 1."""
    if records.empty:
        return pd.DataFrame(columns=["match_type", "records", "share"])
    mt = records["match_type"].fillna(NOT_GEOCODED) if "match_type" in records else \
        pd.Series(NOT_GEOCODED, index=records.index)
    return match_rates_of_counts(mt.replace("", NOT_GEOCODED).value_counts())


def match_rates_of_counts(counts: pd.Series) -> pd.DataFrame:
    """`match_rates` from records per match type (`counts`, most frequent first): the known
    types in `MATCH_TYPES` order, then ``not geocoded yet``, then any other type."""
    if not len(counts):
        return pd.DataFrame(columns=["match_type", "records", "share"])
    order = [t for t in (*MATCH_TYPES, NOT_GEOCODED) if t in counts.index]
    order += [t for t in counts.index if t not in order]
    out = pd.DataFrame({"match_type": order, "records": [int(counts[t]) for t in order]})
    out["share"] = out["records"] / out["records"].sum()
    return out


def top_reasons(reasons: pd.Series) -> pd.DataFrame:
    """``reason``, ``records``: the `TOP_REASONS` most frequent of the unmatched records' reasons
    (in record order; a missing reason reads ``(no reason)``)."""
    return (reasons.fillna("(no reason)").value_counts().head(TOP_REASONS)
            .rename_axis("reason").rename("records").reset_index())


def tallies_of_frame(records: pd.DataFrame) -> RecordTallies:
    """The tallies of a records frame (any of `TALLY_COLUMNS`; every stored record)."""
    reasons = None
    if "geocode_reason" in records and "match_type" in records:
        reasons = top_reasons(records.loc[records["match_type"] == "unmatched", "geocode_reason"])
    return RecordTallies(total=len(records), sources=source_summary(records), match_rates=match_rates(records),
                         flags={f: int(records[f].astype(bool).sum()) for f in TALLY_FLAGS if f in records},
                         unmatched_reasons=reasons)


# --- from the store ---------------------------------------------------------------------------
def tallies_of_store(store: Store) -> RecordTallies:
    """The tallies of every record of `store`, counted there: equal to `tallies_of_frame` of the
    store's records read with `TALLY_COLUMNS` (`geo_lead.store.Store.read_records`)."""
    have = set(store.columns("records")) if "records" in store.tables() else set()
    if not have & {*TALLY_COLUMNS, "lon", "lat"}:  # no column the report reads: as an empty read
        return tallies_of_frame(pd.DataFrame())
    total = store.count("records")
    reasons = None
    if {"geocode_reason", "match_type"} <= have:
        reasons = top_reasons(pd.Series(store.unmatched_reasons(), dtype=object))
    return RecordTallies(total=total, sources=_store_sources(store, have, total),
                         match_rates=_store_match_rates(store, have, total),
                         flags={f: store.count_flagged(f) for f in TALLY_FLAGS if f in have},
                         unmatched_reasons=reasons)


def _store_sources(store: Store, have: set[str], total: int) -> pd.DataFrame:
    """`source_summary` of the stored records: grouped in SQL when every date is ISO text."""
    if not total or "source_file" not in have:
        return pd.DataFrame(columns=_SOURCE_COLUMNS)
    if not {"source", "occurred_at"} <= have or store.odd_record_dates():
        return source_summary(store.read_records([c for c in ("source_file", "source", "occurred_at") if c in have]))
    table = store.records_by_file()
    table["first"], table["last"] = parse_when(table["first"]), parse_when(table["last"])
    out = table.groupby(["source_file", "source"], dropna=False).agg(
        records=("records", "sum"), first=("first", "min"), last=("last", "max")).reset_index()
    return _dates_as_days(out)


def _store_match_rates(store: Store, have: set[str], total: int) -> pd.DataFrame:
    """`match_rates` of the stored records from their count per match type."""
    if not total:
        return match_rates_of_counts(pd.Series(dtype="int64"))
    if "match_type" not in have:
        return match_rates_of_counts(pd.Series({NOT_GEOCODED: total}))
    counts: dict[str, int] = {}
    for kind, n in store.count_by("records", "match_type").items():
        key = NOT_GEOCODED if kind is None or kind == "" else str(kind)
        counts[key] = counts.get(key, 0) + int(n)
    return match_rates_of_counts(pd.Series(counts, dtype="int64").sort_values(ascending=False, kind="stable"))
