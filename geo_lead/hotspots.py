"""Hotspots: kernel density, Getis-Ord Gi* (neighborhoods and grid) and PAI/PEI.

Inputs are plain GeoDataFrames (see docs/ARCHITECTURE.md): ``records`` (EPSG:4326 points with
``occurred_at``, bool indicator flags, ``neighborhood`` = NH_NAME or "") and
``neighborhoods`` (EPSG:4326 polygons with NH_NAME, NH_CODE, is_named). Every distance, area
and density is computed in `settings.CRS_PROJECTED` (EPSG:2246, US survey feet).

Methods
-------
* Kernel density: a weighted Gaussian kernel sum in numpy (`gaussian_density`; what
  scikit-learn's ``KernelDensity`` estimates) on projected points; bandwidth in
  feet by likelihood cross-validation (default; Scott's rule oversmooths clustered crime
  points), Scott's rule (2-D: sigma * n^(-1/6), sigma = sqrt of the mean coordinate variance)
  or Silverman's (identical to Scott's in 2-D); evaluated at
  the centres of a grid clipped to the study area. Hotspot cells: density > mean + k*sd.
* Getis-Ord Gi*: ``esda.G_Local(star=True, transform="B")``'s z and G (computed by
  `geo_lead.gistar_local` from the binary neighbour lists, bit-identical), its conditional
  permutations with a fixed seed (esda's draws and simulated values, computed by
  `geo_lead.gistar_crand`); a one-sided pseudo-p in the direction of z with ties counted as extreme
  (`directed_pseudo_p`), made two-sided (min(1, 2 p), `two_sided_p`) before
  Benjamini-Hochberg (``esda.fdr``); labels named by the FDR level they pass
  (``hot, FDR 5%``). Permutations are chosen so the strictest level offered is attainable
  (`permutations_for`); a level out of reach is not offered (`attainable_levels`).
* PAI = (n/N)/(a/A) (Chainey, Tompson & Uhlig 2008); PEI = n / n_max, n_max being the most
  records any set of grid cells of the same total area captures.

Every record carries a ``weight``: its sampling-frame weight (`geo_lead.frames`: 1 / the
declared fraction of its source and year, 1 for a complete extract), so counts estimate
full-data counts and samples of different years mix fairly. Records near an edge shared by
two or more units count in equal shares in each (`geo_lead.allocation`, rule ``split``; a
record's parts lie on its one point, so the KDE and grid sums are unchanged by the split).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: Likelihood cross-validation of the KDE bandwidth uses at most this many points.
CV_MAX_POINTS = 1000
#: Candidate bandwidths for cross-validation: log-spaced 0.2x..3x Scott's.
CV_GRID = 25
#: Benjamini-Hochberg FDR levels q offered for Gi* labels (`label_gistar`), strictest first.
FDR_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.10)
#: Most conditional permutations `permutations_for` chooses (a level out of reach then is
#: not offered).
MAX_PERMUTATIONS = 199_999
NOT_SIGNIFICANT = "not significant"


# --- inputs ------------------------------------------------------------------------------
def record_weights(records: pd.DataFrame) -> pd.Series:
    """The records' frame ``weight`` column (`geo_lead.frames.attach_weights`); 1 without one.

    Returns
    -------
    pandas.Series
        Float weights aligned to ``records.index``.
    """
    from geo_lead.allocation import record_weight

    return record_weight(records)


def indicator_points(records: gpd.GeoDataFrame, indicator: str = "lead_eligible",
                     boundary: str | None = None) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """Flagged, geocoded records in EPSG:2246, one row per (record, unit) share, and the accounting.

    Each row has ``weight`` = frame weight x share, ``neighborhood`` = the unit, ``record_row``
    = the record's index label in `records`, ``share`` and ``shared``; records outside every unit keep
    one row (``neighborhood`` ""). `boundary`: ``split`` or ``first`` (default
    `settings.BOUNDARY_RULE`; `geo_lead.allocation.unit_shares`).

    Returns
    -------
    points, counts
        ``counts`` has records_in = not_flagged + not_geocoded + kept (records, not rows).
    """
    from geo_lead.allocation import explode

    if indicator not in records:
        raise GeoLeadError(f"records have no indicator column {indicator!r}; columns: {list(records.columns)}")
    flagged = records[indicator].fillna(False).astype(bool)
    geom = records.geometry
    located = ~(geom.isna() | geom.is_empty)
    kept = records[flagged & located].copy()
    kept["weight"] = record_weights(kept)
    counts = {"records_in": len(records), "not_flagged": int((~flagged).sum()),
              "not_geocoded": int((flagged & ~located).sum()), "kept": len(kept)}
    if "neighborhood" in kept:
        placed = (kept["neighborhood"].fillna("").astype(str) != "").to_numpy()
        rest = kept[~placed].assign(record_row=kept.index[~placed], share=1.0, shared=False)
        kept = gpd.GeoDataFrame(pd.concat([explode(kept[placed], boundary), rest.reset_index(drop=True)],
                                          ignore_index=True), geometry=kept.geometry.name, crs=kept.crs)
    else:
        kept = kept.assign(record_row=kept.index, share=1.0, shared=False)
    return kept.to_crs(settings.CRS_PROJECTED), counts


def collapse_shares(points: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One row per record of `indicator_points` rows: its first row, weight = its rows' sum."""
    if "record_row" not in points or points.empty:
        return points
    first = points.drop_duplicates("record_row").copy()
    first["weight"] = points.groupby("record_row")["weight"].sum().reindex(first["record_row"]).to_numpy(float)
    return first


def assign_neighborhoods(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame) -> pd.Series:
    """NH_NAME of each record ("" outside every unit or not geocoded), by the spatial join's
    own rule (`spatial_join.join_records`: a point on an edge belongs to the first unit).

    Used only when the records lack the ``neighborhood`` column the spatial join writes.
    """
    from geo_lead.spatial_join import join_records

    joined = join_records(records.to_crs(neighborhoods.crs), neighborhoods)
    return joined["neighborhood"].fillna("").astype(str)


def units_of(points: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame) -> pd.Series:
    """The unit each point was joined to: its ``neighborhood`` column when it has one (the
    join's answer, which score and site count), else `assign_neighborhoods`.

    Never a fresh point-in-polygon test with another predicate: a point on a unit's edge
    (streets are the boundaries, and block points lie on the street) must count in the same
    unit for every statistic.
    """
    if "neighborhood" in points:
        return points["neighborhood"].fillna("").astype(str)
    return assign_neighborhoods(points, neighborhoods)


