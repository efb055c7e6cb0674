"""The contiguous-zone MILP against brute force over every connected subset of a lattice."""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import MultiPolygon, box

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.zones_milp import best_zone, contiguous_pairs, queen_adjacency


def lattice() -> gpd.GeoDataFrame:
    """A 4x4 lattice of 1,000 ft squares, an island far away, and a two-part unit.

    The two-part unit ``MULTI`` has one square left of the lattice's row 0 and one square right
    of its row 3, so it links the lattice's opposite corners' neighbours only through itself.
    """
    cells, names = [], []
    for i, j in itertools.product(range(4), range(4)):
        cells.append(box(i * 1000, j * 1000, (i + 1) * 1000, (j + 1) * 1000))
        names.append(f"C{i}{j}")
    cells.append(box(20_000, 20_000, 21_000, 21_000))
    names.append("ISLAND")
    cells.append(MultiPolygon([box(-1000, 0, 0, 1000), box(4000, 3000, 5000, 4000)]))
    names.append("MULTI")
    gdf = gpd.GeoDataFrame({"NH_NAME": names, "NH_CODE": range(len(names)), "is_named": True},
                           geometry=cells, crs=settings.CRS_PROJECTED)
    return gdf.to_crs(settings.CRS_STORE)


def brute_force(weights: dict[str, float], adj: dict[str, set[str]], k: int) -> float:
    def connected(sub: tuple[str, ...]) -> bool:
        seen, stack = {sub[0]}, [sub[0]]
        while stack:
            for nb in adj[stack.pop()]:
                if nb in sub and nb not in seen:
                    seen.add(nb)
                    stack.append(nb)
        return len(seen) == len(sub)

    best = -np.inf
    for sub in itertools.combinations(sorted(adj), k):
        if connected(sub):
            best = max(best, sum(weights[n] for n in sub))
    return float(best)


def test_queen_adjacency_handles_islands_and_multipart() -> None:
    adj = queen_adjacency(lattice())
    assert adj["ISLAND"] == set()
    # part 1 shares an edge with C00 and a corner with C01; part 2 an edge with C33, a corner with C32
    assert adj["MULTI"] == {"C00", "C01", "C32", "C33"}
    assert adj["C11"] == {"C00", "C01", "C02", "C10", "C12", "C20", "C21", "C22"}  # queen: corners too
    assert len(contiguous_pairs(adj)) == sum(len(v) for v in adj.values()) // 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_best_zone_matches_brute_force(seed: int) -> None:
    adj = queen_adjacency(lattice())
    rng = np.random.default_rng(seed)
    weights = {n: float(rng.integers(0, 50)) for n in adj}
    weights["ISLAND"] = 1_000.0  # the heaviest unit, but it cannot join any zone of k >= 2
    for k in range(1, 6):
        names, total = best_zone(weights, adj, k)
        assert len(names) == k
        assert total == pytest.approx(brute_force(weights, adj, k))
        if k >= 2:
            assert "ISLAND" not in names
    assert best_zone(weights, adj, 1)[0] == ["ISLAND"]


def test_multipart_unit_bridges_its_parts() -> None:
    adj = queen_adjacency(lattice())
    weights = {n: 0.0 for n in adj}
    weights["C00"] = weights["C33"] = 10.0
    weights["MULTI"] = 1.0
    names, total = best_zone(weights, adj, 3)
    assert names == ["C00", "C33", "MULTI"] and total == 21.0


def test_no_zone_of_that_size_raises() -> None:
    adj = {"A": {"B"}, "B": {"A"}, "C": set()}
    with pytest.raises(GeoLeadError, match="no connected zone of 3"):
        best_zone({"A": 1, "B": 1, "C": 1}, adj, 3)
    # k out of range is a caller's error (ValueError); GeoLeadError is for what a user can fix
    with pytest.raises(ValueError, match="between 1 and"):
        best_zone({"A": 1}, adj, 4)


@pytest.mark.parametrize("seed", range(6))
def test_enumerated_best_zone_is_the_solvers(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real-valued weights (a unique optimum): `best_zone` enumerates the connected zones and
    gives the zone and total the MILP gives, without running the solver; a tie is left to it."""
    import geo_lead.zones_milp as zm

    adj = queen_adjacency(lattice())
    rng = np.random.default_rng(seed)
    weights = {n: float(rng.gamma(2.0, 10.0)) for n in adj}
    solved = {k: zm._solved_best_zone(weights, adj, k) for k in range(1, 7)}

    def no_solver(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the solver ran")

    monkeypatch.setattr(zm, "_solved_best_zone", no_solver)
    for k, (names, total) in solved.items():
        assert best_zone(weights, adj, k) == (names, total)
    tied = {n: 1.0 for n in adj}
    with pytest.raises(AssertionError, match="the solver ran"):
        best_zone(tied, adj, 2)
    assert zm.unique_best_zone(tied, adj, 2) is None
    monkeypatch.setattr(zm, "ENUMERATE_MAX_ZONES", 3)  # too many zones to enumerate: the solver
    with pytest.raises(AssertionError, match="the solver ran"):
        best_zone(weights, adj, 3)
