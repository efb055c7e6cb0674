"""`scoring.record_classes` (counted per distinct part, records with several parts keyed one by
one) against the key-per-record construction it replaced (the oracle): the same class sizes
and contributions, in the same order, for whole, weighted and shared records; and
`scoring.boundary_sensitivity` (numpy selections per unit) against its pandas form: the same
best and worst ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geo_lead import allocation
from geo_lead.scoring import record_classes


def _oracle(records: pd.DataFrame, shares: pd.DataFrame, n_units: int,
            unit_index: pd.Series, in_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ix = shares["unit"].map(unit_index)
    keep = ix.notna().to_numpy() & in_area[ix.fillna(0).astype(int).to_numpy()]
    sh = shares[keep]
    unit = ix[keep].astype(int).to_numpy()
    value = allocation.record_weight(records).reindex(sh["row"]).to_numpy(float) * sh["share"].to_numpy(float)
    parts = pd.DataFrame({"row": sh["row"].to_numpy(), "unit": unit, "value": np.round(value, 12)})
    parts = parts.sort_values(["row", "unit"], kind="stable")
    key = (parts["unit"].astype(str) + ":" + parts["value"].map(repr).astype(str)).groupby(
        parts["row"].to_numpy()).agg("|".join)
    simple = {f"{i}:{1.0!r}": i for i in range(n_units)}
    sizes_by_key = key.value_counts()
    extra = sorted(k for k in sizes_by_key.index if k not in simple)
    sizes = np.zeros(n_units + len(extra))
    contrib = np.zeros((n_units + len(extra), n_units))
    contrib[np.arange(n_units), np.arange(n_units)] = 1.0
    for k, i in simple.items():
        sizes[i] = sizes_by_key.get(k, 0)
    for j, k in enumerate(extra, start=n_units):
        sizes[j] = sizes_by_key[k]
        for item in k.split("|"):
            u, v = item.split(":")
            contrib[j, int(u)] += float(v)
    return sizes, contrib


@pytest.mark.parametrize("seed", range(8))
def test_same_classes_as_one_key_per_record(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = [f"U{i}" for i in range(12)]
    n = 3000
    nh = rng.choice([*units, "", "OUTSIDE"], n)
    shared = rng.random(n) < 0.15
    bu = [allocation.SEPARATOR.join(sorted(rng.choice(units, rng.integers(1, 4), replace=False))) if s and h else ""
          for s, h in zip(shared, nh, strict=True)]
    weight = rng.choice([1.0, 2.0, 1 / 0.3, 4.0], n) if seed % 2 else np.ones(n)
    records = pd.DataFrame({"neighborhood": nh, "boundary_units": bu, "weight": weight},
                           index=rng.permutation(n) + 100)
    shares = allocation.unit_shares(records, "split" if seed < 6 else "first")
    pos = pd.Series(np.arange(len(units)), index=units)
    in_area = rng.random(len(units)) < 0.8
    sizes, contrib = record_classes(records, shares, len(units), pos, in_area)
    want_sizes, want_contrib = _oracle(records, shares, len(units), pos, in_area)
    assert np.array_equal(sizes, want_sizes) and np.array_equal(contrib, want_contrib)
    assert sizes.sum() > 0


def _old_boundary_sensitivity(records: pd.DataFrame, shares: pd.DataFrame, unit_index: pd.Series,
                              counts: np.ndarray, ranked: np.ndarray, area_sqmi: np.ndarray,
                              pop: np.ndarray, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """`boundary_sensitivity` as it was written with a pandas selection per unit (the oracle)."""
    from geo_lead.scoring import _metrics, composite_score, descending_ranks

    n = len(counts)
    best, worst = np.full(n, np.nan), np.full(n, np.nan)
    sh = shares[shares["shared"]].copy()
    sh["ix"] = sh["unit"].map(unit_index)
    sh = sh[sh["ix"].notna()]
    sh["ix"] = sh["ix"].astype(int)
    sh["w"] = allocation.record_weight(records).reindex(sh["row"]).to_numpy(float)
    sh["k"] = sh.groupby("row")["unit"].transform("size")

    def rank_of(c: np.ndarray, u: int) -> int:
        m = _metrics(c, ranked, area_sqmi, pop)
        sc = composite_score({k: v[ranked] for k, v in m.items()}, weights)
        return int(descending_ranks(sc)[int(np.flatnonzero(ranked).tolist().index(u))])

    by_unit = dict(tuple(sh.groupby("ix")["row"]))
    for u in np.flatnonzero(ranked).tolist():
        rows = by_unit.get(u)
        if rows is None or len(rows) == 0:
            best[u] = worst[u] = rank_of(counts, u)
            continue
        mine = sh[sh["row"].isin(set(rows))]
        delta = np.bincount(mine["ix"], weights=-(mine["w"] * mine["share"]), minlength=n)
        best_c = counts + delta
        best_c[u] += mine.drop_duplicates("row")["w"].sum()
        own = mine[mine["ix"] == u]
        others = mine[mine["ix"] != u]
        extra = others["w"] * own.set_index("row")["share"].reindex(others["row"]).to_numpy() / (others["k"] - 1)
        worst_c = counts.copy()
        worst_c[u] -= float((own["w"] * own["share"]).sum())
        worst_c += np.bincount(others["ix"], weights=extra.to_numpy(float), minlength=n)
        best[u] = rank_of(np.maximum(best_c, 0.0), u)
        worst[u] = rank_of(np.maximum(worst_c, 0.0), u)
    return best, worst


@pytest.mark.parametrize("seed", range(8))
def test_boundary_sensitivity_equals_the_pandas_selection(seed: int) -> None:
    from geo_lead.scoring import boundary_sensitivity

    rng = np.random.default_rng(100 + seed)
    units = [f"U{i}" for i in range(15)]
    n = 2500
    nh = rng.choice(units, n)
    shared = rng.random(n) < 0.3
    bu = [allocation.SEPARATOR.join(sorted(rng.choice(units[:8], rng.integers(2, 4), replace=False))) if s else ""
          for s in shared]
    records = pd.DataFrame({"neighborhood": nh, "boundary_units": bu,
                            "weight": rng.choice([1.0, 2.0, 1 / 0.3], n)}, index=rng.permutation(n))
    shares = allocation.unit_shares(records, "split")
    pos = pd.Series(np.arange(len(units)), index=units)
    counts = allocation.unit_counts(records, shares, units)
    ranked = rng.random(len(units)) < 0.7
    area = rng.uniform(0.5, 3.0, len(units))
    pop = rng.integers(500, 20000, len(units)).astype(float)
    w = {"density_per_sqmi": 0.5, "eb_rate_per_1000": 0.3, "count": 0.2}
    got = boundary_sensitivity(records, shares, pos, counts, ranked, area, pop, w)
    want = _old_boundary_sensitivity(records, shares, pos, counts, ranked, area, pop, w)
    assert np.array_equal(got[0], want[0], equal_nan=True) and np.array_equal(got[1], want[1], equal_nan=True)


@pytest.mark.parametrize("dtype", ["object", "str"])
def test_unit_positions_are_series_map(dtype: str) -> None:
    from geo_lead.scoring import unit_positions

    rng = np.random.default_rng(4)
    names = [f"U{i}" for i in range(9)]
    index = pd.Series(rng.permutation(9), index=names)
    units = pd.Series(rng.choice([*names, "OUTSIDE", "", "u1"], 500), dtype=dtype)
    units.iloc[3] = None
    want = units.map(index).to_numpy(float)
    np.testing.assert_array_equal(unit_positions(units, index), want)
    assert np.isnan(want).any() and (~np.isnan(want)).any()
    empty = pd.Series([], dtype=int, index=pd.Index([], dtype=object))
    np.testing.assert_array_equal(unit_positions(units, empty), units.map(empty).to_numpy(float))
    with pytest.raises(pd.errors.InvalidIndexError):
        units.map(pd.Series([0, 1], index=["U1", "U1"]))
    with pytest.raises(pd.errors.InvalidIndexError):
        unit_positions(units, pd.Series([0, 1], index=["U1", "U1"]))
