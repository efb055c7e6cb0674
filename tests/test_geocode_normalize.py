"""Address normalisation: LMPD forms, USPS abbreviations, bad input, idempotence (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_lead.geocode.normalize import Street, normalize_address, parse_address


@pytest.mark.parametrize(("text", "kind", "normalized"), [
    ("2700 BLOCK W MADISON ST", "block", "2700 BLOCK W MADISON ST"),
    ("900 BLK BAXTER AVE", "block", "900 BLOCK BAXTER AVE"),
    ("1500 block west market street", "block", "1500 BLOCK W MARKET ST"),
    ("N 26TH ST / BANK ST", "intersection", "N 26TH ST / BANK ST"),
    ("Twenty Sixth Street & Bank Street", "intersection", "26TH ST / BANK ST"),
    ("BAXTER AVE//ROSEWOOD AVE", "intersection", "BAXTER AVE / ROSEWOOD AVE"),
    ("dixie hwy and valley station rd", "intersection", "DIXIE HWY / VALLEY STATION RD"),
    ("OUTER LOOP @ PRESTON HWY", "intersection", "OUTER LOOP / PRESTON HWY"),
    ("SAINT ANDREWS CHURCH RD/ SAINT ANTHONY CHURCH RD.", "intersection",
     "ST ANDREWS CHURCH RD / ST ANTHONY CHURCH RD"),
    ("I265S AT DIXIE HWY", "intersection", "I 265 / DIXIE HWY"),
    ("22ND ST TO I64E", "intersection", "22ND ST / I 64"),
    ("2722 Elliott Avenue, Louisville, KY 40211-1234", "address", "2722 ELLIOTT AVE"),
    ("12 Main St Apt 5", "address", "12 MAIN ST"),
    ("4800 OUTER LOOP", "address", "4800 OUTER LOOP"),
    ("6400 BLOCK DUTCHMANS PKY", "block", "6400 BLOCK DUTCHMANS PKWY"),
    ("BLANKENBAKER LN N", "street", "BLANKENBAKER LN N"),
    ("OUTER LOOP", "street", "OUTER LOOP"),
])
def test_lmpd_forms(text: str, kind: str, normalized: str) -> None:
    p = parse_address(text)
    assert (p.kind, p.normalized) == (kind, normalized)


def test_parts_and_zip() -> None:
    p = parse_address("2722 N Elliott Ave, Louisville, KY 40211-1234")
    assert p.number == 2722 and p.zip == "40211"
    assert p.street == Street("N", "ELLIOTT", "AVE", "")
    assert parse_address("100 MAIN ST", "40202-0001").zip == "40202"
    assert parse_address("CRITTENDEN DR S TO I264W").street.postdir == "S"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "reason_word"), [
    ("COMMUNITY / LARGE", "large"), ("COMMUNITY AT LARGE", "large"), ("@FERN CREEK PARK", "place"),
    ("IROQUOIS PARK", "place"), ("GREENWOOD BOAT RAMP", "place"), ("WF - BELVEDERE", "place"),
    ("36 MM GENE SNYDER FWY N", "mile marker"), ("@125.8 I65S", "mile marker"),
    ("", "empty"), ("   ", "empty"), ("!!!", "no street"), ("12345", "no street"),
    ("x" * 10_000, "longer"),
])
def test_not_addresses(text: str, reason_word: str) -> None:
    p = parse_address(text)
    assert p.kind in ("place", "empty", "invalid")
    assert reason_word in p.reason.lower()


def test_non_string_input() -> None:
    assert parse_address(None).kind == "empty"  # type: ignore[arg-type]
    assert parse_address(3.5).kind == "empty"  # type: ignore[arg-type]


address_like = st.one_of(
    st.text(max_size=80),
    st.builds(lambda n, d, name, t: f"{n} BLOCK {d} {name} {t}", st.integers(0, 99999),
              st.sampled_from(["", "N", "W", "SOUTH"]), st.text("ABCXYZ 0123", min_size=1, max_size=12),
              st.sampled_from(["ST", "AVENUE", "PKY", "", "RD."])),
    st.builds(lambda a, sep, b: f"{a}{sep}{b}", st.text("ABC 12THS", max_size=15),
              st.sampled_from([" / ", "&", " AND ", " @ ", " AT ", " TO ", "/"]), st.text("ABC 12THS", max_size=15)),
)


@settings(max_examples=400, deadline=None)
@given(address_like, st.one_of(st.just(""), st.text(max_size=12)))
def test_never_raises_and_idempotent(text: str, zip_code: str) -> None:
    p = parse_address(text, zip_code)
    assert p.kind in ("address", "block", "intersection", "street", "place", "empty", "invalid")
    again = normalize_address(p.normalized)
    assert again == p.normalized or (p.kind in ("empty", "invalid") and again in ("", p.normalized))
