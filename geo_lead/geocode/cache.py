"""The geocode cache (store table ``geocode_cache``) and geocoding the store's records.

The cache key is the normalised address + ZIP (``kind|normalized|zip``), plus ``|beat`` when
the record names an LMPD beat (the beat chooses among candidate places), so spelling variants
of one address share an entry. Each geocoded record also gets its ``beat_check``
(`geo_lead.geocode.beat_check`). Each row keeps the reference hash it was computed
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

import geo_lead.geocode.beat_check as bc
from geo_lead.beats import normalize_beat
from geo_lead.geocode.geocoder import Geocoder
from geo_lead.geocode.normalize import parse_address
from geo_lead.progress import Progress
from geo_lead.store import GEOCODE_CACHE_COLUMNS, GEOCODE_CACHE_TABLE, Store

log = logging.getLogger(__name__)

CACHE_TABLE = GEOCODE_CACHE_TABLE
CACHE_COLUMNS: tuple[str, ...] = GEOCODE_CACHE_COLUMNS
META_REFERENCE_HASH = "geocode_reference_hash"


def cache_key(address: object, zip_code: object = "", beat: object = "") -> str:
    """The cache key of one address: ``kind|normalised text|ZIP``, + ``|beat`` when one is named."""
    p = parse_address(address if isinstance(address, str) else "",
                      zip_code if isinstance(zip_code, str) else "")
    code = normalize_beat(beat)
    # unreadable inputs normalise to "": their reason tells them apart
    return f"{p.kind}|{p.normalized or p.reason}|{p.zip}" + (f"|{code}" if code else "")


def cache_keys(addresses: pd.Series, zips: pd.Series, beats: pd.Series | None = None) -> np.ndarray:
    """Keys for many addresses: each distinct (address, ZIP, beat) string triple is parsed once."""
    a = addresses.fillna("").astype(str)
    z = zips.fillna("").astype(str)
    b = beats.fillna("").astype(str).to_numpy() if beats is not None else ""
    codes, uniques = pd.factorize(a + "\x1f" + z + "\x1f" + b)
    keys = np.array([cache_key(*u.rsplit("\x1f", 2)) for u in uniques], dtype=object)  # the address may hold \x1f
    return keys[codes] if len(codes) else np.array([], dtype=object)


def ensure_cache(store: Store) -> None:
    """Create the cache table (inside the caller's write transaction)."""
    store.ensure_geocode_cache()


def read_cache(store: Store, reference_hash: str) -> pd.DataFrame:
    """Cache rows computed with `reference_hash`, indexed by key."""
    if CACHE_TABLE not in store.tables():
        return pd.DataFrame(columns=list(CACHE_COLUMNS)).set_index("key")
    return store.cached_geocodes(reference_hash).set_index("key")


def geocode_store(store: Store, geocoder: Geocoder | None = None, progress: Progress | None = None,
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
        True: only records without a point that this reference has not already left
        unmatched (all records when the reference changed; with `online`, the unmatched
        ones too). False: every record.
    online
        Optional online provider (`geo_lead.geocode.census.CensusBatchGeocoder`) asked about
        the addresses the offline geocoder leaves unmatched (including those cached as
        unmatched); its answers go into the same cache. Off unless given.

    Returns
    -------
    dict
        ``records`` (records geocoded in this call) = ``geocoded_new`` + ``geocoded_from_cache``
        (records whose address key was / was not in the cache) = sum(``by_match_type``);
        ``unmatched_reasons`` (reason -> records); ``addresses_new`` / ``addresses_from_cache``
        (distinct keys); ``records_written`` (records whose stored result changed: only those
        are written); ``reference_hash``; ``beat_check_by_match_type`` (every stored placed
        record: `geo_lead.geocode.beat_check.rates_json`).
    """
    geocoder = geocoder or Geocoder()
    ref_hash = geocoder.reference_hash
    previous = store.get_json(META_REFERENCE_HASH)
    have_cols = set(store.columns("records"))
    stored = [c for c in ("lon", "lat", "match_type", "score", "matched_address", "geocode_reason", "beat_check")
              if c in have_cols]
    has_beat = "beat" in have_cols
    columns = ["record_id", "address_raw", "zip", *(["beat"] if has_beat else []), *stored]
    if only_missing and "lon" in have_cols and previous == ref_hash:
        # Records the cache already answered "unmatched" with this very reference would get
        # the same answer again: skip them (re-reading ~50,000 of them per run cost ~1 s at a
        # million records). NULL match_type = never geocoded, or an address a re-download
        # changed (`Store._forget_moved_points`). A new reference (every record) or an online
        # provider (which gets another chance at them) still retries them.
        records = store.ungeocoded_records(columns, skip_unmatched=online is None and "match_type" in have_cols)
    else:
        records = store.read_records(columns)
    beat_index = bc.shipped_index() if has_beat else None
    counts: dict[str, Any] = {"records": len(records), "geocoded_new": 0, "geocoded_from_cache": 0,
                              "by_match_type": {}, "unmatched_reasons": {}, "addresses_new": 0,
                              "addresses_from_cache": 0, "records_written": 0,
                              "reference_hash": ref_hash}
    with store.write():
        ensure_cache(store)
        stale = store.drop_stale_geocodes(ref_hash)
        if stale:
            log.info("geocode cache: dropped %d rows computed with another reference", stale)
    if records.empty:
        store.put_json(META_REFERENCE_HASH, ref_hash)
        bc.refresh_store(store, beat_index)
        counts["beat_check_by_match_type"] = bc.rates_json(bc.beat_check_table(store))
        return counts
    beats = records["beat"].fillna("") if has_beat else None
    keys = cache_keys(records["address_raw"], records["zip"].fillna(""), beats)
    inverse, uniq = pd.factorize(keys)
    ukeys = np.asarray(uniq, dtype=object)
    cached = read_cache(store, ref_hash)
    if online is not None:
        # the online provider gets another chance at addresses the cache has as unmatched
        cached = cached[cached["match_type"] != "unmatched"]
    hit = pd.Index(ukeys).isin(cached.index)
    todo = ukeys[~hit]
    new_rows = pd.DataFrame(columns=list(CACHE_COLUMNS))
    if todo.size:
        # geocode one representative raw address per missing key
        first_row = np.full(len(ukeys), -1, np.int64)
        first_row[inverse[::-1]] = np.arange(len(keys))[::-1]  # first record of each key
        rep = records.iloc[first_row[~hit]]
        res = geocoder.geocode(rep["address_raw"].tolist(), rep["zip"].fillna("").tolist(), progress=progress,
                               beats=rep["beat"].fillna("").tolist() if has_beat else None)
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
    # object dtype: the values as the geocoder gave them (`_changed` compares them as objects)
    updates = pd.DataFrame({
        "record_id": pd.Series(records["record_id"].to_numpy(object), dtype=object),
        "lon": per["lon"].to_numpy(float), "lat": per["lat"].to_numpy(float),
        "match_type": pd.Series(per["match_type"].to_numpy(object), dtype=object),
        "score": per["score"].to_numpy(float),
        "matched_address": pd.Series(per["matched_address"].to_numpy(object), dtype=object),
        "geocode_reason": pd.Series(per["reason"].to_numpy(object), dtype=object),
    })
    if beat_index is not None:
        updates["beat_check"] = pd.Series(bc.checks_for(updates["lon"].to_numpy(float), updates["lat"].to_numpy(float),
                                                        beats, beat_index), dtype=object)
    with store.write():
        ensure_cache(store)
        if len(new_rows):
            store.drop_geocodes(new_rows["key"].tolist())
        store.insert_rows(CACHE_TABLE, new_rows)
        changed = _changed(records, updates, stored)
        counts["records_written"] = int(changed.sum())
        store.update_records(updates[changed])
        store.ensure_record_indexes()  # built once, after the first (big) update
        store.set_json(META_REFERENCE_HASH, ref_hash)
    bc.refresh_store(store, beat_index)  # placed records checked before beats existed
    counts["geocoded_new"] = int((~hit[inverse]).sum())
    counts["geocoded_from_cache"] = int(hit[inverse].sum())
    counts["addresses_new"] = int((~hit).sum())  # distinct normalised address + ZIP keys
    counts["addresses_from_cache"] = int(hit.sum())
    counts["by_match_type"] = dict(Counter(updates["match_type"]))
    um = updates["match_type"] == "unmatched"
    counts["unmatched_reasons"] = dict(Counter(updates.loc[um, "geocode_reason"].fillna("")))
    counts["beat_check_by_match_type"] = bc.rates_json(bc.beat_check_table(store))
    return counts


def _changed(records: pd.DataFrame, updates: pd.DataFrame, stored: list[str]) -> np.ndarray:
    """Rows whose geocode differs from what the store holds (the rest need no write)."""
    if len(stored) < 6 or ("beat_check" in updates and "beat_check" not in stored):
        return np.ones(len(updates), bool)
    same = np.ones(len(updates), bool)
    for col in ("lon", "lat", "score"):
        old = pd.to_numeric(records[col], errors="coerce").to_numpy(float)
        new = updates[col].to_numpy(float)
        same &= (old == new) | (np.isnan(old) & np.isnan(new))
    for col in ("match_type", "matched_address", "geocode_reason", *(["beat_check"] if "beat_check" in updates else [])):
        old_s = records[col].to_numpy(object)
        new_s = updates[col].to_numpy(object)
        same &= (old_s == new_s) | (pd.isna(old_s) & pd.isna(new_s))
    return ~same


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
