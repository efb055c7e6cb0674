"""The geocode cache (store table ``geocode_cache``) and geocoding the store's records.

The cache key is the normalised address + ZIP (``kind|normalized|zip``), so spelling
variants of one address share an entry. Each row keeps the reference hash it was computed
with; rows from another reference are deleted when the reference changes, and the records
placed with the old reference are geocoded again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from geo_lead.geocode.geocoder import Geocoder
from geo_lead.geocode.normalize import parse_address

log = logging.getLogger(__name__)

CACHE_TABLE = "geocode_cache"
CACHE_COLUMNS: tuple[str, ...] = ("key", "lon", "lat", "match_type", "score", "matched_address",
                                  "reason", "reference_hash", "created_at")
META_REFERENCE_HASH = "geocode_reference_hash"

_DDL = f"""CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE, lon REAL, lat REAL, match_type TEXT, score REAL,
    matched_address TEXT, reason TEXT, reference_hash TEXT, created_at TEXT)"""


def cache_key(address: object, zip_code: object = "") -> str:
    """The cache key of one address: ``kind|normalised text|ZIP``."""
    p = parse_address(address if isinstance(address, str) else "",
                      zip_code if isinstance(zip_code, str) else "")
    return f"{p.kind}|{p.normalized}|{p.zip}"


def cache_keys(addresses: pd.Series, zips: pd.Series) -> np.ndarray:
    """Keys for many addresses: each distinct (address, ZIP) string pair is parsed once."""
    a = addresses.astype(object).where(addresses.map(lambda v: isinstance(v, str)), "")
    z = zips.astype(object).where(zips.map(lambda v: isinstance(v, str)), "")
    codes, uniques = pd.factorize(a + "\x1f" + z)
    keys = np.array([cache_key(*u.split("\x1f", 1)) for u in uniques], dtype=object)
    return keys[codes] if len(codes) else np.array([], dtype=object)


def ensure_cache(store: Any) -> None:
    """Create the cache table (inside the caller's write transaction)."""
    store.conn.execute(_DDL)
    store.register_attributes(CACHE_TABLE, "geocoder results by normalised address + ZIP")


def read_cache(store: Any, reference_hash: str) -> pd.DataFrame:
    """Cache rows computed with `reference_hash`, indexed by key."""
    if CACHE_TABLE not in store.tables():
        return pd.DataFrame(columns=list(CACHE_COLUMNS)).set_index("key")
    frame = store.read_table(CACHE_TABLE, list(CACHE_COLUMNS), where="reference_hash = ?",
                             params=(reference_hash,))
    return frame.set_index("key")


def geocode_store(store: Any, geocoder: Geocoder | None = None, progress: Any = None,
                  only_missing: bool = True, online: Any = None) -> dict[str, Any]:
    """Geocode the store's records that have no point yet, through the cache.

    Parameters
    ----------
    store
        An open `geo_lead.store.Store`.
    geocoder
        Default: `Geocoder()` on the shipped reference.
    progress
        Optional `geo_lead.progress.Progress` (advanced per address not in the cache).
    only_missing
        True: only records without a point (and all records when the reference changed).
        False: every record.
    online
        Optional online provider (`geo_lead.geocode.census.CensusBatchGeocoder`) asked about
        the addresses the offline geocoder leaves unmatched. Off unless given.

    Returns
    -------
    dict
        ``records`` (records geocoded in this call), ``geocoded_new``, ``geocoded_from_cache``,
        ``by_match_type``, ``unmatched_reasons``; records = sum(by_match_type).
    """
    geocoder = geocoder or Geocoder()
    ref_hash = geocoder.reference_hash
    if online is not None:
        ref_hash = f"{ref_hash}+{online.name}"
    previous = store.get_json(META_REFERENCE_HASH)
    have_cols = set(store.columns("records"))
    where = ""
    if only_missing and "lon" in have_cols and previous == ref_hash:
        where = "lon IS NULL OR lat IS NULL"
    records = store.read_records(["record_id", "address_raw", "zip"], where=where)
    counts: dict[str, Any] = {"records": int(len(records)), "geocoded_new": 0, "geocoded_from_cache": 0,
                              "by_match_type": {}, "unmatched_reasons": {}, "reference_hash": ref_hash}
    with store.write():
        ensure_cache(store)
        stale = store.conn.execute(f"DELETE FROM {CACHE_TABLE} WHERE reference_hash IS NOT ?", (ref_hash,))
        if stale.rowcount:
            log.info("geocode cache: dropped %d rows computed with another reference", stale.rowcount)
    if records.empty:
        store.put_json(META_REFERENCE_HASH, ref_hash)
        return counts
    keys = cache_keys(records["address_raw"], records["zip"].fillna(""))
    ukeys, inverse = np.unique(keys, return_inverse=True)
    cached = read_cache(store, ref_hash)
    hit = pd.Index(ukeys).isin(cached.index)
    todo = ukeys[~hit]
    new_rows = pd.DataFrame(columns=list(CACHE_COLUMNS))
    if todo.size:
        # geocode one representative raw address per missing key
        first = pd.Series(np.arange(len(keys))).groupby(keys).first()
        rep = records.iloc[first.loc[todo].to_numpy()]
        res = geocoder.geocode(rep["address_raw"].tolist(), rep["zip"].fillna("").tolist(), progress=progress)
        if online is not None:
            res = _ask_online(online, rep, res)
        new_rows = pd.DataFrame({
            "key": todo, "lon": res["lon"].to_numpy(), "lat": res["lat"].to_numpy(),
            "match_type": res["match_type"].to_numpy(), "score": res["score"].to_numpy(),
            "matched_address": res["matched_address"].to_numpy(), "reason": res["reason"].to_numpy(),
            "reference_hash": ref_hash, "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    table = pd.concat([cached.loc[ukeys[hit]].reset_index(), new_rows], ignore_index=True) \
        if len(new_rows) else cached.loc[ukeys[hit]].reset_index()
    table = table.set_index("key").loc[ukeys]
    per = table.iloc[inverse]
    updates = pd.DataFrame({
        "record_id": records["record_id"].to_numpy(),
        "lon": per["lon"].to_numpy(float), "lat": per["lat"].to_numpy(float),
        "match_type": per["match_type"].to_numpy(object), "score": per["score"].to_numpy(float),
        "matched_address": per["matched_address"].to_numpy(object),
        "geocode_reason": per["reason"].to_numpy(object),
    })
    with store.write():
        ensure_cache(store)
        store.insert_rows(CACHE_TABLE, new_rows, or_ignore=True)
        store.update_records(updates)
        store.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (META_REFERENCE_HASH, f'"{ref_hash}"'))
    counts["geocoded_new"] = int((~hit[inverse]).sum())
    counts["geocoded_from_cache"] = int(hit[inverse].sum())
    counts["by_match_type"] = dict(Counter(updates["match_type"]))
    um = updates["match_type"] == "unmatched"
    counts["unmatched_reasons"] = dict(Counter(updates.loc[um, "geocode_reason"].fillna("")))
    return counts


def _ask_online(online: Any, rep: pd.DataFrame, res: pd.DataFrame) -> pd.DataFrame:
    """Replace offline misses with the online provider's matches (same columns)."""
    miss = (res["match_type"] == "unmatched").to_numpy()
    if not miss.any():
        return res
    extra = online.geocode(rep["address_raw"].to_numpy()[miss].tolist(),
                           rep["zip"].fillna("").to_numpy()[miss].tolist())
    res = res.copy()
    found = (extra["match_type"] != "unmatched").to_numpy()
    idx = np.flatnonzero(miss)[found]
    for col in ("lon", "lat", "match_type", "score", "matched_address", "reason"):
        res.loc[res.index[idx], col] = extra[col].to_numpy()[found]
    return res
