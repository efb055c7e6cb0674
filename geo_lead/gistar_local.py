"""Gi* (``esda.G_Local(y, w, transform="B", star=True)``) from binary neighbour lists, in numpy.

esda's Gi* reads of its weights only the sparse matrix it builds from them: the neighbour
pairs, binary (transform ``B`` sets every weight to 1), with a self-weight of 1 on the
diagonal (``star=True`` fills it when the diagonal is empty). `BinaryWeights` holds the
neighbour lists a libpysal ``W`` holds and builds that matrix (`BinaryWeights.star_sparse`)
with scipy.sparse alone; `g_local_star` computes ``G_Local``'s ``Gs`` and ``Zs`` from it with
``G_Local.calc``'s expressions, in its order, and `p_norm` its ``p_norm``
(``scipy.stats.norm.sf(|z|)`` is ``scipy.special.ndtr(-|z|)``); `distance_band` finds the
pairs ``libpysal.weights.DistanceBand(binary=True)`` finds. So a Gi* whose weights are known
needs neither libpysal nor esda (nor scikit-learn, which libpysal imports), ~2.5 s of imports.

tests/test_gistar_local.py checks every array against esda and libpysal themselves
(bit-identical) on the shipped neighborhoods, the First Division grid and random lattices
with islands, ties and zeros.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np


class BinaryWeights:
    """Binary spatial weights: each unit's neighbours, units in `id_order`.

    What `geo_lead.hotspots.gistar` reads of a libpysal ``W`` (``id_order``, ``neighbors``,
    ``weights``, ``n``, ``sparse``), without libpysal. A unit is never its own neighbour
    (esda's Gi* adds the self-weight); a neighbour is listed once.

    Raises
    ------
    ValueError
        When a neighbour is not a unit, is the unit itself or is listed twice.
    """

    def __init__(self, neighbors: Mapping[Hashable, Sequence[Hashable]], id_order: Sequence[Hashable]) -> None:
        self.id_order = list(id_order)
        self.neighbors = {i: list(neighbors.get(i, ())) for i in self.id_order}
        position = {i: k for k, i in enumerate(self.id_order)}
        if len(position) != len(self.id_order):
            raise ValueError("BinaryWeights: id_order names a unit twice")
        cols, rows = [], []
        for k, i in enumerate(self.id_order):
            js = self.neighbors[i]
            try:
                pos = [position[j] for j in js]
            except KeyError as err:
                raise ValueError(f"BinaryWeights: unit {i!r} has a neighbour {err.args[0]!r} that is not a unit") from None
            if k in pos or len(set(pos)) != len(pos):
                raise ValueError(f"BinaryWeights: unit {i!r} lists itself or a neighbour twice: {js}")
            cols.extend(pos)
            rows.extend([k] * len(pos))
        self._rows = np.asarray(rows, dtype=np.int64)
        self._cols = np.asarray(cols, dtype=np.int64)

    @property
    def n(self) -> int:
        """Number of units."""
        return len(self.id_order)

    @property
    def weights(self) -> dict[Hashable, list[float]]:
        """1.0 per neighbour (libpysal's ``W.weights`` layout)."""
        return {i: [1.0] * len(js) for i, js in self.neighbors.items()}

    @functools.cached_property
    def sparse(self) -> Any:
        """The (n, n) float64 CSR matrix libpysal's ``W.sparse`` is: ``csr_matrix((data, (row,
        col)))`` of the pairs, so with sorted indices, whatever the neighbours' order."""
        return _csr(self._rows, self._cols, self.n)

    @functools.cached_property
    def star_sparse(self) -> Any:
        """``G_Local(y, w, transform="B", star=True).w.sparse``: `sparse` with 1.0 on the diagonal."""
        units = np.arange(self.n, dtype=np.int64)
        return _csr(np.concatenate([self._rows, units]), np.concatenate([self._cols, units]), self.n)

    @classmethod
    def from_w(cls, w: Any) -> BinaryWeights | None:
        """The neighbour lists of a libpysal ``W`` (or an object with its ``id_order``,
        ``neighbors`` and ``weights``) when esda's Gi* would read them as `star_sparse` does:
        every weight non-zero and finite, no unit its own neighbour, no neighbour twice;
        None otherwise (then esda computes)."""
        if isinstance(w, BinaryWeights):
            return w
        try:
            ids = list(w.id_order)
            neighbors = {i: list(w.neighbors[i]) for i in ids}
            weights = {i: np.asarray(w.weights[i], dtype=float) for i in ids}
        except (AttributeError, KeyError, TypeError):
            return None
        for i in ids:
            if len(weights[i]) != len(neighbors[i]) or not (np.isfinite(weights[i]) & (weights[i] != 0)).all():
                return None
        try:
            return cls(neighbors, ids)
        except ValueError:
            return None

    def to_w(self) -> Any:
        """This as a libpysal ``W`` (for esda, when it computes)."""
        from libpysal.weights import W

        return W(self.neighbors, self.weights, id_order=self.id_order, silence_warnings=True)


def _csr(rows: np.ndarray, cols: np.ndarray, n: int) -> Any:
    from scipy.sparse import csr_matrix

    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def g_local_star(y: np.ndarray, w: BinaryWeights) -> tuple[np.ndarray, np.ndarray]:
    """``(Gs, Zs)`` of ``esda.G_Local(y, w, transform="B", star=True)``, bit for bit.

    ``G_Local.calc``'s expressions with ``remove_self = False`` (``star=True``), in its order,
    on `BinaryWeights.star_sparse`; NaN where esda gives NaN (e.g. every y zero).
    """
    y = np.asarray(y).flatten()
    adjacency = w.star_sparse
    remove_self = False
    n = w.n - remove_self
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (adjacency @ y) / (y.sum() - y * remove_self)
        empirical_mean = (y.sum() - y * remove_self) / n
        mean_of_squares = ((y**2).sum() - (y**2) * remove_self) / n
        empirical_variance = mean_of_squares - empirical_mean**2
        cardinality = np.asarray(adjacency.sum(axis=1)).squeeze()
        expected_value = cardinality / n
        expected_variance = cardinality * (n - cardinality)
        expected_variance /= n - 1
        expected_variance *= 1 / n**2
        expected_variance *= empirical_variance / (empirical_mean**2)
        z_scores = (statistic - expected_value) / np.sqrt(expected_variance)
    return np.asarray(statistic), np.asarray(z_scores)


def p_norm(z: np.ndarray) -> np.ndarray:
    """``G_Local(...).p_norm`` = ``scipy.stats.norm.sf(|z|)``, which is ``ndtr(-|z|)`` (NaN
    stays NaN), without importing scipy.stats."""
    from scipy.special import ndtr

    return np.asarray(ndtr(-np.abs(np.asarray(z, dtype=float))))


def distance_band(centres: np.ndarray, band: float) -> BinaryWeights:
    """``libpysal.weights.DistanceBand(centres, threshold=band, binary=True)``'s neighbours:
    the pairs of distinct points at a Euclidean distance of at most `band` and more than 0
    (libpysal drops coincident points' zero distances), units ``0..n-1``, neighbours ascending.

    Candidates are the points in the 3 x 3 squares of side `band` around each point's square
    (a hash join, memory linear in the pairs), then the distance test on the coordinates as
    given: dx*dx + dy*dy <= band*band, as scipy's KD-tree tests a Euclidean distance bound.
    """
    xy = np.asarray(centres, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"distance_band needs (n, 2) points, got {xy.shape}")
    n = len(xy)
    band = float(band)
    if n == 0 or not band > 0:
        return BinaryWeights({i: [] for i in range(n)}, range(n))
    cell = np.floor((xy - xy.min(axis=0)) / band).astype(np.int64)
    span = int(cell[:, 1].max()) + 3
    key = (cell[:, 0] + 1) * span + (cell[:, 1] + 1)  # unique per square, room for the -1 neighbours
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    pairs_i, pairs_j = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            want = key + dx * span + dy
            lo, hi = np.searchsorted(sorted_key, want, "left"), np.searchsorted(sorted_key, want, "right")
            size = hi - lo
            i = np.repeat(np.arange(n), size)
            offsets = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
            j = order[np.repeat(lo, size) + offsets]
            pairs_i.append(i)
            pairs_j.append(j)
    i, j = np.concatenate(pairs_i), np.concatenate(pairs_j)
    d = xy[i] - xy[j]
    d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    keep = (d2 <= band * band) & (d2 > 0)
    i, j = i[keep], j[keep]
    by = np.lexsort((j, i))
    i, j = i[by], j[by]
    starts = np.searchsorted(i, np.arange(n + 1))
    return BinaryWeights({k: j[starts[k]:starts[k + 1]].tolist() for k in range(n)}, range(n))
