"""The bad-input corpus (issue 17): every kind of broken file the hardening probe tried,
generated here in code (nothing large is committed).

Each case goes through ``geo-lead ingest`` as a user would run it and must end one of two
ways: exit 0 with every row accounted for (rows read = accepted + rejected, in the command's
JSON and in the store's ``ingests`` table), or exit 2 with one clean ``geo-lead: error:``
line naming the file -- never a traceback, never a half-created store.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from lmpd_rows import HEADER_2017 as HEADER
from lmpd_rows import crime_row

from geo_lead import cli, settings
from geo_lead.sources import read_records


def row(n: int, **over: str) -> list[str]:
    return list(crime_row(n, **over).values())


def text(rows: list[list[str]], delimiter: str = ",", header: list[str] | None = None,
         newline: str = "\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    w.writerow(header or HEADER)
    w.writerows(rows)
    return buf.getvalue()


GOOD = [row(i) for i in range(1, 4)]


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return make


def _text(data: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    return _bytes(data.encode(encoding))


def _gzip(data: bytes, truncate: int = 0) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        blob = gzip.compress(data)
        path.write_bytes(blob[:len(blob) - truncate] if truncate else blob)
        return path
    return make


def _zip_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("crime.csv", text(GOOD))
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _missing(path: Path) -> Path:
    return path


def _symlink_loop(path: Path) -> Path:
    other = path.with_name(path.name + ".b")
    os.symlink(other, path)
    os.symlink(path, other)
    return path


def _unreadable(path: Path) -> Path:
    path.write_text(text(GOOD), encoding="utf-8")
    path.chmod(0)
    return path


_rng = random.Random(17)
BINARY = bytes(_rng.randrange(256) for _ in range(20_000))
HUGE = "H" * (settings.MAX_LINE_BYTES + 10)

#: name -> (builder, expected outcome): "ok" (rows accounted) or "error" (clean message).
#: Outcome "any" where the platform decides (e.g. root reads an unreadable file).
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    # the 31 kinds the probe tried that already passed
    "empty": (_bytes(b""), "error"),
    "header_only": (_text(text([])), "ok"),
    "semicolon_delimiter": (_text(text(GOOD, delimiter=";")), "ok"),
    "tab_delimiter": (_text(text(GOOD, delimiter="\t")), "ok"),
    "pipe_delimiter": (_text(text(GOOD, delimiter="|")), "ok"),
    "utf8_bom": (_bytes(b"\xef\xbb\xbf" + text(GOOD).encode()), "ok"),
    "latin1": (_text(text([row(1, BLOCK_ADDRESS="2700 BLOCK W MADISON ST Ñ")]), "latin-1"), "ok"),
    "invalid_utf8": (_bytes(text(GOOD).encode() + b"80-17-9,\xff\xfe\xfa,x\n"), "ok"),
    "nul_bytes": (_bytes(text(GOOD).encode().replace(b"HEROIN", b"HER\x00OIN", 1)), "ok"),
    "huge_field": (_text(text([*GOOD, row(9, UOR_DESC=HUGE)])), "ok"),
    "quoted_newlines": (_text(text([*GOOD, row(9, UOR_DESC="POSSESSION\nOF\r\nHEROIN")])), "ok"),
    "repeated_header": (_text(text(GOOD) + ",".join(HEADER) + "\n" + text(GOOD).split("\n", 1)[1]), "ok"),
    "future_date": (_text(text([row(1, DATE_OCCURED="1/1/2199 1:00 PM", DATE_REPORTED="")])), "ok"),
    "unparseable_date": (_text(text([row(1, DATE_OCCURED="yesterday"), *GOOD])), "ok"),
    "year_1500": (_text(text([row(1, DATE_OCCURED="1/1/1500", DATE_REPORTED="")])), "ok"),
    "negative_zip": (_text(text([row(1, ZIP_CODE="-40211")])), "ok"),
    "binary": (_bytes(BINARY), "error"),
    "gzip": (_gzip(text(GOOD).encode()), "ok"),
    "truncated_gzip": (_gzip(text(GOOD * 200).encode(), truncate=40), "error"),
    "zip_archive": (_zip_archive, "error"),
    "directory": (_directory, "error"),
    "missing": (_missing, "error"),
    "unreadable": (_unreadable, "any"),
    "symlink_loop": (_symlink_loop, "error"),
    "html_payload": (_text(text([row(1, UOR_DESC="<script>alert(1)</script>",
                                     BLOCK_ADDRESS='<img src=x onerror="alert(2)">')])), "ok"),
    "wrong_field_count": (_text(text(GOOD) + "80-17-1,too,few\n" + ",".join(row(8) + ["extra", "x"]) + "\n"), "ok"),
    "blank_lines": (_text("\n\n" + text(GOOD).replace("\n", "\n\n")), "ok"),
    "crlf": (_text(text(GOOD, newline="\r\n")), "ok"),
    "excel_sep_line": (_text("sep=;\n" + text(GOOD, delimiter=";")), "ok"),
    "utf16_bom": (_bytes(text(GOOD).encode("utf-16")), "ok"),
    "unclosed_quote": (_text(text(GOOD) + '80-17-9,"7/9/17,oops\n' + text(GOOD).split("\n", 1)[1]), "ok"),
    "whitespace_only": (_text("   \n\t\n  \n"), "error"),
    "unknown_header": (_text("a,b,c\n1,2,3\n"), "error"),
    "missing_required_column": (_text(text(GOOD, header=[*HEADER[:11], "NOT_ADDRESS", *HEADER[12:]])), "error"),
    "empty_required_values": (_text(text([row(1, INCIDENT_NUMBER=""), row(2, BLOCK_ADDRESS=""),
                                          row(3, UOR_DESC="NULL"), *GOOD])), "ok"),
    "duplicate_rows": (_text(text(GOOD + GOOD)), "ok"),
    "many_columns": (_text(text([r + ["x"] * 500 for r in GOOD], header=HEADER + [f"C{i}" for i in range(500)])), "ok"),
    # the defects of issue 17
    "formula_cells": (_text(text([row(1, UOR_DESC="=HYPERLINK(\"http://x\")"), row(2, PREMISE_TYPE="@SUM(1)"),
                                  row(3, CITY="+cmd|' /C calc'!A0"), row(4, NIBRS_CODE="-1+1")])), "ok"),
    "ansi_escapes": (_text(text([row(1, UOR_DESC="POSSESSION\x1b[2J\x1b]0;owned\x07")])), "ok"),
    "line_over_the_cap": (_text(text([*GOOD, row(9, BLOCK_ADDRESS=HUGE), row(10)])), "ok"),
    "gzip_line_over_the_cap": (_gzip(text([row(9, UOR_DESC=HUGE * 3), *GOOD]).encode()), "ok"),
    "first_line_over_the_cap": (_text(HUGE + "\n" + text(GOOD)), "error"),
    "fullwidth_zip": (_text(text([row(1, ZIP_CODE="４０２１１"), row(2, ZIP_CODE="٤٠٢١١")])), "ok"),
    "long_free_text": (_text(text([row(1, UOR_DESC="HEROIN " * 100_000)])), "ok"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, expected = CASES[name]
    path = build(tmp_path / f"{name}.csv")
    store = tmp_path / "lead.gpkg"
    try:
        code = cli.main(["ingest", str(path), "--store", str(store), "--json"])
    finally:
        if name == "unreadable":
            path.chmod(0o644)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if expected == "any":
        expected = "ok" if code == 0 else "error"
    if expected == "error":
        assert code == 2, (code, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("geo-lead: error: "), err
        assert path.name in lines[0] or str(path) in lines[0], err
        assert not store.exists(), "a failed first ingest must not leave a store file"
        return
    assert code == 0, (code, err)
    report = json.loads(out)
    assert report["rows_read"] == report["accepted"] + report["rejected"]
    (file_report,) = report["files"]
    assert file_report["rows_read"] == file_report["accepted"] + file_report["rejected"]
    result = read_records(path)  # the library agrees with the command
    assert (result.rows_read, result.accepted, result.rejected) == (
        report["rows_read"], report["accepted"], report["rejected"])
    assert "\x1b" not in err


def test_corpus_covers_the_probe() -> None:
    """31 kinds passed the probe before issue 17; the corpus keeps at least those."""
    assert len(CASES) >= 31 + 6
