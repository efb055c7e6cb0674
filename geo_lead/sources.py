"""LMPD formats -> one canonical record table, plus a rejects table with reasons.

Three Louisville Open Data formats are recognised from their header:

* ``crime-pre2023`` -- Crime Data up to 2022 (INCIDENT_NUMBER, DATE_OCCURED, UOR_DESC, ...);
* ``crime-2023``    -- Crime Data 2023+ ("Incident Number", "Offense Code Name", ...);
* ``citations``     -- Uniform Citation Data (CITATION_CONTROL_NUMBER, CHARGE_DESC, ...).

Files are streamed in chunks (`iter_chunks`), so a large extract is never held twice. UTF-8
files are parsed in blocks by ``pyarrow.csv`` (`geo_lead.sources_arrow`) and cleaned by column;
what pyarrow cannot read exactly as the csv module would is read by the csv module.
Every physical row ends up either in a chunk's ``records`` or in its ``rejects``, with the
file, the line number and a reason: rows read = rows accepted + rows rejected. A date after
the day of the ingest ("date after the ingest date") or before `settings.DATE_FLOOR` is a
reject too, not a record.

Canonical record columns
------------------------
record_id        stable key: ``source:incident_number:offense-hash:n`` (n counts repeats of
                 the same offence within one incident), unchanged across re-downloads
source           one of SOURCES
incident_number  incident or citation control number
occurred_at      ISO 8601 local time (``reported_at`` when the occurrence date is empty)
reported_at      ISO 8601 local time or empty
offense_text     offence / charge description, as published
statute          KRS statute where the format has one (citations), else empty
nibrs_code       NIBRS / UCR code
crime_type       CRIME_TYPE / Offense Classification / citation type
division         normalised: ``1ST DIVISION`` .. ``8TH DIVISION``, or the text as published
beat             LMPD beat code
premise          premise type / location category
address_raw      block address or citation location, as published (whitespace collapsed)
city, zip        as published (ZIP cut to 5 digits)
source_file      file name the row came from
source_line      physical line number in that file (1 = header)
content_hash     hash of the published content, to detect changed re-downloads

Person fields (sex, race, age of citations) are returned separately in ``persons`` and
never join the record table.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import logging
import re
import tomllib
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import AnyStr, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geo_lead import settings
from geo_lead.errors import InputFileError, MissingColumnError
from geo_lead.sources_arrow import (
    clean_column,
    is_simple_block,
    parse_block,
    quoting_is_simple,
    split_block,
)

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("crime-pre2023", "crime-2023", "citations")

RECORD_COLUMNS: tuple[str, ...] = (
    "record_id", "source", "incident_number", "occurred_at", "reported_at", "offense_text",
    "statute", "nibrs_code", "crime_type", "division", "beat", "premise", "address_raw",
    "city", "zip", "source_file", "source_line", "content_hash",
)
REJECT_COLUMNS: tuple[str, ...] = ("source_file", "source_line", "reason", "column", "value", "raw")
#: Person fields the reader keeps apart (the store's ``persons`` table), never in records.
PERSON_FIELDS: tuple[str, ...] = ("sex", "race", "ethnicity", "age")
#: Header names (normalised) that describe a person, besides any name starting with PERSON
#: (PERSONS_HOME_CITY, PERSONS_HOME_STATE, PERSONS_HOME_ZIP, PERSON_NAME, ...).
PERSON_HEADER_NAMES: frozenset[str] = frozenset({"SEX", "RACE", "ETHNICITY", "AGE"})


def is_person_column(name: str) -> bool:
    """True for a column that describes a person: the one test the reader, the rejects'
    raw text and every export use.

    A canonical person field (`PERSON_FIELDS`), ``SEX``/``RACE``/``ETHNICITY``/``AGE`` in
    any case or spelling, or any header whose normalised name starts with ``PERSON``.

    >>> [is_person_column(c) for c in ("PERSONS_HOME_ZIP", "Person Race", "age", "zip")]
    [True, True, True, False]
    """
    norm = normalize_header(str(name))
    return norm.startswith("PERSON") or norm in PERSON_HEADER_NAMES or str(name) in PERSON_FIELDS


def _refuse_person_sources(index: dict[str, int], header: list[str], path: Path) -> None:
    """A record field mapped to a person column would carry person data into the records."""
    for fld, i in index.items():
        if fld not in PERSON_FIELDS and is_person_column(header[i]):
            raise InputFileError(
                f"{path}: column {header[i]!r} describes a person and cannot be read as "
                f"{fld}; map {fld} to another column (--mapping PATH).")
#: Fields a column mapping may name (the others are computed by the reader).
MAPPABLE_FIELDS: frozenset[str] = frozenset(RECORD_COLUMNS).difference(
    {"record_id", "source", "source_file", "source_line", "content_hash"}) | frozenset(PERSON_FIELDS)

#: Canonical field -> header names (normalised: upper case, runs of non-alphanumerics -> "_"),
#: first match wins. Fields marked required stop the read when absent.
COLUMN_CANDIDATES: dict[str, dict[str, tuple[str, ...]]] = {
    "crime-pre2023": {
        "incident_number": ("INCIDENT_NUMBER",),
        "occurred_at": ("DATE_OCCURED", "DATE_OCCURRED"),
        "reported_at": ("DATE_REPORTED",),
        "offense_text": ("UOR_DESC",),
        "nibrs_code": ("NIBRS_CODE",),
        "crime_type": ("CRIME_TYPE",),
        "division": ("LMPD_DIVISION",),
        "beat": ("LMPD_BEAT",),
        "premise": ("PREMISE_TYPE",),
        "address_raw": ("BLOCK_ADDRESS",),
        "city": ("CITY",),
        "zip": ("ZIP_CODE",),
    },
    "crime-2023": {
        "incident_number": ("INCIDENT_NUMBER",),
        "occurred_at": ("DATE_OCCURRED", "DATE_OCCURED"),
        "reported_at": ("DATE_REPORTED",),
        "offense_text": ("OFFENSE_CODE_NAME",),
        "nibrs_code": ("NIBRS_CODE",),
        "crime_type": ("OFFENSE_CLASSIFICATION",),
        "division": ("LMPD_DIVISION",),
        "beat": ("LMPD_BEAT",),
        "premise": ("LOCATION_CATEGORY",),
        "address_raw": ("BLOCK_ADDRESS",),
        "city": ("CITY",),
        "zip": ("ZIP_CODE",),
    },
    "citations": {
        "incident_number": ("CITATION_CONTROL_NUMBER", "CONTROL_NUMBER", "CITATION_NUMBER"),
        "occurred_at": ("CITATION_DATE", "DATE_ISSUED", "CITATION_DATE_TIME"),
        "reported_at": ("DATE_REPORTED",),
        "offense_text": ("CHARGE_DESC", "CHARGE_DESCRIPTION", "VIOLATION_DESC", "UCR_DESC"),
        "statute": ("STATUTE", "VIOLATION_CODE"),
        "nibrs_code": ("UCR_CODE", "NIBRS_CODE"),
        "crime_type": ("CITATION_TYPE_DESC", "CITATION_TYPE"),
        "division": ("DIVISION", "LMPD_DIVISION"),
        "beat": ("BEAT", "LMPD_BEAT"),
        "premise": ("PREMISE_TYPE",),
        "address_raw": ("CITATION_LOCATION", "LOCATION", "BLOCK_ADDRESS"),
        "city": ("CITY",),
        "zip": ("ZIP_CODE", "ZIP"),
        "sex": ("PERSONS_SEX", "PERSON_SEX", "SEX"),
        "race": ("PERSONS_RACE", "PERSON_RACE", "RACE"),
        "ethnicity": ("PERSONS_ETHNICITY", "PERSON_ETHNICITY", "ETHNICITY"),
        "age": ("PERSONS_AGE", "PERSON_AGE", "AGE"),
    },
}
REQUIRED_FIELDS: tuple[str, ...] = ("incident_number", "occurred_at", "offense_text", "address_raw")

#: Header columns whose presence identifies each format.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "crime-pre2023": ("INCIDENT_NUMBER", "UOR_DESC"),
    "crime-2023": ("INCIDENT_NUMBER", "OFFENSE_CODE_NAME"),
    "citations": ("CITATION_CONTROL_NUMBER",),
}

#: Tried in order on what is still unparsed; LMPD publishes US month-first dates.
DATE_FORMATS: tuple[str, ...] = (
    "%m/%d/%y %I:%M %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%y %H:%M",
    "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%m/%d/%y", "ISO8601",
)

_ORDINAL_DIVISION = re.compile(r"^\s*0?([1-9])(?:ST|ND|RD|TH)?\s*(?:DIV(?:ISION)?)?\.?\s*$")
#: "DIVISION 1", "DIV. 01" (number after the word).
_DIVISION_NUMBER = re.compile(r"^\s*DIV(?:ISION)?\.?\s*0?([1-9])\s*$")
_WORD_ORDINALS = {
    "FIRST": 1, "SECOND": 2, "THIRD": 3, "FOURTH": 4, "FIFTH": 5, "SIXTH": 6, "SEVENTH": 7,
    "EIGHTH": 8, "NINTH": 9,
}
_SUFFIX = {1: "ST", 2: "ND", 3: "RD"}


@dataclass
class Chunk:
    """One streamed piece of a file: accepted records, rejects and person fields."""

    records: pd.DataFrame
    rejects: pd.DataFrame
    persons: pd.DataFrame
    rows_read: int
    #: The format the file was read as (detected, forced, or named by the mapping).
    source: str = ""


@dataclass
class ReadResult:
    """A whole file read: the concatenation of its chunks."""

    path: Path
    source: str
    records: pd.DataFrame
    rejects: pd.DataFrame
    persons: pd.DataFrame
    rows_read: int
    columns_found: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.records)

    @property
    def rejected(self) -> int:
        return len(self.rejects)


def normalize_header(name: str) -> str:
    """``"Offense Code Name"`` -> ``"OFFENSE_CODE_NAME"``; strips BOMs and quotes."""
    name = name.replace("\ufeff", "").strip().strip('"').upper()
    return re.sub(r"[^0-9A-Z]+", "_", name).strip("_")


def normalize_division(value: str) -> str:
    """``1st Division``, ``1ST DIVISION``, ``1``, ``First`` -> ``1ST DIVISION``; others upper-cased."""
    text = " ".join(value.upper().split())
    if not text:
        return ""
    m = _ORDINAL_DIVISION.match(text) or _DIVISION_NUMBER.match(text)
    number = int(m.group(1)) if m else None
    if number is None:
        first = text.split()[0]
        number = _WORD_ORDINALS.get(first) if (len(text.split()) == 1 or "DIV" in text) else None
    if number is None:
        return text
    return f"{number}{_SUFFIX.get(number, 'TH')} DIVISION"


def normalize_zip(values: pd.Series) -> pd.Series:
    """ZIP text -> its first five ASCII digits, or "" when it does not start with five.

    Compatibility forms are folded first (NFKC: fullwidth digits U+FF10..U+FF19 -> ASCII); other
    non-ASCII digits (Arabic-Indic, ...) are not a ZIP and give "".
    """
    codes, distinct = pd.factorize(values.astype(str), sort=False)  # few distinct ZIPs
    zips = np.array([_zip5(v) for v in distinct], dtype=object)
    return pd.Series(zips[codes] if len(values) else [], index=values.index, dtype="str")


_ZIP5 = re.compile(r"^([0-9]{5})")


def _zip5(value: str) -> str:
    match = _ZIP5.match(value if value.isascii() else unicodedata.normalize("NFKC", value))
    return match.group(1) if match else ""


def load_mapping(path: Path | str) -> dict[str, object]:
    """Read a column mapping (TOML or JSON).

    The file maps canonical fields to the header names of the user's file, and may name the
    source format::

        source = "citations"
        [columns]
        incident_number = "CITATION_CONTROL_NUMBER"
        address_raw = "CITATION_LOCATION"
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read mapping file ({exc.strerror}).") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputFileError(f"{path}: not a valid mapping file: {exc}") from None
    columns = data.get("columns", {})
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise InputFileError(f"{path}: [columns] must map canonical field names to header names.")
    known = MAPPABLE_FIELDS
    unknown = sorted(set(columns) - known)
    if unknown:
        raise InputFileError(
            f"{path}: unknown canonical field(s) {unknown}; known fields: {sorted(known)}."
        )
    source = data.get("source")
    if source is not None and source not in SOURCES:
        raise InputFileError(f"{path}: source {source!r} is not one of {list(SOURCES)}.")
    return {"source": source, "columns": columns}


