"""The embedded store: one GeoPackage file (SQLite) that QGIS and ArcGIS open.

Tables
------
records          feature table (POINT, EPSG:4326, empty until geocoded): one row per canonical
                 record (see `geo_lead.sources`), its indicator flags and geocode result
rejects          rows that could not be accepted, with file, line and reason
persons          person fields of citation rows (sex, race, age); never exported or mapped
record_history   earlier versions of records whose published content changed
ingests          one row per file ingested: sha256, sample_fraction, counts
file_frames      one row per distinct file (sha256): its declared sample fraction, report years
                 and report-date span (`geo_lead.frames`)
runs             run manifest (see `geo_lead.manifest`)
geocode_cache    geocoder results by normalised address key and reference hash
                 (`geo_lead.geocode.cache`)
meta             key/value (schema version)
rtree_<t>_geom   GeoPackage RTree spatial index of each feature table (records, scores, hotspot_*,
                 site_zones), kept in step by triggers (`Store.ensure_spatial_index`)

Every SQL statement of geo_lead is in this module: other modules call named `Store` methods
(`join_counts`, `ungeocoded_records`, `cached_geocodes`, ...) and never pass SQL text in.

Writes happen in one ``BEGIN IMMEDIATE`` transaction per command, so a process killed at
any point leaves the store as it was before or after the command, and two writers
serialise (the second waits up to ``busy_timeout_s``, then fails with `StoreBusyError`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import StoreBusyError, StoreError, StoreStorageError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"
GPKG_USER_VERSION = 10300  # GeoPackage 1.3
WGS84_SRS_ID = 4326
#: SQLite page cache per connection, KiB (256 MiB: the 1M-record index fits).
CACHE_KIB = 256 * 1024
#: Page cache, KiB, while a read outside any transaction visits record pages once
#: (`Store.scan_cache`): such pages are not read again, so they need not stay in memory.
SCAN_CACHE_KIB = 8 * 1024

#: Columns of the records table after the canonical ones (see geo_lead.sources.RECORD_COLUMNS).
FLAG_COLUMNS: tuple[str, ...] = (
    "opiate", "possession", "trafficking", "paraphernalia", "overdose", "other_drug", "lead_eligible",
)
RULE_COLUMNS: tuple[str, ...] = tuple(f"{f}_rule" for f in FLAG_COLUMNS)
GEOCODE_COLUMNS: tuple[str, ...] = (
    "lon", "lat", "match_type", "score", "matched_address", "geocode_reason",
    "beat_check",  # same / adjacent / other / no_beat (geo_lead.geocode.beat_check)
)
INTEGER_COLUMNS = frozenset({"source_line", *FLAG_COLUMNS})
REAL_COLUMNS = frozenset({"lon", "lat", "score"})
#: `Store.read_records` reads whole columns through GDAL's Arrow reader from this many records
#: on (below it the plain sqlite3 read is as fast and opens no second handle).
ARROW_MIN_ROWS = 50_000
#: Records per batch of `Store.record_dates`' stream (memory held: one batch's dates).
DATE_BATCH_ROWS = 200_000
#: Numeric record columns geo_lead writes only from numeric values (so the Arrow read is exact).
ARROW_NUMERIC_COLUMNS = INTEGER_COLUMNS | REAL_COLUMNS

#: Indexes that let an incremental run find its few new records and count the store without
#: scanning a million rows (each scan cost ~0.3-0.5 s): name -> (columns it needs, DDL).
#: Partial indexes hold only the rows a run looks for; created by `Store.ensure_record_indexes`
#: once their columns exist. None covers a plain column read but ``match_type`` or
#: ``neighborhood`` alone, so the row order of record reads is unchanged.
RECORD_INDEXES: dict[str, tuple[tuple[str, ...], str]] = {
    # the geocoder's "never geocoded" rows, and the by-type counts (covering)
    "records_match_type": (("match_type",), "ON records(match_type)"),
    # records without a point: the join's and the geocoder's "not placed" counts
    "records_unlocated": (("lon", "lat"), "ON records(fid) WHERE lon IS NULL OR lat IS NULL"),
    # their match type and neighborhood (covering): the records without a point the geocoder
    # has yet to try (`Store.ungeocoded_fids`) and those of them with a name (`join_counts`)
    # without reading each unmatched record's row (each ~0.2 s at 1M)
    "records_unlocated_match": (("lon", "lat", "match_type", "neighborhood"),
                                "ON records(match_type, neighborhood) WHERE lon IS NULL OR lat IS NULL"),
    # the incremental join's "join me" rows (IS NULL) and the joined count (covering)
    "records_neighborhood": (("neighborhood",), "ON records(neighborhood)"),
    # placed records not yet checked against their beat (`geocode.beat_check.refresh_store`)
    "records_beat_unchecked": (("lon", "lat", "beat_check"),
                               "ON records(fid) WHERE lon IS NOT NULL AND lat IS NOT NULL AND beat_check IS NULL"),
    # the beat-check tally by match type (`beat_check_counts`, covering: a rerun's report of
    # the beat check reads this index, not every record)
    "records_match_beat": (("match_type", "beat_check"),
                           "ON records(match_type, beat_check) WHERE beat_check IS NOT NULL"),
    # records of a year / month (`records_of_years`, `iter_record_rows`): see _CORE_DDL
    "records_occurred_month": (("occurred_at",), "ON records(substr(occurred_at, 1, 8))"),
    # the maps' records of the default indicator (`maps.read_map_records`)
    "records_lead_eligible": (("lead_eligible",), 'ON records(fid) WHERE COALESCE("lead_eligible", 0) <> 0'),
    # the report's count of opiate records (`Store.count_flagged`; ~10% of them)
    "records_opiate": (("opiate",), 'ON records(fid) WHERE COALESCE("opiate", 0) <> 0'),
}

#: Indexes of older stores that `Store.ensure_record_indexes` drops: ``records_occurred``
#: (whole ``occurred_at``; replaced by ``records_occurred_month``).
RETIRED_INDEXES: tuple[str, ...] = ("records_occurred",)

#: The run manifest (`geo_lead.manifest`): one row per `geo-lead run`.
RUNS_TABLE = "runs"
_RUNS_DDL = f"""CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT UNIQUE NOT NULL, started_at TEXT, finished_at TEXT, duration_s REAL,
    status TEXT, error TEXT, command TEXT, package_version TEXT, inputs_json TEXT,
    parameters_json TEXT, counts_json TEXT, outputs_json TEXT, results_json TEXT,
    changes_json TEXT)"""

#: Declared sample fraction of each ingested file (`Store.put_file_frame`, `geo_lead.frames`).
FILE_FRAMES_TABLE = "file_frames"
_FILE_FRAMES_DDL = f"""CREATE TABLE IF NOT EXISTS {FILE_FRAMES_TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT,
    file_sha256 TEXT UNIQUE NOT NULL, source_file TEXT, source TEXT, sample_fraction REAL NOT NULL,
    years TEXT, report_first TEXT, report_last TEXT, ingested_at TEXT)"""

#: The geocoder's cache (`geo_lead.geocode.cache`): one row per normalised address key.
GEOCODE_CACHE_TABLE = "geocode_cache"
GEOCODE_CACHE_COLUMNS: tuple[str, ...] = ("key", "lon", "lat", "match_type", "score", "matched_address",
                                          "reason", "reference_hash", "created_at")
_GEOCODE_CACHE_DDL = f"""CREATE TABLE IF NOT EXISTS {GEOCODE_CACHE_TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE, lon REAL, lat REAL, match_type TEXT, score REAL,
    matched_address TEXT, reason TEXT, reference_hash TEXT, created_at TEXT)"""

#: ``occurred_at`` values that start with a ``YYYY-MM`` month (`Store.iter_record_rows`).
_ISO_MONTH_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]*"

_SRS_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)


def _utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpkg_blob(wkb: bytes | None, srs_id: int = WGS84_SRS_ID) -> bytes | None:
    """Wrap ISO WKB in the GeoPackage binary header (no envelope, little endian)."""
    if wkb is None:
        return None
    return b"GP\x00\x01" + struct.pack("<i", srs_id) + wkb


def wkb_from_gpkg(blob: bytes | None) -> bytes | None:
    """Strip the GeoPackage header (any envelope size) and return the WKB."""
    if blob is None:
        return None
    flags = blob[3]
    envelope_len = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 0b111]
    return bytes(blob[8 + envelope_len:])


#: The GeoPackage RTree extension row (`Store.ensure_spatial_index`), as GDAL writes it.
RTREE_EXTENSION = ("gpkg_rtree_index", "http://www.geopackage.org/spec120/#extension_rtree", "write-only")
_EXTENSIONS_DDL = """CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,
    extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
    CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"""
#: The RTree triggers of the GeoPackage 1.3 extension, as GDAL 3.12 writes them ({t}: table,
#: {g}: geometry column, {r}: the rtree table); they call ST_MinX .. ST_IsEmpty, which GDAL
#: and QGIS provide and `register_gpkg_functions` adds to geo_lead's own connections.
_RTREE_TRIGGERS: dict[str, str] = {
    "insert": 'AFTER INSERT ON "{t}" WHEN (new."{g}" NOT NULL AND NOT ST_IsEmpty(NEW."{g}")) BEGIN '
              'INSERT OR REPLACE INTO "{r}" VALUES (NEW."fid",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),'
              'ST_MinY(NEW."{g}"), ST_MaxY(NEW."{g}")); END',
    "update6": 'AFTER UPDATE OF "{g}" ON "{t}" WHEN OLD."fid" = NEW."fid" AND (NEW."{g}" NOTNULL AND NOT '
               'ST_IsEmpty(NEW."{g}")) AND (OLD."{g}" NOTNULL AND NOT ST_IsEmpty(OLD."{g}")) BEGIN UPDATE "{r}" '
               'SET minx = ST_MinX(NEW."{g}"), maxx = ST_MaxX(NEW."{g}"),miny = ST_MinY(NEW."{g}"), '
               'maxy = ST_MaxY(NEW."{g}") WHERE id = NEW."fid";END',
    "update7": 'AFTER UPDATE OF "{g}" ON "{t}" WHEN OLD."fid" = NEW."fid" AND (NEW."{g}" NOTNULL AND NOT '
               'ST_IsEmpty(NEW."{g}")) AND (OLD."{g}" ISNULL OR ST_IsEmpty(OLD."{g}")) BEGIN INSERT INTO "{r}" '
               'VALUES (NEW."fid",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),ST_MinY(NEW."{g}"), '
               'ST_MaxY(NEW."{g}")); END',
    "update2": 'AFTER UPDATE OF "{g}" ON "{t}" WHEN OLD."fid" = NEW."fid" AND (NEW."{g}" ISNULL OR '
               'ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id = OLD."fid"; END',
    "update5": 'AFTER UPDATE ON "{t}" WHEN OLD."fid" != NEW."fid" AND (NEW."{g}" NOTNULL AND NOT '
               'ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id = OLD."fid"; INSERT OR REPLACE INTO '
               '"{r}" VALUES (NEW."fid",ST_MinX(NEW."{g}"), ST_MaxX(NEW."{g}"),ST_MinY(NEW."{g}"), '
               'ST_MaxY(NEW."{g}")); END',
    "update4": 'AFTER UPDATE ON "{t}" WHEN OLD."fid" != NEW."fid" AND (NEW."{g}" ISNULL OR '
               'ST_IsEmpty(NEW."{g}")) BEGIN DELETE FROM "{r}" WHERE id IN (OLD."fid", NEW."fid"); END',
    "delete": 'AFTER DELETE ON "{t}" WHEN old."{g}" NOT NULL BEGIN DELETE FROM "{r}" WHERE id = OLD."fid"; END',
}

#: The RTree of the records layer.
RECORDS_RTREE = "rtree_records_geom"
#: `Store.update_records` refills the whole records RTree (instead of replacing the updated
#: records' entries) when it sets the points of at least this share of the records.
RTREE_REBUILD_SHARE = 0.5
#: Share of each node's cells a bulk-loaded RTree fills (`rtree_pages`): full nodes split on
#: the next insert into them, so a rerun's few thousand new points, spread over the city,
#: would split (and rewrite) most leaves; 70% is about what the module's own inserts leave.
RTREE_FILL = 0.7
#: Writes of at least this many rows that change no geometry run with the RTree triggers off
#: (`Store._rtree_triggers_off`): evaluating them cost ~40% of a 200k-row insert.
TRIGGERS_OFF_MIN_ROWS = 1_000
#: Rows converted to Python values per executemany (`Store._executemany`).
WRITE_CHUNK_ROWS = 50_000

_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_last_envelope: list[Any] = [None, None]  # (blob, (minx, maxx, miny, maxy, empty)): one-entry memo


def gpkg_envelope(blob: bytes | None) -> tuple[float, float, float, float, bool] | None:
    """``(minx, maxx, miny, maxy, empty)`` of a GeoPackage geometry blob (None for NULL).

    A 2D point without a header envelope (how geo_lead writes record points) is read in
    place; anything else through shapely. The empty flag is the header's (bit 4).
    """
    if blob is None:
        return None
    if _last_envelope[0] == blob:
        return _last_envelope[1]  # type: ignore[no-any-return]
    flags = blob[3]
    env_len = _ENVELOPE_BYTES[(flags >> 1) & 0b111]
    empty = bool(flags & 0b10000)
    start = 8 + env_len
    order = "<" if blob[start] == 1 else ">"
    if not empty and len(blob) - start == 21 and struct.unpack_from(order + "I", blob, start + 1)[0] == 1:
        x, y = struct.unpack_from(order + "dd", blob, start + 5)
        out = (x, x, y, y, bool(np.isnan(x) and np.isnan(y)))
    else:
        import shapely

        geom = shapely.from_wkb(bytes(blob[start:]))
        empty = empty or geom.is_empty
        b = (np.nan,) * 4 if empty else geom.bounds
        out = (b[0], b[2], b[1], b[3], empty)
    _last_envelope[0], _last_envelope[1] = blob, out
    return out


def register_gpkg_functions(conn: sqlite3.Connection) -> None:
    """Add ST_MinX, ST_MaxX, ST_MinY, ST_MaxY and ST_IsEmpty (GeoPackage blobs) to `conn`:
    the RTree triggers call them (GDAL and QGIS define their own)."""
    for name, pos in (("ST_MinX", 0), ("ST_MaxX", 1), ("ST_MinY", 2), ("ST_MaxY", 3)):
        conn.create_function(name, 1, lambda b, i=pos: None if (e := gpkg_envelope(b)) is None else e[i],
                             deterministic=True)
    conn.create_function("ST_IsEmpty", 1, lambda b: None if (e := gpkg_envelope(b)) is None else int(e[4]),
                         deterministic=True)


def _sql_type(column: str, dtype: Any) -> str:
    if column in INTEGER_COLUMNS or pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return "INTEGER"
    if column in REAL_COLUMNS or pd.api.types.is_float_dtype(dtype):
        return "REAL"
    return "TEXT"


def _py(value: Any) -> Any:
    """numpy / pandas scalars -> sqlite-friendly Python values (NaN -> NULL)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


def storage_error(path: Path | str, exc: BaseException) -> StoreStorageError | None:
    """The clear error for SQLite's read-only, full-disk, I/O and cannot-open failures, or None.

    Each message names the file and what to do. A read-only store with a pending rollback
    journal (left by a write that was killed) cannot even be read until SQLite applies the
    journal, which needs write permission: the message says so.
    """
    if not isinstance(exc, sqlite3.Error):
        return None
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc)
    journal = Path(f"{path}-journal")
    if name == "SQLITE_READONLY_ROLLBACK" or ("readonly" in text and journal.exists()):
        return StoreStorageError(
            f"{path}: needs write permission to recover: a write that was interrupted left "
            f"{journal.name}, which SQLite must roll back before the store can be read. Give "
            f"write permission to {path} and its folder (or run as their owner) and run the "
            f"command again; do not delete {journal.name}.")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreStorageError(
            f"{path}: the store is read-only (the file, its folder or the disk); nothing was "
            "changed. Give write permission to the file and its folder, or copy it somewhere "
            "writable and pass --store COPY.")
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreStorageError(
            f"{path}: the disk is full; nothing was changed (the write was rolled back). Free "
            "space on that disk, or pass --store on another disk, and run the command again.")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
        return StoreStorageError(  # SQLite's extended code says which I/O failed
            f"{path}: disk I/O error ({name if name.startswith('SQLITE_IOERR_') else text}); the store "
            "was left as it was before this command. Check the disk (and its free space), then run "
            "the command again.")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in text:
        return StoreStorageError(
            f"{path}: cannot open the store file or create its journal beside it; check that "
            "the folder exists and is writable, or pass another --store.")
    return None


