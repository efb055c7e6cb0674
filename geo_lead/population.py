"""2020 census tract population -> neighborhoods by areal interpolation.

Areal weighting assumes residents are spread evenly within each tract: a neighborhood
receives from every tract the share of the tract's population equal to the share of the
tract's area that lies inside the neighborhood,

    pop_n = sum_t pop_t * area(t ∩ n) / area(t).

Areas are computed in EPSG:2246 (US survey feet). Population is conserved: the
neighborhood values plus the population of tract parts outside every neighborhood
(``unallocated``) add up to the tracts' total, as long as neighborhoods do not overlap
(`interpolate_population` checks that and says so when they do).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_lead import result_cache, settings
from geo_lead.boundaries import check_same_crs
from geo_lead.errors import GeoLeadError, InputFileError, MissingColumnError

log = logging.getLogger(__name__)

#: Column of the tracts file holding the 2020 total population.
POPULATION_COLUMN = "TOTPOP"
#: Overlap between neighborhoods (sq ft) tolerated as digitising noise before warning.
OVERLAP_TOLERANCE_SQFT = 1_000.0


@dataclass(frozen=True)
class Interpolation:
    """The result of `interpolate_population`.

    Attributes
    ----------
    population : pandas.Series
        Interpolated residents per neighborhood, aligned to the neighborhoods' index.
    tracts_total : float
        Sum of the tracts' population.
    unallocated : float
        Residents of tract parts outside every neighborhood.
    overlap_sqft : float
        Area (sq ft) covered by more than one neighborhood (their residents count in each).
    """

    population: pd.Series
    tracts_total: float
    unallocated: float
    overlap_sqft: float = 0.0


def load_tracts(path: Path = settings.POPULATION_TRACTS,
                column: str = POPULATION_COLUMN) -> gpd.GeoDataFrame:
    """Read the tracts file (any GDAL vector format) and check its population column.

    A file read before in this process (same path, column and sha256 of its bytes) is not
    parsed again: the caller gets a copy of the frame read then.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: population tracts file not found.")
    memo_key = (str(path.resolve()), column, hashlib.sha256(path.read_bytes()).hexdigest())
    if memo_key in _TRACTS:
        return _TRACTS[memo_key].copy()
    tracts = _read_tracts(path, column)
    _TRACTS.clear()  # one entry: the tracts of this run
    _TRACTS[memo_key] = tracts
    return tracts.copy()


