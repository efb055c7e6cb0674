"""Gi* conditional permutations: esda's ``crand`` draws and statistics, whole unit groups at once.

``esda.G_Local(star=True, permutations=R)`` without numba loops over the units in Python and
keeps every simulated value (units x R), then its mean and spread; the draws themselves
(``esda.crand.vec_permutations``: R calls of ``np.random.choice(n - 1, max_card,
replace=False)`` after ``np.random.seed(seed)``) cost as much again. Here:

* `permuted_ids` makes exactly those draws (``RandomState(seed).permutation(n - 1)[:max_card]``
  is what the legacy ``choice`` computes) without ``choice``'s per-call checks, and
  `cached_permuted_ids` keeps them across runs: they depend on n, the largest cardinality, R
  and the seed only, never on the values, so a rerun with new records reuses them.
* `extreme_counts` computes each unit's simulated Gi* exactly as esda's
  ``_g_local_star_crand`` does (the same (R, cardinality) block of drawn values, the same
  ``block @ weights`` product, the same self term and scaling), the block kept from one unit
  to the next of the same cardinality and only its few changed values replaced (esda gathers
  it afresh for each unit), and keeps only #(sim >= obs) and #(sim <= obs) (ties within 1e-12 x
  max(1, |obs|) counted on both sides, as `geo_lead.hotspots` counts them).

tests/test_gistar_crand.py checks the draws, the simulated values and the counts against esda
itself (bit-identical) on the shipped lattices and on random ones with islands and ties.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

#: `geo_lead.result_cache` kind of `cached_permuted_ids`.
PERMUTATION_CACHE = "gistar_permutations"
#: Relative tolerance within which a simulated value ties the observed one.
TIE_TOLERANCE = 1e-12


def permuted_ids(n: int, max_card: int, permutations: int, seed: int) -> np.ndarray:
    """esda's ``vec_permutations(max_card, n, permutations, seed)`` without numba: row k holds
    the first `max_card` of a permutation of ``range(n - 1)``, the rows drawn in turn from
    ``np.random.RandomState(seed)`` (what ``np.random.seed(seed)`` + ``np.random.choice(n - 1,
    max_card, replace=False)`` draw). Leaves numpy's global random state alone."""
    rs = np.random.RandomState(seed)
    out = np.empty((int(permutations), int(max_card)), dtype=np.int64)
    draw = rs.permutation
    for k in range(int(permutations)):
        out[k] = draw(n - 1)[:max_card]
    return out


def _permutation_key(n: int, max_card: int, permutations: int, seed: int) -> str:
    from geo_lead import result_cache

    return result_cache.digest([PERMUTATION_CACHE, result_cache.code_version(),
                                result_cache.library_versions("numpy"),
                                f"n={int(n)}", f"max_card={int(max_card)}", f"R={int(permutations)}",
                                f"seed={int(seed)}"])


def cached_permuted_ids(n: int, max_card: int, permutations: int, seed: int) -> np.ndarray:
    """`permuted_ids`, kept in `geo_lead.result_cache` (kind ``gistar_permutations``) under n,
    `max_card`, R, seed, the package's code and numpy's version (as the smallest unsigned
    integer type that holds n - 1); a cached array of another shape is drawn again."""
    from geo_lead import result_cache

    key = _permutation_key(n, max_card, permutations, seed)
    hit = result_cache.read_object(PERMUTATION_CACHE, key)
    if isinstance(hit, np.ndarray) and hit.shape == (int(permutations), int(max_card)):
        return hit.astype(np.int64)
    ids = permuted_ids(n, max_card, permutations, seed)
    small = np.min_scalar_type(max(int(n) - 1, 0))
    result_cache.write_object(PERMUTATION_CACHE, key, ids.astype(small))
    return ids


