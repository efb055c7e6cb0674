"""The reference gazetteer: address points, street centerlines and intersections -> an index.

Accepted inputs (detected from the columns; CSV, or any file GeoPandas reads):

* **address points** -- a full-address column (``street``/``address``/``full_address``) or a
  number column plus a street column, and lon/lat columns (or point geometry). The shipped
  OpenAddresses sample of LOJIC address points, or a user's complete LOJIC file.
* **Census geocoder results** -- ``m_address``/``status``/``long``/``lat``; only ``Match``
  rows are used, each as a point for its matched address (and for the input's spelling of
  the street, when that names it differently: see `_input_aliases`).
* **street centerlines with address ranges** -- LineString geometry (or a WKT column) and
  from/to house numbers per side (TIGER ADDRFEAT ``LFROMHN/LTOHN/RFROMHN/RTOHN``, EDGES
  ``LFROMADD/...``, LOJIC ``L_F_ADD/...``) plus a street name (``FULLNAME``). Each side becomes
  numbered vertices along the line, so interpolation follows the line; shared end nodes of
  different streets become intersections.
* **intersections** -- two street-name columns (``MAINSTREET``/``CROSSSTREET``) and lon/lat.

The index is built once per reference hash (sha256 of the files and `INDEX_VERSION`) and
pickled into a cache directory; later loads read the pickle and build nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_lead import settings
from geo_lead.errors import GeocodeError
from geo_lead.geocode.normalize import NAME_WORDS, Street, parse_address, parse_street

if TYPE_CHECKING:  # pandas reads the reference files (building the index) only: a loaded
    import pandas as pd  # index and the matcher need numpy alone (the zone check's path)

log = logging.getLogger(__name__)

#: Bump when the index layout or parsing rules change (invalidates cached indexes and caches).
INDEX_VERSION = "geocode-index-10"

SRC_POINT, SRC_CENSUS, SRC_CENTERLINE = 0, 1, 2

_LON = ("longitude", "lon", "long", "x", "lng")
_LAT = ("latitude", "lat", "y")
_FULL = ("street", "address", "full_address", "fulladdr", "full_addr", "addr", "m_address")
_NUM = ("number", "house_number", "houseno", "house_no", "addnum", "add_num", "address_number", "hn")
_STREET = ("street_name", "streetname", "strname", "st_name", "full_street", "fullname", "street")
_ZIP = ("postcode", "zip", "zipcode", "zip_code", "m_zip", "zip5")
_RANGES = {
    "lfrom": ("lfromhn", "lfromadd", "l_f_add", "fromleft", "l_add_from", "lfrom"),
    "lto": ("ltohn", "ltoadd", "l_t_add", "toleft", "l_add_to", "lto"),
    "rfrom": ("rfromhn", "rfromadd", "r_f_add", "fromright", "r_add_from", "rfrom"),
    "rto": ("rtohn", "rtoadd", "r_t_add", "toright", "r_add_to", "rto"),
}
_CL_NAME = ("fullname", "full_name", "street_name", "streetname", "name", "st_name", "street")
_CL_ZIP = {"l": ("zipl", "lzip", "l_zip", "zip_left"), "r": ("zipr", "rzip", "r_zip", "zip_right")}
_INT_A = ("mainstreet", "street1", "street_a", "main_street")
_INT_B = ("crossstreet", "street2", "street_b", "cross_street")


@dataclass
class Reference:
    """The built index. Points are sorted by (street id, number); coordinates in EPSG:2246 ft."""

    hash: str
    street_keys: list[str]
    street_parts: list[Street]
    pt_street: np.ndarray
    pt_number: np.ndarray
    pt_x: np.ndarray
    pt_y: np.ndarray
    pt_zip: np.ndarray
    pt_src: np.ndarray
    pt_parity: np.ndarray
    offsets: np.ndarray  # street i's points are offsets[i]:offsets[i+1]
    name_to_ids: dict[str, list[int]]
    key_to_id: dict[str, int]
    #: sorted (name_a, name_b) -> list of (x_ft, y_ft, type_a, type_b): the point and the street
    #: types the source stated for name_a and name_b ("" when none: most tables omit them)
    intersections: dict[tuple[str, str], list[tuple[float, float, str, str]]] = field(default_factory=dict)
    #: "name|type" of every street the reference files name, with or without a point: the
    #: Census inputs (``No_Match`` rows too) and the intersection table's names. A street
    #: known to exist is never replaced by a fuzzy match to another name.
    known_streets: frozenset[str] = field(default_factory=frozenset)
    sources: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: where a house number's rooftop lies along its hundred-block: fraction of the way from
    #: the block's start (number H00) to the next block's start, for offsets 0..100 (101
    #: values, learned by `learn_block_curve`); None: linear in the number
    block_curve: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        return int(self.pt_x.size)


# --- projection -------------------------------------------------------------------------
_TRANSFORMERS: dict[bool, Any] = {}


def _transformer(inverse: bool = False) -> Any:
    if inverse not in _TRANSFORMERS:
        from pyproj import Transformer

        src, dst = settings.CRS_STORE, settings.CRS_PROJECTED
        if inverse:
            src, dst = dst, src
        _TRANSFORMERS[inverse] = Transformer.from_crs(src, dst, always_xy=True)
    return _TRANSFORMERS[inverse]


def to_projected(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat (EPSG:4326) -> x/y feet (EPSG:2246)."""
    x, y = _transformer().transform(np.asarray(lon, float), np.asarray(lat, float))
    return np.asarray(x), np.asarray(y)