def detect_source(header: list[str], path: Path | str = "<file>") -> str:
    """Name the LMPD format whose signature columns the header contains."""
    found = {normalize_header(h) for h in header}
    for source, signature in SIGNATURES.items():
        if all(col in found for col in signature):
            return source
    raise InputFileError(
        f"{path}: cannot tell the format from the header. Columns found: "
        f"{', '.join(repr(h) for h in header)}. Expected one of: "
        + "; ".join(f"{s} ({', '.join(sig)})" for s, sig in SIGNATURES.items())
        + ". Pass --source crime-pre2023|crime-2023|citations, or --mapping PATH for renamed columns."
    )


def _excel_sep_line(line: str) -> str:
    """The delimiter named by an Excel ``sep=;`` first line, or "" when it is not one."""
    text = line.strip()
    return text[4] if len(text) == 5 and text.lower().startswith("sep=") else ""


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _column_index(
    header: list[str], source: str, mapping: dict[str, object] | None, path: Path
) -> dict[str, int]:
    """Canonical field -> column position, checking required fields are present."""
    norm = [normalize_header(h) for h in header]
    user_cols = dict(mapping["columns"]) if mapping else {}  # type: ignore[call-overload]
    index: dict[str, int] = {}
    for fld, candidates in COLUMN_CANDIDATES[source].items():
        names = (normalize_header(user_cols.pop(fld)),) if fld in user_cols else candidates
        for name in names:
            if name in norm:
                index[fld] = norm.index(name)
                break
    for fld, name in user_cols.items():  # fields this source does not list by default
        if normalize_header(name) in norm:
            index[fld] = norm.index(normalize_header(name))
    for fld in REQUIRED_FIELDS:
        if fld not in index:
            mapped = dict(mapping["columns"]) if mapping else {}  # type: ignore[call-overload]
            wanted = (mapped[fld],) if fld in mapped else COLUMN_CANDIDATES[source][fld]
            raise MissingColumnError(
                str(path), " or ".join(str(w) for w in wanted), header,
                hint=f"(needed for {fld} in {source} files; map it with --mapping PATH).",
            )
    return index


