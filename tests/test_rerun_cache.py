"""Results reused across runs (issue 19, deliverable 4): population, adjacency, KDE.

Oracles: the uncached computations (`population._interpolate`, `hotspots.bandwidth_ft`,
scikit-learn's ``KernelDensity``, libpysal's queen contiguity) on the same and on changed
inputs; a reused result must equal them exactly, and a cached entry must never be read for
other inputs (the computation is patched to fail to prove a hit, counted to prove a miss).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity

from geo_lead import hotspots, population, result_cache, settings
from geo_lead.boundaries import load_neighborhoods


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty result cache for this test (and an empty in-process population memo)."""
    monkeypatch.setenv("GEO_LEAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    population._MEMO.clear()
    return tmp_path / "cache" / "results"


def _fail(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("computed although the cache holds the result")


# --- population --------------------------------------------------------------------------
def test_population_cached_across_runs_equals_the_computation_exactly(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    tracts = population.load_tracts().to_crs(nh.crs)
    oracle = population._interpolate(tracts, nh, population.POPULATION_COLUMN)
    first = population.interpolate_population(tracts, nh)
    assert len(list(cache_dir.glob("population-*.json"))) == 1
    population._MEMO.clear()  # a new process: only the file remains
    monkeypatch.setattr(population, "_interpolate", _fail)
    again = population.interpolate_population(population.load_tracts().to_crs(nh.crs), load_neighborhoods())
    for got in (first, again):
        pd.testing.assert_series_equal(got.population, oracle.population, check_exact=True)
        assert (got.tracts_total, got.unallocated) == (oracle.tracts_total, oracle.unallocated)


def test_a_changed_neighborhoods_file_invalidates_the_population_cache(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    tracts = population.load_tracts()
    population.interpolate_population(tracts, nh)
    # the same file with one unit moved ~50 m east
    moved = nh.copy()
    moved.loc[moved.index[0], "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], xoff=0.0005)
    path = tmp_path / "neighborhoods_moved.geojson"
    moved.to_file(path, driver="GeoJSON")
    changed = load_neighborhoods(path)
    calls: list[int] = []
    real = population._interpolate

    def counted(*args: object) -> population.Interpolation:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(population, "_interpolate", counted)
    population._MEMO.clear()
    got = population.interpolate_population(tracts, changed)
    assert calls == [1]
    oracle = real(tracts, changed, population.POPULATION_COLUMN)
    pd.testing.assert_series_equal(got.population, oracle.population, check_exact=True)
    assert len(list(cache_dir.glob("population-*.json"))) == 2


def test_population_cache_off_or_unreadable_computes(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    tracts = population.load_tracts()
    population.interpolate_population(tracts, nh)
    (entry,) = cache_dir.glob("population-*.json")
    entry.write_text("{not json", "utf-8")
    population._MEMO.clear()
    oracle = population._interpolate(tracts, nh, population.POPULATION_COLUMN)
    got = population.interpolate_population(tracts, nh)  # unreadable: computed and rewritten
    pd.testing.assert_series_equal(got.population, oracle.population, check_exact=True)
    assert json.loads(entry.read_text("utf-8"))["key"] == population.inputs_key(tracts, nh, "TOTPOP")
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")
    population._MEMO.clear()
    entry.unlink()
    population.interpolate_population(tracts, nh)
    assert not entry.exists()


def test_load_tracts_reads_a_changed_file_again(tmp_path: Path) -> None:
    path = tmp_path / "tracts.geojson"
    tracts = population.load_tracts()
    tracts.head(3).to_file(path, driver="GeoJSON")
    first = population.load_tracts(path)
    first.loc[first.index[0], "TOTPOP"] = -5.0  # a caller's copy: not the memo
    assert population.load_tracts(path)["TOTPOP"].tolist() == tracts.head(3)["TOTPOP"].tolist()
    tracts.head(2).to_file(path, driver="GeoJSON")
    assert len(population.load_tracts(path)) == 2


def _clear_population_memos() -> None:
    """What a new process starts with: no interpolation, tracts or file answer in memory."""
    population._MEMO.clear()
    population._TRACTS.clear()
    population._BY_FILE.clear()


def _file_oracle(path: Path, nh: gpd.GeoDataFrame) -> population.Interpolation:
    tracts = population._read_tracts(path, population.POPULATION_COLUMN).to_crs(nh.crs)
    return population._interpolate(tracts, nh, population.POPULATION_COLUMN)


def test_population_of_a_kept_file_parses_no_tracts_and_equals_the_computation(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    oracle = _file_oracle(settings.POPULATION_TRACTS, nh)
    _clear_population_memos()
    first = population.population_of(nh)
    _clear_population_memos()  # a rerun: only the result files remain
    monkeypatch.setattr(population, "_read_tracts", _fail)
    monkeypatch.setattr(population, "_interpolate", _fail)
    again = population.population_of(load_neighborhoods())
    for got in (first, again):
        pd.testing.assert_series_equal(got.population, oracle.population, check_exact=True)
        assert (got.tracts_total, got.unallocated, got.overlap_sqft) == (
            oracle.tracts_total, oracle.unallocated, oracle.overlap_sqft)
    again.population.iloc[0] = -1.0  # a caller's copy, not the memo
    assert population.population_of(nh).population.iloc[0] == oracle.population.iloc[0]


@pytest.mark.parametrize("change", ["tracts file", "neighborhood geometry", "neighborhood index", "crs"])
def test_population_of_misses_when_an_input_changes(cache_dir: Path, tmp_path: Path, change: str) -> None:
    nh = load_neighborhoods()
    path = tmp_path / "tracts.geojson"
    tracts = population.load_tracts()
    tracts.to_file(path, driver="GeoJSON")
    population.population_of(nh, path)
    if change == "tracts file":  # one tract's population changed, same geometry
        tracts.loc[tracts.index[0], population.POPULATION_COLUMN] += 1000.0
        tracts.to_file(path, driver="GeoJSON")
    elif change == "neighborhood geometry":
        nh = nh.copy()
        nh.loc[nh.index[0], "geometry"] = shapely.affinity.translate(nh.geometry.iloc[0], xoff=0.0005)
    elif change == "neighborhood index":
        nh = nh.set_axis(nh.index[::-1])
    else:
        nh = nh.to_crs(settings.CRS_PROJECTED)
    key = population.file_inputs_key(path, population.POPULATION_COLUMN, nh)
    assert result_cache.read(population.CACHE_KIND, key) is None
    _clear_population_memos()
    got = population.population_of(nh, path)
    oracle = _file_oracle(path, nh)
    pd.testing.assert_series_equal(got.population, oracle.population, check_exact=True)
    assert result_cache.read(population.CACHE_KIND, key) is not None


def test_population_of_a_missing_or_broken_file_says_which(cache_dir: Path, tmp_path: Path) -> None:
    from geo_lead.errors import InputFileError

    nh = load_neighborhoods()
    with pytest.raises(InputFileError, match="not found"):
        population.population_of(nh, tmp_path / "none.geojson")
    path = tmp_path / "tracts.geojson"
    tracts = population.load_tracts().head(5)
    tracts[population.POPULATION_COLUMN] = tracts[population.POPULATION_COLUMN].astype(object)
    tracts.loc[tracts.index[2], population.POPULATION_COLUMN] = "n/a"
    tracts.to_file(path, driver="GeoJSON")
    with pytest.raises(InputFileError, match="feature 2"):
        population.population_of(nh, path)


# --- queen adjacency ---------------------------------------------------------------------
def test_queen_adjacency_is_reused_from_the_store_across_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import zones_milp
    from geo_lead.store import opened

    nh = load_neighborhoods()
    oracle = zones_milp.queen_adjacency(nh)
    path = tmp_path / "s.gpkg"
    with opened(path) as store:
        assert zones_milp.stored_queen_adjacency(store, nh) == oracle
    monkeypatch.setattr(zones_milp, "queen_adjacency", _fail)
    with opened(path, create=False) as store:  # the next run: a new connection, same store
        assert zones_milp.stored_queen_adjacency(store, load_neighborhoods()) == oracle


# --- kernel density ----------------------------------------------------------------------
def _points(n: int, seed: int = 5) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    xy = np.concatenate([rng.normal(0, 900, (n // 2, 2)), rng.normal(5000, 400, (n - n // 2, 2))])
    return gpd.GeoDataFrame({"weight": rng.choice([1.0, 6.5, 8.4], n)},
                            geometry=shapely.points(xy), crs=settings.CRS_PROJECTED)


AREA = shapely.box(-4000, -4000, 9000, 9000)


def _uncached(points: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch) -> tuple[gpd.GeoDataFrame, dict]:
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        return hotspots.kde_surface(points, AREA, 500.0)


def _assert_same(a: tuple[gpd.GeoDataFrame, dict], b: tuple[gpd.GeoDataFrame, dict]) -> None:
    pd.testing.assert_frame_equal(pd.DataFrame(a[0].drop(columns="geometry")),
                                  pd.DataFrame(b[0].drop(columns="geometry")), check_exact=True)
    assert a[0].geometry.equals(b[0].geometry)
    assert a[1] == b[1]


def test_kde_reused_for_unchanged_points_is_identical(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts = _points(300)
    oracle = _uncached(pts, monkeypatch)
    first = hotspots.kde_surface(pts, AREA, 500.0)
    assert {p.name.split("-")[0] for p in cache_dir.glob("*.json")} == {"grid", "kde_bandwidth", "kde_surface"}
    monkeypatch.setattr(hotspots, "bandwidth_ft", _fail)
    monkeypatch.setattr("sklearn.neighbors.KernelDensity.fit", _fail)
    again = hotspots.kde_surface(pts.copy(), AREA, 500.0)
    _assert_same(first, oracle)
    _assert_same(again, oracle)


def test_kde_with_one_more_point_is_a_full_recompute(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts = _points(300)
    hotspots.kde_surface(pts, AREA, 500.0)
    more = pd.concat([pts, _points(1, seed=9)], ignore_index=True)
    got = hotspots.kde_surface(gpd.GeoDataFrame(more, crs=pts.crs), AREA, 500.0)
    oracle = _uncached(gpd.GeoDataFrame(more, crs=pts.crs), monkeypatch)
    _assert_same(got, oracle)
    xy = np.column_stack([more.geometry.x, more.geometry.y])
    assert got[1]["bandwidth_ft"] == hotspots.bandwidth_ft(xy, "cv")  # the CV redone, not carried over
    assert len(list(cache_dir.glob("kde_bandwidth-*.json"))) == 2


def test_kde_changed_weights_or_grid_recompute_the_density(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pts = _points(200)
    base = hotspots.kde_surface(pts, AREA, 500.0)
    heavier = pts.assign(weight=pts["weight"] * 2)
    monkeypatch.setattr(hotspots, "bandwidth_ft", _fail)  # the CV reads no weights: reused
    got = hotspots.kde_surface(heavier, AREA, 500.0)
    monkeypatch.undo()
    monkeypatch.setenv("GEO_LEAD_CACHE_DIR", str(cache_dir.parent))
    _assert_same(got, _uncached(heavier, monkeypatch))
    assert got[1]["bandwidth_ft"] == base[1]["bandwidth_ft"]
    coarse = hotspots.kde_surface(pts, AREA, 1000.0)
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        oracle = hotspots.kde_surface(pts, AREA, 1000.0)
    _assert_same(coarse, oracle)
    assert len(list(cache_dir.glob("kde_surface-*.json"))) == 3


def test_result_cache_rejects_keys_that_are_not_digests(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        result_cache.read("population", "../../etc/passwd")
    key = result_cache.digest(["a"])
    result_cache.write("population", key, {"x": [0.1, float("nan")]})
    other = result_cache.digest(["b"])
    (cache_dir / f"population-{other[:32]}.json").write_text(
        (cache_dir / f"population-{key[:32]}.json").read_text("utf-8"), "utf-8")
    assert result_cache.read("population", other) is None  # a file under the wrong name
    hit = result_cache.read("population", key)
    assert hit is not None and hit["x"][0] == 0.1 and np.isnan(hit["x"][1])


def test_grid_reused_across_runs_is_the_computed_grid_exactly(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    area = hotspots.study_area(nh, sorted(nh.loc[nh["is_named"].astype(bool), "NH_NAME"])[:3])
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        oracle = hotspots.make_grid(area, 500.0)
    first = hotspots.make_grid(area, 500.0)
    monkeypatch.setattr(shapely, "intersection", _fail)
    again = hotspots.make_grid(area, 500.0)
    for got in (first, again):
        pd.testing.assert_frame_equal(pd.DataFrame(got.drop(columns="geometry")),
                                      pd.DataFrame(oracle.drop(columns="geometry")), check_exact=True)
        assert list(shapely.to_wkb(got.geometry.values)) == list(shapely.to_wkb(oracle.geometry.values))
    monkeypatch.undo()
    monkeypatch.setenv("GEO_LEAD_CACHE_DIR", str(cache_dir.parent))
    assert len(hotspots.make_grid(area, 1000.0)) < len(oracle)  # another cell size: computed
    assert len(list(cache_dir.glob("grid-*.json"))) == 2
