"""geo_lead.sources: LMPD formats -> canonical records + rejects, on real and hostile files.

Edge-case files are built in ``tmp_path`` from real rows of the shipped 2017 extract, so
every accepted value is a real published one; line numbers are known by construction.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead import settings
from geo_lead.errors import InputFileError, MissingColumnError
from geo_lead.sources import (
    PERSON_FIELDS,
    RECORD_COLUMNS,
    REJECT_COLUMNS,
    ReadResult,
    iter_chunks,
    load_mapping,
    normalize_division,
    parse_dates,
    read_records,
)

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FILE_2016 = LMPD / "crime_data_2016_drug_sample.csv"
FILE_2017 = LMPD / "crime_data_2017_drug_sample.csv"
FILE_2018 = LMPD / "crime_data_2018_drug_sample.csv"
FILE_2019 = LMPD / "crime_data_2019_drug_sample.csv"
FILE_2023 = LMPD / "crime_data_2023_sample.csv"
FIXTURES = Path(__file__).parent / "fixtures"
CITATIONS = FIXTURES / "citations_documented_columns.csv"
CITATIONS_RENAMED = FIXTURES / "citations_renamed_columns.csv"

_LINES_2017 = FILE_2017.read_bytes().split(b"\n")
HEADER: bytes = _LINES_2017[0]
BODY: list[bytes] = [ln for ln in _LINES_2017[1:] if ln.strip()]


def write(tmp_path: Path, name: str, lines: list[bytes], end: bytes = b"\n") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + end)
    return path


def accounted(result: ReadResult) -> ReadResult:
    """Every read must account for every row: rows_read = accepted + rejected."""
    assert result.rows_read == result.accepted + result.rejected
    assert list(result.records.columns) == list(RECORD_COLUMNS)
    assert set(REJECT_COLUMNS) <= set(result.rejects.columns)
    return result


def count_data_rows(path: Path) -> int:
    """Independent oracle: non-blank CSV rows after the header, counted by the csv module."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    return sum(1 for r in rows[1:] if any(c.strip() for c in r))


# --- the shipped real files -----------------------------------------------------------------
@pytest.mark.parametrize(("path", "source"), [
    (FILE_2016, "crime-pre2023"), (FILE_2017, "crime-pre2023"), (FILE_2018, "crime-pre2023"),
    (FILE_2019, "crime-pre2023"), (FILE_2023, "crime-2023"),
])
def test_shipped_files_detect_and_add_up(path: Path, source: str) -> None:
    result = accounted(read_records(path))
    assert result.source == source
    assert result.rows_read == count_data_rows(path)
    assert result.records["record_id"].is_unique
    assert (result.records["source"] == source).all()
    # Every accepted record has the fields the later stages need.
    for col in ("incident_number", "occurred_at", "offense_text", "address_raw"):
        assert (result.records[col] != "").all(), col


def test_2017_every_row_accepted_with_physical_lines() -> None:
    result = accounted(read_records(FILE_2017))
    assert result.accepted == 2147 and result.rejected == 0
    assert result.records["source_line"].tolist() == list(range(2, 2149))
    first = result.records.iloc[0]
    assert first["incident_number"] == "80-17-055249"
    assert first["occurred_at"] == "2017-07-09T13:36:00"  # 7/9/17 1:36 PM
    assert first["division"] == "1ST DIVISION"
    assert first["address_raw"] == "N 26TH ST / BANK ST"
    # "POSSESSION  OF SYNTHETIC DRUGS" is published with two spaces: whitespace is collapsed.
    assert first["offense_text"] == "POSSESSION OF SYNTHETIC DRUGS"


#: sha256 of the shipped 2018/2019 samples (data/lmpd/SOURCE.md): byte-identical copies of
#: ../shared/data/lmpd, never edited (the 2019 PREMISE_TYPE padding stays in the file).
SHIPPED_SHA256 = {
    FILE_2018: "457b48065bae32edac42d1f449aacb03ba2100096a7a951581a8467e86db6a7f",
    FILE_2019: "10ed0ae0b9636a6b72092c65533f66350bbcf1f07e19952865d3ce944ecf362c",
}


@pytest.mark.parametrize("path", list(SHIPPED_SHA256))
def test_2018_2019_samples_shipped_unedited(path: Path) -> None:
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED_SHA256[path]


