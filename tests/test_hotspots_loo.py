"""The bandwidth's leave-one-out likelihood (`hotspots.loo_log_likelihood`) and its row
log-sum-exp (`hotspots.row_logsumexp`) against scipy's ``logsumexp`` as the oracle, bit for
bit: random rows, rows with tied maxima, -inf entries, and a row of -inf only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from geo_lead import settings
from geo_lead.hotspots import (
    CV_GRID,
    CV_MAX_POINTS,
    bandwidth_ft,
    loo_log_likelihood,
    row_logsumexp,
)


def _scipy_loo(xy: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """The likelihood as written with scipy's logsumexp (the oracle)."""
    n = len(xy)
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    out = np.empty(len(bandwidths))
    for k, h in enumerate(bandwidths):
        log_k = -d2 / (2 * h * h) - np.log(2 * np.pi * h * h)
        out[k] = float(np.sum(logsumexp(log_k, axis=1) - np.log(n - 1)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_row_logsumexp_equals_scipy_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=50, size=(60, 301))
    a[:, 5] = a.max(axis=1)  # tied maxima
    a[3] = 2.5  # a whole row tied
    a[7, ::3] = -np.inf
    a[9] = -np.inf  # nothing: -inf
    a[11, :] = np.round(a[11, :])  # many ties below the maximum
    ours = row_logsumexp(a)
    theirs = logsumexp(a, axis=1)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(row_logsumexp(a, np.empty_like(a)), theirs)


@pytest.mark.parametrize("seed", range(4))
def test_loo_likelihood_equals_scipy_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.normal(scale=3000, size=(400, 2))
    xy[:40] = xy[40:80]  # repeated places (records at one block point)
    hs = 800.0 * np.logspace(np.log10(0.2), np.log10(3.0), CV_GRID)
    assert np.array_equal(loo_log_likelihood(xy, hs), _scipy_loo(xy, hs))


def test_the_cv_bandwidth_is_the_candidate_scipy_chooses() -> None:
    rng = np.random.default_rng(11)
    xy = np.vstack([rng.normal(0, 2000, size=(CV_MAX_POINTS, 2)), rng.normal(8000, 500, size=(300, 2))])
    n = len(xy)
    pick = np.random.default_rng(settings.RANDOM_SEED).choice(n, CV_MAX_POINTS, replace=False)
    sample = xy[pick]
    sigma = float(np.sqrt(np.mean(np.var(xy, axis=0, ddof=1))))
    candidates = sigma * n ** (-1.0 / 6.0) * np.logspace(np.log10(0.2), np.log10(3.0), CV_GRID)
    best = float(candidates[int(np.argmax(_scipy_loo(sample, candidates)))])
    assert bandwidth_ft(xy, "cv") == best * (len(sample) / n) ** (1.0 / 6.0)


def test_row_logsumexp_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        row_logsumexp(np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        row_logsumexp(np.zeros((2, 3)), np.zeros((3, 2)))
