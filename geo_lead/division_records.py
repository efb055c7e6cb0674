"""The First Division derived from the store's records (records-majority rule).

Each neighborhood takes the LMPD division most of its geocoded records name
(`geo_lead.boundaries.first_division_members`); before geocoding, LMPD's description decides.
This module sits above the join: it reads the store's joined ``neighborhood`` when that is
the join of these very neighborhoods (`geo_lead.store.Store.join_is_current`), else joins the
points in memory (`geo_lead.spatial_join.join_records`). `geo_lead.boundaries` stays the loader
and builder of the boundary files and never reads the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geo_lead import settings
from geo_lead.boundaries import (
    METHOD_FALLBACK,
    METHOD_OFFICIAL,
    METHOD_RECORDS,
    build_first_division,
    first_division_members,
    load_first_division,
)
from geo_lead.spatial_join import (
    META_JOIN_HASH,
    join_records,
    neighborhoods_fingerprint,
    points_from_lonlat,
)
from geo_lead.store import Store


def derive_first_division(store: Store, neighborhoods: gpd.GeoDataFrame,
                          records: pd.DataFrame | None = None) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """First Division from a store's joined records (or LMPD's description before geocoding).

    `records`: every stored record's ``neighborhood`` and ``division``, already read; used
    when they hold the current join of every stored record (`_given_join_current`), else
    ignored (e.g. the flagged records `geo_lead.pipeline.analysis_records` reads). With the
    store's join current the pairs are counted in the store (`Store.division_counts`), else
    the points are joined in memory.

    Returns the feature and the per-unit membership table (`first_division_members`).
    """
    cols = set(store.columns("records"))
    given = records
    records = counts = None
    if given is not None and {"lon", "lat", "division"} <= cols and _given_join_current(store, neighborhoods, given):
        # Same values the count below would give, without a scan of the store.
        records = pd.DataFrame({"neighborhood": given["neighborhood"].fillna(""), "division": given["division"]})
    elif {"lon", "lat", "division"} <= cols and _join_current(store, neighborhoods, cols):
        # The store's `neighborhood` column is the join of these very neighborhoods for every
        # record: count its (neighborhood, division) pairs there instead of joining a million
        # points again or reading them (same counts).
        counts = store.division_counts()
    elif {"lon", "lat", "division"} <= cols:
        # Join in memory: the store's `neighborhood` column may be stale or not written yet.
        pts = points_from_lonlat(store.read_records(["lon", "lat", "division"]))
        records = pd.DataFrame(join_records(pts, neighborhoods.to_crs(pts.crs))[["neighborhood", "division"]])
    members = first_division_members(neighborhoods, records, counts=counts)
    method = METHOD_RECORDS if (members["basis"] == "records").any() else METHOD_FALLBACK
    return build_first_division(neighborhoods, members, method), members


def deriver(store: Store) -> Callable[[gpd.GeoDataFrame], tuple[gpd.GeoDataFrame, pd.DataFrame]]:
    """`derive_first_division` of `store` as a function of the neighborhoods
    (`geo_lead.boundaries.rebuild`'s ``derive``)."""
    return lambda neighborhoods: derive_first_division(store, neighborhoods)


def _join_current(store: Store, neighborhoods: gpd.GeoDataFrame, cols: set[str]) -> bool:
    """True when every record's stored ``neighborhood`` comes from joining `neighborhoods`."""
    return "neighborhood" in cols and store.join_is_current(neighborhoods_fingerprint(neighborhoods), META_JOIN_HASH)


def _given_join_current(store: Store, neighborhoods: gpd.GeoDataFrame, records: pd.DataFrame) -> bool:
    """`_join_current` for records already read: every stored record, none unjoined."""
    if not {"neighborhood", "division"} <= set(records.columns):
        return False
    if len(records) != store.count("records"):
        return False
    if store.get_json(META_JOIN_HASH) != neighborhoods_fingerprint(neighborhoods):
        return False
    return not bool(records["neighborhood"].isna().any())


def first_division_for_store(store: Store, neighborhoods: gpd.GeoDataFrame,
                             path: Path | None = None,
                             records: pd.DataFrame | None = None) -> gpd.GeoDataFrame:
    """The First Division to score with: an installed official file (`path`, default
    `settings.FIRST_DIVISION_FILE` read at call time) wins; otherwise it is derived from the
    store's current records (so new data moves it reproducibly).

    `records`: the store's records (``neighborhood``, ``division``) already read, to save a
    read; see `derive_first_division`."""
    path = settings.FIRST_DIVISION_FILE if path is None else path
    if Path(path).exists():
        fd = load_first_division(path)
        if "method" in fd and str(fd["method"].iloc[0]).startswith(METHOD_OFFICIAL):
            return fd
    return derive_first_division(store, neighborhoods, records)[0]