def test_2019_layout_is_mapped_by_header_names() -> None:
    """The 2019 release (15 columns, ObjectId first, CRIME_TYPE before UOR_DESC, `City`, dates
    ``2019/01/01 02:00:00``, PREMISE_TYPE padded to 45 characters) is read by header names.

    Oracle: the csv module's rows looked up by the header's own names, stripped by hand.
    """
    with FILE_2019.open(newline="", encoding="utf-8-sig") as fh:
        raw = list(csv.DictReader(fh))
    header = list(raw[0])
    assert header[:6] == ["ObjectId", "INCIDENT_NUMBER", "DATE_REPORTED", "DATE_OCCURED",
                          "CRIME_TYPE", "UOR_DESC"] and "City" in header and "ID" not in header
    padded = [r["PREMISE_TYPE"] for r in raw if r["PREMISE_TYPE"]]
    assert {len(v) for v in padded} == {45}, "the file keeps its padding"
    result = accounted(read_records(FILE_2019))  # no source named: detected from the header
    assert result.source == "crime-pre2023"
    assert result.accepted == len(raw) == 1123 and result.rejected == 0
    recs = result.records
    assert recs["source_line"].tolist() == list(range(2, 2 + len(raw)))
    by_field = {"incident_number": "INCIDENT_NUMBER", "offense_text": "UOR_DESC",
                "crime_type": "CRIME_TYPE", "nibrs_code": "NIBRS_CODE", "beat": "LMPD_BEAT",
                "premise": "PREMISE_TYPE", "address_raw": "BLOCK_ADDRESS", "city": "City",
                "division": "LMPD_DIVISION"}
    for fld, col in by_field.items():
        expected = [" ".join(r[col].split()) for r in raw]
        assert recs[fld].tolist() == expected, fld
    # ZIP_CODE: five digits, else empty (the 2019 file has a few "0")
    assert recs["zip"].tolist() == [z if len(z) == 5 and z.isdigit() else "" for z in
                                    (r["ZIP_CODE"].strip() for r in raw)]
    assert not recs["premise"].str.endswith(" ").any()  # the padding is stripped in the reader
    first = recs.iloc[0]
    assert (first["occurred_at"], first["reported_at"]) == ("2019-01-01T02:00:00", "2019-01-01T11:22:00")
    expected_dates = [r["DATE_OCCURED"].replace("/", "-").replace(" ", "T") for r in raw]
    assert recs["occurred_at"].tolist() == expected_dates
    assert recs["occurred_at"].str[:4].eq("2019").all()


def test_2023_null_strings_become_empty() -> None:
    raw = pd.read_csv(FILE_2023, dtype=str, keep_default_na=False)
    assert (raw == "NULL").any().any(), "the shipped 2023 sample has NULL strings"
    result = accounted(read_records(FILE_2023))
    for col in RECORD_COLUMNS:
        assert not result.records[col].astype(str).isin(["NULL", "null"]).any(), col
    # Rows whose block address is "NULL" are rejected as having no address, with their line.
    null_addr = raw.index[raw["Block Address"].isin(["", "NULL"])] + 2
    rej = result.rejects[result.rejects["reason"] == "empty address"]
    assert sorted(rej["source_line"]) == sorted(null_addr.tolist())
    assert result.accepted == len(raw) - len(null_addr)


# --- hostile files --------------------------------------------------------------------------
def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty\.csv.*empty"):
        read_records(path)
    blank = write(tmp_path, "blank.csv", [b"", b"  ", b""])
    with pytest.raises(InputFileError, match="empty"):
        read_records(blank)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.csv"):
        read_records(tmp_path / "nope.csv")


@pytest.mark.parametrize("end", [b"\n", b""])
def test_header_only(tmp_path: Path, end: bytes) -> None:
    result = accounted(read_records(write(tmp_path, "h.csv", [HEADER], end=end)))
    assert result.source == "crime-pre2023"
    assert result.rows_read == 0 and result.accepted == 0 and result.rejected == 0