def first_division_names(neighborhoods: gpd.GeoDataFrame, records: pd.DataFrame | None = None,
                         min_records: int = 5) -> list[str]:
    """Named neighborhoods of LMPD's First Division, decided from data.

    ``boundaries/first_division.geojson`` when it exists (units with at least half their area
    inside it); otherwise the units where most geocoded records say ``1ST DIVISION`` (with
    at least `min_records` records). Raises when neither source is available.
    """
    named = neighborhoods[neighborhoods["is_named"].astype(bool)]
    if settings.FIRST_DIVISION_FILE.exists():
        import hashlib

        from geo_lead.allocation import units_digest

        key = (units_digest(named, "NH_NAME"), hashlib.sha256(settings.FIRST_DIVISION_FILE.read_bytes()).hexdigest())
        if key not in _FIRST_DIVISION_MEMO:
            from geo_lead.boundaries import load_first_division

            div = load_first_division(settings.FIRST_DIVISION_FILE).to_crs(settings.CRS_PROJECTED).union_all()
            proj = named.to_crs(settings.CRS_PROJECTED)
            share = proj.geometry.intersection(div).area / proj.geometry.area
            if len(_FIRST_DIVISION_MEMO) >= 8:
                _FIRST_DIVISION_MEMO.clear()
            _FIRST_DIVISION_MEMO[key] = sorted(named.loc[share >= 0.5, "NH_NAME"])
        return list(_FIRST_DIVISION_MEMO[key])
    if records is not None and {"division", "neighborhood"} <= set(records.columns):
        rec = records[records["neighborhood"].astype(str) != ""]
        first = rec["division"].fillna("").astype(str).str.upper().eq(settings.FIRST_DIVISION)
        by_nh = first.groupby(rec["neighborhood"]).agg(["mean", "size"])
        chosen = by_nh[(by_nh["mean"] > 0.5) & (by_nh["size"] >= min_records)].index
        names = sorted(set(chosen) & set(named["NH_NAME"]))
        if names:
            return names
    raise GeoLeadError("cannot tell which neighborhoods form the First Division: no "
                       f"{settings.FIRST_DIVISION_FILE} and no geocoded records with a division; "
                       "pass the candidate neighborhoods by name (--candidates) or use --area city.")


#: `first_division_names` from the First Division file, per units (`allocation.units_digest`)
#: and file (sha256 of its bytes): a year-by-year report asks it once per year and step (~15 ms
#: each: projecting and intersecting 90 units).
_FIRST_DIVISION_MEMO: dict[tuple[str, str], list[str]] = {}


def study_area(neighborhoods: gpd.GeoDataFrame, names: Sequence[str]) -> shapely.Geometry:
    """Union (EPSG:2246) of the named units."""
    parts = neighborhoods[neighborhoods["NH_NAME"].isin(list(names))].to_crs(settings.CRS_PROJECTED)
    if parts.empty:
        raise GeoLeadError(f"none of the study-area neighborhoods {list(names)} is in the neighborhoods file")
    return parts.union_all()


# --- grid --------------------------------------------------------------------------------
def make_grid(area: shapely.Geometry, cell_ft: float) -> gpd.GeoDataFrame:
    """Square cells of `cell_ft` feet covering `area` (EPSG:2246), clipped to it.

    Columns: cell_id, x_ft, y_ft (centre of the unclipped cell), area_sqft (clipped), geometry.
    The clipping (every cell intersected with `area`) is kept across runs under the sha256
    of `area`'s WKB, `cell_ft` and this module's source (`geo_lead.result_cache`, kind
    ``grid``); the cells are stored as WKB, so a reused grid is the computed one exactly.
    """
    if cell_ft <= 0:
        raise GeoLeadError(f"grid cell size must be positive, got {cell_ft} ft")
    minx, miny, maxx, maxy = area.bounds
    xs = np.arange(math.floor(minx / cell_ft) * cell_ft, maxx, cell_ft)
    ys = np.arange(math.floor(miny / cell_ft) * cell_ft, maxy, cell_ft)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    keep, clipped = _clipped_cells(area, cell_ft, gx, gy)
    grid = gpd.GeoDataFrame({
        "cell_id": np.arange(len(keep)),
        "x_ft": gx[keep] + cell_ft / 2, "y_ft": gy[keep] + cell_ft / 2,
        "area_sqft": shapely.area(clipped),
    }, geometry=clipped, crs=settings.CRS_PROJECTED)
    return grid


#: `geo_lead.result_cache` kind of `make_grid`'s clipped cells.
GRID_CACHE = "grid"


def _clipped_cells(area: shapely.Geometry, cell_ft: float, gx: np.ndarray,
                   gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the cells (lower-left corners `gx`, `gy`) that keep some of `area`, and
    their parts inside it; reused across runs for the same `area` and `cell_ft`."""
    from geo_lead import result_cache

    key = result_cache.digest([GRID_CACHE, _kde_version(), f"geos={shapely.geos_version_string}",
                               repr(float(cell_ft)), shapely.to_wkb(area)])
    hit = result_cache.read(GRID_CACHE, key)
    if hit is not None and len(hit.get("keep", ())) == len(hit.get("wkb", ())):
        keep = np.asarray(hit["keep"], dtype=np.int64)
        if len(keep) == 0 or int(keep.max()) < len(gx):
            return keep, shapely.from_wkb(np.asarray(hit["wkb"], dtype=object))
    boxes = shapely.box(gx, gy, gx + cell_ft, gy + cell_ft)
    clipped = shapely.intersection(boxes, area)
    keep = np.flatnonzero(~shapely.is_empty(clipped) & (shapely.area(clipped) > 0))
    clipped = clipped[keep]
    result_cache.write(GRID_CACHE, key, {"keep": keep.tolist(),
                                         "wkb": [w.hex() for w in shapely.to_wkb(clipped)]})
    return keep, clipped


def grid_counts(points: gpd.GeoDataFrame, grid: gpd.GeoDataFrame, cell_ft: float) -> np.ndarray:
    """Weighted count of `points` per grid cell (points outside the grid are not counted)."""
    out = np.zeros(len(grid))
    if points.empty or grid.empty:
        return out
    # make_grid aligns cells on multiples of cell_ft, so absolute (col, row) name a cell.
    key = pd.MultiIndex.from_arrays([np.floor(grid["x_ft"].to_numpy() / cell_ft).astype(np.int64),
                                     np.floor(grid["y_ft"].to_numpy() / cell_ft).astype(np.int64)])
    pcol = np.floor(points.geometry.x.to_numpy() / cell_ft).astype(np.int64)
    prow = np.floor(points.geometry.y.to_numpy() / cell_ft).astype(np.int64)
    pos = key.get_indexer(pd.MultiIndex.from_arrays([pcol, prow]))
    w = points["weight"].to_numpy(float) if "weight" in points else np.ones(len(points))
    inside = pos >= 0
    np.add.at(out, pos[inside], w[inside])
    return out


# --- kernel density ----------------------------------------------------------------------
def bandwidth_ft(xy: np.ndarray, method: str = "cv") -> float:
    """KDE bandwidth in feet for projected points `xy` (n, 2).

    ``scott`` / ``silverman``: sigma * n^(-1/6) with sigma = sqrt(mean of the two coordinate
    variances) (the two rules coincide in two dimensions). ``cv``: the bandwidth among
    `CV_GRID` log-spaced multiples (0.2x..3x) of Scott's that maximises the leave-one-out
    log-likelihood (`loo_log_likelihood`); below 10 points ``cv`` falls back to Scott.
    """
    n = len(xy)
    if n < 2:
        raise GeoLeadError(f"kernel density needs at least 2 points, got {n}")
    sigma = float(np.sqrt(np.mean(np.var(xy, axis=0, ddof=1))))
    scott = sigma * n ** (-1.0 / 6.0)
    if method in ("scott", "silverman") or (method == "cv" and n < 10):
        return scott
    if method == "cv":
        # Leave-one-out likelihood cost grows with n^2: a seeded subsample of at most
        # CV_MAX_POINTS places the bandwidth well enough (then scaled to the full n by the
        # n^(-1/6) rate, as Scott's rule would scale it).
        sample = xy
        if n > CV_MAX_POINTS:
            pick = np.random.default_rng(settings.RANDOM_SEED).choice(n, CV_MAX_POINTS, replace=False)
            sample = xy[pick]
        candidates = scott * np.logspace(np.log10(0.2), np.log10(3.0), CV_GRID)
        ll = loo_log_likelihood(sample, candidates)
        best = float(candidates[int(np.argmax(ll))])
        return best * (len(sample) / n) ** (1.0 / 6.0)
    raise GeoLeadError(f"unknown bandwidth method {method!r}; use scott, silverman or cv")


def loo_log_likelihood(xy: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Leave-one-out log-likelihood of a 2-D Gaussian KDE for each bandwidth (feet).

    sum_i log( 1/(n-1) sum_{j != i} N(x_i; x_j, h^2 I) ), computed from the pairwise squared
    distances once; the bandwidth maximising it is the likelihood cross-validation choice.
    Each row's log-sum-exp is `row_logsumexp` (scipy's arithmetic, bit for bit).
    """
    n = len(xy)
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)  # leave each point out of its own density
    neg_d2 = -d2
    log_k = np.empty_like(d2)
    work = np.empty_like(d2)
    out = np.empty(len(bandwidths))
    for k, h in enumerate(bandwidths):
        np.divide(neg_d2, 2 * h * h, out=log_k)  # = -d2 / (2 h^2): negation is exact
        np.subtract(log_k, np.log(2 * np.pi * h * h), out=log_k)
        out[k] = float(np.sum(row_logsumexp(log_k, work) - np.log(n - 1)))
    return out


