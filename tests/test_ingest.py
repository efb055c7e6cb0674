"""geo_lead.ingest: files -> store with full accounting, idempotence, updates and privacy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from geo_lead import settings
from geo_lead.errors import InputFileError, MissingColumnError
from geo_lead.indicators import load_rules
from geo_lead.ingest import META_RULES, ingest_files, reflag_if_rules_changed
from geo_lead.sources import PERSON_FIELDS
from geo_lead.store import opened

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FILE_2017 = LMPD / "crime_data_2017_drug_sample.csv"
FILE_2023 = LMPD / "crime_data_2023_sample.csv"
FIXTURES = Path(__file__).parent / "fixtures"
CITATIONS = FIXTURES / "citations_documented_columns.csv"


def _check(report) -> None:  # type: ignore[no-untyped-def]
    assert report.rows_read == report.accepted + report.rejected
    assert report.accepted == report.added + report.unchanged + report.updated


def test_ingest_shipped_files_adds_up(store_path: Path) -> None:
    with opened(store_path) as store:
        reports = ingest_files(store, [FILE_2017, FILE_2023])
        for r in reports:
            _check(r)
        r17, r23 = reports
        assert (r17.source, r17.rows_read, r17.accepted, r17.added) == ("crime-pre2023", 2147, 2147, 2147)
        assert r23.source == "crime-2023" and r23.rows_read == 1000 and r23.added == r23.accepted
        assert store.count("records") == r17.accepted + r23.accepted
        assert store.count("rejects") == r17.rejected + r23.rejected
        ingests = store.read_table("ingests")
        assert ingests["rows_read"].tolist() == [2147, 1000]
        assert ingests["file_sha256"].str.len().eq(64).all()
        recs = store.read_records(["record_id", "opiate", "opiate_rule", "lead_eligible", "lead_eligible_rule"])
    assert recs["record_id"].is_unique
    # Every flagged record names the rule that flagged it.
    assert (recs.loc[recs["opiate"], "opiate_rule"] != "").all()
    assert (recs.loc[recs["lead_eligible"], "lead_eligible_rule"] != "").all()


def test_ingest_twice_adds_nothing(store_path: Path) -> None:
    with opened(store_path) as store:
        first = ingest_files(store, [FILE_2023])[0]
        second = ingest_files(store, [FILE_2023])[0]
        _check(second)
        assert second.added == 0 and second.updated == 0 and second.unchanged == first.accepted
        assert second.rejected == first.rejected
        assert store.count("records") == first.accepted
        assert store.count("rejects") == first.rejected  # rejects are not duplicated either
        assert store.count("ingests") == 2


def test_reordered_redownload_adds_and_updates_nothing(store_path: Path, tmp_path: Path) -> None:
    lines = FILE_2017.read_bytes().split(b"\n")
    body = [ln for ln in lines[1:] if ln.strip()]
    random.Random(3).shuffle(body)
    again = tmp_path / FILE_2017.name
    again.write_bytes(b"\n".join([lines[0], *body]) + b"\n")
    with opened(store_path) as store:
        ingest_files(store, [FILE_2017])
        report = ingest_files(store, [again])[0]
    assert (report.added, report.updated, report.unchanged) == (0, 0, 2147)


def test_changed_redownload_updates_and_keeps_history(store_path: Path, tmp_path: Path) -> None:
    text = FILE_2017.read_text()
    # LMPD corrects a premise on one row and publishes one more row.
    old_row = text.splitlines()[2]
    assert old_row.startswith("80-17-055507,") and ",RESIDENCE / HOME," in old_row
    new_row = old_row.replace(",RESIDENCE / HOME,", ",HIGHWAY / ROAD / ALLEY,")
    extra = old_row.replace("80-17-055507", "80-17-999999")
    changed = tmp_path / FILE_2017.name
    changed.write_text(text.replace(old_row, new_row) + extra + "\n")
    with opened(store_path) as store:
        ingest_files(store, [FILE_2017])
        report = ingest_files(store, [changed])[0]
        _check(report)
        assert (report.rows_read, report.added, report.updated, report.unchanged) == (2148, 1, 1, 2146)
        hist = store.read_table("record_history")
        now = store.read_records(["record_id", "premise", "updated_at"],
                                 where="incident_number = ?", params=["80-17-055507"])
    assert len(hist) == 1
    old = json.loads(hist.loc[0, "old_json"])
    assert old["premise"] == "RESIDENCE / HOME" and old["incident_number"] == "80-17-055507"
    assert hist.loc[0, "record_id"] == now.loc[0, "record_id"]
    assert now.loc[0, "premise"] == "HIGHWAY / ROAD / ALLEY" and now.loc[0, "updated_at"]


def test_citation_person_fields_stay_in_persons(store_path: Path) -> None:
    with opened(store_path) as store:
        report = ingest_files(store, [CITATIONS])[0]
        _check(report)
        assert (report.accepted, report.rejected) == (5, 2)
        persons = store.read_table("persons")
        assert len(persons) == 5 and persons["sex"].str.startswith("SEXVAL-").all()
        assert not set(PERSON_FIELDS) & set(store.columns("records"))
        # Change a citation so record_history is written too, then re-check everything GDAL sees.
        ingest_files(store, [CITATIONS])
    # Every layer a GIS client lists: no person column, no person value.
    for layer, _ in pyogrio.list_layers(store_path):
        frame = pyogrio.read_dataframe(store_path, layer=layer, read_geometry=False)
        assert not set(PERSON_FIELDS) & {c.lower() for c in frame.columns}, layer
        assert "VAL-" not in frame.astype(str).to_csv(), layer
    gdf = pyogrio.read_dataframe(store_path, layer="records")
    assert len(gdf) == 5 and gdf.crs.to_epsg() == 4326


def test_citations_flags(store_path: Path) -> None:
    with opened(store_path) as store:
        ingest_files(store, [CITATIONS])
        recs = store.read_records(["incident_number", "offense_text", "opiate", "trafficking",
                                   "paraphernalia", "lead_eligible"])
    # Hand-read from the fixture: heroin and opiates possession are eligible; trafficking is not.
    eligible = recs.loc[recs["lead_eligible"], "incident_number"].tolist()
    assert sorted(eligible) == ["FX0000001", "FX0000002"]
    traf = recs[recs["incident_number"] == "FX0000003"].iloc[0]
    assert traf["opiate"] and traf["trafficking"] and not traf["lead_eligible"]


def test_failed_file_rolls_back_the_whole_ingest(store_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("INCIDENT_NUMBER,UOR_DESC\n1,OVERDOSE\n")
    with opened(store_path) as store:
        with pytest.raises(MissingColumnError):
            ingest_files(store, [FILE_2023, broken])
        assert store.count("records") == 0 and store.count("ingests") == 0


@pytest.mark.parametrize("bad", ["missing.csv", "a_directory"])
def test_unreadable_path_is_an_input_error(store_path: Path, tmp_path: Path, bad: str) -> None:
    (tmp_path / "a_directory").mkdir()
    with opened(store_path) as store, pytest.raises(InputFileError, match=bad):
        ingest_files(store, [tmp_path / bad])


def test_ingest_with_mapping_and_encoding(store_path: Path, tmp_path: Path) -> None:
    renamed = FIXTURES / "citations_renamed_columns.csv"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(renamed.read_bytes().replace(b"PORTLAND AVE", b"PORTLAND AV\xc9"))
    with opened(store_path) as store:
        utf8 = ingest_files(store, [latin], mapping=FIXTURES / "citations_mapping.toml")[0]
        assert (utf8.accepted, utf8.rejected) == (4, 3)
    with opened(tmp_path / "other.gpkg") as store:
        l1 = ingest_files(store, [latin], mapping=FIXTURES / "citations_mapping.json", encoding="latin-1")[0]
        assert (l1.source, l1.accepted, l1.rejected) == ("citations", 5, 2)
        addr = store.read_records(["address_raw"], where="incident_number = ?", params=["FX0000003"])
    assert addr.loc[0, "address_raw"] == "2600 BLOCK PORTLAND AVÉ"


def test_changed_rules_reflag_stored_records(store_path: Path, tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(settings.RULES_FILE.read_text().replace('none = ["trafficking"]', "none = []")
                          .replace('all = ["opiate", "possession"]', 'all = ["opiate"]'))
    custom = load_rules(rules_path)
    with opened(store_path) as store:
        ingest_files(store, [FILE_2017])
        before = store.read_records(["record_id", "opiate", "lead_eligible"])
        # under the custom rule every opiate record is eligible: exactly these flip
        expected = int((before["opiate"] & ~before["lead_eligible"]).sum())
        assert expected > 0
        with store.write():
            assert reflag_if_rules_changed(store, custom) == expected
        with store.write():
            assert reflag_if_rules_changed(store, custom) == 0  # same rules: nothing to do
        assert store.get_json(META_RULES)["sha256"] == custom.sha256
        after = store.read_records(["opiate", "lead_eligible", "lead_eligible_rule"])
        assert (after["lead_eligible"] == after["opiate"]).all()
        # a later ingest with the shipped rules puts every record back under them
        ingest_files(store, [FILE_2017])
        back = store.read_records(["record_id", "opiate", "lead_eligible"])
        assert store.get_json(META_RULES)["sha256"] == load_rules().sha256
    pd.testing.assert_frame_equal(back, before)


def test_records_match_read_records(store_path: Path) -> None:
    from geo_lead.sources import read_records

    expected = read_records(FILE_2017).records
    with opened(store_path) as store:
        ingest_files(store, [FILE_2017])
        got = store.read_records(list(expected.columns))
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))
