"""The comparison area's nearest-neighbour matching (`siting.nearest_pairs`, numpy) against
scikit-learn's `NearestNeighbors` (the implementation it replaced) as the oracle: the same
units and balance on the real LOJIC units and their queen adjacency, on random features, and
on features with exact ties."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from geo_lead import siting
from geo_lead.boundaries import load_neighborhoods
from geo_lead.zones_milp import queen_adjacency

PILOT = ["PORTLAND", "RUSSELL"]


def _sklearn_area(features: pd.DataFrame, pilot: Sequence[str],
                  adjacency: dict[str, set[str]]) -> tuple[list[str], list[dict[str, float]]]:
    """The matching as it was written with scikit-learn (the oracle)."""
    from sklearn.neighbors import NearestNeighbors

    pilot = list(pilot)
    touching = set().union(*(adjacency.get(p, set()) for p in pilot))
    pool = [u for u in features.index if u not in pilot and u not in touching]
    z = (features - features.mean()) / features.std(ddof=0).replace(0, 1.0)
    nn = NearestNeighbors(n_neighbors=min(len(pool), len(pilot) + 5)).fit(z.loc[pool].to_numpy())
    dist, idx = nn.kneighbors(z.loc[pilot].to_numpy())
    pairs = sorted((d, p_i, pool[j]) for p_i, (drow, irow) in enumerate(zip(dist, idx, strict=True))
                   for d, j in zip(drow, irow, strict=True))
    chosen: list[str] = []
    matched: set[int] = set()
    for _d, p_i, cand in pairs:
        if len(chosen) >= len(pilot):
            break
        if p_i in matched or cand in chosen:
            continue
        matched.add(p_i)
        chosen.append(cand)
    balance = []
    for col in features.columns:
        a, b = features.loc[pilot, col], features.loc[chosen, col]
        pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
        balance.append({"feature": col, "pilot_mean": float(a.mean()), "comparison_mean": float(b.mean()),
                        "pool_mean": float(features.loc[pool, col].mean()),
                        "std_mean_diff": float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0})
    return sorted(chosen), balance


@pytest.fixture(scope="module")
def units() -> tuple[list[str], dict[str, set[str]]]:
    nbhd = load_neighborhoods()
    named = nbhd[nbhd["is_named"].astype(bool)]
    return named["NH_NAME"].tolist(), queen_adjacency(named)


def _features(names: list[str], rng: np.random.Generator, integer: bool) -> pd.DataFrame:
    n = len(names)
    if integer:  # few distinct values: many units at exactly the same distance
        cols = {c: rng.integers(0, 3, n).astype(float) for c in ("density_per_sqmi", "eb_rate_per_1000", "population")}
    else:
        cols = {"density_per_sqmi": rng.lognormal(3, 1, n), "eb_rate_per_1000": rng.gamma(2, 3, n),
                "population": rng.integers(200, 20000, n).astype(float)}
    return pd.DataFrame(cols, index=names)


@pytest.mark.parametrize("seed", range(40))
def test_same_units_and_balance_as_sklearn_on_random_features(
        units: tuple[list[str], dict[str, set[str]]], seed: int) -> None:
    names, adjacency = units
    feats = _features(names, np.random.default_rng(seed), integer=False)
    assert siting._comparison_area(feats, PILOT, adjacency) == _sklearn_area(feats, PILOT, adjacency)


@pytest.mark.parametrize("seed", range(40))
def test_same_units_as_sklearn_with_exact_ties(units: tuple[list[str], dict[str, set[str]]], seed: int) -> None:
    """Ties are decided by unit name among the units at the same distance; the cut-off at
    ``len(pilot) + 5`` neighbours never reaches the matched unit, so both agree."""
    names, adjacency = units
    feats = _features(names, np.random.default_rng(1000 + seed), integer=True)
    assert siting._comparison_area(feats, PILOT, adjacency) == _sklearn_area(feats, PILOT, adjacency)


def test_distances_equal_a_kd_tree_query_bit_for_bit() -> None:
    from sklearn.neighbors import KDTree

    rng = np.random.default_rng(7)
    pool, pilot = rng.normal(size=(88, 3)), rng.normal(size=(2, 3))
    dist, idx = siting.nearest_pairs(pool, pilot, 7)
    tree_dist, tree_idx = KDTree(pool).query(pilot, k=7)
    assert np.array_equal(dist, tree_dist) and np.array_equal(idx, tree_idx)
    same, _ = siting.nearest_pairs(pool, pool[:3], 1)
    assert np.array_equal(same[:, 0], np.zeros(3))


def test_nearest_pairs_rejects_impossible_input() -> None:
    with pytest.raises(ValueError, match="k=0"):
        siting.nearest_pairs(np.zeros((3, 2)), np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="column counts"):
        siting.nearest_pairs(np.zeros((3, 2)), np.zeros((1, 3)), 1)


def test_the_matching_imports_no_sklearn() -> None:
    import subprocess
    import sys

    code = ("import sys, pandas as pd\n"
            "from geo_lead import siting\n"
            "f = pd.DataFrame({'a': [1.0, 2.0, 3.0, 4.0]}, index=list('PQRS'))\n"
            "siting._comparison_area(f, ['P'], {'P': {'Q'}})\n"
            "print('sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("window", [None, "2016-01-01:2016-12-31"])
def test_comparison_from_prepares_points_equals_the_records(window: str | None) -> None:
    """`prepare` keeps the window's points and shares (`WindowPoints`); the comparison made from
    them equals the one made from the records again, and so does `unit_weights`."""
    import dataclasses

    from test_siting import FIRST_DIVISION, synthetic_records

    nbhd = load_neighborhoods()
    records = synthetic_records(nbhd, {"RUSSELL": 60, "PORTLAND": 50, "PHOENIX HILL": 30}, default=3)
    records["weight"] = np.where(np.arange(len(records)) % 3 == 0, 2.0, 1.0)
    params = siting.SiteParams(replicates=20, k_max=2, window=window)
    inp = siting.prepare(records, nbhd, FIRST_DIVISION, PILOT, "lead_eligible", params)
    assert inp.window_points is not None
    again = siting.comparison(dataclasses.replace(inp, window_points=None), records, nbhd, params)
    assert siting.comparison(inp, records, nbhd, params) == again
    pts = inp.window_points.points
    units = sorted(set(pts["neighborhood"]) - {""})
    want = siting.unit_weights(pts, units, params.boundary)
    got = inp.window_points.shares.matrix(units)
    assert (want != got).nnz == 0 and want.shape == got.shape
