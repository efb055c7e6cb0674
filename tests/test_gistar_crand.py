"""Gi* conditional permutations (`geo_lead.gistar_crand`) against esda itself.

Oracles: ``esda.crand.vec_permutations`` (the draws), ``esda.G_Local(..., star=True,
transform="B", keep_simulations=True).rGs`` (every simulated value, compared bit for bit) and
the counts the earlier `geo_lead.hotspots` computed from those values; on the shipped
neighborhoods (queen) and First Division grid (distance band), and on random lattices with
islands, ties and zeros.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from libpysal.weights import DistanceBand, Queen, W, lat2W

from geo_lead import gistar_crand, hotspots, result_cache, settings
from geo_lead.boundaries import load_neighborhoods


def _esda(y: np.ndarray, w: W, permutations: int, seed: int):
    import esda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # esda's z_sim divides by a zero spread when every permutation ties (not compared here)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "divide by zero encountered", RuntimeWarning)
        return esda.G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed,
                            keep_simulations=bool(permutations), n_jobs=1)


def _simulated(y: np.ndarray, adjacency, permutations: int, seed: int) -> np.ndarray:
    ids = gistar_crand.permuted_ids(len(y), _max_card(adjacency), permutations, seed)
    out = np.full((len(y), permutations), np.nan)
    for units, sims in gistar_crand.simulated_blocks(y, adjacency, permutations, seed, ids=ids):
        out[units] = sims
    return out


def _max_card(adjacency) -> int:
    return int(gistar_crand.crand_structure(adjacency, np.dtype(float))[1].max())


def _assert_bitwise(y: np.ndarray, w: W, permutations: int, seed: int) -> None:
    g = _esda(y, w, permutations, seed)
    adjacency = _esda(y, w, 0, seed).w.sparse  # G_Local's weights, untouched by esda's crand
    ours = _simulated(y, adjacency, permutations, seed)
    assert ours.shape == g.rGs.shape
    np.testing.assert_array_equal(ours.view(np.int64), np.asarray(g.rGs, float).view(np.int64))
    ids = gistar_crand.permuted_ids(len(y), _max_card(adjacency), permutations, seed)
    up, down = gistar_crand.extreme_counts(y, adjacency, g.Gs, permutations, seed, ids=ids)
    tol = 1e-12 * np.maximum(1.0, np.abs(g.Gs))[:, None]
    np.testing.assert_array_equal(up, (g.rGs >= g.Gs[:, None] - tol).sum(axis=1))
    np.testing.assert_array_equal(down, (g.rGs <= g.Gs[:, None] + tol).sum(axis=1))


def test_draws_are_esdas_vec_permutations_and_leave_the_global_state_alone() -> None:
    from esda.crand import vec_permutations

    for n, card, r, seed in [(50, 8, 300, 1), (7, 6, 40, 20180801), (400, 3, 99, 0), (2, 1, 10, 5)]:
        before = np.random.get_state()[1].copy()
        ours = gistar_crand.permuted_ids(n, card, r, seed)
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        np.testing.assert_array_equal(ours, vec_permutations(card, n, r, seed))


def test_simulated_values_are_esdas_bit_for_bit_on_the_shipped_neighborhoods() -> None:
    proj = load_neighborhoods().to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        w = Queen.from_dataframe(proj, use_index=False)
    rng = np.random.default_rng(3)
    area = proj.geometry.area.to_numpy() / settings.SQFT_PER_SQMI
    counts = rng.poisson(2.0, len(proj)) * rng.choice([1.0, 10.0 / 3.0, 1.25], len(proj))
    _assert_bitwise(counts / area, w, 199, settings.RANDOM_SEED)  # densities, as gistar_neighborhoods
    _assert_bitwise(np.zeros(len(proj)) + (np.arange(len(proj)) == 7), w, 99, 4)  # one unit, the rest ties


def test_simulated_values_are_esdas_bit_for_bit_on_the_first_division_grid() -> None:
    nh = load_neighborhoods()
    area = hotspots.study_area(nh, hotspots.first_division_names(nh))
    grid = hotspots.make_grid(area, 1000.0)
    centres = np.column_stack([grid["x_ft"], grid["y_ft"]])
    w = DistanceBand(centres, threshold=1500.0, binary=True, silence_warnings=True)
    rng = np.random.default_rng(8)
    counts = rng.poisson(0.8, len(grid)) * 10.0 / 3.0  # many zero cells: ties everywhere
    _assert_bitwise(counts, w, 299, settings.RANDOM_SEED)
    _assert_bitwise(rng.gamma(0.3, 4.0, len(grid)), w, 150, 11)


@pytest.mark.parametrize("seed", range(6))
def test_simulated_values_are_esdas_on_random_lattices_with_islands_and_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 40))
    neighbours: dict[int, list[int]] = {i: [] for i in range(n)}
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < 0.15 and i % 5:  # every fifth unit an island
                neighbours[i].append(j)
                neighbours[j].append(i)
    for j in range(0, n, 5):
        for i in neighbours[j]:
            neighbours[i].remove(j)
        neighbours[j] = []
    w = W(neighbours, silence_warnings=True)
    ties = rng.integers(0, 3, n).astype(float)
    _assert_bitwise(ties, w, int(rng.integers(20, 300)), seed)
    _assert_bitwise(rng.random(n) * 7.3, w, 101, seed + 100)


def test_rook_and_queen_lattices() -> None:
    for rook in (True, False):
        w = lat2W(9, 7, rook=rook)
        _assert_bitwise(np.random.default_rng(1).random(63), w, 333, 7)


def _old_gistar(y: np.ndarray, w: W, permutations: int, seed: int, per_batch: int) -> tuple[np.ndarray, ...]:
    """What `hotspots.gistar` computed before `gistar_crand`: esda's G_Local per batch."""
    up = down = 0
    done, i = 0, 0
    while done < permutations:
        r = min(per_batch, permutations - done)
        g = _esda(y, w, r, seed + i)
        u, d = hotspots._extreme_counts(np.asarray(g.Gs, float), np.asarray(g.rGs, float))
        up, down, done, i = up + u, down + d, done + r, i + 1
    z = np.nan_to_num(np.asarray(g.Zs, float))
    p = np.where(z > 0, (up + 1) / (permutations + 1), np.where(z < 0, (down + 1) / (permutations + 1), 1.0))
    smaller = (np.minimum(up, down) + 1) / (permutations + 1)
    return z, p, hotspots.two_sided_p(smaller)