def test_truncated_last_line(tmp_path: Path) -> None:
    cut = BODY[3][: len(BODY[3]) // 2]
    result = accounted(read_records(write(tmp_path, "t.csv", [HEADER, *BODY[:3], cut], end=b"")))
    assert result.accepted == 3 and result.rejected == 1
    rej = result.rejects.iloc[0]
    assert rej["source_line"] == 5
    assert rej["reason"].startswith("wrong field count")
    assert rej["raw"] == cut.decode()


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    result = accounted(read_records(write(tmp_path, "n.csv", [HEADER, *BODY[:3]], end=b"")))
    assert result.accepted == 3 and result.records.loc[2, "zip"] == BODY[2].split(b",")[13].decode()


def test_truncated_inside_quoted_field(tmp_path: Path) -> None:
    cut = BODY[0].split(b",")[0] + b',7/9/17 1:36 PM,"POSS CONT SUB'
    result = accounted(read_records(write(tmp_path, "q.csv", [HEADER, BODY[1], cut], end=b"")))
    assert result.accepted == 1 and result.rejected == 1
    assert result.rejects.iloc[0]["source_line"] == 3


def test_bom_is_ignored(tmp_path: Path) -> None:
    plain = read_records(write(tmp_path, "plain.csv", [HEADER, *BODY[:20]]))
    bom = accounted(read_records(write(tmp_path, "bom.csv", [b"\xef\xbb\xbf" + HEADER, *BODY[:20]])))
    assert bom.source == "crime-pre2023" and bom.accepted == 20
    pd.testing.assert_frame_equal(bom.records.drop(columns="source_file"),
                                  plain.records.drop(columns="source_file"))


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"\r\n".join([HEADER, *BODY[:10]]) + b"\r\n")
    result = accounted(read_records(path))
    assert result.accepted == 10
    assert not result.records["zip"].str.contains("\r").any()
    assert result.records["source_line"].tolist() == list(range(2, 12))


def test_latin1_rows_rejected_under_utf8_read_with_latin1(tmp_path: Path) -> None:
    # "É" in Latin-1 is the single byte 0xC9: not valid UTF-8.
    latin = BODY[1].replace(b"MADISON", b"MADIS\xc9N")
    assert latin != BODY[1]
    path = write(tmp_path, "latin.csv", [HEADER, BODY[0], latin, BODY[2]])
    utf8 = accounted(read_records(path))
    assert utf8.accepted == 2 and utf8.rejected == 1
    rej = utf8.rejects.iloc[0]
    assert rej["source_line"] == 3 and "undecodable" in rej["reason"] and "utf-8" in rej["reason"]
    latin1 = accounted(read_records(path, encoding="latin-1"))
    assert latin1.accepted == 3 and latin1.rejected == 0
    assert latin1.records.loc[1, "address_raw"] == "2700 BLOCK W MADISÉN ST"


def test_latin1_header_needs_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", [HEADER.replace(b"CITY", b"CIT\xc9"), *BODY[:2]])
    with pytest.raises(InputFileError, match="--encoding"):
        read_records(path)


@pytest.mark.parametrize("delimiter", [b";", b"\t", b"|"])
def test_semicolon_tab_pipe_delimited(tmp_path: Path, delimiter: bytes) -> None:
    # Real rows without commas inside fields, so swapping the delimiter keeps every value.
    rows = [r for r in BODY[:200] if b'"' not in r][:50]
    comma = read_records(write(tmp_path, "c.csv", [HEADER, *rows]))
    semi = accounted(read_records(write(tmp_path, "s.csv", [ln.replace(b",", delimiter)
                                                           for ln in [HEADER, *rows]])))
    assert semi.accepted == 50
    pd.testing.assert_frame_equal(semi.records.drop(columns="source_file"),
                                  comma.records.drop(columns="source_file"))


def test_duplicated_header_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", [HEADER, BODY[0], HEADER, BODY[1]])
    result = accounted(read_records(path))
    assert result.accepted == 2 and result.rejected == 1
    assert result.rejects.iloc[0][["source_line", "reason"]].tolist() == [3, "repeated header line"]


def test_null_strings(tmp_path: Path) -> None:
    row = BODY[0].replace(b"1ST DIVISION", b"NULL").replace(b",LOUISVILLE,", b",null,")
    no_addr = BODY[1].replace(b"2700 BLOCK W MADISON ST", b"NULL")
    result = accounted(read_records(write(tmp_path, "n.csv", [HEADER, row, no_addr])))
    assert result.accepted == 1
    assert result.records.loc[0, ["division", "city"]].tolist() == ["", ""]
    rej = result.rejects.iloc[0]
    assert rej[["source_line", "reason", "column"]].tolist() == [3, "empty address", "address_raw"]