def _open_binary(path: Path) -> BinaryIO:
    """Open a CSV for reading bytes; a gzip-compressed one is decompressed as it streams."""
    try:
        fh: BinaryIO = path.open("rb")
        magic = fh.read(4)
        fh.seek(0)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open ({exc.strerror}).") from None
    if magic[:2] == b"\x1f\x8b":
        fh.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == b"PK\x03\x04":
        fh.close()
        raise InputFileError(f"{path}: is a ZIP archive; extract the CSV file(s) from it and pass those.")
    return fh


def _resolve_encoding(fh: BinaryIO, encoding: str, path: Path) -> str:
    """Check the encoding name; a UTF-16 byte-order mark overrides the utf-8 default.

    Excel's "Unicode text" export is UTF-16 with a BOM: reading it as UTF-8 would reject
    every row, so the BOM is trusted when the user did not name another encoding.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputFileError(f"{path}: unknown encoding {encoding!r}; try utf-8, latin-1 or cp1252.") from None
    try:
        head = fh.read(4)
        fh.seek(0)
    except (EOFError, OSError) as exc:
        raise InputFileError(f"{path}: cannot read the file ({exc}).") from None
    if name == "utf-8" and head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        log.info("%s: UTF-16 byte-order mark found; reading as utf-16", path)
        return "utf-16"
    return name


def _decoded_lines(fh: BinaryIO, encoding: str, bad_lines: set[int], path: Path,
                   long_lines: set[int] | None = None) -> Iterator[str]:
    """Decode line by line; lines that are not valid `encoding` are noted, not fatal.

    A line longer than `settings.MAX_LINE_BYTES` is read in pieces and dropped (its number
    goes to `long_lines`, an empty line stands in for it), so memory stays bounded whatever
    the file holds.
    """
    if long_lines is None:
        long_lines = set()
    try:
        yield from _decode(fh, encoding, bad_lines, long_lines)
    except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip stream, I/O error
        raise InputFileError(f"{path}: cannot read past some point of the file ({exc}).") from None


def _bounded_lines(readline: Callable[[int], AnyStr], limit: int, long_lines: set[int],
                   newline: AnyStr) -> Iterator[AnyStr]:
    """Lines from ``readline(limit)``; a longer line is skipped piece by piece and noted.

    ``newline`` is the line break in the type ``readline`` returns (``"\\n"`` or ``b"\\n"``).
    """
    lineno = 0
    while True:
        line = readline(limit)
        if not line:
            return
        lineno += 1
        if len(line) >= limit and not line.endswith(newline):
            long_lines.add(lineno)
            while True:  # discard the rest of the line without holding it
                more = readline(limit)
                if not more or more.endswith(newline):
                    break
            line = newline
        yield line


def _decode(fh: BinaryIO, encoding: str, bad_lines: set[int], long_lines: set[int]) -> Iterator[str]:
    limit = max(int(settings.MAX_LINE_BYTES), 2)
    if "\n".encode(encoding) != b"\n":
        # UTF-16/32: a newline is not the byte 0x0A, so decode as a stream; a line holding a
        # replacement character had bytes that are not valid in the encoding.
        text = io.TextIOWrapper(fh, encoding=encoding, errors="replace", newline="")
        for lineno, line in enumerate(_bounded_lines(text.readline, limit, long_lines, "\n"), start=1):
            if "\ufffd" in line or "\x00" in line:
                bad_lines.add(lineno)
            yield str(line)
        return
    for lineno, raw in enumerate(_bounded_lines(fh.readline, limit, long_lines, b"\n"), start=1):
        # A NUL byte is never text in a CSV: it means corruption or a UTF-16 file without BOM.
        if b"\x00" in raw:
            bad_lines.add(lineno)
            yield raw.replace(b"\x00", b"").decode(encoding, errors="replace")
            continue
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError:
            bad_lines.add(lineno)
            yield raw.decode(encoding, errors="replace")


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse LMPD date strings (``7/11/17 8:49 PM``, ``1/16/2024``, ISO 8601) to datetimes.

    Results are naive local (Louisville) wall-clock times. An ISO value with an offset or
    ``Z`` names an instant, so it is converted to `settings.LOCAL_TIMEZONE` and the offset
    dropped; a mix of offsets in one column is fine. Values that match no format, or fall
    outside `settings.DATE_MIN` .. `settings.DATE_MAX` (typos such as year 1500), become
    NaT; the caller decides what that means. Never raises on bad text.
    """
    text = values.astype(object).where(values.notna(), "").astype(str)
    codes, distinct = pd.factorize(text, sort=False)  # each distinct text is parsed once
    parsed = _parse_distinct(pd.Series(distinct, dtype=object)).to_numpy()
    return pd.Series(parsed[codes], index=values.index, dtype="datetime64[ns]")


