"""`geo-lead ingest` and `geo-lead indicators`: counts, JSON, overrides, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geo_lead import settings
from geo_lead.cli import main

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FILE_2017 = LMPD / "crime_data_2017_drug_sample.csv"
FILE_2023 = LMPD / "crime_data_2023_sample.csv"
FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)  # stdout is one JSON document, nothing else


def test_ingest_json_twice(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    first = run_json(capsys, "ingest", str(FILE_2017), str(FILE_2023), "--store", str(store_path))
    assert {"rows_read", "accepted", "rejected", "added"} <= set(first)
    assert first["rows_read"] == first["accepted"] + first["rejected"] == 3147
    assert first["added"] == first["accepted"]
    assert [f["file"] for f in first["files"]] == [FILE_2017.name, FILE_2023.name]
    second = run_json(capsys, "ingest", str(FILE_2017), str(FILE_2023), "--store", str(store_path))
    assert second["added"] == 0 and second["updated"] == 0
    assert second["rows_read"] == first["rows_read"] and second["accepted"] == first["accepted"]


def test_ingest_text_output_prints_the_three_numbers(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    code, out, _ = run(capsys, "ingest", str(FILE_2023), "--store", str(store_path))
    assert code == 0
    line = out.splitlines()[0]
    detail = run_json(capsys, "ingest", str(FILE_2023), "--store", str(store_path))
    expected = (f"{detail['rows_read']:,} rows read = {detail['accepted']:,} accepted + "
                f"{detail['rejected']:,} rejected")
    assert expected in line and "(crime-2023)" in line
    assert "rejects" in out  # points at the rejects table when rows were rejected


def test_default_store_is_under_the_current_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "ingest", str(FILE_2023))
    assert code == 0, err
    assert (tmp_path / "data" / "lead.gpkg").is_file()


def test_source_mapping_and_encoding_flags(capsys: pytest.CaptureFixture[str], store_path: Path,
                                           tmp_path: Path) -> None:
    renamed = FIXTURES / "citations_renamed_columns.csv"
    got = run_json(capsys, "ingest", str(renamed), "--mapping", str(FIXTURES / "citations_mapping.toml"),
                   "--store", str(store_path))
    assert (got["accepted"], got["rejected"], got["files"][0]["source"]) == (5, 2, "citations")
    # --source forces the format; on a file that does not fit it the error names what is missing.
    code, _, err = run(capsys, "ingest", str(FILE_2017), "--source", "crime-2023", "--store", str(store_path))
    assert code == 2 and "OFFENSE_CODE_NAME" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes(FILE_2017.read_bytes().replace(b"2700 BLOCK W MADISON ST", b"2700 BLOCK W MADIS\xc9N ST", 1))
    utf8 = run_json(capsys, "ingest", str(latin), "--store", str(tmp_path / "a.gpkg"))
    assert (utf8["accepted"], utf8["rejected"]) == (2146, 1)
    l1 = run_json(capsys, "ingest", str(latin), "--encoding", "latin-1", "--store", str(tmp_path / "b.gpkg"))
    assert (l1["accepted"], l1["rejected"]) == (2147, 0)


def test_indicators_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "indicators", str(FILE_2017), "--json")
    assert code == 0, err
    table = json.loads(out)
    assert sum(row["records"] for row in table) == 2147
    heroin = next(r for r in table if r["offense_text"] == "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN")
    assert heroin["class"] == "opiate_possession" and heroin["lead_eligible"] is True
    assert "opiate.heroin" in heroin["rules"]
    code, out, _ = run(capsys, "indicators", str(FILE_2017))
    assert code == 0
    assert "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN" in out and "records by class:" in out


def test_indicators_custom_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(settings.RULES_FILE.read_text().replace('id = "opiate.heroin"', 'id = "mine.heroin"'))
    code, out, _ = run(capsys, "indicators", str(FILE_2017), "--rules", str(rules), "--json")
    assert code == 0
    assert any("mine.heroin" in r["rules"] for r in json.loads(out))


@pytest.mark.parametrize(("setup", "argv_tail", "needle"), [
    ("empty", ["ingest", "{f}"], "empty"),
    ("missing_col", ["ingest", "{f}"], "'BLOCK_ADDRESS' not found"),
    ("unknown", ["ingest", "{f}"], "cannot tell the format"),
    ("absent", ["ingest", "{f}"], "cannot open"),
    ("bad_rules", ["ingest", str(FILE_2023), "--rules", "{f}"], "not valid TOML"),
    ("bad_mapping", ["ingest", str(FILE_2023), "--mapping", "{f}"], "not a valid mapping"),
    ("bad_store", ["ingest", str(FILE_2023), "--store", "{f}"], "not a GeoPackage/SQLite file"),
    ("empty", ["indicators", "{f}"], "empty"),
    ("absent", ["ingest", str(FILE_2023), "--encoding", "klingon"], "unknown encoding"),
    ("absent", ["indicators", str(FILE_2023), "--rules", "{f}"], "cannot read rules file"),
    ("absent", ["ingest", str(FILE_2023), "--mapping", "{f}"], "cannot read mapping file"),
])
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         setup: str, argv_tail: list[str], needle: str) -> None:
    f = tmp_path / f"{setup}.csv"
    content = {"empty": b"", "missing_col": b"INCIDENT_NUMBER,DATE_OCCURED,UOR_DESC\n1,7/9/17 1:36 PM,OVERDOSE\n",
               "unknown": b"A,B\n1,2\n", "bad_rules": b"flags = [", "bad_mapping": b"[columns\n",
               "bad_store": b"not a database at all\n" * 50}
    if setup in content:
        f.write_bytes(content[setup])
    argv = [a.replace("{f}", str(f)) for a in argv_tail]
    if argv[0] == "ingest" and "--store" not in argv:
        argv += ["--store", str(tmp_path / "s.gpkg")]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("geo-lead: error: ") and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("INCIDENT_NUMBER,UOR_DESC\n1,OVERDOSE\n")
    proc = subprocess.run([sys.executable, "-m", "geo_lead", "ingest", str(bad), "--store", str(tmp_path / "s.gpkg")],
                          capture_output=True, text=True, cwd=settings.PROJECT_ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert str(bad) in proc.stderr and "Columns found: 'INCIDENT_NUMBER', 'UOR_DESC'" in proc.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(FILE_2023), "--source", "tickets"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["ingest"])
    assert info.value.code == 2
    capsys.readouterr()


def test_header_only_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, store_path: Path) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_bytes(FILE_2017.read_bytes().split(b"\n")[0] + b"\n")
    got = run_json(capsys, "ingest", str(header_only), "--store", str(store_path))
    assert (got["rows_read"], got["accepted"], got["rejected"], got["added"]) == (0, 0, 0, 0)
    assert got["files"][0]["source"] == "crime-pre2023"
    code, out, err = run(capsys, "indicators", str(header_only))
    assert code == 0 and "no records" in out, err
    code, out, _ = run(capsys, "indicators", str(header_only), "--json")
    assert code == 0 and json.loads(out) == []


def test_ingest_with_custom_rules_records_its_rule_ids(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        store_path: Path) -> None:
    from geo_lead.store import opened

    rules = tmp_path / "rules.toml"
    rules.write_text(settings.RULES_FILE.read_text()
                     .replace('id = "lead.opiate_possession_not_trafficking"', 'id = "lead.analyst_v2"'))
    run_json(capsys, "ingest", str(FILE_2017), "--rules", str(rules), "--store", str(store_path))
    with opened(store_path) as store:
        recs = store.read_records(["lead_eligible", "lead_eligible_rule"])
    assert recs["lead_eligible"].any()
    assert set(recs.loc[recs["lead_eligible"], "lead_eligible_rule"]) == {"lead.analyst_v2"}


def test_ingest_with_other_rules_reflags_and_says_so(capsys: pytest.CaptureFixture[str], store_path: Path,
                                                     tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(settings.RULES_FILE.read_text().replace('all = ["opiate", "possession"]', 'all = ["opiate"]')
                     .replace('none = ["trafficking"]', "none = []"))
    first = run_json(capsys, "ingest", str(FILE_2017), "--store", str(store_path))
    assert first["reflagged"] == 0  # a new store: nothing was flagged by other rules
    second = run_json(capsys, "ingest", str(FILE_2017), "--store", str(store_path), "--rules", str(rules))
    assert second["added"] == 0 and second["reflagged"] > 0
    code, out, _ = run(capsys, "ingest", str(FILE_2017), "--store", str(store_path))
    assert code == 0
    assert f"indicator rules changed ({settings.RULES_FILE}): {second['reflagged']:,} stored records re-flagged" in out
