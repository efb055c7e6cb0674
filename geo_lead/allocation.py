"""Boundary-aware allocation of records to neighborhood units.

Louisville's neighborhood boundaries run along streets, and block and intersection points lie
on street centrelines, so "the unit the point falls in" is often a coin toss decided by a few
feet of geocoding error. Each record therefore carries, besides ``neighborhood`` (the first
unit in file order that contains its point, as the join has always given):

boundary_units  ``;``-joined NH_NAMEs (file order) of every unit within
                `settings.BOUNDARY_TOLERANCE_FT` of the point, computed in EPSG:2246, when
                there are two or more (the point is near an edge they share); empty otherwise
                and for records outside every unit or not geocoded.

`settle_by_beat` narrows that list to one unit when the record's own LMPD beat polygon,
near the point, overlaps only one of the candidates (works with ``beats=None``: no change).

`unit_shares` turns records into (record, unit, share) rows:

* ``rule="split"``: a record with boundary units goes to each in equal parts (1/n);
* ``rule="first"``: every placed record goes whole to ``neighborhood`` (the old behaviour).

The weighted count of a unit is the sum over its rows of the record's frame ``weight``
(`geo_lead.frames`) times the share (`unit_counts`); it conserves weight: the units' counts
add up to the summed weights of the placed records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_lead import settings
from geo_lead.errors import GeoLeadError

log = logging.getLogger(__name__)

SEPARATOR = ";"
SHARE_COLUMNS: tuple[str, ...] = ("row", "unit", "share", "shared")


def check_rule(rule: str | None) -> str:
    """`rule` (default `settings.BOUNDARY_RULE`) if it is one of `settings.BOUNDARY_RULES`."""
    rule = settings.BOUNDARY_RULE if rule is None else rule
    if rule not in settings.BOUNDARY_RULES:
        raise GeoLeadError(f"--boundary {rule!r}: choose one of {', '.join(settings.BOUNDARY_RULES)}.")
    return rule


def check_tolerance(tolerance_ft: float | None) -> float:
    tol = settings.BOUNDARY_TOLERANCE_FT if tolerance_ft is None else float(tolerance_ft)
    if not (tol >= 0 and np.isfinite(tol)):
        raise GeoLeadError(f"--boundary-tolerance-ft {tolerance_ft!r}: must be a distance >= 0 in feet.")
    return tol


# --- at join time ---------------------------------------------------------------------------
def boundary_units(points: gpd.GeoSeries, neighborhoods: gpd.GeoDataFrame, placed: np.ndarray,
                   tolerance_ft: float | None = None, name_column: str = "NH_NAME",
                   unit_index: np.ndarray | None = None) -> np.ndarray:
    """The units within `tolerance_ft` of each placed point, when two or more (else "").

    Parameters
    ----------
    points
        Points in any CRS (empty/None = not geocoded).
    neighborhoods
        The units, in file order.
    placed
        Boolean mask over `points`: the records the join put in some unit; only those get
        boundary units.
    tolerance_ft
        Distance in US survey feet (EPSG:2246); default `settings.BOUNDARY_TOLERANCE_FT`.
    unit_index
        Optional position (in `neighborhoods`) of the unit each point was joined to: points
        deeper than the tolerance inside it are skipped without a distance query (the answer
        is the same; a million points take seconds instead of tens of seconds).

    Returns
    -------
    numpy.ndarray
        Object array of ``;``-joined NH_NAMEs in the units' file order, "" for most records.
    """
    tol = check_tolerance(tolerance_ft)
    out = np.full(len(points), "", dtype=object)
    placed = np.asarray(placed, dtype=bool)
    if not placed.any():
        return out
    pos = np.flatnonzero(placed)
    pts = gpd.GeoSeries(np.asarray(points.to_numpy())[pos], crs=points.crs).to_crs(settings.CRS_PROJECTED)
    polys = neighborhoods.geometry.to_crs(settings.CRS_PROJECTED).to_numpy()
    if unit_index is not None:
        # deeper inside its own unit than the tolerance: no other unit is that close
        cores = shapely.buffer(polys, -tol) if tol > 0 else polys.copy()
        shapely.prepare(cores)
        own = np.asarray(unit_index)[pos]
        deep = np.zeros(len(pos), dtype=bool)
        ok = own >= 0
        deep[ok] = shapely.contains_properly(cores[own[ok]], pts.to_numpy()[ok])
        pos, pts = pos[~deep], pts[~deep]
        if not len(pos):
            return out
    tree = shapely.STRtree(polys)
    # dwithin: a point on the edge (distance 0) counts for both units, as intersects does.
    rec_ix, nh_ix = tree.query(pts.to_numpy(), predicate="dwithin", distance=tol)
    if len(rec_ix) == 0:
        return out
    hits = pd.DataFrame({"rec": rec_ix, "nh": nh_ix}).sort_values(["rec", "nh"])
    n = hits.groupby("rec")["nh"].transform("size")
    hits = hits[n >= 2]
    if hits.empty:
        return out
    names = neighborhoods[name_column].astype(str).to_numpy()
    joined = hits.assign(name=names[hits["nh"].to_numpy()]).groupby("rec")["name"].agg(SEPARATOR.join)
    out[pos[joined.index.to_numpy()]] = joined.to_numpy()
    return out


def settle_by_beat(records: pd.DataFrame, neighborhoods: gpd.GeoDataFrame,
                   beats: gpd.GeoDataFrame | None = None, tolerance_ft: float | None = None,
                   radius_ft: float = settings.BEAT_SETTLE_RADIUS_FT,
                   name_column: str = "NH_NAME") -> pd.Series:
    """Narrow ``boundary_units`` to one unit where the record's own beat settles the side.

    Near the point (within `radius_ft`), the record's LMPD beat polygon shrunk by the
    tolerance (so a beat edge running along the same street does not count) is intersected
    with each candidate unit; when exactly one candidate overlaps it, the record goes whole
    to that unit (the caller stores that one name as ``boundary_units``; ``neighborhood``
    keeps the join's first unit, so ``rule="first"`` is unchanged). Otherwise the list is kept.

    Parameters
    ----------
    records
        Points (GeoDataFrame, any CRS) with ``boundary_units`` and ``beat`` (the 3-digit
        LMPD beat code as published).
    neighborhoods
        The units.
    beats
        Beat polygons with ``beat`` (code as str) and geometry (`geo_lead.beats.load_beats`);
        None: nothing is settled.

    Returns
    -------
    pandas.Series
        The unit each record is settled to ("" when not settled), aligned to `records`.
    """
    settled = pd.Series("", index=records.index, dtype=object)
    if beats is None or beats.empty or "beat" not in records or "boundary_units" not in records:
        return settled
    tol = check_tolerance(tolerance_ft)
    todo = records["boundary_units"].fillna("").astype(str).str.contains(SEPARATOR, regex=False)
    todo &= records["beat"].fillna("").astype(str).str.strip() != ""
    if not todo.any():
        return settled
    from geo_lead.beats import normalize_beat

    proj_beats = beats.to_crs(settings.CRS_PROJECTED)
    shrunk = dict(zip(proj_beats["beat"].astype(str).map(normalize_beat),
                      shapely.buffer(proj_beats.geometry.to_numpy(), -tol), strict=True))
    nh = neighborhoods.to_crs(settings.CRS_PROJECTED)
    unit_geom = dict(zip(nh[name_column].astype(str), nh.geometry.to_numpy(), strict=True))
    sub = records[todo]
    pts = gpd.GeoSeries(sub.geometry, crs=records.crs).to_crs(settings.CRS_PROJECTED)
    codes = sub["beat"].map(normalize_beat).to_numpy(object)
    # One (record, candidate unit) pair per row. The disc of `radius_ft` around the point meets
    # (shrunk beat n unit) in a positive area exactly when the point lies closer than the
    # radius to that polygonal piece: one vectorised distance instead of two overlays a record.
    lists = sub["boundary_units"].astype(str).str.split(SEPARATOR)
    pair = lists.explode()
    rec_pos = pd.Index(sub.index).get_indexer(pair.index)
    pieces: dict[tuple[str, str], Any] = {}
    for beat, unit in set(zip(codes[rec_pos], pair.to_numpy(object), strict=True)):
        poly, ug = shrunk.get(beat), unit_geom.get(unit)
        piece = None
        if poly is not None and ug is not None and not poly.is_empty:
            cut = shapely.intersection(poly, ug)
            cut = _polygonal(cut)
            piece = cut if cut is not None and cut.area > 0 else None
        pieces[(beat, unit)] = piece
    geoms = np.array([pieces[(b, u)] for b, u in zip(codes[rec_pos], pair.to_numpy(object), strict=True)],
                     dtype=object)
    point_arr = np.asarray(pts.to_numpy(), dtype=object)[rec_pos]
    has = np.array([g is not None for g in geoms]) & ~shapely.is_missing(point_arr)
    near = np.zeros(len(pair), dtype=bool)
    if has.any():
        near[has] = shapely.distance(point_arr[has], np.asarray(list(geoms[has]), dtype=object)) < radius_ft
    hits = pd.DataFrame({"rec": rec_pos, "unit": pair.to_numpy(object), "near": near})
    over = hits[hits["near"]].groupby("rec")["unit"].agg(list)
    one = over[over.map(len) == 1]
    settled.loc[sub.index[one.index.to_numpy()]] = [u[0] for u in one]
    return settled


def _polygonal(geom: Any) -> Any:
    """The polygon parts of an overlay result (lines and points of a touch dropped), or None."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


# --- shares ----------------------------------------------------------------------------------
def unit_shares(records: pd.DataFrame, rule: str = "split") -> pd.DataFrame:
    """Long table of (record, unit, share): how each placed record is counted.

    Parameters
    ----------
    records
        Records with ``neighborhood`` ("" or NaN = not placed) and optionally
        ``boundary_units``.
    rule
        ``split``: a record with two or more boundary units is shared among them in equal
        parts; ``first``: every record whole to its ``neighborhood``.

    Returns
    -------
    pandas.DataFrame
        Columns `SHARE_COLUMNS`: ``row`` (the record's index label), ``unit`` (NH_NAME),
        ``share`` (float; 1 per placed record in total), ``shared`` (bool). Records with no
        unit give no row.
    """
    rule = check_rule(rule)
    nh = records["neighborhood"].fillna("").astype(str) if "neighborhood" in records \
        else pd.Series("", index=records.index)
    placed = nh != ""
    bu = records["boundary_units"].fillna("").astype(str) if (rule == "split" and "boundary_units" in records) \
        else pd.Series("", index=records.index)
    # split: a record goes to its boundary units (two or more: shared; one: settled by its
    # beat); without boundary units, whole to its neighborhood.
    listed = placed & (bu != "")
    whole = placed & ~listed
    parts = [pd.DataFrame({"row": records.index[whole.to_numpy()], "unit": nh[whole].to_numpy(),
                           "share": 1.0, "shared": False})]
    if listed.any():
        lists = bu[listed].str.split(SEPARATOR)
        ex = lists.explode()
        k = lists.str.len().reindex(ex.index).to_numpy(dtype=float)
        parts.append(pd.DataFrame({"row": ex.index.to_numpy(), "unit": ex.to_numpy(dtype=object),
                                   "share": 1.0 / k, "shared": k > 1}))
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    out["share"] = out["share"].astype(float)
    out["shared"] = out["shared"].astype(bool)
    return out[list(SHARE_COLUMNS)]


def record_weight(records: pd.DataFrame) -> pd.Series:
    """The records' frame ``weight`` (1 where the column is missing)."""
    if "weight" in records:
        return pd.to_numeric(records["weight"], errors="coerce").fillna(1.0).astype(float)
    return pd.Series(1.0, index=records.index)


def unit_counts(records: pd.DataFrame, shares: pd.DataFrame, names: Sequence[str],
                only_shared: bool = False) -> np.ndarray:
    """Weighted count per unit of `names`: sum of weight x share over its rows of `shares`."""
    s = shares[shares["shared"]] if only_shared else shares
    w = record_weight(records).reindex(s["row"]).to_numpy(float) * s["share"].to_numpy(float)
    pos = pd.Series(np.arange(len(names)), index=pd.Index(list(names)))
    ix = s["unit"].map(pos)
    ok = ix.notna().to_numpy()
    return np.bincount(ix[ok].astype(int).to_numpy(), weights=w[ok], minlength=len(names)).astype(float)


def explode(points: pd.DataFrame, rule: str | None = None) -> pd.DataFrame:
    """One row per (record, unit): the record's columns, ``neighborhood`` = the unit, ``weight``
    = frame weight x share, ``record_row`` = the record's index label, ``share``, ``shared``.

    Placed records only; for statistics on points (KDE, grids: a record's parts lie on the same
    point, so sums over space are unchanged) and per-unit sums (Gi*, PAI, zones).
    """
    shares = unit_shares(points, check_rule(rule))
    out = points.loc[shares["row"].to_numpy()].copy()
    out["record_row"] = shares["row"].to_numpy()
    out["neighborhood"] = shares["unit"].to_numpy(dtype=object)
    out["weight"] = record_weight(points).reindex(shares["row"]).to_numpy(float) * shares["share"].to_numpy(float)
    out["share"] = shares["share"].to_numpy(float)
    out["shared"] = shares["shared"].to_numpy(bool)
    return out.reset_index(drop=True)


def summary(records: pd.DataFrame, rule: str | None = None,
            tolerance_ft: float | None = None) -> dict[str, Any]:
    """The allocation line of `geo-lead run`: placed records, shared ones, weight moved by sharing."""
    rule = check_rule(rule)
    shares = unit_shares(records, rule)
    placed = int(shares["row"].nunique())
    shared_rows = shares.loc[shares["shared"], "row"]
    return {"rule": rule, "tolerance_ft": check_tolerance(tolerance_ft), "placed": placed,
            "shared": int(shared_rows.nunique()),
            "shared_weight": float(record_weight(records).reindex(shared_rows.unique()).sum())}
