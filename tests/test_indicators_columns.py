"""`indicators.classify` gathers per-record columns from the rules run once per distinct text:
checked against `classify_text` applied record by record (the oracle), on the shipped files
and on hand-built frames with missing values, a non-default index and no statute column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geo_lead import settings
from geo_lead.indicators import classify, classify_text, load_rules
from geo_lead.sources import iter_chunks


def _oracle(records: pd.DataFrame) -> pd.DataFrame:
    rules = load_rules()
    rows = []
    for _, rec in records.iterrows():
        text = "" if pd.isna(rec["offense_text"]) else str(rec["offense_text"])
        if "statute" in records:
            text = (text + " " + ("" if pd.isna(rec["statute"]) else str(rec["statute"]))).strip()
        hits = classify_text(text, rules)
        row: dict[str, object] = {}
        for flag in rules.all_flags:
            row[flag] = flag in hits
            row[f"{flag}_rule"] = hits.get(flag, "")
        rows.append(row)
    columns = [c for f in rules.all_flags for c in (f, f"{f}_rule")]
    return pd.DataFrame(rows, index=records.index, columns=columns)


def _check(records: pd.DataFrame) -> None:
    got = classify(records)
    want = _oracle(records)
    assert list(got.columns) == list(want.columns)
    assert got.index.equals(records.index)
    for col in got.columns:
        np.testing.assert_array_equal(got[col].astype(object).to_numpy(), want[col].astype(object).to_numpy(),
                                      err_msg=col)
        if not col.endswith("_rule"):
            assert got[col].dtype == bool


def test_classify_matches_record_by_record_on_shipped_files() -> None:
    files = sorted((settings.SHIPPED_DATA_DIR / "lmpd").glob("crime_data_20*.csv"))
    records = pd.concat([c.records for f in files for c in iter_chunks(f)], ignore_index=True)
    sample = records.sample(1500, random_state=settings.RANDOM_SEED)  # a shuffled, gappy index
    _check(sample)
    assert classify(sample)["opiate"].any()


@pytest.mark.parametrize("with_statute", [True, False])
def test_classify_missing_values_and_index(with_statute: bool) -> None:
    frame = pd.DataFrame({"offense_text": ["POSSESSION OF HEROIN", None, "  possession   of heroin ",
                                           np.nan, "TRAFFICKING IN CONTROLLED SUBSTANCE - HEROIN", ""],
                          "statute": ["218A.1415", "218A.1415", None, np.nan, "218A.1412", ""]},
                         index=[10, 3, 7, 99, -1, 5])
    if not with_statute:
        frame = frame.drop(columns="statute")
    _check(frame)
    _check(frame.iloc[:0])


def test_classify_numeric_statute_texts() -> None:
    frame = pd.DataFrame({"offense_text": ["POSSESSION OF HEROIN"] * 3, "statute": [218.0, np.nan, 5.5]})
    _check(frame)
