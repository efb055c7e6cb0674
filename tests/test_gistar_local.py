"""`geo_lead.gistar_local` and the numpy KDE against their oracles.

Oracles: esda's ``G_Local(transform="B", star=True)`` (z, G, p_norm, its ``w.sparse``) and
its conditional permutations (``rGs``), libpysal's ``DistanceBand(binary=True)`` and
``Queen``, all bit for bit; scikit-learn's ``KernelDensity`` and an exact log-sum-exp of
every kernel term for `hotspots.gaussian_density`, which cannot be bit-identical to
scikit-learn (its tree sums in another order, and is itself exact only to ~1e-9).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import esda
import numpy as np
import pandas as pd
import pytest
from libpysal.weights import DistanceBand, Queen, W, lat2W
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

from geo_lead import gistar_crand, hotspots, result_cache, settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.gistar_local import BinaryWeights, distance_band, g_local_star, p_norm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")


@pytest.fixture(scope="module")
def queen() -> W:
    proj = load_neighborhoods().to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Queen.from_dataframe(proj, use_index=False)


@pytest.fixture(scope="module")
def first_division_centres() -> np.ndarray:
    nh = load_neighborhoods()
    area = hotspots.study_area(nh, hotspots.resolve_area(nh, None, "first-division"))
    grid = hotspots.make_grid(area, 1000.0)
    return np.column_stack([grid["x_ft"], grid["y_ft"]])


def _esda(y: np.ndarray, w: Any, permutations: int = 0, seed: int = 1) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return esda.G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed,
                            keep_simulations=bool(permutations), n_jobs=1)


def _identical(got: np.ndarray, want: np.ndarray) -> None:
    """Equal bit for bit: same values, NaN where NaN, same sign of zeros."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.int64), want.view(np.int64)) or (
        np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want)))


def _same_sparse(got: Any, want: Any) -> None:
    for part in ("indptr", "indices", "data"):
        a, b = getattr(got, part), getattr(want, part)
        assert a.dtype == b.dtype and np.array_equal(a, b), part
    assert got.shape == want.shape


def assert_gi_like_esda(y: np.ndarray, w: Any) -> None:
    """z, G, p_norm and the Gi* weight matrix of `gistar_local` are esda's, bit for bit."""
    binary = BinaryWeights.from_w(w)
    assert binary is not None
    g = _esda(y, w)
    gs, zs = g_local_star(y, binary)
    _identical(gs, g.Gs)
    _identical(zs, g.Zs)
    _identical(p_norm(zs), g.p_norm)
    _same_sparse(binary.star_sparse, g.w.sparse)
    _same_sparse(binary.sparse, w.sparse)