def to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x/y feet (EPSG:2246) -> lon/lat (EPSG:4326)."""
    lon, lat = _transformer(True).transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(lon), np.asarray(lat)


# --- reading ----------------------------------------------------------------------------
def shipped_reference_files() -> list[Path]:
    """The real reference files shipped in ``data/reference`` (see its SOURCE.md)."""
    return sorted(settings.REFERENCE_DIR.glob("*.csv"))


def reference_hash(paths: Sequence[Path]) -> str:
    """sha256 over the files' bytes and `INDEX_VERSION` (the cache and index key)."""
    h = hashlib.sha256(INDEX_VERSION.encode())
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower().lstrip("\ufeff"): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _read_any(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise GeocodeError(f"{path}: reference file not found.")
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                sep="\t" if path.suffix.lower() == ".tsv" else ",")
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise GeocodeError(f"{path}: cannot read as CSV ({exc}).") from None
        wkt = _pick(frame.columns, ("wkt", "geometry", "geom", "the_geom"))
        if wkt is not None:
            import geopandas as gpd
            from shapely import from_wkt

            geoms = from_wkt(frame[wkt].replace("", None).to_numpy(), on_invalid="ignore")
            return gpd.GeoDataFrame(frame.drop(columns=[wkt]), geometry=geoms, crs=settings.CRS_STORE)
        return frame
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path)
    except Exception as exc:
        raise GeocodeError(f"{path}: cannot read as a GIS file ({exc}).") from None
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(settings.CRS_STORE)
    return gdf


def _numbers(series: pd.Series) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(series.astype(str).str.extract(r"^\s*(\d{1,6})", expand=False),
                         errors="coerce").to_numpy(float)


def _zips(series: pd.Series | None, n: int) -> np.ndarray:
    if series is None:
        return np.zeros(n, np.int64)
    import pandas as pd

    z = pd.to_numeric(series.astype(str).str.extract(r"^\s*(\d{5})", expand=False), errors="coerce")
    return z.fillna(0).to_numpy(np.int64)


def _parse_unique(texts: pd.Series) -> tuple[np.ndarray, list[Any]]:
    import pandas as pd

    codes, uniques = pd.factorize(texts)
    return codes, [parse_address(u) for u in uniques]


