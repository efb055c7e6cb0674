"""`hotspots.kde_density` sums the distinct points with their summed weights (a numpy
Gaussian sum, `hotspots.gaussian_density`; tests/test_gistar_local.py tests it to 1e-12).

Oracles: the per-record scikit-learn fit (the code before the grouping, inline here) and an
exact brute-force Gaussian mixture (pairwise distances, log-sum-exp) of every record.

scikit-learn's tree KDE (``KernelDensity.score_samples``, ``atol=rtol=0``) is itself exact
only to about 1e-9 relative on cells of substantial density (and much less on cells whose
density underflows towards 1e-50: its bounds are kept by cancellation), whichever points it
is fitted on; so the grouped sum and the per-record fit agree to 1e-12 of the largest density (the
scale the hotspot threshold and the stored surface are read at), and each agrees with the
exact mixture to 1e-8 relative on every cell above 1e-6 of the largest density.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

from geo_lead import result_cache, settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.hotspots import (
    bandwidth_ft,
    collapse_shares,
    distinct_points,
    indicator_points,
    kde_density,
    kde_surface,
    make_grid,
    resolve_area,
    study_area,
    units_of,
)

#: Agreement of two scikit-learn fits, relative to the largest density.
SCALE_RTOL = 1e-12


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")


def per_record_density(xy: np.ndarray, w: np.ndarray, bandwidth: float, at: np.ndarray) -> np.ndarray:
    """The code before the grouping: one sample per record."""
    kde = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(xy, sample_weight=w)
    return np.exp(kde.score_samples(at))


def exact_density(xy: np.ndarray, w: np.ndarray, bandwidth: float, at: np.ndarray) -> np.ndarray:
    """sum_i w_i N(at; x_i, h^2 I) / sum_i w_i, every pair computed."""
    d2 = ((at[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    log_k = -d2 / (2 * bandwidth**2) + np.log(w)[None, :]
    return np.exp(logsumexp(log_k, axis=1) - np.log(w.sum()) - np.log(2 * np.pi * bandwidth**2))


def assert_same_density(got: np.ndarray, per_record: np.ndarray, exact: np.ndarray) -> None:
    np.testing.assert_allclose(got, per_record, rtol=0, atol=SCALE_RTOL * per_record.max())
    substantial = exact > 1e-6 * exact.max()
    assert substantial.sum() > 10
    np.testing.assert_allclose(got[substantial], exact[substantial], rtol=1e-8)
    np.testing.assert_allclose(per_record[substantial], exact[substantial], rtol=1e-8)


def _random_case(duplicates: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    n = 4000
    if duplicates:  # 150 block points shared by many records, as geocoding makes them
        blocks = np.concatenate([rng.normal(0, 900, (100, 2)), rng.normal(5000, 400, (50, 2))])
        xy = blocks[rng.integers(0, len(blocks), n)]
    else:
        xy = np.concatenate([rng.normal(0, 900, (n // 2, 2)), rng.normal(5000, 400, (n - n // 2, 2))])
    w = rng.choice([1.0, 6.5, 8.4, 0.25], n)
    gx, gy = np.meshgrid(np.arange(-4000, 9000, 500.0), np.arange(-4000, 9000, 500.0))
    return xy, w, np.column_stack([gx.ravel(), gy.ravel()]), 350.0


@pytest.mark.parametrize("duplicates", [True, False], ids=["many-duplicates", "all-distinct"])
def test_grouped_fit_equals_the_per_record_fit_on_random_points(duplicates: bool) -> None:
    xy, w, at, bw = _random_case(duplicates, seed=3)
    assert (len(np.unique(xy, axis=0)) < 200) == duplicates
    got = kde_density(xy, w, bw, at)
    assert_same_density(got, per_record_density(xy, w, bw, at), exact_density(xy, w, bw, at))


def test_distinct_points_sum_the_weights_of_identical_points() -> None:
    xy = np.array([[1.0, 2.0], [0.0, 5.0], [1.0, 2.0], [1.0, 2.0 + 1e-9], [0.0, 5.0]])
    w = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    points, summed = distinct_points(xy, w)
    np.testing.assert_array_equal(points, [[0.0, 5.0], [1.0, 2.0], [1.0, 2.0 + 1e-9]])
    np.testing.assert_array_equal(summed, [18.0, 5.0, 8.0])
    with pytest.raises(ValueError, match="weights"):
        distinct_points(xy, w[:3])


@pytest.fixture(scope="module")
def shipped_points(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[gpd.GeoDataFrame, object]]:
    """The lead-eligible records in the First Division's KDE, from the shipped extracts
    ingested, geocoded and joined, as `hotspots.hotspots` hands them to `kde_surface`."""
    from geo_lead.geocode import geocode_store
    from geo_lead.hotspots import records_from_store
    from geo_lead.ingest import ingest_files
    from geo_lead.spatial_join import join_store
    from geo_lead.store import opened

    path: Path = tmp_path_factory.mktemp("kde_grouped") / "s.gpkg"
    nh = load_neighborhoods()
    with opened(path) as store:
        ingest_files(store, list(settings.SHIPPED_LMPD_FILES))
        geocode_store(store)
        join_store(store)
        records = records_from_store(store, nh)
    names = resolve_area(nh, None, "first-division")
    points, _ = indicator_points(records, "lead_eligible")
    in_area = points[units_of(points, nh).isin(names).to_numpy()]
    yield collapse_shares(in_area), study_area(nh, names)


def test_grouped_fit_equals_the_per_record_fit_on_the_shipped_data(
        shipped_points: tuple[gpd.GeoDataFrame, object]) -> None:
    points, area = shipped_points
    xy = np.column_stack([points.geometry.x, points.geometry.y])
    w = points["weight"].to_numpy(float)
    assert len(np.unique(xy, axis=0)) < len(xy)  # records share block points
    surface, info = kde_surface(points, area, 500.0, None, "cv", 2.0)
    bw = bandwidth_ft(xy, "cv")
    assert info["bandwidth_ft"] == bw
    grid = make_grid(area, 500.0)
    at = np.column_stack([grid.geometry.centroid.x, grid.geometry.centroid.y])
    per_record = per_record_density(xy, w, bw, at)
    assert_same_density(kde_density(xy, w, bw, at), per_record, exact_density(xy, w, bw, at))
    # the layer: densities per square mile, threshold and hotspot cells as the old code made them
    old = per_record * w.sum() * settings.SQFT_PER_SQMI
    old_threshold = float(old.mean() + 2.0 * old.std())
    np.testing.assert_allclose(surface["density_per_sqmi"].to_numpy(), old, rtol=0, atol=SCALE_RTOL * old.max())
    assert info["threshold_per_sqmi"] == pytest.approx(old_threshold, rel=1e-12)
    np.testing.assert_array_equal(surface["is_hotspot"].to_numpy(), old > old_threshold)
    assert 0 < info["hotspot_cells"] < info["cells"]
