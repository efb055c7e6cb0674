"""The beat check of the store's records: is each point in the beat its record names?

Every LMPD record names its beat (``beat``, from ``LMPD_BEAT``); the beat polygons are an
answer key the records carry with them (`geo_lead.beats`). ``beat_check`` is stored per placed
record: ``same``, ``adjacent``, ``other`` or ``no_beat`` (NULL while the record has no point).
A point outside its beat is a warning, not proof of error: beat plans change and boundary
streets are shared. ``other`` records are listed for a person to look at (`review_records`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_lead.beats import BEAT_CHECKS, BeatIndex, beat_check, read_beat_index
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: meta key: the beats file (sha256) the stored ``beat_check`` values were computed with
META_BEATS_HASH = "beat_check_beats_hash"

#: Columns of `review_records`.
REVIEW_COLUMNS: tuple[str, ...] = (
    "record_id", "address_raw", "zip", "beat", "beat_at_point", "match_type", "score",
    "matched_address", "geocode_reason", "lon", "lat",
)


def shipped_index() -> BeatIndex | None:
    """The shipped beats (`geo_lead.beats.read_beat_index`), None (logged) when missing."""
    try:
        return read_beat_index()
    except GeoLeadError as exc:
        log.warning("beat check skipped: %s", exc)
        return None


def index_hash(index: BeatIndex | None) -> str:
    """A fingerprint of the beats (codes + WKB), so new beat polygons re-check every record."""
    import hashlib

    if index is None:
        return ""
    h = hashlib.sha256()
    for code, geom in zip(index.codes, index.geoms, strict=True):
        h.update(code.encode())
        h.update(geom.wkb)
    return h.hexdigest()


def checks_for(lon: np.ndarray, lat: np.ndarray, beats: Any, index: BeatIndex | None) -> np.ndarray:
    """`geo_lead.beats.beat_check` with None (not NaN or "") where a record has no point."""
    n = len(np.atleast_1d(np.asarray(lon)))
    if index is None or n == 0:
        return np.full(n, None, dtype=object)
    out = beat_check(np.asarray(lon, float), np.asarray(lat, float),
                     np.asarray(pd.Series(beats, dtype=object).fillna("").to_numpy(object)), index)
    out[out == ""] = None
    return out


def refresh_store(store: Store, index: BeatIndex | None = None, chunk_rows: int = 100_000) -> int:
    """Compute ``beat_check`` for the placed records that have none (all of them when the beats
    changed), `chunk_rows` records at a time; returns how many records were written. Runs
    inside its own write."""
    if chunk_rows < 1:
        raise ValueError(f"refresh_store: chunk_rows must be >= 1, got {chunk_rows}")
    index = index if index is not None else shipped_index()
    if index is None:
        return 0
    fingerprint = index_hash(index)
    cols = set(store.columns("records"))
    if not {"lon", "lat", "beat"} <= cols:
        return 0
    unchecked_only = "beat_check" in cols and store.get_json(META_BEATS_HASH) == fingerprint
    fids = store.placed_fids(unchecked_only=unchecked_only)

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, len(fids), chunk_rows):
            todo = store.read_records_at(["record_id", "lon", "lat", "beat"], fids[start:start + chunk_rows])
            checks = checks_for(todo["lon"].to_numpy(float), todo["lat"].to_numpy(float), todo["beat"], index)
            yield pd.DataFrame({"record_id": pd.Series(todo["record_id"].to_numpy(object), dtype=object),
                                "beat_check": pd.Series(checks, dtype=object)})

    with store.write():
        if len(fids):
            store.update_records_chunks(chunks())
        store.put_json(META_BEATS_HASH, fingerprint)
    return len(fids)


def rates_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Beat agreement by match type from (match_type, beat_check, records) counts.

    Returns
    -------
    pandas.DataFrame
        One row per match type of placed records (plus ``all``): ``same``, ``adjacent``,
        ``other``, ``no_beat`` (records), ``checked`` (records whose beat has a polygon) and
        ``same_share`` / ``same_or_adjacent_share`` (of ``checked``; NaN when none).
    """
    counts = counts[counts["beat_check"].isin(BEAT_CHECKS)]
    wide = counts.pivot_table(index="match_type", columns="beat_check", values="records",
                              aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(BEAT_CHECKS), fill_value=0).astype(int)
    if len(wide):
        wide.loc["all"] = wide.sum()
    checked = wide["same"] + wide["adjacent"] + wide["other"]
    out = wide.assign(checked=checked,
                      same_share=wide["same"] / checked.where(checked > 0),
                      same_or_adjacent_share=(wide["same"] + wide["adjacent"]) / checked.where(checked > 0))
    return out.rename_axis("match_type").reset_index()


def beat_check_table(store: Store) -> pd.DataFrame:
    """`rates_table` of every stored record (empty before the first geocode with beats)."""
    return rates_table(store.beat_check_counts())


def rates_json(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """`rates_table` as ``{match_type: {same, adjacent, other, no_beat, checked, same_share, ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        mt = row.pop("match_type")
        out[str(mt)] = {k: (None if isinstance(v, float) and not np.isfinite(v) else
                            round(float(v), 4) if isinstance(v, float) else int(v)) for k, v in row.items()}
    return out


def review_records(store: Store, index: BeatIndex | None = None) -> pd.DataFrame:
    """The records whose point lies in neither their beat nor one touching it (``other``).

    Returns
    -------
    pandas.DataFrame
        `REVIEW_COLUMNS`: the record, the beat it names (``beat``) and the beat its point lies
        in (``beat_at_point``, ``""`` outside every beat), and how it was matched; ordered by
        match type, then address. No person fields.
    """
    if "beat_check" not in store.columns("records"):
        return pd.DataFrame(columns=list(REVIEW_COLUMNS))
    cols = [c for c in REVIEW_COLUMNS if c != "beat_at_point"]
    rows = store.records_with_beat_check(cols, "other")
    index = index if index is not None else shipped_index()
    at = np.full(len(rows), "", dtype=object)
    if index is not None and len(rows):
        from geo_lead.geocode.reference import to_projected

        x, y = to_projected(rows["lon"].to_numpy(float), rows["lat"].to_numpy(float))
        at = index.beat_at(x, y)
    rows.insert(4, "beat_at_point", at)
    return rows.sort_values(["match_type", "address_raw"], kind="stable").reset_index(drop=True)[list(REVIEW_COLUMNS)]
