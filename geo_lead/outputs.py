"""Every file geo_lead writes for people: atomic, and CSV cells that cannot attack a spreadsheet.

Atomic outputs
    `atomic_path` yields a temporary name in the target's own folder; the caller writes
    there and, only when the block ends without an error, the file is renamed over the
    target (``os.replace``: atomic on POSIX and Windows within one file system). A full
    disk, a crash or Ctrl-C therefore leaves either the old file or the new one, never a
    truncated page, and the temporary file is removed. `write_text` is the one-call form.

Safe CSV
    A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return as a formula (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``). Following
    OWASP's "CSV injection" advice, `write_csv` prefixes such text cells with a single quote
    (``'=HYPERLINK(...)``), which spreadsheets show as text. Numbers are written as numbers
    (``-85.79`` stays a number); only text cells are changed. GeoPackage and GeoParquet
    values are never changed: they are typed, not parsed as formulas.

Free text in pages
    `cap_text` shortens text shown in an HTML page to `settings.PAGE_TEXT_MAX_CHARS`
    characters with an ellipsis, so one record with a 10 MB description cannot bloat a page.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geo_lead import settings


def sha256_file(path: Path | str, block_bytes: int = 1 << 20) -> str:
    """sha256 (hex) of the file's bytes, read in blocks (`OSError` when it cannot be read)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically.

    Parameters
    ----------
    path
        The target file. Its folder must exist (callers create it, saying so when they do).
    suffix
        Suffix of the temporary name (default: the target's, which GDAL and pandas use to
        pick a format).

    Yields
    ------
    Path
        Where to write. Nothing is moved if the block raises; the temporary file is removed.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{path.suffix if suffix is None else suffix}.tmp",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        # mkstemp makes the file private (0600): give it the mode the target has, or the one
        # a plain open() would give, so a page stays readable by whoever read it before
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    """The process umask (read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Push the written bytes to disk before the rename (a power cut then keeps one file whole)."""
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see `atomic_path`); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'``; others unchanged.

    >>> neutralise_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise_cell(-85.79)
    -85.79
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(frame: Any) -> Any:
    """A copy of a DataFrame whose text cells (object/string columns) are neutralised."""
    out = frame.copy()
    for col in _text_columns(out):
        out[col] = out[col].map(neutralise_cell, na_action="ignore")
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def write_csv(frame: Any, path: Path | str, *, append: bool = False, atomic: bool = True,
              **to_csv: Any) -> Path:
    """Write a DataFrame as CSV with formula cells neutralised (see the module docstring).

    Parameters
    ----------
    frame
        The table (index not written unless ``index=True`` is passed).
    path
        Target file.
    append
        Append rows without a header (for streamed pieces; then the caller makes the whole
        file atomic, e.g. by writing to a temporary name it renames itself).
    atomic
        Write to a temporary file and rename (ignored with `append`).
    **to_csv
        Passed to ``DataFrame.to_csv`` (e.g. ``float_format``).

    Returns
    -------
    Path
    """
    import csv

    path = Path(path)
    to_csv.setdefault("index", False)
    safe = neutralise_frame(frame)
    if _has_carriage_return(safe):
        # The csv writer quotes a field holding "\n" but not a lone "\r", which a reader then
        # takes for a line end: quote every text field of this piece (numbers stay bare).
        to_csv.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    if append:
        safe.to_csv(path, mode="a", header=False, **to_csv)
    elif atomic:
        with atomic_path(path) as tmp:
            safe.to_csv(tmp, **to_csv)
    else:
        safe.to_csv(path, **to_csv)
    return path


def _text_columns(frame: Any) -> list[Any]:
    import pandas as pd

    return [c for c in frame.columns
            if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)]


def _has_carriage_return(frame: Any) -> bool:
    if any("\r" in str(c) for c in frame.columns):
        return True
    return any(frame[c].map(lambda v: isinstance(v, str) and "\r" in v, na_action="ignore").any()
               for c in _text_columns(frame))


def cap_text(value: Any, max_chars: int | None = None) -> str:
    """Text for a page: at most `max_chars` (default `settings.PAGE_TEXT_MAX_CHARS`)
    characters, the cut marked with an ellipsis (``…``)."""
    text = "" if value is None else str(value)
    limit = settings.PAGE_TEXT_MAX_CHARS if max_chars is None else max_chars
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
