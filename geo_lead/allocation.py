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
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
        deeper than the tolerance inside it are skipped without a distance query (same answer).

    Returns
    -------
    numpy.ndarray
        Object array of ``;``-joined NH_NAMEs in the units' file order, "" for most records.
    """
    tol = check_tolerance(tolerance_ft)
    placed = np.asarray(placed, dtype=bool)
    out = np.full(len(points), "", dtype=object)
    if not placed.any():
        return out
    pos = np.flatnonzero(placed)
    xy = shapely.get_coordinates(gpd.GeoSeries(np.asarray(points.to_numpy())[pos], crs=points.crs)
                                 .to_crs(settings.CRS_PROJECTED).to_numpy())
    units = ProjectedUnits.from_frame(neighborhoods, name_column)
    own = None if unit_index is None else np.asarray(unit_index)[pos]
    out[pos] = near_units_xy(xy[:, 0], xy[:, 1], units, tol, own)
    return out


@dataclass(frozen=True)
class ProjectedUnits:
    """Neighborhood units in EPSG:2246, in file order, for the join's distance tests.

    Attributes
    ----------
    polygons
        shapely geometries (None/empty: matches nothing).
    names
        The units' names (str), aligned with `polygons`.
    """

    polygons: np.ndarray
    names: np.ndarray

    @classmethod
    def from_frame(cls, neighborhoods: gpd.GeoDataFrame, name_column: str = "NH_NAME") -> ProjectedUnits:
        """The units of a GeoDataFrame in any CRS, projected to EPSG:2246 (once per process
        for the same CRS, names and geometry: the join projects them for every chunk)."""
        names = neighborhoods[name_column].astype(str).to_numpy(dtype=object)
        key = units_digest(neighborhoods, name_column)
        hit = _UNITS_MEMO.get(key)
        if hit is None:
            polys = np.asarray(neighborhoods.geometry.to_crs(settings.CRS_PROJECTED).to_numpy(), dtype=object)
            hit = _remember(_UNITS_MEMO, key, (polys, names))
        return cls(hit[0].copy(), hit[1].copy())


class _ThreadMemo(threading.local):
    """A memo of geometry per thread (each thread sees only its own entries): the join prepares
    these geometries (``shapely.prepare``) and queries them, which GEOS does not allow two
    threads to do at once on one geometry, and the dask engine joins partitions in threads
    (a shared memo crashed ``join-count --engine dask`` with heap corruption, ~1 run in 7)."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def pop(self, key: str) -> Any:
        return self.entries.pop(key)

    def clear(self) -> None:
        self.entries.clear()

    def __setitem__(self, key: str, value: Any) -> None:
        self.entries[key] = value

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)


#: Per-process (per-thread) memos of geometry made from unchanged inputs (key: `_digest` of
#: the inputs), at most `GEOMETRY_MEMO_SIZE` entries each: `ProjectedUnits.from_frame`'s
#: projected units, `_deep_cores`' shrunk units.
_UNITS_MEMO = _ThreadMemo()
_CORE_MEMO = _ThreadMemo()
GEOMETRY_MEMO_SIZE = 4


def _digest(crs_wkt: str | None, names: Any, geoms: np.ndarray, *extra: object) -> str:
    """sha256 of a CRS (WKT), names, geometries (WKB; None as empty) and `extra` values."""
    import hashlib

    h = hashlib.sha256(repr((crs_wkt, len(geoms), extra)).encode())
    h.update("\x1f".join(map(str, names)).encode())
    for wkb in shapely.to_wkb(np.asarray(geoms, dtype=object), hex=False).tolist():
        blob = b"" if wkb is None else wkb
        h.update(len(blob).to_bytes(8, "little") + blob)
    return h.hexdigest()


def units_digest(frame: gpd.GeoDataFrame, name_column: str) -> str:
    """`_digest` of a frame's CRS, names (`name_column`) and geometry: the key of what is kept
    of a set of units (here, and `hotspots.first_division_names`)."""
    return _digest(frame.crs.to_wkt() if frame.crs is not None else None,
                   frame[name_column].astype(str).to_numpy(dtype=object), frame.geometry.to_numpy())


def _remember(memo: _ThreadMemo, key: str, value: Any, size: int = GEOMETRY_MEMO_SIZE) -> Any:
    """Put `value` in `memo` under `key` (the oldest entries out past `size`)."""
    while len(memo) >= size:
        memo.pop(next(iter(memo)))
    memo[key] = value
    return value


