"""Officer zone check: is a point inside the LEAD pilot zone, and how close to its edge?

This is the fast path behind ``geo-lead zone check``, the HTTP service and the benchmark, so
it imports only numpy, shapely 2 and pyproj (never geopandas or pandas): a cold CLI call
answers in well under half a second.

* ``inside``: the zone is closed, so a point exactly on the boundary counts as inside
  (shapely ``intersects_xy`` on a prepared polygon, vectorised for arrays).
* ``distance_to_boundary_ft``: planar distance in EPSG:2246 (US survey feet) from the point
  to the zone's boundary, the same whichever side the point is on.
* ``near_boundary``: that distance is within a tolerance (default
  ``settings.NEAR_BOUNDARY_FT`` = 300 ft, about the error of a phone GPS fix or a block-level
  geocode): the officer should confirm the location before relying on the answer.
* ``neighborhood``: inside, the member neighborhood that contains the point (nearest member
  if a sliver of the union falls in none); outside, the LOJIC neighborhood containing it, or
  ``None`` outside all (for example across the river in Indiana).
* ``zone_version``: ``<12 hex of sha256 of the zone file>@<date>`` so an answer can be traced to
  the exact boundary that produced it (date: the file's ``date`` property if it has one,
  else its modification date, UTC).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import shapely
from shapely.geometry import shape

from geo_lead import settings
from geo_lead.errors import CRSMismatchError, GeocodeError, InputFileError, ZoneInputError

if TYPE_CHECKING:  # types only: at run time the zone path never imports pandas, and the
    import pandas as pd  # geocoder only for an address
    from pyproj import Transformer

    from geo_lead.geocode import Geocoder

log = logging.getLogger(__name__)

#: GeoJSON ``crs`` names that mean lon/lat on WGS 84 (RFC 7946 has no ``crs`` member at all).
_LONLAT_CRS_NAMES = frozenset({
    "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "EPSG:4326",
    "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG:4326", "CRS84",
})

_TRANSFORMER: Transformer | None = None

#: Batches of at least this many points use the cell grid in ``inside_many``.
GRID_MIN_POINTS = 20_000
#: Cells per side of that grid over the zone's bounding box.
GRID_CELLS = 256
#: Cells are grown by this much (about 1 cm) before testing whether they touch the boundary.
GRID_EPSILON_DEG = 1e-7


def _transformer() -> Transformer:
    """The lon/lat -> EPSG:2246 transformer, built once (pyproj is imported on first use)."""
    global _TRANSFORMER
    if _TRANSFORMER is None:
        from pyproj import Transformer

        _TRANSFORMER = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED,
                                            always_xy=True)
    return _TRANSFORMER


def project_lonlat(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project lon/lat degrees (EPSG:4326) to EPSG:2246 feet.

    Parameters
    ----------
    lon, lat
        Arrays of the same shape, degrees.

    Returns
    -------
    x_ft, y_ft
        Easting and northing in US survey feet.
    """
    x, y = _transformer().transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _project_geometry(geom: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(geom, lambda xy: np.column_stack(project_lonlat(xy[:, 0], xy[:, 1])))


# --- input validation ---------------------------------------------------------------------

#: Decimal degrees as typed: ASCII digits, an optional sign, point and exponent.
#: ("nan"/"inf" pass here and are then refused as out of range.)
_ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                            r"|[+-]?(?i:nan|inf|infinity)", re.ASCII)
#: The answer to a latitude/longitude pair that only makes sense the other way round.
SWAPPED_MESSAGE = "far outside Jefferson County — swapped?"


def _shown(value: object, max_chars: int = 40) -> str:
    """`value`'s repr for a message, cut to `max_chars` (an error never echoes 10,000 characters)."""
    text = repr(value)
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def check_not_swapped(lat: float, lon: float) -> None:
    """Raise ZoneInputError when (lat, lon) is outside Jefferson County but (lon, lat) is in it.

    A swapped pair is still a valid coordinate (latitude -85.79 is near the South Pole), so
    without this the answer would be "OUTSIDE, 317,000,803 ft from the boundary".
    """
    west, south, east, north = settings.JEFFERSON_BBOX
    if not (west <= lon <= east and south <= lat <= north) and (west <= lat <= east and south <= lon <= north):
        raise ZoneInputError(f"lat {lat:g}, lon {lon:g} is {SWAPPED_MESSAGE} In Louisville the "
                             f"latitude is about 38 and the longitude about -85.8: try lat {lon:g}, "
                             f"lon {lat:g}.")


