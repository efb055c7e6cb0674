"""`scoring.empirical_bayes_rows` (the bootstrap's Empirical Bayes rates, all replicates at
once) equals `scoring.empirical_bayes` row by row, bit for bit; esda stays the oracle of the
latter (tests/test_scoring.py); and `scoring.area_members` kept per geometry in the process."""

from __future__ import annotations

import numpy as np
import pytest

from geo_lead.scoring import empirical_bayes, empirical_bayes_rows


@pytest.mark.parametrize("units", [1, 2, 3, 7, 8, 9, 16, 31, 57, 90, 129, 300])
def test_rows_equal_the_one_unit_function_bit_for_bit(units: int) -> None:
    rng = np.random.default_rng(units)
    pop = rng.integers(1, 40000, units).astype(float)
    events = rng.multinomial(5000, np.full(units, 1 / units), size=500).astype(float) * rng.choice([1.0, 1 / 0.3])
    events[0] = 0.0  # theta 0: phi 0
    events[1] = pop / pop.sum() * 100  # rates all equal: phi clipped to 0
    got = empirical_bayes_rows(events, pop)
    want = np.vstack([empirical_bayes(row, pop) for row in events])
    assert np.array_equal(got, want)


def test_rows_reject_impossible_input() -> None:
    with pytest.raises(ValueError, match="replicates x 2"):
        empirical_bayes_rows(np.zeros((3, 3)), np.ones(2))
    with pytest.raises(ValueError, match="positive population"):
        empirical_bayes_rows(np.zeros((3, 2)), np.array([1.0, 0.0]))
    assert empirical_bayes_rows(np.zeros((4, 0)), np.zeros(0)).shape == (4, 0)


def test_area_members_kept_per_geometry_equal_the_computation() -> None:
    """`area_members` keeps its mask per geometry in the process: a second call gives the same
    mask (a copy), and other geometry computes again."""
    import geopandas as gpd
    import shapely

    from geo_lead import scoring

    units = gpd.GeoDataFrame({"NH_NAME": ["A", "B", "C"]}, geometry=[
        shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(5, 5, 6, 6)], crs=2246).to_crs(4326)
    division = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1.6, 1)], crs=2246).to_crs(4326)
    scoring._AREA_MEMBERS.clear()
    first = scoring.area_members(units, "first-division", division)
    assert first.tolist() == [True, True, False]
    first[:] = False  # the caller's copy
    assert scoring.area_members(units, "first-division", division).tolist() == [True, True, False]
    smaller = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1.4, 1)], crs=2246).to_crs(4326)
    assert scoring.area_members(units, "first-division", smaller).tolist() == [True, False, False]