def row_logsumexp(a: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` of a 2-D float array with the arithmetic of
    ``scipy.special.logsumexp(a, axis=1)`` (scipy 1.17), so equal to it bit for bit, in fewer
    passes over `a` and without its copies.

    As scipy does: each row's maximum M and the number m of entries equal to it are taken out
    of the sum, s = sum of exp(a - M) over the other entries (summed in place of those entries,
    which count 0, so numpy adds the same array in the same order), and the result is
    log1p(s / m) + log(m) + M; a row whose result is not finite (every entry -inf) gets
    log(sum(exp(a))). `work`: a scratch array of `a`'s shape (overwritten), to save an
    allocation per call.

    Raises
    ------
    ValueError
        When `a` is not 2-D or `work` is not of its shape.
    """
    if a.ndim != 2 or (work is not None and work.shape != a.shape):
        raise ValueError(f"row_logsumexp needs a 2-D array (and scratch of its shape), got {a.shape}")
    buf = np.empty_like(a, dtype=float) if work is None else work
    a_max = a.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.subtract(a, a_max, out=buf)
        at_max = buf == 0  # a - M is 0 exactly where a == M (finite M)
        m = at_max.sum(axis=1, keepdims=True, dtype=float)
        np.exp(buf, out=buf)
        np.copyto(buf, 0.0, where=at_max)
        s = buf.sum(axis=1, keepdims=True)
        s = np.where(s == 0, s, s / m)
        out = np.log1p(s) + np.log(m) + a_max
        bad = ~np.isfinite(out[:, 0])
        if bad.any():
            out[bad, 0] = np.log(np.sum(np.exp(a[bad]), axis=1))
    return out[:, 0]


def kde_surface(points: gpd.GeoDataFrame, area: shapely.Geometry, cell_ft: float = 500.0,
                bandwidth: float | None = None, method: str = "cv",
                hotspot_sd: float = 2.0) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Gaussian kernel density of projected `points` on a grid clipped to `area`.

    The bandwidth and the density are pure functions of the points (x, y, weight), the grid
    and the bandwidth settings; each is kept across runs under the sha256 of exactly those
    (`cached_bandwidth_ft`, `kde_density`), so unchanged inputs give the same surface
    without the fit, and any changed point, weight or setting recomputes it in full.

    Returns
    -------
    surface, info
        ``surface`` (EPSG:2246): cell_id, density_per_sqmi (expected weighted records per
        square mile), is_hotspot, bandwidth_ft. ``info``: bandwidth_ft, method, threshold.
    """
    xy = np.column_stack([points.geometry.x, points.geometry.y])
    w = points["weight"].to_numpy(float) if "weight" in points else np.ones(len(points))
    bw = float(bandwidth) if bandwidth else cached_bandwidth_ft(xy, method)
    grid = make_grid(area, cell_ft)
    centres = np.column_stack([grid.geometry.centroid.x, grid.geometry.centroid.y])
    per_sqft = kde_density(xy, w, bw, centres)  # a probability density per square foot
    density = per_sqft * w.sum() * settings.SQFT_PER_SQMI
    threshold = float(density.mean() + hotspot_sd * density.std())
    surface = grid[["cell_id", "geometry"]].copy()
    surface["density_per_sqmi"] = density
    surface["is_hotspot"] = density > threshold
    surface["bandwidth_ft"] = bw
    info = {"bandwidth_ft": bw, "bandwidth_method": "given" if bandwidth else method,
            "cell_ft": cell_ft, "hotspot_rule": f"density > mean + {hotspot_sd:g} sd",
            "threshold_per_sqmi": threshold, "hotspot_cells": int(surface["is_hotspot"].sum()),
            "cells": len(surface), "points": len(points), "weighted_points": float(w.sum())}
    return surface, info


#: `geo_lead.result_cache` kinds of the KDE's bandwidth and density.
KDE_BANDWIDTH_CACHE, KDE_DENSITY_CACHE = "kde_bandwidth", "kde_surface"


@functools.cache
def _kde_version() -> str:
    """This module's source, the CV settings and the libraries the fit runs on."""
    from geo_lead import result_cache

    return "|".join((result_cache.source_version(__file__), f"seed={settings.RANDOM_SEED}",
                     result_cache.library_versions("numpy", "scipy")))


def _points_key(kind: str, arrays: Sequence[np.ndarray], *settings_text: str) -> str:
    from geo_lead import result_cache

    return result_cache.digest([kind, _kde_version(), *settings_text,
                                *(np.ascontiguousarray(a, dtype=float).tobytes() for a in arrays)])


def cached_bandwidth_ft(xy: np.ndarray, method: str = "cv") -> float:
    """`bandwidth_ft`, reused across runs when `xy` and `method` are unchanged.

    Only the likelihood cross-validation (``cv``) is cached: key = sha256 of the points'
    coordinates (not their weights: the CV does not read them), the method, the CV settings
    and the code; any other point set computes it afresh.
    """
    from geo_lead import result_cache

    if method != "cv" or len(xy) < 10:
        return bandwidth_ft(xy, method)
    key = _points_key(KDE_BANDWIDTH_CACHE, [xy], method, f"{CV_MAX_POINTS}|{CV_GRID}")
    hit = result_cache.read(KDE_BANDWIDTH_CACHE, key)
    if hit is not None:
        return float(hit["bandwidth_ft"])
    bw = bandwidth_ft(xy, method)
    result_cache.write(KDE_BANDWIDTH_CACHE, key, {"bandwidth_ft": bw})
    return bw


def distinct_points(xy: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `xy` (n, 2) (identical floats; sorted lexicographically) and the
    sum of `weights` over the rows at each.

    Block-point geocoding puts many records on one point: a weighted KDE of the distinct
    points with these summed weights is the KDE of the records (its density is a weighted sum
    over points, normalised by the total weight), equal to it to rounding.

    Raises
    ------
    ValueError
        When `xy` is not (n, 2) or `weights` not (n,).
    """
    if xy.ndim != 2 or xy.shape[1] != 2 or weights.shape != (len(xy),):
        raise ValueError(f"distinct_points needs xy (n, 2) and weights (n,), got {xy.shape} and {weights.shape}")
    points, inverse = np.unique(xy, axis=0, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(points))
    return points, summed


def kde_density(xy: np.ndarray, weights: np.ndarray, bandwidth: float, at: np.ndarray) -> np.ndarray:
    """Weighted Gaussian KDE of `xy` at the points `at`: a probability density per square unit
    of the coordinates (what scikit-learn's ``KernelDensity(kernel="gaussian")`` estimates).

    Computed by `gaussian_density` on `distinct_points` (each distinct point once, weighted by
    the sum of its records' weights), so its cost follows the distinct points, not the
    records; equal to the sum over every record to rounding (float summation order).
    Reused across runs when the per-record points, weights, bandwidth and evaluation points
    are unchanged (key = sha256 of those arrays as given, the code and the libraries'
    versions: a hit is the value this computation gives for exactly those arrays).
    """
    from geo_lead import result_cache

    key = _points_key(KDE_DENSITY_CACHE, [xy, weights, at], repr(float(bandwidth)))
    hit = result_cache.read(KDE_DENSITY_CACHE, key)
    if hit is not None and len(hit.get("density") or ()) == len(at):
        log.info("kernel density reused (points, weights, grid and bandwidth sha256 %s)", key[:12])
        return np.asarray(hit["density"], dtype=float)
    points, summed = distinct_points(np.asarray(xy, dtype=float), np.asarray(weights, dtype=float))
    density = gaussian_density(points, summed, bandwidth, np.asarray(at, dtype=float))
    result_cache.write(KDE_DENSITY_CACHE, key, {"density": density.tolist()})
    return density


#: Kernel values `gaussian_density` holds at once (8 bytes each, two arrays of them).
KDE_CHUNK_VALUES = 1 << 21


def gaussian_density(points: np.ndarray, weights: np.ndarray, bandwidth: float, at: np.ndarray) -> np.ndarray:
    """sum_j w_j N(a; x_j, h^2 I) / sum_j w_j at each row a of `at`: the weighted 2-D Gaussian
    kernel density (h = `bandwidth`), per square unit, every point summed (no tree).

    Rows of `at` are taken in chunks of at most `KDE_CHUNK_VALUES` kernel values (memory
    bounded whatever the sizes). Each row is summed relative to its nearest point
    (exp(-(d^2 - d_min^2) / 2h^2), the largest term 1) and scaled back in logs, as
    scikit-learn returns log densities, so a cell far from every point underflows only where
    its density itself does. Agrees with scikit-learn's ``KernelDensity.score_samples``
    (exponentiated) to its own accuracy (~1e-9 relative; tests/test_hotspots_kde_grouped.py).

    Raises
    ------
    ValueError
        When there is no point, a weight is negative or the bandwidth is not positive.
    """
    h = float(bandwidth)
    w = np.asarray(weights, dtype=float)
    if len(points) == 0 or (w < 0).any() or not h > 0:
        raise ValueError(f"gaussian_density needs points, non-negative weights and a positive bandwidth "
                         f"(got {len(points)} points, bandwidth {bandwidth})")
    px, py = np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
    scale = -1.0 / (2.0 * h * h)
    log_norm = -np.log(2.0 * np.pi) - 2.0 * np.log(h) - np.log(w.sum())  # 2-D normal, total weight
    out = np.empty(len(at))
    step = max(1, KDE_CHUNK_VALUES // len(points))
    for lo in range(0, len(at), step):
        a = at[lo:lo + step]
        d2 = np.subtract.outer(a[:, 0], px)
        np.square(d2, out=d2)
        dy = np.subtract.outer(a[:, 1], py)
        np.square(dy, out=dy)
        d2 += dy
        nearest = d2.min(axis=1)
        d2 -= nearest[:, None]
        d2 *= scale
        np.exp(d2, out=d2)
        d2 *= w
        with np.errstate(divide="ignore"):  # a row whose weights are all 0: density 0
            out[lo:lo + step] = np.log(d2.sum(axis=1)) + nearest * scale + log_norm
    return np.exp(out)


# --- Getis-Ord Gi* -----------------------------------------------------------------------
def two_sided_p(p_one_sided: np.ndarray) -> np.ndarray:
    """Two-sided pseudo p-value of "hot or cold": min(1, 2 x the one-sided p of the
    smaller tail (esda's ``p_sim``))."""
    return np.minimum(1.0, 2.0 * np.asarray(p_one_sided, dtype=float))


def smallest_p(permutations: int) -> float:
    """The smallest two-sided pseudo p-value `permutations` permutations can give: 2 / (R + 1)."""
    return min(1.0, 2.0 / (permutations + 1))


def attainable_levels(n_tests: int, permutations: int,
                      levels: Sequence[float] = FDR_LEVELS) -> tuple[float, ...]:
    """The FDR levels q a unit can reach with `permutations` permutations among `n_tests` tests.

    Benjamini-Hochberg's lowest cut-off is q / m (a unit significant on its own); a level is
    attainable when the smallest two-sided p, 2 / (R + 1), is below it.
    """
    m = max(int(n_tests), 1)
    return tuple(q for q in levels if smallest_p(permutations) < q / m)


def permutations_for(n_tests: int, levels: Sequence[float] = FDR_LEVELS,
                     minimum: int = settings.PERMUTATIONS, maximum: int = MAX_PERMUTATIONS) -> int:
    """Permutations that make the strictest of `levels` attainable for `n_tests` tests.

    R = ceil(2 m / q_min), so 2 / (R + 1) < q_min / m; at least `minimum`, at most `maximum`
    (a level still out of reach at `maximum` is not offered, see `attainable_levels`).
    """
    need = math.ceil(2 * max(int(n_tests), 1) / min(levels)) if levels else minimum
    return int(min(max(minimum, need), maximum))


def gistar(y: np.ndarray, w: Any, permutations: int = settings.PERMUTATIONS,
           seed: int = settings.RANDOM_SEED) -> pd.DataFrame:
    """Gi* z-scores and pseudo p-values with esda (binary weights including self).

    Parameters
    ----------
    y
        Values per unit.
    w
        A libpysal ``W`` (or ``Graph``) or `geo_lead.gistar_local.BinaryWeights` over the same
        units (binary neighbour lists are computed on without esda, `gistar_local`).
    permutations
        Conditional permutations R (0: the analytical normal p-values instead). Above
        `SIMULATION_VALUES_MAX` / n they are drawn in batches, batch i with seed ``seed + i``
        (one batch: exactly esda's draws for `seed`).

    Returns
    -------
    pandas.DataFrame
        gi_z (analytical z of Gi*); p_sim (one-sided pseudo-p in the direction of z,
        (M+1)/(R+1), `directed_pseudo_p`); p_two_sided (what the labels test: `two_sided_p`
        of the smaller tail's pseudo-p, as esda folds ``p_sim``, ties counted as extreme on
        both sides; with R = 0, of esda's normal ``p_norm``).
    """
    y = np.asarray(y, dtype=float)
    from geo_lead import result_cache

    key = _gistar_key(y, w, permutations, seed)
    hit = result_cache.read(GISTAR_CACHE, key) if key else None
    if hit is not None and all(len(hit.get(c, ())) == len(y) for c in GISTAR_COLUMNS):
        return pd.DataFrame({c: np.asarray(hit[c], dtype=float) for c in GISTAR_COLUMNS})
    out = _gistar(y, w, permutations, seed)
    if key:
        result_cache.write(GISTAR_CACHE, key, {c: out[c].to_numpy(float).tolist() for c in GISTAR_COLUMNS})
    return out


#: `geo_lead.result_cache` kind of `gistar`'s statistics, and their columns.
GISTAR_CACHE = "gistar"
GISTAR_COLUMNS: tuple[str, ...] = ("gi_z", "p_sim", "p_two_sided")


def _gistar_key(y: np.ndarray, w: Any, permutations: int, seed: int) -> str | None:
    """sha256 of y, the weights (ids, neighbours and weights in ``w.id_order``), R, seed, the
    package's code and esda/libpysal/numpy/scipy/numba versions; None for weights without
    ``neighbors``/``weights``/``id_order`` (not cached)."""
    from geo_lead import result_cache

    try:
        ids = list(w.id_order)
        neigh = [[str(i), [str(j) for j in w.neighbors[i]], [repr(float(x)) for x in w.weights[i]]] for i in ids]
    except (AttributeError, KeyError, TypeError):
        return None
    return result_cache.digest([GISTAR_CACHE, result_cache.code_version(), result_cache.settings_version(),
                                result_cache.library_versions("esda", "libpysal", "numpy", "scipy", "numba"),
                                y.tobytes(), json.dumps(neigh), f"R={int(permutations)}", f"seed={int(seed)}",
                                f"max={SIMULATION_VALUES_MAX}"])


def _gistar(y: np.ndarray, w: Any, permutations: int, seed: int) -> pd.DataFrame:
    """`gistar` computed (no cache)."""
    from geo_lead import gistar_crand
    from geo_lead.gistar_local import BinaryWeights, g_local_star, p_norm

    # z and G: esda's G_Local.calc in numpy on the weights esda would build
    # (`gistar_local`, bit-identical), or esda itself for weights it would read otherwise.
    binary = BinaryWeights.from_w(w)
    if binary is not None:
        observed, zs = g_local_star(y, binary)
        adjacency = binary.star_sparse
    else:
        g = _g_local(y, w, 0, seed)
        observed, zs, adjacency = np.asarray(g.Gs, float), np.asarray(g.Zs, dtype=float), g.w.sparse
    z = np.nan_to_num(np.asarray(zs, dtype=float))
    if not permutations:
        p = p_norm(zs)  # esda's p_norm
        return pd.DataFrame({"gi_z": z, "p_sim": p, "p_two_sided": two_sided_p(p)})
    batch = max(1, min(permutations, SIMULATION_VALUES_MAX // max(len(y), 1)))
    # The permutations are esda's, drawn and simulated by `gistar_crand` (bit-identical,
    # tests/test_gistar_crand.py) unless esda draws with numba or no unit has a neighbour:
    # then esda's own crand decides.
    ours = gistar_crand.replicates_esda() and gistar_crand.has_neighbours(adjacency)
    esda_w = binary.to_w() if not ours and isinstance(w, BinaryWeights) else w
    up = down = 0
    done, i = 0, 0
    while done < permutations:
        r = min(batch, permutations - done)
        if ours:
            u, d = gistar_crand.extreme_counts(y, adjacency, observed, r, seed + i)
        else:
            u, d = _extreme_counts(observed, np.asarray(_g_local(y, esda_w, r, seed + i).rGs, float))
        up, down, done, i = up + u, down + d, done + r, i + 1
    p = np.where(z > 0, (up + 1) / (permutations + 1), np.where(z < 0, (down + 1) / (permutations + 1), 1.0))
    # esda's p_sim folds to the smaller tail; so does the two-sided p (ties count on both).
    smaller = (np.minimum(up, down) + 1) / (permutations + 1)
    return pd.DataFrame({"gi_z": z, "p_sim": p, "p_two_sided": two_sided_p(smaller)})


#: Permutations x units drawn in one batch by `gistar` (batch i seeded ``seed + i``).
SIMULATION_VALUES_MAX = 20_000_000


def _g_local(y: np.ndarray, w: Any, permutations: int, seed: int) -> Any:
    import esda

    with warnings.catch_warnings():
        # esda warns about islands (kept: with self-weights an island is its own Gi*) and,
        # from crand, about a future change of the default alternative hypothesis; G_Local
        # has no argument to choose it yet (we compute the directed p-value ourselves).
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # z_sim divides by a zero spread when every permutation ties; we do not use z_sim.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        return esda.G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed,
                            keep_simulations=bool(permutations), n_jobs=1)


def _extreme_counts(observed: np.ndarray, simulated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit #(sim >= obs) and #(sim <= obs), ties counted on both sides (within
    `gistar_crand.TIE_TOLERANCE`, as `gistar_crand.extreme_counts` counts them)."""
    from geo_lead.gistar_crand import TIE_TOLERANCE

    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(observed))[:, None]
    return ((simulated >= observed[:, None] - tol).sum(axis=1),
            (simulated <= observed[:, None] + tol).sum(axis=1))


def directed_pseudo_p(observed: np.ndarray, simulated: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(M + 1) / (R + 1), M counting permuted values at least as extreme *in z's direction*.

    esda's ``p_sim`` counts #(sim >= obs) and folds it when above half, so on the low side a
    tie counts as *not* extreme: on a sparse count grid a cell of 0 among 0s (every
    permutation ties) gets p = 0.001, a spurious cold spot. Here ties always count as at
    least as extreme: up = #(sim >= obs) (esda's value when z > 0), down = #(sim <= obs);
    z = 0 -> p = 1.
    """
    r = simulated.shape[1]
    up, down = _extreme_counts(observed, simulated)
    return np.where(z > 0, (up + 1) / (r + 1), np.where(z < 0, (down + 1) / (r + 1), 1.0))


def fdr_cutoff(p: np.ndarray, q: float) -> float:
    """Benjamini-Hochberg's p-value cut-off at FDR level `q` for the p-values `p`: exactly
    ``esda.fdr(p, q)`` (so labels need no esda import when Gi* is reused).

    The largest k/m x q with p_(k) < k/m x q (p_(k) the k-th smallest of the m values), or the
    Bonferroni bound q / m when no p-value passes. `p` must be non-empty (`ValueError`).
    """
    p = np.asarray(p, dtype=float)
    m = len(p)
    if m == 0:
        raise ValueError("fdr_cutoff needs at least one p-value")
    p_desc = np.sort(p)[::-1]
    cut = np.arange(m, 0, -1) * q / m
    passing = np.flatnonzero(p_desc < cut)
    return float(cut[passing[0]]) if len(passing) else float(q / m)


def fdr_label(direction: str, q: float) -> str:
    """A Gi* label named by its Benjamini-Hochberg level: ``hot, FDR 5%``."""
    return f"{direction}, FDR {q * 100:g}%"


def label_gistar(z: np.ndarray, p: np.ndarray, levels: Sequence[float] = FDR_LEVELS,
                 fdr: bool = True) -> list[str]:
    """``hot, FDR 1%`` .. ``cold, FDR 10%`` or ``not significant``.

    Parameters
    ----------
    z
        Gi* z-scores (their sign gives hot or cold).
    p
        Two-sided pseudo p-values (`two_sided_p`).
    levels
        FDR levels q offered (`attainable_levels`); a unit takes the strictest it passes.
    fdr
        A unit passes q when p <= ``esda.fdr(p, q)`` (Benjamini-Hochberg); without, p <= q.
    """
    z, p = np.asarray(z, float), np.asarray(p, float)
    labels = np.full(len(p), NOT_SIGNIFICANT, dtype=object)
    for q in sorted(levels, reverse=True):  # weakest first, stronger overwrite
        cut = fdr_cutoff(p, q) if fdr and len(p) else q
        sig = p <= cut
        labels[sig & (z > 0)] = fdr_label("hot", q)
        labels[sig & (z < 0)] = fdr_label("cold", q)
    return labels.tolist()


def gistar_labels(levels: Sequence[float] = FDR_LEVELS) -> list[str]:
    """Every label `label_gistar` can give for `levels`: hot strongest first, then not
    significant, then cold weakest first (a legend's order)."""
    ordered = sorted(levels)
    return ([fdr_label("hot", q) for q in ordered] + [NOT_SIGNIFICANT]
            + [fdr_label("cold", q) for q in reversed(ordered)])


def _significance(n_tests: int, permutations: int | None) -> tuple[int, tuple[float, ...]]:
    """(R, levels offered): R chosen by `permutations_for` when None, else as given."""
    r = permutations_for(n_tests) if permutations is None else int(permutations)
    return r, attainable_levels(n_tests, r) if r else FDR_LEVELS


def _lattice_gistar(lattice: tuple[str, str], y: np.ndarray, weights: Callable[[], Any], permutations: int,
                    seed: int) -> pd.DataFrame:
    """`gistar` of `y` on the weights `weights()` builds, reused across runs by what builds them
    (`lattice`: the weights' kind and a digest of their geometry and settings), y, R and seed,
    so a reused answer needs neither the weights nor libpysal (kind ``gistar_lattice``)."""
    from geo_lead import result_cache

    y = np.asarray(y, dtype=float)
    key = result_cache.digest([GISTAR_LATTICE_CACHE, result_cache.code_version(), result_cache.settings_version(),
                               result_cache.library_versions("esda", "libpysal", "numpy", "scipy", "numba"), *lattice,
                               y.tobytes(), f"R={int(permutations)}", f"seed={int(seed)}"])
    hit = result_cache.read(GISTAR_LATTICE_CACHE, key)
    if hit is not None and all(len(hit.get(c, ())) == len(y) for c in GISTAR_COLUMNS):
        return pd.DataFrame({c: np.asarray(hit[c], dtype=float) for c in GISTAR_COLUMNS})
    out = gistar(y, weights(), permutations, seed)
    result_cache.write(GISTAR_LATTICE_CACHE, key, {c: out[c].to_numpy(float).tolist() for c in GISTAR_COLUMNS})
    return out


#: `geo_lead.result_cache` kind of `_lattice_gistar`'s statistics.
GISTAR_LATTICE_CACHE = "gistar_lattice"


def gistar_neighborhoods(neighborhoods: gpd.GeoDataFrame, points: gpd.GeoDataFrame,
                         permutations: int | None = None,
                         seed: int = settings.RANDOM_SEED) -> gpd.GeoDataFrame:
    """Gi* of weighted record density (per sq mi) on neighborhood units, queen contiguity.

    Density, not count, because the units' areas differ tenfold. All units take part (named
    or not) so the lattice has no holes. Islands keep only their self-weight. `permutations`
    None: `permutations_for` the number of units. The layer's ``attrs`` hold
    ``permutations`` and ``fdr_levels`` (the levels offered, `attainable_levels`).
    """
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    unit = units_of(points, neighborhoods)
    count = points["weight"].groupby(unit.to_numpy()).sum().reindex(proj["NH_NAME"]).fillna(0.0).to_numpy()
    area_sqmi = proj.geometry.area.to_numpy() / settings.SQFT_PER_SQMI
    density = count / area_sqmi
    r, levels = _significance(len(proj), permutations)
    from geo_lead import result_cache

    lattice = result_cache.frame_digest(proj, ["NH_NAME", proj.geometry.name])
    stats = _lattice_gistar(("queen", lattice), density, lambda: queen_weights(proj, lattice), r, seed)
    out = gpd.GeoDataFrame({"neighborhood": proj["NH_NAME"], "count": count,
                            "density_per_sqmi": density, "gi_z": stats["gi_z"],
                            "p_sim": stats["p_sim"], "p_two_sided": stats["p_two_sided"],
                            "label": label_gistar(stats["gi_z"], stats["p_two_sided"], levels)},
                           geometry=proj.geometry, crs=settings.CRS_PROJECTED)
    out.attrs.update(permutations=r, fdr_levels=list(levels))
    return out


def queen_weights(units: gpd.GeoDataFrame, lattice: str) -> Any:
    """The neighbours of ``libpysal.weights.Queen.from_dataframe(units, use_index=False)`` as
    `gistar_local.BinaryWeights` (same ids, neighbour order and ``sparse`` matrix), kept across
    runs (kind ``queen_weights``) under `lattice` (a digest of every geometry and name of
    `units`, `gistar_neighborhoods`' lattice key), the package's code and the
    libpysal/shapely/geopandas versions: a reused answer needs neither the contiguity search
    nor libpysal. (Weights that are not all 1 would stay a libpysal ``W``; queen's are 1.)"""
    from geo_lead import result_cache
    from geo_lead.gistar_local import BinaryWeights

    key = result_cache.digest([QUEEN_WEIGHTS_CACHE, result_cache.code_version(),
                               result_cache.library_versions("libpysal", "shapely", "geopandas"),
                               lattice, f"n={len(units)}"])
    hit = result_cache.read(QUEEN_WEIGHTS_CACHE, key)
    if hit is not None and len(hit.get("ids", ())) == len(units):
        ids = [int(i) for i in hit["ids"]]
        neighbors = {i: [int(j) for j in n] for i, n in zip(ids, hit["neighbors"], strict=True)}
        weights = {i: [float(x) for x in v] for i, v in zip(ids, hit["weights"], strict=True)}
        if _all_ones(weights):
            return BinaryWeights(neighbors, ids)
        from libpysal.weights import W

        return W(neighbors, weights, id_order=ids, silence_warnings=True)
    from libpysal.weights import Queen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        w = Queen.from_dataframe(units, use_index=False)
    ids = [int(i) for i in w.id_order]
    result_cache.write(QUEEN_WEIGHTS_CACHE, key, {
        "ids": ids, "neighbors": [[int(j) for j in w.neighbors[i]] for i in ids],
        "weights": [[float(x) for x in w.weights[i]] for i in ids]})
    binary = BinaryWeights.from_w(w)
    return binary if binary is not None and _all_ones(w.weights) else w


def _all_ones(weights: dict[Any, list[float]]) -> bool:
    """True when every weight is 1 (binary weights: `gistar_local.BinaryWeights` holds them)."""
    return all(x == 1.0 for v in weights.values() for x in v)


#: `geo_lead.result_cache` kind of `queen_weights`.
QUEEN_WEIGHTS_CACHE = "queen_weights"


def gistar_grid(points: gpd.GeoDataFrame, area: shapely.Geometry, cell_ft: float = 1000.0,
                band_ft: float | None = None, permutations: int | None = None,
                seed: int = settings.RANDOM_SEED) -> gpd.GeoDataFrame:
    """Gi* of weighted record counts on a grid of `cell_ft` cells clipped to `area`.

    Neighbours are cells whose (unclipped) centres lie within `band_ft` (default 1.5 cells:
    the 8 surrounding cells); counts, not densities, since the cells are equal-sized
    (edge cells clipped by the study-area boundary keep their full-cell role).
    `permutations` and the layer's ``attrs`` as in `gistar_neighborhoods`.
    """
    grid = make_grid(area, cell_ft)
    counts = grid_counts(points, grid, cell_ft)
    band = float(band_ft) if band_ft else 1.5 * cell_ft
    centres = np.column_stack([grid["x_ft"], grid["y_ft"]])
    def weights() -> Any:
        from geo_lead.gistar_local import distance_band  # libpysal's DistanceBand(binary=True)

        return distance_band(centres, band)

    r, levels = _significance(len(grid), permutations)
    from geo_lead import result_cache

    lattice = result_cache.digest([np.ascontiguousarray(centres, dtype=float).tobytes(), repr(band)])
    stats = _lattice_gistar(("distance_band", lattice), counts, weights, r, seed)
    out = grid[["cell_id", "geometry"]].copy()
    out["count"] = counts
    out["gi_z"] = stats["gi_z"].to_numpy()
    out["p_sim"] = stats["p_sim"].to_numpy()
    out["p_two_sided"] = stats["p_two_sided"].to_numpy()
    out["label"] = label_gistar(out["gi_z"], out["p_two_sided"], levels)
    out["band_ft"] = band
    out.attrs.update(permutations=r, fdr_levels=list(levels))
    return out


# --- PAI / PEI ----------------------------------------------------------------------------
def pai(n: float, n_total: float, area: float, area_total: float) -> float:
    """Predictive Accuracy Index (n/N)/(a/A); NaN when N or a is zero."""
    if n_total <= 0 or area <= 0 or area_total <= 0:
        return float("nan")
    return (n / n_total) / (area / area_total)


def max_capture(cell_counts: np.ndarray, cell_areas: np.ndarray, area: float) -> float:
    """Most records any set of cells of total area `area` captures (greedy by density).

    Cells are taken densest first; the last one counts pro rata to the area left, which makes
    this the exact optimum of the fractional problem Chainey's PEI divides by.
    """
    counts, areas = np.asarray(cell_counts, float), np.asarray(cell_areas, float)
    order = np.argsort(-(counts / np.where(areas > 0, areas, np.inf)), kind="stable")
    left, got = float(area), 0.0
    for i in order:
        if left <= 0:
            break
        take = min(areas[i], left)
        got += counts[i] * take / areas[i] if areas[i] > 0 else 0.0
        left -= take
    return got


def pei(n: float, cell_counts: np.ndarray, cell_areas: np.ndarray, area: float) -> float:
    """Predictive Efficiency Index: n / n_max for the same area (NaN when n_max is 0)."""
    best = max_capture(cell_counts, cell_areas, area)
    return float(n / best) if best > 0 else float("nan")


# --- the store edge ----------------------------------------------------------------------
#: Record columns the hotspots read (plus the indicator flag): reading only these instead of
#: every text column of a million records saves seconds and gigabytes.
HOTSPOT_COLUMNS: tuple[str, ...] = ("source", "reported_at", "occurred_at", "neighborhood", "boundary_units",
                                    "lon", "lat")


def store_columns(store: Store, columns: Sequence[str], indicator: str) -> list[str]:
    """`columns` + `indicator` (+ ``division`` when the First Division must come from data)."""
    extra = () if settings.FIRST_DIVISION_FILE.exists() else ("division",)
    return list(dict.fromkeys([*columns, indicator, *extra]))


def records_from_store(store: Store, neighborhoods: gpd.GeoDataFrame | None = None,
                       columns: Sequence[str] | None = None,
                       records: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Geocoded records from the store as EPSG:4326 points with a ``neighborhood`` column.

    `columns`: the record columns to read (`geo_lead.spatial_join.records_gdf`; default: all;
    ``lon``/``lat`` always). `records`: the store's records already read (`records_gdf`, e.g.
    once per `geo-lead run` for every stage); not re-read. See `located_records`.
    """
    if records is None:
        from geo_lead.spatial_join import records_gdf

        records = records_gdf(store, None if columns is None else list(columns))
    return located_records(records, neighborhoods, str(store.path))


def located_records(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame | None,
                    source: str) -> gpd.GeoDataFrame:
    """`records` (points) with a ``neighborhood`` column of text; reads no store.

    Raises `GeoLeadError` naming `source` (the store's path) when no record has a point. An
    absent or all-empty ``neighborhood`` is filled by joining the points to `neighborhoods`
    (default: `boundaries.load_neighborhoods`). Modifies and returns `records`.
    """
    gdf = records
    if not gdf.geometry.notna().any():
        raise GeoLeadError(f"{source}: no record is geocoded yet; run `geo-lead geocode` first.")
    if "neighborhood" not in gdf or (gdf["neighborhood"].fillna("").astype(str) == "").all():
        from geo_lead.boundaries import load_neighborhoods

        nh = neighborhoods if neighborhoods is not None else load_neighborhoods()
        gdf["neighborhood"] = assign_neighborhoods(gdf, nh)
    gdf["neighborhood"] = gdf["neighborhood"].fillna("").astype(str)
    return gdf


def hotspots(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame,
             area_names: Sequence[str], indicator: str = "lead_eligible",
             kde_cell_ft: float = 500.0, bandwidth_method: str = "cv",
             hotspot_sd: float = 2.0, grid_cell_ft: float = 1000.0,
             permutations: int | None = None, seed: int = settings.RANDOM_SEED,
             boundary: str | None = None,
             ) -> tuple[dict[str, gpd.GeoDataFrame], dict[str, Any]]:
    """All hotspot layers for one indicator (pure: GeoDataFrames in, layers + summary out).

    `permutations` None: for each Gi* layer, enough that its strictest FDR level is
    attainable (`permutations_for`); given: the levels it can reach are offered.

    Returns
    -------
    layers, result
        ``layers``: hotspot_kde, hotspot_gistar_neighborhoods, hotspot_gistar_grid
        (EPSG:2246). ``result``: the ``geo-lead hotspots --json`` object.
    """
    points, accounting = indicator_points(records, indicator, boundary)
    area = study_area(neighborhoods, area_names)
    in_area = points[units_of(points, neighborhoods).isin(list(area_names)).to_numpy()]
    # records (a record shared with a unit outside the area counts as in it)
    accounting["in_study_area"] = int(in_area["record_row"].nunique())
    accounting["outside_study_area"] = int(accounting["kept"] - accounting["in_study_area"])
    # KDE and grid take one point per record (its in-area parts' weight): duplicated points
    # would change the cross-validated bandwidth, not the picture.
    located = collapse_shares(in_area)
    kde, kde_info = kde_surface(located, area, kde_cell_ft, None, bandwidth_method, hotspot_sd)
    nh = gistar_neighborhoods(neighborhoods, points, permutations, seed)
    grid = gistar_grid(located, area, grid_cell_ft, None, permutations, seed)

    def tally(labels: pd.Series) -> dict[str, int]:
        return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}

    def significance(layer: gpd.GeoDataFrame) -> dict[str, Any]:
        r, levels = int(layer.attrs["permutations"]), list(layer.attrs["fdr_levels"])
        return {"permutations": r, "seed": seed, "fdr": "Benjamini-Hochberg (esda.fdr)",
                "p_value": "two-sided: min(1, 2 x the one-sided conditional-permutation pseudo p)",
                "tests": len(layer), "smallest_p": smallest_p(r) if r else None,
                "fdr_levels": levels, "fdr_levels_not_offered": [q for q in FDR_LEVELS if q not in levels],
                "label_order": gistar_labels(levels)}

    result = {
        "indicator": indicator, "study_area": list(area_names), "records": accounting,
        "kde": kde_info,
        "gistar_neighborhoods": {
            "weights": "queen contiguity, binary, self included (Gi*)", "variable": "density_per_sqmi",
            **significance(nh),
            "labels": tally(nh["label"]),
            "hot": nh.loc[nh["label"].str.startswith("hot"), "neighborhood"].tolist(),
            "top": nh.sort_values("gi_z", ascending=False).head(10)[
                ["neighborhood", "count", "gi_z", "p_sim", "p_two_sided", "label"]].to_dict("records"),
        },
        "gistar_grid": {
            "cell_ft": grid_cell_ft, "band_ft": float(grid["band_ft"].iloc[0]) if len(grid) else None,
            "cells": len(grid), **significance(grid),
            "labels": tally(grid["label"]),
        },
    }
    layers = {"hotspot_kde": kde,
              "hotspot_gistar_neighborhoods": nh[["neighborhood", "count", "density_per_sqmi", "gi_z", "p_sim",
                                                  "p_two_sided", "label", "geometry"]],
              "hotspot_gistar_grid": grid[["cell_id", "count", "gi_z", "p_sim", "p_two_sided", "label", "geometry"]]}
    return layers, result


def resolve_area(neighborhoods: gpd.GeoDataFrame, records: pd.DataFrame | None,
                 area: str = "first-division", candidates: Sequence[str] | None = None) -> list[str]:
    """Candidate / study-area neighborhood names: given names, the First Division or the city."""
    named = set(neighborhoods.loc[neighborhoods["is_named"].astype(bool), "NH_NAME"])
    if candidates:
        wanted = [c.strip().upper() for c in candidates if c.strip()]
        missing = [c for c in wanted if c not in named]
        if missing:
            raise GeoLeadError(f"--candidates: {missing} are not named neighborhoods "
                               f"(e.g. {sorted(named)[:5]})")
        return sorted(set(wanted))
    if area == "city":
        return sorted(named)
    if area == "first-division":
        return first_division_names(neighborhoods, records)
    raise GeoLeadError(f"unknown --area {area!r}; use first-division or city")


def compute_hotspots(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                     candidates: Sequence[str] | None = None, records: gpd.GeoDataFrame | None = None,
                     **kwargs: Any) -> tuple[dict[str, gpd.GeoDataFrame], dict[str, Any]]:
    """`hotspots_store`'s computation without its writes: ``(layers, result)``.

    With `records` given the store is not read (only its path names it in errors), so
    `geo-lead run` can compute this in a child process (`geo_lead.parallel.Deferred`).
    """
    from geo_lead.boundaries import load_neighborhoods

    neighborhoods = load_neighborhoods()
    records = records_from_store(store, neighborhoods, store_columns(store, HOTSPOT_COLUMNS, indicator),
                                 records=records)
    names = resolve_area(neighborhoods, records, area, candidates)
    return hotspots(records, neighborhoods, names, indicator, **kwargs)


def hotspots_store(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                   candidates: Sequence[str] | None = None, records: gpd.GeoDataFrame | None = None,
                   computed: tuple[dict[str, gpd.GeoDataFrame], dict[str, Any]] | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """Compute hotspots from the store's records, write the layers and ``hotspots_result``.

    Parameters
    ----------
    store
        An open `geo_lead.store.Store`.
    indicator
        Flag column to map (``lead_eligible``, ``opiate``, ...).
    area, candidates
        Study area: ``first-division`` (default), ``city``, or explicit neighborhood names.
    records
        The store's records as `geo_lead.spatial_join.records_gdf` points with at least
        `HOTSPOT_COLUMNS` and `indicator` (default: read them from the store).
    computed
        ``(layers, result)`` of `compute_hotspots` with these arguments, computed elsewhere
        (e.g. in a child process); only written here.
    **kwargs
        Passed to `hotspots` (kde_cell_ft, bandwidth_method, hotspot_sd, grid_cell_ft,
        permutations, seed).

    Returns
    -------
    dict
        The ``geo-lead hotspots --json`` object.
    """
    layers, result = compute_hotspots(store, indicator, area, candidates, records, **kwargs) \
        if computed is None else computed
    from geo_lead.parameters import result_parameters, store_frames_fingerprint

    result = {**result, "parameters": result_parameters(
        indicator=indicator, area=area, candidates=candidates, boundary_rule=kwargs.get("boundary"),
        frames=store_frames_fingerprint(store))}
    for name, layer in layers.items():
        store.replace_features(name, layer, "GEOMETRY", description=f"geo_lead hotspots ({indicator})")
    store.put_json("hotspots_result", result)
    return result


def format_hotspots(result: dict[str, Any]) -> str:
    """The `geo-lead hotspots` summary a planner reads."""
    lines: list[str] = []
    kde, nh, grid = result["kde"], result["gistar_neighborhoods"], result["gistar_grid"]
    rec = result["records"]
    flagged = rec["kept"] + rec["not_geocoded"]
    lines.append(f"Hotspots of {result['indicator']} records: {flagged:,} flagged of {rec['records_in']:,} records, "
                 f"{rec['kept']:,} of them located ({rec['not_geocoded']:,} not geocoded); "
                 f"{rec['in_study_area']:,} in the study area of {len(result['study_area'])} neighborhoods")
    lines.append(f"  KDE: bandwidth {kde['bandwidth_ft']:,.0f} ft ({kde['bandwidth_method']}), "
          f"{kde['hotspot_cells']} of {kde['cells']} {kde['cell_ft']:,.0f} ft cells hot ({kde['hotspot_rule']})")
    lines.append(f"  Gi* neighborhoods (queen, {nh['permutations']:,} permutations, two-sided p, "
                 f"{_levels_text(nh)}): " + ", ".join(f"{k}: {v}" for k, v in nh["labels"].items()))
    lines.append("    hot: " + (", ".join(nh["hot"]) or "none"))
    lines.append(f"  Gi* grid ({grid['cells']} cells of {grid['cell_ft']:,.0f} ft, band {grid['band_ft']:,.0f} ft, "
                 f"{grid['permutations']:,} permutations, {_levels_text(grid)}): "
                 + ", ".join(f"{k}: {v}" for k, v in grid["labels"].items()))
    return "\n".join(lines)


def _levels_text(g: dict[str, Any]) -> str:
    """``FDR 1%/5%/10% offered`` (+ the levels not reachable with its permutations)."""
    offered = "/".join(f"{q * 100:g}%" for q in g.get("fdr_levels", []))
    text = f"FDR {offered} offered" if offered else "no FDR level reachable"
    missing = g.get("fdr_levels_not_offered") or []
    if missing:
        text += " (" + "/".join(f"{q * 100:g}%" for q in missing) + " out of reach: too few permutations)"
    return text
