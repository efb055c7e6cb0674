"""geo_lead.evaluation: monthly series, DiD of log means against hand-computed cases, the
block bootstrap's seed reproducibility, row accounting, and ``geo-lead evaluate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from geo_lead import cli, settings
from geo_lead.errors import GeoLeadError
from geo_lead.evaluation import (
    EvaluationParams,
    block_indices,
    bootstrap_did,
    did_log_means,
    evaluate,
    group_shares,
    monthly_series,
)


def _records(counts: dict[str, dict[str, int]], weight: float = 1.0, day: int = 10) -> pd.DataFrame:
    """`counts[month][unit]` eligible records on day `day` of each month ("" = no unit)."""
    rows = []
    for month, per_unit in counts.items():
        for unit, n in per_unit.items():
            rows += [{"occurred_at": f"{month}-{day:02d}T12:00:00", "neighborhood": unit,
                      "lead_eligible": True, "weight": weight, "lon": -85.78, "lat": 38.25}] * n
    return pd.DataFrame(rows)


#: Pilot A: before 2, 4, 6 (mean 4), after 1, 1, 1 (mean 1); comparison B: before 2, 2, 2
#: (mean 2), after 4, 4, 4 (mean 4); rest C: 5 every month.
HAND = {"2018-01": {"A": 2, "B": 2, "C": 5}, "2018-02": {"A": 4, "B": 2, "C": 5},
        "2018-03": {"A": 6, "B": 2, "C": 5}, "2018-04": {"A": 1, "B": 4, "C": 5},
        "2018-05": {"A": 1, "B": 4, "C": 5}, "2018-06": {"A": 1, "B": 4, "C": 5}}


def test_did_hand_computed() -> None:
    res = evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-04-01", replicates=200))
    # [log 1 - log 4] - [log 4 - log 2] = -log 8
    assert res.estimate.did_log == pytest.approx(-math.log(8))
    assert res.estimate.relative_change == pytest.approx(1 / 8 - 1)
    # against the rest (5 -> 5): log(1/4) - 0
    assert res.versus_rest.did_log == pytest.approx(math.log(0.25))
    assert res.groups["pilot"]["before_mean_per_month"] == pytest.approx(4.0)
    assert res.groups["comparison"]["after_mean_per_month"] == pytest.approx(4.0)
    assert res.periods["before"]["months"] == 3 and res.periods["after"]["months"] == 3
    assert res.periods["transition_month"] is None  # a start on the 1st leaves no month out
    assert res.estimate.ci_low <= res.estimate.did_log <= res.estimate.ci_high


def test_weights_scale_counts_and_cancel_in_the_did() -> None:
    one = evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-04-01", replicates=99))
    ten = evaluate(_records(HAND, weight=10.0), ["A"], ["B"],
                   EvaluationParams(pilot_start="2018-04-01", replicates=99))
    assert ten.groups["pilot"]["before_mean_per_month"] == pytest.approx(40.0)
    assert ten.estimate.did_log == pytest.approx(one.estimate.did_log)


def test_did_log_means_direct_and_undefined() -> None:
    before = {"pilot": np.array([3.0, 5.0]), "comparison": np.array([1.0, 1.0])}
    after = {"pilot": np.array([2.0, 2.0]), "comparison": np.array([3.0, 1.0])}
    assert did_log_means(before, after) == pytest.approx((math.log(2) - math.log(4)) - (math.log(2) - 0.0))
    assert did_log_means(before, {"pilot": np.array([0.0]), "comparison": np.array([1.0])}) is None


def test_transition_month_left_out_and_rows_accounted() -> None:
    recs = _records(HAND)
    extra = pd.DataFrame([
        {"occurred_at": "2018-02-01T00:00:00", "neighborhood": "A", "lead_eligible": False, "weight": 1.0,
         "lon": -85.78, "lat": 38.25},
        {"occurred_at": "", "neighborhood": "A", "lead_eligible": True, "weight": 1.0, "lon": -85.78, "lat": 38.25},
        {"occurred_at": "2018-02-01T00:00:00", "neighborhood": "", "lead_eligible": True, "weight": 1.0,
         "lon": np.nan, "lat": np.nan},
        {"occurred_at": "2018-05-03T00:00:00", "neighborhood": "", "lead_eligible": True, "weight": 1.0,
         "lon": -85.7, "lat": 38.2},  # placed outside every unit: the rest of the city
    ])
    recs = pd.concat([recs, extra], ignore_index=True)
    series, acc = monthly_series(recs, ["A"], ["B"], "2018-04-15")
    assert series.loc["2018-04", "period"] == "transition"
    assert series.loc["2018-03", "period"] == "before" and series.loc["2018-05", "period"] == "after"
    assert series.loc["2018-05", "rest"] == pytest.approx(6.0)
    assert acc["not_flagged"] == 1 and acc["undated"] == 1 and acc["not_geocoded"] == 1
    placed = sum(v for g in acc["placed_by_group_and_period"].values() for v in g.values())
    assert placed == pytest.approx(acc["placed"])
    assert acc["records_in"] == (acc["not_flagged"] + acc["undated"] + acc["not_geocoded"]
                                 + acc["outside_covered_months"] + acc["placed"])


def test_months_outside_the_files_cover_are_counted_apart() -> None:
    recs = _records(HAND).assign(source_file="y2018.csv", reported_at="")
    recs["reported_at"] = recs["occurred_at"]
    old = recs.iloc[[0]].assign(occurred_at="2016-05-01T00:00:00")  # reported 2018-01, happened 2016
    series, acc = monthly_series(pd.concat([recs, old], ignore_index=True), ["A"], ["B"], "2018-04-01")
    assert list(series.index) == [f"2018-0{m}" for m in range(1, 7)]
    assert acc["outside_covered_months"] == 1


def test_split_shares_divide_a_record_between_groups() -> None:
    recs = pd.DataFrame({"neighborhood": ["A", "A", "C"]}, index=[10, 11, 12])
    shares = pd.DataFrame({"row": [10, 11, 11, 12], "unit": ["A", "A", "B", "C"], "share": [1.0, 0.5, 0.5, 1.0]})
    out = group_shares(recs, ["A"], ["B"], shares)
    assert out.loc[11].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert out.loc[12].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert out.sum(axis=1).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(GeoLeadError, match="shares"):
        group_shares(recs, ["A"], ["A", "B"])


def test_block_indices_are_runs_of_consecutive_months() -> None:
    rng = np.random.default_rng(1)
    for n, b in ((10, 3), (16, 3), (2, 3), (31, 1)):
        idx = block_indices(n, b, rng)
        assert len(idx) == n and idx.min() >= 0 and idx.max() < n
        bb = min(b, n)
        for start in range(0, n, bb):  # each block is start, start+1, ...
            run = idx[start:start + bb]
            assert (np.diff(run) == 1).all()


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    rng = np.random.default_rng(7)
    before = pd.DataFrame({g: rng.poisson(5, 24).astype(float) for g in ("pilot", "comparison", "rest")})
    after = pd.DataFrame({g: rng.poisson(4, 12).astype(float) for g in ("pilot", "comparison", "rest")})
    a = bootstrap_did(before, after, 3, 300, seed=11)
    b = bootstrap_did(before, after, 3, 300, seed=11)
    c = bootstrap_did(before, after, 3, 300, seed=12)
    assert np.array_equal(a["comparison"], b["comparison"], equal_nan=True)
    assert not np.array_equal(a["comparison"], c["comparison"], equal_nan=True)
    # replicates centre on the estimate (same data, resampled months)
    est = did_log_means(before, after)
    assert abs(np.nanmedian(a["comparison"]) - est) < 0.3
    r1 = evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-04-01", replicates=300, seed=5))
    r2 = evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-04-01", replicates=300, seed=5))
    assert r1.to_dict() == r2.to_dict()


def test_too_few_months_and_bad_dates_are_clear_errors() -> None:
    with pytest.raises(GeoLeadError, match="month"):
        evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-06-01"))
    with pytest.raises(GeoLeadError, match="not a date"):
        evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="August"))
    with pytest.raises(GeoLeadError, match="comparison"):
        evaluate(_records(HAND), ["A"], [], EvaluationParams(pilot_start="2018-04-01"))


def test_limits_say_what_the_design_cannot_show() -> None:
    res = evaluate(_records(HAND), ["A"], ["B"], EvaluationParams(pilot_start="2018-04-01", replicates=99),
                   context={"comparison_balanced": False, "comparison_max_smd": 1.03,
                            "balance_rule": "every |SMD| <= 0.25"})
    text = " ".join(res.limits)
    for phrase in ("samples", "Diversion removes charges", "not an outcome", "Living Room", "not balanced",
                   "1.03", "2018-04-01"):
        assert phrase in text


def test_figure_renders(tmp_path: Path) -> None:
    from geo_lead.pilot_figures import monthly_series_figure
    from geo_lead.figures import png_bytes

    res = evaluate(_records(HAND), ["A"], ["B"],
                   EvaluationParams(pilot_start="2018-04-15", replicates=99, min_months=2))
    png = png_bytes(monthly_series_figure(res.to_dict()))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_cli_evaluate_reads_the_stored_comparison(store_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from geo_lead.store import FLAG_COLUMNS, opened

    recs = _records({**HAND, "2018-07": {"A": 1, "B": 4, "C": 5}})
    recs["neighborhood"] = recs["neighborhood"].map({"A": "RUSSELL", "B": "SHAWNEE", "C": "PARKLAND"})
    recs["record_id"] = [f"r{i}" for i in range(len(recs))]
    recs["content_hash"] = recs["record_id"]
    with opened(store_path) as store, store.write():
        store.upsert_records(recs[["record_id", "occurred_at", "content_hash"]], "2026-01-01T00:00:00Z")
        upd = recs[["record_id", "neighborhood", "lon", "lat"]].copy()
        for flag in FLAG_COLUMNS:
            upd[flag] = 1 if flag == "lead_eligible" else 0
        store.update_records(upd)
        store.put_json("site_result", {"pilot_zone": {"neighborhoods": ["RUSSELL"]},
                                       "comparison_area": {"neighborhoods": ["SHAWNEE"], "balanced": True,
                                                           "max_abs_std_mean_diff": 0.1}})
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("evaluate",))
    fig = tmp_path / "eval.png"
    rc = cli.main(["evaluate", "--store", str(store_path), "--pilot-start", "2018-04-01", "--json",
                   "--replicates", "200", "--figure", str(fig)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # pilot 4 -> 1, comparison 2 -> 4 (July adds 1 and 4 to the after months)
    assert out["estimate"]["did_log"] == pytest.approx(-math.log(8))
    assert out["zones"] == {"pilot": ["RUSSELL"], "comparison": ["SHAWNEE"]}
    assert out["estimate"]["ci_low"] is not None and out["bootstrap"]["replicates"] == 200
    assert fig.read_bytes()[:4] == b"\x89PNG"
    with opened(store_path) as store:
        assert store.get_json("evaluation_result")["estimate"] == out["estimate"]
    assert cli.main(["evaluate", "--store", str(store_path), "--pilot-start", "2018-04-01",
                     "--comparison", "NARNIA"]) == 2
    assert "NARNIA" in capsys.readouterr().err
    assert cli.main(["evaluate", "--store", str(store_path), "--pilot-start", "soon"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_default_start_is_the_announcement() -> None:
    assert EvaluationParams().pilot_start == settings.PILOT_ANNOUNCEMENT_DATE == "2018-08-22"


def _replicates_one_by_one(b_arr: dict[str, np.ndarray], a_arr: dict[str, np.ndarray], block: int,
                           replicates: int, seed: int, controls: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The bootstrap as its definition reads: per replicate, blocks drawn before then after,
    the months resampled, `did_log_means` against each control."""
    from geo_lead.evaluation import block_indices, did_log_means

    rng = np.random.default_rng(seed)
    out = {c: np.full(replicates, np.nan) for c in controls}
    for r in range(replicates):
        ib = block_indices(len(b_arr["pilot"]), block, rng)
        ia = block_indices(len(a_arr["pilot"]), block, rng)
        for c in controls:
            d = did_log_means({g: v[ib] for g, v in b_arr.items()}, {g: v[ia] for g, v in a_arr.items()}, "pilot", c)
            out[c][r] = np.nan if d is None else d
    return out


