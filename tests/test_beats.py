"""LMPD beats: the shipped files, the pandas-free index and the beat check."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from geo_lead import settings
from geo_lead.beats import (
    BEATS_SHAPEFILE,
    BeatIndex,
    beat_check,
    build_beats,
    load_beats,
    load_divisions,
    normalize_beat,
    read_beat_index,
)

FIRST_DIVISION_BEATS = {"111", "112", "123", "134", "135"}


@pytest.fixture(scope="module")
def beats() -> gpd.GeoDataFrame:
    return load_beats()


def test_shipped_beats_are_valid_and_projected(beats: gpd.GeoDataFrame) -> None:
    assert beats.crs.to_epsg() == 2246
    assert beats["beat"].is_unique
    assert bool(beats.is_valid.all())
    assert set(beats.geom_type) <= {"Polygon", "MultiPolygon"}
    assert all(isinstance(b, str) for b in beats["beat"])


def test_first_division_beats(beats: gpd.GeoDataFrame) -> None:
    first = set(beats.loc[beats["division"] == "1", "beat"])
    assert first == FIRST_DIVISION_BEATS
    divisions = load_divisions()
    assert divisions.crs.to_epsg() == 2246 and bool(divisions.is_valid.all())
    row = divisions[divisions["division"] == "1"]
    assert set(row["beats"].iloc[0].split(";")) == FIRST_DIVISION_BEATS
    # the division is the union of its beats
    assert row.area.iloc[0] == pytest.approx(beats[beats["division"] == "1"].area.sum(), rel=1e-3)


def test_beats_cover_jefferson_county(beats: gpd.GeoDataFrame) -> None:
    # oracle: the 2020 census tracts of Jefferson County (an independent source)
    tracts = gpd.read_file(settings.POPULATION_TRACTS).to_crs(settings.CRS_PROJECTED).union_all()
    union = beats.union_all()
    county_sqmi = tracts.area / settings.SQFT_PER_SQMI
    assert county_sqmi == pytest.approx(397.6, rel=0.01)
    covered = union.intersection(tracts).area / tracts.area
    assert covered > 0.998
    # the beats reach a little past the county line (Oldham/Shelby police areas), not far
    assert union.area / tracts.area == pytest.approx(1.0, abs=0.06)


def test_build_matches_shipped_file(beats: gpd.GeoDataFrame) -> None:
    built = build_beats(BEATS_SHAPEFILE)
    assert list(built["beat"]) == list(beats["beat"])
    assert list(built["division"]) == list(beats["division"])
    # 7-decimal rounding of the shipped file moves edges by about a centimetre
    assert built.area.to_numpy() == pytest.approx(beats.area.to_numpy(), rel=1e-5)


def test_index_agrees_with_geopandas(beats: gpd.GeoDataFrame) -> None:
    index = read_beat_index()
    assert set(index.codes) == set(beats["beat"])
    pts = beats.representative_point()
    assert list(index.beat_at(pts.x.to_numpy(), pts.y.to_numpy())) == list(beats["beat"])
    assert "112" in index.adjacent["111"] and "111" in index.adjacent["112"]
    assert "811" not in index.adjacent["111"]


def _toy_index() -> BeatIndex:
    # three beats in a row (A | B | C) and one far away (D)
    return BeatIndex.from_geometries(["A", "B", "C", "D"],
                                     [box(0, 0, 100, 100), box(100, 0, 200, 100),
                                      box(200, 0, 300, 100), box(1000, 0, 1100, 100)])


def test_check_labels() -> None:
    index = _toy_index()
    x = np.array([50, 150, 250, 50, 100, 5000, np.nan, 50])
    y = np.array([50, 50, 50, 50, 50, 50, 50, 50])
    named = ["A", "A", "A", "METRO", "B", "A", "A", None]
    got = index.check(x, y, named)
    assert list(got) == ["same", "adjacent", "other", "no_beat", "same", "other", "", "no_beat"]


def test_beat_check_lonlat_and_normalize() -> None:
    assert normalize_beat(" 112 ") == "112" and normalize_beat(112.0) == "112"
    assert normalize_beat("NULL") == "" and normalize_beat(float("nan")) == ""
    beats = load_beats()
    pt = beats[beats["beat"] == "112"].representative_point().to_crs(settings.CRS_STORE).iloc[0]
    got = beat_check([pt.x, pt.x, pt.x], [pt.y, pt.y, pt.y], ["112", "111", "811"])
    assert list(got) == ["same", "adjacent", "other"]


def test_index_geometry_is_shapely_in_feet() -> None:
    index = read_beat_index()
    geom = index.geometry("111")
    assert isinstance(geom, shapely.Geometry) and geom.is_valid
    assert geom.area / settings.SQFT_PER_SQMI == pytest.approx(123.6472e6 / settings.SQFT_PER_SQMI, rel=0.02)
    assert index.geometry("METRO") is None and not index.has("METRO")


def test_beat_files_are_parsed_once_per_content(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`load_beats` parses a file once per process per content: a second load equals the
    first and a direct geopandas read (projected, made valid), is a copy of its own, and a
    file whose bytes changed is parsed again."""
    import json

    from geo_lead import beats as beats_mod

    path = tmp_path / "beats.geojson"
    path.write_bytes(settings.BEATS_FILE.read_bytes())
    beats_mod._READ.clear()
    first = load_beats(path)
    direct = gpd.read_file(path).to_crs(settings.CRS_PROJECTED)
    assert shapely.equals_exact(first.geometry.to_numpy(), direct.geometry.make_valid().to_numpy(), tolerance=0).all()
    first.loc[first.index[0], "beat"] = "changed"
    second = load_beats(path)
    assert len(beats_mod._READ) == 1 and second.loc[second.index[0], "beat"] != "changed"
    assert shapely.equals_exact(second.geometry.to_numpy(), first.geometry.to_numpy(), tolerance=0).all()
    data = json.loads(path.read_text())
    data["features"] = data["features"][1:]
    path.write_text(json.dumps(data))
    third = load_beats(path)
    assert len(third) == len(first) - 1 and len(beats_mod._READ) == 2
