"""`scoring.record_classes` (counted per distinct part, records with several parts keyed one by
one) against the key-per-record construction it replaced (the oracle): the same class sizes
and contributions, in the same order, for whole, weighted and shared records."""

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