def test_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path, "w.csv", [HEADER, BODY[0] + b",extra", BODY[1], b"a,b,c"])
    result = accounted(read_records(path))
    assert result.accepted == 1
    assert result.rejects["source_line"].tolist() == [2, 4]
    assert result.rejects["reason"].tolist() == [
        "wrong field count: expected 16, found 17", "wrong field count: expected 16, found 3"]


def test_unparseable_and_out_of_range_dates(tmp_path: Path) -> None:
    bad = BODY[0].replace(b"7/9/17 1:36 PM,7/9/17 1:36 PM", b"7/9/17 1:36 PM,13/45/17 9:99 PM")
    typo = BODY[1].replace(b"7/10/17 1:19 PM,7/10/17 1:19 PM", b"7/10/17 1:19 PM,7/10/1517")
    assert bad != BODY[0] and typo != BODY[1]
    result = accounted(read_records(write(tmp_path, "d.csv", [HEADER, bad, typo, BODY[2]])))
    assert result.accepted == 1
    assert result.rejects["source_line"].tolist() == [2, 3]
    assert set(result.rejects["reason"]) == {"unparseable date"}
    assert result.rejects["column"].tolist() == ["occurred_at", "occurred_at"]
    assert result.rejects["value"].tolist() == ["13/45/17 9:99 PM", "7/10/1517"]


def test_missing_occurrence_date_falls_back_to_report_date(tmp_path: Path) -> None:
    row = BODY[0].replace(b"7/9/17 1:36 PM,7/9/17 1:36 PM", b"7/9/17 1:36 PM,")
    result = accounted(read_records(write(tmp_path, "f.csv", [HEADER, row])))
    assert result.records.loc[0, "occurred_at"] == "2017-07-09T13:36:00"


def test_missing_required_column_names_file_column_and_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", [HEADER.replace(b"BLOCK_ADDRESS", b"ADDR"), *BODY[:2]])
    with pytest.raises(MissingColumnError) as info:
        read_records(path)
    msg = str(info.value)
    assert str(path) in msg and "'BLOCK_ADDRESS'" in msg
    for col in HEADER.decode().replace("BLOCK_ADDRESS", "ADDR").split(","):
        assert repr(col) in msg
    assert info.value.column == "BLOCK_ADDRESS"


def test_unknown_format_suggests_source_and_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", [b"A,B,C", b"1,2,3"])
    with pytest.raises(InputFileError, match="--source") as info:
        read_records(path)
    assert "'A', 'B', 'C'" in str(info.value)


def test_quoted_newline_keeps_physical_line_numbers(tmp_path: Path) -> None:
    multi = BODY[0].replace(b"N 26TH ST / BANK ST", b'"N 26TH ST\n/ BANK ST"')
    result = accounted(read_records(write(tmp_path, "q.csv", [HEADER, multi, BODY[1], b"x,y"])))
    assert result.records["source_line"].tolist() == [2, 4]
    assert result.records.loc[0, "address_raw"] == "N 26TH ST / BANK ST"  # whitespace collapsed
    assert result.rejects["source_line"].tolist() == [5]


def test_leading_blank_lines_keep_physical_line_numbers(tmp_path: Path) -> None:
    result = accounted(read_records(write(tmp_path, "b.csv", [b"", b"", HEADER, *BODY[:3], b"", BODY[3]])))
    assert result.records["source_line"].tolist() == [4, 5, 6, 8]


