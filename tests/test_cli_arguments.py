"""Bad arguments fail at once with a usage message: unwritable outputs, out-of-range numbers,
and file-system errors during the work (a message naming the file, never a traceback)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from geo_lead import settings
from geo_lead.cli import main

FILE_2017 = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: nothing can be created under it (even as root)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return afile / "out"


@pytest.mark.parametrize("argv", [
    ["run", str(FILE_2017), "--out", "{blocked}", "--store", "{store}"],
    ["maps", "--out", "{blocked}", "--store", "{store}"],
    ["report", "--out", "{blocked}/report.html", "--store", "{store}"],
    ["export", "--what", "records", "--format", "csv", "--out", "{blocked}/records.csv", "--store", "{store}"],
    ["zone", "page", "--out", "{blocked}/zone.html"],
    ["geocode-file", str(FILE_2017), "--address-column", "BLOCK_ADDRESS", "--out", "{blocked}/o.csv"],
    ["boundaries", "rebuild", "--out", "{blocked}", "--store", "{store}"],
])
def test_unwritable_output_fails_before_any_work(capsys: pytest.CaptureFixture[str], blocked: Path,
                                                  store_path: Path, argv: list[str]) -> None:
    args = [a.replace("{blocked}", str(blocked)).replace("{store}", str(store_path)) for a in argv]
    code, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("geo-lead: error: --out ") and "cannot write there" in err, err
    assert str(blocked) in err and "Traceback" not in err
    assert not store_path.exists()  # failed before the store was touched


def test_output_that_is_the_wrong_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "geocode-file", str(FILE_2017), "--address-column", "BLOCK_ADDRESS",
                    "--out", str(tmp_path))
    assert code == 2 and "is a folder; give a file name" in err
    afile = tmp_path / "f.html"
    afile.write_text("x")
    code, err = run(capsys, "maps", "--out", str(afile))
    assert code == 2 and "is a file; give a folder" in err


def test_score_csv_checked_before_scoring(capsys: pytest.CaptureFixture[str], blocked: Path,
                                          store_path: Path) -> None:
    assert main(["ingest", str(FILE_2017), "--store", str(store_path)]) == 0
    capsys.readouterr()
    code, err = run(capsys, "score", "--store", str(store_path), "--csv", str(blocked / "s.csv"))
    assert code == 2 and err.startswith("geo-lead: error: --csv ") and "choose another --csv" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["site", "--k", "0"], "argument --k: '0' must be at least 1"),
    (["site", "--capacity", "-5"], "argument --capacity: '-5' must be at least 1"),
    (["site", "--months", "1.5"], "argument --months: '1.5' is not a whole number"),
    (["site", "--take-up", "1.5"], "must be a share above 0 and at most 1"),
    (["site", "--take-up", "nan"], "must be a share above 0 and at most 1"),
    (["site", "--replicates", "0"], "argument --replicates: '0' must be at least 1"),
    (["hotspots", "--permutations", "0"], "argument --permutations: '0' must be at least 99"),
    (["hotspots", "--grid-ft", "abc"], "argument --grid-ft: 'abc' is not a number"),
    (["hotspots", "--kde-cell-ft", "-1"], "argument --kde-cell-ft: '-1' must be at least 50"),
    (["score", "--replicates", "-3"], "argument --replicates: '-3' must be at least 1"),
])
def test_out_of_range_numbers_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                                               message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_file_system_error_during_work_names_the_file(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import geo_lead.pipeline

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report.html"))

    monkeypatch.setattr(geo_lead.pipeline, "run_pipeline", disk_full)
    code, err = run(capsys, "run", "--out", str(tmp_path), "--store", str(tmp_path / "s.gpkg"))
    assert code == 1
    assert err == f"geo-lead: error: {tmp_path / 'report.html'}: No space left on device\n"