def test_gistar_equals_the_esda_computation_in_one_and_in_many_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    centres = np.array([(i, j) for i in range(7) for j in range(6)], float)
    w = DistanceBand(centres, threshold=1.5, binary=True, silence_warnings=True)
    y = np.random.default_rng(2).poisson(1.5, 42).astype(float)
    for values_max in (hotspots.SIMULATION_VALUES_MAX, 42 * 300):
        monkeypatch.setattr(hotspots, "SIMULATION_VALUES_MAX", values_max)
        per_batch = max(1, min(1000, values_max // 42))
        out = hotspots.gistar(y, w, permutations=1000, seed=9)
        z, p, p2 = _old_gistar(y, w, 1000, 9, per_batch)
        np.testing.assert_array_equal(out["gi_z"], z)
        np.testing.assert_array_equal(out["p_sim"], p)
        np.testing.assert_array_equal(out["p_two_sided"], p2)


def test_all_islands_raise_as_esda_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    w = W({0: [], 1: [], 2: []}, silence_warnings=True)
    with pytest.raises(ValueError):
        hotspots.gistar(np.array([1.0, 2.0, 3.0]), w, permutations=9, seed=1)
    with pytest.raises(ValueError, match="neighbour"):
        gistar_crand.extreme_counts(np.ones(3), _esda(np.ones(3), w, 0, 1).w.sparse, np.ones(3), 9, 1)


def test_cached_draws_are_the_draws_and_every_input_is_in_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    base = (60, 8, 120, 5)
    first = gistar_crand.cached_permuted_ids(*base)
    np.testing.assert_array_equal(first, gistar_crand.permuted_ids(*base))
    assert len(list(tmp_path.glob("gistar_permutations-*.pkl"))) == 1
    monkeypatch.setattr(gistar_crand, "permuted_ids", lambda *a: pytest.fail("drawn again"))
    again = gistar_crand.cached_permuted_ids(*base)
    assert again.dtype == np.int64
    np.testing.assert_array_equal(again, first)
    monkeypatch.undo()
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    key = gistar_crand._permutation_key(*base)
    for changed in [(61, 8, 120, 5), (60, 7, 120, 5), (60, 8, 121, 5), (60, 8, 120, 6)]:
        assert gistar_crand._permutation_key(*changed) != key
        np.testing.assert_array_equal(gistar_crand.cached_permuted_ids(*changed),
                                      gistar_crand.permuted_ids(*changed))
    monkeypatch.setattr(result_cache, "code_version", lambda: "other code")
    assert gistar_crand._permutation_key(*base) != key
    monkeypatch.undo()
    monkeypatch.setattr(result_cache, "library_versions", lambda *names: f"other {names}")
    assert gistar_crand._permutation_key(*base) != key


def _neighborhood_points(n: int, seed: int) -> gpd.GeoDataFrame:
    nh = load_neighborhoods()
    rng = np.random.default_rng(seed)
    pts = nh.geometry.to_crs(settings.CRS_PROJECTED).sample_points(1, rng=rng).iloc[:n]
    pts = gpd.GeoDataFrame({"weight": rng.choice([1.0, 10.0 / 3.0], len(pts))}, geometry=pts.to_numpy(),
                           crs=settings.CRS_PROJECTED).to_crs(nh.crs)
    return pts.assign(neighborhood=hotspots.assign_neighborhoods(pts, nh).to_numpy())


def test_queen_weights_reused_are_queens_and_every_input_is_in_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    proj = load_neighborhoods().to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    lattice = result_cache.frame_digest(proj, ["NH_NAME", proj.geometry.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        oracle = Queen.from_dataframe(proj, use_index=False)
    built = hotspots.queen_weights(proj, lattice)
    calls: list[int] = []
    real = Queen.from_dataframe

    def counted(*args: object, **kwargs: object) -> W:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(Queen, "from_dataframe", counted)
    reused = hotspots.queen_weights(proj, lattice)
    assert calls == []
    for w in (built, reused):
        assert list(w.id_order) == list(oracle.id_order)
        assert all(list(w.neighbors[i]) == list(oracle.neighbors[i]) for i in oracle.id_order)
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(w.sparse, part), getattr(oracle.sparse, part))
    hotspots.queen_weights(proj.iloc[:-1], result_cache.frame_digest(proj.iloc[:-1], ["NH_NAME", "geometry"]))
    assert len(calls) == 1  # other units: built
    monkeypatch.setattr(result_cache, "code_version", lambda: "other code")
    hotspots.queen_weights(proj, lattice)
    assert len(calls) == 2
    monkeypatch.setattr(result_cache, "library_versions", lambda *names: f"other {names}")
    hotspots.queen_weights(proj, lattice)
    assert len(calls) == 3


def test_gistar_neighborhoods_with_reused_weights_equals_the_computation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    first, second = _neighborhood_points(150, 1), _neighborhood_points(170, 2)
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")
    oracle = hotspots.gistar_neighborhoods(nh, second, permutations=199)
    monkeypatch.delenv(result_cache.ENV_SWITCH)
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    hotspots.gistar_neighborhoods(nh, first, permutations=199)  # caches the weights
    assert len(list(tmp_path.glob("queen_weights-*.json"))) == 1
    monkeypatch.setattr(Queen, "from_dataframe", lambda *a, **k: pytest.fail("weights built again"))
    reused = hotspots.gistar_neighborhoods(nh, second, permutations=199)  # new counts: Gi* computed
    pd.testing.assert_frame_equal(pd.DataFrame(reused.drop(columns="geometry")),
                                  pd.DataFrame(oracle.drop(columns="geometry")), check_exact=True)


def test_esda_draws_with_numpy_here_and_with_numba_esda_computes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without numba (this environment) esda's draws are numpy's and gistar_crand makes them;
    were numba installed, esda's own crand would run (other draws), and the Gi* keys name
    numba's version so no result of the one is reused for the other."""
    assert gistar_crand.replicates_esda()
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    centres = np.array([(i, j) for i in range(5) for j in range(6)], float)
    w = DistanceBand(centres, threshold=1.5, binary=True, silence_warnings=True)
    y = np.random.default_rng(6).poisson(2.0, 30).astype(float)
    ours = hotspots._gistar(y, w, 500, 3)
    monkeypatch.setattr(gistar_crand, "replicates_esda", lambda: False)
    monkeypatch.setattr(gistar_crand, "extreme_counts", lambda *a, **k: pytest.fail("not esda's crand"))
    pd.testing.assert_frame_equal(hotspots._gistar(y, w, 500, 3), ours, check_exact=True)
    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(result_cache, "library_versions", lambda *names: asked.append(names) or "v")
    hotspots._gistar_key(y, w, 500, 3)
    assert asked and all("numba" in names for names in asked)
