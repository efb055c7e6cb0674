"""The columnar reader (pyarrow blocks) against the csv-module reader it replaced.

Oracles: the csv-module reader, kept as the fallback and forced here for a whole file; the
content hashes and record ids the csv-module reader gave for the shipped files (pinned as
digests: stores key on them); Python's own ``str.strip``/``str.split`` for the clean-up.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from geo_lead import settings, sources
from geo_lead.sources_arrow import clean_column, is_simple_block, parse_block, split_block

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FIXTURES = Path(__file__).parent / "fixtures"
_LINES_2017 = (LMPD / "crime_data_2017_drug_sample.csv").read_bytes().split(b"\n")
HEADER: bytes = _LINES_2017[0]
BODY: list[bytes] = [ln for ln in _LINES_2017[1:] if ln.strip()]

#: sha256 (first 16 hex) of the file's content_hash and record_id columns, one value a line, as
#: the csv-module reader computed them before the columnar reader existed.
PINNED: dict[str, tuple[int, str, str]] = {
    "crime_data_2016_drug_sample.csv": (2289, "92310fd568401da4", "426274594cad589d"),
    "crime_data_2017_drug_sample.csv": (2147, "8f99495034efc2c4", "e13868f73d0ca31e"),
    "crime_data_2018_drug_sample.csv": (1960, "438e0df01848488c", "3340a2519f757b68"),
    "crime_data_2019_drug_sample.csv": (1123, "5433ee86d84b6fab", "af7a044f37b9a7c7"),
    "crime_data_2023_sample.csv": (989, "aa97f0a0586f4972", "aa9473a97c1356ff"),
    "citations_documented_columns.csv": (5, "1ea425c03180abc2", "4f1f768e5f2fdca4"),
}


def _digest(values: pd.Series) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


def _shipped(name: str) -> Path:
    return LMPD / name if (LMPD / name).exists() else FIXTURES / name


@pytest.mark.parametrize("name", sorted(PINNED))
def test_content_hashes_and_ids_are_the_csv_module_readers(name: str) -> None:
    result = sources.read_records(_shipped(name))
    n, hashes, ids = PINNED[name]
    assert (len(result.records), _digest(result.records["content_hash"]),
            _digest(result.records["record_id"])) == (n, hashes, ids)


def _chunks(path: Path, **kw: object) -> list[sources.Chunk]:
    return list(sources.iter_chunks(path, **kw))  # type: ignore[arg-type]


@pytest.fixture
def csv_module_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every block refused by the columnar path: the csv module reads each file whole."""
    monkeypatch.setattr(sources, "_block_pieces", lambda *_args: None)
    yield