def _parse_distinct(values: pd.Series) -> pd.Series:
    """`parse_dates` on a column of str (a RangeIndex)."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    text = values.str.strip()
    todo = text != ""
    aware = todo & text.str.match(_ISO_WITH_OFFSET)
    if aware.any():
        _store_parsed(out, _parse_one_format(text[aware], "ISO8601", utc=True))
        todo &= ~aware
    for fmt in DATE_FORMATS:
        if not todo.any():
            break
        parsed = _parse_one_format(text[todo], fmt)
        ok = _store_parsed(out, parsed)
        todo.loc[ok] = False
    return out


#: An ISO 8601 date-time carrying a UTC offset or Z (converted to local time, see parse_dates).
_ISO_WITH_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$",
    re.IGNORECASE)


def _parse_one_format(text: pd.Series, fmt: str, utc: bool = False) -> pd.Series:
    """One format over a column; falls back to value by value when pandas refuses the column."""
    try:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=utc)
    except (ValueError, TypeError, OverflowError):  # e.g. mixed offsets, odd tokens
        parsed = pd.Series([_parse_scalar(v, fmt, utc) for v in text], index=text.index,
                           dtype=object)
        parsed = pd.to_datetime(parsed, errors="coerce", utc=utc)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert(settings.LOCAL_TIMEZONE).dt.tz_localize(None)
    return parsed


def _parse_scalar(value: str, fmt: str, utc: bool) -> object:
    try:
        return pd.to_datetime(value, format=fmt, utc=utc)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _store_parsed(out: pd.Series, parsed: pd.Series) -> pd.Index:
    """Copy parsed values within DATE_MIN..DATE_MAX into `out`; return the index of those kept."""
    if not pd.api.types.is_datetime64_dtype(parsed.dtype):
        return pd.Index([])
    lo, hi = pd.Timestamp(settings.DATE_MIN), pd.Timestamp(settings.DATE_MAX)
    ok = parsed.notna() & (parsed >= lo) & (parsed < hi)
    kept = ok[ok].index
    # Within the bounds the nanosecond cast cannot overflow (pandas may parse at [s]/[us]).
    out.loc[kept] = parsed[ok].astype("datetime64[ns]")
    return kept


def _hash_strings(parts: pd.DataFrame) -> list[str]:
    # Row-wise DataFrame.agg is ~100x slower than zipping plain lists (profiled on 50 MB).
    columns = [_texts(parts[c]) for c in parts.columns]
    blake = hashlib.blake2b
    return [blake(text.encode("utf-8"), digest_size=8).hexdigest()
            for text in map("\x1f".join, zip(*columns, strict=True))]


def _texts(column: pd.Series) -> list[str]:
    """``column.astype(str).tolist()``, without the round trip when every value is a str."""
    values: list[str] = column.tolist()
    if all(type(v) is str for v in values):
        return values
    return [str(v) for v in column.astype(str)]


def _offense_key(text: pd.Series) -> pd.Series:
    # Offence texts repeat a lot: hash each distinct text once.
    keys = {t: hashlib.blake2b(" ".join(str(t).upper().split()).encode("utf-8"),
                               digest_size=4).hexdigest() for t in pd.unique(text)}
    return text.map(keys)


_COLLAPSED = ("address_raw", "offense_text")


class _RecordBuilder:
    """Turns rows of one file into canonical chunks; keeps per-file state (repeat counters)."""

    def __init__(self, path: Path, source: str, index: dict[str, int]) -> None:
        self.path, self.source, self.index = path, source, index
        self.name = path.name
        # Streaming state that grows with the file: one 64-bit int per distinct (incident,
        # offence) pair seen, plus a count for the rare repeats (about 60 bytes per row).
        self._seen: set[int] = set()
        self._repeats: dict[int, int] = {}
        # Dates after the day of the ingest (a 2099 typo) or before settings.DATE_FLOOR are
        # rejected: they would stretch the data's time span and every figure per year.
        self.date_floor = pd.Timestamp(settings.DATE_FLOOR)
        self.date_ceiling = pd.Timestamp.now().normalize() + pd.Timedelta(days=1)

    def _frame(self, table: pa.Table, lines: np.ndarray) -> pd.DataFrame:
        """Cleaned text of the mapped columns (free text collapsed, NULL spellings -> "")."""
        nulls = settings.NULL_STRINGS
        fields = [f for f in self.index if f not in _COLLAPSED] + [f for f in _COLLAPSED if f in self.index]
        data = {fld: clean_column(table.column(self.index[fld]), fld in _COLLAPSED, nulls) for fld in fields}
        df = pd.DataFrame(data, dtype=object)
        for fld in (*COLUMN_CANDIDATES[self.source], "statute"):
            if fld not in df:
                df[fld] = ""
        df["source_line"] = lines
        return df

    def _check(self, df: pd.DataFrame) -> tuple[pd.Series, list[dict[str, object]], pd.Series, pd.Series]:
        """Rows to reject (mask and reasons, first reason wins) and the parsed dates."""
        rejects: list[dict[str, object]] = []
        bad = pd.Series(False, index=df.index)

        def reject(mask: pd.Series, reason: str, column: str) -> None:
            nonlocal bad
            mask = mask & ~bad
            for i in mask[mask].index:
                rejects.append({
                    "source_file": self.name, "source_line": int(df.at[i, "source_line"]),
                    "reason": reason, "column": column, "value": str(df.at[i, column])[:200],
                })
            bad = bad | mask

        limit = settings.MAX_TEXT_CHARS
        for fld in [c for c in df.columns if c != "source_line"]:
            lengths = np.fromiter(map(len, df[fld].to_numpy()), dtype=np.int64, count=len(df))
            if lengths.max(initial=0) > limit:
                too_long = pd.Series(lengths > limit, index=df.index)  # corrupt, and slow for every rule and regex downstream
                reject(too_long, f"{fld} longer than {limit:,} characters", fld)
        reject(df["incident_number"] == "", "empty incident number", "incident_number")
        reject(df["address_raw"] == "", "empty address", "address_raw")
        reject(df["offense_text"] == "", "empty offence text", "offense_text")
        occurred = parse_dates(df["occurred_at"])
        reported = parse_dates(df["reported_at"])
        reject((df["occurred_at"] != "") & occurred.isna(), "unparseable date", "occurred_at")
        reject((df["reported_at"] != "") & reported.isna(), "unparseable date", "reported_at")
        for col, when in (("occurred_at", occurred), ("reported_at", reported)):
            reject(when.notna() & (when >= self.date_ceiling), "date after the ingest date", col)
            reject(when.notna() & (when < self.date_floor),
                   f"date before {settings.DATE_FLOOR} (settings.DATE_FLOOR)", col)
        occurred = occurred.fillna(reported)
        reject(occurred.isna(), "no occurrence or report date", "occurred_at")
        return bad, rejects, occurred, reported

    def build(self, table: pa.Table, lines: np.ndarray
              ) -> tuple[pd.DataFrame, list[dict[str, object]], pd.DataFrame]:
        """Records, rejects (without ``raw``) and person fields of rows read from a file."""
        if not table.num_rows:
            empty = pd.DataFrame(columns=list(RECORD_COLUMNS))
            return empty, [], pd.DataFrame(columns=["record_id", *PERSON_FIELDS])
        df = self._frame(table, lines)
        bad, rejects, occurred, reported = self._check(df)
        df = df[~bad].copy()
        df["occurred_at"] = _iso_text(occurred[~bad])
        df["reported_at"] = _iso_text(reported[~bad])
        divisions = {d: normalize_division(d) for d in pd.unique(df["division"])}
        df["division"] = df["division"].map(divisions)
        df["zip"] = normalize_zip(df["zip"])
        df["source"] = self.source
        df["source_file"] = self.name
        published = [c for c in RECORD_COLUMNS if c in df and c not in (
            "record_id", "source_file", "source_line", "content_hash")]
        df["content_hash"] = _hash_strings(df[published]) if len(df) else []
        df["record_id"] = self._record_ids(df) if len(df) else []
        persons = df[["record_id", *[p for p in PERSON_FIELDS if p in df]]].copy()
        records = df.reindex(columns=list(RECORD_COLUMNS)).fillna("")
        records["source_line"] = records["source_line"].astype("int64")
        return records.reset_index(drop=True), rejects, persons.reset_index(drop=True)

    def _record_ids(self, df: pd.DataFrame) -> list[str]:
        # Repeats of one offence in one incident are numbered in content_hash order, not file
        # order, so a re-download listing the same rows in another order keeps every id (and
        # so does not report them as updated). Needs content_hash set first.
        keys = _offense_key(df["offense_text"]).tolist()
        incidents = df["incident_number"].tolist()
        hashes = df["content_hash"].tolist()
        ids = [""] * len(df)
        for pos in sorted(range(len(df)), key=hashes.__getitem__):
            incident, key = incidents[pos], keys[pos]
            pair = hash((incident, key))  # 64 bits, like the ids it numbers: no need for more
            if pair not in self._seen:
                self._seen.add(pair)
                n = 0
            else:
                n = self._repeats.get(pair, 1)
                self._repeats[pair] = n + 1
            ids[pos] = f"{self.source}:{incident}:{key}:{n}"
        return ids


def _iso_text(when: pd.Series) -> pd.Series:
    """Datetimes -> ``YYYY-MM-DDTHH:MM:SS`` text (seconds floored, as strftime); NaT -> "".

    The text dtype is pandas' ``str``, as ``Series.dt.strftime`` returns.
    """
    text = np.datetime_as_string(when.to_numpy(dtype="datetime64[ns]").astype("datetime64[s]"), unit="s")
    return pd.Series(np.where(when.isna().to_numpy(), "", text), index=when.index, dtype="str")


@dataclass(frozen=True)
class _Layout:
    """What the header says about every row of one file."""

    path: Path
    encoding: str
    delimiter: str
    n_fields: int
    header_first: str  # first header cell, stripped and upper-cased (cheap repeat test)
    header_norm: tuple[str, ...]
    #: Columns withheld from a reject's raw text (person fields).
    person_positions: frozenset[int]

    def raw(self, row: list[str]) -> str:
        return _raw_text(row, self.delimiter, self.n_fields, self.person_positions)

    def reject(self, line: int, reason: str, raw: str = "") -> dict[str, object]:
        return {"source_file": self.path.name, "source_line": line, "reason": reason,
                "column": "", "value": "", "raw": raw}

    def empty_table(self) -> pa.Table:
        return pa.table({f"f{i}": pa.array([], pa.string()) for i in range(self.n_fields)})


@dataclass
class _Piece:
    """Consecutive rows of a file: rows to build (one string column per field) and early rejects."""

    table: pa.Table
    lines: np.ndarray  # physical line of each table row, increasing
    rejects: list[dict[str, object]]

    @property
    def counted(self) -> int:
        return int(self.table.num_rows) + len(self.rejects)


@dataclass
class _LineMarks:
    """Line numbers (counted from ``offset`` + 1) the decoder found too long or not decodable."""

    bad: set[int] = field(default_factory=set)
    long: set[int] = field(default_factory=set)
    offset: int = 0

    def any_in(self, marks: set[int], start: int, end: int) -> bool:
        return bool(marks) and any(ln - self.offset in marks for ln in range(start, end + 1))


_MALFORMED = "malformed CSV: "


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The csv module's next row, with the field cap set only while it reads (it is process-wide).

    A field longer than `settings.MAX_FIELD_CHARS` (an unclosed quote swallowing the file) is a
    csv.Error: the row is rejected, and memory is bounded by the cap.
    """
    previous = csv.field_size_limit(max(int(settings.MAX_FIELD_CHARS), 1))
    try:
        return next(reader, None)
    finally:
        csv.field_size_limit(previous)


