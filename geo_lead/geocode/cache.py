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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

import geo_lead.geocode.beat_check as bc
from geo_lead.beats import BeatIndex, normalize_beat
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


def cache_keys(addresses: pd.Series, zips: pd.Series, beats: pd.Series | None = None,
               memo: dict[str, str] | None = None) -> np.ndarray:
    """Keys for many addresses: each distinct (address, ZIP, beat) string triple is parsed once
    (once across calls sharing `memo`, a dict this function fills: triple -> key)."""
    a = addresses.fillna("").astype(str)
    z = zips.fillna("").astype(str)
    b = beats.fillna("").astype(str).to_numpy() if beats is not None else ""
    codes, uniques = pd.factorize(a + "\x1f" + z + "\x1f" + b)
    memo = {} if memo is None else memo
    keys = np.empty(len(uniques), dtype=object)
    for i, u in enumerate(uniques.tolist()):
        key = memo.get(u)
        if key is None:
            key = memo[u] = cache_key(*u.rsplit("\x1f", 2))  # the address may hold \x1f
        keys[i] = key
    return keys[codes] if len(codes) else np.array([], dtype=object)


#: Result-cache kind of the address triples' keys kept across runs (`known_keys`).
KNOWN_KEYS_KIND = "address_keys"
#: Triples kept at most (~100 bytes each): a bigger set is not written (the one kept stays).
KNOWN_KEYS_MAX = 250_000


def _known_keys_version() -> str:
    """What a triple's key depends on besides the triple: the package's code and the constants
    of the parser and the settings (`cache_key` reads nothing else)."""
    import geo_lead.geocode.normalize as parser  # (the module, not the package: no import cycle)
    from geo_lead import result_cache, settings

    return result_cache.digest([KNOWN_KEYS_KIND, result_cache.code_version(),
                                result_cache.constants_version(parser, settings)])


def known_keys() -> dict[str, str]:
    """The address triples keyed by earlier runs with this code (`cache_keys`' memo, kept in
    `geo_lead.result_cache` by `keep_known_keys`); {} when none or the cache is off.

    Why: parsing an address costs ~50 us, and the new records of a rerun mostly repeat
    addresses the store has (a +10k rerun at 1M: ~5,300 triples, all seen, ~0.25 s). Each
    value is `cache_key` of its triple, a pure function of the triple and the version the
    file is kept under, so a kept key is the key parsing gives."""
    from geo_lead import result_cache

    hit = result_cache.read_object(KNOWN_KEYS_KIND, _known_keys_version())
    return hit if isinstance(hit, dict) else {}


def keep_known_keys(memo: dict[str, str]) -> None:
    """Keep `memo` (`cache_keys`' memo: every triple -> its key) for `known_keys`, unless it
    holds more than `KNOWN_KEYS_MAX` triples. Two runs writing at once: the last one's set is
    kept (only a cost: the other's triples are parsed again)."""
    from geo_lead import result_cache

    if len(memo) <= KNOWN_KEYS_MAX:
        result_cache.write_object(KNOWN_KEYS_KIND, _known_keys_version(), memo)


def ensure_cache(store: Store) -> None:
    """Create the cache table (inside the caller's write transaction)."""
    store.ensure_geocode_cache()


def read_cache(store: Store, reference_hash: str) -> pd.DataFrame:
    """Cache rows computed with `reference_hash`, indexed by key."""
    if CACHE_TABLE not in store.tables():
        return pd.DataFrame(columns=list(CACHE_COLUMNS)).set_index("key")
    return store.cached_geocodes(reference_hash).set_index("key")


#: Records the geocode stage holds at once: `geocode_store` reads, keys, checks and writes the
#: records a chunk at a time (its memory does not grow with the store; distinct addresses are
#: still geocoded once, in one batch).
CHUNK_ROWS = 100_000


