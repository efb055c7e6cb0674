"""geo_lead.divisions: the official First Division (half-area rule), the records' cross-check,
the shipped first_division.geojson, and `geo-lead boundaries rebuild`."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from geo_lead import settings
from geo_lead.beats import load_divisions
from geo_lead.boundaries import first_division_members, load_first_division, load_neighborhoods
from geo_lead.cli import main
from geo_lead.divisions import (
    METHOD_OFFICIAL_DIVISIONS,
    area_inside,
    compare_divisions,
    official_first_division,
    official_members,
    write_official_first_division,
)

CRS = settings.CRS_PROJECTED


def _units() -> gpd.GeoDataFrame:
    # four 1,000 ft squares in a row (EPSG:2246 feet)
    return gpd.GeoDataFrame({"NH_NAME": ["A", "B", "C", "D"], "NH_CODE": ["1", "2", "3", "4"],
                             "is_named": [True, True, True, False]},
                            geometry=[box(i * 1000, 0, (i + 1) * 1000, 1000) for i in range(4)], crs=CRS)


def _divisions(x_max: float) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"division": ["1", "2"]},
                            geometry=[box(0, 0, x_max, 1000), box(x_max, 0, 9000, 1000)], crs=CRS)


def test_half_area_rule_hand_computed() -> None:
    # division 1 covers A whole, B 60%: A and B are in; C (0%) is out; D (unnamed) 0%
    div = _divisions(1600.0)
    share = area_inside(_units(), div[div["division"] == "1"].geometry.iloc[0])
    assert share.tolist() == pytest.approx([1.0, 0.6, 0.0, 0.0])
    m = official_members(_units(), div)
    assert m["member"].tolist() == [True, True, False, False]
    # exactly half is in (>= 0.5)
    assert official_members(_units(), _divisions(1500.0))["member"].tolist() == [True, True, False, False]
    assert official_members(_units(), _divisions(1499.0))["member"].tolist() == [True, False, False, False]
    fd = official_first_division(_units(), div)
    assert fd.crs.to_epsg() == 4326 and fd["members"].iloc[0] == "A;B"
    assert fd["method"].iloc[0] == METHOD_OFFICIAL_DIVISIONS


def test_compare_lists_both_their_overlap_and_the_differences() -> None:
    units = _units()
    off = official_members(units, _divisions(1600.0))  # A, B
    derived = pd.DataFrame({"NH_NAME": ["A", "B", "C", "D"], "n_records": [10, 2, 8, 0],
                            "division": ["1ST DIVISION", "2ND DIVISION", "1ST DIVISION", ""],
                            "share": [1.0, 1.0, 0.75, float("nan")],
                            "member": [True, False, True, False],
                            "basis": ["records", "description", "records", "description"]}, index=units.index)
    c = compare_divisions(off, derived)
    assert (c.official, c.records, c.both) == (["A", "B"], ["A", "C"], ["A"])
    assert (c.only_official, c.only_records, c.agree) == (["B"], ["C"], False)
    by = {u["neighborhood"]: u for u in c.units}
    assert by["B"]["share_inside_official"] == pytest.approx(0.6) and by["C"]["records_division_share"] == 0.75
    assert "D" not in by  # unnamed
    assert c.to_dict()["agree"] is False


def test_shipped_official_first_division() -> None:
    nh = load_neighborhoods()
    m = official_members(nh, load_divisions())
    named = m[m["member"] & m["is_named"]]
    assert sorted(named["NH_NAME"]) == ["BUTCHERTOWN", "CENTRAL BUSINESS DISTRICT", "PHOENIX HILL",
                                        "PORTLAND", "RUSSELL"]
    assert set(settings.PILOT_NEIGHBORHOODS) <= set(named["NH_NAME"])
    shipped = load_first_division()
    assert shipped["method"].iloc[0] == METHOD_OFFICIAL_DIVISIONS
    assert shipped["members"].iloc[0] == ";".join(sorted(named["NH_NAME"]))
    # the scoring stages apply the same half-area rule to the shipped polygon
    from geo_lead.hotspots import first_division_names

    assert first_division_names(nh) == sorted(named["NH_NAME"])


def test_first_division_names_are_kept_per_units_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hotspots.first_division_names` keeps its answer per units and First Division file: the
    same call gives the fresh answer; other units or another file's bytes compute again."""
    from geo_lead import hotspots

    nh = load_neighborhoods()
    hotspots._FIRST_DIVISION_MEMO.clear()
    first = hotspots.first_division_names(nh)
    assert hotspots.first_division_names(nh) == first and len(hotspots._FIRST_DIVISION_MEMO) == 1
    fewer = nh[nh["NH_NAME"] != first[0]]
    assert hotspots.first_division_names(fewer) == first[1:]
    # a First Division file that is one neighborhood's polygon: that neighborhood alone
    one = nh[nh["NH_NAME"] == first[-1]][["NH_NAME", "geometry"]]
    path = tmp_path / settings.FIRST_DIVISION_FILE.name
    path.write_text(one.to_json(), encoding="utf-8")
    monkeypatch.setattr(settings, "FIRST_DIVISION_FILE", path)
    assert hotspots.first_division_names(nh) == [first[-1]]
    assert len(hotspots._FIRST_DIVISION_MEMO) == 3


def test_rebuild_writes_the_shipped_file(tmp_path: Path) -> None:
    for name in (settings.NEIGHBORHOODS_FILE.name, settings.DIVISIONS_FILE.name):
        (tmp_path / name).write_bytes((settings.BOUNDARIES_DIR / name).read_bytes())
    write_official_first_division(tmp_path)
    ours = json.loads((tmp_path / settings.FIRST_DIVISION_FILE.name).read_text())
    assert ours == json.loads(settings.FIRST_DIVISION_FILE.read_text())


def test_records_cross_check_agrees_with_description_fallback() -> None:
    """Before geocoding the records' division is LMPD's description: the official one adds
    BUTCHERTOWN, and the comparison says so."""
    nh = load_neighborhoods()
    c = compare_divisions(official_members(nh, load_divisions()), first_division_members(nh, None))
    assert c.only_official == ["BUTCHERTOWN"] and c.only_records == []
    assert set(c.both) == set(settings.FIRST_DIVISION_DESCRIBED)


def test_cli_rebuild_defaults_to_the_official_polygon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert main(["boundaries", "rebuild", "--out", str(out), "--store", str(tmp_path / "none.gpkg"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["first_division_method"] == METHOD_OFFICIAL_DIVISIONS
    assert "RUSSELL" in summary["first_division_members"]
    assert json.loads((out / "first_division.geojson").read_text()) == json.loads(settings.FIRST_DIVISION_FILE.read_text())
    assert main(["boundaries", "rebuild", "--out", str(out), "--store", str(tmp_path / "none.gpkg"),
                 "--from-records", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_division_method"] == "lmpd-description"
