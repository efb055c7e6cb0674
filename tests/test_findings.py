"""Findings: every sentence is built from the result objects, so it changes when they do."""

from __future__ import annotations

import copy

from geo_lead.findings import (
    Findings,
    findings,
    interval_statements,
    place,
    top_claim,
    verdict_sentence,
    weakest_check,
)

SCORES = [
    {"neighborhood": "RUSSELL", "rank": 1, "rank_low": 1, "rank_high": 3, "in_area": True},
    {"neighborhood": "PORTLAND", "rank": 2, "rank_low": 1, "rank_high": 4, "in_area": True},
    {"neighborhood": "CENTRAL BUSINESS DISTRICT", "rank": 3, "rank_low": 1, "rank_high": 4, "in_area": True},
    {"neighborhood": "PHOENIX HILL", "rank": 4, "rank_low": 2, "rank_high": 4, "in_area": True},
    {"neighborhood": "BUTCHERTOWN", "rank": 5, "rank_low": 5, "rank_high": 5, "in_area": True},
    {"neighborhood": "SHAWNEE", "rank": None, "rank_low": None, "rank_high": None, "in_area": False},
]
PILOT = ["PORTLAND", "RUSSELL"]


def _checks(**status: str) -> list[dict[str, object]]:
    base = [
        {"name": "top_on_train", "label": "training rank", "status": "pass", "value": 1,
         "threshold": 1, "direction": "at_most", "measure": "reach",
         "detail": "Portland + Russell ranks 1 of 5 contiguous zones"},
        {"name": "windows", "label": "yearly windows", "status": "insufficient", "value": None, "threshold": 0.5,
         "direction": "at_least", "measure": "reach",
         "detail": "1 of 2 calendar years hold the 30 records a window needs"},
        {"name": "holdout", "label": "holdout", "status": "pass", "value": 0.94, "threshold": 0.8,
         "direction": "at_least", "measure": "concentration",
         "detail": "the pilot's PAI 1.16 ranks 3 of 5; the best is Central Business District + Russell at 1.23"},
    ]
    for c in base:
        c["status"] = status.get(str(c["name"]), c["status"])
    return base


def test_place_names_read_as_prose() -> None:
    assert place("CENTRAL BUSINESS DISTRICT") == "the Central Business District"
    assert place("PHOENIX HILL") == "Phoenix Hill"


def test_interval_sentences_follow_the_intervals() -> None:
    # The example: Portland's interval 1-4 overlaps the Central Business District's.
    text = interval_statements(SCORES, PILOT)
    assert text[0] == ("Portland ranks 2 of 5; its 90% interval is 1-4: the data do not separate it from "
                       "the Central Business District and Phoenix Hill.")
    assert text[1].startswith("Russell ranks 1 of 5; its 90% interval is 1-3")
    # Narrow the intervals: the same call now says they are clear.
    narrow = copy.deepcopy(SCORES)
    for r in narrow:
        if r["neighborhood"] in ("CENTRAL BUSINESS DISTRICT", "PHOENIX HILL"):
            r["rank_low"], r["rank_high"] = 3, 4
        if r["neighborhood"] == "PORTLAND":
            r["rank_low"], r["rank_high"] = 1, 2
        if r["neighborhood"] == "RUSSELL":
            r["rank_low"], r["rank_high"] = 1, 2
    assert interval_statements(narrow, PILOT)[0].endswith("1-2: clear of every unit outside the pilot zone.")
    # the README's old hand-written claim, now computed
    assert top_claim(SCORES, PILOT) == ("The data do not support 'Portland and Russell are the top 2': "
                                        "Portland's interval reaches 4; Russell's interval reaches 3.")
    assert top_claim(narrow, PILOT).startswith("The data support 'Portland and Russell are the top 2'")


def test_verdict_sentence_names_the_deciding_check_and_its_reason() -> None:
    checks = _checks()
    s = verdict_sentence("inconclusive", "windows", checks)
    assert s.startswith("Inconclusive: the yearly windows check") and "1 of 2 calendar years" in s
    failing = _checks(windows="pass", holdout="fail")
    s = verdict_sentence("revise", "holdout", failing)
    assert s.startswith("Revise: the holdout check fails") and "ranks 3 of 5" in s
    passing = _checks(windows="pass")
    passing[1]["value"] = 0.55
    assert weakest_check(passing) == "windows"  # 0.55 vs 0.5: 10% above, the narrowest margin
    passing[1]["value"] = 1.0
    assert weakest_check(passing) == "holdout"  # now 0.94 vs 0.8 (18% above) is
    assert verdict_sentence("justified", "holdout", passing).startswith(
        "Justified: all 3 checks pass; the closest to its threshold is the holdout check")


