"""Columnar CSV blocks for `sources`: byte blocks of whole lines, parsed by ``pyarrow.csv``.

`sources.iter_chunks` reads a UTF-8 file after its header in byte blocks that end on a line
break (`split_block`). A block goes to ``pyarrow.csv`` only when every physical line in it is
one complete row that the csv module would read the same way (`is_simple_block`): no NUL
byte, valid UTF-8, no carriage return except in ``\\r\\n``, no empty line, no byte-order
mark at its start, no line at or over the byte cap, every quoted field well formed and on
one line. Then row ``i`` of the block is physical line ``first_line + i``. `parse_block`
returns None when pyarrow finds a row with the wrong number of fields; the caller reads that
block with the csv module instead. `clean_column` is the vectorised form of the reader's
per-field clean-up (trim, whitespace collapse, the NULL spellings), equal to Python's
``str.strip`` / ``str.split`` on every value.

This module reads no file and imports nothing from geo_lead: it works on bytes and arrays.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

#: The ASCII characters Python's ``str.isspace`` accepts (``str.strip``/``str.split`` use them).
PY_ASCII_WHITESPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_WS_RUN = "[ \t\n\x0b\x0c\r\x1c-\x1f]+"  # RE2: a run of PY_ASCII_WHITESPACE


def split_block(data: bytes) -> tuple[bytes, bytes]:
    """``data`` -> (its whole lines, the unfinished last line); ``(b"", data)`` when no line ends."""
    end = data.rfind(b"\n")
    return data[: end + 1], data[end + 1:]


def _well_formed_line(delimiter: str) -> re.Pattern[bytes]:
    """One line of unquoted fields and ``"..."`` fields (``""`` inside), nothing else."""
    d = re.escape(delimiter.encode())
    field = rb'(?:[^"\r\n' + d + rb']*|"(?:[^"\r\n]|"")*")'
    return re.compile(field + rb"(?:" + d + field + rb")*\r?")


_LINE_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def quoting_is_simple(block: bytes, delimiter: str) -> bool:
    """Every line holding a quote is a well-formed row of its own (no quoted line break)."""
    pattern = _LINE_PATTERNS.setdefault(delimiter, _well_formed_line(delimiter))
    pos = block.find(b'"')
    while pos >= 0:
        start = block.rfind(b"\n", 0, pos) + 1
        end = block.find(b"\n", pos)
        end = len(block) if end < 0 else end
        if not pattern.fullmatch(block, start, end):
            return False
        pos = block.find(b'"', end)
    return True


def _longest_line(block: bytes) -> int:
    """Length in bytes of the longest line of ``block``, its line break included."""
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    if ends.size == 0:
        return len(block)
    starts = np.concatenate(([0], ends[:-1] + 1))
    longest = int((ends - starts + 1).max())
    return max(longest, len(block) - int(ends[-1]) - 1)


def is_simple_block(block: bytes, delimiter: str, max_line_bytes: int) -> bool:
    """True when each physical line of ``block`` is one row both parsers read alike.

    ``block`` holds whole lines (it ends with a line break, or is the file's last line).
    ``max_line_bytes`` is the smaller of the line-byte and field-character caps: a line under
    it cannot trip either.
    """
    if not block or b"\x00" in block or block.startswith((b"\n", b"\r\n", b"\xef\xbb\xbf")):
        return False
    if b"\n\n" in block or b"\n\r\n" in block or block.count(b"\r") != block.count(b"\r\n"):
        return False
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if len(block) >= max_line_bytes and _longest_line(block) >= max_line_bytes:
        return False
    return quoting_is_simple(block, delimiter)


def parse_block(block: bytes, delimiter: str, n_fields: int) -> pa.Table | None:
    """The rows of a simple block as ``n_fields`` string columns, or None on a wrong field count."""
    invalid: list[int] = []

    def on_invalid(_row: object) -> str:
        invalid.append(1)
        return "skip"

    names = [f"f{i}" for i in range(n_fields)]
    with _no_arrow_signal_thread():
        table = pacsv.read_csv(
            pa.BufferReader(block),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                           block_size=max(1 << 22, len(block) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True,
                                             escape_char=False, newlines_in_values=False,
                                             ignore_empty_lines=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False),
        )
    return None if invalid else table


@contextlib.contextmanager
def _no_arrow_signal_thread() -> Iterator[None]:
    """pyarrow's Ctrl-C handling off for the duration (``pyarrow.enable_signal_handlers``).

    In the main thread ``pyarrow.csv.read_csv`` (the only reader here that does) installs a
    signal handler for its read, fed by a signal-receiving thread that Arrow starts once and
    keeps for the rest of the process. That unnamed thread makes `geo_lead.parallel` refuse
    every later fork (`parallel.fork_blocker` counts it), so a run that read a file computed
    its child jobs in the parent. A block is a few MB: Python's own SIGINT handler still
    raises KeyboardInterrupt as soon as its read returns. pyarrow has no getter for the
    setting, so it is turned back on after (its default).
    """
    pa.enable_signal_handlers(False)
    try:
        yield
    finally:
        pa.enable_signal_handlers(True)


def _clean_py(value: str, collapse: bool, nulls: frozenset[str]) -> str:
    text = " ".join(value.split()) if collapse else value.strip()
    return "" if text in nulls else text


def clean_column(values: pa.ChunkedArray | pa.Array, collapse: bool,
                 nulls: Iterable[str]) -> np.ndarray:
    """Trim (and with ``collapse``, turn whitespace runs into one space); NULL spellings -> "".

    Equal, value by value, to ``v.strip()`` (or ``" ".join(v.split())``) followed by the
    ``nulls`` test: ASCII values are done by pyarrow kernels on Python's ASCII whitespace set,
    the rare non-ASCII values (Unicode spaces) by Python itself. Returns an object array of str.
    """
    null_set = frozenset(nulls)
    out = pc.replace_substring_regex(values, pattern=_WS_RUN, replacement=" ") if collapse else values
    out = pc.utf8_trim(out, characters=PY_ASCII_WHITESPACE)
    out = pc.if_else(pc.is_in(out, value_set=pa.array(sorted(null_set), pa.string())), "", out)
    result: np.ndarray = np.asarray(out.to_numpy(zero_copy_only=False), dtype=object)
    non_ascii = np.flatnonzero(~np.asarray(pc.string_is_ascii(values).to_numpy(zero_copy_only=False),
                                           dtype=bool))
    if non_ascii.size:
        originals = pc.take(values, pa.array(non_ascii)).to_pylist()
        result[non_ascii] = [_clean_py(v, collapse, null_set) for v in originals]
    return result
