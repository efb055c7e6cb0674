"""geo_lead.by_year: each year scored and sited on its own records with its own weights; the
check adapter; ``geo-lead score --by year`` and ``geo-lead site --by year``."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geo_lead import cli, settings
from geo_lead.boundaries import load_first_division, load_neighborhoods
from geo_lead.by_year import (
    ByYearResult,
    YearSite,
    data_years,
    normalise_checks,
    pilot_places,
    scores_for_year,
    site_for_year,
)
from geo_lead.store import FLAG_COLUMNS, opened


@pytest.fixture(scope="module")
def neighborhoods() -> gpd.GeoDataFrame:
    return load_neighborhoods()


def _points(nh: gpd.GeoDataFrame, per_year: dict[int, dict[str, int]], weights: dict[int, float],
            default: int = 0) -> gpd.GeoDataFrame:
    """`per_year[year][unit]` eligible records at the unit's representative point."""
    rows = []
    names = nh["NH_NAME"].tolist()
    for year, per_unit in per_year.items():
        for name in names:
            n = per_unit.get(name, default)
            pt = nh.loc[nh["NH_NAME"] == name].geometry.iloc[0].representative_point()
            named = bool(nh.loc[nh["NH_NAME"] == name, "is_named"].iloc[0])
            for i in range(n):
                rows.append({"occurred_at": f"{year}-{1 + i % 12:02d}-15T10:00:00",
                             "reported_at": f"{year}-{1 + i % 12:02d}-15T10:00:00",
                             "lead_eligible": True, "neighborhood": name if named else "",
                             "division": "1ST DIVISION", "incident_number": f"{year}-{name}-{i}",
                             "source": "crime-pre2023", "source_file": f"y{year}.csv",
                             "weight": weights[year], "geometry": pt})
    return gpd.GeoDataFrame(rows, crs=settings.CRS_STORE)


def test_each_year_counts_only_its_records_with_its_own_weight(neighborhoods: gpd.GeoDataFrame) -> None:
    recs = _points(neighborhoods, {2016: {"RUSSELL": 10, "PORTLAND": 6, "CENTRAL BUSINESS DISTRICT": 3},
                                   2017: {"RUSSELL": 2, "PORTLAND": 1, "CENTRAL BUSINESS DISTRICT": 9}},
                   weights={2016: 2.0, 2017: 4.0})
    pop = np.full(len(neighborhoods), 1000.0)
    fd = load_first_division()
    kw = {"first_division": fd, "n_boot": 50}
    y16 = scores_for_year(recs, neighborhoods, pop, 2016, **kw)
    y17 = scores_for_year(recs, neighborhoods, pop, 2017, **kw)
    c16 = {r["neighborhood"]: r["count"] for r in y16.ranked}
    c17 = {r["neighborhood"]: r["count"] for r in y17.ranked}
    assert (c16["RUSSELL"], c16["PORTLAND"], c16["CENTRAL BUSINESS DISTRICT"]) == pytest.approx((20, 12, 6))
    assert (c17["RUSSELL"], c17["PORTLAND"], c17["CENTRAL BUSINESS DISTRICT"]) == pytest.approx((8, 4, 36))
    assert y16.records_in_window == 19 and y17.records_in_window == 12
    assert y16.area_total == pytest.approx(38) and y17.area_total == pytest.approx(48)
    # with equal populations the rate order follows the counts
    r17 = {r["neighborhood"]: r["rate_per_1000"] for r in y17.ranked}
    assert r17["CENTRAL BUSINESS DISTRICT"] == pytest.approx(36.0)
    assert y16.pilot_ranks["RUSSELL"]["rank"] == 1 and y16.pilot_ranks["RUSSELL"]["of"] == 5
    assert y17.pilot_ranks["RUSSELL"]["rank_low"] <= y17.pilot_ranks["RUSSELL"]["rank"] \
        <= y17.pilot_ranks["RUSSELL"]["rank_high"]
    assert y17.ranked[0]["neighborhood"] == "CENTRAL BUSINESS DISTRICT"
    # density of every unit (for the maps): weighted count / area
    area = neighborhoods.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME").area / settings.SQFT_PER_SQMI
    assert y17.density_per_sqmi["RUSSELL"] == pytest.approx(8 / area["RUSSELL"])


