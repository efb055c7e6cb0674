"""Sampling frames and time coverage: what share of each year the records stand for.

Every ingested file declares a sample fraction F (0 < F <= 1; 1 = a complete extract),
stored with its sha256 (`geo_lead.store.Store.put_file_frame`). The shipped LMPD samples
declare theirs in ``data/lmpd/sampling.csv`` (`shipped_fraction`, looked up by sha256); a
user's file by ``--sample-fraction`` (default 1).

Frames
------
The records of one source (``crime-pre2023``, ``crime-2023``, ``citations``) and one calendar
year of their report date (occurrence date when unreported) form a frame. Its fraction is

* 1 when a complete file (F = 1) of that source covers the year (it supersedes the samples:
  its records and theirs share ``record_id`` and are stored once), else
* min(1, the sum of the fractions of the files covering that year), the files being disjoint
  samples of it.

A record weighs 1 / its frame's fraction (`record_weights`); records of a year no file
declares (a store ingested before frames existed, with no declaration found) weigh 1.

Coverage
--------
`coverage` is the union of the files' report-date spans (never their sum), clipped to a
window: the one helper behind every "per year" and "per month" figure.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12.0


# --- declarations --------------------------------------------------------------------------
def check_fraction(value: Any, what: str = "--sample-fraction") -> float:
    """A sample fraction as float, or GeoLeadError naming the value and the allowed range."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise GeoLeadError(f"{what} {value!r}: not a number; give the share of the year's rows "
                           "the file holds, 0 < F <= 1 (1 = complete).") from None
    if not (0.0 < f <= 1.0):
        raise GeoLeadError(f"{what} {value!r}: must be > 0 and <= 1 (1 = a complete extract).")
    return f


@lru_cache(maxsize=4)
def _shipped_table(path: str) -> dict[str, dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        return {}
    with p.open(encoding="utf-8", newline="") as fh:
        return {row["sha256"].strip().lower(): row for row in csv.DictReader(fh) if row.get("sha256")}


def shipped_fraction(sha256: str, table: Path | None = None) -> float | None:
    """The declared fraction of a shipped file (``data/lmpd/sampling.csv``) by sha256, or None."""
    row = _shipped_table(str(table or settings.SHIPPED_SAMPLING_FILE)).get(sha256.lower())
    if row is None:
        return None
    return check_fraction(row["sample_fraction"], f"{settings.SHIPPED_SAMPLING_FILE.name} {row.get('file')}")


def declared_fraction(sha256: str, given: float | None, name: str = "") -> tuple[float, str]:
    """The fraction a file is ingested with, and where it came from.

    A shipped file (its sha256 in the manifest) takes the manifest's fraction; an explicit
    `given` that disagrees is an error (the manifest is the record of how it was drawn). Any
    other file takes `given`, default 1 (a complete extract).
    """
    shipped = shipped_fraction(sha256) if sha256 else None
    if shipped is not None:
        if given is not None and abs(float(given) - shipped) > 1e-9:
            raise GeoLeadError(
                f"{name or sha256[:12]}: --sample-fraction {given:g} disagrees with the shipped "
                f"manifest {settings.SHIPPED_SAMPLING_FILE} ({shipped:g}); drop the option for "
                "shipped files.")
        return shipped, "manifest"
    if given is None:
        return 1.0, "default (complete)"
    return check_fraction(given), "declared"


# --- frames --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileFrame:
    """One ingested file's declaration: fraction, source, the report years and span it covers."""

    sha256: str
    file: str
    source: str
    sample_fraction: float
    years: tuple[int, ...]
    first: str  # ISO date-time of its earliest report date
    last: str   # ... and latest

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["years"] = list(self.years)
        return d


@dataclass(frozen=True)
class Frame:
    """One (source, year) frame: its fraction and the files that make it."""

    source: str
    year: int
    fraction: float
    complete: bool
    files: tuple[str, ...]
    capped: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = list(self.files)
        return d


@dataclass
class Frames:
    """Every file's declaration; `frame` gives a (source, year)'s fraction."""

    files: list[FileFrame] = field(default_factory=list)

    def frames(self) -> list[Frame]:
        """One `Frame` per (source, year) any file covers, sorted."""
        by_key: dict[tuple[str, int], list[FileFrame]] = {}
        for f in self.files:
            for y in f.years:
                by_key.setdefault((f.source, int(y)), []).append(f)
        out = []
        for (source, year), files in sorted(by_key.items()):
            complete = [f for f in files if f.sample_fraction >= 1.0]
            if complete:
                out.append(Frame(source, year, 1.0, True, tuple(f.file for f in complete)))
                continue
            total = float(sum(f.sample_fraction for f in files))
            out.append(Frame(source, year, min(1.0, total), False, tuple(f.file for f in files),
                             capped=total > 1.0))
        return out

    def fraction(self, source: str, year: int) -> float | None:
        for fr in self.frames():
            if fr.source == source and fr.year == year:
                return fr.fraction
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"files": [f.to_dict() for f in self.files], "frames": [fr.to_dict() for fr in self.frames()]}

    def describe(self) -> list[str]:
        """One line per frame: ``crime-pre2023 2017: F = 0.19 (a.csv 0.14 + b.csv 0.05) -> weight 5.26``."""
        frac = {f.file: f.sample_fraction for f in self.files}
        lines = []
        for fr in self.frames():
            parts = " + ".join(f"{n} {frac.get(n, 1.0):g}" for n in fr.files)
            how = "complete" if fr.complete else ("capped at 1" if fr.capped else "sample")
            lines.append(f"{fr.source} {fr.year}: F = {fr.fraction:.4g} ({parts}; {how}) -> "
                         f"each record weighs {1 / fr.fraction:.3g}")
        return lines