def parse_coordinate(value: object, name: str) -> float:
    """Parse one latitude or longitude given as text or a number, or raise ZoneInputError.

    Parameters
    ----------
    value
        What the user typed (``"38.2587"``) or a number.
    name
        ``"lat"`` or ``"lon"``: picks the valid range (-90..90 or -180..180) and the message.

    Returns
    -------
    float
        The coordinate in degrees.
    """
    limit = 90.0 if name == "lat" else 180.0
    label = "latitude" if name == "lat" else "longitude"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ZoneInputError(f"{label} ({name}) is missing; give decimal degrees, e.g. "
                             f"{'38.2587' if name == 'lat' else '-85.7930'}.")
    try:
        if isinstance(value, str) and not _ASCII_DECIMAL.fullmatch(value.strip()):
            raise ValueError(value)  # float() would take "3_8.2" and Arabic-Indic digits
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ZoneInputError(f"{label} ({name}) is not a number: {_shown(value)}; give decimal "
                             "degrees such as 38.2587 (not degrees-minutes-seconds).") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ZoneInputError(f"{label} ({name}) out of range: {_shown(value)}; it must be between "
                             f"-{limit:g} and {limit:g} degrees.")
    return number


# --- zone files ---------------------------------------------------------------------------

def _read_geojson(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: zone file not found.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable GeoJSON file ({exc}).") from None
    if not isinstance(data, dict) or "type" not in data:
        raise InputFileError(f"{path}: not GeoJSON (no 'type' member at the top level).")
    crs = data.get("crs")
    if crs:
        crs_name = str((crs.get("properties") or {}).get("name", "")) if isinstance(crs, dict) else ""
        if crs_name not in _LONLAT_CRS_NAMES:
            raise CRSMismatchError(f"{path}: CRS is {crs_name or crs!r}; the zone check needs "
                                   "lon/lat on WGS 84 (EPSG:4326). Reproject it, e.g. "
                                   "ogr2ogr -t_srs EPSG:4326 out.geojson in.geojson.")
    return data


def _polygon(coords: Sequence[Sequence[Sequence[float]]]) -> shapely.Geometry:
    rings = [shapely.linearrings(np.asarray(r, dtype=float)) for r in coords]
    return shapely.polygons(rings[0], rings[1:] or None)


def _geometry(geom_json: dict[str, Any]) -> shapely.Geometry:
    """GeoJSON geometry -> shapely; polygons through numpy (4x faster than ``shape`` on the
    1 MB neighborhoods file, which matters for a cold ``zone check``)."""
    kind = geom_json.get("type")
    if kind == "Polygon":
        return _polygon(geom_json["coordinates"])
    if kind == "MultiPolygon":
        return shapely.multipolygons([_polygon(c) for c in geom_json["coordinates"]])
    return shape(geom_json)


def _features(data: dict[str, Any], path: Path) -> list[tuple[dict[str, Any], shapely.Geometry]]:
    """(properties, polygonal geometry) for every feature of a GeoJSON document."""
    if data["type"] == "FeatureCollection":
        raw = data.get("features") or []
    elif data["type"] == "Feature":
        raw = [data]
    else:  # a bare geometry
        raw = [{"type": "Feature", "properties": {}, "geometry": data}]
    out = []
    for i, feat in enumerate(raw):
        geom_json = feat.get("geometry")
        if not geom_json:
            continue
        try:
            geom = _geometry(geom_json)
        except Exception as exc:  # shapely raises several types for malformed geometry
            raise InputFileError(f"{path}: feature {i}: invalid geometry ({exc}).") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise InputFileError(f"{path}: feature {i}: geometry is {geom.geom_type}; a zone "
                                 "must be a Polygon or MultiPolygon.")
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            raise CRSMismatchError(f"{path}: feature {i}: coordinates {geom.bounds} are not "
                                   "lon/lat degrees; the zone check needs EPSG:4326.")
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        out.append((feat.get("properties") or {}, geom))
    if not out:
        raise InputFileError(f"{path}: no polygon features.")
    return out


def zone_version(path: Path, properties: dict[str, Any] | None = None) -> str:
    """``<sha256[:12]>@<YYYY-MM-DD>`` for a zone file (see the module docstring)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    date = str((properties or {}).get("date") or "")[:10]
    if not date:
        mtime = Path(path).stat().st_mtime
        date = _dt.datetime.fromtimestamp(mtime, tz=_dt.UTC).date().isoformat()
    return f"{digest}@{date}"


# --- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoneAnswer:
    """The answer for one point (``asdict`` gives the CLI/service JSON)."""

    inside: bool
    neighborhood: str | None
    distance_to_boundary_ft: float
    near_boundary: bool
    zone_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ZoneBatch:
    """Answers for arrays of points, one numpy array per field, aligned to the input order.

    ``distance_to_boundary_ft`` and ``near_boundary`` are NaN / False when distances were not
    asked for; ``neighborhood`` is an object array (``None`` outside every neighborhood).
    """

    inside: np.ndarray
    neighborhood: np.ndarray
    distance_to_boundary_ft: np.ndarray
    near_boundary: np.ndarray
    zone_version: str


class ZoneChecker:
    """Answers "is this point inside the pilot zone?" for one point or arrays of points.

    Parameters
    ----------
    zone_file
        GeoJSON (EPSG:4326) whose polygon features together make the zone; the features'
        ``members`` property (``;``-separated NH_NAME values), or their ``NH_NAME``, names its
        neighborhoods. Default: ``settings.PILOT_ZONE_FILE`` (Russell + Portland).
    neighborhoods_file
        LOJIC neighborhoods GeoJSON with ``NH_NAME``, used to name the neighborhood of a point.
        ``None`` skips naming (``neighborhood`` is then always ``None``).
    near_boundary_ft
        Tolerance for ``near_boundary``, feet.

    Examples
    --------
    >>> checker = ZoneChecker()
    >>> checker.check(38.2587, -85.7930).inside
    True
    """

    def __init__(self, zone_file: Path = settings.PILOT_ZONE_FILE,
                 neighborhoods_file: Path | None = settings.NEIGHBORHOODS_FILE,
                 near_boundary_ft: float = settings.NEAR_BOUNDARY_FT) -> None:
        if not (isinstance(near_boundary_ft, (int, float)) and math.isfinite(near_boundary_ft)
                and near_boundary_ft >= 0):
            raise ZoneInputError(f"near-boundary tolerance must be a number of feet >= 0, "
                                 f"got {near_boundary_ft!r}.")
        self.zone_file = Path(zone_file)
        self.near_boundary_ft = float(near_boundary_ft)
        feats = _features(_read_geojson(self.zone_file), self.zone_file)
        props = feats[0][0]
        self.zone_name: str = str(props.get("name") or self.zone_file.stem)
        # Members: every feature's ``members`` (";"-joined) or, for a file of neighborhood
        # polygons, their ``NH_NAME``s.
        members: list[str] = []
        for p, _ in feats:
            names = str(p.get("members") or p.get("NH_NAME") or "").split(";")
            members += [m.strip() for m in names if m.strip() and m.strip() not in members]
        self.members: tuple[str, ...] = tuple(members)
        self.zone_version: str = zone_version(self.zone_file, props)
        self.zone: shapely.Geometry = shapely.union_all([g for _, g in feats])
        shapely.prepare(self.zone)
        self._grid: tuple[np.ndarray, tuple[float, float, float, float]] | None = None
        self.zone_ft: shapely.Geometry = _project_geometry(self.zone)
        self.boundary_ft: shapely.Geometry = self.zone_ft.boundary
        # Distances go through an STRtree of the boundary's segments: query_nearest is about
        # twice as fast as shapely.distance to the whole boundary, and exact.
        segments = []
        for ring in shapely.get_parts(self.boundary_ft):
            xy = shapely.get_coordinates(ring)
            segments.append(np.stack([xy[:-1], xy[1:]], axis=1))
        self._segment_tree = shapely.STRtree(shapely.linestrings(np.concatenate(segments)))
        self._load_neighborhoods(neighborhoods_file)

    def _load_neighborhoods(self, path: Path | None) -> None:
        self.neighborhood_names: np.ndarray = np.array([], dtype=object)
        self.neighborhood_geoms: np.ndarray = np.array([], dtype=object)
        self._nh_tree: shapely.STRtree | None = None
        self.member_geoms: dict[str, shapely.Geometry] = {}
        if path is None:
            return
        feats = _features(_read_geojson(Path(path)), Path(path))
        names = [str(p.get("NH_NAME") or "") or None for p, _ in feats]
        geoms = [g for _, g in feats]
        for g in geoms:
            shapely.prepare(g)
        self.neighborhood_names = np.array(names, dtype=object)
        self.neighborhood_geoms = np.array(geoms, dtype=object)
        self._nh_tree = shapely.STRtree(geoms)
        self.member_geoms = {n: g for n, g in zip(names, geoms, strict=True) if n in self.members}
        missing = [m for m in self.members if m not in self.member_geoms]
        if missing:
            log.warning("zone members %s not found in %s; inside points are named by that file "
                        "alone", missing, path)

    # -- one point -------------------------------------------------------------------------
    def check(self, lat: float, lon: float) -> ZoneAnswer:
        """Answer for one point given in decimal degrees.

        Parameters
        ----------
        lat, lon
            WGS 84 degrees (numbers or numeric text); out of range -> ZoneInputError.

        Returns
        -------
        ZoneAnswer
        """
        lat_f, lon_f = parse_coordinate(lat, "lat"), parse_coordinate(lon, "lon")
        check_not_swapped(lat_f, lon_f)
        batch = self.check_many(np.array([lat_f]), np.array([lon_f]))
        return ZoneAnswer(
            inside=bool(batch.inside[0]),
            neighborhood=batch.neighborhood[0],
            distance_to_boundary_ft=round(float(batch.distance_to_boundary_ft[0]), 1),
            near_boundary=bool(batch.near_boundary[0]),
            zone_version=self.zone_version,
        )

    # -- arrays ----------------------------------------------------------------------------
    def inside_many(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Vectorised inside test (boundary counts as inside); NaN coordinates -> False.

        Large batches go through a cell grid over the zone's bounding box: points in cells
        wholly inside or wholly outside the zone are answered by a table look-up, and only
        points in cells that touch the boundary get the exact test (``intersects_xy`` on the
        prepared polygon). The answer is the same as testing every point exactly.
        """
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        if lon.size < GRID_MIN_POINTS:
            return np.asarray(shapely.intersects_xy(self.zone, lon, lat), dtype=bool)
        if lon.shape != lat.shape:
            raise ValueError(f"lat and lon arrays differ in shape: {lat.shape} vs {lon.shape}.")
        state, (x0, y0, dx, dy) = self._cell_grid()
        nx, ny = state.shape
        minx, miny, maxx, maxy = self.zone.bounds
        x, y = lon.ravel(), lat.ravel()
        in_box = (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)  # NaN -> False
        idx = np.flatnonzero(in_box)
        ix = np.minimum(((x[idx] - x0) / dx).astype(np.intp), nx - 1)
        iy = np.minimum(((y[idx] - y0) / dy).astype(np.intp), ny - 1)
        cell = state[ix, iy]
        out = np.zeros(x.shape, dtype=bool)
        out[idx[cell == 1]] = True
        edge = idx[cell == 2]
        out[edge] = shapely.intersects_xy(self.zone, x[edge], y[edge])
        return out.reshape(lon.shape)

    def _cell_grid(self) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """Cell states over the zone's bounding box: 0 outside, 1 inside, 2 touches the boundary.

        Built on first use (about 0.1 s, so single-point checks never pay for it). Cells are
        grown by ``GRID_EPSILON_DEG`` before the boundary test, so a point that floating-point
        rounding puts in a neighbouring cell still gets the exact test when near the boundary.
        """
        if self._grid is None:
            minx, miny, maxx, maxy = self.zone.bounds
            n = GRID_CELLS
            dx, dy = (maxx - minx) / n, (maxy - miny) / n
            gx, gy = np.meshgrid(minx + dx * np.arange(n), miny + dy * np.arange(n), indexing="ij")
            eps = GRID_EPSILON_DEG
            boxes = shapely.box(gx - eps, gy - eps, gx + dx + eps, gy + dy + eps)
            boundary = self.zone.boundary
            shapely.prepare(boundary)
            touches = shapely.intersects(boundary, boxes)
            centre_in = shapely.intersects_xy(self.zone, gx + dx / 2, gy + dy / 2)
            state = np.where(touches, 2, centre_in.astype(np.int8)).astype(np.int8)
            self._grid = (state, (minx, miny, dx, dy))
        return self._grid

    def distance_many(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Distance in feet (EPSG:2246) from each point to the zone boundary (NaN for NaN)."""
        x_ft, y_ft = project_lonlat(lon, lat)
        ok = np.isfinite(x_ft) & np.isfinite(y_ft)  # pyproj maps NaN input to inf
        dist_ft = np.full(x_ft.shape, np.nan)
        pts = shapely.points(x_ft[ok], y_ft[ok])
        (pt_idx, _), nearest_ft = self._segment_tree.query_nearest(pts, return_distance=True,
                                                                    all_matches=False)
        sub = np.full(pts.shape, np.nan)
        sub[pt_idx] = nearest_ft
        dist_ft[ok] = sub
        return dist_ft

    def neighborhood_many(self, lat: np.ndarray, lon: np.ndarray,
                          inside: np.ndarray | None = None) -> np.ndarray:
        """Name of the neighborhood of each point (object array, ``None`` where none).

        Inside the zone, only member neighborhoods answer (nearest member for slivers);
        outside, any LOJIC neighborhood containing the point.
        """
        lat = np.asarray(lat, dtype=float)
        lon = np.asarray(lon, dtype=float)
        out = np.full(lat.shape, None, dtype=object)
        if self._nh_tree is None:
            return out
        if inside is None:
            inside = self.inside_many(lat, lon)
        # Bounding-box candidates from the tree, then one vectorised point-in-polygon test per
        # neighborhood (prepared): much faster than the tree's own predicate for many points.
        pt_idx, nh_idx = self._nh_tree.query(shapely.points(lon, lat))
        keep = np.zeros(pt_idx.shape, dtype=bool)
        for k in np.unique(nh_idx):
            sel = nh_idx == k
            keep[sel] = shapely.intersects_xy(self.neighborhood_geoms[k], lon[pt_idx[sel]],
                                              lat[pt_idx[sel]])
        pt_idx, nh_idx = pt_idx[keep], nh_idx[keep]
        names = self.neighborhood_names[nh_idx]
        if self.member_geoms:
            # Inside the zone, a member name wins over any other polygon touching the point.
            is_member = np.isin(names, np.array(self.members, dtype=object))
            order = np.lexsort((~is_member, pt_idx))  # per point: members first
            pt_idx, names = pt_idx[order], names[order]
        first = np.unique(pt_idx, return_index=True)[1]
        out[pt_idx[first]] = names[first]
        if self.member_geoms:
            unnamed = np.flatnonzero(inside & ~np.isin(out, np.array(self.members, dtype=object)))
            for i in unnamed:  # sliver of the union outside every member polygon: nearest member
                p = shapely.Point(lon[i], lat[i])
                out[i] = min(self.member_geoms, key=lambda m: shapely.distance(self.member_geoms[m], p))
        return out

    def check_many(self, lat: np.ndarray, lon: np.ndarray, *, distances: bool = True,
                   neighborhoods: bool = True) -> ZoneBatch:
        """Answers for arrays of points (no validation: NaN points are outside, distance NaN).

        Parameters
        ----------
        lat, lon
            Arrays of WGS 84 degrees, same shape.
        distances
            Compute ``distance_to_boundary_ft`` and ``near_boundary`` (projection + distance,
            slower than the inside test alone).
        neighborhoods
            Name the neighborhood of each point.

        Returns
        -------
        ZoneBatch
        """
        lat = np.asarray(lat, dtype=float)
        lon = np.asarray(lon, dtype=float)
        if lat.shape != lon.shape:
            raise ValueError(f"lat and lon arrays differ in shape: {lat.shape} vs {lon.shape}.")
        inside = self.inside_many(lat, lon)
        if distances:
            dist_ft = self.distance_many(lat, lon)
            near = dist_ft <= self.near_boundary_ft  # NaN compares False
        else:
            dist_ft = np.full(lat.shape, np.nan)
            near = np.zeros(lat.shape, dtype=bool)
        names = (self.neighborhood_many(lat, lon, inside) if neighborhoods
                 else np.full(lat.shape, None, dtype=object))
        return ZoneBatch(inside, names, dist_ft, near, self.zone_version)


# --- addresses (geocoded first; the geocoder is imported only on this path) ---------------

class _Placed(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Locator(Protocol):
    """A geocoder that places one address without pandas (`geo_lead.geocode.Geocoder`)."""

    def locate(self, address: str, zip_code: str | None = ...) -> _Placed: ...


class BatchGeocoder(Protocol):
    """A geocoder of many addresses: a frame with lon, lat, match_type, score,
    matched_address, reason (one row per address, in order)."""

    def geocode(self, addresses: Sequence[str],
                zips: Sequence[str | None] | None = ...) -> pd.DataFrame: ...


def default_geocoder() -> Geocoder:
    """The project's offline geocoder, ``geo_lead.geocode.Geocoder()``.

    Raises
    ------
    GeocodeError
        When this build has no geocoder (address lookup then needs --lat/--lon instead).
    """
    try:
        from geo_lead.geocode import Geocoder
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("geo_lead"):
            raise
        raise GeocodeError("address lookup needs the offline geocoder (geo_lead.geocode), "
                           "which is not in this build; give --lat/--lon instead.") from None
    return Geocoder()


def check_address(checker: ZoneChecker, address: str, zip_code: str | None = None,
                  geocoder: Locator | BatchGeocoder | None = None) -> dict[str, Any]:
    """Geocode one address, then answer for the point it lands on.

    Parameters
    ----------
    checker
        The zone checker.
    address
        Street address or LMPD block address (``"2700 BLOCK W MADISON ST"``).
    zip_code
        Optional ZIP code, helps the geocoder choose between same-named streets.
    geocoder
        A `geo_lead.geocode.Geocoder` (its pandas-free ``locate`` is used), or anything with
        ``geocode(addresses, zips) -> DataFrame`` (lon, lat, match_type, score,
        matched_address, reason); default :func:`default_geocoder`.

    Returns
    -------
    dict
        The :class:`ZoneAnswer` fields plus ``lon``, ``lat``, ``match_type``, ``score`` and
        ``matched_address`` saying where and how the address was placed.

    Raises
    ------
    ZoneInputError
        Empty or unmatched address (the message carries the geocoder's reason).
    """
    if address is None or not str(address).strip():
        raise ZoneInputError("address is empty; give a street address such as "
                             "'2700 BLOCK W MADISON ST', or --lat/--lon.")
    if geocoder is None:
        geocoder = default_geocoder()
    zip_text = str(zip_code).strip() if zip_code not in (None, "") else None
    if isinstance(geocoder, Locator):  # one address without pandas (`Geocoder.locate`)
        row = geocoder.locate(str(address).strip(), zip_text).to_dict()
    else:
        result = geocoder.geocode([str(address).strip()], [zip_text])
        row = {k: result[k].iloc[0] for k in result.columns}
    lat, lon = row.get("lat"), row.get("lon")
    unmatched = (row.get("match_type") in (None, "unmatched") or lat is None or lon is None
                 or not (math.isfinite(float(lat)) and math.isfinite(float(lon))))
    if unmatched or lat is None or lon is None:
        reason = row.get("reason") or "no match"
        raise ZoneInputError(f"address {_shown(address, 120)}{f' (ZIP {_shown(zip_text)})' if zip_text else ''} "
                             f"could not be located: {reason}. Check the spelling, add the ZIP "
                             "code, or give --lat/--lon.")
    # check the point as published (7 decimals, ~1 cm), so checking the returned lat/lon again
    # gives this very answer
    lat, lon = round(float(lat), 7), round(float(lon), 7)
    answer = checker.check(lat, lon).to_dict()
    answer.update(lon=lon, lat=lat,
                  match_type=str(row["match_type"]),
                  score=None if row.get("score") is None else round(float(row["score"]), 3),
                  matched_address=None if row.get("matched_address") is None
                  else str(row["matched_address"]))
    return answer
