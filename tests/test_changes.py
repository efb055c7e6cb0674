"""Change report between two runs: hand-built results with known answers."""

from __future__ import annotations

import math

import pandas as pd

from geo_lead.changes import (
    compare_results,
    compare_snapshots,
    describe,
    hotspots,
    rank_moves,
    verdict,
)


def _scores(ranks: dict[str, float], indicator: str = "opiate") -> list[dict[str, object]]:
    return [{"neighborhood": n, "rank": r, "indicator": indicator, "score": 1.0 / r if r == r else 0}
            for n, r in ranks.items()]


def test_rank_moves_hand_computed() -> None:
    before = _scores({"RUSSELL": 1, "PORTLAND": 2, "PHOENIX HILL": 3, "SHAWNEE": 4})
    after = _scores({"PORTLAND": 1, "RUSSELL": 2, "PHOENIX HILL": 3, "CALIFORNIA": 4})
    out = rank_moves(before, after)
    moves = {m["neighborhood"]: (m["old_rank"], m["new_rank"], m["move"]) for m in out["moves"]}
    assert moves == {"PORTLAND": (2, 1, 1), "RUSSELL": (1, 2, -1)}
    assert [m["neighborhood"] for m in out["entered"]] == ["CALIFORNIA"]
    assert [m["neighborhood"] for m in out["left"]] == ["SHAWNEE"]


def test_rank_moves_sorted_by_size_and_per_indicator() -> None:
    before = _scores({"A": 1, "B": 2, "C": 3, "D": 4}) + _scores({"A": 1, "B": 2}, "overdose")
    after = _scores({"D": 1, "A": 2, "B": 3, "C": 4}) + _scores({"A": 1, "B": 2}, "overdose")
    moves = rank_moves(pd.DataFrame(before), pd.DataFrame(after))["moves"]
    assert [(m["neighborhood"], m["move"]) for m in moves] == [("D", 3), ("A", -1), ("B", -1), ("C", -1)]
    assert all(m["indicator"] == "opiate" for m in moves)  # overdose ranks did not move


def test_unranked_rows_are_ignored() -> None:
    before = _scores({"A": 1, "REMAINDER OF CITY #3": math.nan})
    after = _scores({"A": 1, "REMAINDER OF CITY #3": math.nan})
    out = rank_moves(before, after)
    assert out == {"moves": [], "entered": [], "left": []}


def test_hotspots_from_layers_and_result_json() -> None:
    layers = {"hotspot_gistar_neighborhoods": {"RUSSELL": "hot 99%", "SHAWNEE": "not significant",
                                               "BUTCHERTOWN": "cold 95%"},
              "hotspot_gistar_grid": {"17": "hot 90%", "18": "not significant"}}
    result = {"gistar": {"neighborhoods": [{"neighborhood": "PORTLAND", "label": "hot 95%"},
                                           {"neighborhood": "LIMERICK", "label": "cold 90%"}]},
              "kde": {"cells": [{"cell_id": 5, "label": "hot 99%"}]}}
    assert hotspots(layers, result) == {
        "neighborhood:RUSSELL": "hot 99%", "grid:17": "hot 90%",
        "neighborhood:PORTLAND": "hot 95%", "grid:5": "hot 99%"}


def test_verdict_found_top_level_first() -> None:
    assert verdict({"verdict": "supported", "best": {"verdict": "other"}}) == "supported"
    assert verdict({"comparison": [{"x": 1}, {"verdict": {"label": "not supported"}}]}) == {"label": "not supported"}
    assert verdict(None) is None


def test_compare_results_full_report() -> None:
    report = compare_results(
        _scores({"RUSSELL": 1, "PORTLAND": 2}), _scores({"RUSSELL": 1, "PORTLAND": 2}),
        {"verdict": "pilot zone is near the best"}, {"verdict": "pilot zone is far from the best"},
        {"neighborhood:RUSSELL": "hot 99%", "grid:4": "hot 95%"},
        {"neighborhood:RUSSELL": "hot 95%", "neighborhood:PORTLAND": "hot 90%"})
    assert report["rank_moves"] == []
    assert report["new_hotspots"] == [{"unit": "neighborhood:PORTLAND", "label": "hot 90%"}]
    assert report["vanished_hotspots"] == [{"unit": "grid:4", "label": "hot 95%"}]
    assert report["verdict_changed"] is True
    assert report["top_before"] == report["top_after"] == {"opiate": "RUSSELL"}
    assert report["changed"] is True
    text = "\n".join(describe({**report, "previous_run": "r1"}))
    assert "new hotspot: neighborhood:PORTLAND" in text and "verdict changed" in text


def test_identical_snapshots_report_no_change() -> None:
    snap = {"scores": _scores({"A": 1, "B": 2}), "site_result": {"verdict": "ok"},
            "hotspots": {"hotspot_gistar_neighborhoods": {"A": "hot 99%"}}, "hotspots_result": None}
    report = compare_snapshots(snap, snap, previous_run_id="r1")
    assert report["changed"] is False and report["verdict_changed"] is False
    assert report["first_run"] is False and report["previous_run"] == "r1"
    assert describe(report)[-1].strip() == "no change in ranks, hotspots, sampling frames, capacity zone or verdict"


def test_first_run() -> None:
    report = compare_snapshots(None, {"scores": _scores({"A": 1})})
    assert report["first_run"] is True
    assert [m["neighborhood"] for m in report["entered_ranking"]] == ["A"]
    assert describe(report) == ["first recorded run: nothing to compare with yet"]


def test_check_statuses_and_the_three_verdicts_in_the_change_report() -> None:
    from geo_lead.changes import check_statuses

    before = {"verdict": "justified", "deciding_check": "holdout",
              "checks": [{"name": "windows", "status": "pass"}, {"name": "holdout", "status": "pass"}]}
    after = {"verdict": "inconclusive", "deciding_check": "windows",
             "checks": [{"name": "windows", "status": "insufficient"}, {"name": "holdout", "status": "pass"},
                        {"name": "separation", "status": "pass"}]}
    report = compare_results(None, None, before, after)
    assert report["check_changes"] == [{"check": "separation", "before": None, "after": "pass"},
                                       {"check": "windows", "before": "pass", "after": "insufficient"}]
    assert report["verdict_changed"] and report["changed"]
    assert report["deciding_check_after"] == "windows"
    lines = describe({**report, "previous_run": "r1"})
    assert "  check windows: pass -> insufficient" in lines
    assert "  verdict changed: 'justified' -> 'inconclusive' (deciding check: windows)" in lines
    # Only a check's status moved: still a change (the verdict can stay the same).
    same = compare_results(None, None, after, {**after, "checks": [{"name": "windows", "status": "fail"}]})
    assert same["changed"] and not same["verdict_changed"]
    # Older results kept boolean checks: True pass, False fail, None insufficient.
    assert check_statuses({"verdict_checks": {"a": True, "b": False, "c": None}}) == {
        "a": "pass", "b": "fail", "c": "insufficient"}