def _same(a: list[sources.Chunk], b: list[sources.Chunk]) -> None:
    assert [c.rows_read for c in a] == [c.rows_read for c in b]
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x.records, y.records, check_exact=True)
        pd.testing.assert_frame_equal(x.rejects, y.rejects, check_exact=True)
        pd.testing.assert_frame_equal(x.persons, y.persons, check_exact=True)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_files_read_alike_by_both_paths(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _shipped(name)
    fast = _chunks(path, chunk_rows=700)
    monkeypatch.setattr(sources, "_block_pieces", lambda *_args: None)
    _same(fast, _chunks(path, chunk_rows=700))


# --- hostile rows: the columnar path must give the csv-module reader's answer --------------
_MUTATIONS = (
    lambda ln: ln.replace(b",", b',"', 1),                    # an unclosed quote
    lambda ln: ln.replace(b",", b',"x\ny",', 1),              # a quoted line break
    lambda ln: ln.replace(b",", b',"a,b""c",', 1),            # a quoted delimiter, an escaped quote
    lambda ln: ln[:5] + b"\x00" + ln[5:],                      # NUL
    lambda ln: ln[:9] + b"\xff\xfe" + ln[9:],                  # not UTF-8
    lambda ln: b"",                                            # blank line
    lambda ln: b"   \t",                                       # blank but for spaces
    lambda ln: ln + b",",                                      # trailing delimiter
    lambda ln: ln + b",x",                                     # a field too many
    lambda ln: ln.rsplit(b",", 3)[0],                          # fields missing
    lambda ln: ln + b"\r",                                     # a carriage return at the end
    lambda ln: ln.replace(b" ", b"\r", 1),                     # a lone carriage return
    lambda ln: HEADER,                                         # the header repeated
    lambda ln: ln.replace(b" ", "\u00a0\u2003".encode(), 2),   # Unicode spaces
    lambda ln: ln.replace(b"402", "\uff14\uff10\uff12".encode(), 1),  # fullwidth ZIP digits
    lambda ln: ln.replace(b" ", b"\x1c", 1),                   # a control char Python calls space
    lambda ln: ln.replace(b"PM", b"XM", 1),                    # an unparseable date
    lambda ln: ln.replace(b",", b', "q" ,', 1),                # quotes after a space
    lambda ln: ln.replace(b",", b',ab"c,', 1),                 # a quote inside a field
    lambda ln: ln.replace(b",", b',"ab"c,', 1),                # text after a closing quote
    lambda ln: b'""',                                          # one empty quoted field
    lambda ln: ln.replace(b",", b",NULL,", 1).rsplit(b",", 1)[0],
    lambda ln: ln.replace(b"LOUISVILLE", b"  LOUIS   VILLE ", 1),
    lambda ln: ln.split(b",", 1)[0] + b"," + b"A" * 3000 + b"," + ln.split(b",", 1)[1],
)


def _hostile_file(tmp_path: Path, k: int, rng: random.Random) -> Path:
    lines = [HEADER] if k % 9 else [b"sep=,", HEADER]
    for _ in range(rng.randint(0, 40)):
        line = rng.choice(BODY)
        lines.append(rng.choice(_MUTATIONS)(line) if rng.random() < 0.25 else line)
    eol = b"\r\n" if k % 5 == 0 else b"\n"
    data = eol.join(lines) + (eol if k % 7 else b"")
    if k % 11 == 0:
        data = b"\xef\xbb\xbf" + data
    path = tmp_path / f"hostile_{k:03d}.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("caps", [None, (2500, 1500)])
def test_hostile_files_read_alike_by_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caps: tuple[int, int] | None) -> None:
    if caps:
        monkeypatch.setattr(settings, "MAX_LINE_BYTES", caps[0])
        monkeypatch.setattr(settings, "MAX_FIELD_CHARS", caps[1])
    monkeypatch.setattr(sources, "_BLOCK_BYTES", 1500)  # many blocks, cut anywhere
    rng = random.Random(19)
    paths = [_hostile_file(tmp_path, k, rng) for k in range(16)]
    fast = [_chunks(p, chunk_rows=7) for p in paths]
    monkeypatch.setattr(sources, "_block_pieces", lambda *_args: None)
    for path, chunks in zip(paths, fast, strict=True):
        _same(chunks, _chunks(path, chunk_rows=7))