def random_lattice(seed: int, n: int = 40) -> W:
    """Random symmetric neighbours with islands (about one unit in eight)."""
    rng = np.random.default_rng(seed)
    pairs = {(i, j) for i, j in rng.integers(0, n, (2 * n, 2)) if i != j}
    islands = set(rng.choice(n, n // 8, replace=False).tolist())
    neighbors: dict[int, list[int]] = {i: [] for i in range(n)}
    for i, j in sorted(pairs):
        if i in islands or j in islands or j in neighbors[i]:
            continue
        neighbors[i].append(int(j))
        neighbors[j].append(int(i))
    for i in neighbors:
        rng.shuffle(neighbors[i])  # libpysal keeps its neighbours in any order
    return W(neighbors, silence_warnings=True)


def values(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gamma":
        return rng.gamma(2.0, 10.0, n)
    if kind == "counts":  # many ties and zeros
        return rng.poisson(0.7, n).astype(float)
    if kind == "zeros":
        return np.zeros(n)
    if kind == "one":
        y = np.zeros(n)
        y[seed % n] = 3.0
        return y
    raise ValueError(kind)


KINDS = ("gamma", "counts", "zeros", "one")


@pytest.mark.parametrize("kind", KINDS)
def test_z_g_and_p_norm_on_the_shipped_neighborhoods_are_esdas(queen: W, kind: str) -> None:
    assert_gi_like_esda(values(kind, queen.n, 4), queen)


@pytest.mark.parametrize("kind", KINDS)
def test_z_g_and_p_norm_on_the_first_division_grid_are_esdas(first_division_centres: np.ndarray, kind: str) -> None:
    w = DistanceBand(first_division_centres, threshold=1500.0, binary=True, silence_warnings=True)
    assert_gi_like_esda(values(kind, w.n, 5), w)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", KINDS)
def test_z_g_and_p_norm_on_random_lattices_with_islands_are_esdas(seed: int, kind: str) -> None:
    w = random_lattice(seed)
    assert any(not n for n in w.neighbors.values())
    assert_gi_like_esda(values(kind, w.n, seed), w)


def test_string_ids_are_read_in_id_order() -> None:
    w = lat2W(5, 4, id_type="string")
    assert_gi_like_esda(values("gamma", w.n, 1), w)


@pytest.mark.parametrize("band", [1000.0, 1000.0 * 2**0.5, 1500.0, 2000.0, 1000.0 * 5**0.5, 2900.0])
def test_distance_band_finds_libpysals_pairs(first_division_centres: np.ndarray, band: float) -> None:
    """Bands at exactly a lattice distance (1000, sqrt 2 x 1000, ...) test the bound's side."""
    db = DistanceBand(first_division_centres, threshold=band, binary=True, silence_warnings=True)
    ours = distance_band(first_division_centres, band)
    assert ours.id_order == list(db.id_order)
    assert all(ours.neighbors[i] == sorted(db.neighbors[i]) for i in db.id_order)
    _same_sparse(ours.sparse, db.sparse)


@pytest.mark.parametrize("seed", range(4))
def test_distance_band_on_scattered_points_with_coincident_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 5000, (300, 2))
    xy[::17] = xy[1::17][: len(xy[::17])]  # coincident points: libpysal drops their zero distance
    xy = np.round(xy, 0)  # integer coordinates: many distances exactly at the band
    for band in (250.0, 500.0, 1300.0):
        db = DistanceBand(xy, threshold=band, binary=True, silence_warnings=True)
        ours = distance_band(xy, band)
        assert all(ours.neighbors[i] == sorted(db.neighbors[i]) for i in db.id_order), band
        _same_sparse(ours.sparse, db.sparse)


def test_binary_weights_refuse_what_esda_would_read_otherwise() -> None:
    assert BinaryWeights.from_w(W({0: [1], 1: [0]}, {0: [0.0], 1: [1.0]}, silence_warnings=True)) is None
    assert BinaryWeights.from_w(W({0: [0, 1], 1: [0]}, silence_warnings=True)) is None  # own neighbour
    assert BinaryWeights.from_w(object()) is None
    with pytest.raises(ValueError, match="not a unit"):
        BinaryWeights({0: [7]}, [0])
    with pytest.raises(ValueError, match="twice"):
        BinaryWeights({0: [1, 1], 1: [0]}, [0, 1])


def _esda_gistar(y: np.ndarray, w: Any, permutations: int, seed: int) -> pd.DataFrame:
    """`hotspots.gistar`'s statistics with esda doing everything (the code before gistar_local)."""
    g = _esda(y, w, permutations, seed)
    z = np.nan_to_num(np.asarray(g.Zs, dtype=float))
    if not permutations:
        p = np.asarray(g.p_norm, dtype=float)
        return pd.DataFrame({"gi_z": z, "p_sim": p, "p_two_sided": hotspots.two_sided_p(p)})
    up, down = hotspots._extreme_counts(np.asarray(g.Gs, float), np.asarray(g.rGs, float))
    r = permutations + 1
    p = np.where(z > 0, (up + 1) / r, np.where(z < 0, (down + 1) / r, 1.0))
    return pd.DataFrame({"gi_z": z, "p_sim": p, "p_two_sided": hotspots.two_sided_p((np.minimum(up, down) + 1) / r)})


@pytest.mark.parametrize("permutations", [0, 199])
@pytest.mark.parametrize("kind", ["gamma", "counts", "zeros"])
def test_gistar_without_esda_equals_esda(queen: W, first_division_centres: np.ndarray, kind: str,
                                         permutations: int) -> None:
    lattices = [queen, DistanceBand(first_division_centres, threshold=1500.0, binary=True, silence_warnings=True),
                random_lattice(11)]
    for w in lattices:
        y = values(kind, w.n, 8)
        want = _esda_gistar(y, w, permutations, 3)
        for given in (w, BinaryWeights.from_w(w)):
            pd.testing.assert_frame_equal(hotspots._gistar(y, given, permutations, 3), want, check_exact=True)


def test_weights_esda_would_read_otherwise_are_left_to_esda(monkeypatch: pytest.MonkeyPatch) -> None:
    # esda changes the W it is given (its transform, its matrix): a fresh W for each call
    def weighted() -> W:
        return W({0: [1, 2], 1: [0], 2: [0, 3], 3: [2]}, {0: [2.0, 0.5], 1: [2.0], 2: [0.5, 1.0], 3: [1.0]},
                 silence_warnings=True)

    def own_neighbour() -> W:  # unit 0 lists itself: esda adds no self-weight to the others
        return W({0: [0, 1], 1: [0, 2], 2: [1, 3], 3: [2]}, silence_warnings=True)

    y = np.array([1.0, 4.0, 0.0, 2.5])
    assert BinaryWeights.from_w(own_neighbour()) is None
    for make in (weighted, own_neighbour):
        want = _esda_gistar(y, make(), 99, 2)
        pd.testing.assert_frame_equal(hotspots._gistar(y, make(), 99, 2), want, check_exact=True)
    monkeypatch.setattr(gistar_crand, "replicates_esda", lambda: False)  # numba: esda draws
    binary = distance_band(np.array([(i, j) for i in range(4) for j in range(5)], float), 1.5)
    y = values("counts", binary.n, 2)
    pd.testing.assert_frame_equal(hotspots._gistar(y, binary, 99, 2), _esda_gistar(y, binary.to_w(), 99, 2),
                                  check_exact=True)


_REPLICATES = "import sys; from geo_lead import gistar_crand; print(gistar_crand.replicates_esda(), 'esda' in sys.modules)"


def test_replicates_esda_imports_no_esda_without_numba() -> None:
    import importlib.util

    assert importlib.util.find_spec("numba") is None  # this environment
    done = subprocess.run([sys.executable, "-c", _REPLICATES], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["True", "False"], done.stderr[-2000:]
    import esda.crand

    assert gistar_crand.replicates_esda() is (esda.crand.prange is range)


# --- the KDE ---------------------------------------------------------------------------------
def exact_density(points: np.ndarray, w: np.ndarray, h: float, at: np.ndarray) -> np.ndarray:
    """sum_j w_j N(a; x_j, h^2 I) / sum_j w_j, every term in logs (scipy's logsumexp)."""
    d2 = ((at[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    log_k = -d2 / (2 * h * h) + np.log(w)[None, :]
    return np.exp(logsumexp(log_k, axis=1) - np.log(w.sum()) - np.log(2 * np.pi * h * h))


def _case(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    origin = np.array([1.2e6, 2.7e5])
    xy = np.concatenate([rng.normal(0, 900, (n // 2, 2)), rng.normal(5000, 400, (n - n // 2, 2))]) + origin
    w = rng.choice([1.0, 6.5, 8.4, 0.25], n) * rng.integers(1, 50, n)
    gx, gy = np.meshgrid(np.arange(-9000, 14000, 400.0), np.arange(-9000, 14000, 400.0))
    return xy, w, np.column_stack([gx.ravel(), gy.ravel()]) + origin


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_density_is_the_exact_mixture_on_every_cell(seed: int) -> None:
    """To 1e-12 relative everywhere, cells far from every point (densities ~1e-100) included
    (below the smallest normal float, ~2e-308, to that absolute)."""
    xy, w, at = _case(seed)
    got = hotspots.gaussian_density(xy, w, 350.0, at)
    want = exact_density(xy, w, 350.0, at)
    assert want.min() < 1e-50 * want.max()  # far cells are tested too
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=np.finfo(float).tiny)


def test_gaussian_density_does_not_depend_on_the_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    xy, w, at = _case(4)
    whole = hotspots.gaussian_density(xy, w, 500.0, at)
    for chunk in (1, 1000, 7 * len(xy) + 3):
        monkeypatch.setattr(hotspots, "KDE_CHUNK_VALUES", chunk)
        np.testing.assert_array_equal(hotspots.gaussian_density(xy, w, 500.0, at), whole)


def test_gaussian_density_refuses_no_points_or_negative_weights() -> None:
    at = np.zeros((2, 2))
    with pytest.raises(ValueError, match="points"):
        hotspots.gaussian_density(np.zeros((0, 2)), np.zeros(0), 1.0, at)
    with pytest.raises(ValueError, match="non-negative"):
        hotspots.gaussian_density(np.zeros((1, 2)), np.array([-1.0]), 1.0, at)
    with pytest.raises(ValueError, match="positive bandwidth"):
        hotspots.gaussian_density(np.zeros((1, 2)), np.array([1.0]), 0.0, at)


#: scikit-learn's tree KDE is exact to about this, relative, on cells of substantial density.
SKLEARN_RTOL = 1e-8


@pytest.mark.parametrize("seed", range(3))
def test_kde_density_agrees_with_scikit_learn_to_its_accuracy(seed: int) -> None:
    xy, w, at = _case(seed, 2500)
    got = hotspots.kde_density(xy, w, 420.0, at)
    sk = np.exp(KernelDensity(kernel="gaussian", bandwidth=420.0).fit(xy, sample_weight=w).score_samples(at))
    substantial = sk > 1e-6 * sk.max()
    np.testing.assert_allclose(got[substantial], sk[substantial], rtol=SKLEARN_RTOL)
    np.testing.assert_allclose(got, sk, rtol=0, atol=1e-12 * sk.max())


# --- a rerun that computes imports none of esda, libpysal, scikit-learn ----------------------
def test_computing_with_cached_weights_imports_no_esda_libpysal_or_sklearn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the queen weights are cached, new values (Gi* and KDE computed) need none of them;
    the layers are those computed with the cache off."""
    from test_memo import assert_same_hot_spot_layers, hot_spot_layers_in_fresh_process, records_in

    monkeypatch.delenv(result_cache.ENV_SWITCH)
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "cache"))
    neighborhoods = load_neighborhoods()
    points, _ = hotspots.indicator_points(records_in(neighborhoods))
    area = hotspots.study_area(neighborhoods, hotspots.resolve_area(neighborhoods, None, "first-division"))
    hotspots.gistar_neighborhoods(neighborhoods, points.iloc[1:], 199)  # caches the queen weights
    assert list((tmp_path / "cache").glob("queen_weights-*.json"))
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        want = (hotspots.gistar_neighborhoods(neighborhoods, points, 199),
                hotspots.gistar_grid(points, area, 1000.0, None, 199), hotspots.kde_surface(points, area))
    got, heavy = hot_spot_layers_in_fresh_process(tmp_path, points, area, neighborhoods,
                                                  ("esda", "libpysal", "sklearn", "scipy.stats", "scipy.spatial"))
    assert heavy == []
    assert_same_hot_spot_layers(got, want)


def test_the_statistics_child_prefetches_libpysal_only_without_cached_queen_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import pipeline

    assert pipeline._QUEEN_WEIGHTS_KIND == hotspots.QUEEN_WEIGHTS_CACHE
    assert not {"esda", "sklearn.neighbors", "libpysal.weights"} & set(pipeline.HOTSPOT_COMPUTE_MODULES)
    monkeypatch.delenv(result_cache.ENV_SWITCH)
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path))
    assert "libpysal.weights" in pipeline._statistics_modules()
    (tmp_path / f"{hotspots.QUEEN_WEIGHTS_CACHE}-{'0' * 32}.json").write_text("{}")
    assert pipeline._statistics_modules() == pipeline.HOTSPOT_COMPUTE_MODULES
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")  # --force: the weights are built
    assert "libpysal.weights" in pipeline._statistics_modules()