@dataclass
class KeyedRecords:
    """The records to geocode, keyed (pass 1 of `geocode_store`).

    Attributes
    ----------
    fids
        The records' fids, ascending.
    codes
        Per record, the position of its cache key in `keys`.
    keys
        The distinct cache keys, in order of first record.
    reps
        Per key, its first record's ``address_raw``, ZIP and beat (``""`` for NULL ZIP/beat):
        the address the geocoder is asked about.
    """

    fids: np.ndarray
    codes: np.ndarray
    keys: list[str] = field(default_factory=list)
    reps: list[tuple[Any, str, str]] = field(default_factory=list)


def key_records(store: Store, fids: np.ndarray, has_beat: bool, chunk_rows: int = CHUNK_ROWS) -> KeyedRecords:
    """Key the records `fids` (`cache_keys`), reading `chunk_rows` of them at a time."""
    if chunk_rows < 1:
        raise ValueError(f"key_records: chunk_rows must be >= 1, got {chunk_rows}")
    out = KeyedRecords(fids, np.zeros(len(fids), np.int64))
    index: dict[str, int] = {}
    parsed: dict[str, str] = {}  # address triples seen in earlier chunks are not parsed again
    cols = ["address_raw", "zip", *(["beat"] if has_beat else [])]
    for start in range(0, len(fids), chunk_rows):
        part = store.read_records_at(cols, fids[start:start + chunk_rows])
        zips = part["zip"].fillna("")
        beats = part["beat"].fillna("") if has_beat else None
        local, uniq = pd.factorize(cache_keys(part["address_raw"], zips, beats, parsed))
        first = np.full(len(uniq), -1, np.int64)
        first[local[::-1]] = np.arange(len(local))[::-1]  # first record of each key
        glob = np.empty(len(uniq), np.int64)
        addresses, zip_list = part["address_raw"].tolist(), zips.tolist()
        beat_list = beats.tolist() if beats is not None else [""] * len(part)
        for j, key in enumerate(uniq.tolist()):
            at = index.get(key)
            if at is None:
                at = index[key] = len(out.keys)
                r = int(first[j])
                out.keys.append(key)
                out.reps.append((addresses[r], zip_list[r], beat_list[r]))
            glob[j] = at
        out.codes[start:start + len(part)] = glob[local]
    return out