def _classify_row(row: list[str], start: int, end: int, layout: _Layout,
                  marks: _LineMarks) -> list[str] | dict[str, object] | None:
    """A row read by the csv module from lines ``start``..``end`` -> the row, a reject, or None (blank)."""
    if (not row or (len(row) == 1 and not row[0].strip())) and not marks.any_in(marks.long, start, start):
        return None
    if len(row) == layout.n_fields + 1 and not row[-1].strip():
        row = row[:-1]  # a trailing delimiter (some exports end every line with one)
    raw = layout.raw(row)
    if marks.any_in(marks.long, start, end):
        return layout.reject(start, f"line longer than {settings.MAX_LINE_BYTES:,} bytes (not read)",
                             "" if layout.person_positions else raw[:200])
    if marks.any_in(marks.bad, start, end):
        return layout.reject(start, f"undecodable bytes (not valid {layout.encoding})", raw)
    if (len(row) == layout.n_fields and row[0].strip().upper() == layout.header_first
            and tuple(normalize_header(c) for c in row) == layout.header_norm):
        return layout.reject(start, "repeated header line", raw)
    if len(row) != layout.n_fields:
        return layout.reject(start, f"wrong field count: expected {layout.n_fields}, found {len(row)}", raw)
    return row


def _rows_piece(layout: _Layout, rows: list[list[str]], lines: list[int],
                rejects: list[dict[str, object]]) -> _Piece:
    if not rows:
        return _Piece(layout.empty_table(), np.array([], dtype=np.int64), rejects)
    table = pa.table({f"f{i}": pa.array([r[i] for r in rows], pa.string()) for i in range(layout.n_fields)})
    return _Piece(table, np.asarray(lines, dtype=np.int64), rejects)