def near_units_xy(x: np.ndarray, y: np.ndarray, units: ProjectedUnits, tolerance_ft: float,
                  own: np.ndarray | None = None) -> np.ndarray:
    """`boundary_units` of placed points given by EPSG:2246 coordinates.

    Each unit, prepared, is tested (`shapely.dwithin`, so a point on an edge counts for both
    units) only against the points within `tolerance_ft` of its bounding box. A point deeper
    than the tolerance inside its own unit (`own`: position of the unit it was joined to, -1
    for none) is not tested at all: no other unit is that close.

    Parameters
    ----------
    x, y
        Coordinates in US survey feet, float arrays of equal length.
    units
        The units (`ProjectedUnits`).
    tolerance_ft
        Distance >= 0 in US survey feet.
    own
        Optional unit position per point (see above).

    Returns
    -------
    numpy.ndarray
        Object array aligned with `x`: ``;``-joined names in file order when two or more units
        are within the tolerance, else "".
    """
    codes, labels = near_unit_codes(x, y, units, tolerance_ft, own)
    return np.concatenate([labels, np.array([""], dtype=object)])[codes]


def near_unit_codes(x: np.ndarray, y: np.ndarray, units: ProjectedUnits, tolerance_ft: float,
                    own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`near_units_xy` as codes: per point a position in the labels (-1: ""), and the labels
    (each distinct ``;``-joined list once)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"near_units_xy: x and y differ in shape: {x.shape} vs {y.shape}")
    tol = check_tolerance(tolerance_ft)
    codes = np.full(len(x), -1, dtype=np.int64)
    todo = np.arange(len(x))
    if own is not None:
        todo = todo[~_deep_inside(x, y, np.asarray(own), units.polygons, tol)]
    if not len(todo):
        return codes, np.zeros(0, dtype=object)
    rec, unit = _units_within(x[todo], y[todo], units.polygons, tol)
    got, combo, labels = _listed_names(rec, unit, units.names)
    codes[todo[got]] = combo
    return codes, labels


#: Stored in the join meta: a store joined under another version is joined again (2: the
#: deep-core margin below; version 1 could leave a point within 0.24 ft of the tolerance unshared).
BOUNDARY_RULE_VERSION = 2

#: Extra shrink of the deep-core test, as a share of the tolerance: more than buffer()'s chord
#: error at the inner corners, tol * (1 - cos(pi / 32)) < 0.005 * tol.
CORE_MARGIN_SHARE = 0.01


def _deep_inside(x: np.ndarray, y: np.ndarray, own: np.ndarray, polygons: np.ndarray,
                 tol: float) -> np.ndarray:
    """Points in the interior of their own unit shrunk by `tol` (``buffer(-tol)``)."""
    deep = np.zeros(len(x), dtype=bool)
    order = np.argsort(own, kind="stable")
    cuts = np.searchsorted(own[order], np.arange(len(polygons) + 1))
    if not len(x):
        return deep
    cores = _deep_cores(polygons, tol)
    for pos, poly in enumerate(polygons):
        mine = order[cuts[pos]:cuts[pos + 1]]
        if not len(mine) or poly is None or shapely.is_empty(poly):
            continue
        if cores[pos] is _NOT_MADE:
            # buffer() draws the rounded inner corners as chords, which come up to
            # up to tol * (1 - cos(pi / 32)) (0.24 ft at 50 ft, quad_segs=8) closer to the edge
            # than tol: shrink by a little more, so every point skipped here is truly deeper than tol
            cores[pos] = shapely.buffer(poly, -tol * (1 + CORE_MARGIN_SHARE)) if tol > 0 else poly
            shapely.prepare(cores[pos])
        # a point has no boundary: "contains" is "contains properly" for it
        deep[mine] = shapely.contains_xy(cores[pos], x[mine], y[mine])
    return deep


#: A unit's core not shrunk yet (`_deep_cores`).
_NOT_MADE = object()


def _deep_cores(polygons: np.ndarray, tol: float) -> list[Any]:
    """The units' cores (`_deep_inside` shrinks a unit when a point first needs it), one list
    per process for the same polygons (WKB) and tolerance: each chunk of the join tests
    points against the same shrunk units."""
    key = _digest(None, (), polygons, float(tol), CORE_MARGIN_SHARE)
    hit = _CORE_MEMO.get(key)
    return hit if hit is not None else _remember(_CORE_MEMO, key, [_NOT_MADE] * len(polygons))


