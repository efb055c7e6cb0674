"""Which records the analysis stages read: the flagged ones; every all-record fact is counted in the store.

Every statistic of score, hotspots, site, the report's figures and the year-by-year tables
uses only the records its indicator flags (``lead_eligible`` by default: about 7% of them).
Of the other records they use counts and spans, which the store computes with GROUP BY:

* how many there are (the ``records_in`` / ``not_flagged`` accounting of hotspots and site:
  `count_left_out`);
* the division most of each neighborhood's records name (the First Division derived from
  records: `geo_lead.store.Store.division_counts`);
* the years that hold data and each year's report-date spans per file (`geo_lead.by_year`:
  `Store.occurred_year_counts`, `Store.report_spans_by_year`);
* the report's tallies by file, match type, flag and unmatched reason
  (`geo_lead.report_tallies`).

Three facts would need the other records' rows, so without them every record is read, as
before: the time covered when the store holds no sampling declarations (then it is the
records' own file spans, `geo_lead.frames.coverage_of`), the study area when no First Division
file exists (then it comes from every record's division, `hotspots.first_division_names`), and
a store where no flagged record has a point (the stages then fail with the messages a full
read gives). `flagged_read_is_exact` tells; `read_analysis_records` reads accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from geo_lead import settings
from geo_lead.frames import Frames, load_frames
from geo_lead.store import FLAG_COLUMNS, Store


def flagged_read_is_exact(store: Store, indicator: str, sampling: Frames | None = None) -> bool:
    """True when reading only the records `indicator` flags gives every analysis stage what a
    read of all records gives (see the module notes).

    Parameters
    ----------
    store
        An open store with a ``records`` table.
    indicator
        The flag column the analysis counts.
    sampling
        The store's declarations (`geo_lead.frames.load_frames`), when already read.
    """
    if indicator not in FLAG_COLUMNS or indicator not in store.columns("records"):
        return False
    if not settings.FIRST_DIVISION_FILE.exists():
        return False
    return bool((load_frames(store) if sampling is None else sampling).files)


def has_flagged_point(records: pd.DataFrame, indicator: str) -> bool:
    """True when some record of `records` that `indicator` flags has both coordinates."""
    if indicator not in records or not {"lon", "lat"} <= set(records.columns):
        return False
    flag = records[indicator].fillna(False).astype(bool)
    lon = pd.to_numeric(records["lon"], errors="coerce")
    lat = pd.to_numeric(records["lat"], errors="coerce")
    return bool((flag & lon.notna() & lat.notna()).any())


def read_analysis_records(store: Store, columns: Sequence[str], indicator: str,
                          sampling: Frames | None = None, require_point: bool = True) -> pd.DataFrame:
    """`columns` of the records the analysis of `indicator` reads (`Store.read_records` dtypes,
    fid order): only the flagged ones when `flagged_read_is_exact` and (with `require_point`,
    for the stages that need points: hotspots, site) one of them has a point, else every
    record. `left_out` says how many were not read."""
    if flagged_read_is_exact(store, indicator, sampling):
        frame = store.flagged_records(columns, indicator)
        if not require_point or has_flagged_point(frame, indicator):
            return frame
    return store.read_records(columns)


def read_analysis_points(store: Store, columns: Sequence[str], indicator: str) -> Any:
    """`columns` (+ ``lon``, ``lat`` and the weights' columns) of the records
    `read_analysis_records` reads, as EPSG:4326 points with their frame ``weight`` (the frame
    `geo_lead.spatial_join.records_gdf` gives for every record). A flagged read is kept only
    when every stored date is ISO text (`Store.odd_record_dates`), so that the store's date
    aggregates equal pandas on the records left out."""
    from geo_lead.frames import WEIGHT_COLUMNS, attach_weights
    from geo_lead.spatial_join import points_from_lonlat

    have = set(store.columns("records"))
    cols = [c for c in dict.fromkeys([*columns, "lon", "lat", *WEIGHT_COLUMNS]) if c in have]
    frame = read_analysis_records(store, cols, indicator)
    if len(frame) < store.count("records") and store.odd_record_dates():
        frame = store.read_records(cols)
    return points_from_lonlat(attach_weights(store, frame))


def reusable_points(store: Store, records: pd.DataFrame | None, indicator: str,
                    columns: Sequence[str]) -> pd.DataFrame | None:
    """`records`, a read already made (`geo_lead.pipeline.analysis_records`: points with frame
    weights), as a shallow copy when `read_analysis_points` would read the same rows here;
    else None (the caller reads).

    That is when `records` is a flagged read — exactly the `Store.count_flagged` records `indicator`
    flags, fewer than the store holds — every stored date is ISO text (`Store.odd_record_dates`
    is 0: else `read_analysis_points` reads every record) and it carries each of `columns` that
    the store has, a ``geometry`` and a ``weight``. Its dates may be parsed
    (`pipeline.parse_iso_columns`: every later parse gives what it gave on the text). The copy
    keeps the caller's frame as it is when a stage sets columns on its own.
    """
    if records is None or indicator not in records or not {"geometry", "weight"} <= set(records.columns):
        return None
    have = set(store.columns("records"))
    if any(c in have and c not in records for c in columns):
        return None
    n = len(records)
    if n >= store.count("records") or n != store.count_flagged(indicator):
        return None
    if not bool(records[indicator].fillna(False).astype(bool).all()) or store.odd_record_dates():
        return None
    return records.copy(deep=False)


def left_out(store: Store, records: pd.DataFrame) -> int:
    """Stored records `records` does not hold: the unflagged records a flagged read left out
    (0 after a read of every record)."""
    return max(store.count("records") - len(records), 0)


def count_left_out(result: dict[str, Any], n: int) -> dict[str, Any]:
    """`result` (a hotspots or site result) whose ``records`` accounting also counts `n`
    unflagged records its input did not hold.

    The accounting (`geo_lead.hotspots.indicator_points`) is records_in = not_flagged +
    not_geocoded + kept; the records left out are all unflagged, so both records_in and
    not_flagged grow by `n` and the equation still holds. Returns a new dict (same key order).
    """
    if n < 0:
        raise ValueError(f"records left out: {n} < 0")
    if not n:
        return result
    acc = dict(result["records"])
    acc["records_in"] = int(acc["records_in"]) + n
    acc["not_flagged"] = int(acc["not_flagged"]) + n
    return {**result, "records": acc}