def _csv_module_pieces(lines: Iterator[str], layout: _Layout, base_line: int, marks: _LineMarks,
                       piece_rows: int) -> Iterator[_Piece]:
    """The row-by-row reader (csv module): the fallback for what pyarrow cannot read exactly.

    ``lines`` are decoded physical lines; the first is line ``base_line + 1``.
    """
    reader = csv.reader(lines, delimiter=layout.delimiter)
    rows: list[list[str]] = []
    row_lines: list[int] = []
    rejects: list[dict[str, object]] = []
    last_line = base_line
    while True:
        try:
            row = _next_row(reader)
        except csv.Error as exc:
            last_line = reader.line_num + base_line
            rejects.append(layout.reject(last_line, f"{_MALFORMED}{exc}"))
            continue
        if row is None:
            break
        start_line, last_line = last_line + 1, reader.line_num + base_line
        outcome = _classify_row(row, start_line, last_line, layout, marks)
        if isinstance(outcome, dict):
            rejects.append(outcome)
        elif outcome is not None:
            rows.append(outcome)
            row_lines.append(start_line)
        if len(rows) + len(rejects) >= piece_rows:
            yield _rows_piece(layout, rows, row_lines, rejects)
            rows, row_lines, rejects = [], [], []
    if rows or rejects:
        yield _rows_piece(layout, rows, row_lines, rejects)


def _cut_line(piece: _Piece, chunk_rows: int) -> int | None:
    """The line ending the next chunk, or None while fewer rows are pending.

    As the row-by-row reader always did, a chunk closes at the first row, counted from
    ``chunk_rows``, that is not a malformed-CSV reject.
    """
    if piece.counted < chunk_rows:
        return None
    rej_lines = np.array([int(r["source_line"]) for r in piece.rejects], dtype=np.int64)  # type: ignore[call-overload]
    rej_ok = np.array([not str(r["reason"]).startswith(_MALFORMED) for r in piece.rejects], dtype=bool)
    all_lines = np.concatenate([piece.lines, rej_lines])
    order = np.argsort(all_lines, kind="stable")
    ok = np.concatenate([np.ones(len(piece.lines), dtype=bool), rej_ok])[order]
    ok[: chunk_rows - 1] = False
    hits = np.flatnonzero(ok)
    return int(all_lines[order][hits[0]]) if hits.size else None


def _split_piece(piece: _Piece, line: int) -> tuple[_Piece, _Piece]:
    """Rows up to ``line`` and the rest."""
    k = int(np.searchsorted(piece.lines, line, side="right"))
    head = _Piece(piece.table.slice(0, k), piece.lines[:k],
                  [r for r in piece.rejects if int(r["source_line"]) <= line])  # type: ignore[call-overload]
    tail = _Piece(piece.table.slice(k), piece.lines[k:],
                  [r for r in piece.rejects if int(r["source_line"]) > line])  # type: ignore[call-overload]
    return head, tail


def _join_pieces(a: _Piece, b: _Piece) -> _Piece:
    return _Piece(pa.concat_tables([a.table, b.table]), np.concatenate([a.lines, b.lines]),
                  a.rejects + b.rejects)


def _chunked(pieces: Iterator[_Piece], layout: _Layout, chunk_rows: int) -> Iterator[_Piece]:
    """Pieces re-cut into chunks of ``chunk_rows`` counted rows (the last one shorter).

    A file with no rows still gives one empty chunk, so callers learn its format.
    """
    pending = _Piece(layout.empty_table(), np.array([], dtype=np.int64), [])
    yielded = False
    for piece in pieces:
        pending = _join_pieces(pending, piece)
        while (line := _cut_line(pending, max(chunk_rows, 1))) is not None:
            head, pending = _split_piece(pending, line)
            yield head
            yielded = True
    if pending.counted or not yielded:
        yield pending


#: Bytes read per block on the columnar path (about 5,000 LMPD rows; larger blocks are no
#: faster and leave more memory behind in the allocators).
_BLOCK_BYTES = 1 << 20