class Store:
    """An open GeoPackage store. Use `open_store`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self.conn = path, conn
        self._depth = 0  # nesting level of `write` savepoints
        self.busy_timeout_s = settings.STORE_BUSY_TIMEOUT_S  # open_store sets the one it used
        #: Set by `open_store` when it created the file (and these folders):
        #: `close_discarding_if_unused` removes them again if nothing was written.
        self.created: bool = False
        self.created_dirs: list[Path] = []
        #: Rows this connection changed in tables other than ``records`` through the methods
        #: that say so (`_writes_to`), and writes that may have changed the records without
        #: changing `total_changes` (a rollback, a records write inside such a method): what
        #: `records_state` takes out of / adds to SQLite's own counters.
        self._other_changes = 0
        self._record_writes = 0
        self._writes_depth = 0
        #: Rows of ``records`` changed by updates that set no `RecordDates.COLUMNS` (geocode,
        #: join, flags): they keep `record_dates` (`_dates_state`), not `flagged_records`.
        self._nondate_changes = 0
        #: Whether the saved `record_dates` (meta, `keep_record_dates`) was looked at; whether
        #: each outermost commit saves them.
        self._saved_dates_tried = False
        self._keep_dates = False
        self._count_kept: tuple[tuple[int, ...], int] | None = None
        #: `record_dates` of the store as it was: (`records_state`, dates)
        self._dates: tuple[tuple[int, ...], RecordDates] | None = None
        #: whether the aggregates a run saved (meta `SAVED_AGGREGATES_KEY`) were looked at
        self._saved_aggregates_tried = False
        #: `flagged_records` per flag: (`records_state`, that flag's fids, the columns read so far)
        self._flagged: dict[str, tuple[tuple[int, ...], pd.DataFrame]] = {}
        #: all-record aggregates (`count_by` of records, `beat_check_counts`, `count_flagged`,
        #: `division_counts`): name -> (`records_state`, value)
        self._aggregates: dict[str, tuple[tuple[int, ...], Any]] = {}

    def _kept(self, name: str) -> Any:
        """The all-record aggregate `name` (`_aggregate`), kept while `records_state` stays
        (callers copy what they hand out): records this Store inserts are added to it
        (`_aggregates_merged`); else the value an earlier `geo-lead run` saved
        (`keep_record_dates`) when no one wrote to the file since (`_adopt_saved_aggregates`);
        else computed from every record."""
        key = self.records_state()
        hit = self._aggregates.get(name)
        if (hit is None or hit[0] != key) and self._adopt_saved_aggregates():
            key, hit = self.records_state(), self._aggregates.get(name)
        if hit is None or hit[0] != key:
            hit = self._aggregates[name] = (key, self._aggregate(name))
        return hit[1]

    def _aggregate(self, name: str, new_from: int | None = None) -> Any:
        """The all-record aggregate `name` (``count_by:<column>``, ``beat_check_counts``,
        ``count_flagged:<flag>``, ``division_counts``) of every record, or with `new_from` of
        the records of fid >= it only (the same query on the inserted rows: AUTOINCREMENT puts
        them after every record; read by fid range, NOT INDEXED), so that `merge_aggregate` of
        the two is the aggregate of all of them."""
        kind, _, arg = name.partition(":")
        new = f"fid >= {int(new_from)}" if new_from is not None else ""
        table = 'records NOT INDEXED' if new else "records"
        if kind == "division_counts":
            return _division_pairs(self._record_columns(["neighborhood", "division"], where=new))
        if kind == "count_by":
            rows = self.conn.execute(f'SELECT "{arg}", COUNT(*) FROM {table}{" WHERE " + new if new else ""} '
                                     f'GROUP BY "{arg}"')
            return _sqlite_ordered({k: int(v) for k, v in rows.fetchall()})
        if kind == "beat_check_counts":
            rows = self.conn.execute(f"SELECT match_type, beat_check, COUNT(*) FROM {table} WHERE beat_check IS NOT NULL"
                                     f"{' AND ' + new if new else ''} GROUP BY match_type, beat_check "
                                     "ORDER BY match_type, beat_check")
            return [(m, b, int(n)) for m, b, n in rows.fetchall()]
        if kind == "count_flagged":
            with self.scan_cache():  # a full scan for a flag without a `RECORD_INDEXES` index
                return int(self.conn.execute(f'SELECT COUNT(*) FROM {table} WHERE COALESCE("{arg}", 0) <> 0'
                                             f"{' AND ' + new if new else ''}").fetchone()[0])
        raise ValueError(f"no record aggregate {name!r}")

    @contextlib.contextmanager
    def _aggregates_merged(self) -> Iterator[None]:
        """Records inserted inside keep the current kept aggregates current: each is computed
        on the new records alone (`_aggregate` with their first fid) and merged with the kept
        value (`merge_aggregate`: sums of counts, exact)."""
        state = self.records_state()
        kept = {name: hit[1] for name, hit in self._aggregates.items() if hit[0] == state}
        first = self.next_record_fid() if kept else 0
        yield
        if kept:
            after = self.records_state()
            for name, value in kept.items():
                self._aggregates[name] = (after, merge_aggregate(name, value, self._aggregate(name, first)))

    def _save_aggregates(self, header: FileHeader | None) -> None:
        """Save the current kept aggregates into the open transaction, as `_save_dates` saves
        the dates (`_save_meta`, meta `SAVED_AGGREGATES_KEY`)."""
        def current() -> dict[str, Any] | None:
            state = self.records_state()
            kept = {name: hit[1] for name, hit in self._aggregates.items() if hit[0] == state}
            return {"values": {name: _aggregate_to_json(name, v) for name, v in kept.items()}} if kept else None

        self._save_meta(SAVED_AGGREGATES_KEY, current, header)

    def _adopt_saved_aggregates(self) -> bool:
        """Take the aggregates a run saved (`_save_aggregates`) as this Store's, once, before
        its first write, on the conditions `_adopt_saved_dates` takes the saved dates on
        (rollback-journal file whose change counter is the one saved with them: no commit by
        anyone since; the same code)."""
        if self._saved_aggregates_tried:
            return False
        self._saved_aggregates_tried = True
        got = self._saved_meta(SAVED_AGGREGATES_KEY, self.records_state)
        if got is None:
            return False
        saved, state = got
        try:
            values = {name: _aggregate_from_json(name, v) for name, v in dict(saved["values"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            log.debug("saved record aggregates not used (%s)", exc)
            return False
        for name, value in values.items():
            self._aggregates[name] = (state, value)
        return True

    def records_state(self) -> tuple[int, ...]:
        """A key that changes whenever the records may have changed: a commit by another
        connection (``PRAGMA data_version``: GDAL, QGIS, another geo-lead), a row changed by
        this connection in any table but through a method that wrote only another table
        (``total_changes`` less `_writes_to`'s rows: any other write, e.g. SQL run on
        ``conn`` directly, counts), a rollback, and the number of records. Equal keys: the
        records read now are those read then (the memos of `record_dates` and
        `flagged_records`); a result layer or meta written in between keeps the key."""
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        return (version, self.conn.total_changes - self._other_changes, self._record_writes,
                self._record_count(version))

    def _record_count(self, data_version: int | None = None) -> int:
        """``count("records")`` (a COUNT(*) of a million records: ~20 ms), counted again only when
        a row or the schema may have changed: another connection's commit (`data_version`: as
        `records_state` just read it, or read here), a
        row changed by this one (``total_changes``), a DROP/CREATE (``schema_version``) or a
        rollback (`_record_writes`)."""
        if data_version is None:
            data_version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        key = (data_version, self.conn.total_changes,
               int(self.conn.execute("PRAGMA main.schema_version").fetchone()[0]), self._record_writes)
        if self._count_kept is None or self._count_kept[0] != key:
            self._count_kept = (key, self.count("records"))
        return self._count_kept[1]

    def _dates_state(self) -> tuple[int, ...]:
        """`records_state`, but for the records' dates only: an update that sets none of
        `RecordDates.COLUMNS` (`_update_chunk`) keeps it."""
        state = self.records_state()
        return (state[0], state[1] - self._nondate_changes, *state[2:])

    @contextlib.contextmanager
    def _writes_to(self, table: str) -> Iterator[None]:
        """The rows changed inside count as changes of `table` only: for a table other than
        ``records`` they leave `records_state` as it was; for ``records (no dates)`` (an update
        of columns other than `RecordDates.COLUMNS`) they leave `_dates_state` as it was. A
        ``records`` write, or one inside another such block, moves both keys
        (`_record_writes`)."""
        if table == "records" or (self._writes_depth and table == "records (no dates)"):
            self._record_writes += 1
            yield
            return
        if self._writes_depth:
            yield
            return
        before = self.conn.total_changes
        self._writes_depth += 1
        try:
            yield
        finally:
            self._writes_depth -= 1
            if table == "records (no dates)":
                self._nondate_changes += self.conn.total_changes - before
            else:
                self._other_changes += self.conn.total_changes - before

    @contextlib.contextmanager
    def scan_cache(self) -> Iterator[None]:
        """A page cache of `SCAN_CACHE_KIB` for the reads inside (when no transaction is open),
        the connection's own size again after: a read that visits each record page once then
        holds at most that much of them in memory instead of up to `CACHE_KIB`."""
        if self.conn.in_transaction:
            yield
            return
        size = int(self.conn.execute("PRAGMA cache_size").fetchone()[0])
        self.conn.execute(f"PRAGMA cache_size = -{SCAN_CACHE_KIB}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {size}")

    # --- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction; waits for other writers, then fails clearly.

        Re-entrant: inside an open transaction it becomes a SAVEPOINT, so a caller (e.g. a
        whole pipeline run) can wrap several stages in one outer transaction and commit them
        all at once; an error in the inner block rolls back the inner block and re-raises.
        """
        if self.conn.in_transaction:
            name = f"sp{id(self)}_{self._depth}"
            self._depth += 1
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException as exc:
                self._record_writes += 1  # what a memo read inside may be undone (`records_state`)
                if self.conn.in_transaction:  # SQLite may already have rolled back (disk full)
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute(f"ROLLBACK TO {name}")
                        self.conn.execute(f"RELEASE {name}")
                mapped = storage_error(self.path, exc)
                if mapped is not None:
                    raise mapped from None
                raise
            else:
                self._run(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        self._adopt_saved_dates()  # before this connection's first write changes the file
        self._adopt_saved_aggregates()
        header = self._header() if self._keep_dates else None  # before the lock (`_header`)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusyError(
                    f"{self.path}: another geo-lead process is writing to this store (waited "
                    f"{self.busy_timeout_s:g} s); wait for it to finish and run the command again."
                ) from None
            raise storage_error(self.path, exc) or StoreError(
                f"{self.path}: cannot start a write: {exc}") from None
        try:
            yield self.conn
        except BaseException as exc:
            self._record_writes += 1  # what a memo read inside may be undone (`records_state`)
            with contextlib.suppress(sqlite3.Error):
                self.conn.rollback()
            mapped = storage_error(self.path, exc)
            if mapped is not None:
                raise mapped from None
            raise
        else:
            try:
                if self._keep_dates:
                    self._save_dates(header)
                    self._save_aggregates(header)
                self.conn.commit()
            except sqlite3.Error as exc:
                self._record_writes += 1
                with contextlib.suppress(sqlite3.Error):
                    self.conn.rollback()
                raise storage_error(self.path, exc) or StoreError(
                    f"{self.path}: cannot commit: {exc}") from None

    def _run(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) or StoreError(f"{self.path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def close_discarding_if_unused(self) -> None:
        """Close; a store this process created and never wrote data to is removed with the
        folders created for it (a failed first ingest leaves nothing behind)."""
        empty = False
        if self.created:
            with contextlib.suppress(sqlite3.Error):
                empty = not self.conn.in_transaction and self._holds_nothing()
        self.conn.close()
        if empty:
            for leftover in (self.path, Path(f"{self.path}-journal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            for folder in reversed(self.created_dirs):  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when still empty
            log.info("%s: nothing was written; the new store file was removed", self.path)

    def _holds_nothing(self) -> bool:
        """No row in any table geo_lead writes data to (only the empty schema)."""
        names = [t for t in self.tables()
                 if t != "meta" and not t.startswith(("gpkg_", "sqlite_", "rtree_"))]
        return all(self.conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() is None for t in names)

    # --- schema helpers -----------------------------------------------------------------
    def tables(self) -> set[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")
        return {r[0] for r in rows}

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')]

    def ensure_columns(self, table: str, frame: pd.DataFrame) -> None:
        """Add to `table` any column of `frame` it lacks (inside the caller's transaction)."""
        have = set(self.columns(table))
        for col in frame.columns:
            if col not in have and col != "geom":
                self.conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{col}" {_sql_type(col, frame[col].dtype)}')

    def ensure_record_indexes(self) -> None:
        """Create the `RECORD_INDEXES` whose columns exist and drop `RETIRED_INDEXES` (inside
        the caller's transaction): an older store's migration."""
        have = set(self.columns("records"))
        for name in RETIRED_INDEXES:
            self.conn.execute(f"DROP INDEX IF EXISTS {name}")
        for name, (cols, ddl) in RECORD_INDEXES.items():
            if set(cols) <= have:
                self.conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {ddl}")
        self.ensure_spatial_index("records")  # stores made before the index had none

    def ensure_spatial_index(self, table: str, column: str = "geom") -> bool:
        """Give feature `table` the GeoPackage RTree index (inside the caller's transaction).

        Creates, as GDAL does, the ``rtree_<table>_<column>`` virtual table filled from the
        rows already there, its ``gpkg_extensions`` row and the triggers that keep it in step
        with every later INSERT, UPDATE and DELETE (by geo_lead, GDAL or QGIS). Returns
        whether it created the index (False: it was there already).
        """
        rtree = f"rtree_{table}_{column}"
        if rtree in self.tables():
            return False
        with self._writes_to(rtree):
            self._create_rtree(table, column, rtree)
        return True

    def _create_rtree(self, table: str, column: str, rtree: str) -> None:
        self.conn.execute(_EXTENSIONS_DDL)
        self.conn.execute(f'CREATE VIRTUAL TABLE "{rtree}" USING rtree(id, minx, maxx, miny, maxy)')
        self.conn.execute(
            f'INSERT OR REPLACE INTO "{rtree}" SELECT "fid", ST_MinX("{column}"), ST_MaxX("{column}"), '
            f'ST_MinY("{column}"), ST_MaxY("{column}") FROM "{table}" '
            f'WHERE "{column}" NOT NULL AND NOT ST_IsEmpty("{column}")')
        for suffix, body in _RTREE_TRIGGERS.items():
            self.conn.execute(f'CREATE TRIGGER "{rtree}_{suffix}" ' + body.format(t=table, g=column, r=rtree))
        self.conn.execute("INSERT OR IGNORE INTO gpkg_extensions VALUES (?, ?, ?, ?, ?)",
                          (table, column, *RTREE_EXTENSION))

    def drop_spatial_index(self, table: str, column: str = "geom") -> None:
        """Remove `table`'s RTree index, its triggers and extension row (inside `write`)."""
        rtree = f"rtree_{table}_{column}"
        for suffix in _RTREE_TRIGGERS:
            self.conn.execute(f'DROP TRIGGER IF EXISTS "{rtree}_{suffix}"')
        self.conn.execute(f'DROP TABLE IF EXISTS "{rtree}"')
        if "gpkg_extensions" in self.tables():
            with self._writes_to("gpkg_extensions"):
                self.conn.execute("DELETE FROM gpkg_extensions WHERE table_name = ? AND column_name = ? "
                                  "AND extension_name = ?", (table, column, RTREE_EXTENSION[0]))

    def spatial_index_ids(self, table: str, bbox: tuple[float, float, float, float],
                          column: str = "geom") -> list[int]:
        """fids whose RTree box meets ``bbox`` = (minx, miny, maxx, maxy), ascending."""
        rows = self.conn.execute(
            f'SELECT id FROM "rtree_{table}_{column}" WHERE maxx >= ? AND minx <= ? AND maxy >= ? '
            "AND miny <= ? ORDER BY id", (bbox[0], bbox[2], bbox[1], bbox[3]))
        return [int(r[0]) for r in rows]

    def register_attributes(self, table: str, description: str = "") -> None:
        with self._writes_to("gpkg_contents"):
            self._register_attributes(table, description)

    def _register_attributes(self, table: str, description: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
            " VALUES (?, 'attributes', ?, ?, ?)", (table, table, description, _utcnow()))

    def register_features(self, table: str, geometry_type: str, srs_id: int = WGS84_SRS_ID,
                          description: str = "") -> None:
        with self._writes_to("gpkg_contents"):
            self._register_features(table, geometry_type, srs_id, description)

    def _register_features(self, table: str, geometry_type: str, srs_id: int, description: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description,"
            " last_change, srs_id) VALUES (?, 'features', ?, ?, ?, ?)",
            (table, table, description, _utcnow(), srs_id))
        self.conn.execute(
            "INSERT OR IGNORE INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
            (table, geometry_type, srs_id))

    def touch(self, table: str) -> None:
        with self._writes_to("gpkg_contents"):
            self.conn.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = ?",
                              (_utcnow(), table))

    # --- generic reads / writes ---------------------------------------------------------
    def read_table(self, table: str, columns: Sequence[str] | None = None,
                   where: str = "", params: Sequence[Any] = ()) -> pd.DataFrame:
        """Read a table (without its geometry blob unless asked for ``geom``)."""
        if table not in self.tables():
            return pd.DataFrame(columns=list(columns or []))
        cols = columns or [c for c in self.columns(table) if c != "geom"]
        sql = f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}"'
        if where:
            sql += f" WHERE {where}"
        cur = self.conn.execute(sql, tuple(params))
        return pd.DataFrame(cur.fetchall(), columns=list(cols))

    def insert_rows(self, table: str, frame: pd.DataFrame, or_ignore: bool = False) -> int:
        """Insert a frame's rows (inside the caller's transaction); returns rows inserted."""
        if frame.empty:
            return 0
        cols = list(frame.columns)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        sql = (f'{verb} INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f'VALUES ({", ".join("?" for _ in cols)})')
        quiet = "geom" not in cols and len(frame) >= TRIGGERS_OFF_MIN_ROWS
        with self._dates_merged() if table == "records" else contextlib.nullcontext(), \
                self._aggregates_merged() if table == "records" else contextlib.nullcontext(), self._writes_to(table), \
                self._rtree_triggers_off(table) if quiet else contextlib.nullcontext():
            # rowcount, not total_changes: the RTree triggers' own writes are not rows inserted
            return self._executemany(sql, frame)

    def _executemany(self, sql: str, frame: pd.DataFrame) -> int:
        """Run `sql` once per row of `frame` (values converted column by column,
        `WRITE_CHUNK_ROWS` rows at a time so a million rows never exist as Python tuples at
        once); returns the summed rowcount."""
        done = 0
        for start in range(0, len(frame), WRITE_CHUNK_ROWS):
            cur = self.conn.executemany(sql, _row_tuples(frame.iloc[start:start + WRITE_CHUNK_ROWS]))
            done += max(cur.rowcount, 0)
        return done

    @contextlib.contextmanager
    def _rtree_triggers_off(self, table: str, column: str = "geom") -> Iterator[None]:
        """Drop `table`'s RTree triggers for the block and create them again after it (inside
        `write`, so a crash leaves them as they were; no-op without an index).

        For writes that leave every geometry and fid as it was (rows inserted without one,
        attribute updates), where a trigger would change nothing but is still evaluated for
        each row, or that bring the index in step themselves (`_sync_moved_points`).
        """
        rtree = f"rtree_{table}_{column}"
        if rtree not in self.tables():
            yield
            return
        for suffix in _RTREE_TRIGGERS:
            self.conn.execute(f'DROP TRIGGER IF EXISTS "{rtree}_{suffix}"')
        yield
        for suffix, body in _RTREE_TRIGGERS.items():
            self.conn.execute(f'CREATE TRIGGER "{rtree}_{suffix}" ' + body.format(t=table, g=column, r=rtree))

    def replace_features(self, table: str, gdf: Any, geometry_type: str = "GEOMETRY",
                         description: str = "") -> None:
        """Replace a feature layer with a GeoDataFrame (reprojected to EPSG:4326), atomically."""
        import shapely

        gdf = gdf.to_crs(WGS84_SRS_ID) if gdf.crs is not None and gdf.crs.to_epsg() != WGS84_SRS_ID else gdf
        attrs = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        with self.write(), self._writes_to(table):
            self.drop_spatial_index(table)
            self.conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            self.conn.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = ?", (table,))
            self.conn.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
            defs = ", ".join(f'"{c}" {_sql_type(c, attrs[c].dtype)}' for c in attrs.columns)
            self.conn.execute(f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, '
                              f'geom {geometry_type}{", " + defs if defs else ""})')
            self.register_features(table, geometry_type, description=description)
            wkb = shapely.to_wkb(np.asarray(gdf.geometry.values), flavor="iso")
            frame = attrs.copy()
            frame.insert(0, "geom", [gpkg_blob(b) for b in wkb])
            self.insert_rows(table, frame)
            self.ensure_spatial_index(table)  # bulk-filled from the rows, then kept by triggers

    def replace_attributes(self, table: str, frame: pd.DataFrame, description: str = "") -> None:
        """Replace an attributes table with a DataFrame, atomically."""
        with self.write(), self._writes_to(table):
            self.conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            self.conn.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
            defs = ", ".join(f'"{c}" {_sql_type(c, frame[c].dtype)}' for c in frame.columns)
            self.conn.execute(f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, {defs})')
            self.register_attributes(table, description)
            self.insert_rows(table, frame)

    # --- records ------------------------------------------------------------------------
    def upsert_records(self, records: pd.DataFrame, ingested_at: str,
                       enrich: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                       pending: PendingRecords | None = None) -> dict[str, int]:
        """Add new records; update changed ones (keeping the old version in record_history).

        Must be called inside `write`. The key is ``record_id``; "changed" means a different
        ``content_hash`` (the published fields differ). Returns counts added/unchanged/updated.

        `enrich` (optional) is given the new records (with ``ingested_at``) before their insert
        and returns them with more columns (added to the table as `update_records` adds them);
        the frame it returns must keep the rows. When it holds ``lon`` and ``lat`` the records
        are inserted with their points, the RTree triggers off: the caller brings the index in
        step with `index_new_points` before the transaction ends.

        `pending` (optional, instead of `enrich`): the new records are kept there and written
        enriched by `flush_records` (with the records of later calls, up to its ``max_rows``),
        so the enricher's set-up is paid per batch, not per call. They are written before
        anything else this call writes or reads of the records would see them (a changed
        record to update, a key already kept), so the store left is the one `enrich` leaves.
        """
        if records.empty:
            return {"added": 0, "unchanged": 0, "updated": 0}
        self.ensure_columns("records", records)
        if pending is not None and pending.holds_any(records["record_id"]):
            self.flush_records(pending)
        existing = self._existing_hashes(records["record_id"].tolist())
        old_hash = records["record_id"].map(existing)
        new = old_hash.isna()
        changed = ~new & (old_hash != records["content_hash"])
        to_add = records[new].copy()
        to_add["ingested_at"] = ingested_at
        if pending is not None:
            added = self._keep_pending(pending, to_add, flush=bool(changed.any()))
        elif enrich is not None and len(to_add):
            added = self._insert_enriched(to_add, enrich)
        else:
            added = self.insert_rows("records", to_add)
        updated = 0
        if changed.any():
            upd = records[changed]
            ids = upd["record_id"].tolist()
            old = self.read_table("records", where=f"record_id IN ({','.join('?' * len(ids))})", params=ids)
            hist = pd.DataFrame({
                "record_id": old["record_id"], "content_hash": old["content_hash"],
                "replaced_at": ingested_at,
                "old_json": [json.dumps({k: _py(v) for k, v in row.items()}) for row in old.to_dict("records")],
            })
            self.insert_rows("record_history", hist)
            self.update_records(upd.assign(updated_at=ingested_at))
            self._forget_moved_points(old, upd)
            updated = len(upd)
        self.ensure_record_indexes()
        return {"added": added, "unchanged": int((~new & ~changed).sum()), "updated": updated}

    def _keep_pending(self, pending: PendingRecords, to_add: pd.DataFrame, flush: bool) -> int:
        """Keep `to_add` in `pending` (written first when they would not go in one batch with
        it: more than ``max_rows``, other columns); all written when `flush`. Returns their count."""
        if pending.frames and (pending.rows + len(to_add) > pending.max_rows
                               or list(pending.frames[0].columns) != list(to_add.columns)):
            self.flush_records(pending)
        if len(to_add):
            pending.frames.append(to_add)
            pending.rows += len(to_add)
        if flush or pending.rows >= pending.max_rows:
            self.flush_records(pending)
        return len(to_add)

    def flush_records(self, pending: PendingRecords) -> int:
        """Write the records `pending` keeps, enriched in one batch (`upsert_records`; inside
        `write`); returns how many. Counts a flush in ``pending.flushes`` when it wrote any."""
        if not pending.frames:
            return 0
        batch = pending.frames[0] if len(pending.frames) == 1 else pd.concat(pending.frames, ignore_index=True)
        pending.frames, pending.rows = [], 0
        written = self._insert_enriched(batch, pending.enrich)
        if written != len(batch):
            raise StoreError(f"{self.path}: {written} of {len(batch)} new records written")
        pending.flushes += 1
        return written

    def _insert_enriched(self, to_add: pd.DataFrame, enrich: Callable[[pd.DataFrame], pd.DataFrame]) -> int:
        """Insert `enrich(to_add)` (`upsert_records`); returns rows inserted."""
        rows = enrich(to_add)
        if len(rows) != len(to_add):
            raise ValueError(f"upsert_records: enrich returned {len(rows)} rows for {len(to_add)} new records")
        self.ensure_columns("records", rows)
        if not {"lon", "lat"} <= set(rows.columns):
            return self.insert_rows("records", rows)
        lon, lat = (rows[c].to_numpy(dtype=float, na_value=np.nan) for c in ("lon", "lat"))
        rows = rows.assign(geom=point_blobs(lon, lat))
        cols = list(rows.columns)
        sql = (f'INSERT INTO records ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f'VALUES ({", ".join("?" for _ in cols)})')
        with self._dates_merged(), self._aggregates_merged(), self._writes_to("records"), \
                self._rtree_triggers_off("records"):  # `index_new_points` brings the index in step
            return self._executemany(sql, rows)

    def next_record_fid(self) -> int:
        """A fid no stored record has and at most the next inserted record's (max fid + 1)."""
        if "records" not in self.tables():
            return 1
        return int(self.conn.execute("SELECT COALESCE(MAX(fid), 0) + 1 FROM records").fetchone()[0])

    def index_new_points(self, first_fid: int) -> None:
        """Bring the records RTree in step with the records of fid >= `first_fid` (inserted with
        their points and the triggers off by `upsert_records(enrich=)`; inside `write`).

        The index left is the one the triggers would leave: each such record with a point has
        its entry. When they are >= `RTREE_REBUILD_SHARE` of the records the whole index is
        refilled bulk-loaded (`rtree_pages`, nodes `RTREE_FILL` full); else their entries are
        replaced, found by id. No-op without an index.
        """
        rtree = RECORDS_RTREE
        if rtree not in self.tables():
            return
        with self._writes_to(rtree):
            self._index_points_from(rtree, first_fid)

    def _index_points_from(self, rtree: str, first_fid: int) -> None:
        placed = "lon IS NOT NULL AND lat IS NOT NULL AND geom IS NOT NULL"
        new = self.count("records", f"fid >= {int(first_fid)}")
        if new >= RTREE_REBUILD_SHARE * self.count("records"):
            self._refill_rtree(rtree, f"SELECT fid, lon, lat FROM records WHERE {placed}")
            return
        # (by rowid, one lookup per new record: a range on the RTree's id scans every entry)
        self.conn.execute(f'DELETE FROM "{rtree}" WHERE id IN (SELECT fid FROM records WHERE fid >= ?)',
                          (int(first_fid),))
        self.conn.execute(f'INSERT INTO "{rtree}" SELECT fid, lon, lon, lat, lat FROM records '
                          f"WHERE fid >= ? AND {placed}", (int(first_fid),))

    def _forget_moved_points(self, old: pd.DataFrame, new: pd.DataFrame) -> None:
        """A record whose address or ZIP changed loses its point, so the geocoder places it again."""
        before = old.set_index("record_id")[["address_raw", "zip"]].fillna("")
        after = new.set_index("record_id")[["address_raw", "zip"]].fillna("").reindex(before.index)
        moved = before.index[(before != after).any(axis=1)].tolist()
        have = set(self.columns("records"))
        cols = [c for c in (*GEOCODE_COLUMNS, "neighborhood") if c in have]
        if not {"lon", "lat"} <= set(cols):  # (with lon/lat, update_records sets geom from them)
            cols.append("geom")
        if moved:
            self.update_records(pd.DataFrame({"record_id": moved, **dict.fromkeys(cols)}))

    def _existing_hashes(self, record_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(record_ids), 900):  # SQLite's bound-parameter limit
            batch = record_ids[i:i + 900]
            rows = self.conn.execute(
                f"SELECT record_id, content_hash FROM records WHERE record_id IN ({','.join('?' * len(batch))})",
                batch)
            out.update(dict(rows.fetchall()))
        return out

    def read_records(self, columns: Sequence[str] | None = None, where: str = "",
                     params: Sequence[Any] = ()) -> pd.DataFrame:
        """The records table as a DataFrame (never the person fields: they live elsewhere)."""
        frame = self._read_records_arrow(columns) if not where else None
        if frame is None:
            frame = self.read_table("records", columns, where, params)
        for col in FLAG_COLUMNS:
            if col in frame:
                frame[col] = frame[col].fillna(0).astype(bool)
        return frame

    def _read_records_arrow(self, columns: Sequence[str] | None) -> pd.DataFrame | None:
        """Whole `columns` of the records through GDAL's Arrow reader, or None to use sqlite3.

        Building a million rows of Python tuples in sqlite3 and then a DataFrame costs ~5x
        what GDAL's columnar read does (3.1 s vs 0.7 s for the 8 columns score, hotspots and
        site use). Taken only when it gives exactly what `read_table` would: every committed
        change is visible (no transaction open on this connection), the store is a file of
        at least `ARROW_MIN_ROWS` records, and each column is TEXT (SQLite's affinity stores
        every value of it as text or NULL: geo_lead writes no blobs there) or one of
        `ARROW_NUMERIC_COLUMNS` (written by geo_lead only from numbers), so GDAL's typed read
        converts nothing. Any error (GDAL missing, another writer committing) falls back to
        sqlite3.
        """
        try:
            cols = list(columns) if columns else [c for c in self.columns("records") if c != "geom"]
            if not self._arrow_reads_exactly(cols):
                return None
            # sqlite3 returns rows in the order of its plan: a plain table scan is fid order
            # (GDAL's); a covering-index scan (e.g. only occurred_at) is not, so keep sqlite3.
            quoted = ", ".join(f'"{c}"' for c in cols)
            plan = [str(r[-1]) for r in self.conn.execute(f"EXPLAIN QUERY PLAN SELECT {quoted} FROM records")]
            if plan != ["SCAN records"]:
                return None
            import warnings

            import pyogrio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _meta, table = pyogrio.read_arrow(self.path, layer="records", columns=cols, read_geometry=False)
            frame = table.to_pandas()[cols]
        except Exception as exc:  # any failure: the plain sqlite3 read
            log.debug("records: Arrow read not used (%s); reading through sqlite3", exc)
            return None
        if len(frame) != self.count("records"):  # a writer committed in between
            return None
        return frame

    def update_records(self, updates: pd.DataFrame, key: str = "record_id") -> int:
        """Set columns of existing records from a frame keyed by `key` (inside `write`).

        One set-based statement: the frame is bulk-loaded into a temporary table and applied
        with ``UPDATE records ... FROM``. A ``lon``/``lat`` pair also sets the point geometry
        (NULL when either is missing), keeps the RTree index in step (`_sync_moved_points`) and,
        unless the frame sets ``neighborhood`` too, clears ``neighborhood`` so the next
        (incremental) join places the moved record again. When a key occurs twice, its last
        row wins.

        Returns
        -------
        int
            The number of rows of `updates` (each names a stored record).

        Raises
        ------
        ValueError
            `updates` has no column `key`, or some key is not a stored record (the first few
            are named; nothing is changed).
        """
        if updates.empty:
            return 0
        if key not in updates.columns:
            raise ValueError(f"update_records: the frame has no key column {key!r} (columns: {list(updates.columns)})")
        return self.update_records_chunks([updates], key)

    def update_records_chunks(self, chunks: Iterable[pd.DataFrame], key: str = "record_id") -> int:
        """`update_records` for frames that arrive one at a time (a generator holding one chunk
        of a million-record stage in memory), applied in order in one savepoint (inside `write`).

        Each frame is applied as `update_records` applies one (the later frame's row wins for a
        key given twice); the RTree index is brought in step once, after the last frame, for
        every record whose point was set (refilled when they are >= `RTREE_REBUILD_SHARE` of
        the records), so the store and its index end as one `update_records` of the frames'
        concatenation leaves them. Returns the rows given; raises ValueError as
        `update_records` does (a missing key undoes every frame).
        """
        given = moved = 0
        with self.write():
            self.conn.execute("DROP TABLE IF EXISTS temp._moved")
            self.conn.execute("CREATE TEMP TABLE _moved (k)")
            for frame in chunks:
                if frame.empty:
                    continue
                if key not in frame.columns:
                    raise ValueError(f"update_records: the frame has no key column {key!r} "
                                     f"(columns: {list(frame.columns)})")
                moved += self._update_chunk(frame, key)
                given += len(frame)
            if moved:
                self._sync_moved_points(key, moved)
            self.conn.execute("DROP TABLE temp._moved")
        return given

    def _update_chunk(self, updates: pd.DataFrame, key: str) -> int:
        """Apply one frame of `update_records_chunks` (its keys of moved points go to
        ``temp._moved``); returns how many points it set (0 without an RTree or lon/lat)."""
        self.ensure_columns("records", updates)
        cols = [str(c) for c in updates.columns if c != key]
        frame = updates[[key, *cols]]
        points = {"lon", "lat"} <= set(cols)
        sets = [f'"{c}" = t."{c}"' for c in cols]
        if points:
            lon, lat = (updates[c].to_numpy(dtype=float, na_value=np.nan) for c in ("lon", "lat"))
            frame = frame.assign(geom=point_blobs(lon, lat))
            sets.append("geom = t.geom")
            if "neighborhood" not in cols and "neighborhood" in self.columns("records"):
                # A moved point invalidates its join: NULL marks it for the next spatial join.
                sets.append("neighborhood = NULL")
        with self._writes_to("temp._upd"):
            given = self._load_temp_updates(frame)
        sql = f'UPDATE records SET {", ".join(sets)} FROM temp._upd AS t WHERE records."{key}" = t.k'
        # (an update of no date column keeps `record_dates`: `_dates_state`)
        kind = "records" if {key, *cols} & set(RecordDates.COLUMNS) else "records (no dates)"
        moved = 0
        if points and RECORDS_RTREE in self.tables():
            with self._rtree_triggers_off("records"), self._writes_to(kind):  # the index is brought in step after
                changed = int(self.conn.execute(sql).rowcount)
            with self._writes_to("temp._moved"):
                self.conn.execute("INSERT INTO temp._moved SELECT k FROM temp._upd")
            moved = given
        else:  # the triggers act only on a new geometry or fid: neither is set here
            quiet = given >= TRIGGERS_OFF_MIN_ROWS and not {"fid", "geom"} & set(cols)
            with self._rtree_triggers_off("records") if quiet else contextlib.nullcontext(), self._writes_to(kind):
                changed = int(self.conn.execute(sql).rowcount)
        if changed != given:
            self._raise_missing_keys(key)
        self.conn.execute("DROP TABLE temp._upd")
        self.touch("records")
        return moved

    def _load_temp_updates(self, frame: pd.DataFrame) -> int:
        """Bulk-load `frame` (key column first) into ``temp._upd`` (``k`` and the frame's other
        columns by name; of a repeated key only the last row). Returns the rows loaded.

        No index on ``k``: the update scans ``temp._upd`` and finds each record by its key's
        index (building one on ``k`` cost more than the update's lookups).
        """
        frame = frame[~frame.iloc[:, 0].duplicated(keep="last").to_numpy()]
        self.conn.execute("DROP TABLE IF EXISTS temp._upd")
        names = "".join(f', "{c}"' for c in frame.columns[1:])
        self.conn.execute(f"CREATE TEMP TABLE _upd (k{names})")
        marks = ", ".join("?" * frame.shape[1])
        self._executemany(f"INSERT INTO temp._upd VALUES ({marks})", frame)
        return len(frame)

    def _raise_missing_keys(self, key: str) -> None:
        """Raise the ValueError naming the keys of ``temp._upd`` that are not stored records."""
        missing = [r[0] for r in self.conn.execute(
            f'SELECT k FROM temp._upd WHERE k NOT IN (SELECT "{key}" FROM records) LIMIT 6')]
        self.conn.execute("DROP TABLE temp._upd")
        more = ", ..." if len(missing) > 5 else ""
        raise ValueError(f"update_records: {key} not in the store: "
                         f"{', '.join(map(repr, missing[:5]))}{more}; nothing was updated")

    def _sync_moved_points(self, key: str, moved: int) -> None:
        """Bring the records RTree in step, set-based, for the records whose keys are in
        ``temp._moved`` (their points were set with the triggers off; inside `write`).

        The index left is the one the triggers would leave (a point's box is its lon/lat; no
        point, no entry), cheaper: the triggers call ST_* up to eight times a row. From
        `RTREE_REBUILD_SHARE` of the records on, the whole index is refilled; below it only
        the entries of the moved records are replaced.
        """
        with self._writes_to(RECORDS_RTREE):
            self._sync_rtree(key, moved)

    def _sync_rtree(self, key: str, moved: int) -> None:
        rtree = RECORDS_RTREE
        placed = "lon IS NOT NULL AND lat IS NOT NULL AND geom IS NOT NULL"
        if moved >= RTREE_REBUILD_SHARE * self.count("records"):
            self._refill_rtree(rtree, f"SELECT fid, lon, lat FROM records WHERE {placed}")
            return
        ids = f'SELECT fid FROM records WHERE "{key}" IN (SELECT k FROM temp._moved)'
        self.conn.execute(f'DELETE FROM "{rtree}" WHERE id IN ({ids})')
        self.conn.execute(f'INSERT INTO "{rtree}" SELECT fid, lon, lon, lat, lat FROM records '
                          f'WHERE "{key}" IN (SELECT k FROM temp._moved) AND {placed}')

    def _refill_rtree(self, rtree: str, points_sql: str) -> None:
        """Replace every entry of the RTree `rtree` with the points `points_sql` selects
        (id, x, y), written bulk-loaded into its shadow tables (`rtree_pages`; inside `write`).

        Inserting through the rtree module costs a search and often a split per point (200k
        points: ~6 s); packing the nodes in numpy and writing them as rows, as GDAL does
        when it creates an index, costs a fraction of that.
        """
        row = self.conn.execute(f'SELECT length(data) FROM "{rtree}_node" WHERE nodeno = 1').fetchone()
        if row is None:
            raise StoreError(f"{self.path}: the spatial index {rtree} has no root node; "
                             "rebuild it (`geo-lead` recreates it when it is dropped)")
        cur = self.conn.execute(points_sql)
        parts = [np.zeros((0, 3))]
        while rows := cur.fetchmany(WRITE_CHUNK_ROWS):  # numpy a chunk at a time, not a million tuples
            parts.append(np.array(rows, dtype=float).reshape(-1, 3))
        pts = np.concatenate(parts)
        pages = rtree_pages(pts[:, 0].astype(np.int64), pts[:, 1], pts[:, 2], int(row[0]))
        shadows: tuple[tuple[str, Iterable[tuple[int, Any]]], ...] = (
            ("node", pages.node), ("rowid", pages.rowid), ("parent", pages.parent))
        for shadow, shadow_rows in shadows:
            self.conn.execute(f'DELETE FROM "{rtree}_{shadow}"')
            self.conn.executemany(f'INSERT INTO "{rtree}_{shadow}" VALUES (?, ?)', shadow_rows)

    def beat_check_counts(self) -> pd.DataFrame:
        """Placed records by (match_type, beat_check): columns match_type, beat_check, records."""
        cols = set(self.columns("records"))
        if not {"match_type", "beat_check"} <= cols:
            return pd.DataFrame({"match_type": pd.Series(dtype=object), "beat_check": pd.Series(dtype=object),
                                 "records": pd.Series(dtype=int)})
        # (kept while `records_state` stays: the geocode stage and the report both ask; `_kept`)
        return pd.DataFrame(self._kept("beat_check_counts"), columns=["match_type", "beat_check", "records"])

    def put_json(self, key: str, value: Any) -> None:
        """Keep a small JSON result (e.g. the site verdict) under `key` in ``meta``."""
        with self.write(), self._writes_to("meta"):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_json(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- the run manifest (geo_lead.manifest) --------------------------------------------
    def ensure_runs_table(self) -> None:
        """Create the ``runs`` table (inside the caller's transaction, or in its own)."""
        if RUNS_TABLE in self.tables():
            return
        self.conn.execute(_RUNS_DDL)
        self.register_attributes(RUNS_TABLE, "run manifest: inputs, parameters, counts, outputs")

    def read_runs(self, columns: Sequence[str], limit: int | None = None) -> list[tuple[Any, ...]]:
        """Rows of ``runs`` (`columns`), newest first; [] when there is no such table."""
        if RUNS_TABLE not in self.tables():
            return []
        sql = (f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} FROM {RUNS_TABLE} '
               "ORDER BY started_at DESC, fid DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self.conn.execute(sql).fetchall()

    def count_by(self, table: str, column: str) -> dict[Any, int]:
        """``{value: rows}`` of `column` in `table` (GROUP BY; {} when the table is missing)."""
        if table not in self.tables() or column not in self.columns(table):
            return {}

        if table == "records":  # kept while `records_state` stays (the geocode stage and the report ask; `_kept`)
            return dict(self._kept(f"count_by:{column}"))
        rows = self.conn.execute(f'SELECT "{column}", COUNT(*) FROM "{table}" GROUP BY "{column}"')
        return {k: int(v) for k, v in rows.fetchall()}

    # --- sampling frames (geo_lead.frames) -----------------------------------------------
    def put_file_frame(self, frame: dict[str, Any]) -> None:
        """Store one file's sample declaration, keyed by its sha256 (inside `write`).

        `frame`: file_sha256, source_file, source, sample_fraction, years (``;``-joined),
        report_first, report_last. A later declaration of the same file replaces it.
        """
        self.conn.execute(_FILE_FRAMES_DDL)
        self.register_attributes(FILE_FRAMES_TABLE, "declared sample fraction of each ingested file (sha256)")
        cols = ("file_sha256", "source_file", "source", "sample_fraction", "years", "report_first",
                "report_last")
        with self._writes_to(FILE_FRAMES_TABLE):
            self.conn.execute(
                f"INSERT OR REPLACE INTO {FILE_FRAMES_TABLE} ({', '.join(cols)}, ingested_at) "
                f"VALUES ({', '.join('?' * len(cols))}, ?)", (*[_py(frame.get(c)) for c in cols], _utcnow()))

    def read_file_frames(self) -> pd.DataFrame:
        """Every stored sample declaration (empty for a store ingested before they existed)."""
        cols = ["file_sha256", "source_file", "source", "sample_fraction", "years", "report_first",
                "report_last", "ingested_at"]
        return self.read_table(FILE_FRAMES_TABLE, cols, where="1 ORDER BY fid") \
            if FILE_FRAMES_TABLE in self.tables() else pd.DataFrame(columns=cols)

    def read_ingested_files(self) -> pd.DataFrame:
        """Distinct (source_file, file_sha256) of the ``ingests`` table, first ingest first."""
        if "ingests" not in self.tables():
            return pd.DataFrame(columns=["source_file", "file_sha256"])
        rows = self.conn.execute("SELECT source_file, file_sha256 FROM ingests GROUP BY file_sha256 "
                                 "ORDER BY MIN(fid)").fetchall()
        return pd.DataFrame(rows, columns=["source_file", "file_sha256"])

    def previous_ingest(self, file_sha256: str) -> dict[str, Any] | None:
        """The latest ``ingests`` row of a file (by sha256) joined to its ``file_frames`` row:
        source, rows_read, accepted, rejected, sample_fraction, years; None when the file
        was never ingested or its declaration is missing (`geo_lead.ingest` then parses it)."""
        if not file_sha256 or not {"ingests", FILE_FRAMES_TABLE} <= self.tables():
            return None
        row = self.conn.execute(
            f"SELECT i.source, i.rows_read, i.accepted, i.rejected, f.sample_fraction, f.years "
            f"FROM ingests i JOIN {FILE_FRAMES_TABLE} f ON f.file_sha256 = i.file_sha256 "
            "WHERE i.file_sha256 = ? AND i.rows_read IS NOT NULL ORDER BY i.fid DESC LIMIT 1",
            (file_sha256,)).fetchone()
        if row is None:
            return None
        keys = ("source", "rows_read", "accepted", "rejected", "sample_fraction", "years")
        return dict(zip(keys, row, strict=True))

    def report_spans_by_file(self) -> dict[str, dict[str, Any]]:
        """Per ``source_file`` of the records: source, report years, first and last report date
        (occurrence date when unreported); for stores without declarations (`geo_lead.frames`)."""
        if "records" not in self.tables() or not {"source_file", "reported_at", "occurred_at"} <= set(self.columns("records")):
            return {}
        when = "COALESCE(NULLIF(reported_at, ''), occurred_at)"
        out: dict[str, dict[str, Any]] = {}
        for name, source, first, last in self.conn.execute(
                f"SELECT source_file, MIN(source), MIN({when}), MAX({when}) FROM records GROUP BY source_file"):
            years = sorted({int(y) for (y,) in self.conn.execute(
                f"SELECT DISTINCT substr({when}, 1, 4) FROM records WHERE source_file = ?", (name,))
                if y and str(y).isdigit()})
            out[str(name)] = {"source": source or "", "first": first or "", "last": last or "", "years": years}
        return out

    def is_empty(self, table: str) -> bool:
        """Whether `table` has no row (or does not exist): one row looked at, not a count of
        every row (a COUNT(*) of a million records reads a whole index, ~0.05 s cold)."""
        if table not in self.tables():
            return True
        return self.conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is None

    def count(self, table: str, where: str = "") -> int:
        """Rows of `table` (0 when it does not exist), optionally only those matching `where`."""
        if table not in self.tables():
            return 0
        sql = f'SELECT COUNT(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
        return int(self.conn.execute(sql).fetchone()[0])

    # --- named queries: callers ask for what they need; the SQL stays in this module -------
    def set_json(self, key: str, value: Any) -> None:
        """`put_json` inside the caller's write transaction (no transaction of its own)."""
        with self._writes_to("meta"):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def ensure_text_columns(self, table: str, columns: Sequence[str]) -> None:
        """Add the TEXT `columns` that `table` lacks (inside the caller's transaction)."""
        have = set(self.columns(table))
        for col in columns:
            if col not in have:
                self.conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{col}" TEXT')

    def feature_wkbs(self, table: str, flag_column: str) -> list[bytes]:
        """ISO WKB of the features of `table` whose `flag_column` is 1 (fid order, as stored)."""
        rows = self.conn.execute(f'SELECT geom FROM "{table}" WHERE "{flag_column}" = 1').fetchall()
        return [wkb for (blob,) in rows if (wkb := wkb_from_gpkg(blob)) is not None]

    # records: the join (geo_lead.spatial_join)
    def read_unjoined_records(self, columns: Sequence[str]) -> pd.DataFrame:
        """`columns` of the records the next join must place: ``neighborhood`` IS NULL (new
        records, and records whose point moved: `update_records` clears it)."""
        return self.read_records(columns, where="neighborhood IS NULL")

    def has_unjoined_records(self) -> bool:
        """True when some record's ``neighborhood`` is NULL (needs a column ``neighborhood``)."""
        return self.conn.execute("SELECT 1 FROM records WHERE neighborhood IS NULL LIMIT 1").fetchone() is not None

    def join_is_current(self, fingerprint: str, meta_key: str) -> bool:
        """True when every record's stored ``neighborhood`` comes from the join whose
        neighborhoods' fingerprint (kept in meta `meta_key`) is `fingerprint`."""
        if "neighborhood" not in self.columns("records") or self.get_json(meta_key) != fingerprint:
            return False
        return not self.has_unjoined_records()

    def join_counts(self) -> dict[str, int]:
        """records = joined + outside + not_geocoded over every stored record (no read).

        joined: a point and a non-empty ``neighborhood``; outside: a point and none;
        not_geocoded: no point.
        """
        have = set(self.columns("records"))
        if not {"lon", "lat", "neighborhood"} <= have:
            n = self.count("records")
            return {"records": n, "joined": 0, "outside": 0, "not_geocoded": n}
        # Four counts that each use an index (`ensure_record_indexes`) instead of one scan of
        # every record: joined = non-empty neighborhood (for TEXT, <> '' is > '') and a point.
        one = self.conn.execute
        n = one("SELECT COUNT(*) FROM records").fetchone()[0]
        not_geo = one("SELECT COUNT(*) FROM records WHERE lon IS NULL OR lat IS NULL").fetchone()[0]
        named = one("SELECT COUNT(*) FROM records WHERE neighborhood > ''").fetchone()[0]
        # (records_unlocated_match covers it; without it, unary + keeps the planner on the
        # small records_unlocated index, reading those records' rows)
        by = self._indexed_by("records_unlocated_match")
        named_unlocated = one(f"SELECT COUNT(*) FROM records {by}WHERE (lon IS NULL OR lat IS NULL) "
                              f"AND {'' if by else '+'}neighborhood > ''").fetchone()[0]
        joined = named - named_unlocated
        return {"records": int(n), "joined": int(joined), "outside": int(n - not_geo - joined),
                "not_geocoded": int(not_geo)}

    # records a chunk at a time (the geocode and join stages at a million records)
    def _fids(self, where: str = "") -> np.ndarray:
        """Sorted int64 fids of the records matching `where` (all without one)."""
        if "records" not in self.tables():
            return np.zeros(0, np.int64)
        sql = "SELECT fid FROM records" + (f" WHERE {where}" if where else "") + " ORDER BY fid"
        return np.fromiter((r[0] for r in self.conn.execute(sql)), dtype=np.int64)

    def _indexed_by(self, index: str) -> str:
        """``INDEXED BY <index> `` when the store has that index (stores made before it lack
        it until `ensure_record_indexes`), else ""."""
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                  (index,)).fetchone()
        return f"INDEXED BY {index} " if found else ""

    def record_fids(self) -> np.ndarray:
        """The fid of every record, sorted (for `read_records_at`)."""
        return self._fids()

    def ungeocoded_fids(self, skip_unmatched: bool) -> np.ndarray:
        """The sorted fids of the records `ungeocoded_records` reads (same `skip_unmatched`)."""
        if not skip_unmatched:
            return self._fids("lon IS NULL OR lat IS NULL")
        if "records" not in self.tables():
            return np.zeros(0, np.int64)
        # (the planner takes records_unlocated, which reads every unmatched record's row)
        by = self._indexed_by("records_unlocated_match")
        sql = (f"SELECT fid FROM records {by}WHERE (lon IS NULL OR lat IS NULL) AND match_type IS NOT 'unmatched' "
               "UNION SELECT fid FROM records WHERE match_type IS NULL ORDER BY 1")
        return np.fromiter((r[0] for r in self.conn.execute(sql)), dtype=np.int64)

    def placed_fids(self, unchecked_only: bool) -> np.ndarray:
        """The sorted fids of the records `placed_records` reads (same `unchecked_only`)."""
        return self._fids("lon IS NOT NULL AND lat IS NOT NULL" + (" AND beat_check IS NULL" if unchecked_only else ""))

    def unjoined_fids(self) -> np.ndarray:
        """The sorted fids of the records `read_unjoined_records` reads (``neighborhood`` IS NULL)."""
        return self._fids("neighborhood IS NULL")

    def read_records_at(self, columns: Sequence[str], fids: np.ndarray) -> pd.DataFrame:
        """`columns` of the records whose fid is in `fids` (sorted ascending), in fid order,
        as `read_records` gives them (sqlite3 values; flags as bool). One range read from the
        first to the last fid, the rows between that are not asked for dropped."""
        fids = np.asarray(fids, dtype=np.int64)
        if len(fids) == 0:
            return self.read_table("records", list(columns), where="0")
        if len(fids) > 1 and bool((np.diff(fids) <= 0).any()):
            raise ValueError("read_records_at: fids must be sorted ascending without repeats")
        lo, hi = int(fids[0]), int(fids[-1])
        frame = self.read_records(["fid", *columns], where="fid BETWEEN ? AND ?", params=(lo, hi))
        if len(fids) != hi - lo + 1:  # some fids between were not asked for
            frame = frame[np.isin(frame["fid"].to_numpy(np.int64), fids)]
        return frame.drop(columns="fid").reset_index(drop=True)

    # records: the geocoder (geo_lead.geocode.cache, geo_lead.geocode.beat_check)
    def ungeocoded_records(self, columns: Sequence[str], skip_unmatched: bool) -> pd.DataFrame:
        """`columns` of the records without a point (fid order).

        `skip_unmatched`: leave out the records already geocoded as ``unmatched`` (with the
        current reference: the caller checks that), keeping those never geocoded (NULL
        ``match_type``); needs a ``match_type`` column.
        """
        if not skip_unmatched:
            return self.read_records(columns, where="lon IS NULL OR lat IS NULL")
        # (as two indexed selects: `ensure_record_indexes`; fid order kept)
        return self.read_records(columns, where=(
            "fid IN (SELECT fid FROM records WHERE match_type IS NULL UNION SELECT fid FROM records "
            "WHERE (lon IS NULL OR lat IS NULL) AND match_type IS NOT 'unmatched')"))

    def unmatched_reasons(self) -> list[str | None]:
        """``geocode_reason`` of every ``unmatched`` record, in fid order."""
        with self.scan_cache():  # their rows are scattered over the table: each page read once
            return [r[0] for r in self.conn.execute(
                "SELECT geocode_reason FROM records WHERE match_type = 'unmatched' ORDER BY fid")]

    def placed_records(self, columns: Sequence[str], unchecked_only: bool) -> pd.DataFrame:
        """`columns` of the records with a point; with `unchecked_only`, only those whose
        ``beat_check`` is NULL (needs that column)."""
        where = "lon IS NOT NULL AND lat IS NOT NULL"
        if unchecked_only:
            where += " AND beat_check IS NULL"
        return self.read_records(columns, where=where)

    def records_with_beat_check(self, columns: Sequence[str], value: str) -> pd.DataFrame:
        """`columns` of the records whose ``beat_check`` is `value` (fid order)."""
        return self.read_records(columns, where="beat_check = ?", params=(value,))

    def flagged_records(self, columns: Sequence[str], flag: str) -> pd.DataFrame:
        """`columns` of the records whose indicator `flag` (one of `FLAG_COLUMNS`) is set.

        Kept while `records_state` stays (per flag, the columns read so far): a second read of
        the same records (the run's maps after its analysis read) reads only the columns not
        read yet, and gets what a fresh read gives (a copy: callers may change it)."""
        if flag not in FLAG_COLUMNS:
            raise ValueError(f"{flag!r} is not an indicator flag column ({', '.join(FLAG_COLUMNS)})")
        columns = list(columns)
        key = self.records_state()
        kept = self._flagged.get(flag)
        if kept is not None and kept[0] == key:
            frame = kept[1]
            missing = [c for c in dict.fromkeys(columns) if c not in frame]
            if missing:  # the same rows in the same order (fid checked), more columns
                extra = self._read_flagged(["fid", *missing], flag)
                if np.array_equal(extra["fid"].to_numpy(np.int64), frame["fid"].to_numpy(np.int64)):
                    frame = pd.concat([frame, extra.drop(columns="fid")], axis=1)
                else:
                    frame = self._read_flagged(_with_fid([*frame.columns, *missing]), flag)
        else:
            frame = self._read_flagged(_with_fid(columns), flag)
        self._flagged[flag] = (key, frame)
        return frame[columns].copy()

    def _read_flagged(self, columns: list[str], flag: str) -> pd.DataFrame:
        # COALESCE(flag, 0) <> 0 keeps exactly what read_records' fillna(0).astype(bool) keeps
        frame = self._read_flagged_arrow(columns, flag)
        if frame is not None:
            return frame
        with self.scan_cache():
            return self.read_records(columns, where=f'COALESCE("{flag}", 0) <> 0')

    def _read_flagged_arrow(self, columns: list[str], flag: str) -> pd.DataFrame | None:
        """`_read_flagged` through GDAL's Arrow reader (the flag's partial index), or None.

        The flagged records' rows are spread over the whole table: sqlite3 builds a Python
        tuple per row (~0.65 s for the run's 15 columns of 71,000 of a million records), GDAL
        reads the same rows into columns (~0.2 s). Taken only when that is exactly
        `read_records(columns, where=...)`'s frame: the conditions of `_read_records_arrow`
        (file store of >= `ARROW_MIN_ROWS` records, no open transaction, TEXT or
        `ARROW_NUMERIC_COLUMNS` columns), no other connection committed during the read
        (``PRAGMA data_version`` unchanged) and GDAL's rows are exactly the flagged ones in fid
        order: every row it gave has the flag set, their fids are strictly increasing, and
        there are `count_flagged` of them (SQLite reads them through the flag's partial index
        ``records_<flag>``, on fid). Any other case or error: None (the sqlite3 read).
        """
        want = [c for c in columns if c != "fid"]
        where = f'COALESCE("{flag}", 0) <> 0'
        try:
            if not self._arrow_reads_exactly(want):
                return None
            version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
            import warnings

            import pyogrio

            read = list(dict.fromkeys([*want, flag]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _meta, table = pyogrio.read_arrow(self.path, layer="records", columns=read, where=where,
                                                  read_geometry=False, return_fids=True)
            flagged = self.count_flagged(flag)
            if int(self.conn.execute("PRAGMA data_version").fetchone()[0]) != version or self.conn.in_transaction:
                return None  # another connection committed meanwhile
            frame = table.to_pandas(use_threads=False)  # no Arrow thread pool: it would stop later forks
            fids = frame["fid"].to_numpy(np.int64) if "fid" in frame else np.empty(0, np.int64)
            if "fid" not in frame or len(frame) != flagged or not bool((frame[flag].fillna(0) != 0).all()) \
                    or bool((np.diff(fids) <= 0).any()):
                return None
        except Exception as exc:  # any failure: the plain sqlite3 read
            log.debug("records: Arrow read of the %s records not used (%s); reading through sqlite3", flag, exc)
            return None
        frame = frame[list(columns)]
        for col in FLAG_COLUMNS:
            if col in frame:
                frame[col] = frame[col].fillna(0).astype(bool)
        return frame

    def _arrow_reads_exactly(self, columns: Sequence[str]) -> bool:
        """Whether GDAL's Arrow reader gives `columns` of the records as sqlite3 does (see
        `_read_records_arrow`): a file store of >= `ARROW_MIN_ROWS` records, no transaction
        open on this connection, each column declared TEXT or in `ARROW_NUMERIC_COLUMNS`."""
        if self.conn.in_transaction or str(self.path) in ("", ":memory:") or not Path(self.path).is_file():
            return False
        declared = {r[1]: str(r[2]).upper() for r in self.conn.execute('PRAGMA table_info("records")')}
        if not columns or any(c not in declared or c in ("fid", "geom") for c in columns):
            return False
        if any(declared[c] != "TEXT" and c not in ARROW_NUMERIC_COLUMNS for c in columns):
            return False
        return self.count("records") >= ARROW_MIN_ROWS

    def records_of_years(self, columns: Sequence[str], years: Sequence[int]) -> pd.DataFrame:
        """`columns` of the records whose ``occurred_at`` text starts with ``YYYY-`` for one of
        `years`, in fid order: the records of those calendar years when `odd_record_dates` is 0."""
        if not years:
            return self.read_records(columns, where="0")
        # "." follows "-": the value starts with "YYYY-"; said of the whole value and of its
        # first 8 characters (the same test), so either index serves (records_occurred_month,
        # or an older store's records_occurred until its next ingest drops it)
        where = " OR ".join(["(occurred_at >= ? AND occurred_at < ? AND substr(occurred_at, 1, 8) >= ? "
                             "AND substr(occurred_at, 1, 8) < ?)"] * len(years))
        params = [v for y in years for v in (f"{int(y):04d}-", f"{int(y):04d}.") * 2]
        with self.scan_cache():
            return self.read_records(columns, where=f"({where}) ORDER BY fid", params=params)

    # records: the all-record facts of the analysis stages, which read only the flagged
    # records' rows (`geo_lead.analysis_reads`): counted here, never a million rows in pandas
    def count_flagged(self, flag: str) -> int:
        """Records whose indicator `flag` (one of `FLAG_COLUMNS`) is set: the rows
        `flagged_records` reads (0 when the store has no such column)."""
        if flag not in FLAG_COLUMNS:
            raise ValueError(f"{flag!r} is not an indicator flag column ({', '.join(FLAG_COLUMNS)})")
        if "records" not in self.tables() or flag not in self.columns("records"):
            return 0
        return int(self._kept(f"count_flagged:{flag}"))  # kept while `records_state` stays

    def division_counts(self) -> pd.DataFrame:
        """``neighborhood``, ``division``, ``n``: records per pair of a non-empty
        ``neighborhood`` and a non-empty ``division`` (the table
        `geo_lead.boundaries.division_majority` counts from a frame), sorted by the pair;
        needs both columns. Kept as `_kept` keeps the all-record aggregates (a +10k rerun
        adds its records to the counts a run saved instead of reading a million pairs)."""
        return self._kept("division_counts").copy()

    def _saved_meta(self, key: str, state: Callable[[], Any]) -> tuple[dict[str, Any], Any] | None:
        """The JSON a run saved under meta `key` with the file change counter its commit left
        (`_save_dates`, `_save_aggregates`), when this code saved it (``format``) and the file
        has that counter, with ``state()`` (the memo key the saved values are kept under).
        The meta row and the state are read in one read transaction, and the counter just before
        and just after it (`_header`): the same counter twice means no commit by anyone came in
        between, so the state is the one of the records the values describe. None when a
        transaction is open here, the file is not in rollback-journal mode (a ``-wal``), or
        anything differs."""
        path = Path(self.path)
        if not path.is_file() or Path(f"{path}-wal").exists():
            return None
        before = self._header()
        if before is None or before[1] != _ROLLBACK_JOURNAL:
            return None
        try:
            self.conn.execute("BEGIN")
            try:
                row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is None:
                    return None
                saved = json.loads(row[0])
                if not isinstance(saved, dict) or saved.get("format") != _saved_dates_version() \
                        or saved.get("counter") != before[0]:
                    return None
                now = state()
            finally:
                self.conn.execute("COMMIT")
        except (sqlite3.Error, ValueError) as exc:
            log.debug("saved %s not used (%s)", key, exc)
            return None
        return (saved, now) if self._header() == before else None

    def _header(self) -> FileHeader | None:
        """`_file_header` of the store's file, read only while this connection holds no lock
        (None inside a transaction, or for a store in memory). The read opens a descriptor of
        its own, and closing any descriptor of a file drops every POSIX lock the process holds
        on it, SQLite's included: read inside a write, another process could then start a write
        of its own, or take the write's journal for a hot one and roll it back
        (https://www.sqlite.org/howtocorrupt.html, section 2.2)."""
        if self.conn.in_transaction or str(self.path) in ("", ":memory:"):
            return None
        return _file_header(Path(self.path))

    def record_dates(self) -> RecordDates:
        """Every record's dates, counted: `RecordDates`, kept while their `_dates_state` stays
        (a result layer, or an update of other columns, written in between keeps them; new
        records are merged in as they are inserted: `_dates_merged`); else the dates an
        earlier `geo-lead run` saved (`keep_record_dates`) when no one wrote to the file since."""
        key = self._dates_state()
        if (self._dates is None or self._dates[0] != key) and self._adopt_saved_dates():
            key = self._dates_state()
        if self._dates is None or self._dates[0] != key:
            self._dates = (key, self._count_record_dates())
        return self._dates[1]

    @contextlib.contextmanager
    def _dates_merged(self) -> Iterator[None]:
        """Records inserted inside keep a current `record_dates` current: their dates (read
        back as stored, fids from the first new one on: AUTOINCREMENT puts them after every
        record) are counted and merged after the others', as a count of every record in fid
        order gives them (`merge_record_dates`)."""
        kept = self._dates
        valid = kept is not None and kept[0] == self._dates_state()
        first = self.next_record_fid() if valid else 0
        yield
        if valid and kept is not None:
            new = _record_dates(self._record_columns(list(RecordDates.COLUMNS), arrow=False,
                                                     where=f"fid >= {int(first)}"))
            self._dates = (self._dates_state(), merge_record_dates([kept[1], new]))

    def keep_record_dates(self) -> None:
        """From now on, each outermost commit saves the current `record_dates` in meta
        (`SAVED_DATES_KEY`) with the file change counter that commit leaves; a later Store
        adopts them when the file still has that counter (no one wrote since: `_adopt_saved_dates`)."""
        self._keep_dates = True

    def _save_dates(self, header: FileHeader | None) -> None:
        """Save `record_dates` (when current) into the open transaction (`keep_record_dates`,
        `_save_meta`)."""
        def current() -> dict[str, Any] | None:
            if self._dates is None or self._dates[0] != self._dates_state():
                return None
            return _dates_to_json(self._dates[1])

        self._save_meta(SAVED_DATES_KEY, current, header)

    def _save_meta(self, key: str, fields: Callable[[], dict[str, Any] | None],
                   header: FileHeader | None) -> None:
        """Save ``fields()`` (None: nothing to save) under meta `key` into the open transaction,
        with this code's ``format`` and the file change counter this commit leaves, for
        `_saved_meta`; only in rollback-journal mode (a memo: never the reason a commit fails).
        `header` is the file's (`_header`) read before the transaction took its lock: another
        writer's commit in between makes the saved counter one no file will have again, so the
        memo is never adopted (a miss, never a wrong value)."""
        if header is None or header[1] != _ROLLBACK_JOURNAL:
            return
        try:
            held = fields()
            if held is None:
                return
            value = json.dumps({"format": _saved_dates_version(), "counter": (header[0] + 1) % 2 ** 32, **held})
        except (ValueError, TypeError, OSError) as exc:
            log.debug("%s not saved (%s)", key, exc)
            return
        with self._writes_to("meta"):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _adopt_saved_dates(self) -> bool:
        """Take the saved `record_dates` (`keep_record_dates`) as this Store's, once, before its
        first write: only when the file is in rollback-journal mode (no ``-wal``) and its change
        counter is the one saved with them, read in one read transaction with the memo's key
        (`_saved_meta`). Any commit by any writer moves that counter (in rollback mode every
        commit does; a switch to WAL mode does too), so the dates are those of the records now."""
        if self._saved_dates_tried or self.conn.in_transaction:
            return False
        self._saved_dates_tried = True
        got = self._saved_meta(SAVED_DATES_KEY, self._dates_state)
        if got is None:
            return False
        try:
            self._dates = (got[1], _dates_from_json(got[0]))
        except (KeyError, TypeError, ValueError) as exc:
            log.debug("saved record dates not used (%s)", exc)
            return False
        return True

    def _count_record_dates(self) -> RecordDates:
        """`RecordDates` of every record, counted `DATE_BATCH_ROWS` records at a time through
        GDAL's Arrow stream (the sqlite3 read of `_record_columns` when that is not used or
        fails): the memory held is one batch's, not every record's dates at once."""
        cols = list(RecordDates.COLUMNS)
        try:
            return merge_record_dates([_record_dates(t) for t in self._record_column_batches(cols)])
        except _ArrowStreamError as exc:
            log.debug("records: Arrow stream for counting not used (%s)", exc)
            return _record_dates(self._record_columns(cols, arrow=False))

    def _record_column_batches(self, columns: list[str]) -> Iterator[Any]:
        """`columns` of every record as pyarrow Tables of at most `DATE_BATCH_ROWS` rows, in
        the order `_record_columns` reads them: GDAL's Arrow stream when `_record_columns` would
        use GDAL (raises `_ArrowStreamError` when it fails or yields another number of rows),
        else one Table of `_record_columns`."""
        import pyarrow as pa

        have = self._arrow_readable(columns)
        if not have:
            yield self._record_columns(columns, arrow=False)
            return
        n, seen = self.count("records"), 0
        try:
            import warnings

            import pyogrio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pyogrio.open_arrow(self.path, layer="records", columns=have, read_geometry=False,
                                        batch_size=DATE_BATCH_ROWS, use_pyarrow=True) as (_meta, reader):
                    for batch in reader:
                        table = pa.Table.from_batches([batch]).select(have)
                        seen += table.num_rows
                        for c in columns:
                            if c not in have:
                                table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
                        yield table.select(columns)
        except Exception as exc:  # any failure of the reader: the caller reads with sqlite3
            raise _ArrowStreamError(str(exc)) from exc
        if seen != n:
            raise _ArrowStreamError(f"{seen} rows streamed of {n}")

    def _arrow_readable(self, columns: list[str]) -> list[str]:
        """The `columns` the records table has when GDAL's Arrow reader may read them for
        counting (a file store of at least `ARROW_MIN_ROWS` records, no transaction open, every
        one a TEXT column), else []."""
        declared = {r[1]: str(r[2]).upper() for r in self.conn.execute('PRAGMA table_info("records")')}
        have = [c for c in columns if c in declared]
        if have and self.count("records") >= ARROW_MIN_ROWS and not self.conn.in_transaction \
                and Path(self.path).is_file() and all(declared[c] == "TEXT" for c in have):
            return have
        return []

    def odd_record_dates(self) -> int:
        """Records whose ``occurred_at`` or ``reported_at`` is neither NULL, empty nor in
        ingest's ISO format (`iso_seconds`). When 0, the date aggregates below equal what pandas
        computes from the parsed columns; otherwise the caller reads the dates itself."""
        return self.record_dates().odd

    def records_by_file(self) -> pd.DataFrame:
        """Per ``source_file`` and ``source`` (NULL read as ``(unknown)`` and ``""``): ``records``,
        and ``first`` / ``last``, the least and greatest ``occurred_at`` in ingest's ISO format
        (None when the group has none); exact for pandas only when `odd_record_dates` is 0."""
        c = self.record_dates().cube
        g = c.assign(source_file=c["source_file"].fillna("(unknown)"), source=c["source"].fillna("")).groupby(
            ["source_file", "source"], sort=False).agg(records=("n", "sum"), first=("occ_min", "min"),
                                                       last=("occ_max", "max")).reset_index()
        return g.assign(first=_iso_text(g["first"]), last=_iso_text(g["last"]))

    def occurred_year_counts(self) -> dict[int, int]:
        """Records per calendar year of ``occurred_at`` (ISO-format values only: see
        `odd_record_dates`)."""
        c = self.record_dates().cube
        c = c[c["occ_month"] >= 0]
        return {int(y): int(n) for y, n in c.groupby(c["occ_month"] // 12)["n"].sum().items()}

    def occurred_months(self) -> list[str]:
        """The ``YYYY-MM`` months of ``occurred_at`` (ISO-format values only: see
        `odd_record_dates`), sorted."""
        months = sorted({int(m) for m in self.record_dates().cube["occ_month"] if m >= 0})
        return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months]

    def report_spans_by_year(self) -> pd.DataFrame:
        """Per calendar year of ``occurred_at`` (``year``) and ``source_file`` (NULL read as ""):
        ``first`` / ``last`` report date (``reported_at``, else ``occurred_at``) of its records,
        as `geo_lead.frames.spans_from_records` takes them from a year's records; ISO-format
        values only (see `odd_record_dates`)."""
        c = self.record_dates().cube
        c = c[c["occ_month"] >= 0]
        g = c.assign(year=c["occ_month"] // 12, source_file=c["source_file"].fillna("")).groupby(
            ["year", "source_file"], sort=True).agg(first=("rep_min", "min"), last=("rep_max", "max")).reset_index()
        return g.assign(first=_iso_text(g["first"]), last=_iso_text(g["last"]))

    def report_spans_by_source_file(self) -> pd.DataFrame:
        """Per ``source_file`` (NULL read as ""): ``first`` / ``last`` report date (``reported_at``,
        else ``occurred_at``) of its records that have one; ISO-format values only (see
        `odd_record_dates`)."""
        c = self.record_dates().cube
        c = c[c["rep_year"] >= 0]
        g = c.assign(source_file=c["source_file"].fillna("")).groupby("source_file", sort=True).agg(
            first=("rep_min", "min"), last=("rep_max", "max")).reset_index()
        return g.assign(first=_iso_text(g["first"]), last=_iso_text(g["last"]))

    def report_year_source_counts(self) -> pd.DataFrame:
        """``year``, ``source`` (NULL read as ""), ``records``: records per calendar year of their
        report date (``reported_at``, else ``occurred_at``) and source; ISO-format values only
        (see `odd_record_dates`)."""
        c = self.record_dates().cube
        c = c[c["rep_year"] >= 0]
        g = c.assign(source=c["source"].fillna("")).groupby(["rep_year", "source"], sort=True)["n"].sum()
        return pd.DataFrame({"year": g.index.get_level_values(0).astype(int),
                             "source": g.index.get_level_values(1), "records": g.to_numpy(np.int64)})

    def _record_columns(self, columns: list[str], arrow: bool = True, where: str = "") -> Any:
        """`columns` of every record (those the table has; the others all NULL) as a pyarrow
        Table, row order unspecified: GDAL's Arrow reader when `_arrow_readable` (what it reads
        is what sqlite3 reads: TEXT columns) and `arrow`, else sqlite3 (only the records
        `where` selects, when given). For counting: no Python object per value."""
        import pyarrow as pa

        declared = set(self.columns("records"))
        have = [c for c in columns if c in declared]
        n = self.count("records")
        table = None
        if arrow and not where and self._arrow_readable(columns):
            try:
                import warnings

                import pyogrio

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _meta, table = pyogrio.read_arrow(self.path, layer="records", columns=have, read_geometry=False)
                table = table.select(have) if table.num_rows == n else None
            except Exception as exc:  # any failure: the sqlite3 read
                log.debug("records: Arrow read for counting not used (%s)", exc)
                table = None
        if table is None:
            quoted = ", ".join(f'"{c}"' for c in have) or "NULL"
            rows = self.conn.execute(f"SELECT {quoted} FROM records" + (f" WHERE {where}" if where else "")).fetchall()
            cols = list(zip(*rows, strict=True)) if rows else [() for _ in have or ["_"]]
            table = pa.table({c: pa.array([v if v is None or isinstance(v, str) else str(v) for v in col],
                                          type=pa.string()) for c, col in zip(have or ["_"], cols, strict=True)})
        for c in columns:
            if c not in have:
                table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
        return table.select(columns)

    # the geocode cache (geo_lead.geocode.cache)
    def ensure_geocode_cache(self) -> None:
        """Create the ``geocode_cache`` table (inside the caller's write transaction)."""
        self.conn.execute(_GEOCODE_CACHE_DDL)
        self.register_attributes(GEOCODE_CACHE_TABLE, "geocoder results by normalised address + ZIP")

    def cached_geocodes(self, reference_hash: str) -> pd.DataFrame:
        """The `GEOCODE_CACHE_COLUMNS` of the cache rows computed with `reference_hash`."""
        return self.read_table(GEOCODE_CACHE_TABLE, list(GEOCODE_CACHE_COLUMNS), where="reference_hash = ?",
                               params=(reference_hash,))

    def cached_geocodes_for(self, reference_hash: str, keys: Sequence[str]) -> pd.DataFrame:
        """`cached_geocodes` of only `keys` (each looked up on the key index: a rerun with a few
        new records reads a few cache rows, not all of them); in key order of the table."""
        if GEOCODE_CACHE_TABLE not in self.tables():
            return pd.DataFrame(columns=list(GEOCODE_CACHE_COLUMNS))
        cols = ", ".join(f'"{c}"' for c in GEOCODE_CACHE_COLUMNS)
        rows = self.conn.execute(
            f"SELECT {cols} FROM {GEOCODE_CACHE_TABLE} WHERE reference_hash = ? AND key IN "
            "(SELECT value FROM json_each(?)) ORDER BY fid", (reference_hash, json.dumps(list(keys)))).fetchall()
        return pd.DataFrame(rows, columns=list(GEOCODE_CACHE_COLUMNS))

    def drop_stale_geocodes(self, reference_hash: str) -> int:
        """Delete the cache rows of any other reference (inside `write`); returns how many."""
        return int(self.conn.execute(f"DELETE FROM {GEOCODE_CACHE_TABLE} WHERE reference_hash IS NOT ?",
                                     (reference_hash,)).rowcount)

    def drop_geocodes(self, keys: Sequence[str]) -> None:
        """Delete the cache rows of `keys` (inside `write`)."""
        keys = list(keys)
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            batch = keys[i:i + 900]
            self.conn.execute(f"DELETE FROM {GEOCODE_CACHE_TABLE} WHERE key IN ({','.join('?' * len(batch))})", batch)

    # records: export (geo_lead.export)
    def record_months(self) -> list[str | None]:
        """The distinct ``substr(occurred_at, 1, 7)`` of the records (unordered; None for NULL)."""
        # (the first 7 of the indexed first 8 characters: a scan of records_occurred_month)
        eight = self.conn.execute("SELECT DISTINCT substr(occurred_at, 1, 8) FROM records").fetchall()
        return list(dict.fromkeys(None if r[0] is None else str(r[0])[:7] for r in eight))

    def iter_record_rows(self, columns: Sequence[str], month: str | None = None,
                         chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """`columns` of the records in fid order, `chunk_rows` at a time, as plain frames
        (values as stored). `month`: ``YYYY-MM`` (occurred then), ``"unknown"`` (no
        ``YYYY-MM`` date) or None (all)."""
        sql = f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} FROM records'
        params: tuple[str, ...] = ()
        if month == "unknown":
            sql += f" WHERE occurred_at IS NULL OR NOT (occurred_at GLOB '{_ISO_MONTH_GLOB}')"
        elif month is not None:
            # 'YYYY-MM-' <= value < 'YYYY-MM.' ('.' follows '-'): the value starts with
            # 'YYYY-MM-'; said of its first 8 characters too (the same test for a prefix of
            # at most 8), for records_occurred_month
            sql += " WHERE occurred_at >= ? AND occurred_at < ?"
            params = (f"{month}-", f"{month}.")
            if len(params[0]) <= 8:
                sql += " AND substr(occurred_at, 1, 8) >= ? AND substr(occurred_at, 1, 8) < ?"
                params = params * 2
        cur = self.conn.execute(sql + " ORDER BY fid", params)
        while rows := cur.fetchmany(chunk_rows):
            yield pd.DataFrame(rows, columns=list(columns))

    # records: written enriched (geo_lead.enrich)
    def count_never_geocoded(self) -> int:
        """Records with no ``match_type``: never geocoded, or forgotten after their address
        changed (`upsert_records`); every record without the column (on the
        ``records_match_type`` index)."""
        if "match_type" not in self.columns("records"):
            return self.count("records")
        return int(self.conn.execute("SELECT COUNT(*) FROM records WHERE match_type IS NULL").fetchone()[0])


@dataclass
class PendingRecords:
    """New records `Store.upsert_records` accepted and keeps until `Store.flush_records` writes
    them, enriched by `enrich` (the ingest's enricher: its fixed cost per call, ~0.15 s at 1M
    records, is then paid once for many small files instead of once per file).

    ``max_rows``: most records kept (a batch of at most this many, unless one call brings
    more). ``flushes``: batches written so far.
    """

    enrich: Callable[[pd.DataFrame], pd.DataFrame]
    max_rows: int
    frames: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0
    flushes: int = 0

    def holds_any(self, record_ids: pd.Series) -> bool:
        """Whether a record of `record_ids` is kept here (not yet written)."""
        if not self.frames:
            return False
        if record_ids.isna().any() or any(f["record_id"].isna().any() for f in self.frames):
            return any(bool(f["record_id"].isin(record_ids).any()) for f in self.frames)  # isin's NA rules
        # a set of the ids, not `isin`: ~10 ms per file and frame for a few thousand arrow strings
        wanted = set(record_ids.tolist())
        return any(not wanted.isdisjoint(f["record_id"].tolist()) for f in self.frames)


@dataclass(frozen=True)
class RecordDates:
    """Every record's dates, counted (`Store.record_dates`): the ``cube`` has one row per
    ``source_file``, ``source`` (their stored values, None for NULL), ``occ_month`` (year x 12 +
    month - 1 of a valid ``occurred_at``, -1 without one) and ``rep_year`` (year of the report date:
    a valid ``reported_at``, else a valid ``occurred_at``; -1 without one), with ``n`` records and
    ``occ_min``/``occ_max``/``rep_min``/``rep_max`` (seconds since 1970, NaN without one); ``odd``
    counts the records with a date that is neither NULL, empty nor valid (`iso_seconds`)."""

    COLUMNS = ("source_file", "source", "occurred_at", "reported_at")

    cube: pd.DataFrame
    odd: int


#: Ingest's date text (``YYYY-MM-DDTHH:MM:SS``, ASCII digits), the only shape `iso_seconds` reads.
ISO_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"
#: Years `iso_seconds` converts itself; a shaped value outside them is parsed by pandas.
ISO_FAST_YEARS = (1678, 2261)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def iso_seconds(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since 1970 of the values of a pyarrow string array written in ingest's format
    (``YYYY-MM-DDTHH:MM:SS``, `ISO_SHAPE`) that pandas reads as a date (NaN otherwise), and
    which values are odd (neither NULL, empty nor such a date).

    A value is a date exactly when pandas (``to_datetime(format="ISO8601")``) reads it as one,
    and then it is the same second. Values in `ISO_FAST_YEARS` are converted by integer
    arithmetic on their digits (a real calendar day, hour < 24, minute and second < 60: what
    pandas accepts); the other shaped values (years outside them, impossible fields) by pandas
    itself, each distinct value once. Other spellings (offsets, no time, spaces) are odd,
    because readers that parse with or without ``utc=True`` would disagree on them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.string())
    size = pc.fill_null(pc.binary_length(arr), -1).to_numpy(zero_copy_only=False)
    at = np.flatnonzero(size == _ISO_BYTES)  # `ISO_SHAPE` has 19 ASCII characters
    secs = np.full(len(arr), np.nan)
    secs[at], shaped = _iso_fields_seconds(arr.take(pa.array(at, type=pa.int64())))
    late = at[shaped & np.isnan(secs[at])]  # shaped, not converted above: pandas decides
    if len(late):
        text = pd.Series(arr.take(pa.array(late)).to_pylist(), dtype="category")
        parsed = pd.Series(pd.to_datetime(text, errors="coerce", format="ISO8601"))
        ok = parsed.notna().to_numpy()
        secs[late[ok]] = parsed[ok].to_numpy("datetime64[s]").astype("int64").astype(np.float64)
    return secs, np.isnan(secs) & (size > 0)


#: Bytes of a value in `ISO_SHAPE`, and where its digits are (the other bytes are ``-``, ``T``, ``:``).
_ISO_BYTES = 19
_ISO_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_ISO_MARKS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}


def _iso_fields_seconds(text: Any) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since 1970 of pyarrow strings of `_ISO_BYTES` bytes (no NULL) that are in
    `ISO_SHAPE` with fields of a real date and time and the year in `ISO_FAST_YEARS` (NaN for
    the others), and which values are in `ISO_SHAPE`. Reads the bytes as an n x 19 matrix."""
    n = len(text)
    if not n:
        return np.empty(0), np.empty(0, dtype=bool)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + n + 1]
    if offsets[-1] - offsets[0] != n * _ISO_BYTES:
        raise ValueError(f"iso fields: {n} values that are not all {_ISO_BYTES} bytes long")
    raw = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(n, _ISO_BYTES)
    digits = raw[:, _ISO_DIGITS] - np.uint8(ord("0"))  # wraps: a byte below "0" is > 9 too
    shaped: np.ndarray = np.asarray((digits <= 9).all(axis=1))
    for pos, mark in _ISO_MARKS.items():
        shaped &= raw[:, pos] == mark

    def num(*pos: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for p in pos:
            out = out * 10 + digits[:, int(np.searchsorted(_ISO_DIGITS, p))]
        return out

    year, month, day = num(0, 1, 2, 3), num(5, 6), num(8, 9)
    hour, minute, second = num(11, 12), num(14, 15), num(17, 18)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    mdays = _DAYS_IN_MONTH[np.clip(month - 1, 0, 11)] + ((month == 2) & leap)
    ok = (shaped & (year >= ISO_FAST_YEARS[0]) & (year <= ISO_FAST_YEARS[1]) & (month >= 1) & (month <= 12)
          & (day >= 1) & (day <= mdays) & (hour < 24) & (minute < 60) & (second < 60))
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return np.where(ok, (days * 86400 + hour * 3600 + minute * 60 + second).astype(np.float64), np.nan), shaped


def _codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary codes of a pyarrow string array (-1 for NULL) and the distinct values."""
    import pyarrow as pa

    enc = values.combine_chunks().dictionary_encode() if isinstance(values, pa.ChunkedArray) \
        else values.dictionary_encode()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, np.asarray(enc.dictionary.to_pylist(), dtype=object)


#: meta key of the `record_dates` a run saved (`Store.keep_record_dates`).
SAVED_DATES_KEY = "record_dates"
#: meta key of the all-record aggregates a run saved (`Store.keep_record_dates`, `Store._kept`).
SAVED_AGGREGATES_KEY = "record_aggregates"


def _sqlite_key(value: Any) -> tuple[int, Any]:
    """SQLite's sort order of a value (NULL, numbers, text by code point = BINARY, blobs)."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value) if isinstance(value, str) else (3, value)


def _sqlite_ordered(counts: dict[Any, int]) -> dict[Any, int]:
    """`counts` in the order SQLite's GROUP BY gives its groups (one order however counted)."""
    return {k: counts[k] for k in sorted(counts, key=_sqlite_key)}


def merge_aggregate(name: str, a: Any, b: Any) -> Any:
    """The `Store._aggregate` `name` of two disjoint sets of records together, from theirs."""
    kind = name.partition(":")[0]
    if kind == "division_counts":
        return merge_division_counts([a, b])
    if kind == "count_by":
        both = dict(a)
        for k, n in b.items():
            both[k] = both.get(k, 0) + n
        return _sqlite_ordered(both)
    if kind == "beat_check_counts":
        summed: dict[tuple[Any, Any], int] = {}
        for m, c, n in [*a, *b]:
            summed[(m, c)] = summed.get((m, c), 0) + n
        return [(m, c, summed[(m, c)]) for m, c in sorted(summed, key=lambda k: (_sqlite_key(k[0]), _sqlite_key(k[1])))]
    if kind == "count_flagged":
        return int(a) + int(b)
    raise ValueError(f"no record aggregate {name!r}")


def _aggregate_to_json(name: str, value: Any) -> Any:
    kind = name.partition(":")[0]
    if kind == "division_counts":
        return {"neighborhood": value["neighborhood"].tolist(), "division": value["division"].tolist(),
                "n": [int(v) for v in value["n"]]}
    if kind == "count_by":
        return [[k, n] for k, n in value.items()]
    if kind == "beat_check_counts":
        return [list(row) for row in value]
    return value


def _aggregate_from_json(name: str, value: Any) -> Any:
    kind = name.partition(":")[0]
    if kind == "division_counts":
        return _sorted_pairs(pd.DataFrame({"neighborhood": np.asarray(value["neighborhood"], dtype=object),
                                           "division": np.asarray(value["division"], dtype=object),
                                           "n": np.asarray(value["n"], dtype=np.int64)}))
    if kind == "count_by":
        return _sqlite_ordered({k: int(n) for k, n in value})
    if kind == "beat_check_counts":
        return [(m, c, int(n)) for m, c, n in value]
    if kind == "count_flagged":
        return int(value)
    raise ValueError(f"no record aggregate {name!r}")


def _division_pairs(table: Any) -> pd.DataFrame:
    """`Store.division_counts` of the records in pyarrow `table` (``neighborhood``, ``division``):
    rows per pair of non-empty values, sorted by the pair."""
    keys = {c: _codes(table.column(c)) for c in ("neighborhood", "division")}
    ok = np.ones(table.num_rows, dtype=bool)
    for codes, values in keys.values():
        ok &= (codes >= 0) & (values[np.maximum(codes, 0)] != "") if len(values) else codes >= 0
    (nc, nv), (dc, dv) = keys["neighborhood"], keys["division"]
    pairs = pd.DataFrame({"n_": nc[ok], "d_": dc[ok]}).value_counts(sort=False).reset_index(name="n")
    return _sorted_pairs(pd.DataFrame({"neighborhood": nv[pairs["n_"].to_numpy()],
                                       "division": dv[pairs["d_"].to_numpy()], "n": pairs["n"].to_numpy(np.int64)}))


def merge_division_counts(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """`Store.division_counts` of the records of all `parts` (at least one; counts of disjoint
    sets of records) together: each pair's counts summed (integers: exact), sorted by the pair."""
    both = pd.concat(list(parts), ignore_index=True)
    summed = both.groupby(["neighborhood", "division"], sort=False)["n"].sum().reset_index()
    return _sorted_pairs(summed)


def _sorted_pairs(counts: pd.DataFrame) -> pd.DataFrame:
    """`counts` sorted by (neighborhood, division) with a fresh RangeIndex: one order however
    the pairs were counted."""
    names = counts["neighborhood"].to_numpy(object).astype(str)
    divisions = counts["division"].to_numpy(object).astype(str)
    order = np.lexsort((divisions, names))
    return pd.DataFrame({"neighborhood": names[order].astype(object), "division": divisions[order].astype(object),
                         "n": counts["n"].to_numpy(np.int64)[order]})
#: SQLite's file change counter and format version bytes (`_file_header`).
FileHeader = tuple[int, tuple[int, int]]
#: The file format read/write version bytes (header offsets 18, 19) of a rollback-journal file.
_ROLLBACK_JOURNAL = (1, 1)


def _file_header(path: Path) -> FileHeader | None:
    """The SQLite file change counter (header offset 24) and the format version bytes (18, 19:
    1 rollback journal, 2 WAL) of `path`; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(28)
    except OSError:
        return None
    if len(head) < 28 or not head.startswith(b"SQLite format 3\x00"):
        return None
    return int.from_bytes(head[24:28], "big"), (head[18], head[19])


@functools.cache
def _saved_dates_version() -> str:
    """What saved `record_dates` depend on besides the records: this module's source (how dates
    are counted) and the libraries that count them."""
    from importlib.metadata import version

    h = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("pandas", "numpy", "pyarrow"):
        h.update(f";{name}={version(name)}".encode())
    return h.hexdigest()


_CUBE_INTS = ("occ_month", "rep_year", "n")
_CUBE_FLOATS = ("occ_min", "occ_max", "rep_min", "rep_max")


def _dates_to_json(dates: RecordDates) -> dict[str, Any]:
    """`RecordDates` as JSON values (floats by repr: exact; NaN as ``NaN``)."""
    c = dates.cube
    return {"odd": int(dates.odd), "cube": {
        "source_file": c["source_file"].tolist(), "source": c["source"].tolist(),
        **{k: [int(v) for v in c[k].to_numpy(np.int64)] for k in _CUBE_INTS},
        **{k: [float(v) for v in c[k].to_numpy(np.float64)] for k in _CUBE_FLOATS}}}


def _dates_from_json(saved: dict[str, Any]) -> RecordDates:
    """`_dates_to_json`'s `RecordDates` again, built as `_record_dates` builds its cube."""
    cols = saved["cube"]
    cube = pd.DataFrame({**{k: np.asarray(cols[k], dtype=np.int64) for k in _CUBE_INTS},
                         **{k: np.asarray(cols[k], dtype=np.float64) for k in _CUBE_FLOATS}})
    cube.insert(0, "source_file", [None if v is None else str(v) for v in cols["source_file"]])
    cube.insert(1, "source", [None if v is None else str(v) for v in cols["source"]])
    cube = cube[["source_file", "source", "occ_month", "rep_year", "n", *_CUBE_FLOATS]]
    return RecordDates(cube, int(saved["odd"]))


def _with_fid(columns: Sequence[str]) -> list[str]:
    """``fid`` first, then `columns` (each once, without ``fid``): what `Store.flagged_records` keeps."""
    return ["fid", *dict.fromkeys(c for c in columns if c != "fid")]


class _ArrowStreamError(Exception):
    """GDAL's Arrow stream of the records failed (`Store._record_column_batches`)."""


def merge_record_dates(parts: Sequence[RecordDates]) -> RecordDates:
    """One `RecordDates` of the records counted in `parts` (consecutive pieces of one read, in
    order): equal to `_record_dates` of all of them at once, row order included (source file and
    source by first appearance, NULL first; then month and year)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("merge_record_dates: no parts")
    c = pd.concat([p.cube for p in parts], ignore_index=True)
    f, fv = pd.factorize(c["source_file"].to_numpy(dtype=object), use_na_sentinel=True)
    s, sv = pd.factorize(c["source"].to_numpy(dtype=object), use_na_sentinel=True)
    frame = c.drop(columns=["source_file", "source"]).assign(f=f, s=s)
    cube = frame.groupby(["f", "s", "occ_month", "rep_year"], sort=True).agg(
        n=("n", "sum"), occ_min=("occ_min", "min"), occ_max=("occ_max", "max"),
        rep_min=("rep_min", "min"), rep_max=("rep_max", "max")).reset_index()
    cube.insert(0, "source_file", [None if k < 0 else fv[k] for k in cube.pop("f")])
    cube.insert(1, "source", [None if k < 0 else sv[k] for k in cube.pop("s")])
    return RecordDates(cube, sum(p.odd for p in parts))


def _record_dates(table: Any) -> RecordDates:
    """`RecordDates` of a pyarrow table of `RecordDates.COLUMNS`."""
    occ, odd_occ = iso_seconds(table.column("occurred_at"))
    rep, odd_rep = iso_seconds(table.column("reported_at"))
    rep = np.where(np.isnan(rep), occ, rep)
    (fc, fv), (sc, sv) = _codes(table.column("source_file")), _codes(table.column("source"))
    occ_t, rep_t = pd.to_datetime(occ, unit="s"), pd.to_datetime(rep, unit="s")
    occ_month = np.where(np.isnan(occ), -1, occ_t.year * 12 + occ_t.month - 1).astype(np.int64)
    rep_year = np.where(np.isnan(rep), -1, rep_t.year).astype(np.int64)
    frame = pd.DataFrame({"f": fc, "s": sc, "occ_month": occ_month, "rep_year": rep_year, "occ": occ, "rep": rep})
    cube = frame.groupby(["f", "s", "occ_month", "rep_year"], sort=True).agg(
        n=("occ", "size"), occ_min=("occ", "min"), occ_max=("occ", "max"),
        rep_min=("rep", "min"), rep_max=("rep", "max")).reset_index()

    def values(codes: pd.Series, distinct: np.ndarray) -> list[Any]:
        return [None if c < 0 else distinct[c] for c in codes]

    cube.insert(0, "source_file", values(cube.pop("f"), fv))
    cube.insert(1, "source", values(cube.pop("s"), sv))
    return RecordDates(cube, int((odd_occ | odd_rep).sum()))


def _iso_text(seconds: pd.Series) -> list[str | None]:
    """Seconds since 1970 (NaN: none) as ingest's ISO text."""
    when = pd.to_datetime(seconds.astype(float), unit="s")
    return [None if pd.isna(t) else t.strftime("%Y-%m-%dT%H:%M:%S") for t in when]


_PLAIN_TYPES = frozenset({str, int, float, bytes, type(None)})


def _column_values(series: pd.Series) -> list[Any]:
    """One column as sqlite-ready Python values (NaN/NA/None -> NULL), built by numpy/pandas
    (no per-cell Python dispatch except for object columns holding non-text values)."""
    values: list[Any] = series.to_numpy(dtype=object, na_value=None).tolist()
    if series.dtype.kind in "mM":  # NaT is not replaced by na_value
        values = [None if m else v for v, m in zip(values, series.isna().tolist(), strict=True)]
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty", "bytes"):
        values = [v if type(v) in _PLAIN_TYPES else _py(v) for v in values]  # numpy scalars in a mixed column
    return values


def _row_tuples(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """A frame's rows as tuples of sqlite-ready values, converted column by column (fast)."""
    return zip(*(_column_values(frame.iloc[:, i]) for i in range(frame.shape[1])), strict=True)


#: One GeoPackage point blob: header (magic, version, flags = little endian, no envelope;
#: srs_id) and ISO WKB (byte order, type 1, x, y), packed (29 bytes).
_POINT_BLOB = np.dtype([("magic", "S4"), ("srs_id", "<i4"), ("order", "u1"), ("wkb_type", "<u4"),
                        ("x", "<f8"), ("y", "<f8")])


def point_blobs(lon: np.ndarray, lat: np.ndarray, srs_id: int = WGS84_SRS_ID) -> list[bytes | None]:
    """GeoPackage point blobs of `lon`/`lat` (what `gpkg_blob` of the ISO WKB gives), built
    as one numpy buffer; None where either coordinate is NaN."""
    if lon.shape != lat.shape:
        raise ValueError(f"point_blobs: lon has shape {lon.shape}, lat {lat.shape}")
    buf = np.zeros(lon.shape[0], _POINT_BLOB)
    buf["magic"], buf["srs_id"], buf["order"], buf["wkb_type"] = b"GP\x00\x01", srs_id, 1, 1
    buf["x"], buf["y"] = lon, lat
    blobs: list[bytes | None] = buf.view(f"V{_POINT_BLOB.itemsize}").tolist()
    for i in np.flatnonzero(np.isnan(lon) | np.isnan(lat)).tolist():
        blobs[i] = None
    return blobs


#: One cell of an SQLite RTree node of 2 dimensions: rowid (or child node) and the float32 box
#: minx, maxx, miny, maxy, all big-endian (the rtree module's on-disk format).
_RTREE_CELL = np.dtype([("id", ">i8"), ("minx", ">f4"), ("maxx", ">f4"), ("miny", ">f4"), ("maxy", ">f4")])


class PairRows:
    """Rows ``(a[i], b[i])`` of two integer arrays, made as they are iterated (`WRITE_CHUNK_ROWS`
    at a time: a million leaf entries never exist as Python tuples at once); iterable again."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.shape != b.shape:
            raise ValueError(f"PairRows: arrays of shapes {a.shape} and {b.shape}")
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for start in range(0, len(self.a), WRITE_CHUNK_ROWS):
            stop = start + WRITE_CHUNK_ROWS
            yield from zip(self.a[start:stop].tolist(), self.b[start:stop].tolist(), strict=True)


@dataclass(frozen=True)
class RTreePages:
    """The rows of an RTree's three shadow tables (`rtree_pages`): ``node`` (nodeno, data),
    ``rowid`` (rowid, leaf nodeno; one per point, so made as they are written: `PairRows`) and
    ``parent`` (nodeno, parent nodeno); node 1 is the root."""

    node: list[tuple[int, bytes]]
    rowid: PairRows
    parent: list[tuple[int, int]]


def _f32_down(v: np.ndarray) -> np.ndarray:
    f = v.astype(np.float32)
    return np.where(f > v, np.nextafter(f, np.float32(-np.inf)), f)


def _f32_up(v: np.ndarray) -> np.ndarray:
    f = v.astype(np.float32)
    return np.where(f < v, np.nextafter(f, np.float32(np.inf)), f)


def _node_blobs(cells: np.ndarray, counts: np.ndarray, node_bytes: int, depth: int) -> list[bytes]:
    """Node blobs from `cells` (nodes x max cells, zero-padded) and each node's cell count;
    `depth` goes in the first two bytes (the tree depth in the root, 0 elsewhere)."""
    raw = np.zeros((len(counts), node_bytes), np.uint8)
    raw[:, 0:2] = np.frombuffer(np.array([depth], ">u2").tobytes(), np.uint8)
    raw[:, 2:4] = counts.astype(">u2").view(np.uint8).reshape(-1, 2)
    body = cells.view(np.uint8).reshape(len(counts), -1)
    raw[:, 4:4 + body.shape[1]] = body
    return [bytes(r) for r in raw]


def rtree_pages(ids: np.ndarray, x: np.ndarray, y: np.ndarray, node_bytes: int,
                fill: float = RTREE_FILL) -> RTreePages:
    """An SQLite RTree of the points (`ids`, `x`, `y`), bulk-loaded (sort-tile-recursive).

    The shadow-table rows the rtree module's own inserts would produce up to the tree's
    shape: every point in one leaf cell (float32 box rounded outward, as the module rounds),
    each node's box the union of its cells, all leaves at one depth, node 1 the root.
    `node_bytes`: the tree's node size (the length of its root node blob); `fill`: the share
    of a node's cells filled (at least 2), the rest left free for later inserts.
    """
    if not (ids.shape == x.shape == y.shape) or ids.ndim != 1:
        raise ValueError(f"rtree_pages: ids, x, y must be 1-d of one length ({ids.shape}, {x.shape}, {y.shape})")
    capacity = (node_bytes - 4) // _RTREE_CELL.itemsize
    if capacity < 2:
        raise ValueError(f"rtree_pages: a node of {node_bytes} bytes holds fewer than 2 cells")
    if not 0 < fill <= 1:
        raise ValueError(f"rtree_pages: fill must be in (0, 1], not {fill}")
    per_node = max(2, int(capacity * fill))
    n = len(ids)
    slices = max(1, int(np.ceil(np.sqrt(np.ceil(n / per_node)))))
    by_x = np.argsort(x, kind="stable")
    slice_of = np.empty(n, np.int64)
    slice_of[by_x] = np.arange(n) // (slices * per_node)
    order = np.lexsort((y, slice_of))
    level = np.zeros(n, _RTREE_CELL)
    level["id"] = ids[order]
    level["minx"], level["maxx"] = _f32_down(x[order]), _f32_up(x[order])
    level["miny"], level["maxy"] = _f32_down(y[order]), _f32_up(y[order])
    node: list[tuple[int, bytes]] = []
    parent: list[tuple[int, int]] = []
    rowid = PairRows(np.zeros(0, np.int64), np.zeros(0, np.int64))
    next_no, depth = 2, 0
    while True:
        k = max(1, -(-len(level) // per_node))  # nodes on this level
        root = k == 1
        numbers = np.array([1]) if root else np.arange(next_no, next_no + k)
        next_no += 0 if root else k
        padded = np.zeros((k, capacity), _RTREE_CELL)
        padded.reshape(-1)[(np.arange(len(level)) // per_node) * capacity + np.arange(len(level)) % per_node] = level
        cells = padded
        counts = np.minimum(per_node, len(level) - np.arange(k) * per_node)
        node.extend(zip(numbers.tolist(), _node_blobs(cells, counts, node_bytes, depth if root else 0), strict=True))
        owner = np.repeat(numbers, counts)
        if depth == 0:
            rowid = PairRows(level["id"].astype(np.int64), owner.astype(np.int64))
        else:
            parent.extend(zip(level["id"].tolist(), owner.tolist(), strict=True))
        if root:
            return RTreePages(node=node, rowid=rowid, parent=parent)
        up = np.zeros(k, _RTREE_CELL)
        up["id"] = numbers
        valid = np.arange(capacity)[None, :] < counts[:, None]
        for lo, hi in (("minx", "maxx"), ("miny", "maxy")):
            up[lo] = np.where(valid, cells[lo].astype(np.float32), np.inf).min(axis=1)
            up[hi] = np.where(valid, cells[hi].astype(np.float32), -np.inf).max(axis=1)
        level, depth = up, depth + 1


_CORE_DDL = (
    """CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
        srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
        organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE IF NOT EXISTS gpkg_contents (
        table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
        description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT
        (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE,
        max_y DOUBLE, srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id)
        REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
        table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
        srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
        CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name))""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS records (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POINT,
        record_id TEXT NOT NULL UNIQUE, source TEXT, incident_number TEXT, occurred_at TEXT,
        reported_at TEXT, offense_text TEXT, statute TEXT, nibrs_code TEXT, crime_type TEXT,
        division TEXT, beat TEXT, premise TEXT, address_raw TEXT, city TEXT, zip TEXT,
        source_file TEXT, source_line INTEGER, content_hash TEXT, ingested_at TEXT,
        updated_at TEXT)""",
    # the month prefix 'YYYY-MM-', not the whole date: a new record goes at the end of its
    # month's entries (rowid order), so an ingest touches a page per month, not one per record
    # (10k records into a 1M store: ~5,000 pages of a records(occurred_at) index rewritten)
    "CREATE INDEX IF NOT EXISTS records_occurred_month ON records(substr(occurred_at, 1, 8))",
    """CREATE TABLE IF NOT EXISTS rejects (fid INTEGER PRIMARY KEY AUTOINCREMENT,
        source_file TEXT, file_sha256 TEXT, source_line INTEGER, reason TEXT, "column" TEXT,
        value TEXT, raw TEXT, ingested_at TEXT, UNIQUE (file_sha256, source_line, reason))""",
    """CREATE TABLE IF NOT EXISTS persons (fid INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT UNIQUE, sex TEXT, race TEXT, ethnicity TEXT, age TEXT)""",
    """CREATE TABLE IF NOT EXISTS record_history (fid INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT, content_hash TEXT, replaced_at TEXT, old_json TEXT)""",
    """CREATE TABLE IF NOT EXISTS ingests (fid INTEGER PRIMARY KEY AUTOINCREMENT,
        source_file TEXT, path TEXT, file_sha256 TEXT, source TEXT, rows_read INTEGER,
        accepted INTEGER, rejected INTEGER, added INTEGER, unchanged INTEGER, updated INTEGER,
        ingested_at TEXT)""",
)


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"PRAGMA application_id = {GPKG_APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {GPKG_USER_VERSION}")
        for ddl in _CORE_DDL:
            conn.execute(ddl)
        conn.executemany(
            "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)", [
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
                ("WGS 84 geodetic", 4326, "EPSG", 4326, _SRS_WGS84_WKT, "longitude/latitude"),
            ])
        store = Store(Path(":memory:"), conn)
        store.register_features("records", "POINT", description="LMPD records, geocoded block points")
        store.ensure_spatial_index("records")
        for table, desc in (("rejects", "rows not accepted, with reasons"),
                            ("ingests", "files ingested"),
                            ("record_history", "earlier versions of changed records")):
            store.register_attributes(table, desc)
        # persons is deliberately not registered in gpkg_contents: GIS clients do not list it.
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _schema_current(conn: sqlite3.Connection) -> bool:
    """True when the store already has this schema version (a read: no write lock needed).

    Skipping `_create_schema` then lets readers (``geo-lead runs``, ``export``) open a store
    while another process holds its write lock.
    """
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError:
        return False
    core = {"gpkg_spatial_ref_sys", "gpkg_contents", "gpkg_geometry_columns", "meta", "records",
            "rejects", "persons", "record_history", "ingests"}
    return row is not None and row[0] == str(SCHEMA_VERSION) and core <= names


def open_store(path: Path | str, create: bool = True, busy_timeout_s: float | None = None) -> Store:
    """Open (and create on first use) the GeoPackage store at `path`.

    Raises
    ------
    StoreError
        The file is missing (with ``create=False``), not a SQLite/GeoPackage file, or locked.
    """
    path = Path(path)
    if busy_timeout_s is None:
        busy_timeout_s = settings.STORE_BUSY_TIMEOUT_S
    created, created_dirs = False, []
    if not path.exists():
        if not create:
            raise StoreError(f"{path}: no store here yet; run `geo-lead ingest FILE --store {path}` first.")
        if path.is_symlink():
            raise StoreError(f"{path}: is a link to a file that does not exist; choose another --store.")
        created_dirs = _make_folders(path.parent)
        created = True
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        register_gpkg_functions(conn)  # the RTree triggers call them
        conn.execute("PRAGMA journal_mode=DELETE")  # portable: QGIS/ArcGIS read it as is
        # A bigger page cache keeps the record_id index in memory during large ingests
        # (negative = KiB); it costs nothing when the store is small.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        _discard_new(path, created, created_dirs)
        raise storage_error(path, exc) or StoreError(
            f"{path}: not a GeoPackage/SQLite file ({exc}).") from None
    if has_tables and app_id != GPKG_APPLICATION_ID:
        conn.close()
        raise StoreError(f"{path}: is a SQLite file but not a geo_lead GeoPackage; choose another --store.")
    try:
        if not (has_tables and _schema_current(conn)):
            _create_schema(conn)
    except sqlite3.OperationalError as exc:
        conn.close()
        _discard_new(path, created, created_dirs)
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreBusyError(
                f"{path}: another geo-lead process is writing to this store (waited "
                f"{busy_timeout_s:g} s); wait for it to finish and run the command again."
            ) from None
        raise storage_error(path, exc) or StoreError(f"{path}: cannot prepare the store: {exc}") from None
    store = Store(path, conn)
    store.busy_timeout_s = busy_timeout_s
    store.created, store.created_dirs = created, created_dirs
    return store


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents, saying so (a mistyped --store should be seen)."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if not missing:
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreStorageError(f"{folder}: cannot create the folder for the store "
                                f"({exc.strerror or exc}); choose another --store.") from None
    log.warning("created the folder %s for the new store", folder)
    return list(reversed(missing))


def _discard_new(path: Path, created: bool, created_dirs: list[Path]) -> None:
    """Remove a store file (and folders) this call created when opening it failed."""
    if not created:
        return
    for leftover in (path, Path(f"{path}-journal")):
        with contextlib.suppress(OSError):
            leftover.unlink()
    for folder in reversed(created_dirs):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def opened(path: Path | str, create: bool = True) -> Iterator[Store]:
    """``with opened(path) as store:`` -- open, yield, close."""
    store = open_store(path, create=create)
    try:
        yield store
    except BaseException:
        store.close_discarding_if_unused()  # a failed first command leaves no empty store
        raise
    store.close()
