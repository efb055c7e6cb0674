"""geo_lead.indicators: the reviewed offence table is the oracle, not the code's own output.

``tests/fixtures/offense_review.csv`` was written by hand from reading every distinct
offence string of the shipped 2017 extract and the drug-related ones of the 2023 extract
(plus near-miss 2023 strings such as firearm possession). It is never regenerated from the
classifier.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead import settings
from geo_lead.errors import RulesError
from geo_lead.indicators import (
    ELIGIBLE,
    classify,
    classify_text,
    load_rules,
    offense_class,
    review_table,
)
from geo_lead.sources import read_records

FIXTURES = Path(__file__).parent / "fixtures"
REVIEW = FIXTURES / "offense_review.csv"
LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FLAGS = ("opiate", "possession", "trafficking", "paraphernalia", "overdose", "other_drug", ELIGIBLE)
CLASSES = {"overdose", "opiate_trafficking", "opiate_possession", "opiate_other", "paraphernalia",
           "drug_trafficking", "drug_possession", "other_drug", "not_drug"}
DRUG_WORDS = re.compile(r"CONT SUB|CONTROLLED|DRUG|MARIJUANA|OVERDOSE|PARAPH|OPIAT|HEROIN|FENTAN|"
                        r"METH|COCAINE|LEGEND|SYNTHETIC|SALVIA|218A")


@pytest.fixture(scope="module")
def review() -> pd.DataFrame:
    table = pd.read_csv(REVIEW, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["offense_text", "class", "lead_eligible"]
    assert table["offense_text"].is_unique
    assert set(table["class"]) <= CLASSES
    assert set(table["lead_eligible"]) <= {"yes", "no"}
    return table


@pytest.fixture(scope="module")
def records_2017() -> pd.DataFrame:
    return read_records(LMPD / "crime_data_2017_drug_sample.csv").records


@pytest.fixture(scope="module")
def records_2023() -> pd.DataFrame:
    return read_records(LMPD / "crime_data_2023_sample.csv").records


def test_review_table_covers_every_2017_offence(review: pd.DataFrame, records_2017: pd.DataFrame) -> None:
    missing = sorted(set(records_2017["offense_text"]) - set(review["offense_text"]))
    assert not missing, f"add these real 2017 strings to {REVIEW.name} by hand: {missing}"


def test_review_table_covers_every_2023_drug_offence(review: pd.DataFrame, records_2023: pd.DataFrame) -> None:
    # "Drug-related" is decided independently of the classifier: NIBRS 35A/35B, a NARCOTICS
    # classification, or a drug word in the text.
    r = records_2023
    drug = r[r["nibrs_code"].isin(["35A", "35B"]) | r["crime_type"].str.contains("NARCOTIC")
             | r["offense_text"].str.contains(DRUG_WORDS)]
    assert len(drug) > 20
    missing = sorted(set(drug["offense_text"]) - set(review["offense_text"]))
    assert not missing, f"add these real 2023 strings to {REVIEW.name} by hand: {missing}"


def test_classifier_agrees_with_every_reviewed_row(review: pd.DataFrame) -> None:
    flags = classify(review[["offense_text"]])
    got_class = flags[list(FLAGS)].apply(offense_class, axis=1)
    got_eligible = flags[ELIGIBLE].map({True: "yes", False: "no"})
    wrong = review[(got_class != review["class"]) | (got_eligible != review["lead_eligible"])]
    detail = pd.DataFrame({"text": wrong["offense_text"], "reviewed": wrong["class"],
                           "got": got_class[wrong.index], "eligible_got": got_eligible[wrong.index]})
    assert wrong.empty, "\n" + detail.to_string()


def test_every_flag_names_a_rule_that_matches(records_2017: pd.DataFrame) -> None:
    rules = load_rules()
    by_id = {r.id: r for r in rules.rules}
    flags = classify(records_2017, rules)
    for flag in rules.flags:
        set_rows = flags[flags[flag]]
        assert (set_rows[f"{flag}_rule"] != "").all()
        assert (flags.loc[~flags[flag], f"{flag}_rule"] == "").all()
        for rid, text in zip(set_rows[f"{flag}_rule"], records_2017.loc[set_rows.index, "offense_text"], strict=True):
            rule = by_id[rid]
            assert rule.flag == flag and rule.pattern.search(text), (rid, text)
    assert (flags.loc[flags[ELIGIBLE], f"{ELIGIBLE}_rule"] == rules.eligibility_id).all()
    # Eligibility is exactly "opiate and possession, not trafficking" under the shipped rules.
    expected = flags["opiate"] & flags["possession"] & ~flags["trafficking"]
    assert (flags[ELIGIBLE] == expected).all()


def test_flags_align_with_input_index() -> None:
    recs = pd.DataFrame({"offense_text": ["OVERDOSE", "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN", None]},
                        index=[10, 20, 30])
    flags = classify(recs)
    assert list(flags.index) == [10, 20, 30]
    assert flags["overdose"].tolist() == [True, False, False]
    assert flags[ELIGIBLE].tolist() == [False, True, False]
    assert flags.loc[30, list(FLAGS)].sum() == 0


@pytest.mark.parametrize(("text", "statute", "cls", "eligible"), [
    # Statute alone carries possession for a citation whose charge text does not say POSS.
    ("CONT SUB 1ST DEG (HEROIN)", "218A.1415", "opiate_possession", True),
    ("TRAF CONT SUB-1ST DEG-1ST OFFN (< 2 GRAMS HEROIN)", "218A.1412", "opiate_trafficking", False),
    ("POSS CONT SUB 1ST DEG 1ST OFF (FENTANYL)", "", "opiate_possession", True),
    ("TRAF IN CONT SUB, 1ST OFFENSE(CARFENTANIL OR FENTANIL)", "", "opiate_trafficking", False),
    ("POSS CONT SUB 1ST DEG 1ST OFF (HEROIN)", "", "opiate_possession", True),
    ("DRUG PARAPHERNALIA - BUY/POSSESS", "218A.500", "paraphernalia", False),
    # the substance written before the act; paraphernalia stays its own class
    ("FENTANYL POSSESSION", "", "opiate_possession", True),
    ("HEROIN - POSS", "", "opiate_possession", True),
    ("POSS OF HERION", "", "opiate_possession", True),  # a common typo
    ("HEROINE POSSESSION", "", "opiate_possession", True),
    ("DRUG PARAPHERNALIA - POSSESSION", "", "paraphernalia", False),
    # methadone is an opioid, not "METH..." (methamphetamine): no other_drug flag besides it
    ("POSS CONT SUB 1ST DEG 2ND OFF (METHADONE)", "", "opiate_possession", True),
])
def test_statute_joins_offence_text(text: str, statute: str, cls: str, eligible: bool) -> None:
    flags = classify(pd.DataFrame({"offense_text": [text], "statute": [statute]}))
    assert offense_class(flags.iloc[0]) == cls
    assert bool(flags.loc[0, ELIGIBLE]) is eligible


def test_review_table_counts_records(records_2017: pd.DataFrame) -> None:
    table = review_table(records_2017)
    assert table["records"].sum() == len(records_2017)
    assert set(table["class"]) <= CLASSES
    heroin = table[table["offense_text"] == "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN"].iloc[0]
    expected = int((records_2017["offense_text"] == "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN").sum())
    assert heroin["records"] == expected
    assert heroin["class"] == "opiate_possession" and heroin[ELIGIBLE]
    assert "opiate.heroin" in heroin["rules"]


# --- custom and bad rules files ------------------------------------------------------------
def test_custom_rules_file(tmp_path: Path) -> None:
    text = settings.RULES_FILE.read_text()
    # An analyst's variant: kratom counts as an opiate, and any opiate record is eligible.
    text = text.replace('pattern = \'\\bHER(OIN|ION)E?\\b\'', 'pattern = \'\\b(HEROIN|KRATOM)\\b\'')
    assert "KRATOM" in text
    text = text.replace('all = ["opiate", "possession"]', 'all = ["opiate"]')
    text = text.replace('none = ["trafficking"]', "none = []")
    text = text.replace('id = "lead.opiate_possession_not_trafficking"', 'id = "lead.custom"')
    custom = tmp_path / "my_rules.toml"
    custom.write_text(text)
    rules = load_rules(custom)
    assert rules.path == custom and rules.eligibility_id == "lead.custom"
    recs = pd.DataFrame({"offense_text": ["POSS OF KRATOM", "AGG TRAF IN CONT SUB, 1ST DEG (> OR = 100 GMS HEROIN)"]})
    flags = classify(recs, rules)
    assert flags["opiate"].tolist() == [True, True]
    assert flags["opiate_rule"].tolist() == ["opiate.heroin", "opiate.heroin"]
    assert flags[ELIGIBLE].tolist() == [True, True]
    assert (flags[f"{ELIGIBLE}_rule"] == "lead.custom").all()
    shipped = classify(recs)
    assert shipped[ELIGIBLE].tolist() == [False, False]


_GOOD_HEAD = 'flags = ["opiate", "possession", "trafficking"]\n'
_GOOD_RULE = '[[rule]]\nid = "a"\nflag = "opiate"\npattern = "HEROIN"\n'
_GOOD_ELIG = '[eligibility]\nall = ["opiate", "possession"]\nnone = ["trafficking"]\n'


@pytest.mark.parametrize(("body", "message"), [
    ("flags = [", "not valid TOML"),
    (_GOOD_RULE + _GOOD_ELIG, "flags"),
    (_GOOD_HEAD + '[[rule]]\nid = "a"\nflag = "opiate"\n' + _GOOD_ELIG, "missing `pattern`"),
    (_GOOD_HEAD + '[[rule]]\nid = "a"\nflag = "opium"\npattern = "X"\n' + _GOOD_ELIG, "'opium' is not one of"),
    (_GOOD_HEAD + _GOOD_RULE + _GOOD_RULE + _GOOD_ELIG, "duplicate rule id 'a'"),
    (_GOOD_HEAD + '[[rule]]\nid = "b"\nflag = "opiate"\npattern = "(HEROIN"\n' + _GOOD_ELIG, "bad regular expression"),
    (_GOOD_HEAD + '[[rule]]\nid = "b"\nflag = "opiate"\npattern = "X"\nunless = "[x"\n' + _GOOD_ELIG, "bad regular expression"),
    (_GOOD_HEAD + '[[rule]]\nid = "b"\nflag = "opiate"\npattern = "X"\nunless_flags = ["nope"]\n' + _GOOD_ELIG, "unknown flag"),
    (_GOOD_HEAD + _GOOD_RULE, r"\[eligibility\]"),
    (_GOOD_HEAD + _GOOD_RULE + '[eligibility]\nall = ["opiate", "eligible"]\n', "unknown: \\['eligible'\\]"),
])
def test_bad_rules_file_raises_rules_error(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(RulesError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_good_minimal_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(_GOOD_HEAD + _GOOD_RULE + _GOOD_ELIG)
    rules = load_rules(path)
    assert classify_text("heroin", rules) == {"opiate": "a"}


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")


def test_rules_file_with_bad_shapes(tmp_path: Path) -> None:
    # Wrong TOML types must still end in a RulesError, never a KeyError/TypeError traceback.
    for body in ('flags = "opiate"\n' + _GOOD_RULE + _GOOD_ELIG,
                 _GOOD_HEAD + 'rule = "x"\n' + _GOOD_ELIG,
                 _GOOD_HEAD + '[[rule]]\nid = "a"\nflag = "opiate"\npattern = 5\n' + _GOOD_ELIG,
                 _GOOD_HEAD + _GOOD_RULE + 'eligibility = "opiate"\n'):
        path = tmp_path / "rules.toml"
        path.write_text(body)
        with pytest.raises(RulesError):
            load_rules(path)


# --- properties ------------------------------------------------------------------------------
@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_classify_text_never_raises(text: str) -> None:
    rules = load_rules()
    hits = classify_text(text, rules)
    assert set(hits) <= set(rules.all_flags)
    assert offense_class(hits) in CLASSES


def test_methadone_is_not_methamphetamine() -> None:
    flags = classify(pd.DataFrame({"offense_text": ["POSS CONT SUB 1ST DEG 2ND OFF (METHADONE)",
                                                    "POSS CONT SUB 1ST DEG (METHAMPHETAMINE)"],
                                   "statute": ["", ""]}))
    assert flags["other_drug"].tolist() == [False, True]
    assert flags["opiate"].tolist() == [True, False]