def test_bootstrap_replicates_equal_the_one_by_one_definition_bit_for_bit() -> None:
    from geo_lead.evaluation import _bootstrap_did

    rng = np.random.default_rng(11)
    controls = ("comparison", "rest")
    for trial in range(60):
        n_before, n_after = int(rng.integers(1, 90)), int(rng.integers(1, 30))
        lam = float(rng.choice([0.2, 2.0, 30.0]))  # 0.2: many zero means (undefined replicates)
        b_arr = {g: rng.poisson(lam, n_before).astype(float) for g in ("pilot", *controls)}
        a_arr = {g: rng.poisson(lam, n_after).astype(float) * rng.gamma(2.0, 1.0, n_after) for g in ("pilot", *controls)}
        block, replicates = int(rng.integers(1, 7)), int(rng.integers(1, 120))
        got = _bootstrap_did(b_arr, a_arr, block, replicates, trial, controls)
        want = _replicates_one_by_one(b_arr, a_arr, block, replicates, trial, controls)
        for c in controls:
            assert got[c].tobytes() == want[c].tobytes(), (trial, c)


def test_resampled_positions_are_kept_by_the_periods_lengths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bootstrap's month positions depend on the periods' lengths only: a second bootstrap
    with other counts but the same lengths reads them back (no draw) and still equals the
    one-by-one definition; other lengths are drawn."""
    from geo_lead import evaluation, result_cache

    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    rng = np.random.default_rng(5)
    controls = ("comparison", "rest")
    first = evaluation.resampled_positions(20, 9, 3, 50, 7)
    draws = []
    monkeypatch.setattr(evaluation, "_drawn_positions", lambda *a: draws.append(a) or first)
    b_arr = {g: rng.poisson(4.0, 20).astype(float) for g in ("pilot", *controls)}
    a_arr = {g: rng.poisson(4.0, 9).astype(float) for g in ("pilot", *controls)}
    got = evaluation._bootstrap_did(b_arr, a_arr, 3, 50, 7, controls)
    assert draws == []  # kept positions
    monkeypatch.undo()
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    want = _replicates_one_by_one(b_arr, a_arr, 3, 50, 7, controls)
    for c in controls:
        assert got[c].tobytes() == want[c].tobytes()
    assert evaluation.resampled_positions(21, 9, 3, 50, 7)[0].shape == (50, 21)


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.integers(0, 120), st.integers(0, 60), st.integers(1, 14), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_positions_drawn_at_once_equal_the_calls_one_by_one(n_before: int, n_after: int, block: int,
                                                            replicates: int, seed: int) -> None:
    """Every block start drawn in one call equals `block_indices` called replicate by
    replicate, before then after, from one generator (an empty period: the same error)."""
    from geo_lead.evaluation import _drawn_positions, block_indices

    rng = np.random.default_rng(seed)
    try:
        rows = [(block_indices(n_before, block, rng), block_indices(n_after, block, rng)) for _ in range(replicates)]
    except ValueError:
        with pytest.raises(ValueError):
            _drawn_positions(n_before, n_after, block, replicates, seed)
        return
    ib, ia = _drawn_positions(n_before, n_after, block, replicates, seed)
    assert ib.tobytes() == np.array([r[0] for r in rows], dtype=np.intp).reshape(replicates, n_before).tobytes()
    assert ia.tobytes() == np.array([r[1] for r in rows], dtype=np.intp).reshape(replicates, n_after).tobytes()