class _Builder:
    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.parts: list[Street] = []
        self.cols: dict[str, list[np.ndarray]] = defaultdict(list)
        self.intersections: dict[tuple[str, str], list[tuple[float, float, str, str]]] = defaultdict(list)
        self.known: set[str] = set()
        self.counts: dict[str, int] = defaultdict(int)

    def street_id(self, street: Street) -> int:
        sid = self.keys.get(street.key)
        if sid is None:
            sid = self.keys[street.key] = len(self.parts)
            self.parts.append(street)
        return sid

    def add_points(self, streets: list[Street | None], number: np.ndarray, lon: np.ndarray,
                   lat: np.ndarray, zips: np.ndarray, src: int, parity: np.ndarray | None = None,
                   account: bool = True) -> int:
        """Add the rows that have a street, a number and a point in the county; count the rest.

        ``account=False`` for second copies of rows already accounted for (Census aliases).
        """
        readable = np.array([s is not None and bool(s.name) for s in streets], bool) & np.isfinite(number)
        located = np.isfinite(lon) & np.isfinite(lat)
        w, s_, e, n = settings.JEFFERSON_BBOX
        inside = located & (lon >= w) & (lon <= e) & (lat >= s_) & (lat <= n)
        # every row is accounted for: kept, or skipped with a reason (logged and counted)
        if account:
            self.counts["skipped_no_address"] += int((~readable).sum())
            self.counts["skipped_no_coordinates"] += int((readable & ~located).sum())
            self.counts["skipped_outside_county"] += int((readable & located & ~inside).sum())
        ok = readable & inside
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return 0
        x, y = to_projected(lon[idx], lat[idx])
        self.cols["street"].append(np.array([self.street_id(streets[i]) for i in idx], np.int64))  # type: ignore[arg-type]
        self.cols["number"].append(number[idx].astype(float))
        self.cols["x"].append(x)
        self.cols["y"].append(y)
        self.cols["zip"].append(zips[idx])
        self.cols["src"].append(np.full(idx.size, src, np.int8))
        par = (number[idx].astype(np.int64) % 2) if parity is None else parity[idx]
        self.cols["parity"].append(par.astype(np.int8))
        return int(idx.size)

    def add_intersection(self, a: Street, b: Street, x: float, y: float,
                         raw_a: str = "", raw_b: str = "") -> None:
        # Tables often omit the type ("LAKE FOREST", "SHELBYVILLE"): index the parsed name
        # and the whole text (less directions) so "LAKE FOREST PKWY" finds "LAKE FOREST".
        # Each name variant keeps the type stated with it: the parsed name its parsed type
        # ("SOUTHERN HEIGHTS" -> SOUTHERN + HTS, which a SOUTHERN PKWY query must not take),
        # the whole text none (its type word is part of the name).
        va = {(intersection_name(a), a.stype), (_raw_name(raw_a), "")}
        vb = {(intersection_name(b), b.stype), (_raw_name(raw_b), "")}
        self.know(a)
        self.know(b)
        for na, ta in va:
            for nb, tb in vb:
                if na and nb and na != nb:
                    if na < nb:
                        self.intersections[(na, nb)].append((float(x), float(y), ta, tb))
                    else:
                        self.intersections[(nb, na)].append((float(x), float(y), tb, ta))

    def know(self, street: Street | None) -> None:
        """Record that the files name this street (`Reference.known_streets`)."""
        if street is not None and street.name:
            self.known.add(f"{street.name}|{street.stype}")

    def finish(self, ref_hash: str, sources: list[str]) -> Reference:
        if not self.cols:
            raise GeocodeError("the reference files contain no usable address points, centerlines "
                               "or intersections (check the column names: see geo_lead/geocode/reference.py).")
        cat = {k: np.concatenate(v) for k, v in self.cols.items()}
        order = np.lexsort((cat["number"], cat["street"]))
        cat = {k: v[order] for k, v in cat.items()}
        n_streets = len(self.parts)
        offsets = np.searchsorted(cat["street"], np.arange(n_streets + 1)).astype(np.int64)
        curve = learn_block_curve(cat["street"], cat["number"], cat["x"], cat["y"], cat["src"])
        name_to_ids: dict[str, list[int]] = defaultdict(list)
        for i, st in enumerate(self.parts):
            name_to_ids[st.name].append(i)
        return Reference(
            hash=ref_hash, street_keys=[p.key for p in self.parts], street_parts=self.parts,
            pt_street=cat["street"], pt_number=cat["number"], pt_x=cat["x"], pt_y=cat["y"],
            pt_zip=cat["zip"], pt_src=cat["src"], pt_parity=cat["parity"], offsets=offsets,
            name_to_ids=dict(name_to_ids), key_to_id=dict(self.keys),
            intersections=dict(self.intersections), sources=sources, counts=dict(self.counts),
            block_curve=curve,
            known_streets=frozenset(self.known | {f"{p.name}|{p.stype}" for p in self.parts}))