def test_data_years_ignore_stray_early_incidents() -> None:
    recs = pd.DataFrame({"occurred_at": ["2015-04-01"] * 3 + ["2016-02-01"] * 120 + ["2017-03-01"] * 100})
    assert data_years(recs) == [2016, 2017]


def test_check_adapter_old_and_typed() -> None:
    old = {"verdict_checks": {"top_on_train": True, "stable": False}}
    checks, deciding = normalise_checks(old)
    assert [c["status"] for c in checks] == ["pass", "fail"] and deciding == "stable"
    typed = {"checks": [{"name": "holdout", "status": "insufficient", "value": None, "threshold": 0.8,
                         "detail": "3 test records"}], "deciding_check": "holdout"}
    assert normalise_checks(typed) == (typed["checks"], "holdout")
    res = {"verdict": "inconclusive", **typed, "pilot_rank": 2, "n_candidate_zones": 5,
           "pilot_zone": {"share": 0.5, "pai_train": 1.2, "pai_test": 0.9, "records_train": 10, "records_test": 3},
           "best_zone_same_size": {"neighborhoods": ["A", "B"]}, "comparison_area": {"neighborhoods": ["C"]}}
    ys = site_for_year(2019, res)
    assert (ys.verdict, ys.pilot_rank, ys.n_zones, ys.best_zone) == ("inconclusive", 2, 5, ["A", "B"])
    out = ByYearResult("lead_eligible", "first-division", [2019], sites=[ys])
    place = pilot_places(out)[0]
    assert place["zone_rank"] == 2 and place["checks"] == {"holdout": "insufficient"}
    assert isinstance(ys, YearSite) and ys.to_dict()["deciding_check"] == "holdout"


def _write_store(path: object, records: gpd.GeoDataFrame) -> None:
    frame = pd.DataFrame(records.drop(columns="geometry"))
    frame["record_id"] = [f"r{i}" for i in range(len(frame))]
    frame["content_hash"] = frame["record_id"]
    with opened(path) as store, store.write():
        store.upsert_records(frame[["record_id", "occurred_at", "reported_at", "division", "incident_number",
                                    "source", "source_file", "content_hash"]], "2026-01-01T00:00:00Z")
        upd = frame[["record_id", "neighborhood"]].copy()
        for flag in FLAG_COLUMNS:
            upd[flag] = frame[flag].astype(int) if flag in frame else 0
        upd["lon"], upd["lat"] = records.geometry.x.to_numpy(), records.geometry.y.to_numpy()
        store.update_records(upd)