def test_a_quoted_line_break_keeps_physical_line_numbers(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    row = BODY[0]
    cells = next(csv.reader([row.decode()]))
    cells[3] = "POSSESSION\nOF SYNTHETIC DRUGS"
    quoted = ",".join(f'"{c}"' if "\n" in c else c for c in cells).encode()
    path = tmp_path / "quoted.csv"
    path.write_bytes(b"\n".join([HEADER, BODY[1], quoted, BODY[2], b"bad,row", BODY[3]]) + b"\n")
    with caplog.at_level(logging.INFO, logger="geo_lead.sources"):
        result = sources.read_records(path)
    assert result.records["source_line"].tolist() == [2, 3, 5, 7]
    assert result.records.loc[1, "offense_text"] == "POSSESSION OF SYNTHETIC DRUGS"
    assert result.rejects[["source_line", "reason"]].values.tolist() == [
        [6, "wrong field count: expected 16, found 2"]]
    assert "read by the csv module" in caplog.text


def test_the_csv_field_limit_is_not_left_changed(tmp_path: Path) -> None:
    before = csv.field_size_limit()
    path = tmp_path / "odd.csv"
    path.write_bytes(b"\n".join([HEADER, BODY[0], b'x,"unclosed', BODY[1]]) + b"\n")
    sources.read_records(path)
    assert csv.field_size_limit() == before


# --- the block functions -----------------------------------------------------------------
def test_split_block_keeps_the_unfinished_line() -> None:
    assert split_block(b"a\nb\nc") == (b"a\nb\n", b"c")
    assert split_block(b"abc") == (b"", b"abc")


@pytest.mark.parametrize(("block", "simple"), [
    (b"a,b\nc,d\n", True),
    (b'a,"b,""x"""\r\nc,d\r\n', True),
    (b'a,"b\nc",d\n', False),       # a quoted line break
    (b'a,b"c\n', False),             # a quote inside a field
    (b"a,b\n\nc,d\n", False),        # a blank line
    (b"a,b\rc,d\n", False),          # a lone carriage return
    (b"a,\x00b\n", False),
    (b"a,\xffb\n", False),
    (b"\xef\xbb\xbfa,b\n", False),   # pyarrow would drop a BOM the csv module keeps
    (b"a," + b"b" * 50 + b"\n", False),  # a line over the cap
])
def test_is_simple_block(block: bytes, simple: bool) -> None:
    assert is_simple_block(block, ",", 40) is simple


def test_parse_block_refuses_a_wrong_field_count() -> None:
    table = parse_block(b'a,"b,c"\nd,e\n', ",", 2)
    assert table is not None and table.to_pylist() == [{"f0": "a", "f1": "b,c"}, {"f0": "d", "f1": "e"}]
    assert parse_block(b"a,b\nc\n", ",", 2) is None
    assert parse_block(b"a,b,c\n", ",", 2) is None


_TRICKY = ["", " ", "NULL", " NULL ", "N/A", "null", "none", " a  b ", "\ta\x0bb\x0c", "\x1ca\x1d\x1eb\x1f",
           "a\u00a0b", "\u2003x\u2003", "\x85y", "caf\u00e9  au  lait ", "\u3000", "a\r\nb", "NaN", "NONE "]


@pytest.mark.parametrize("collapse", [False, True])
def test_clean_column_equals_python_strip_and_split(collapse: bool) -> None:
    got = clean_column(pa.chunked_array([_TRICKY[:7], _TRICKY[7:]]), collapse, settings.NULL_STRINGS)
    want = [(" ".join(v.split()) if collapse else v.strip()) for v in _TRICKY]
    assert got.tolist() == ["" if w in settings.NULL_STRINGS else w for w in want]


_THREADS_AFTER_READ = """
import sys
from geo_lead import parallel, sources
rows = sum(len(c.records) for c in sources.iter_chunks(sys.argv[1]))
print(rows, parallel.other_threads())
"""


def test_a_read_leaves_no_thread_that_blocks_a_fork() -> None:
    """Reading a file leaves no thread that `parallel.fork_blocker` refuses a fork for.

    pyarrow.csv.read_csv in the main thread used to start Arrow's signal-receiving thread (kept
    for the rest of the process), so every later child job of a run was computed in the parent.
    Run in a fresh interpreter: the test process itself may run other threads.
    """
    import os
    import subprocess
    import sys

    path = LMPD / "crime_data_2017_drug_sample.csv"
    env = {k: v for k, v in os.environ.items() if k != "GEO_LEAD_NO_FORK"}
    out = subprocess.run([sys.executable, "-c", _THREADS_AFTER_READ, str(path)], capture_output=True,
                         text=True, check=True, env=env)
    rows, others = map(int, out.stdout.split())
    assert (rows, others) == (PINNED[path.name][0], 0)