def geocode_store(store: Store, geocoder: Geocoder | None = None, progress: Progress | None = None,
                  only_missing: bool = True, online: Any = None, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Geocode the store's records that have no point yet, through the cache.

    The records are read, keyed, checked against their beat and written `chunk_rows` at a
    time (the stage holds one chunk, the distinct keys and address triples, and two integers
    per record); every distinct key not in the cache is geocoded once, all in one batch; the
    records' results are written in one transaction. The stored results do not depend on
    `chunk_rows`.

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
    chunk_rows
        Records held at once (>= 1).

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
    if only_missing and "lon" in have_cols and previous == ref_hash:
        # Records the cache already answered "unmatched" with this very reference would get
        # the same answer again: skip them. NULL match_type = never geocoded, or an address a
        # re-download changed (`Store._forget_moved_points`). A new reference (every record)
        # or an online provider (which gets another chance at them) still retries them.
        fids = store.ungeocoded_fids(skip_unmatched=online is None and "match_type" in have_cols)
    else:
        fids = store.record_fids()
    beat_index = bc.shipped_index() if has_beat else None
    counts: dict[str, Any] = {"records": len(fids), "geocoded_new": 0, "geocoded_from_cache": 0,
                              "by_match_type": {}, "unmatched_reasons": {}, "addresses_new": 0,
                              "addresses_from_cache": 0, "records_written": 0,
                              "reference_hash": ref_hash}
    with store.write():
        ensure_cache(store)
        stale = store.drop_stale_geocodes(ref_hash)
        if stale:
            log.info("geocode cache: dropped %d rows computed with another reference", stale)
    if len(fids) == 0:
        store.put_json(META_REFERENCE_HASH, ref_hash)
        bc.refresh_store(store, beat_index, chunk_rows)
        counts["beat_check_by_match_type"] = bc.rates_json(bc.beat_check_table(store))
        return counts
    keyed = key_records(store, fids, has_beat, chunk_rows)
    hit, new_rows, table = _results_by_key(store, keyed, geocoder, _Ask(ref_hash, progress, has_beat, online))
    writer = _ChunkWriter(store, keyed, table, beat_index, stored, chunk_rows)
    beats_checked = _checks_every_placed_record(store, fids, beat_index)
    with store.write():
        ensure_cache(store)
        if len(new_rows):
            store.drop_geocodes(new_rows["key"].tolist())
        store.insert_rows(CACHE_TABLE, new_rows)
        store.update_records_chunks(writer.chunks())
        store.ensure_record_indexes()  # built once, after the first (big) update
        store.set_json(META_REFERENCE_HASH, ref_hash)
        if beats_checked:  # so `refresh_store` does not check them all a second time
            store.set_json(bc.META_BEATS_HASH, beats_checked)
    bc.refresh_store(store, beat_index, chunk_rows)  # placed records checked before beats existed
    per_record_hit = hit[keyed.codes]
    counts["geocoded_new"] = int((~per_record_hit).sum())
    counts["geocoded_from_cache"] = int(per_record_hit.sum())
    counts["addresses_new"] = int((~hit).sum())  # distinct normalised address + ZIP keys
    counts["addresses_from_cache"] = int(hit.sum())
    counts["records_written"] = writer.written
    counts["by_match_type"] = dict(writer.by_match_type)
    counts["unmatched_reasons"] = dict(writer.unmatched_reasons)
    counts["beat_check_by_match_type"] = bc.rates_json(bc.beat_check_table(store))
    return counts


def _checks_every_placed_record(store: Store, fids: np.ndarray, beat_index: BeatIndex | None) -> str:
    """The beats' fingerprint (`beat_check.index_hash`) when the stored beat checks are not
    current with `beat_index` and `fids` (the records this call writes, each with its check)
    holds every placed record: after the write all are checked with it. "" otherwise (the
    checks are current already, or `beat_check.refresh_store` has other records to check)."""
    if beat_index is None:
        return ""
    fingerprint = bc.index_hash(beat_index)
    if store.get_json(bc.META_BEATS_HASH) == fingerprint:
        return ""
    have = set(store.columns("records"))
    if {"lon", "lat"} <= have and np.setdiff1d(store.placed_fids(unchecked_only=False), fids).size:
        return ""
    return fingerprint


@dataclass(frozen=True)
class _Ask:
    """How `_results_by_key` asks about the keys the cache lacks."""

    ref_hash: str
    progress: Progress | None
    has_beat: bool
    online: Any


def _results_by_key(store: Store, keyed: KeyedRecords, geocoder: Geocoder,
                    ask: _Ask) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(which keys the cache had, the new cache rows, one result row per key in key order)."""
    ukeys = np.asarray(keyed.keys, dtype=object)
    cached = store.cached_geocodes_for(ask.ref_hash, keyed.keys).set_index("key")
    if ask.online is not None:
        # the online provider gets another chance at addresses the cache has as unmatched
        cached = cached[cached["match_type"] != "unmatched"]
    hit = pd.Index(ukeys).isin(cached.index)
    todo = ukeys[~hit]
    new_rows = pd.DataFrame(columns=list(CACHE_COLUMNS))
    if todo.size:
        # geocode one representative raw address per missing key
        rep = pd.DataFrame([keyed.reps[i] for i in np.flatnonzero(~hit)], columns=["address_raw", "zip", "beat"])
        res = geocoder.geocode(rep["address_raw"].tolist(), rep["zip"].tolist(), progress=ask.progress,
                               beats=rep["beat"].tolist() if ask.has_beat else None)
        if ask.online is not None:
            res = _ask_online(ask.online, rep, res)
        new_rows = pd.DataFrame({
            "key": todo, "lon": res["lon"].to_numpy(), "lat": res["lat"].to_numpy(),
            "match_type": res["match_type"].to_numpy(), "score": res["score"].to_numpy(),
            "matched_address": res["matched_address"].to_numpy(), "reason": res["reason"].to_numpy(),
            "reference_hash": ask.ref_hash, "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    table = pd.concat([cached.loc[ukeys[hit]].reset_index(), new_rows], ignore_index=True) \
        if len(new_rows) else cached.loc[ukeys[hit]].reset_index()
    return hit, new_rows, table.set_index("key").loc[ukeys]


class _ChunkWriter:
    """Pass 2 of `geocode_store`: each chunk of records' updates (only the rows whose stored
    result changes), tallied as they go by."""

    def __init__(self, store: Store, keyed: KeyedRecords, table: pd.DataFrame, beat_index: BeatIndex | None,
                 stored: list[str], chunk_rows: int) -> None:
        self.store, self.keyed, self.beat_index, self.stored = store, keyed, beat_index, stored
        self.chunk_rows = chunk_rows
        self.results = _KeyResults(table)
        self.written = 0
        self.by_match_type: Counter[Any] = Counter()
        self.unmatched_reasons: Counter[Any] = Counter()

    def chunks(self) -> Iterator[pd.DataFrame]:
        cols = ["record_id", *(["beat"] if self.beat_index is not None else []), *self.stored]
        fids, codes = self.keyed.fids, self.keyed.codes
        for start in range(0, len(fids), self.chunk_rows):
            part = self.store.read_records_at(cols, fids[start:start + self.chunk_rows])
            updates = self._updates(part, codes[start:start + len(part)])
            changed = _changed(part, updates, self.stored)
            self.written += int(changed.sum())
            self.by_match_type.update(updates["match_type"])
            um = updates["match_type"] == "unmatched"
            self.unmatched_reasons.update(updates.loc[um, "geocode_reason"].fillna(""))
            yield updates[changed]

    def _updates(self, part: pd.DataFrame, at: np.ndarray) -> pd.DataFrame:
        return self.results.updates(part["record_id"], part["beat"] if self.beat_index is not None else None,
                                    at, self.beat_index)


class _KeyResults:
    """One geocode result per cache key (rows of a table in key order), as columns."""

    def __init__(self, table: pd.DataFrame) -> None:
        # per key, as the geocoder gave them (object columns compared as objects by `_changed`)
        self.lon, self.lat, self.score = (table[c].to_numpy(float) for c in ("lon", "lat", "score"))
        self.text = {c: table[c].to_numpy(object) for c in ("match_type", "matched_address", "reason")}

    def updates(self, record_ids: pd.Series, beats: pd.Series | None, at: np.ndarray,
                beat_index: BeatIndex | None) -> pd.DataFrame:
        """The geocode columns of records whose keys sit at positions `at` (+ ``beat_check``
        from `beats` when `beat_index` is given)."""
        updates = pd.DataFrame({
            "record_id": pd.Series(record_ids.to_numpy(object), dtype=object),
            "lon": self.lon[at], "lat": self.lat[at],
            "match_type": pd.Series(self.text["match_type"][at], dtype=object),
            "score": self.score[at],
            "matched_address": pd.Series(self.text["matched_address"][at], dtype=object),
            "geocode_reason": pd.Series(self.text["reason"][at], dtype=object),
        })
        if beat_index is not None and beats is not None:
            updates["beat_check"] = pd.Series(self._beat_checks(beats, at, beat_index), dtype=object)
        return updates

    def _beat_checks(self, beats: pd.Series, at: np.ndarray, beat_index: BeatIndex) -> np.ndarray:
        """`beat_check.checks_for` of each record, computed once per distinct (key, beat):
        the check is a function of the point (the key's) and the beat the record names, as
        `normalize_beat` reads it (records sharing an address share most of both)."""
        raw = beats.fillna("").to_numpy(object)
        named, _ = pd.factorize(pd.Series([normalize_beat(b) for b in raw], dtype=object))
        pair = np.asarray(at, dtype=np.int64) * (int(named.max(initial=0)) + 1) + named
        _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
        checks = bc.checks_for(self.lon[at][first], self.lat[at][first], raw[first], beat_index)
        return np.asarray(checks, dtype=object)[inverse.reshape(-1)]


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


# --- new records geocoded before their first write (`geo_lead.enrich`) -----------------------

@dataclass
class GeocodeTally:
    """`geocode_store`'s record and address counts for records geocoded before their insert
    (`NewRecordGeocoder`), kept as `geocode_store` keeps them (`merged_into` adds them)."""

    records: int = 0
    geocoded_new: int = 0
    geocoded_from_cache: int = 0
    addresses_new: int = 0
    addresses_from_cache: int = 0
    by_match_type: Counter[Any] = field(default_factory=Counter)
    unmatched_reasons: Counter[Any] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """The counts under `geocode_store`'s keys (``records_written`` = ``records``: a new
        record's stored result always changes)."""
        return {"records": self.records, "geocoded_new": self.geocoded_new,
                "geocoded_from_cache": self.geocoded_from_cache, "by_match_type": dict(self.by_match_type),
                "unmatched_reasons": dict(self.unmatched_reasons), "addresses_new": self.addresses_new,
                "addresses_from_cache": self.addresses_from_cache, "records_written": self.records}

    def merged_into(self, counts: dict[str, Any]) -> dict[str, Any]:
        """`counts` of a later `geocode_store` call with this tally added (these records first)."""
        if not self.records:
            return counts
        out = dict(counts)
        mine = self.to_dict()
        for key in ("records", "geocoded_new", "geocoded_from_cache", "addresses_new", "addresses_from_cache",
                    "records_written"):
            out[key] = mine[key] + int(counts.get(key, 0))
        for key in ("by_match_type", "unmatched_reasons"):
            merged = Counter(mine[key])
            merged.update(counts.get(key) or {})
            out[key] = dict(merged)
        return out


class NewRecordGeocoder:
    """Geocode new records a chunk at a time, through the cache, before their insert.

    Each chunk's records are keyed (`cache_keys`), the keys the cache lacks geocoded in one
    batch and added to it, and the records given what `geocode_store` would write for them
    (geocode columns and ``beat_check``). A key geocoded by an earlier chunk counts as new for
    every record that has it, so the tally equals one `geocode_store` call over the same
    records. Used only on a store `is_complete` finds with nothing left to geocode; `finish`
    then records the reference (and beats) as `geocode_store` does.
    """

    def __init__(self, geocoder: Geocoder) -> None:
        self.geocoder = geocoder
        self.ref_hash = geocoder.reference_hash
        self.beat_index: BeatIndex | None = None
        self.tally = GeocodeTally()
        self._parsed: dict[str, str] | None = None  # address triples -> key (`known_keys`, then `cache_keys`' memo)
        self._known = 0  # how many of them `known_keys` gave
        self._from_cache: dict[str, bool] = {}  # keys seen: True when the cache had them first

    def is_complete(self, store: Store) -> bool:
        """Whether every stored record is geocoded and beat-checked with this geocoder and the
        shipped beats (or the store holds no record): then new records are all the geocode
        stage would do."""
        have = set(store.columns("records"))
        self.beat_index = bc.shipped_index() if "beat" in have else None
        if store.is_empty("records"):
            return True
        if not {"lon", "lat", "match_type"} <= have or store.get_json(META_REFERENCE_HASH) != self.ref_hash:
            return False
        if store.ungeocoded_fids(skip_unmatched=True).size:
            return False
        if self.beat_index is None:
            return True
        return ("beat_check" in have and store.get_json(bc.META_BEATS_HASH) == bc.index_hash(self.beat_index)
                and not store.placed_fids(unchecked_only=True).size)

    def __call__(self, store: Store, records: pd.DataFrame) -> pd.DataFrame:
        """The geocode columns (``record_id`` first, `geo_lead.store.GEOCODE_COLUMNS`) of the
        new `records`, in their order (inside the ingest's transaction: new cache rows are
        written)."""
        has_beat = "beat" in store.columns("records")
        zips = records["zip"].fillna("") if "zip" in records else pd.Series("", index=records.index)
        beats = (records["beat"].fillna("") if "beat" in records else pd.Series("", index=records.index)) \
            if has_beat else None
        if self._parsed is None:
            self._parsed = known_keys()
            self._known = len(self._parsed)
        codes, uniq = pd.factorize(cache_keys(records["address_raw"], zips, beats, self._parsed))
        keys = uniq.tolist()
        table = self._results(store, keys, _reps(records["address_raw"], zips, beats, codes, len(keys)), has_beat)
        at = np.asarray(codes, dtype=np.int64)
        updates = _KeyResults(table).updates(records["record_id"], beats, at, self.beat_index)
        updates.index = records.index
        fresh = np.array([not self._from_cache[k] for k in keys], dtype=bool)
        self.tally.records += len(records)
        self.tally.geocoded_new += int(fresh[at].sum())
        self.tally.geocoded_from_cache += int((~fresh[at]).sum())
        self.tally.by_match_type.update(updates["match_type"])
        um = updates["match_type"] == "unmatched"
        self.tally.unmatched_reasons.update(updates.loc[um, "geocode_reason"].fillna(""))
        return updates

    def _results(self, store: Store, keys: list[str], reps: list[tuple[Any, str, str]],
                 has_beat: bool) -> pd.DataFrame:
        """One result row per key of `keys` (in order): the cache's, the missing ones geocoded
        now (their first record's address, `reps`) and added to the cache."""
        ensure_cache(store)
        cached = store.cached_geocodes_for(self.ref_hash, keys).set_index("key")
        ukeys = np.asarray(keys, dtype=object)
        hit = pd.Index(ukeys).isin(cached.index)
        for k, h in zip(keys, hit.tolist(), strict=True):
            if k not in self._from_cache:
                self._from_cache[k] = h
                self.tally.addresses_from_cache += int(h)
        todo = np.flatnonzero(~hit)
        if not todo.size:
            return cached.loc[ukeys].reset_index()
        rep = pd.DataFrame([reps[i] for i in todo], columns=["address_raw", "zip", "beat"])
        res = self.geocoder.geocode(rep["address_raw"].tolist(), rep["zip"].tolist(),
                                    beats=rep["beat"].tolist() if has_beat else None)
        new_rows = pd.DataFrame({
            "key": ukeys[todo], "lon": res["lon"].to_numpy(), "lat": res["lat"].to_numpy(),
            "match_type": res["match_type"].to_numpy(), "score": res["score"].to_numpy(),
            "matched_address": res["matched_address"].to_numpy(), "reason": res["reason"].to_numpy(),
            "reference_hash": self.ref_hash, "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
        store.insert_rows(CACHE_TABLE, new_rows)
        self.tally.addresses_new += len(new_rows)
        table = pd.concat([cached.reset_index(), new_rows], ignore_index=True) if len(cached) else new_rows
        return table.set_index("key").loc[ukeys].reset_index()

    def counts_if_done(self, store: Store) -> dict[str, Any] | None:
        """`geocode_store`'s counts when it would geocode and check nothing more (after these
        records were written enriched into a complete store: no record without a
        ``match_type``, none placed and unchecked, the reference and beats recorded), else None.
        """
        if self.tally.records == 0 or store.get_json(META_REFERENCE_HASH) != self.ref_hash:
            return None
        if store.count_never_geocoded():
            return None
        if self.beat_index is not None and (store.get_json(bc.META_BEATS_HASH) != bc.index_hash(self.beat_index)
                                            or store.placed_fids(unchecked_only=True).size):
            return None
        return {**self.tally.to_dict(), "reference_hash": self.ref_hash,
                "beat_check_by_match_type": bc.rates_json(bc.beat_check_table(store))}

    def finish(self, store: Store) -> None:
        """Record the reference and the beats the new records were geocoded and checked with
        (inside the ingest's transaction), as `geocode_store` records them."""
        store.set_json(META_REFERENCE_HASH, self.ref_hash)
        if self.beat_index is not None:
            store.set_json(bc.META_BEATS_HASH, bc.index_hash(self.beat_index))
        if self._parsed is not None and len(self._parsed) > self._known:
            keep_known_keys(self._parsed)


def _reps(addresses: pd.Series, zips: pd.Series, beats: pd.Series | None, codes: np.ndarray,
          n_keys: int) -> list[tuple[Any, str, str]]:
    """Per key (codes 0..n_keys-1), its first record's address, ZIP and beat ("" without)."""
    first = np.full(n_keys, -1, np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    a, z = addresses.tolist(), zips.tolist()
    b = beats.tolist() if beats is not None else [""] * len(a)
    return [(a[r], z[r], b[r]) for r in first.tolist()]
