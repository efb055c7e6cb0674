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
complete, so a killed export never leaves a half-written file at ``--out``. CSV text cells
that a spreadsheet would run as a formula are prefixed with ``'`` (`geo_lead.outputs`);
GeoPackage and GeoParquet values are written unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.outputs import write_csv
from geo_lead.sources import is_person_column
from geo_lead.store import FLAG_COLUMNS, Store, wkb_from_gpkg

log = logging.getLogger(__name__)

WHATS: tuple[str, ...] = ("records", "scores")
FORMATS: tuple[str, ...] = ("gpkg", "geoparquet", "csv")
PARTITIONS: tuple[str, ...] = ("none", "month")
RECORD_EXPORT_COLUMNS: tuple[str, ...] = (
    "record_id", "incident_number", "offense_text", "occurred_at", "address_raw", "lon", "lat",
    "match_type", "neighborhood", "division", *FLAG_COLUMNS,
)
#: Store internals with no meaning outside it (person columns are excluded by
#: `geo_lead.sources.is_person_column`, the one test every output uses).
EXCLUDED_COLUMNS: frozenset[str] = frozenset({"fid", "geom"})


def _excluded(column: str) -> bool:
    return column in EXCLUDED_COLUMNS or is_person_column(column)


class ExportError(GeoLeadError):
    """The export cannot be written (unknown choice, nothing to export, target exists)."""


#: Rows per piece when streaming records out of the store (bounded memory at any size).
EXPORT_CHUNK_ROWS = 100_000
_REAL = frozenset({"lon", "lat", "score"})
_INTEGER = frozenset({*FLAG_COLUMNS, "source_line"})


def _record_columns(store: Store) -> list[str]:
    have = [c for c in store.columns("records") if not _excluded(c)]
    return [*[c for c in RECORD_EXPORT_COLUMNS if c in have],
            *[c for c in have if c not in RECORD_EXPORT_COLUMNS]]


def typed_records(frame: pd.DataFrame) -> Any:
    """Raw record rows -> GeoDataFrame with fixed column types and point geometry.

    Every piece of a streamed export gets the same schema: flags and line numbers int64,
    coordinates and scores float64, everything else text ('' for NULL).
    """
    import geopandas as gpd

    frame = frame.drop(columns=[c for c in frame.columns if _excluded(c)])
    for col in RECORD_EXPORT_COLUMNS:
        if col not in frame:
            frame[col] = np.nan if col in _REAL else ""
    for col in frame.columns:
        if col in _REAL:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        elif col in _INTEGER:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(0).astype("int64")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str)
    ordered = [*RECORD_EXPORT_COLUMNS, *[c for c in frame.columns if c not in RECORD_EXPORT_COLUMNS]]
    lon, lat = frame["lon"], frame["lat"]
    geometry = gpd.points_from_xy(lon, lat, crs=settings.CRS_STORE)
    geometry[(lon.isna() | lat.isna()).to_numpy()] = None
    return gpd.GeoDataFrame(frame[ordered].reset_index(drop=True), geometry=geometry, crs=settings.CRS_STORE)


def record_months(store: Store) -> list[str]:
    """The months (YYYY-MM, or 'unknown') of the stored records' occurred_at, sorted."""
    return sorted({m if m and re.fullmatch(r"\d{4}-\d{2}", m) else "unknown" for m in store.record_months()})


def iter_records(store: Store, month: str | None = None,
                 chunk_rows: int | None = None) -> Iterator[Any]:
    """Stream the records (optionally of one month) as typed GeoDataFrames of `chunk_rows`
    (default `EXPORT_CHUNK_ROWS`)."""
    chunk_rows = chunk_rows or EXPORT_CHUNK_ROWS
    for chunk in store.iter_record_rows(_record_columns(store), month, chunk_rows):
        yield typed_records(chunk)


def records_frame(store: Store) -> Any:
    """All records as one GeoDataFrame (EPSG:4326), export columns first (small stores)."""
    import geopandas as gpd

    parts = list(iter_records(store))
    if not parts:
        return typed_records(pd.DataFrame(columns=_record_columns(store)))
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=settings.CRS_STORE)