def test_findings_are_built_from_the_site_and_hotspot_results() -> None:
    site = {"verdict": "inconclusive", "deciding_check": "windows", "checks": _checks(),
            "pilot_zone": {"neighborhoods": PILOT, "share": 0.725, "reach_per_year": 160.9, "pai": 1.21},
            "best_zone_same_size": {"neighborhoods": PILOT}, "pilot_rank": 1, "n_candidate_zones": 5,
            "measures": {"objective": "reach"},
            "holdout": {"records_test": 24.0, "pilot_pai_test": 1.16, "pilot_rank_test": 3, "n_zones": 5,
                        "pilot_rank_train": 2, "best_test": ["CENTRAL BUSINESS DISTRICT", "RUSSELL"],
                        "best_test_pai": 1.23},
            "records": {"kept": 338, "not_geocoded": 16, "in_candidates": 74},
            "comparison_area": {"neighborhoods": ["ALGONQUIN", "BEECHMONT"], "balanced": False,
                                "max_abs_std_mean_diff": 1.36, "balance_rule": "every |SMD| <= 0.25",
                                "balance": [{"feature": "eb_rate_per_1000", "pilot_mean": 13.66,
                                             "comparison_mean": 7.89, "std_mean_diff": 1.36}]}}
    hot = {"gistar_neighborhoods": {
        "labels": {"hot, FDR 1%": 1, "not significant": 89}, "permutations": 18000,
        "p_value": "two-sided", "fdr_levels_not_offered": [],
        "top": [{"neighborhood": "CALIFORNIA", "gi_z": 5.2, "p_two_sided": 0.0001, "label": "hot, FDR 1%"},
                {"neighborhood": "RUSSELL", "gi_z": 3.8, "p_two_sided": 0.015, "label": "not significant"}]}}
    f = findings(site, SCORES, hot)
    assert isinstance(f, Findings) and f.verdict == "inconclusive"
    assert f.verdict_sentence == verdict_sentence("inconclusive", "windows", site["checks"])
    assert f.reasons[0].startswith("Yearly windows (reach): insufficient")  # the deciding check first
    assert len(f.reasons) == 3
    text = " ".join(f.statements)
    assert "ranks 3 of 5 zones of its size" in text and "the Central Business District + Russell is first" in text
    assert "FDR 1%: California" in text and "Russell: Gi* z 3.80, two-sided p 0.0150, not significant" in text
    assert any("16 of 354 eligible records (4.5%)" in s for s in f.limits)
    assert any("comparison area differs most on eb_rate_per_1000" in s for s in f.limits)
    assert any(s.startswith("Too little data for the yearly windows check") for s in f.limits)
    # change the inputs: the sentences change with them
    site2 = copy.deepcopy(site)
    site2["holdout"].update(pilot_rank_test=1, best_test=PILOT)
    site2["records"]["not_geocoded"] = 0
    f2 = findings(site2, SCORES, None)
    assert "ranks 1 of 5 zones of its size (2 on the training months); it is the best." in " ".join(f2.statements)
    assert not any("could not be placed" in s for s in f2.limits)
    assert not any("Gi*" in s for s in f2.statements)
    assert findings(None).verdict_sentence == "No site-selection verdict has been computed."
    assert set(f.to_dict()) == {"verdict", "verdict_sentence", "reasons", "limits", "statements"}


def test_report_verdict_and_checks_come_from_the_results() -> None:
    import html

    from geo_lead.report import build_report_html

    site = {"verdict": "inconclusive", "deciding_check": "windows", "checks": _checks(),
            "verdict_rule": "RULE TEXT"}
    page = html.unescape(build_report_html({"site_result": site}, with_figures=False))
    assert verdict_sentence("inconclusive", "windows", site["checks"]) in page
    assert "1 of 2 calendar years hold the 30 records" in page and "concentration" in page
    site["checks"][1]["detail"] = "2 of 3 calendar years hold 30 records"
    site["checks"][1]["status"] = "pass"
    site.update(verdict="justified", deciding_check="holdout")
    page = html.unescape(build_report_html({"site_result": site}, with_figures=False))
    assert "Justified: all 3 checks pass" in page and "2 of 3 calendar years" in page
    assert "1 of 2 calendar years" not in page