def _repeated_headers(table: pa.Table, lines: np.ndarray, layout: _Layout) -> tuple[pa.Table, np.ndarray, list[dict[str, object]]]:
    """Header lines repeated inside the data (files concatenated) -> rejects."""
    first = table.column(0)
    maybe = pc.or_(pc.invert(pc.string_is_ascii(first)),
                   pc.match_substring(first, layout.header_first, ignore_case=True))
    candidates = np.flatnonzero(np.asarray(maybe.to_numpy(zero_copy_only=False), dtype=bool))
    repeats: list[int] = []
    for pos in candidates.tolist():
        row = [str(v) for v in table.slice(pos, 1).to_pylist()[0].values()]
        if row[0].strip().upper() == layout.header_first and \
                tuple(normalize_header(c) for c in row) == layout.header_norm:
            repeats.append(pos)
    if not repeats:
        return table, lines, []
    rejects = [layout.reject(int(lines[p]), "repeated header line",
                             layout.raw([str(v) for v in table.slice(p, 1).to_pylist()[0].values()]))
               for p in repeats]
    keep = np.ones(len(lines), dtype=bool)
    keep[repeats] = False
    return table.filter(pa.array(keep)), lines[keep], rejects


def _block_pieces(block: bytes, first_line: int, layout: _Layout, chunk_rows: int) -> Iterator[_Piece] | None:
    """One block of whole lines as pieces; None when the rest of the file needs the csv module.

    pyarrow reads it when `sources_arrow.is_simple_block` holds and every row has the header's
    field count; otherwise the csv module reads the block alone (its rows end inside it). A
    block whose quoting is not simple may open a quoted line break: None.
    """
    cap = min(max(int(settings.MAX_LINE_BYTES), 2), max(int(settings.MAX_FIELD_CHARS), 1))
    if is_simple_block(block, layout.delimiter, cap):
        table = parse_block(block, layout.delimiter, layout.n_fields)
        if table is not None:
            lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
            return iter([_Piece(*_repeated_headers(table, lines, layout))])
    elif not quoting_is_simple(block, layout.delimiter):
        return None
    log.debug("%s: lines from %d read by the csv module", layout.path, first_line)
    marks = _LineMarks(offset=first_line - 1)
    lines_iter = _decode(io.BytesIO(block), layout.encoding, marks.bad, marks.long)
    return _csv_module_pieces(lines_iter, layout, first_line - 1, marks, chunk_rows)


def _columnar_pieces(fh: BinaryIO, layout: _Layout, first_line: int, chunk_rows: int) -> Iterator[_Piece]:
    """Blocks of a UTF-8 file after its header; from the first block pyarrow cannot read
    exactly (a quoted line break, a line over the cap, a read error), the csv module reads on."""
    carry, line, offset = b"", first_line, fh.tell()
    cap = max(int(settings.MAX_LINE_BYTES), 2)
    while True:
        try:
            data = fh.read(_BLOCK_BYTES)
        except (EOFError, OSError, zlib.error):
            data = None
        block, rest = (carry, b"") if not data else split_block(carry + data)
        pieces = _block_pieces(block, line, layout, chunk_rows) if block and data is not None else None
        if data is None or (block and pieces is None) or (not block and len(rest) >= cap):
            log.info("%s: lines from %d read by the csv module", layout.path, line)
            yield from _csv_module_tail(layout, offset, line, chunk_rows)
            return
        if pieces is not None:
            yield from pieces
        if not data:
            return
        carry, line, offset = rest, line + block.count(b"\n"), offset + len(block)


def _csv_module_tail(layout: _Layout, offset: int, first_line: int, chunk_rows: int) -> Iterator[_Piece]:
    """The csv module reads the file from byte ``offset`` (line ``first_line``) to its end."""
    with _open_binary(layout.path) as fh:
        try:
            fh.seek(offset)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputFileError(f"{layout.path}: cannot read past some point of the file ({exc}).") from None
        marks = _LineMarks(offset=first_line - 1)
        lines = _decoded_lines(fh, layout.encoding, marks.bad, layout.path, marks.long)
        yield from _csv_module_pieces(lines, layout, first_line - 1, marks, chunk_rows)


@dataclass
class _Header:
    """The header row found at the top of a file, and the decoder state after it."""

    cells: list[str]
    delimiter: str
    line: int  # its physical line number
    encoding: str


def _read_header(lines: Iterator[str], path: Path, encoding: str, marks: _LineMarks) -> _Header:
    """Skip blank lines and an Excel ``sep=`` line; the header row and its delimiter."""
    first = next(lines, None)
    header_line = 1
    while first is not None and not first.strip():
        first = next(lines, None)
        header_line += 1
    if first is None:
        raise InputFileError(f"{path}: the file is empty (no header row).")
    if marks.long:  # the header, or a line before it, is over the cap
        raise InputFileError(f"{path}: line {min(marks.long)} is longer than "
                             f"{settings.MAX_LINE_BYTES:,} bytes before any header: not an "
                             "LMPD CSV file (binary or corrupt?).")
    if header_line in marks.bad:
        raise InputFileError(f"{path}: the header row is not valid {encoding}; pass --encoding.")
    first = first.lstrip("\ufeff")
    forced_delimiter = _excel_sep_line(first)
    if forced_delimiter:  # Excel's "sep=;" line names the delimiter; the header follows
        first = next(lines, None)
        header_line += 1
        if first is None or not first.strip():
            raise InputFileError(f"{path}: no header row after the 'sep=' line.")
    delimiter = forced_delimiter or _sniff_delimiter(first)
    return _Header(next(csv.reader([first], delimiter=delimiter)), delimiter, header_line, encoding)


def _layout(header: _Header, index: dict[str, int], path: Path) -> _Layout:
    cells = header.cells
    # Rejects keep the raw row for review, but never a person column (sex, race, age,
    # home city/state/ZIP, any PERSON* column).
    person_positions = frozenset({index[f] for f in PERSON_FIELDS if f in index}
                                 | {i for i, h in enumerate(cells) if is_person_column(h)})
    return _Layout(path=path, encoding=header.encoding, delimiter=header.delimiter,
                   n_fields=len(cells), header_first=cells[0].strip().upper(),
                   header_norm=tuple(normalize_header(h) for h in cells),
                   person_positions=person_positions)