def crand_structure(adjacency: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(self weights, cardinalities, row starts, other weights) as esda's ``crand`` reads them
    from ``w.sparse``: the diagonal, then the rows with the diagonal set to 0 and zeros
    eliminated (on a copy: esda changes ``w.sparse`` in place)."""
    adj = adjacency.tocsr(copy=True)
    self_weights = adj.diagonal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's SparseEfficiencyWarning, as esda silences it
        adj.setdiag(0)
        adj.eliminate_zeros()
    other = adj.data.astype(dtype)
    cardinalities = np.array((adj != 0).sum(1)).flatten()
    starts = np.concatenate([[0], np.cumsum(cardinalities)])
    return self_weights, cardinalities, starts, other


def replicates_esda() -> bool:
    """True when esda's ``crand`` runs without numba (its ``prange`` is ``range``): then its
    draws are numpy's legacy ``RandomState`` ones that `permuted_ids` makes; with numba they
    come from numba's generator and `geo_lead.hotspots` lets esda compute them itself.

    Imports no esda when numba cannot be found (esda's ``crand`` falls back to ``range`` when
    importing numba fails, as it must then); asks esda's ``crand`` itself otherwise."""
    loaded = sys.modules.get("esda.crand")
    if loaded is not None:
        return bool(loaded.prange is range)
    if importlib.util.find_spec("numba") is None:
        return True
    import esda.crand

    return bool(esda.crand.prange is range)


def has_neighbours(adjacency: Any) -> bool:
    """True when some unit of ``w.sparse`` has a neighbour besides itself (what
    `simulated_blocks` needs: esda draws nothing otherwise)."""
    return bool(int(crand_structure(adjacency, np.dtype(np.float64))[1].max(initial=0)) > 0)


def extreme_counts(y: np.ndarray, adjacency: Any, observed: np.ndarray, permutations: int, seed: int,
                   island_weight: float = 0.0, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per unit #(sim >= obs) and #(sim <= obs) over esda's conditional permutations of Gi*.

    Parameters
    ----------
    y, adjacency, permutations, seed, island_weight, ids
        As in `simulated_blocks`.
    observed
        ``G_Local(...).Gs``.

    Returns
    -------
    (up, down)
        int64 arrays; ties within `TIE_TOLERANCE` x max(1, |obs|) count in both.
    """
    observed = np.asarray(observed, dtype=np.float64)
    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(observed))
    low, high = observed - tol, observed + tol
    up = np.zeros(len(observed), dtype=np.int64)
    down = np.zeros(len(observed), dtype=np.int64)
    for units, sims in simulated_blocks(y, adjacency, permutations, seed, island_weight, ids):
        up[units] = (sims >= low[units][:, None]).sum(axis=1)
        down[units] = (sims <= high[units][:, None]).sum(axis=1)
    return up, down


def simulated_blocks(y: np.ndarray, adjacency: Any, permutations: int, seed: int, island_weight: float = 0.0,
                     ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """esda's simulated Gi* (``G_Local(...).rGs``), one unit at a time: (the unit as a 1-array,
    its (1, R) simulated values); the units of one cardinality in ascending order, the block of
    drawn values updated where a draw's position passes the unit.

    Parameters
    ----------
    y
        Values per unit (float64), esda's ``z`` and, summed, its ``scaling``.
    adjacency
        ``G_Local(...).w.sparse``: the binary weights with the self-weights on the diagonal.
    permutations, seed
        R and the seed of esda's ``crand``.
    island_weight
        esda's ``island_weight`` (a unit without neighbours simulates ``island_weight`` x one
        drawn value and no self term, as esda does).
    ids
        The draws (`cached_permuted_ids` when None).
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    self_w, card, starts, other = crand_structure(adjacency, y.dtype)
    max_card = int(card.max()) if n else 0
    if max_card == 0:
        raise ValueError("simulated_blocks needs at least one unit with a neighbour")
    if ids is None:
        ids = cached_permuted_ids(n, max_card, permutations, seed)
    scaling = y.sum()
    # Unit i draws from y without y[i]: position p of that array is y[p] below i, y[p + 1] from i on.
    y_next = np.append(y[1:], 0.0)
    for c, units, weights, self_terms in _groups(card, starts, other, self_w, island_weight):
        p = np.ascontiguousarray(ids[:, :c])
        below = y[p].ravel()
        # esda's block for the group's first unit; for each next unit (ascending) only the
        # positions drawn p in [previous unit, this unit) turn from y[p + 1] to y[p].
        block = np.where(p < units[0], y[p], y_next[p])
        flat = block.reshape(-1)
        # sorted by drawn position (a radix sort on the smallest integer type that holds n)
        order = np.argsort(p.astype(np.min_scalar_type(n)), axis=None, kind="stable")
        bounds = np.searchsorted(p.ravel()[order], units)
        weights_i = np.zeros(c + 1, dtype=other.dtype)  # esda's weights_i: self weight, then the others
        for j, i in enumerate(units):
            if j:
                turned = order[bounds[j - 1]:bounds[j]]
                flat[turned] = below[turned]
            weights_i[1:] = weights[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                # esda's _g_local_star_crand: (zrand @ other_weights + self_weight * zi) / scaling
                sims = (block @ weights_i[1:] + self_terms[j] * y[i]) / scaling
            yield units[j:j + 1], sims[None, :]


def _groups(card: np.ndarray, starts: np.ndarray, other: np.ndarray, self_w: np.ndarray,
            island_weight: float) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The units by cardinality c: (c, units, their (u, c) other weights, their self weights);
    islands as esda treats them: one drawn value weighted `island_weight`, self weight 0."""
    groups = []
    for c in np.unique(card):
        units = np.flatnonzero(card == c)
        if c == 0:
            weights = np.full((len(units), 1), island_weight, dtype=other.dtype)
            groups.append((1, units, weights, np.zeros(len(units), dtype=other.dtype)))
            continue
        weights = other[starts[units][:, None] + np.arange(c)[None, :]]
        groups.append((int(c), units, np.ascontiguousarray(weights), self_w[units].astype(other.dtype)))
    return groups
