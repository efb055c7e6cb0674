"""Overlapping re-downloads: only new records are added; changed ones are updated with history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from geo_lead import settings
from geo_lead.ingest import ingest_files
from geo_lead.store import opened

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
F2016 = LMPD / "crime_data_2016_drug_sample.csv"
F2017 = LMPD / "crime_data_2017_drug_sample.csv"


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_overlapping_extract_adds_only_new_rows(store_path: Path, tmp_path: Path) -> None:
    # A "new extract" that repeats the last 500 rows of 2016 and brings all of 2017
    # (same pre-2023 format), as an analyst's monthly re-download would.
    old, new = _rows(F2016), _rows(F2017)
    assert old[0] == new[0]
    overlap = tmp_path / "extract.csv"
    with overlap.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([old[0], *old[-500:], *new[1:]])
    with opened(store_path) as store:
        first = ingest_files(store, [F2016])[0]
        before = store.count("records")
        second = ingest_files(store, [overlap])[0]
        after = store.count("records")
        again = ingest_files(store, [overlap])[0]
        assert store.count("records") == after
        assert store.count("record_history") == 0
    assert first.added == before == len(old) - 1
    assert second.rows_read == 500 + len(new) - 1
    assert (second.added, second.unchanged, second.updated) == (len(new) - 1, 500, 0)
    assert after == before + second.added
    assert (again.added, again.unchanged, again.updated) == (0, again.accepted, 0)
    for r in (first, second, again):
        assert r.rows_read == r.accepted + r.rejected
        assert r.accepted == r.added + r.unchanged + r.updated


def test_changed_row_is_updated_and_old_version_kept(store_path: Path, tmp_path: Path) -> None:
    rows = _rows(F2016)
    col = rows[0].index("ZIP_CODE")
    original = rows[5][col]
    rows[5][col] = "40299" if original != "40299" else "40211"  # a corrected ZIP in a re-download
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with opened(store_path) as store:
        ingest_files(store, [F2016])
        report = ingest_files(store, [fixed])[0]
        hist = store.read_table("record_history")
        rec = store.read_records(where="record_id = ?", params=[hist["record_id"].iloc[0]])
    assert (report.added, report.updated, report.unchanged) == (0, 1, len(rows) - 2)
    assert len(hist) == 1
    assert json.loads(hist["old_json"].iloc[0])["zip"] == original
    assert rec["zip"].iloc[0] == rows[5][col] and rec["updated_at"].iloc[0]


def test_insert_rows_converts_missing_and_numpy_values(store_path: Path) -> None:
    """The column-wise fast path writes NULL for every kind of missing value."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({
        "key": ["a", "b", "c"],
        "real": [1.5, np.nan, 3.0],
        "count": np.array([1, 2, 3], dtype="int64"),
        "mixed": pd.Series([np.int64(7), None, "x"], dtype=object),
        "text": pd.Series(["u", pd.NA, "w"], dtype="string"),
    })
    with opened(store_path) as store, store.write():
        store.conn.execute("CREATE TABLE t (key TEXT, real REAL, count INTEGER, mixed, text TEXT)")
        assert store.insert_rows("t", frame) == 3
        rows = store.conn.execute("SELECT key, real, count, mixed, text, typeof(count) FROM t ORDER BY key").fetchall()
    assert rows == [("a", 1.5, 1, 7, "u", "integer"), ("b", None, 2, None, None, "integer"),
                    ("c", 3.0, 3, "x", "w", "integer")]


def test_corrected_address_is_geocoded_again(tmp_path: Path) -> None:
    """A re-download that corrects a block address moves the record on the next geocode."""
    from geo_lead.geocode import geocode_store
    from geo_lead.ingest import ingest_files
    from geo_lead.store import opened

    src = settings.SHIPPED_LMPD_FILES[1]
    text = src.read_text()
    row = next(ln for ln in text.splitlines() if ",2700 BLOCK W MADISON ST," in ln)
    fixed = tmp_path / src.name
    fixed.write_text(text.replace(row, row.replace(",2700 BLOCK W MADISON ST,", ",200 BLOCK E CHESTNUT ST,")))
    incident = row.split(",")[0]
    with opened(tmp_path / "s.gpkg") as store:
        ingest_files(store, [src])
        geocode_store(store)
        before = store.read_records(["lon", "lat", "matched_address"], where="incident_number = ?",
                                    params=[incident])
        assert ingest_files(store, [fixed])[0].updated == 1
        again = geocode_store(store)
        after = store.read_records(["lon", "lat", "matched_address"], where="incident_number = ?",
                                   params=[incident])
    assert again["records"] >= 1  # the corrected record was looked up again
    assert before.loc[0, "matched_address"] == "2750 W MADISON ST"
    assert after.loc[0, "matched_address"] == "250 E CHESTNUT ST"
    # about 2.3 miles east: the point really moved
    assert after.loc[0, "lon"] - before.loc[0, "lon"] > 0.03
