"""New records written once: geocoded, beat-checked and joined a chunk at a time before their
insert (`geo-lead run`'s ingest; issue 19).

`Enricher` is the `geo_lead.ingest.RecordEnricher` that `pipeline.stage_ingest` hands to
`geo_lead.ingest.ingest_with`: each chunk's new records go through the geocode cache
(`geo_lead.geocode.cache.NewRecordGeocoder`: new addresses geocoded and cached) and the
spatial join's kernel (`geo_lead.spatial_join.join_records`, the stage's `JoinPlan`), and are
inserted with their flags, geocode, ``beat_check``, ``neighborhood`` and ``boundary_units``:
one write per record instead of an INSERT and two UPDATEs of every row (whose rollback
journal held the original of every page of the table).

It acts only on a store with nothing left for the geocode and join stages (no record, or
every record geocoded, checked and joined with the same reference, beats and join plan),
so the store it leaves is the one ingest, geocode and join leave; on any other store it
changes nothing and those stages do all the work as before. The geocode stage reports its
tally with its own (`merge_geocode_counts`); the join stage's counts cover every record.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pandas as pd

from geo_lead import settings
from geo_lead.geocode.cache import NewRecordGeocoder
from geo_lead.geocode.geocoder import Geocoder
from geo_lead.spatial_join import JoinPlan, join_records, points_from_lonlat
from geo_lead.store import Store

log = logging.getLogger(__name__)

#: Rows per chunk of an enriched ingest (`geo_lead.ingest.IngestOptions.chunk_rows`): the
#: join's and the beat check's set-up is paid once per chunk, so chunks as large as the join
#: stage's (`geo_lead.spatial_join.CHUNK_ROWS`).
CHUNK_ROWS = 100_000


class Enricher:
    """Geocode, beat-check and join each chunk of new records before its insert.

    Parameters
    ----------
    tolerance_ft
        The join's boundary tolerance (`geo_lead.spatial_join.join_store`'s).
    geocoder
        Default: `Geocoder()` on the shipped reference, made at the first chunk of new records
        (`geocoder` then hands it to the geocode stage: one index load per run).

    Attributes
    ----------
    active
        None until the first chunk of new records; then whether the store was complete
        (`NewRecordGeocoder.is_complete` and the join current with no record left to join)
        and the records are enriched.
    """

    def __init__(self, tolerance_ft: float | None = None, geocoder: Geocoder | None = None) -> None:
        self.tolerance_ft = tolerance_ft
        self._geocoder = geocoder
        self.active: bool | None = None
        self._geocoding: NewRecordGeocoder | None = None
        self._plan: JoinPlan | None = None
        self._first_fid = 0

    @property
    def geocoder(self) -> Geocoder | None:
        """The geocoder made or given (None when no chunk needed one)."""
        return self._geocoder

    def __call__(self, store: Store, records: pd.DataFrame) -> pd.DataFrame:
        """`records` (new, not yet stored) with the geocode and join columns, when `active`."""
        if self.active is None:
            self.active = self._start(store)
        if not self.active or self._geocoding is None or self._plan is None:
            return records
        geo = self._geocoding(store, records)
        out = records.copy()
        for col in geo.columns.drop("record_id"):
            out[col] = geo[col].to_numpy()
        return _joined(out, self._plan)

    def _start(self, store: Store) -> bool:
        """Decide whether to enrich (the store is complete); load what that needs."""
        self._geocoder = self._geocoder or Geocoder()
        geocoding = NewRecordGeocoder(self._geocoder)
        plan = JoinPlan.make(tolerance_ft=self.tolerance_ft)
        if plan.neighborhoods.crs is not None and plan.neighborhoods.crs != settings.CRS_STORE:
            plan = dataclasses.replace(plan, neighborhoods=plan.neighborhoods.to_crs(settings.CRS_STORE))
        empty = store.is_empty("records")
        if not geocoding.is_complete(store) or not (empty or (plan.is_current(store)
                                                             and not store.unjoined_fids().size)):
            log.info("records ingested without their geocode and neighborhood: the store has "
                     "records the geocode or join stage has yet to do")
            return False
        self._geocoding, self._plan, self._first_fid = geocoding, plan, store.next_record_fid()
        return True

    def finish(self, store: Store) -> None:
        """After the last chunk (inside the ingest's transaction): the RTree brought in step
        and the meta the geocode and join stages record, when records were enriched."""
        if not self.active or self._geocoding is None or self._plan is None:
            return
        store.index_new_points(self._first_fid)
        self._geocoding.finish(store)
        store.ensure_text_columns("records", ("neighborhood", "boundary_units"))
        self._plan.record(store)
        store.ensure_record_indexes()

    def geocode_counts_if_done(self, store: Store) -> dict[str, Any] | None:
        """The geocode stage's counts without running it, when it has nothing left to do
        (`NewRecordGeocoder.counts_if_done`); None: run it (`merge_geocode_counts`)."""
        if not self.active or self._geocoding is None:
            return None
        return self._geocoding.counts_if_done(store)

    def merge_geocode_counts(self, counts: dict[str, Any]) -> dict[str, Any]:
        """`geocode_store`'s `counts` for the records left to it, with the enriched ones added."""
        if self._geocoding is None:
            return counts
        return self._geocoding.tally.merged_into(counts)


def _joined(records: pd.DataFrame, plan: JoinPlan) -> pd.DataFrame:
    """`records` with ``neighborhood`` and ``boundary_units`` as `spatial_join.join_store`
    writes them (same kernel, plan and columns read; the plan's units in the store's CRS)."""
    nh = plan.neighborhoods
    # the columns `JoinPlan.columns` names, from the chunk (the store may not have lon/lat yet)
    cols = [c for c in ("record_id", "lon", "lat", *(("beat",) if plan.beats is not None else ()))
            if c in records.columns]
    joined = join_records(points_from_lonlat(records[cols]), nh, tolerance_ft=plan.tolerance_ft,
                          beats=plan.beats)
    out = records.copy()
    out["neighborhood"] = pd.Series(joined["neighborhood"].to_numpy(object), index=records.index, dtype=object)
    out["boundary_units"] = pd.Series(joined["boundary_units"].to_numpy(object), index=records.index, dtype=object)
    return out