def report_dates(records: pd.DataFrame) -> pd.Series:
    """Each record's report date (occurrence date when there is none) as datetimes (NaT if neither)."""
    def parse(col: str) -> pd.Series:
        if col not in records:
            return pd.Series(pd.NaT, index=records.index, dtype="datetime64[ns]")
        v = records[col]
        if v.dtype.kind == "M":
            return v
        t = pd.to_datetime(v.where(v.astype(str) != ""), errors="coerce", format="ISO8601")
        return t.dt.tz_localize(None) if getattr(t.dt, "tz", None) is not None else t

    return parse("reported_at").fillna(parse("occurred_at"))


def file_frame(sha256: str, file: str, source: str, fraction: float, dates: pd.Series) -> FileFrame:
    """A file's declaration from its accepted records' report dates (`report_dates`)."""
    d = pd.Series(dates).dropna()
    years = tuple(sorted({int(y) for y in d.dt.year})) if len(d) else ()
    fmt = "%Y-%m-%dT%H:%M:%S"
    return FileFrame(sha256, file, source, float(fraction), years,
                     d.min().strftime(fmt) if len(d) else "", d.max().strftime(fmt) if len(d) else "")


def load_frames(store: Store) -> Frames:
    """The store's declarations (`Store.read_file_frames`).

    A store ingested before declarations were stored has none: its files are then
    reconstructed from the ``ingests`` table (fraction from the shipped manifest by sha256,
    else 1) and the records' report dates per ``source_file``.
    """
    rows = store.read_file_frames()
    files = [FileFrame(r["file_sha256"], r["source_file"], r["source"], float(r["sample_fraction"]),
                       tuple(int(y) for y in str(r["years"] or "").split(";") if y),
                       r["report_first"] or "", r["report_last"] or "")
             for r in rows.to_dict("records")]
    known = {f.sha256 for f in files}
    legacy = [r for r in store.read_ingested_files().to_dict("records") if r["file_sha256"] not in known]
    if legacy:
        spans = store.report_spans_by_file()
        for r in legacy:
            sp = spans.get(r["source_file"])
            if sp is None:
                continue
            frac = shipped_fraction(r["file_sha256"] or "") or 1.0
            files.append(FileFrame(r["file_sha256"] or "", r["source_file"], sp["source"], frac,
                                   tuple(sp["years"]), sp["first"], sp["last"]))
            known.add(r["file_sha256"])
    return Frames(files)


