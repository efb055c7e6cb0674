"""Boundaries: the shipped GeoJSON, the First Division derivation, its check and the official file."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from geo_lead import settings
from geo_lead.boundaries import (
    METHOD_FALLBACK,
    build_first_division,
    check_against_description,
    first_division_members,
    load_neighborhoods,
    load_pilot_zone,
    official_first_division,
    rebuild,
)
from geo_lead.cli import main
from geo_lead.errors import InputFileError


@pytest.fixture(scope="module")
def nh() -> gpd.GeoDataFrame:
    return load_neighborhoods()


def test_shipped_neighborhoods(nh: gpd.GeoDataFrame) -> None:
    assert nh.crs.to_epsg() == 4326
    assert len(nh) == 90 and nh["NH_NAME"].is_unique
    assert int(nh["is_named"].sum()) == 69
    # 13 remainder pieces and 8 unnamed ones kept as their own units (../shared/data/README.md)
    assert nh["NH_NAME"].str.startswith("REMAINDER OF CITY #").sum() == 13
    assert nh["NH_NAME"].str.startswith("UNNAMED #").sum() == 8
    assert set(settings.FIRST_DIVISION_DESCRIBED) <= set(nh["NH_NAME"])


def test_shipped_pilot_zone_is_union_of_members(nh: gpd.GeoDataFrame) -> None:
    zone = load_pilot_zone()
    assert zone["members"].iloc[0] == "RUSSELL;PORTLAND"
    parts = nh[nh["NH_NAME"].isin(settings.PILOT_NEIGHBORHOODS)].to_crs(settings.CRS_PROJECTED)
    zone_area = zone.to_crs(settings.CRS_PROJECTED).area.iloc[0]
    assert zone_area == pytest.approx(parts.area.sum(), rel=1e-4)


def test_fallback_first_division_is_lmpd_description(nh: gpd.GeoDataFrame) -> None:
    members = first_division_members(nh, None)
    assert set(members.loc[members["member"], "NH_NAME"]) == set(settings.FIRST_DIVISION_DESCRIBED)
    assert check_against_description(members, nh) == []


def _records(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = []
    for (name, division), n in counts.items():
        rows += [{"neighborhood": name, "division": division}] * n
    return pd.DataFrame(rows)


def test_majority_rule_and_check(nh: gpd.GeoDataFrame) -> None:
    recs = _records({
        ("RUSSELL", "1ST DIVISION"): 9, ("RUSSELL", "2ND DIVISION"): 2,
        ("PORTLAND", "1ST DIVISION"): 6,
        ("PHOENIX HILL", "4TH DIVISION"): 4, ("PHOENIX HILL", "1ST DIVISION"): 3,   # 7 >= 5: by records
        ("OLD LOUISVILLE", "1ST DIVISION"): 5,                                       # south of Broadway
        ("BUTCHERTOWN", "1ST DIVISION"): 5,                                          # north, not named
        ("SHAWNEE", "1ST DIVISION"): 4,                                              # too few: fallback
        ("", "1ST DIVISION"): 50,                                                    # not joined: ignored
    })
    m = first_division_members(nh, recs).set_index("NH_NAME")
    assert m.loc["RUSSELL", "n_records"] == 11 and m.loc["RUSSELL", "share"] == pytest.approx(9 / 11)
    chosen = set(m.index[m["member"]])
    # CBD has no records: it keeps its described membership
    assert chosen == {"RUSSELL", "PORTLAND", "OLD LOUISVILLE", "BUTCHERTOWN", "CENTRAL BUSINESS DISTRICT"}
    assert m.loc["SHAWNEE", "basis"] == "description" and m.loc["RUSSELL", "basis"] == "records"
    notes = check_against_description(m.reset_index(), nh)
    assert any(n.startswith("PHOENIX HILL is named") and "mostly 4TH DIVISION" in n for n in notes)
    assert any(n.startswith("OLD LOUISVILLE") and "south of Broadway" in n for n in notes)
    assert any(n.startswith("BUTCHERTOWN") and "north of Broadway" in n for n in notes)
    assert not any(n.startswith(("RUSSELL", "PORTLAND", "CENTRAL")) for n in notes)


def test_majority_tie_is_deterministic(nh: gpd.GeoDataFrame) -> None:
    recs = _records({("RUSSELL", "2ND DIVISION"): 3, ("RUSSELL", "1ST DIVISION"): 3})
    m = first_division_members(nh, recs).set_index("NH_NAME")
    assert m.loc["RUSSELL", "division"] == "1ST DIVISION"  # alphabetical among equals


def test_first_division_feature(nh: gpd.GeoDataFrame) -> None:
    members = first_division_members(nh, None)
    fd = build_first_division(nh, members, METHOD_FALLBACK)
    assert len(fd) == 1 and fd.crs.to_epsg() == 4326
    assert fd["members"].iloc[0].split(";") == sorted(settings.FIRST_DIVISION_DESCRIBED)
    parts = nh[members["member"].to_numpy()].to_crs(settings.CRS_PROJECTED)
    assert fd.to_crs(settings.CRS_PROJECTED).area.iloc[0] == pytest.approx(parts.area.sum(), rel=1e-4)


def test_official_division_file(tmp_path: Path) -> None:
    path = tmp_path / "divisions.geojson"
    gpd.GeoDataFrame({"DIV_NAME": ["1st Division", "2nd Division"], "n": [1, 2]},
                     geometry=[box(-85.78, 38.24, -85.74, 38.27), box(-85.84, 38.22, -85.78, 38.26)],
                     crs=settings.CRS_STORE).to_file(path)
    fd = official_first_division(path)
    assert fd["method"].iloc[0] == "official:divisions.geojson"
    assert fd.geometry.iloc[0].bounds == pytest.approx((-85.78, 38.24, -85.74, 38.27))
    bad = tmp_path / "bad.geojson"
    gpd.GeoDataFrame({"NAME": ["North"]}, geometry=[box(0, 0, 1, 1)], crs=settings.CRS_STORE).to_file(bad)
    with pytest.raises(InputFileError, match="no column has a value meaning"):
        official_first_division(bad)


def test_rebuild_reproduces_shipped_files(tmp_path: Path) -> None:
    summary = rebuild(tmp_path)
    for name in ("neighborhoods.geojson", "pilot_zone.geojson"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((settings.BOUNDARIES_DIR / name).read_text())
    assert summary["first_division_method"] == METHOD_FALLBACK


def test_cli_rebuild_with_official_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    div = tmp_path / "div.geojson"
    gpd.GeoDataFrame({"DIVISION": ["1"]}, geometry=[box(-85.78, 38.24, -85.74, 38.27)],
                     crs=settings.CRS_STORE).to_file(div)
    out = tmp_path / "b"
    assert main(["boundaries", "rebuild", "--divisions", str(div), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_division_method"] == "official:div.geojson"
    assert (out / "first_division.geojson").exists()
    assert main(["boundaries", "rebuild", "--divisions", str(tmp_path / "missing.shp"), "--out", str(out)]) == 2
    assert "division file not found" in capsys.readouterr().err
