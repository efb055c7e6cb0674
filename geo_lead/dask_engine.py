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
records = joined + outside + not_geocoded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.store import FLAG_COLUMNS

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("pandas", "dask")
UNIT_COLUMN = "NH_NAME"
#: Label of records with coordinates that fall in no unit, and of records with none.
OUTSIDE, NOT_GEOCODED = "(outside every neighborhood)", "(not geocoded)"
COUNT_COLUMNS: tuple[str, ...] = ("records", *FLAG_COLUMNS)


def prepare_units(neighborhoods: Any) -> Any:
    """Neighborhood units in EPSG:2246 with ``NH_NAME``, ``unit_order`` and ``area_sqmi``."""
    if neighborhoods.crs is None:
        raise GeoLeadError("neighborhood layer has no CRS; expected EPSG:4326.")
    units = neighborhoods[[UNIT_COLUMN, neighborhoods.geometry.name]].to_crs(settings.CRS_PROJECTED)
    units = units.reset_index(drop=True)
    units["unit_order"] = np.arange(len(units))
    units["area_sqmi"] = units.geometry.area / settings.SQFT_PER_SQMI
    return units


def join_partition(records: pd.DataFrame, units: Any,
                   flags: Sequence[str] = FLAG_COLUMNS) -> pd.DataFrame:
    """Count one table (or one partition) of records per unit.

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
    import geopandas as gpd

    lon = pd.to_numeric(records["lon"], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(records["lat"], errors="coerce").to_numpy(dtype=float)
    located = ~(np.isnan(lon) | np.isnan(lat))
    unit = np.full(len(records), NOT_GEOCODED, dtype=object)
    if located.any():
        points = gpd.GeoDataFrame(
            {"row": np.flatnonzero(located)},
            geometry=gpd.points_from_xy(lon[located], lat[located]), crs=settings.CRS_STORE,
        ).to_crs(settings.CRS_PROJECTED)
        hits = gpd.sjoin(points, units[[UNIT_COLUMN, "unit_order", "geometry"]],
                         how="inner", predicate="intersects")
        # A point on a shared edge touches two units: keep the first in layer order.
        hits = hits.sort_values(["row", "unit_order"]).drop_duplicates("row")
        unit[located] = OUTSIDE
        unit[hits["row"].to_numpy()] = hits[UNIT_COLUMN].to_numpy()
    table = pd.DataFrame({"unit": unit, "records": 1})
    for flag in flags:
        table[flag] = pd.to_numeric(records[flag], errors="coerce").fillna(0).astype("int64").to_numpy() \
            if flag in records else 0
    return table.groupby("unit", sort=True)[["records", *flags]].sum()


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


def store_points(store: Any) -> pd.DataFrame:
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

    import dask
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
    total = partials.groupby("unit").sum()
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
            result = total.compute()
        elif scheduler and scheduler.startswith("tcp://"):
            from distributed import Client

            client = Client(scheduler)
            result = total.compute()
        else:
            with dask.config.set(scheduler=scheduler or "threads"):
                result = total.compute()
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler == "local":
                cluster.close()
    n = int(result["records"].sum())
    return _finish(result, units, n)
