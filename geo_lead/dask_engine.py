"""The join/count stage on pandas or on dask-geopandas partitions (``--engine dask``).

Records are joined to neighborhood units in EPSG:2246 and counted per neighborhood, overall
and per indicator flag; the counts feed scoring (densities, rates, smoothing). The same
pure function, `join_partition`, does the work in both engines: pandas calls it once on
the whole table, dask calls it on every partition (``map_partitions``) and sums the
per-partition counts. Because each record's neighborhood depends only on that record, the
two engines give identical counts (tests/test_dask_engine.py checks it on real data).

Beyond one machine
------------------
Nothing here assumes a local process: pass ``scheduler="tcp://host:8786"`` (a
``dask.distributed`` scheduler of a multi-node cluster) and read the records from a
month-partitioned GeoParquet dataset written by ``geo-lead export --what records --format
geoparquet --partition month`` on shared storage (NFS, S3 with ``s3fs``). Each worker reads
its months, joins them against the (small, broadcast) neighborhood layer and returns a
~100-row count table; only those tables travel back. For a statewide or multi-city LEAD
network, concatenate each city's units into one neighborhood layer with a ``city`` prefix in
``NH_NAME`` and the same code runs unchanged.

Join rule
---------
A point belongs to the unit whose polygon contains it or touches it (``intersects``); a
point on a shared edge is given to the first unit in the layer's order, so it is counted
once. Records without coordinates are ``not_geocoded``; points in no unit are ``outside``.
records = joined + outside + not_geocoded. ``join_store`` also writes ``boundary_units``
with the boundary tolerance and beat settling of the pandas join, and the same join meta.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.store import FLAG_COLUMNS, Store

if TYPE_CHECKING:
    import geopandas as gpd

    from geo_lead.spatial_join import JoinPlan

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("pandas", "dask")
UNIT_COLUMN = "NH_NAME"
#: Label of records with coordinates that fall in no unit, and of records with none.
OUTSIDE, NOT_GEOCODED = "(outside every neighborhood)", "(not geocoded)"
COUNT_COLUMNS: tuple[str, ...] = ("records", *FLAG_COLUMNS)


def prepare_units(neighborhoods: Any) -> Any:
    """Neighborhood units in EPSG:4326 (layer order kept) with ``NH_NAME`` and ``area_sqmi``
    (EPSG:2246)."""
    if neighborhoods.crs is None:
        raise GeoLeadError("neighborhood layer has no CRS; expected EPSG:4326.")
    units = neighborhoods[[UNIT_COLUMN, neighborhoods.geometry.name]].to_crs(settings.CRS_STORE)
    units = units.reset_index(drop=True)
    units["area_sqmi"] = units.geometry.to_crs(settings.CRS_PROJECTED).area / settings.SQFT_PER_SQMI
    return units


def join_partition(records: pd.DataFrame, units: Any,
                   flags: Sequence[str] = FLAG_COLUMNS) -> pd.DataFrame:
    """Count one table (or one partition) of records per unit.

    The join itself is `geo_lead.spatial_join.join_records`, unchanged: the pandas path and
    every dask partition run the very same code.

    Parameters
    ----------
    records
        ``lon``, ``lat`` (EPSG:4326, NaN when not geocoded) and the 0/1 `flags` columns.
    units
        The output of `prepare_units`.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit name (plus `OUTSIDE` and `NOT_GEOCODED`): ``records`` and one count
        per flag. Partition results add up to the whole table's.
    """
    joined = _join(records, units)
    unit = np.where(joined["join_status"].to_numpy() == "not_geocoded", NOT_GEOCODED,
                    np.where(joined["join_status"].to_numpy() == "outside", OUTSIDE,
                             joined["neighborhood"].to_numpy()))
    table = pd.DataFrame({"unit": unit.astype(object), "records": 1})
    for flag in flags:
        table[flag] = pd.to_numeric(records[flag], errors="coerce").fillna(0).astype("int64").to_numpy() \
            if flag in records else 0
    return table.groupby("unit", sort=True)[["records", *flags]].sum()


def _join(records: pd.DataFrame, units: gpd.GeoDataFrame, tolerance_ft: float | None = None,
          beats: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """`spatial_join.join_records` on lon/lat points (and ``beat`` when present) against the
    units (EPSG:4326)."""
    from geo_lead.spatial_join import join_records, points_from_lonlat

    cols = {c: records[c].to_numpy() for c in ("lon", "lat", "beat") if c in records}
    return join_records(points_from_lonlat(pd.DataFrame(cols)), units, tolerance_ft=tolerance_ft, beats=beats)


def neighborhoods_partition(records: pd.DataFrame, units: gpd.GeoDataFrame,
                            tolerance_ft: float | None = None,
                            beats: gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """``record_id`` -> ``neighborhood`` ('' when outside or not geocoded) and
    ``boundary_units`` (`geo_lead.allocation`; settled by ``beat`` when `beats` are given)
    for one partition."""
    if not len(records):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("record_id", "neighborhood", "boundary_units")})
    joined = _join(records, units, tolerance_ft, beats)
    return pd.DataFrame({"record_id": records["record_id"].to_numpy(),
                         "neighborhood": joined["neighborhood"].to_numpy().astype(object),
                         "boundary_units": joined["boundary_units"].to_numpy().astype(object)})


def _partition_table(records: pd.DataFrame, units: Any, flags: Sequence[str]) -> pd.DataFrame:
    """`join_partition` with the unit as a column (dask groups on columns, not index levels)."""
    return join_partition(records, units, flags).reset_index()


def _finish(counts: pd.DataFrame, units: Any, total: int) -> dict[str, Any]:
    counts = counts.astype("int64")
    outside = int(counts["records"].get(OUTSIDE, 0))
    not_geocoded = int(counts["records"].get(NOT_GEOCODED, 0))
    per_unit = counts.drop(index=[OUTSIDE, NOT_GEOCODED], errors="ignore")
    table = units[[UNIT_COLUMN, "area_sqmi"]].set_index(UNIT_COLUMN).join(per_unit, how="left")
    table[list(per_unit.columns) or ["records"]] = table[list(per_unit.columns) or ["records"]].fillna(0)
    table = table.astype({c: "int64" for c in table.columns if c != "area_sqmi"})
    table["density_per_sqmi"] = table["records"] / table["area_sqmi"]
    joined = int(table["records"].sum())
    if joined + outside + not_geocoded != total:
        raise GeoLeadError(f"join accounting broke: {joined} + {outside} + {not_geocoded} != {total}")
    return {"records": total, "joined": joined, "outside": outside, "not_geocoded": not_geocoded,
            "counts": table.reset_index().rename(columns={UNIT_COLUMN: "neighborhood"})}


def join_and_count(records: Any, neighborhoods: Any, engine: str = "pandas",
                   npartitions: int | None = None, scheduler: str | None = None,
                   flags: Sequence[str] = FLAG_COLUMNS) -> dict[str, Any]:
    """Join records to neighborhoods and count them, on pandas or on dask partitions.

    Parameters
    ----------
    records
        A pandas DataFrame with ``lon``, ``lat`` and the flags, or a ``dask.dataframe`` /
        dask-geopandas frame with those columns (e.g. ``dask_geopandas.read_parquet`` of a
        month-partitioned export), or a path to such a GeoParquet file or directory.
    neighborhoods
        The neighborhood units (GeoDataFrame with ``NH_NAME``), any CRS.
    engine
        ``pandas`` or ``dask``.
    npartitions
        Dask partitions when `records` is a pandas frame (default: 2 per core).
    scheduler
        Dask scheduler: ``threads``, ``processes``, ``synchronous``, ``local`` (a local
        ``distributed`` cluster, one worker per core) or a ``tcp://`` address.

    Returns
    -------
    dict
        ``engine``, ``records``, ``joined``, ``outside``, ``not_geocoded`` and ``counts`` (a
        DataFrame: neighborhood, area_sqmi, records, one column per flag, density_per_sqmi).
    """
    if engine not in ENGINES:
        raise GeoLeadError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    units = prepare_units(neighborhoods)
    flags = tuple(flags)
    if isinstance(records, (str,)) or hasattr(records, "__fspath__"):
        records = _read_records_path(records, engine)
    if engine == "pandas":
        if not isinstance(records, pd.DataFrame):
            records = records.compute()
        counts = join_partition(records, units, flags)
        out = _finish(counts, units, len(records))
    else:
        out = _dask_count(records, units, flags, npartitions, scheduler)
    out["engine"] = engine
    log.info("join/count (%s): %d records, %d joined, %d outside, %d not geocoded", engine,
             out["records"], out["joined"], out["outside"], out["not_geocoded"])
    return out


def store_points(store: Store) -> pd.DataFrame:
    """``lon``, ``lat`` and the flags of every stored record (NaN coordinates before geocoding)."""
    have = set(store.columns("records"))
    cols = [c for c in ("lon", "lat", *FLAG_COLUMNS) if c in have]
    frame = store.read_table("records", cols) if cols else pd.DataFrame(index=range(store.count("records")))
    for col in ("lon", "lat"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    for col in FLAG_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(0).astype("int8") if col in frame else 0
    return frame


def _read_records_path(path: Any, engine: str) -> Any:
    columns = ["lon", "lat", *FLAG_COLUMNS]
    if engine == "dask":
        import dask.dataframe as dd

        return dd.read_parquet(str(path), columns=columns)
    return pd.read_parquet(path, columns=columns)


def _dask_count(records: Any, units: Any, flags: tuple[str, ...], npartitions: int | None,
                scheduler: str | None) -> dict[str, Any]:
    import os

    import dask.dataframe as dd

    if isinstance(records, pd.DataFrame):
        keep = [c for c in ("lon", "lat", *flags) if c in records]
        parts = npartitions or 2 * (os.cpu_count() or 1)
        records = dd.from_pandas(pd.DataFrame(records[keep]), npartitions=parts)
    else:
        keep = [c for c in ("lon", "lat", *flags) if c in records.columns]
        records = records[keep]
    meta = pd.DataFrame({"unit": pd.Series(dtype=object),
                         **{c: pd.Series(dtype="int64") for c in ("records", *flags)}})
    # Each partition returns a tiny per-unit table; summing them is the whole answer.
    partials = records.map_partitions(_partition_table, units, flags, meta=meta)
    result = _compute(partials.groupby("unit").sum(), scheduler)
    n = int(result["records"].sum())
    return _finish(result, units, n)


def _compute(collection: Any, scheduler: str | None) -> Any:
    """Compute a dask collection on the named scheduler (see `join_and_count`)."""
    import os

    import dask

    client = None
    try:
        if scheduler == "local":
            from distributed import Client, LocalCluster

            # Loopback only, random ports, quiet logs; the cluster lives as long as this call.
            if logging.getLogger().getEffectiveLevel() > logging.INFO:
                logging.getLogger("distributed").setLevel(logging.WARNING)
            client = Client(LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                                         processes=True, host="127.0.0.1",
                                         dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            return client.compute(collection).result()
        if scheduler and scheduler.startswith("tcp://"):
            from distributed import Client

            client = Client(scheduler)
            return client.compute(collection).result()
        with dask.config.set(scheduler=scheduler or "threads"):
            return collection.compute()
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler == "local":
                cluster.close()


def join_store(store: Store, engine: str = "dask", npartitions: int | None = None,
               scheduler: str | None = None, neighborhoods: Any = None,
               tolerance_ft: float | None = None,
               beats: gpd.GeoDataFrame | bool | None = True) -> dict[str, int]:
    """The join stage with a choice of engine: write ``neighborhood`` onto every record.

    ``engine="pandas"`` is `geo_lead.spatial_join.join_store`; ``engine="dask"`` runs the
    same `spatial_join.join_records` (same tolerance, same beat settling) on dask partitions
    of the records, writes the same values and the same join meta (`spatial_join.JoinPlan`):
    either engine finds the other's join current and joins only records without a
    ``neighborhood`` (tests/test_dask_engine.py compares the two on a real store).

    Parameters
    ----------
    tolerance_ft, beats
        As for `geo_lead.spatial_join.join_store` (beats: True = the shipped beat polygons).

    Returns
    -------
    dict
        ``records``, ``joined``, ``outside``, ``not_geocoded`` over every stored record.
    """
    if engine not in ENGINES:
        raise GeoLeadError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    from geo_lead.spatial_join import JoinPlan
    from geo_lead.spatial_join import join_store as pandas_join_store

    if engine == "pandas":
        return pandas_join_store(store, neighborhoods, tolerance_ft=tolerance_ft, beats=beats)
    plan = JoinPlan.make(neighborhoods, tolerance_ft, beats)
    frame = plan.read_records(store)
    joined = _dask_neighborhoods(frame, plan, npartitions, scheduler)
    with store.write():
        store.update_records(joined[["record_id", "neighborhood", "boundary_units"]])
        store.ensure_text_columns("records", ("neighborhood", "boundary_units"))
        plan.record(store)
        store.ensure_record_indexes()
    counts = store.join_counts()
    log.info("spatial join (dask): %s (%d record(s) joined in this call)", counts, len(frame))
    return counts


def _dask_neighborhoods(frame: pd.DataFrame, plan: JoinPlan, npartitions: int | None,
                        scheduler: str | None) -> pd.DataFrame:
    """`neighborhoods_partition` on dask partitions of `frame` (record_id, lon, lat, beat)."""
    import os

    import dask.dataframe as dd

    for col in ("lon", "lat"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    parts = npartitions or 2 * (os.cpu_count() or 1)
    ddf = dd.from_pandas(frame, npartitions=max(1, min(parts, len(frame) or 1)))
    meta = pd.DataFrame({"record_id": pd.Series(dtype=object), "neighborhood": pd.Series(dtype=object),
                         "boundary_units": pd.Series(dtype=object)})
    units = prepare_units(plan.neighborhoods)
    return _compute(ddf.map_partitions(neighborhoods_partition, units, plan.tolerance_ft, plan.beats,
                                       meta=meta), scheduler)