class _Sink:
    """Appends GeoDataFrame pieces to one file of a format, with one schema throughout."""

    def __init__(self, path: Path, fmt: str, layer: str) -> None:
        self.path, self.fmt, self.layer = path, fmt, layer
        self.rows, self.geocoded = 0, 0
        self._writer: Any = None
        self._schema: Any = None

    def write(self, gdf: Any) -> None:
        self.rows += len(gdf)
        self.geocoded += int((gdf.geometry.notna() & ~gdf.geometry.is_empty).sum())
        if self.fmt == "geoparquet":
            self._write_parquet(gdf)
        elif self.fmt == "gpkg":
            import pyogrio

            pyogrio.write_dataframe(gdf, self.path, layer=self.layer, driver="GPKG",
                                    geometry_type="Point", append=self.rows > len(gdf))
        else:
            frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            if self.rows > len(gdf):
                write_csv(frame, self.path, append=True)
            else:  # the first piece: the caller renames the whole file into place
                write_csv(frame, self.path, atomic=False)

    def _write_parquet(self, gdf: Any) -> None:
        import json

        import pyarrow.parquet as pq
        from geopandas.io.arrow import _geopandas_to_arrow

        table = _geopandas_to_arrow(gdf, index=False)
        if self._writer is None:
            meta = dict(table.schema.metadata)
            geo = json.loads(meta[b"geo"])
            for col in geo["columns"].values():
                col.pop("bbox", None)  # this piece's bbox is not the file's; the key is optional
                col["geometry_types"] = ["Point"]
            meta[b"geo"] = json.dumps(geo).encode()
            self._schema = table.schema.with_metadata(meta)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.write_table(table.cast(self._schema))

    def close(self) -> None:
        if self.fmt == "geoparquet" and self._writer is None:  # no rows: still a valid file
            self._write_parquet(typed_records(pd.DataFrame(columns=list(RECORD_EXPORT_COLUMNS))))
        if self._writer is not None:
            self._writer.close()
        elif self.rows == 0 and self.fmt != "geoparquet":
            empty = typed_records(pd.DataFrame(columns=list(RECORD_EXPORT_COLUMNS)))
            if self.fmt == "gpkg":
                import pyogrio

                pyogrio.write_dataframe(empty, self.path, layer=self.layer, driver="GPKG",
                                        geometry_type="Point")
            else:
                write_csv(pd.DataFrame(empty.drop(columns="geometry")), self.path, atomic=False)


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
    frame = frame.drop(columns=[c for c in frame.columns if _excluded(c)])
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=settings.CRS_STORE)


def _write_one(gdf: Any, path: Path, fmt: str, layer: str) -> None:
    if fmt == "gpkg":
        gdf.to_file(path, driver="GPKG", layer=layer, engine="pyogrio")
    elif fmt == "geoparquet":
        gdf.to_parquet(path, index=False)
    else:
        frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        if layer != "records":  # polygons: keep them as WKT so the CSV is still complete
            frame["geometry_wkt"] = gdf.geometry.to_wkt()
        write_csv(frame, path, atomic=False)


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
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")  # GDAL wants the suffix
    _remove(tmp)
    files: list[str] = []
    rows = geocoded = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if what == "scores":
            gdf = scores_frame(store)
            _write_one(gdf, tmp, fmt, what)
            rows = len(gdf)
            geocoded = int((gdf.geometry.notna() & ~gdf.geometry.is_empty).sum()) if rows else 0
            files.append(str(out))
        elif partition == "month":
            # One month at a time (an index range query): memory is bounded by the largest month.
            tmp.mkdir(parents=True)
            for month in record_months(store):
                part_dir = tmp / f"month={month}"
                part_dir.mkdir()
                sink = _Sink(part_dir / "part-0.parquet", fmt, what)
                for piece in iter_records(store, month=month):
                    sink.write(piece)
                sink.close()
                rows, geocoded = rows + sink.rows, geocoded + sink.geocoded
                files.append(str(out / f"month={month}" / "part-0.parquet"))
        else:
            sink = _Sink(tmp, fmt, what)
            for piece in iter_records(store):
                sink.write(piece)
            sink.close()
            rows, geocoded = sink.rows, sink.geocoded
            files.append(str(out))
        if out.exists():
            _remove(out)
        os.replace(tmp, out)
    finally:
        _remove(tmp)
    log.info("exported %d %s to %s", rows, what, out)
    return {"what": what, "format": fmt, "out": str(out), "rows": rows, "geocoded": geocoded,
            "partitions": len(files) if partition == "month" else 0, "files": files}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