def _resolve_options(path: Path, source: str | None,
                     mapping: dict[str, object] | Path | str | None
                     ) -> tuple[str | None, dict[str, object] | None]:
    if source is not None and source not in SOURCES:
        raise InputFileError(f"unknown source {source!r}; choose one of {list(SOURCES)}.")
    if isinstance(mapping, (str, Path)):
        mapping = load_mapping(mapping)
    if mapping and mapping.get("source") and source is None:
        source = str(mapping["source"])
    return source, mapping


def iter_chunks(
    path: Path | str,
    source: str | None = None,
    mapping: dict[str, object] | Path | str | None = None,
    encoding: str = "utf-8",
    chunk_rows: int = settings.READ_CHUNK_ROWS,
) -> Iterator[Chunk]:
    """Stream a file as canonical chunks.

    UTF-8 files are read in blocks by ``pyarrow.csv`` and cleaned, dated and hashed column by
    column; a block pyarrow cannot read exactly as the csv module would (a wrong field count,
    a blank line, bad bytes, a quoted line break, an over-long line) is read by the csv
    module, from that block to the end of the file when a row may span blocks. Other
    encodings are read by the csv module. Either way the chunks, line numbers and rejects are
    the same.

    Parameters
    ----------
    path
        An LMPD CSV export (comma, semicolon, tab or pipe delimited; UTF-8 with or without
        BOM, or UTF-16 with a BOM as Excel's "Unicode text" writes it; plain or gzip-compressed).
    source
        Force a format (one of `SOURCES`); by default it is detected from the header.
    mapping
        A column mapping (see `load_mapping`) or its path, for renamed columns.
    encoding
        Text encoding of the file; rows that are not valid in it are rejected with their line
        number, not guessed (e.g. Latin-1 bytes under the utf-8 default).
    chunk_rows
        Rows per chunk (every chunk holds exactly this many rows read, counting rejects, but
        the last; a malformed-CSV reject never closes a chunk).

    Raises
    ------
    InputFileError
        The file is missing, empty, a ZIP archive, a corrupt gzip stream, in an unknown
        encoding, or of no recognisable format.
    MissingColumnError
        A required column is absent (the message lists the columns found).
    """
    path = Path(path)
    source, mapping = _resolve_options(path, source, mapping)
    fh = _open_binary(path)
    with fh:
        marks = _LineMarks()
        encoding = _resolve_encoding(fh, encoding, path)
        lines = _decoded_lines(fh, encoding, marks.bad, path, marks.long)
        header = _read_header(lines, path, encoding, marks)
        source = source or detect_source(header.cells, path)
        index = _column_index(header.cells, source, mapping, path)
        _refuse_person_sources(index, header.cells, path)
        layout = _layout(header, index, path)
        builder = _RecordBuilder(path, source, index)
        if encoding == "utf-8" and layout.n_fields > 1:
            pieces = _columnar_pieces(fh, layout, header.line + 1, chunk_rows)
        else:
            pieces = _csv_module_pieces(lines, layout, header.line, marks, chunk_rows)
        for piece in _chunked(pieces, layout, chunk_rows):
            yield _make_chunk(builder, layout, piece)


def _make_chunk(builder: _RecordBuilder, layout: _Layout, piece: _Piece) -> Chunk:
    records, rejects, persons = builder.build(piece.table, piece.lines)
    if rejects:
        positions = np.searchsorted(piece.lines, [int(r["source_line"]) for r in rejects])  # type: ignore[call-overload]
        rows = piece.table.take(pa.array(positions)).to_pylist()
        for rej, row in zip(rejects, rows, strict=True):
            rej["raw"] = layout.raw([str(v) for v in row.values()])
    all_rejects = pd.DataFrame(piece.rejects + rejects, columns=list(REJECT_COLUMNS))
    all_rejects = all_rejects.fillna("").sort_values("source_line", kind="stable").reset_index(drop=True)
    chunk = Chunk(records=records, rejects=all_rejects, persons=persons, rows_read=piece.counted,
                  source=builder.source)
    assert chunk.rows_read == len(chunk.records) + len(chunk.rejects), "row accounting broke"
    return chunk


def _raw_text(row: list[str], delimiter: str, n_fields: int,
              person_positions: frozenset[int]) -> str:
    """The row as published (first 500 characters), with person fields withheld."""
    if person_positions:
        if len(row) != n_fields:  # positions cannot be trusted: withhold the whole row
            return f"(withheld: {len(row)} fields in a file with person columns)"
        row = ["" if i in person_positions else v for i, v in enumerate(row)]
    return delimiter.join(row)[:500]


def read_records(
    path: Path | str,
    source: str | None = None,
    mapping: dict[str, object] | Path | str | None = None,
    encoding: str = "utf-8",
) -> ReadResult:
    """Read a whole file into one canonical table (see `iter_chunks` for the parameters)."""
    path = Path(path)
    chunks = list(iter_chunks(path, source=source, mapping=mapping, encoding=encoding))
    if chunks:
        detected = chunks[0].source
    else:  # header only: nothing streamed, but the format is still known
        if isinstance(mapping, (str, Path)):
            mapping = load_mapping(mapping)
        detected = source or (str(mapping["source"]) if mapping and mapping.get("source") else "") or (
            _detect_from_file(path, encoding))
    def cat(frames: list[pd.DataFrame], columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    return ReadResult(
        path=path,
        source=str(detected),
        records=cat([c.records for c in chunks], RECORD_COLUMNS),
        rejects=cat([c.rejects for c in chunks], REJECT_COLUMNS),
        persons=cat([c.persons for c in chunks], ["record_id", *PERSON_FIELDS]),
        rows_read=sum(c.rows_read for c in chunks),
    )


def _detect_from_file(path: Path, encoding: str) -> str:
    with path.open("rb") as fh:
        first = ""
        while raw := fh.readline(settings.MAX_LINE_BYTES):  # the first non-blank line
            if (first := raw.decode(encoding, errors="replace").lstrip("\ufeff")).strip():
                break
    header = next(csv.reader([first], delimiter=_sniff_delimiter(first)))
    return detect_source(header, path)


def is_null(value: object) -> bool:
    """True for the strings LMPD uses for a missing value."""
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() in settings.NULL_STRINGS