def _units_within(x: np.ndarray, y: np.ndarray, polygons: np.ndarray,
                  tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit) position pairs with the point within `tol` of the unit, sorted."""
    recs: list[np.ndarray] = []
    units: list[np.ndarray] = []
    pts = shapely.points(x, y)
    for pos, poly in enumerate(polygons):
        if poly is None or shapely.is_empty(poly):
            continue
        minx, miny, maxx, maxy = shapely.bounds(poly)
        cand = np.flatnonzero((x >= minx - tol) & (x <= maxx + tol) & (y >= miny - tol) & (y <= maxy + tol))
        if not len(cand):
            continue
        shapely.prepare(poly)
        hit = cand[shapely.dwithin(poly, pts[cand], tol)]
        recs.append(hit)
        units.append(np.full(len(hit), pos, dtype=np.int64))
    if not recs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rec, unit = np.concatenate(recs), np.concatenate(units)
    order = np.lexsort((unit, rec))
    return rec[order], unit[order]


def _listed_names(rec: np.ndarray, unit: np.ndarray,
                  names: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points with two or more units, the position of their combination, and each distinct
    combination's ``;``-joined names (pairs sorted by point, then unit)."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object))
    starts, counts = np.unique(rec, return_index=True, return_counts=True)[1:]
    multi = counts >= 2
    starts, counts = starts[multi], counts[multi]
    if not len(starts):
        return empty
    width = int(counts.max())
    table = np.full((len(starts), width), -1, dtype=np.int64)
    for k in range(width):
        has = counts > k
        table[has, k] = unit[starts[has] + k]
    combos, inverse = np.unique(table, axis=0, return_inverse=True)
    labels = np.array([SEPARATOR.join(names[u] for u in row if u >= 0) for row in combos], dtype=object)
    return rec[starts], inverse.reshape(-1), labels


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

    The disc of `radius_ft` around the point meets a (shrunk beat n unit) piece in a positive
    area exactly when the point lies closer than the radius to that piece; each distinct
    piece is built and prepared once and tested against all its points.

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
    sub = records[todo]
    pairs = _BeatPairs.of(sub)
    pieces = _settle_pieces(pairs, beats, neighborhoods, tol, name_column)
    pts = np.asarray(gpd.GeoSeries(sub.geometry, crs=records.crs).to_crs(settings.CRS_PROJECTED).to_numpy(),
                     dtype=object)
    near = _near_pieces(pts[pairs.rec], pairs.key, pieces, radius_ft)
    n_near = np.bincount(pairs.rec[near], minlength=len(sub))
    one = np.full(len(sub), "", dtype=object)
    one[pairs.rec[near]] = pairs.unit[near]  # the one name where n_near == 1
    hit = n_near == 1
    settled.loc[sub.index[hit]] = one[hit]
    return settled


@dataclass(frozen=True)
class _BeatPairs:
    """(record, candidate unit) pairs of the records to settle, and their (beat, unit) key."""

    rec: np.ndarray  # position of the record in the frame
    unit: np.ndarray  # candidate unit name
    key: np.ndarray  # position of the pair's (beat, unit) in `keys`
    keys: list[tuple[str, str]]  # distinct (normalised beat code, unit name)

    @classmethod
    def of(cls, sub: pd.DataFrame) -> _BeatPairs:
        """Pairs from ``boundary_units`` (split once per distinct list) and ``beat``
        (normalised once per distinct text)."""
        from geo_lead.beats import normalize_beat

        beat_ix, beat_texts = pd.factorize(sub["beat"], use_na_sentinel=False)
        beat_codes = np.array([normalize_beat(b) for b in beat_texts], dtype=object)[beat_ix]
        list_ix, lists = pd.factorize(sub["boundary_units"].astype(str))
        split = [str(s).split(SEPARATOR) for s in lists]
        sizes = np.array([len(s) for s in split], dtype=np.int64)[list_ix]
        rec = np.repeat(np.arange(len(sub)), sizes)
        starts = np.concatenate([[0], np.cumsum([len(s) for s in split])])
        flat = np.array([u for s in split for u in s], dtype=object)
        # k-th unit of each record's list: start of its list in `flat` + rank within the record
        rank = np.arange(len(rec)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        unit = flat[starts[list_ix][rec] + rank]
        b_ix, b_names = pd.factorize(beat_codes[rec])
        u_ix, u_names = pd.factorize(unit)
        pair_code, key = np.unique(b_ix.astype(np.int64) * len(u_names) + u_ix, return_inverse=True)
        keys = [(str(b_names[c // len(u_names)]), str(u_names[c % len(u_names)])) for c in pair_code]
        return cls(rec, unit, key.reshape(-1), keys)


@dataclass
class _SettleGeometry:
    """The beats shrunk by the tolerance and the units, both in EPSG:2246, and the
    (shrunk beat n unit) pieces made from them so far (`_settle_geometry`)."""

    shrunk: dict[str, Any]
    unit_geom: dict[str, Any]
    pieces: dict[tuple[str, str], Any]

    def piece(self, beat: str, unit: str) -> Any:
        """The polygonal (shrunk beat n unit) piece, or None (no such beat, unit or piece)."""
        key = (beat, unit)
        if key not in self.pieces:
            poly, ug = self.shrunk.get(beat), self.unit_geom.get(unit)
            cut = None
            if poly is not None and ug is not None and not poly.is_empty:
                cut = _polygonal(shapely.intersection(poly, ug))
            self.pieces[key] = cut if cut is not None and cut.area > 0 else None
        return self.pieces[key]


#: `_settle_geometry`'s memo (key -> geometry), at most `SETTLE_MEMO_SIZE` entries.
_SETTLE_MEMO = _ThreadMemo()
#: Distinct (beats, units, tolerance) a process keeps the settling geometry of.
SETTLE_MEMO_SIZE = 4


def settle_geometry_key(beats: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, tol: float,
                        name_column: str) -> str:
    """sha256 of everything `_settle_geometry` builds from: the beats' codes, geometry (WKB)
    and CRS, the units' names (`name_column`), geometry and CRS, and the tolerance."""
    return _digest(None, (units_digest(beats, "beat"), units_digest(neighborhoods, name_column)),
                   np.empty(0, dtype=object), float(tol))


