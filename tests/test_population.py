"""Areal interpolation of tract population: hand-computed cases and conservation on real data."""

from __future__ import annotations

from itertools import pairwise

import geopandas as gpd
import pytest
from shapely.geometry import box

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.errors import CRSMismatchError
from geo_lead.population import interpolate_population, load_tracts

MILE_FT = 5280.0


def _gdf(rows: list[dict], crs: str = settings.CRS_PROJECTED) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, crs=crs)


def test_hand_computed_split_and_conservation() -> None:
    # Tract A (2 sq mi, 100 people) and tract B (2 sq mi, 50 people), side by side.
    tracts = _gdf([{"TOTPOP": 100.0, "geometry": box(0, 0, 2 * MILE_FT, MILE_FT)},
                   {"TOTPOP": 50.0, "geometry": box(2 * MILE_FT, 0, 4 * MILE_FT, MILE_FT)}])
    # N1 covers half of A; N2 the other half of A and half of B; the rest of B is uncovered.
    nh = _gdf([{"NH_NAME": "N1", "geometry": box(0, 0, MILE_FT, MILE_FT)},
               {"NH_NAME": "N2", "geometry": box(MILE_FT, 0, 3 * MILE_FT, MILE_FT)}])
    res = interpolate_population(tracts, nh)
    assert res.population.tolist() == pytest.approx([50.0, 75.0])
    assert res.unallocated == pytest.approx(25.0)
    assert res.tracts_total == 150.0
    assert res.population.sum() + res.unallocated == pytest.approx(res.tracts_total)


def test_result_aligned_to_neighborhood_index() -> None:
    tracts = _gdf([{"TOTPOP": 10.0, "geometry": box(0, 0, 10, 10)}])
    nh = _gdf([{"NH_NAME": "B", "geometry": box(5, 0, 10, 10)},
               {"NH_NAME": "A", "geometry": box(0, 0, 5, 10)}]).set_index(__import__("pandas").Index([7, 3]))
    res = interpolate_population(tracts, nh)
    assert list(res.population.index) == [7, 3]
    assert res.population.tolist() == pytest.approx([5.0, 5.0])


def test_crs_mismatch_names_inputs() -> None:
    tracts = _gdf([{"TOTPOP": 1.0, "geometry": box(0, 0, 1, 1)}])
    nh = _gdf([{"NH_NAME": "A", "geometry": box(-85.8, 38.2, -85.7, 38.3)}], crs=settings.CRS_STORE)
    with pytest.raises(CRSMismatchError, match=r"tracts=.*neighborhoods="):
        interpolate_population(tracts, nh)


def test_real_tracts_onto_lojic_neighborhoods_conserve_total() -> None:
    tracts = load_tracts()
    nh = load_neighborhoods()
    res = interpolate_population(tracts, nh)
    assert res.tracts_total == 782_955  # ../shared/data/README.md
    assert res.population.sum() + res.unallocated == pytest.approx(res.tracts_total, rel=1e-9)
    assert (res.population >= 0).all()
    # The pre-merger city holds a minority of the county's residents, but a large one.
    assert 0.2 * res.tracts_total < res.population.sum() < 0.6 * res.tracts_total
    pilot = res.population[nh["NH_NAME"].isin(settings.PILOT_NEIGHBORHOODS).to_numpy()]
    assert (pilot > 1_000).all()


def test_conservation_property_random_grids() -> None:
    """Random tract grids and random neighborhood strips: population in = allocated + unallocated."""
    from hypothesis import given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    @hsettings(max_examples=25, deadline=None)
    @given(pops=st.lists(st.integers(0, 10_000), min_size=4, max_size=4),
           cuts=st.lists(st.floats(0.05, 3.95), min_size=1, max_size=4, unique=True))
    def check(pops: list[int], cuts: list[float]) -> None:
        # a 2 x 2 grid of 1 x 1 mile tracts; neighborhoods are vertical strips between cuts
        tracts = _gdf([{"TOTPOP": float(p), "geometry": box(i % 2 * MILE_FT, i // 2 * MILE_FT,
                                                           (i % 2 + 1) * MILE_FT, (i // 2 + 1) * MILE_FT)}
                       for i, p in enumerate(pops)])
        xs = sorted(cuts)
        strips = [box(a * MILE_FT / 2, 0, b * MILE_FT / 2, 2 * MILE_FT) for a, b in pairwise(xs)]
        strips = strips or [box(0, 0, xs[0] * MILE_FT / 2, 2 * MILE_FT)]
        nh = _gdf([{"NH_NAME": f"S{i}", "geometry": g} for i, g in enumerate(strips)])
        res = interpolate_population(tracts, nh)
        assert res.population.sum() + res.unallocated == pytest.approx(sum(pops), abs=1e-6)
        assert (res.population >= -1e-9).all()
        covered = sum(g.area for g in strips) / (4 * MILE_FT**2)
        if len(set(pops)) == 1:  # uniform density: population follows area exactly
            assert res.population.sum() == pytest.approx(pops[0] * 4 * covered, abs=1e-6)

    check()