# --- dates and divisions ------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("7/11/17 8:49 PM", datetime(2017, 7, 11, 20, 49)),
    ("7/11/2017 8:49 PM", datetime(2017, 7, 11, 20, 49)),
    ("7/11/17 12:05 AM", datetime(2017, 7, 11, 0, 5)),
    ("1/16/2024", datetime(2024, 1, 16)),
    ("11/03/2023", datetime(2023, 11, 3)),
    ("2017-07-11T20:49:00", datetime(2017, 7, 11, 20, 49)),
    ("2017-07-11 20:49:00", datetime(2017, 7, 11, 20, 49)),
    ("2017-07-11", datetime(2017, 7, 11)),
    ("2017-07-11T20:49:00.000", datetime(2017, 7, 11, 20, 49)),
    # An offset names an instant: converted to Louisville local time (EDT, UTC-4 in July).
    ("2017-07-12T00:49:00Z", datetime(2017, 7, 11, 20, 49)),
    ("2017-07-11T20:49:00-04:00", datetime(2017, 7, 11, 20, 49)),
    ("2023-12-30T14:05:00-05:00", datetime(2023, 12, 30, 14, 5)),
])
def test_parse_dates_both_forms(text: str, expected: datetime) -> None:
    assert parse_dates(pd.Series([text]))[0] == pd.Timestamp(expected)


def test_parse_dates_mixed_column_never_raises() -> None:
    values = pd.Series(["2023-12-30T14:05:00-05:00", "2023-07-30T14:05:00+01:00", "7/11/17 8:49 PM",
                        "", None, "NULL", "1/1/1500", "2/30/2017", "junk"], dtype=object)
    out = parse_dates(values)
    assert out[:3].tolist() == [pd.Timestamp(2023, 12, 30, 14, 5), pd.Timestamp(2023, 7, 30, 9, 5),
                                pd.Timestamp(2017, 7, 11, 20, 49)]
    assert out[3:].isna().all()


@pytest.mark.parametrize(("text", "expected"), [
    ("1ST DIVISION", "1ST DIVISION"), ("1st Division", "1ST DIVISION"), ("  1st   division ", "1ST DIVISION"),
    ("1", "1ST DIVISION"), ("First Division", "1ST DIVISION"), ("FIRST", "1ST DIVISION"),
    ("2nd Division", "2ND DIVISION"), ("3RD DIV", "3RD DIVISION"), ("8th Division", "8TH DIVISION"),
    ("Division 1", "1ST DIVISION"), ("DIV. 01", "1ST DIVISION"), ("01", "1ST DIVISION"),
    ("", ""), ("METRO LOUISVILLE", "METRO LOUISVILLE"),
])
def test_normalize_division(text: str, expected: str) -> None:
    assert normalize_division(text) == expected


def test_division_forms_of_2017_and_2023_agree() -> None:
    d17 = set(read_records(FILE_2017).records["division"]) - {""}
    d23 = set(read_records(FILE_2023).records["division"]) - {""}
    assert "1ST DIVISION" in d17 and "1ST DIVISION" in d23
    assert all(d == d.upper() for d in d17 | d23)


