"""LMPD police beats and divisions: the one loader of the beat polygons.

Every LMPD record names its beat (``LMPD_BEAT``, e.g. ``112``): the 3-digit ``ZONE`` code of
a polygon of the LOJIC "Louisville Metro Police Beats" shapefile, copied to
``boundaries/source/lmpd_beats/`` (provenance and the note on its redistribution terms in
``boundaries/SOURCE.md``). `geo-lead boundaries rebuild` turns it into the shipped
``boundaries/lmpd_beats.geojson`` (`build_beats`) and ``boundaries/lmpd_divisions.geojson``
(`build_divisions`); everything else reads those files through this module:

* `load_beats` / `load_divisions`: GeoDataFrames in EPSG:2246 (analysis: joins, overlays);
* `read_beat_index`: the same beats as shapely geometries and numpy arrays, for the geocoder
  and the officer's path, which never import pandas or geopandas (geopandas is imported here
  only inside the functions that return GeoDataFrames);
* `beat_check`: where a placed record lies relative to the beat it names (``same``,
  ``adjacent``, ``other``, ``no_beat``).

This module never touches the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from geo_lead import settings
from geo_lead.errors import CRSMismatchError, GeoLeadError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

log = logging.getLogger(__name__)

BEATS_SHAPEFILE: Path = settings.BOUNDARIES_DIR / "source" / "lmpd_beats" / "lmpd_beat.shp"

#: The values of ``beat_check`` (records column) and of `beat_check`.
BEAT_CHECKS: tuple[str, ...] = ("same", "adjacent", "other", "no_beat")

#: Columns of the shipped beats file, in order (geometry last).
BEAT_COLUMNS: tuple[str, ...] = ("beat", "division", "sector", "dist_desc")


# --- building the shipped files (geopandas) ---------------------------------------------

def build_beats(shapefile: Path = BEATS_SHAPEFILE) -> gpd.GeoDataFrame:
    """LOJIC beat polygons -> one valid (multi)polygon per beat code, EPSG:2246.

    Parameters
    ----------
    shapefile
        The LOJIC beats shapefile (ZONE, DISTRICT, SECTOR, DIST_DESC).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``beat`` (the ZONE code as text: ``111``, ``STM`` ...), ``division`` (DISTRICT:
        ``1`` .. ``8`` or a small city's police area), ``sector``, ``dist_desc``, geometry
        (made valid, polygonal parts only), sorted by beat. Features without a ZONE (one
        18.5 sq mi polygon outside Jefferson County, DISTRICT ``LMPD``) are left out: no record
        can name them. Parts with the same ZONE (St Matthews' 56, Jeffersontown's 15) are
        dissolved into one beat.

    Raises
    ------
    CRSMismatchError
        The shapefile has no CRS (.prj missing).
    """
    import geopandas as gpd

    raw = gpd.read_file(shapefile)
    if raw.crs is None:
        raise CRSMismatchError(f"{shapefile}: no CRS (.prj missing); expected EPSG:2246.")
    raw = raw.to_crs(settings.CRS_PROJECTED)
    zone = raw["ZONE"].fillna("").astype(str).str.strip()
    raw = raw[zone != ""].assign(
        beat=zone[zone != ""],
        division=raw["DISTRICT"].fillna("").astype(str).str.strip(),
        sector=raw["SECTOR"].fillna("").astype(str).str.strip(),
        dist_desc=raw["DIST_DESC"].fillna("").astype(str).str.strip())
    raw = raw.set_geometry(_polygonal(raw.geometry.make_valid()))
    beats = raw.dissolve(by="beat", aggfunc={"division": "first", "sector": "first",
                                             "dist_desc": "first"}).reset_index()
    beats = beats.set_geometry(_polygonal(beats.geometry.make_valid()))
    return beats[[*BEAT_COLUMNS, "geometry"]].sort_values("beat").reset_index(drop=True)


def build_divisions(beats: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Beats dissolved on ``division`` (EPSG of `beats`).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``division`` (DISTRICT), ``dist_desc``, ``beats`` (the member beat codes,
        ``;``-joined, sorted), geometry (valid); sorted by division.
    """
    parts = beats.assign(beats=beats["beat"])
    div = parts.dissolve(by="division", aggfunc={"dist_desc": "first",
                                                 "beats": lambda s: ";".join(sorted(s))}).reset_index()
    div = div.set_geometry(_polygonal(div.geometry.make_valid()))
    return div[["division", "dist_desc", "beats", "geometry"]].sort_values("division").reset_index(drop=True)


def _polygonal(geoms: Any) -> Any:
    """Keep the polygonal parts of each geometry (make_valid can add stray lines)."""
    out = [shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")])
           if g.geom_type == "GeometryCollection" else g for g in geoms]
    return type(geoms)(out, index=geoms.index, crs=geoms.crs)


# --- reading the shipped files ------------------------------------------------------------

def load_beats(path: Path = settings.BEATS_FILE) -> gpd.GeoDataFrame:
    """The shipped beats, in EPSG:2246 (US survey feet), every geometry valid.

    The file itself is EPSG:4326 GeoJSON (7-decimal coordinates); it is projected here.

    Returns
    -------
    geopandas.GeoDataFrame
        ``beat`` (str), ``division`` (str), ``sector``, ``dist_desc``, geometry.

    Raises
    ------
    GeoLeadError
        The file is missing (run `geo-lead boundaries rebuild`).
    """
    gdf = _read(path)
    for col in BEAT_COLUMNS:
        gdf[col] = gdf[col].astype(str)
    return gdf


def load_divisions(path: Path = settings.DIVISIONS_FILE) -> gpd.GeoDataFrame:
    """The shipped LMPD divisions (beats dissolved on DISTRICT), in EPSG:2246.

    The file itself is EPSG:4326 GeoJSON; it is projected here.

    Returns
    -------
    geopandas.GeoDataFrame
        ``division`` (str: ``1`` .. ``8`` or a small city's police area), ``dist_desc``,
        ``beats`` (``;``-joined codes), geometry (valid).
    """
    gdf = _read(path)
    gdf["division"] = gdf["division"].astype(str)
    return gdf


#: Beat files read in this process: (resolved path, sha256 of the bytes) -> the projected,
#: valid frame (`_read`); at most `READ_MAX` of them.
_READ: dict[tuple[str, str], gpd.GeoDataFrame] = {}
READ_MAX = 4


def _read(path: Path) -> gpd.GeoDataFrame:
    """The beat file at `path` in EPSG:2246, every geometry valid; parsed, projected and
    repaired once per process per content (sha256 of its bytes: a run's ingest and join both
    load the beats), each caller given its own copy."""
    if not Path(path).exists():
        raise GeoLeadError(f"{path}: beat file missing; run `geo-lead boundaries rebuild`.")
    raw = Path(path).read_bytes()
    key = (str(Path(path).resolve()), hashlib.sha256(raw).hexdigest())
    gdf = _READ.get(key)
    if gdf is None:
        gdf = _parsed(path, raw, key[1])
        while len(_READ) >= READ_MAX:
            _READ.pop(next(iter(_READ)))
        _READ[key] = gdf
    return gdf.copy()


#: `geo_lead.result_cache` kind of the parsed beat files (`_parsed`, `_read_index`).
PARSED_CACHE = "beats_parsed"


def _parsed_key(form: str, sha256: str, *libraries: str) -> str:
    """The result-cache key of a beat file parsed into `form`: the sha256 of its bytes, the
    package's code (the projection and the repair are in it) and the parsing libraries' versions."""
    from geo_lead import result_cache

    return result_cache.digest([PARSED_CACHE, form, result_cache.code_version(), sha256,
                                result_cache.library_versions(*libraries)])


def _parsed(path: Path, raw: bytes, sha256: str) -> gpd.GeoDataFrame:
    """The beat file's bytes `raw` read, projected and repaired; kept across runs (each process
    of a run loading beats parsed, projected and repaired the same file again, ~0.15 s)."""
    import geopandas as gpd

    from geo_lead import result_cache

    def parse() -> gpd.GeoDataFrame:
        gdf = gpd.read_file(io.BytesIO(raw))
        if gdf.crs is None:
            raise CRSMismatchError(f"{path}: no CRS; the beat GeoJSON must be EPSG:4326.")
        gdf = gdf.to_crs(settings.CRS_PROJECTED)
        return gdf.set_geometry(gdf.geometry.make_valid())

    key = _parsed_key("frame", sha256, "geopandas", "pyogrio", "shapely", "pyproj", "pandas", "numpy")
    return result_cache.kept_object(PARSED_CACHE, key, gpd.GeoDataFrame, parse)


# --- beats without pandas: the geocoder's and the officer's view ----------------------------

@dataclass(frozen=True)
class BeatIndex:
    """Beat polygons as shapely geometries (EPSG:2246), for point lookups without pandas.

    Attributes
    ----------
    codes
        Beat codes, in file order.
    geoms
        One valid shapely (multi)polygon per code, EPSG:2246 feet.
    divisions
        The division (DISTRICT) of each beat.
    adjacent
        Beat code -> codes of the beats within `settings.BEAT_ADJACENT_FT` of it.
    """

    codes: tuple[str, ...]
    geoms: np.ndarray
    divisions: tuple[str, ...]
    adjacent: dict[str, frozenset[str]]
    _pos: dict[str, int] = field(repr=False, default_factory=dict)
    _tree: Any = field(repr=False, default=None)

    @classmethod
    def from_geometries(cls, codes: list[str], geoms: list[Any], divisions: list[str] | None = None,
                        adjacent_ft: float = settings.BEAT_ADJACENT_FT) -> BeatIndex:
        """Build the index from beat codes and EPSG:2246 geometries."""
        arr = np.empty(len(geoms), dtype=object)
        arr[:] = [shapely.make_valid(g) for g in geoms]
        tree = shapely.STRtree(arr)
        near: dict[str, set[str]] = {c: set() for c in codes}
        left, right = tree.query(arr, predicate="dwithin", distance=adjacent_ft)
        for i, j in zip(left.tolist(), right.tolist(), strict=True):
            if i != j:
                near[codes[i]].add(codes[j])
        shapely.prepare(arr)
        return cls(tuple(codes), arr, tuple(divisions or [""] * len(codes)),
                   {c: frozenset(v) for c, v in near.items()},
                   {c: i for i, c in enumerate(codes)}, tree)

    def has(self, code: str) -> bool:
        """True when `code` (normalised by `normalize_beat`) names a polygon."""
        return normalize_beat(code) in self._pos

    def geometry(self, code: str) -> Any:
        """The beat's polygon (EPSG:2246), None when the code names none."""
        i = self._pos.get(normalize_beat(code))
        return None if i is None else self.geoms[i]

    def beat_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Code of the beat containing each point (EPSG:2246 feet); ``""`` outside every beat.

        A point on the edge of two beats gets the first in file order.
        """
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        out = np.full(x.shape, "", dtype=object)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return out
        pts = shapely.points(x[ok], y[ok])
        pi, gi = self._tree.query(pts, predicate="intersects")
        hit = np.full(pts.shape, -1, dtype=np.int64)
        order = np.lexsort((gi, pi))  # first beat (file order) per point
        pi, gi = pi[order], gi[order]
        first = np.r_[True, pi[1:] != pi[:-1]] if pi.size else np.zeros(0, bool)
        hit[pi[first]] = gi[first]
        codes = np.asarray(self.codes, dtype=object)
        sub = np.where(hit >= 0, codes[np.maximum(hit, 0)] if len(codes) else "", "")
        out[np.flatnonzero(ok)] = sub
        return out

    def within(self, code: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point (EPSG:2246) lies in beat `code` (boundary included); all False
        when the code names no polygon."""
        geom = self.geometry(code)
        x = np.atleast_1d(np.asarray(x, float))
        if geom is None:
            return np.zeros(x.shape, bool)
        return np.asarray(shapely.intersects_xy(geom, x, np.atleast_1d(np.asarray(y, float))))

    def check(self, x: np.ndarray, y: np.ndarray, beats: Any) -> np.ndarray:
        """`beat_check` labels for points (EPSG:2246 feet) and the beats their records name."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        named = [normalize_beat(b) for b in np.atleast_1d(np.asarray(beats, dtype=object))]
        if len(named) != x.size:
            raise ValueError(f"{x.size} points but {len(named)} beats")
        at = self.beat_at(x, y)
        out = np.full(x.shape, "", dtype=object)
        for i, (code, where) in enumerate(zip(named, at, strict=True)):
            if not (np.isfinite(x[i]) and np.isfinite(y[i])):
                continue
            if code not in self._pos:
                out[i] = "no_beat"
            elif where == code or (where != "" and bool(self.within(code, x[i:i + 1], y[i:i + 1])[0])):
                out[i] = "same"
            elif where in self.adjacent[code]:
                out[i] = "adjacent"
            else:
                out[i] = "other"
        return out


def normalize_beat(value: object) -> str:
    """A record's beat text -> the code the polygons carry (``' 112 '``, ``112.0`` -> ``112``).

    Empty, null and ``NULL`` give ``""``. Text is upper-cased; nothing else is guessed.
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer():
            return str(int(value))
    text = str(value).strip().upper()
    if text in settings.NULL_STRINGS or text == "NAN":
        return ""
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def read_beat_index(path: Path = settings.BEATS_FILE) -> BeatIndex:
    """The shipped beats as a `BeatIndex` (EPSG:2246), read with json + shapely + pyproj.

    Cached per file path and modification time.

    Raises
    ------
    GeoLeadError
        The file is missing.
    """
    path = Path(path)
    if not path.exists():
        raise GeoLeadError(f"{path}: beat file missing; run `geo-lead boundaries rebuild`.")
    return _read_index(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _read_index(path: str, _mtime_ns: int) -> BeatIndex:
    """The index of the beat file at `path`, kept across runs under the sha256 of its bytes
    (`_parsed_key`): a hit is the index built from those bytes, its polygons prepared again."""
    from geo_lead import result_cache

    raw = Path(path).read_bytes()
    key = _parsed_key("index", hashlib.sha256(raw).hexdigest(), "shapely", "pyproj", "numpy")
    index = result_cache.kept_object(PARSED_CACHE, key, BeatIndex, lambda: _index_of(raw))
    shapely.prepare(index.geoms)  # preparation is not pickled (a no-op on a built index)
    return index


def _index_of(raw: bytes) -> BeatIndex:
    from pyproj import Transformer

    data = json.loads(raw.decode("utf-8"))
    to_ft = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True)
    codes, geoms, divisions = [], [], []
    for feat in data["features"]:
        props = feat.get("properties") or {}
        geom = shapely.geometry.shape(feat["geometry"])
        geom = shapely.transform(geom, lambda c: np.column_stack(to_ft.transform(c[:, 0], c[:, 1])))
        codes.append(normalize_beat(props.get("beat")))
        divisions.append(str(props.get("division") or ""))
        geoms.append(geom)
    return BeatIndex.from_geometries(codes, geoms, divisions)


def beat_check(lon: np.ndarray, lat: np.ndarray, beats: Any, index: BeatIndex | None = None) -> np.ndarray:
    """Where each placed record lies relative to the beat it names.

    Parameters
    ----------
    lon, lat
        The record's point, EPSG:4326 (NaN when not placed).
    beats
        The beat each record names (``LMPD_BEAT``; text, any null).
    index
        The beats; default the shipped file (`read_beat_index`).

    Returns
    -------
    numpy.ndarray
        Object array aligned to the inputs: ``same`` (the point lies in the named beat, its
        boundary included), ``adjacent`` (in a beat within `settings.BEAT_ADJACENT_FT` of it),
        ``other`` (anywhere else, outside every beat too), ``no_beat`` (the record names no
        beat, or one without a polygon such as ``METRO``), ``""`` when the point is missing.
    """
    from pyproj import Transformer

    index = index if index is not None else read_beat_index()
    lon = np.atleast_1d(np.asarray(lon, float))
    lat = np.atleast_1d(np.asarray(lat, float))
    to_ft = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True)
    x, y = to_ft.transform(lon, lat)
    return index.check(np.asarray(x), np.asarray(y), beats)
