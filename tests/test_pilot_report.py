"""geo_lead.pilot_report: the report's pilot-period sections (year by year, official vs
record-derived First Division, before/after with its interval and limits) and the report hook."""

from __future__ import annotations

import pandas as pd

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.by_year import ByYearResult, YearScores, YearSite
from geo_lead.divisions import DivisionComparison
from geo_lead.evaluation import EvaluationParams, evaluate
from geo_lead.pilot_report import pilot_html
from geo_lead.report import build_report_html


def _evaluation() -> dict:
    rows = []
    for month, (a, b) in {"2018-06": (4, 2), "2018-07": (4, 2), "2018-08": (4, 2), "2018-09": (1, 4),
                          "2018-10": (1, 4), "2018-11": (1, 4)}.items():
        for unit, n in (("RUSSELL", a), ("SHAWNEE", b), ("PARKLAND", 3)):
            rows += [{"occurred_at": f"{month}-03T00:00:00", "neighborhood": unit, "lead_eligible": True,
                      "weight": 1.0, "lon": -85.8, "lat": 38.25}] * n
    return evaluate(pd.DataFrame(rows), ["RUSSELL"], ["SHAWNEE"],
                    EvaluationParams(pilot_start="2018-09-01", replicates=99),
                    context={"comparison_balanced": False, "comparison_max_smd": 0.9,
                             "balance_rule": "every |SMD| <= 0.25"}).to_dict()


def _by_year() -> dict:
    ranks = {"RUSSELL": {"rank": 1, "rank_low": 1, "rank_high": 2, "of": 5, "count": 9.0},
             "PORTLAND": {"rank": 3, "rank_low": 2, "rank_high": 4, "of": 5, "count": 4.0}}
    dens = {n: 1.0 for n in load_neighborhoods()["NH_NAME"]}
    scores = [YearScores(y, 40, 60.0, 1.0, [], dens, ranks) for y in (2018, 2019)]
    sites = [YearSite(2018, "justified", [{"name": "top_on_train", "status": "pass"}], None, 1, 5, 0.7, 1.2,
                      1.1, 20.0, 8.0, ["PORTLAND", "RUSSELL"], ["SHAWNEE"]),
             YearSite(2019, "inconclusive", [{"name": "holdout", "status": "insufficient"}], "holdout", 2, 5,
                      0.5, 1.0, 0.8, 10.0, 2.0, ["PORTLAND", "RUSSELL"], ["SHAWNEE"])]
    return ByYearResult("lead_eligible", "first-division", [2018, 2019], scores, sites).to_dict()


def _divisions() -> dict:
    return DivisionComparison(official=["PORTLAND", "RUSSELL"], records=["<B>", "RUSSELL"], both=["RUSSELL"],
                              only_official=["PORTLAND"], only_records=["<B>"],
                              units=[{"neighborhood": "PORTLAND", "share_inside_official": 0.9, "official": True,
                                      "records": False, "n_records": 4, "records_division": "2ND DIVISION",
                                      "records_division_share": 0.75}], rule="half area").to_dict()


def test_sections_show_places_both_divisions_estimate_interval_and_limits() -> None:
    data = {"by_year": _by_year(), "divisions": _divisions(), "evaluation": _evaluation(),
            "announcement": settings.PILOT_ANNOUNCEMENT_DATE, "neighborhoods": load_neighborhoods(), "notes": []}
    html = pilot_html(data, with_figures=True)
    for text in ("The pilot period, year by year", "1 of 5 (1-2)", "inconclusive", "holdout: insufficient",
                 "one choropleth per year", "official and from the records", "Portland only in the official one",
                 "Before and after the pilot began", "95% interval", "Diversion removes charges",
                 "Living Room", "not balanced", "(the city announced the pilot on 2018-08-22)"):
        assert text in html, text
    assert "<B>" not in html and "&lt;B&gt;" in html  # escaped
    assert html.count("data:image/png;base64,") == 2  # small multiples + monthly series


def test_announcement_date_is_named_and_missing_parts_are_noted() -> None:
    ev = _evaluation()
    ev["pilot_start"] = settings.PILOT_ANNOUNCEMENT_DATE
    html = pilot_html({"evaluation": ev, "announcement": settings.PILOT_ANNOUNCEMENT_DATE,
                       "notes": ["by_year: no records"]}, with_figures=False)
    assert "the date of the city's announcement of the pilot" in html
    assert "Pilot-period sections not shown: by_year: no records" in html
    assert pilot_html(None) == ""


def test_report_hook_places_the_sections() -> None:
    page = build_report_html({"pilot": {"divisions": _divisions(), "notes": []}}, with_figures=False)
    assert "The First Division: official and from the records" in page
    assert page.index("Comparison area") < page.index("official and from the records") < page.index("<h2>Method")


def test_sections_are_report_builders() -> None:
    """(id, heading, builder(report data)) triples, as a report listing its sections takes them."""
    from geo_lead.pilot_report import PILOT_SECTIONS

    data = {"pilot": {"divisions": _divisions(), "notes": []}, "with_figures": False}
    assert [sid for sid, _t, _b in PILOT_SECTIONS] == ["by-year", "first-division", "before-after"]
    bodies = {sid: build(data) for sid, _t, build in PILOT_SECTIONS}
    assert bodies["by-year"] == "" and bodies["before-after"] == ""
    assert "Overlap: 1 of 3" in bodies["first-division"] and "<h2" not in bodies["first-division"]