def _read_tracts(path: Path, column: str) -> gpd.GeoDataFrame:
    tracts = gpd.read_file(path)
    if column not in tracts.columns:
        raise MissingColumnError(str(path), column, list(tracts.columns),
                                 hint="(2020 total population per tract).")
    if tracts.crs is None:
        raise InputFileError(f"{path}: no CRS; expected EPSG:4326 GeoJSON.")
    values = pd.to_numeric(tracts[column], errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(f"{path}: feature {i} column {column!r} has value "
                             f"{tracts[column].iloc[i]!r}; expected a non-negative number.")
    return tracts.assign(**{column: values.astype(float)})


def interpolate_population(tracts: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame,
                           column: str = POPULATION_COLUMN) -> Interpolation:
    """Areally interpolate tract population onto neighborhoods.

    The result is a pure function of the inputs; it is kept under `inputs_key` in this
    process and across runs (`geo_lead.result_cache`, kind ``population``), and a cached
    result equals the computed one exactly.

    Parameters
    ----------
    tracts
        Polygons with a population column `column`.
    neighborhoods
        Polygons (same CRS as `tracts`); the result is aligned to their index.
    column
        Population column of `tracts`.

    Returns
    -------
    Interpolation
        Population per neighborhood plus the totals that show conservation (a new object
        each call: changing it changes no cache).

    Raises
    ------
    CRSMismatchError
        When `tracts` and `neighborhoods` are in different CRSs.
    """
    check_same_crs(tracts=tracts, neighborhoods=neighborhoods)
    if column not in tracts.columns:
        raise GeoLeadError(f"tracts: population column {column!r} missing; have {list(tracts.columns)}.")
    return _kept(_MEMO, inputs_key(tracts, neighborhoods, column), neighborhoods.index,
                 lambda: _interpolate(tracts, neighborhoods, column))


def population_of(neighborhoods: gpd.GeoDataFrame, path: Path = settings.POPULATION_TRACTS,
                  column: str = POPULATION_COLUMN) -> Interpolation:
    """`interpolate_population` of the tracts file at `path`, in the neighborhoods' CRS, onto
    `neighborhoods`, without parsing that file when the answer is kept.

    The answer is kept in this process and across runs (kind ``population``) under
    `file_inputs_key`: the sha256 of the file's bytes instead of the parsed tracts, so a
    rerun whose boundary files did not change reads neither the tracts nor their geometry.
    A miss reads and checks the file (`load_tracts`: the same errors as before) and
    interpolates; a hit equals that result exactly.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: population tracts file not found.")
    return _kept(_BY_FILE, file_inputs_key(path, column, neighborhoods), neighborhoods.index,
                 lambda: interpolate_population(load_tracts(path, column).to_crs(neighborhoods.crs),
                                                neighborhoods, column))


def _kept(memo: dict[str, Interpolation], key: str, index: pd.Index,
          compute: Callable[[], Interpolation]) -> Interpolation:
    """The interpolation under `key`: from `memo` (this process), else the result cache, else
    `compute()` (then written to the cache); `memo` keeps only this key (the boundaries of this
    run). A new object each call: changing it changes no cache."""
    done = memo.get(key) or _cached(key, index)
    if done is None:
        done = compute()
        result_cache.write(CACHE_KIND, key, {
            "population": done.population.to_numpy(float).tolist(), "tracts_total": done.tracts_total,
            "unallocated": done.unallocated, "overlap_sqft": done.overlap_sqft})
    memo.clear()
    memo[key] = done
    return Interpolation(done.population.copy(), done.tracts_total, done.unallocated, done.overlap_sqft)


def file_inputs_key(path: Path, column: str, neighborhoods: gpd.GeoDataFrame) -> str:
    """sha256 of what `population_of` reads: the tracts file's bytes, the column, the
    neighborhoods' CRS, geometries (WKB) and index, the method's code and library versions
    (`_METHOD_VERSION`) and the reader's (pyogrio and its GDAL parse the file)."""
    h = hashlib.sha256(b"population_of|")
    h.update(f"{column}|{neighborhoods.crs}|".encode())
    h.update(_METHOD_VERSION.encode())
    h.update(result_cache.library_versions("pyogrio", "fiona").encode())
    h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    _hash_neighborhoods(h, neighborhoods)
    return h.hexdigest()


#: `interpolate_population` results by `inputs_key` (scoring, siting and by-year reuse it).
_MEMO: dict[str, Interpolation] = {}
#: `population_of` results by `file_inputs_key` (one entry).
_BY_FILE: dict[str, Interpolation] = {}
#: `load_tracts` frames by (path, column, sha256 of the file).
_TRACTS: dict[tuple[str, str, str], gpd.GeoDataFrame] = {}
#: `geo_lead.result_cache` kind of the interpolation.
CACHE_KIND = "population"


def _cached(key: str, index: pd.Index) -> Interpolation | None:
    """The interpolation cached across runs under `key`, aligned to `index`; None if absent."""
    hit = result_cache.read(CACHE_KIND, key)
    if hit is None or len(hit.get("population") or ()) != len(index):
        return None
    overlap = float(hit["overlap_sqft"])
    _warn_if_overlap(overlap)  # the same warning the computation gives
    log.info("population interpolation reused (inputs sha256 %s)", key[:12])
    return Interpolation(pd.Series(np.asarray(hit["population"], dtype=float), index=index, name="population"),
                         float(hit["tracts_total"]), float(hit["unallocated"]), overlap)


def inputs_key(tracts: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, column: str) -> str:
    """sha256 of everything the interpolation reads: CRS, geometries (WKB), population, the
    neighborhoods' index (the result is aligned to it), this module's source (the method's
    code version) and the versions of the libraries that compute the overlay."""
    import shapely

    h = hashlib.sha256(f"{tracts.crs}|{column}|".encode())
    h.update(_METHOD_VERSION.encode())
    for wkb in shapely.to_wkb(np.asarray(tracts.geometry.values)):
        h.update(wkb or b"")
    h.update(np.asarray(pd.to_numeric(tracts[column]), dtype=float).tobytes())
    _hash_neighborhoods(h, neighborhoods)
    return h.hexdigest()


def _hash_neighborhoods(h: Any, neighborhoods: gpd.GeoDataFrame) -> None:
    """Feed `h` what both keys read of the neighborhoods: geometries (WKB) and index (the
    result is aligned to it)."""
    import shapely

    for wkb in shapely.to_wkb(np.asarray(neighborhoods.geometry.values)):
        h.update(wkb or b"")
    h.update(repr(list(neighborhoods.index)).encode())


def _method_version() -> str:
    import shapely

    return "|".join((result_cache.source_version(__file__), f"geos={shapely.geos_version_string}",
                     result_cache.library_versions("geopandas", "shapely", "numpy", "pandas", "pyproj")))


#: The interpolation's code version (this file's sha256) and library versions, part of every key.
_METHOD_VERSION = _method_version()


def _interpolate(tracts: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, column: str) -> Interpolation:
    t = tracts[[column, tracts.geometry.name]].to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    t["tract_ix"] = np.arange(len(t))
    t["tract_area"] = t.geometry.area
    n = neighborhoods[[neighborhoods.geometry.name]].to_crs(settings.CRS_PROJECTED)
    n = n.assign(nh_pos=np.arange(len(n))).reset_index(drop=True)
    overlap = _overlap_sqft(n)
    _warn_if_overlap(overlap)
    pieces = gpd.overlay(t, n, how="intersection", keep_geom_type=True)
    share = np.where(pieces["tract_area"] > 0, pieces.geometry.area / pieces["tract_area"], 0.0)
    pieces_pop = pieces[column].to_numpy(float) * share
    pop = np.bincount(pieces["nh_pos"].to_numpy(int), weights=pieces_pop, minlength=len(n))
    total = float(t[column].sum())
    unallocated = total - float(pop.sum())
    log.info("interpolated %.0f of %.0f residents onto %d neighborhoods (%.0f outside them)",
             pop.sum(), total, len(n), unallocated)
    return Interpolation(pd.Series(pop, index=neighborhoods.index, name="population"),
                         total, unallocated, overlap)


def _overlap_sqft(n: gpd.GeoDataFrame) -> float:
    return float(n.geometry.area.sum() - n.geometry.union_all().area)


def _warn_if_overlap(overlap: float) -> None:
    if overlap > OVERLAP_TOLERANCE_SQFT:
        log.warning("neighborhoods overlap by %.0f sq ft: residents there are counted in each "
                    "overlapping neighborhood, so the total is not conserved", overlap)
