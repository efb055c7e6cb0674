"""One run, one story: stored results carry their parameters; maps and report refuse to mix them.

The sequence test runs the real commands on the shipped 2017 LMPD sample (real data).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_lead import parameters, settings
from geo_lead.cli import main
from geo_lead.store import opened

REAL_FILE = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"


# --- pure -------------------------------------------------------------------------------------
def test_result_parameters_shape() -> None:
    p = parameters.result_parameters(indicator="opiate", area="first-division", since="2017-01-01",
                                     until="2017-12-31T00:00:00", k=None)
    assert p["since"] == "2017-01-01" and p["until"] == "2017-12-31" and p["k"] is None
    assert p["area"] == "first-division" and p["candidates"] is None and p["boundary_rule"]
    q = parameters.result_parameters(indicator="opiate", area="city", candidates=["RUSSELL", "PORTLAND"], k=2)
    assert q["area"] == "candidates" and q["candidates"] == ["PORTLAND", "RUSSELL"] and q["k"] == 2


def test_consistent_parameters_merges_and_refuses() -> None:
    base = dict(indicator="lead_eligible", area="first-division", frames="abc")
    scores = parameters.result_parameters(**base)
    site = parameters.result_parameters(**base, k=2)
    merged = parameters.consistent_parameters({"scores": scores, "hotspots": None, "site": site}, "report")
    assert merged["k"] == 2 and merged["indicator"] == "lead_eligible"
    assert parameters.consistent_parameters({"scores": None, "site": None}, "maps") == {}
    windowed = parameters.result_parameters(**{**base, "indicator": "opiate"}, since="2017-01-01", until="2017-12-31")
    with pytest.raises(parameters.MixedResultsError) as err:
        parameters.consistent_parameters({"scores": windowed, "site": site}, "report")
    msg = str(err.value)
    assert "indicator" in msg and "window" in msg and "2017-01-01 to 2017-12-31" in msg
    assert "`geo-lead score --indicator lead_eligible --area first-division`" in msg
    assert "geo-lead report" in msg


# --- the sequence -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("params")
    store = tmp / "lead.gpkg"
    assert main(["run", str(REAL_FILE), "--store", str(store), "--out", str(tmp / "maps")]) == 0
    return store


def test_every_stored_result_carries_its_parameters(run_store: Path) -> None:
    with opened(run_store, create=False) as store:
        scores = store.get_json("scores_parameters")
        hot = store.get_json("hotspots_result")["parameters"]
        site = store.get_json("site_result")["parameters"]
    for p in (scores, hot, site):
        assert p["indicator"] == "lead_eligible" and p["area"] == "first-division"
        assert p["since"] is None and p["until"] is None and p["boundary_rule"]
    assert site["k"] == len(settings.PILOT_NEIGHBORHOODS)


def test_mixed_runs_stop_report_and_maps(run_store: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    s = ["--store", str(run_store)]
    assert main(["site", "--area", "city", "--k", "3", *s]) == 0
    assert main(["score", "--indicator", "opiate", "--since", "2017-01-01", "--until", "2017-12-31", *s]) == 0
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert main(["report", *s, "--out", str(report)]) == 2
    err = capsys.readouterr().err
    assert "different parameter sets" in err and "2017-01-01 to 2017-12-31" in err
    assert "scores: indicator opiate" in err and "site: indicator lead_eligible" in err
    assert "geo-lead score --indicator lead_eligible --area city" in err
    assert not report.exists()  # never a page that mixes runs
    assert main(["maps", *s, "--out", str(tmp_path / "maps")]) == 2
    assert "different parameter sets" in capsys.readouterr().err
    assert not (tmp_path / "maps" / "site_selection.html").exists()
    # follow the advice: one parameter set again -> both pages, which say which set
    assert main(["score", "--indicator", "lead_eligible", "--area", "city", *s]) == 0
    assert main(["hotspots", "--indicator", "lead_eligible", "--area", "city", *s]) == 0
    capsys.readouterr()
    assert main(["report", *s, "--out", str(report)]) == 0
    page = report.read_text(encoding="utf-8")
    assert "indicator lead_eligible \u00b7 all dates \u00b7 area: whole city \u00b7 best zone of 3" in page
    assert main(["maps", *s, "--out", str(tmp_path / "maps")]) == 0
    site_map = (tmp_path / "maps" / "site_selection.html").read_text(encoding="utf-8")
    assert "area: whole city" in site_map
    assert "Best zone of 3 neighborhoods" in site_map and "Best zone of the same size" not in site_map