# --- record ids ------------------------------------------------------------------------------
def test_record_ids_stable_when_rows_reordered(tmp_path: Path) -> None:
    rows = list(BODY)
    random.Random(7).shuffle(rows)
    original = read_records(FILE_2017).records
    shuffled = accounted(read_records(write(tmp_path, FILE_2017.name, [HEADER, *rows]))).records
    key = ["record_id", "content_hash"]
    a = original[key].sort_values("record_id").reset_index(drop=True)
    b = shuffled[key].sort_values("record_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_record_ids_stable_for_repeated_offence_with_different_content(tmp_path: Path) -> None:
    # Same incident and offence twice, differing only in premise: ids follow content, not order.
    twin = BODY[1].replace(b"RESIDENCE / HOME", b"HIGHWAY / ROAD / ALLEY")
    assert twin != BODY[1]
    one = read_records(write(tmp_path, "a.csv", [HEADER, BODY[1], twin])).records
    two = read_records(write(tmp_path, "b.csv", [HEADER, twin, BODY[1]])).records
    assert one["record_id"].is_unique
    assert dict(zip(one["record_id"], one["content_hash"], strict=True)) == dict(
        zip(two["record_id"], two["content_hash"], strict=True))


def test_record_ids_survive_chunk_boundaries() -> None:
    whole = read_records(FILE_2017).records["record_id"].tolist()
    chunked = [rid for c in iter_chunks(FILE_2017, chunk_rows=100) for rid in c.records["record_id"]]
    assert chunked == whole


# --- citations, mapping and --source --------------------------------------------------------
def test_citations_fixture_reads_with_persons_apart() -> None:
    result = accounted(read_records(CITATIONS))
    assert result.source == "citations"
    assert result.accepted == 5 and result.rejected == 2
    assert dict(zip(result.rejects["source_line"], result.rejects["reason"], strict=True)) == {
        7: "empty address", 8: "unparseable date"}
    recs = result.records
    assert set(recs["division"]) == {"1ST DIVISION", "7TH DIVISION"}
    assert recs["statute"].tolist()[:2] == ["218A.1415", "218A.500"]
    assert recs["occurred_at"].tolist() == [
        "2018-08-14T21:10:00", "2018-08-14T21:10:00", "2018-08-15T09:05:00",
        "2018-08-16T14:30:00", "2018-08-17T10:00:00"]
    # Person fields never join the record table, and rejects' raw rows withhold them.
    assert not set(PERSON_FIELDS) & set(recs.columns)
    assert set(result.persons.columns) == {"record_id", *PERSON_FIELDS}
    assert result.persons["sex"].tolist() == ["SEXVAL-1", "SEXVAL-1", "SEXVAL-2", "SEXVAL-3", "SEXVAL-4"]
    for frame in (recs, result.rejects):
        text = frame.astype(str).to_csv()
        assert "VAL-" not in text


def test_mapping_toml_and_json_read_renamed_columns() -> None:
    reference = read_records(CITATIONS)
    with pytest.raises(InputFileError, match="--mapping"):
        read_records(CITATIONS_RENAMED)
    for mapping in (FIXTURES / "citations_mapping.toml", FIXTURES / "citations_mapping.json"):
        result = accounted(read_records(CITATIONS_RENAMED, mapping=mapping))
        assert result.source == "citations"
        pd.testing.assert_frame_equal(result.records.drop(columns="source_file"),
                                      reference.records.drop(columns="source_file"))
        pd.testing.assert_frame_equal(result.persons, reference.persons)
        assert result.rejects["source_line"].tolist() == [7, 8]
        assert "VAL-" not in result.rejects.astype(str).to_csv()


def test_shipped_example_mapping_reads_documented_columns() -> None:
    example = settings.PACKAGE_DIR / "mappings" / "citations_example.toml"
    mapping = load_mapping(example)
    assert mapping["source"] == "citations"
    result = read_records(CITATIONS, mapping=example)
    pd.testing.assert_frame_equal(result.records, read_records(CITATIONS).records)


def test_mapping_errors(tmp_path: Path) -> None:
    bad_field = tmp_path / "m.toml"
    bad_field.write_text('[columns]\nrecord_id = "X"\n')
    with pytest.raises(InputFileError, match="unknown canonical field"):
        load_mapping(bad_field)
    bad_toml = tmp_path / "b.toml"
    bad_toml.write_text("[columns\n")
    with pytest.raises(InputFileError, match="not a valid mapping"):
        load_mapping(bad_toml)
    bad_json = tmp_path / "b.json"
    bad_json.write_text("{")
    with pytest.raises(InputFileError, match="not a valid mapping"):
        load_mapping(bad_json)
    bad_source = tmp_path / "s.json"
    bad_source.write_text(json.dumps({"source": "tickets", "columns": {}}))
    with pytest.raises(InputFileError, match="tickets"):
        load_mapping(bad_source)
    with pytest.raises(InputFileError, match="cannot read mapping"):
        load_mapping(tmp_path / "absent.toml")
    # A mapped column that is not in the header is named in the error.
    wrong = tmp_path / "w.toml"
    wrong.write_text((FIXTURES / "citations_mapping.toml").read_text().replace('"Ctrl No"', '"Control No"'))
    with pytest.raises(MissingColumnError, match="'Control No'"):
        read_records(CITATIONS_RENAMED, mapping=wrong)


def test_source_override(tmp_path: Path) -> None:
    # A header carrying both UOR_DESC and "Offense Code Name": detection picks pre-2023,
    # --source crime-2023 reads the other offence column.
    header = HEADER + b",Offense Code Name"
    rows = [r + b",OVERDOSE" for r in BODY[:3] if b'"' not in r]
    path = write(tmp_path, "both.csv", [header, *rows])
    detected = accounted(read_records(path))
    forced = accounted(read_records(path, source="crime-2023"))
    assert detected.source == "crime-pre2023" and forced.source == "crime-2023"
    assert (forced.records["offense_text"] == "OVERDOSE").all()
    assert not (detected.records["offense_text"] == "OVERDOSE").all()
    assert forced.records["record_id"].str.startswith("crime-2023:").all()
    with pytest.raises(InputFileError, match="unknown source"):
        read_records(path, source="tickets")
    # Forcing a format the header does not fit names what is missing.
    with pytest.raises(MissingColumnError, match="CITATION_CONTROL_NUMBER"):
        read_records(FILE_2017, source="citations")


# --- streaming a large file ------------------------------------------------------------------
_STREAM_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from geo_lead.sources import iter_chunks
    import pandas  # noqa: F401  (imports counted in the baseline)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sizes, rows_read, accepted, rejected, last_line = [], 0, 0, 0, 0
    for chunk in iter_chunks(sys.argv[1], chunk_rows=int(sys.argv[2])):
        sizes.append(chunk.rows_read)
        rows_read += chunk.rows_read
        accepted += len(chunk.records)
        rejected += len(chunk.rejects)
        if len(chunk.records):
            assert int(chunk.records["source_line"].min()) > last_line, "chunks out of order"
            last_line = int(chunk.records["source_line"].max())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sizes": sizes, "rows_read": rows_read, "accepted": accepted,
                      "rejected": rejected, "growth_kb": peak - base}))
