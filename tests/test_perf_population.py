"""Population interpolation is done once per process per pair of inputs (issue 19, item 4).

Oracle: the uncached overlay (`population._interpolate`) on the same and on changed inputs.
"""

from __future__ import annotations

import pandas as pd

from geo_lead import population
from geo_lead.boundaries import load_neighborhoods


def test_interpolation_is_reused_only_for_the_same_inputs() -> None:
    nh = load_neighborhoods()
    tracts = population.load_tracts().to_crs(nh.crs)
    population._MEMO.clear()
    first = population.interpolate_population(tracts, nh)
    first.population.iloc[0] = -1.0  # a caller changing its copy does not change the cache
    again = population.interpolate_population(tracts, nh)
    oracle = population._interpolate(tracts, nh, population.POPULATION_COLUMN)
    pd.testing.assert_series_equal(again.population, oracle.population)
    assert again.tracts_total == oracle.tracts_total
    doubled = tracts.assign(**{population.POPULATION_COLUMN: tracts[population.POPULATION_COLUMN] * 2})
    changed = population.interpolate_population(doubled, nh)
    pd.testing.assert_series_equal(changed.population, oracle.population * 2, rtol=1e-9)