def record_weights(records: pd.DataFrame, frames: Frames) -> pd.Series:
    """Weight of each record: 1 / the fraction of its (source, report year) frame.

    Parameters
    ----------
    records
        Records with ``source`` and ``reported_at`` / ``occurred_at``.
    frames
        The store's declarations (`load_frames`).

    Returns
    -------
    pandas.Series
        Float weights aligned to ``records.index`` (1 where no frame covers the record).
    """
    out = pd.Series(1.0, index=records.index, dtype=float)
    table = frames.frames()
    if records.empty or not table or "source" not in records:
        return out
    year = report_dates(records).dt.year
    key = pd.DataFrame({"source": records["source"].fillna("").astype(str).to_numpy(),
                        "year": year.fillna(-1).astype(int).to_numpy()}, index=records.index)
    lookup = pd.Series({(fr.source, fr.year): 1.0 / fr.fraction for fr in table})
    idx = pd.MultiIndex.from_frame(key)
    w = lookup.reindex(idx).to_numpy(dtype=float)
    out[:] = np.where(np.isnan(w), 1.0, w)
    return out


def attach_weights(store: Store, records: pd.DataFrame, frames: Frames | None = None) -> pd.DataFrame:
    """`records` with a float ``weight`` column (`record_weights` of the store's frames); in place."""
    records["weight"] = record_weights(records, load_frames(store) if frames is None else frames).to_numpy()
    return records


#: Record columns `record_weights` reads.
WEIGHT_COLUMNS: tuple[str, ...] = ("source", "reported_at", "occurred_at")


# --- coverage --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coverage:
    """Time the data cover: the union of the files' report-date spans, clipped to a window."""

    days: float
    spans: tuple[tuple[str, str], ...] = ()

    @property
    def years(self) -> float:
        return self.days / DAYS_PER_YEAR

    @property
    def months(self) -> float:
        return self.days / DAYS_PER_MONTH

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "years": self.years, "months": self.months, "spans": [list(s) for s in self.spans]}


def _day(value: Any) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise GeoLeadError(f"{value!r}: not a date; use YYYY-MM-DD.") from None


def coverage(spans: Iterable[tuple[Any, Any]] | Frames, since: Any = None, until: Any = None) -> Coverage:
    """The union of date spans ``(first, last)``, clipped to [since, until] (until: its whole day).

    Parameters
    ----------
    spans
        ``(first, last)`` pairs (anything `pandas.Timestamp` reads), or `Frames` (its files'
        report-date spans).
    since, until
        Optional window; ``until`` given as a date includes that day.
    """
    if isinstance(spans, Frames):
        spans = [(f.first, f.last) for f in spans.files if f.first and f.last]
    start, end = _day(since), _day(until)
    if end is not None and end == end.normalize():
        end = end + pd.Timedelta(days=1)
    intervals = []
    for lo, hi in spans:
        lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
        if pd.isna(lo) or pd.isna(hi):
            continue
        lo = max(lo, start) if start is not None else lo
        hi = min(hi, end) if end is not None else hi
        if hi > lo:
            intervals.append((lo, hi))
    merged: list[list[pd.Timestamp]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    days = sum(((hi - lo) for lo, hi in merged), pd.Timedelta(0)) / pd.Timedelta(days=1)
    fmt = "%Y-%m-%d"
    return Coverage(float(days), tuple((lo.strftime(fmt), hi.strftime(fmt)) for lo, hi in merged))


def spans_from_records(records: pd.DataFrame, by: Sequence[str] = ("source_file",)) -> list[tuple[Any, Any]]:
    """Per group of `by` (default: the file name), the [min, max] of the records' report dates.

    For records without a store (tests, a frame handed around): the files' spans as their
    records show them. `coverage` of these equals `coverage` of the stored declarations when
    every file's records are present.
    """
    if records.empty:
        return []
    when = report_dates(records)
    keys = [records[c].fillna("").astype(str).to_numpy() for c in by if c in records] or [np.zeros(len(records))]
    frame = pd.DataFrame({"when": when.to_numpy()}).assign(**{f"k{i}": k for i, k in enumerate(keys)}).dropna()
    if frame.empty:
        return []
    g = frame.groupby([f"k{i}" for i in range(len(keys))])["when"].agg(["min", "max"])
    return list(zip(g["min"], g["max"], strict=True))


def coverage_of(records: pd.DataFrame, frames: Frames | None = None, since: Any = None,
                until: Any = None) -> Coverage:
    """`coverage` of the stored declarations when given, else of the records' own file spans."""
    if frames is not None and frames.files:
        return coverage(frames, since, until)
    return coverage(spans_from_records(records), since, until)


def frames_summary(frames: Frames) -> Mapping[str, Any]:
    """The ``frames`` object of `geo-lead run --json` and the manifest (`Frames.to_dict`)."""
    return frames.to_dict()