def _rooftops_beside_census_blocks(street: np.ndarray, number: np.ndarray, x: np.ndarray, y: np.ndarray,
                                   src: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Address points (not hundreds) of a block whose start (H00) and next start (H00+100)
    both have Census points on the same street: ``(index, t, left_ft, chord_ft)`` per point,
    `t` the fraction of the way along the H00 -> H00+100 chord, `left_ft` the signed distance
    from it (left of the way numbers increase is +). None without two Census hundreds.
    """
    cen = (src == SRC_CENSUS) & (number % 100 == 0)
    if cen.sum() < 2:
        return None
    keys, ax, ay = _group_mean(_street_number_key(street[cen], number[cen]), x[cen], y[cen])
    roof = np.flatnonzero((src == SRC_POINT) & (number % 100 != 0))
    h = (number[roof] // 100 * 100).astype(np.int64)
    a = _lookup(keys, ax, ay, _street_number_key(street[roof], h))
    b = _lookup(keys, ax, ay, _street_number_key(street[roof], h + 100))
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    d = b[ok] - a[ok]
    chord = np.hypot(d[:, 0], d[:, 1])
    v = np.column_stack([x[roof][ok], y[roof][ok]]) - a[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        left = (d[:, 0] * v[:, 1] - d[:, 1] * v[:, 0]) / chord
        t = (v * d).sum(axis=1) / chord**2
    return roof[ok], t, left, chord


def _street_number_key(street: np.ndarray, number: np.ndarray) -> np.ndarray:
    """One int64 per (street id, whole house number): numbers stay below 10**7."""
    return np.asarray(street, np.int64) * 10_000_000 + np.asarray(number).astype(np.int64)


def _group_mean(keys: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct `keys` and the mean `x`, `y` of each.

    Sums run in input order with Kahan compensation, as pandas' ``groupby(...).mean()`` does,
    so the means are those pandas gives, to the last bit.
    """
    uniq, inv = np.unique(keys, return_inverse=True)
    order = np.argsort(inv, kind="stable")  # by group, input order within each
    first = np.searchsorted(inv[order], np.arange(uniq.size))
    rank = np.empty(inv.size, np.int64)
    rank[order] = np.arange(inv.size) - first[inv[order]]
    count = np.bincount(inv, minlength=uniq.size).astype(float)
    means = []
    for v in (np.asarray(x, float), np.asarray(y, float)):
        total = np.zeros(uniq.size)
        comp = np.zeros(uniq.size)
        for r in range(int(rank.max()) + 1 if rank.size else 0):
            sel = np.flatnonzero(rank == r)
            g = inv[sel]
            step = v[sel] - comp[g]
            t = total[g] + step
            comp[g] = (t - total[g]) - step
            total[g] = t
        means.append(total / np.maximum(count, 1.0))
    return uniq, means[0], means[1]


def _lookup(keys: np.ndarray, x: np.ndarray, y: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``(n, 2)`` x, y of each `query` key among the sorted `keys` (NaN when absent)."""
    pos = np.searchsorted(keys, query)
    clipped = np.minimum(pos, max(keys.size - 1, 0))
    found = (pos < keys.size) & (keys[clipped] == query) if keys.size else np.zeros(query.shape, bool)
    out = np.full((query.size, 2), np.nan)
    out[found, 0] = x[clipped[found]]
    out[found, 1] = y[clipped[found]]
    return out


def learn_block_curve(street: np.ndarray, number: np.ndarray, x: np.ndarray, y: np.ndarray,
                      src: np.ndarray) -> np.ndarray | None:
    """Where rooftops lie along a hundred-block, learned from the reference itself.

    House numbers and range-interpolated numbers (Census geocoder points, centerline ranges)
    are on different scales: ``2700 W MADISON ST`` from the Census geocoder sits where the
    2700 block starts, the 2800 point where the next starts, but a block's houses rarely use
    all hundred numbers, so rooftop ``2722`` lies about halfway, not 22% of the way. For every
    address point with Census points at both its block's start (H00) and the next (H00+100)
    on the same street, the fraction of the way along that chord is measured; the median per
    10-number bin of the offset (1-99), made non-decreasing, gives the curve (offset 0 -> 0,
    100 -> 1, piecewise linear between).

    Returns
    -------
    numpy.ndarray or None
        101 fractions (offsets 0..100), or None when fewer than
        `settings.GEOCODE_BLOCK_CURVE_MIN_PAIRS` such points exist (e.g. a reference of
        address points or centerlines only): numbers are then used as they are.
    """
    beside = _rooftops_beside_census_blocks(street, number, x, y, src)
    if beside is None:
        return None
    roof, t, left, chord = beside
    offset = number[roof] - number[roof] // 100 * 100
    perp = np.abs(left)
    # a plausible block (not a jump between pieces of a same-named street), the point beside it
    use = ((chord >= settings.GEOCODE_BLOCK_CURVE_MIN_FT) & (chord <= settings.GEOCODE_BLOCK_CURVE_MAX_FT)
           & (perp <= 0.5 * chord) & (offset >= 1))
    if use.sum() < settings.GEOCODE_BLOCK_CURVE_MIN_PAIRS:
        return None
    t, offset = np.clip(t[use], 0.0, 1.0), offset[use]
    knots_x, knots_t = [0.0], [0.0]
    for lo in range(0, 100, 10):
        inb = (offset >= max(lo, 1)) & (offset < lo + 10)
        if inb.sum() >= settings.GEOCODE_BLOCK_CURVE_MIN_BIN:
            knots_x.append(float(np.median(offset[inb])))
            knots_t.append(float(np.median(t[inb])))
    knots_x.append(100.0)
    knots_t.append(1.0)
    curve = np.interp(np.arange(101.0), knots_x, np.maximum.accumulate(knots_t))
    log.info("block curve from %d address points: %s", int(use.sum()),
             ", ".join(f"{o}->{curve[o]:.2f}" for o in (10, 25, 50, 75)))
    return curve


@dataclass(frozen=True)
class SideModel:
    """Which side of the street odd and even rooftops stand on, learned from the reference.

    Attributes
    ----------
    offset_ft
        Median distance of a rooftop from its block's Census chord (H00 -> H00+100).
    odd_left_share
        County-wide share of rooftops on the side the odd-left rule predicts (odd numbers left,
        even right, facing higher numbers).
    street_votes
        Per street id: the rooftops that follow the odd-left rule minus those that do not.
    """

    offset_ft: float
    odd_left_share: float
    street_votes: dict[int, int]

    def signed_offset_ft(self, street: int, number: int) -> float:
        """Expected offset left (+) or right (-) of the way numbers increase, for `number`.

        The street's own rooftops decide the side when they lean one way; else the county
        share gives the expected offset (full offset times 2 x share - 1).
        """
        vote = self.street_votes.get(street, 0)
        if vote:
            odd_left = float(np.sign(vote)) * self.offset_ft
        else:
            odd_left = (2.0 * self.odd_left_share - 1.0) * self.offset_ft
        return odd_left if number % 2 == 1 else -odd_left


def learn_side_model(street: np.ndarray, number: np.ndarray, x: np.ndarray, y: np.ndarray,
                     src: np.ndarray) -> SideModel | None:
    """Learn `SideModel` from address points lying along a block between two Census points.

    Census geocoder points sit on the range line (near the centreline); a house stands back
    from it on its side. For every address point with Census points at its block's start (H00)
    and the next (H00+100) on the same street (as in `learn_block_curve`), its signed distance
    from that chord (left of the way numbers increase is +) is measured. None when fewer than
    `settings.GEOCODE_BLOCK_CURVE_MIN_PAIRS` such points exist.
    """
    beside = _rooftops_beside_census_blocks(street, number, x, y, src)
    if beside is None:
        return None
    roof, t, left, chord = beside
    use = ((chord >= settings.GEOCODE_BLOCK_CURVE_MIN_FT) & (chord <= settings.GEOCODE_BLOCK_CURVE_MAX_FT)
           & (np.abs(left) <= 0.5 * chord) & (t > 0) & (t < 1))
    if use.sum() < settings.GEOCODE_BLOCK_CURVE_MIN_PAIRS:
        return None
    odd = number[roof][use].astype(np.int64) % 2 == 1
    odd_left = np.where(odd, left[use], -left[use])  # > 0: the point follows the odd-left rule
    streets, inv = np.unique(street[roof][use], return_inverse=True)
    votes = np.bincount(inv, weights=np.sign(odd_left), minlength=streets.size).astype(np.int64)
    model = SideModel(float(np.median(np.abs(odd_left))), float((odd_left > 0).mean()),
                      {int(k): int(v) for k, v in zip(streets, votes, strict=True) if v})
    log.info("side model from %d address points: %.0f ft off the range line, %.0f%% odd-left, "
             "%d streets lean one way", int(use.sum()), model.offset_ft, 100 * model.odd_left_share,
             len(model.street_votes))
    return model


def block_position(number: np.ndarray | float, curve: np.ndarray | None) -> np.ndarray:
    """House numbers on the range scale: H00 + 100 x curve(offset); the number when no curve."""
    n = np.asarray(number, float)
    if curve is None:
        return n
    h = np.floor(n / 100.0) * 100.0
    return h + 100.0 * np.interp(n - h, np.arange(101.0), curve)


def intersection_name(street: Street) -> str:
    """The name used to match intersection tables, which often omit type and direction."""
    name = street.name
    if name.endswith(" RAMP"):
        name = name[: -len(" RAMP")]
    return name


def _raw_name(text: str) -> str:
    if not text:
        return ""
    st = parse_street(text)
    tokens = text.split()
    if st.predir and tokens and tokens[0] in ("N", "S", "E", "W", "NORTH", "SOUTH", "EAST", "WEST"):
        tokens = tokens[1:]
    return intersection_name(Street(name=" ".join(tokens)))


def _lonlat(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    import pandas as pd

    if hasattr(frame, "geometry") and "geometry" in getattr(frame, "columns", []):
        geom = frame.geometry
        if len(geom) and (geom.geom_type == "Point").all():
            return geom.x.to_numpy(float), geom.y.to_numpy(float)
    lon_c, lat_c = _pick(frame.columns, _LON), _pick(frame.columns, _LAT)
    if lon_c is None or lat_c is None:
        return None
    return (pd.to_numeric(frame[lon_c], errors="coerce").to_numpy(float),
            pd.to_numeric(frame[lat_c], errors="coerce").to_numpy(float))


def _add_file(b: _Builder, path: Path) -> str:
    frame = _read_any(path)
    cols = list(frame.columns)
    lower = {c.lower().lstrip("\ufeff") for c in cols}
    is_lines = "geometry" in cols and len(frame) and frame.geometry.geom_type.isin(
        ["LineString", "MultiLineString"]).any()
    if is_lines:
        return _add_centerlines(b, frame, path)
    ll = _lonlat(frame)
    if ll is None:
        raise GeocodeError(f"{path}: no longitude/latitude columns (looked for {', '.join(_LON)} / "
                           f"{', '.join(_LAT)}) and no point or line geometry.")
    lon, lat = ll
    finite = np.isfinite(lon)
    if finite.any() and np.median(np.abs(lon[finite])) > 180:
        raise GeocodeError(f"{path}: the x/y columns look projected (values like {lon[finite][0]:.0f}), "
                           "not longitude/latitude: export the file in EPSG:4326, or give a GIS file "
                           "(shapefile, GeoPackage, GeoJSON) that declares its CRS.")
    a_c, b_c = _pick(cols, _INT_A), _pick(cols, _INT_B)
    if a_c and b_c:
        ok = np.isfinite(lon) & np.isfinite(lat)
        x, y = to_projected(np.where(ok, lon, -85.7), np.where(ok, lat, 38.2))
        for i, (ta, tb) in enumerate(zip(frame[a_c].astype(str), frame[b_c].astype(str), strict=True)):
            if ok[i]:
                ca, cb = _clean_simple(ta), _clean_simple(tb)
                b.add_intersection(parse_street(ca), parse_street(cb), x[i], y[i], ca, cb)
        b.counts["intersections"] += int(ok.sum())
        return "intersections"
    if "status" in lower and "m_address" in lower:
        st = frame[_pick(cols, ("status",))].astype(str).str.strip().str.lower() == "match"
        sub = frame[st]
        codes, parsed = _parse_unique(sub[_pick(cols, ("m_address",))].astype(str))
        streets = [parsed[c].street if parsed[c].kind == "address" else None for c in codes]
        number = np.array([parsed[c].number if parsed[c].kind == "address" else np.nan for c in codes], float)
        zc = _pick(cols, ("m_zip", "o_zip"))
        n = b.add_points(streets, number, lon[st.to_numpy()], lat[st.to_numpy()],
                         _zips(sub[zc] if zc else None, len(sub)), SRC_CENSUS)
        b.counts["census_points"] += n
        oc = _pick(cols, ("o_address",))
        if oc:
            streets_o = _input_aliases(sub[oc].astype(str), codes, parsed)
            keep = np.array([s_ is not None for s_ in streets_o], bool)
            if keep.any():
                b.counts["census_alias_points"] += b.add_points(
                    [s_ for s_ in streets_o if s_ is not None], number[keep],
                    lon[st.to_numpy()][keep], lat[st.to_numpy()][keep],
                    _zips(sub[zc] if zc else None, len(sub))[keep], SRC_CENSUS, account=False)
        if oc:
            # every input street names a real street, matched or not (MARCH BLVD has no point here)
            for text in frame[oc].astype(str).unique():
                q = parse_address(text)
                b.know(q.street)
                b.know(q.street2)
        return "census"
    num_c, street_c, full_c = _pick(cols, _NUM), _pick(cols, _STREET), _pick(cols, _FULL)
    if num_c and street_c and num_c != street_c:
        texts = frame[num_c].astype(str).str.strip() + " " + frame[street_c].astype(str)
    elif full_c:
        texts = frame[full_c].astype(str)
    else:
        raise GeocodeError(f"{path}: no address column (looked for {', '.join(_FULL)}, or a number "
                           f"column such as {', '.join(_NUM[:4])} with a street column).")
    codes, parsed = _parse_unique(texts)
    streets = [parsed[c].street if parsed[c].kind == "address" else None for c in codes]
    number = np.array([parsed[c].number if parsed[c].kind == "address" else np.nan for c in codes], float)
    zc = _pick(cols, _ZIP)
    n = b.add_points(streets, number, lon, lat, _zips(frame[zc] if zc else None, len(frame)), SRC_POINT)
    b.counts["address_points"] += n
    return "address_points"


def _input_aliases(inputs: pd.Series, codes: np.ndarray, parsed: list[Any]) -> list[Street | None]:
    """The input spelling of each Census match, where it names the street differently.

    The Census geocoder answers ``GLASER LN`` with ``GLASER RD`` and ``NEW LA GRANGE RD`` with
    ``NEW LAGRANGE RD``: the input is how LMPD (and LOJIC) spell the street, the match how TIGER
    does. Such a point is indexed under both names, so the next record spelled the LMPD way
    finds it. Only for the same house number, never across a directional (``E MAIN ST`` answered
    by ``W MAIN ST`` is another street), and only when the name or a stated type differs (a
    merely missing direction or type is already matched by the candidate filter).
    """
    icodes, iparsed = _parse_unique(inputs)
    out: list[Street | None] = []
    for mc, ic in zip(codes, icodes, strict=True):
        m, o = parsed[mc], iparsed[ic]
        alias = None
        if (m.kind == "address" and o.kind == "address" and o.number == m.number
                and o.street is not None and m.street is not None):
            a, b = o.street, m.street
            differs = a.name != b.name or bool(a.stype and b.stype and a.stype != b.stype)
            dir_clash = bool(a.predir and b.predir and a.predir != b.predir) or bool(
                a.postdir and b.postdir and a.postdir != b.postdir)
            if differs and not dir_clash:
                alias = a
        out.append(alias)
    return out


def _clean_simple(text: str) -> str:
    words = " ".join(text.upper().replace(".", " ").split()).split()
    return " ".join(NAME_WORDS.get(w, w) if i == 0 else w for i, w in enumerate(words))


def _add_centerlines(b: _Builder, gdf: Any, path: Path) -> str:
    import shapely

    cols = list(gdf.columns)
    rng = {k: _pick(cols, v) for k, v in _RANGES.items()}
    name_c = _pick(cols, _CL_NAME)
    if name_c is None or any(v is None for v in rng.values()):
        raise GeocodeError(f"{path}: centerlines need a street name column ({', '.join(_CL_NAME[:3])}) "
                           f"and from/to numbers per side (e.g. LFROMHN, LTOHN, RFROMHN, RTOHN).")
    ranges = {k: _numbers(gdf[c]) for k, c in rng.items()}
    zips = {s: _zips(gdf[c], len(gdf)) if (c := _pick(cols, v)) else np.zeros(len(gdf), np.int64)
            for s, v in _CL_ZIP.items()}
    names = gdf[name_c].astype(str).map(_clean_simple)
    parsed_by_name = {n: parse_street(n) for n in names.unique()}
    geoms = shapely.line_merge(gdf.geometry.to_numpy())
    streets: list[Street | None] = []
    nums: list[float] = []
    lons: list[float] = []
    lats: list[float] = []
    zl: list[int] = []
    par: list[int] = []
    nodes: dict[tuple[int, int], set[Street]] = defaultdict(set)
    n_lines = 0
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty or geom.geom_type != "LineString":
            continue
        street = parsed_by_name[names.iat[i]]
        if not street.name:
            continue
        n_lines += 1
        coords = np.asarray(geom.coords)[:, :2]
        x, y = to_projected(coords[:, 0], coords[:, 1])
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        frac = cum / cum[-1] if cum[-1] > 0 else np.zeros_like(cum)
        for side in ("l", "r"):
            f, t = ranges[f"{side}from"][i], ranges[f"{side}to"][i]
            if not (np.isfinite(f) and np.isfinite(t)) or (f == 0 and t == 0):
                continue
            vals = f + (t - f) * frac
            streets.extend([street] * len(vals))
            nums.extend(vals.tolist())
            lons.extend(coords[:, 0].tolist())
            lats.extend(coords[:, 1].tolist())
            zl.extend([int(zips[side][i])] * len(vals))
            par.extend([int(f) % 2] * len(vals))
        for px, py in ((x[0], y[0]), (x[-1], y[-1])):
            nodes[(round(px), round(py))].add(street)
    n = b.add_points(streets, np.array(nums, float), np.array(lons, float), np.array(lats, float),
                     np.array(zl, np.int64), SRC_CENTERLINE, np.array(par, np.int8))
    for (px, py), sts in nodes.items():
        names_at = sorted({intersection_name(s) for s in sts})
        for ia in range(len(names_at)):
            for ib in range(ia + 1, len(names_at)):
                b.intersections[(names_at[ia], names_at[ib])].append((float(px), float(py), "", ""))
    b.counts["centerline_segments"] += n_lines
    b.counts["centerline_vertices"] += n
    return "centerlines"


def build_reference(paths: Sequence[Path | str], ref_hash: str | None = None) -> Reference:
    """Read reference files and build the index (no caching; see `load_reference`)."""
    files = [Path(p) for p in paths]
    if not files:
        raise GeocodeError("no reference files given.")
    b = _Builder()
    kinds = [f"{p.name}:{_add_file(b, p)}" for p in files]
    ref = b.finish(ref_hash or reference_hash(files), kinds)
    log.info("reference built: %d streets, %d points, %d intersections from %s; %s",
             len(ref.street_keys), ref.n_points, len(ref.intersections), ", ".join(kinds),
             ", ".join(f"{k} {v:,}" for k, v in sorted(ref.counts.items())))
    return ref


def default_index_dir() -> Path:
    """Where built indexes are cached: ``$GEO_LEAD_CACHE_DIR`` or ``~/.cache/geo_lead/geocode``."""
    env = os.environ.get(settings.CACHE_DIR_ENV)
    return Path(env) if env else settings.user_cache_dir("geocode")


def load_reference(paths: Sequence[Path | str] | None = None, index_dir: Path | None = None,
                   use_cache: bool = True) -> Reference:
    """The reference index for `paths` (default: the shipped files), from cache when built before.

    Parameters
    ----------
    paths
        Reference files (address points, Census results, centerlines, intersections).
    index_dir
        Where to keep the pickled index; default `default_index_dir`.
    use_cache
        False builds from scratch and writes nothing.
    """
    files = [Path(p) for p in (paths if paths else shipped_reference_files())]
    if not files:
        raise GeocodeError(f"no reference files in {settings.REFERENCE_DIR}; pass --reference FILE.")
    for path in files:
        if not path.is_file():
            raise GeocodeError(f"{path}: reference file not found (give address points, centerlines, "
                               "Census results or an intersection table).")
    ref_hash = reference_hash(files)
    if not use_cache:
        return build_reference(files, ref_hash)
    cache = (index_dir or default_index_dir()) / f"reference-{ref_hash[:24]}.pkl"
    if cache.exists():
        try:
            with open(cache, "rb") as fh:
                ref = pickle.load(fh)
            if isinstance(ref, Reference) and ref.hash == ref_hash:
                return ref
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.warning("ignoring unreadable index cache %s (%s)", cache, exc)
    ref = build_reference(files, ref_hash)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, delete=False, suffix=".tmp") as tmp:
            pickle.dump(ref, tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, cache)  # atomic: a concurrent reader never sees half a file
    except OSError as exc:
        log.warning("cannot cache the reference index in %s (%s); it is rebuilt next time", cache, exc)
    return ref
