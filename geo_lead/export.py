"""Export the store's records or scores for GIS users: GeoPackage, GeoParquet or CSV.

The records export has one row per stored record and never a person field (sex, race,
ethnicity, age live only in the store's ``persons`` table). Its columns start with
`RECORD_EXPORT_COLUMNS` (identity, offence, time, address, geocode, neighborhood, division,
indicator flags), then the rest of the record table (rule ids, source file and line...).
The point geometry is built from ``lon``/``lat`` (EPSG:4326); ungeocoded records have an
empty geometry and are still exported, so rows out = records in the store.

The scores export is the ``scores`` layer with its polygons.

GeoParquet can be partitioned by month of ``occurred_at`` (``--partition month``): a
directory of ``month=YYYY-MM/part-0.parquet`` files (Hive layout) that dask-geopandas,
pyarrow, DuckDB and Spark read as one dataset, each file with its own GeoParquet metadata.

Files are written next to the target under a temporary name and moved into place when
complete, so a killed export never leaves a half-written file at ``--out``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.sources import PERSON_FIELDS
from geo_lead.store import FLAG_COLUMNS, Store, wkb_from_gpkg

log = logging.getLogger(__name__)

WHATS: tuple[str, ...] = ("records", "scores")
FORMATS: tuple[str, ...] = ("gpkg", "geoparquet", "csv")
PARTITIONS: tuple[str, ...] = ("none", "month")
RECORD_EXPORT_COLUMNS: tuple[str, ...] = (
    "record_id", "incident_number", "offense_text", "occurred_at", "address_raw", "lon", "lat",
    "match_type", "neighborhood", "division", *FLAG_COLUMNS,
)
#: Columns never exported: person fields, and store internals with no meaning outside it.
EXCLUDED_COLUMNS: frozenset[str] = frozenset({*PERSON_FIELDS, "fid", "geom"})


class ExportError(GeoLeadError):
    """The export cannot be written (unknown choice, nothing to export, target exists)."""


def records_frame(store: Store) -> Any:
    """The records table as a GeoDataFrame (EPSG:4326) with the export columns first."""
    import geopandas as gpd

    frame = store.read_records()
    frame = frame.drop(columns=[c for c in frame.columns if c in EXCLUDED_COLUMNS])
    for col in RECORD_EXPORT_COLUMNS:
        if col not in frame:
            frame[col] = np.nan if col in ("lon", "lat") else ""
    for col in FLAG_COLUMNS:
        frame[col] = frame[col].fillna(0).astype(int)
    for col in ("match_type", "neighborhood"):
        frame[col] = frame[col].fillna("")
    lon = pd.to_numeric(frame["lon"], errors="coerce")
    lat = pd.to_numeric(frame["lat"], errors="coerce")
    frame["lon"], frame["lat"] = lon, lat
    ordered = [*RECORD_EXPORT_COLUMNS, *[c for c in frame.columns if c not in RECORD_EXPORT_COLUMNS]]
    geometry = gpd.points_from_xy(lon, lat, crs=settings.CRS_STORE)
    geometry[(lon.isna() | lat.isna()).to_numpy()] = None
    return gpd.GeoDataFrame(frame[ordered], geometry=geometry, crs=settings.CRS_STORE)


def scores_frame(store: Store) -> Any:
    """The ``scores`` layer as a GeoDataFrame (EPSG:4326)."""
    import geopandas as gpd
    import shapely

    if "scores" not in store.tables():
        raise ExportError(f"{store.path}: no `scores` layer yet; run `geo-lead score` "
                          "(or `geo-lead run`) first.")
    cols = [c for c in store.columns("scores") if c not in ("fid",)]
    frame = store.read_table("scores", cols)
    wkb = [wkb_from_gpkg(b) for b in frame.pop("geom")] if "geom" in frame else []
    geometry = shapely.from_wkb(wkb) if len(wkb) else None
    frame = frame.drop(columns=[c for c in frame.columns if c in EXCLUDED_COLUMNS])
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=settings.CRS_STORE)


def _month(occurred_at: pd.Series) -> pd.Series:
    month = occurred_at.astype(str).str.slice(0, 7)
    return month.where(month.str.fullmatch(r"\d{4}-\d{2}"), "unknown")


def _write_one(gdf: Any, path: Path, fmt: str, layer: str) -> None:
    if fmt == "gpkg":
        gdf.to_file(path, driver="GPKG", layer=layer, engine="pyogrio")
    elif fmt == "geoparquet":
        gdf.to_parquet(path, index=False)
    else:
        frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        if layer != "records":  # polygons: keep them as WKT so the CSV is still complete
            frame["geometry_wkt"] = gdf.geometry.to_wkt()
        frame.to_csv(path, index=False)


def export(store: Store, what: str, fmt: str, out: Path | str, partition: str = "none",
           overwrite: bool = False) -> dict[str, Any]:
    """Write the records or the scores to `out`.

    Parameters
    ----------
    what
        ``records`` or ``scores``.
    fmt
        ``gpkg``, ``geoparquet`` or ``csv``.
    out
        Target file, or directory for a partitioned GeoParquet export.
    partition
        ``none`` or ``month`` (records as GeoParquet only).
    overwrite
        Replace an existing target.

    Returns
    -------
    dict
        ``what``, ``format``, ``out``, ``rows``, ``geocoded`` (rows with a point), ``files``
        (one per partition), ``partitions``.

    Raises
    ------
    ExportError
        An unknown choice, partitioning that does not apply, or an existing target.
    """
    out = Path(out)
    for value, allowed, name in ((what, WHATS, "--what"), (fmt, FORMATS, "--format"),
                                 (partition, PARTITIONS, "--partition")):
        if value not in allowed:
            raise ExportError(f"{name} {value!r}: choose one of {', '.join(allowed)}.")
    if partition == "month" and (fmt != "geoparquet" or what != "records"):
        raise ExportError("--partition month applies to `--what records --format geoparquet` only "
                          "(scores have no month).")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists; choose another --out or pass --overwrite.")
    if out.is_dir() and any(not p.name.startswith("month=") for p in out.iterdir()):
        # Only ever replace a directory this function wrote (a month-partitioned dataset).
        raise ExportError(f"{out}: is a directory that is not a geo_lead partitioned export; "
                          "choose another --out.")
    gdf = records_frame(store) if what == "records" else scores_frame(store)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")  # GDAL wants the suffix
    _remove(tmp)
    files: list[str] = []
    try:
        if partition == "month":
            tmp.mkdir(parents=True)
            month = _month(gdf["occurred_at"])
            for value in sorted(month.unique()):
                part_dir = tmp / f"month={value}"
                part_dir.mkdir()
                _write_one(gdf[(month == value).to_numpy()], part_dir / "part-0.parquet", fmt, what)
                files.append(str(out / f"month={value}" / "part-0.parquet"))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            _write_one(gdf, tmp, fmt, what)
            files.append(str(out))
        if out.exists():
            _remove(out)
        os.replace(tmp, out)
    finally:
        _remove(tmp)
    geocoded = int((~gdf.geometry.isna() & ~gdf.geometry.is_empty).sum()) if len(gdf) else 0
    log.info("exported %d %s to %s", len(gdf), what, out)
    return {"what": what, "format": fmt, "out": str(out), "rows": len(gdf), "geocoded": geocoded,
            "partitions": len(files) if partition == "month" else 0, "files": files}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