def _settle_geometry(beats: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, tol: float,
                     name_column: str) -> _SettleGeometry:
    """The beats shrunk by `tol` and the units in EPSG:2246, made once per process for the
    same inputs (`settle_geometry_key`): the join settles each chunk of records with the same
    beats, and buffering every beat polygon cost ~0.15 s per chunk."""
    from geo_lead import result_cache
    from geo_lead.beats import normalize_beat

    key = settle_geometry_key(beats, neighborhoods, tol, name_column)
    hit = _SETTLE_MEMO.get(key)
    if hit is not None:
        return hit

    def make() -> _SettleGeometry:
        proj_beats = beats.to_crs(settings.CRS_PROJECTED)
        shrunk = dict(zip(proj_beats["beat"].astype(str).map(normalize_beat),
                          shapely.buffer(proj_beats.geometry.to_numpy(), -tol), strict=True))
        nh = neighborhoods.to_crs(settings.CRS_PROJECTED)
        return _SettleGeometry(shrunk, dict(zip(nh[name_column].astype(str), nh.geometry.to_numpy(), strict=True)),
                               {})

    # kept across runs too (~0.1 s of every run's ingest at 1M records; geometries pickle as
    # WKB, coordinates exact): the key hashes the inputs, the code and the geometry libraries
    kept = result_cache.digest([key, result_cache.code_version(),
                                result_cache.library_versions("shapely", "geopandas", "pyproj", "numpy")])
    made = result_cache.kept_object("settle_geometry", kept, _SettleGeometry, make)
    return _remember(_SETTLE_MEMO, key, made, SETTLE_MEMO_SIZE)


def _settle_pieces(pairs: _BeatPairs, beats: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame,
                   tol: float, name_column: str) -> np.ndarray:
    """The polygonal (shrunk beat n unit) piece of every distinct key (None: no such piece)."""
    geometry = _settle_geometry(beats, neighborhoods, tol, name_column)
    pieces = np.full(len(pairs.keys), None, dtype=object)
    for i, (beat, unit) in enumerate(pairs.keys):
        pieces[i] = geometry.piece(beat, unit)
    return pieces


def _near_pieces(points: np.ndarray, key: np.ndarray, pieces: np.ndarray, radius_ft: float) -> np.ndarray:
    """Per (point, key) pair: the point lies closer than `radius_ft` to the key's piece.

    Each piece is prepared and tested once against all its points (``dwithin`` at the
    largest float below the radius: "closer than", as ``distance < radius_ft``).
    """
    near = np.zeros(len(points), dtype=bool)
    ok = ~shapely.is_missing(points)
    order = np.argsort(key, kind="stable")
    cuts = np.searchsorted(key[order], np.arange(len(pieces) + 1))
    below = float(np.nextafter(radius_ft, -np.inf))
    for k, piece in enumerate(pieces):
        mine = order[cuts[k]:cuts[k + 1]]
        mine = mine[ok[mine]]
        if piece is None or not len(mine):
            continue
        shapely.prepare(piece)
        near[mine] = shapely.dwithin(piece, points[mine], below)
    return near


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