""")


def _write_big(path: Path, target_bytes: int) -> int:
    """Repeat the real 2017 rows with new incident numbers until the file reaches `target_bytes`."""
    n_rows = 0
    with path.open("wb") as fh:
        fh.write(HEADER + b"\n")
        while fh.tell() < target_bytes:
            for row in BODY:
                # A new incident number per row: same real content, distinct records.
                fh.write(b"BIG-%09d" % n_rows + row[row.index(b","):] + b"\n")
                n_rows += 1
                if n_rows % 1000 == 0 and fh.tell() >= target_bytes:
                    return n_rows
    return n_rows


def _stream(path: Path, chunk_rows: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(path), str(chunk_rows)],
                         capture_output=True, text=True, check=True, cwd=settings.PROJECT_ROOT)
    return json.loads(out.stdout)


def test_50mb_file_streams_in_chunks_with_bounded_memory(tmp_path: Path) -> None:
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    n_big, n_small = _write_big(big, 50_000_000), _write_big(small, 5_000_000)
    chunk_rows = 10_000
    stats, base = _stream(big, chunk_rows), _stream(small, chunk_rows)
    assert stats["rows_read"] == n_big == stats["accepted"] + stats["rejected"]
    assert stats["accepted"] == n_big and base["rows_read"] == n_small
    assert len(stats["sizes"]) == -(-n_big // chunk_rows)
    assert max(stats["sizes"]) <= chunk_rows
    # Streaming holds one chunk at a time: ten times the data costs far less than ten times
    # the memory. Holding the file's text as Python objects would take about 4x its size per
    # copy; what grows with the file here is a small per-row id index (tens of bytes a row).
    big_kb, small_kb = big.stat().st_size / 1024, small.stat().st_size / 1024
    assert stats["growth_kb"] - base["growth_kb"] < 1.0 * (big_kb - small_kb), (stats, base)
    assert stats["growth_kb"] < 2.5 * big_kb, stats


# --- properties: never raise ---------------------------------------------------------------
_DATEY = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\d{1,2}/\d{1,2}/\d{2,4}( \d{1,2}:\d{2}( [AP]M)?)?", fullmatch=True),
    st.from_regex(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?)?", fullmatch=True),
)


@hsettings(max_examples=80, deadline=None)
@given(st.lists(_DATEY, max_size=8))
def test_parse_dates_never_raises(values: list[str]) -> None:
    out = parse_dates(pd.Series(values, dtype=object))
    assert len(out) == len(values)
    ok = out.dropna()
    assert ((ok >= pd.Timestamp(settings.DATE_MIN)) & (ok < pd.Timestamp(settings.DATE_MAX))).all()


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30),
                 st.from_regex(r"\s*\d(st|nd|rd|th|ST|ND|RD|TH)?\s*(div(ision)?|DIVISION)?\.?\s*", fullmatch=True)))
def test_normalize_division_never_raises_and_is_idempotent(text: str) -> None:
    once = normalize_division(text)
    assert isinstance(once, str)
    assert normalize_division(once) == once


def test_source_known_when_nothing_is_accepted(tmp_path: Path) -> None:
    mapping = FIXTURES / "citations_mapping.toml"
    lines = CITATIONS_RENAMED.read_bytes().split(b"\n")
    header_only = write(tmp_path, "h.csv", [b"", lines[0]])
    assert accounted(read_records(header_only, mapping=mapping)).source == "citations"
    assert read_records(write(tmp_path, "p.csv", [b"", HEADER])).source == "crime-pre2023"
    all_rejected = write(tmp_path, "r.csv", [lines[0], lines[6], lines[7]])  # no location, bad date
    result = accounted(read_records(all_rejected, mapping=mapping))
    assert (result.source, result.accepted, result.rejected) == ("citations", 0, 2)


def test_utf16_excel_export_is_read_from_its_bom(tmp_path: Path) -> None:
    # Excel's "Unicode text" export: UTF-16 LE with a BOM and CRLF line ends.
    text = b"\n".join([HEADER, *BODY[:5]]).decode().replace("\n", "\r\n") + "\r\n"
    path = tmp_path / "u16.csv"
    path.write_text(text, encoding="utf-16")
    result = accounted(read_records(path))
    assert result.accepted == 5 and result.records["source_line"].tolist() == [2, 3, 4, 5, 6]
    pd.testing.assert_frame_equal(result.records.drop(columns="source_file"),
                                  read_records(write(tmp_path, "u8.csv", [HEADER, *BODY[:5]]))
                                  .records.drop(columns="source_file"))
    # A lone surrogate (invalid UTF-16) in the third line rejects that row only.
    raw = path.read_bytes()
    at = raw.index("MADISON".encode("utf-16-le"))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(raw[:at] + b"\x00\xd8" + raw[at + 2:])
    bad = accounted(read_records(broken))
    assert bad.accepted == 4 and bad.rejects[["source_line", "reason"]].values.tolist() == [
        [3, "undecodable bytes (not valid utf-16)"]]


def test_unknown_encoding(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="unknown encoding 'klingon'"):
        read_records(FILE_2017, encoding="klingon")


def test_gzip_is_read_and_zip_is_refused_clearly(tmp_path: Path) -> None:
    import gzip
    import zipfile

    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress(b"\n".join([HEADER, *BODY[:7]]) + b"\n"))
    assert accounted(read_records(gz)).accepted == 7
    zipped = tmp_path / "c.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("c.csv", b"\n".join([HEADER, *BODY[:7]]))
    with pytest.raises(InputFileError, match="ZIP archive"):
        read_records(zipped)
    # A corrupt gzip stream is an input error, not a traceback.
    broken = tmp_path / "b.csv.gz"
    broken.write_bytes(gz.read_bytes()[:30])
    with pytest.raises(InputFileError, match=r"b\.csv\.gz"):
        read_records(broken)


def test_excel_sep_line_and_trailing_delimiters(tmp_path: Path) -> None:
    rows = [r.replace(b",", b";") + b";" for r in BODY[:200] if b'"' not in r][:5]
    path = write(tmp_path, "x.csv", [b"sep=;", HEADER.replace(b",", b";"), *rows])
    result = accounted(read_records(path))
    assert result.accepted == 5 and result.records["source_line"].tolist() == [3, 4, 5, 6, 7]
    # A trailing delimiter with data after it is still a wrong field count.
    bad = write(tmp_path, "y.csv", [HEADER, BODY[0] + b",X"])
    assert accounted(read_records(bad)).rejected == 1


def test_nul_bytes_reject_the_row_and_utf16_without_bom_asks_for_encoding(tmp_path: Path) -> None:
    nul = BODY[1].replace(b"MADISON", b"MAD\x00ISON")
    result = accounted(read_records(write(tmp_path, "n.csv", [HEADER, BODY[0], nul])))
    assert result.accepted == 1 and result.rejects["source_line"].tolist() == [3]
    no_bom = tmp_path / "u16.csv"
    no_bom.write_bytes(b"\n".join([HEADER, BODY[0]]).decode().encode("utf-16-le"))
    with pytest.raises(InputFileError, match="--encoding"):
        read_records(no_bom)
    assert accounted(read_records(no_bom, encoding="utf-16-le")).accepted == 1