def test_cli_score_and_site_by_year(neighborhoods: gpd.GeoDataFrame, store_path: object,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fd = {"RUSSELL": 30, "PORTLAND": 30, "CENTRAL BUSINESS DISTRICT": 12, "PHOENIX HILL": 6, "BUTCHERTOWN": 4}
    recs = _points(neighborhoods, {2016: fd, 2017: {**fd, "RUSSELL": 4, "PORTLAND": 4}},
                   weights={2016: 1.0, 2017: 1.0}, default=1)
    _write_store(store_path, recs)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("score", "site"))
    assert cli.main(["score", "--store", str(store_path), "--by", "year", "--json", "--replicates", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["years"] == [2016, 2017]
    y16, y17 = out["scores"]
    assert y16["pilot_ranks"]["RUSSELL"]["count"] == pytest.approx(30)
    assert y17["pilot_ranks"]["RUSSELL"]["count"] == pytest.approx(4)
    assert y17["ranked"][0]["neighborhood"] == "CENTRAL BUSINESS DISTRICT"
    assert cli.main(["site", "--store", str(store_path), "--by", "year", "--json", "--replicates", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    sites = {s["year"]: s for s in out["sites"]}
    assert set(sites) == {2016, 2017}
    assert sites[2016]["pilot_rank"] == 1 and sites[2017]["pilot_rank"] > 1
    assert sites[2017]["verdict"] != "justified"
    assert all(c["status"] in ("pass", "fail", "insufficient") for c in sites[2017]["checks"])
    with opened(store_path) as store:
        assert store.get_json("site_by_year")["years"] == [2016, 2017]
        assert store.get_json("scores_by_year")["scores"][0]["year"] == 2016
        assert "scores" not in store.tables() and store.get_json("site_result") is None
    assert cli.main(["score", "--store", str(store_path), "--by", "year", "--since", "2016-01-01"]) == 2
    assert "--by year" in capsys.readouterr().err


def test_by_year_sites_in_a_child_what_each_year_sited_here_gives(
        neighborhoods: gpd.GeoDataFrame, store_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """`by_year_store` sites the years in a forked child (while it scores them here) when a
    year's siting reads nothing of the store; its answer is `compute_site` on the open store for
    each year, in turn, as before (and the one-process answer)."""
    from geo_lead import parallel
    from geo_lead.by_year import (
        _read,
        _site_by_year_job,
        _year_sampling,
        by_year_started,
        by_year_store,
        score_by_year_store,
    )
    from geo_lead.siting import compute_site
    from geo_lead.zones_milp import stored_queen_adjacency

    fd = {"RUSSELL": 30, "PORTLAND": 30, "CENTRAL BUSINESS DISTRICT": 12, "PHOENIX HILL": 6, "BUTCHERTOWN": 4}
    recs = _points(neighborhoods, {2016: fd, 2017: {**fd, "RUSSELL": 4, "PORTLAND": 9}},
                   weights={2016: 1.0, 2017: 1.0}, default=1)
    others = recs.iloc[::3].copy()  # records of no indicator: a flagged read leaves them out
    others["lead_eligible"] = False
    others["incident_number"] = others["incident_number"] + "-x"
    _write_store(store_path, pd.concat([recs, others], ignore_index=True))
    with opened(store_path) as store, store.write():  # sampling declarations: a flagged read is exact
        for y in (2016, 2017):
            store.put_file_frame({"file_sha256": f"sha{y}", "source_file": f"y{y}.csv", "source": "crime-pre2023",
                                  "sample_fraction": 1.0, "years": str(y), "report_first": f"{y}-01-15T10:00:00",
                                  "report_last": f"{y}-12-15T10:00:00"})
    params = {"replicates": 20}
    monkeypatch.delenv(parallel.NO_FORK_ENV, raising=False)
    with opened(store_path) as store:
        read = _read(store, "lead_eligible")
        assert len(read) < store.count("records")  # a flagged read: each year's spans given, no store read
        job = _site_by_year_job(store, "lead_eligible", "first-division", None, read, params)
        assert job.in_child == parallel.fork_available()  # forked when this process can
        forked = job.result()
        both = by_year_store(store, site_params=params)
        started = by_year_started(store, site_params=params)  # the caller works here meanwhile
        assert score_by_year_store(store).to_dict()["scores"] == both.to_dict()["scores"]
        two_steps = started()
        spans = _year_sampling(store, read)
        assert spans is not None
        adjacency = stored_queen_adjacency(store, neighborhoods)
        year = pd.to_datetime(read["occurred_at"], format="ISO8601").dt.year
        here = [compute_site(store, area="first-division", records=read[year == y], sampling=spans[y],
                             adjacency=adjacency, **params)[1] for y in forked.years]
        scores = score_by_year_store(store)
        monkeypatch.setenv(parallel.NO_FORK_ENV, "1")
        one_process = by_year_store(store, site_params=params)
    assert forked.years == [2016, 2017] and len(forked.sites) == 2
    assert [s.to_dict() for s in forked.sites] == [site_for_year(y, r).to_dict() for y, r in zip(forked.years, here, strict=True)]
    assert both.to_dict() == one_process.to_dict() == two_steps.to_dict()
    assert [s.to_dict() for s in both.sites] == [s.to_dict() for s in forked.sites]
    assert [s.to_dict() for s in both.scores] == [s.to_dict() for s in scores.scores]
