"""The offline zone page's street index: the geocoder's own answers near the pilot zone.

The officers' one-file page (`geo_lead.zone_page`) answers typed addresses with no network.
It cannot run the geocoder (thousands of lines of matching, the block curve, the side-of-street
model, the county-grid alignment), so this module runs the geocoder here, on every street
with reference points within `settings.ZONE_PAGE_STREETS_RADIUS_FT` of the zone, and exports
what it answered:

* **house numbers**, per street and side (odd / even): the geocoder's published point
  (lon/lat, 7 decimals) at a set of numbers, chosen so that linear interpolation between
  consecutive ones, on the geocoder's range scale (`reference.block_position`, whose curve is
  exported too), stays within `settings.ZONE_PAGE_STREETS_TOLERANCE_FT` of the geocoder's own
  point at every number tested while choosing them (bisection: each segment's midpoint is
  geocoded, and split until it agrees). Numbers whose match type, score or street differ
  start a new run. Covered: the hundreds with reference points within the radius, and the
  hundred on either side.
* **hundred-blocks** (``2700 BLOCK W MADISON ST``): the geocoder's point for each covered
  hundred.
* **intersections** (``N 26TH ST / BANK ST``): the geocoder's point for every pair of covered
  streets whose reference points come within `settings.ZONE_PAGE_CROSSING_NEAR_FT` of each
  other, when it places the crossing within the covered area.
* **spellings**: each street under every reading that drops its direction(s) or type, when
  the geocoder's own candidate search (`Geocoder._candidates`) finds that one street for it,
  with the score penalty that reading carries. A reading that names several streets
  (``MADISON ST``: W or E) is listed with them, so the page can ask which.
* **the normaliser's tables and patterns** (`geo_lead.geocode.normalize`), exported as they
  are so the page reads text exactly as `parse_address` does.

The page therefore reproduces the geocoder's point within the tolerance (plus 1e-7 degree
rounding); where that could change the answer (a point that close to the zone boundary, or
to the near-boundary distance) it says so instead of answering. Building takes seconds, so
the index is cached as JSON next to the geocoder's reference index, keyed by the geocoder's
reference hash (which includes its matcher version), its source files, the zone and the
settings here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geo_lead import settings
from geo_lead.outputs import write_text

log = logging.getLogger(__name__)

#: Bump when the exported layout or the way points are chosen changes (invalidates caches).
INDEX_FORMAT = "zone-streets-12"
#: Seeds per hundred and side before bisection (numbers H+0/1, H+50/51 of each hundred).
_SEED_STEP = 200
#: lon/lat are exported as integers: (value - origin) x 1e7.
_ORIGIN = (-85.8, 38.25)
#: Match types of the exported runs; ``extrapolated`` is the geocoder's ``interpolated`` past
#: a street's known numbers (the page never answers those near the boundary).
MATCH_CODES = ("exact", "interpolated", "street", "block", "intersection", "extrapolated")


def _normalizer_tables() -> dict[str, Any]:
    """The normaliser's tables and patterns, as `geo_lead.geocode.normalize` holds them."""
    from geo_lead.geocode import normalize as nz

    return {
        "directions": nz.DIRECTIONS, "street_types": nz.STREET_TYPES, "type_words": nz.TYPE_WORDS,
        "name_words": nz.NAME_WORDS, "name_anywhere": nz.NAME_ANYWHERE,
        "ord_units": nz._ORD_UNITS, "tens": nz._TENS, "unit_words": sorted(nz.UNIT_WORDS),
        "place_words": sorted(nz.PLACE_WORDS), "max_input_chars": nz.MAX_INPUT_CHARS,
        "patterns": {k: getattr(nz, k).pattern for k in (
            "_PLACE_PREFIX", "_INTERSTATE", "_INTERSTATE_START", "_BLOCK", "_NUMBER", "_ZIP_TAIL",
            "_SEPARATORS", "_JUNK", "_RANGE_START", "_ORDINAL")},
    }


def _variants(street: Any) -> list[Any]:
    """The street and every reading of it without some of its direction(s) and type."""
    from geo_lead.geocode.normalize import Street

    out = []
    for drop in range(8):
        out.append(Street("" if drop & 1 else street.predir, street.name,
                          "" if drop & 2 else street.stype, "" if drop & 4 else street.postdir))
    return list(dict.fromkeys(out))


class _Sampler:
    """Geocodes numbers of one street reading, remembering every answer."""

    def __init__(self, geocoder: Any, key: str, boundary: shapely.Geometry, tol_ft: float,
                 rel_tol: float) -> None:
        from geo_lead.geocode.normalize import parse_address

        self.geocoder, self.key, self.parse = geocoder, key, parse_address
        self.boundary, self.tol_ft, self.rel_tol = boundary, tol_ft, rel_tol
        self.dist: dict[int, float] = {}
        self.memo: dict[int, tuple[float, float, str, float, str, bool]] = {}
        self.curve = getattr(geocoder.ref, "block_curve", None)

    def q(self, n: int) -> float:
        from geo_lead.geocode.reference import block_position

        return float(block_position(float(n), self.curve))

    def d(self, n: int) -> float:
        """Distance (ft) of the geocoder's point for `n` from the zone boundary (inf: unmatched)."""
        d = self.dist.get(n)
        if d is None:
            x, y = self(n)[:2]
            d = self.dist[n] = float(shapely.distance(self.boundary, shapely.Point(x, y))) if np.isfinite(x) else np.inf
        return d

    def tol(self, n: int) -> float:
        """How far the page's point for `n` may lie from the geocoder's: `tol_ft`, or the
        relative tolerance times the distance of the geocoder's point to the zone boundary."""
        return max(self.tol_ft, self.rel_tol * self.d(n))

    def __call__(self, n: int) -> tuple[float, float, str, float, str, bool]:
        hit = self.memo.get(n)
        if hit is None:
            h = self.geocoder.match_parsed(self.parse(f"{n} {self.key}"))
            beyond = h.match_type == "interpolated" and not h.reason.startswith("interpolated between")
            hit = self.memo[n] = (h.x, h.y, h.match_type, h.score, h.matched, beyond)
        return hit


def _code(hit: tuple[float, float, str, float, str, bool], n: int) -> tuple[str, str]:
    """What must be equal along a run: the match type (``interpolated`` past the street's
    known numbers counts as its own type, ``extrapolated``) and the street the number landed
    on. (Not the score: it steps at every pair of known numbers, and the officer's answer does
    not depend on it; runs keep the lowest, which the page does not show.)"""
    matched = hit[4]
    prefix = f"{n} "
    street = matched[len(prefix):] if matched.startswith(prefix) else "\x00" + matched
    return ("extrapolated" if hit[5] else hit[2]), street


def _sample_side(f: _Sampler, seq: list[int], seeds: set[int]) -> list[int]:
    """Numbers of `seq` (one side's numbers but the exact ones, ascending) whose answers,
    interpolated on the range scale, give every number tested (bisection from the seeds)."""
    if not seq:
        return []
    first = seq[0]
    at = [0, len(seq) - 1] + [i for i, n in enumerate(seq)
                              if n in seeds or (n - first) // _SEED_STEP != (n - first - 2) // _SEED_STEP]
    keep = set(at)
    idx = sorted(keep)
    stack = list(zip(idx[:-1], idx[1:], strict=True))
    while stack:
        ia, ib = stack.pop()
        if ib - ia <= 1:
            continue
        im = (ia + ib) // 2
        a, b, m = seq[ia], seq[ib], seq[im]
        ha, hb, hm = f(a), f(b), f(m)
        keep.add(im)
        split = not (_code(ha, a) == _code(hm, m) == _code(hb, b))
        if not split and ha[2] != "unmatched":
            qa, qb, qm = f.q(a), f.q(b), f.q(m)
            t = 0.0 if qb == qa else (qm - qa) / (qb - qa)
            ex, ey = ha[0] + t * (hb[0] - ha[0]), ha[1] + t * (hb[1] - ha[1])
            split = bool(np.hypot(ex - hm[0], ey - hm[1]) > f.tol(m))
        if split:
            stack += [(ia, im), (im, ib)]
    return [seq[i] for i in sorted(keep)]


def _thin(nums: list[int], f: _Sampler, share: float) -> list[int]:
    """Drop vertices that interpolation from their run's kept neighbours reproduces."""
    if len(nums) <= 2:
        return nums
    out = [nums[0]]
    i = 0
    while i < len(nums) - 1:
        j = i + 1
        while j + 1 < len(nums):
            a, b = nums[i], nums[j + 1]
            ha, hb = f(a), f(b)
            qa, qb = f.q(a), f.q(b)
            ok = True
            for k in nums[i + 1:j + 1]:
                hk = f(k)
                t = 0.0 if qb == qa else (f.q(k) - qa) / (qb - qa)
                if np.hypot(ha[0] + t * (hb[0] - ha[0]) - hk[0], ha[1] + t * (hb[1] - ha[1]) - hk[1]) > share * f.tol(k):
                    ok = False
                    break
            if not ok:
                break
            j += 1
        out.append(nums[j])
        i = j
    return out


def _runs(f: _Sampler, nums: list[int], street_idx: dict[str, int],
          lonlat: Callable[[list[int]], list[tuple[int, int]]]) -> list[list[Any]]:
    """Sampled numbers -> runs ``[last - first, type, score, street, vertices]``: `street` an index
    into the covered streets (or the geocoder's label), `vertices` the sampled numbers kept with
    their points, delta-encoded (`_deltas`); the first vertex is the run's first number."""
    runs: list[list[Any]] = []
    start = 0
    for i in range(1, len(nums) + 1):
        if i < len(nums) and _code(f(nums[i]), nums[i]) == _code(f(nums[start]), nums[start]):
            continue
        seg = nums[start:i]
        mtype, street = _code(f(seg[0]), seg[0])
        score = min(f(n)[3] for n in seg)
        if mtype != "unmatched":
            verts = _thin(seg, f, 0.5)
            sidx = street_idx.get(street, -1)
            runs.append([seg[-1] - seg[0], MATCH_CODES.index(mtype), round(score, 4),
                         sidx if sidx >= 0 else street.lstrip("\x00"),
                         _deltas([(n, lo, la) for n, (lo, la) in zip(verts, lonlat(verts), strict=True)])])
        start = i
    return runs


def _deltas(rows: list[tuple[int, ...]]) -> list[int]:
    """Rows of integers flattened, each value minus the one above it (the first row as is)."""
    out: list[int] = []
    prev = (0,) * (len(rows[0]) if rows else 0)
    for row in rows:
        out += [int(v) - int(p) for v, p in zip(row, prev, strict=True)]
        prev = row
    return out


def _published(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The geocoder's published lon/lat (7 decimals) as integers from `_ORIGIN`, x 1e7."""
    from geo_lead.geocode.reference import to_lonlat

    lon, lat = to_lonlat(np.asarray(x, float), np.asarray(y, float))
    lon, lat = np.round(lon, 7), np.round(lat, 7)
    return (np.round((lon - _ORIGIN[0]) * 1e7).astype(np.int64),
            np.round((lat - _ORIGIN[1]) * 1e7).astype(np.int64))


#: Hundreds without reference points between covered ones are covered too, up to this many.
_FILL_HUNDREDS = 10


def _covered_hundreds(nums: np.ndarray) -> list[list[int]]:
    """Hundreds holding `nums`, with one on either side and the gaps of up to `_FILL_HUNDREDS`
    between them, as [first, last] number intervals."""
    hs = sorted({int(h) + d for h in np.unique(nums // 100) for d in (-1, 0, 1) if int(h) + d >= 0})
    out: list[list[int]] = []
    for h in hs:
        if out and out[-1][1] + 1 >= (h - _FILL_HUNDREDS) * 100:
            out[-1][1] = h * 100 + 99
        else:
            out.append([h * 100, h * 100 + 99])
    return out


def build_street_index(zone_ft: shapely.Geometry, geocoder: Any = None, *,
                       radius_ft: float = settings.ZONE_PAGE_STREETS_RADIUS_FT,
                       tol_ft: float = settings.ZONE_PAGE_STREETS_TOLERANCE_FT,
                       rel_tol: float = settings.ZONE_PAGE_STREETS_RELATIVE_TOLERANCE,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the page's street index (see the module docstring) for a zone.

    Parameters
    ----------
    zone_ft
        The zone polygon(s) in EPSG:2246 feet (`ZoneChecker.zone_ft`).
    geocoder
        A `geo_lead.geocode.Geocoder` (default: the shipped reference's).
    radius_ft
        Streets with reference points within this distance of the zone are covered.
    tol_ft, rel_tol
        Largest distance between an interpolated and the geocoder's own point, at every
        number the sampling tested: `tol_ft`, or `rel_tol` times that point's distance from
        the zone boundary (far from it, a larger error cannot change the answer).
    progress
        Called with a short line now and then (the CLI prints it).

    Returns
    -------
    dict
        JSON-ready, integers where possible (lon/lat as ``(value - origin) x 1e7``, scores x
        1000): ``format``, ``radius_ft``, ``tolerance_ft``, ``origin``, ``curve`` (the block
        curve, or null), ``normalize`` (`_normalizer_tables`), ``match_types``, ``streets``
        (canonical keys), ``spellings`` (`_spellings`),
        ``numbers`` (per street: ``cover`` [first, last, ...] number intervals, ``exact``
        rows, ``odd``/``even`` runs: see `_runs`), ``blocks`` (per street, rows: see the
        code), ``crossings`` ("i|j", i < j street indexes -> [lon, lat, score, [i', j'] or
        the geocoder's label]), ``counts``.
    """
    from geo_lead.geocode import Geocoder
    from geo_lead.geocode.normalize import parse_address

    started = time.perf_counter()
    g = geocoder if geocoder is not None else Geocoder()
    ref = g.ref
    area = shapely.buffer(zone_ft, radius_ft)
    boundary = shapely.boundary(zone_ft)
    shapely.prepare(boundary)
    shapely.prepare(area)
    near = shapely.contains_xy(area, ref.pt_x, ref.pt_y)
    sids = [int(s) for s in np.unique(ref.pt_street[near])]
    keys = [ref.street_keys[s] for s in sids]
    street_idx = {k: i for i, k in enumerate(keys)}
    spellings = _spellings(g, sids, keys)
    numbers: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    n_geocoded = 0

    def lonlat_of(f: _Sampler) -> Callable[[list[int]], list[tuple[int, int]]]:
        def conv(ns: list[int]) -> list[tuple[int, int]]:
            lo, la = _published([f(n)[0] for n in ns], [f(n)[1] for n in ns])
            return list(zip(lo.tolist(), la.tolist(), strict=True))
        return conv

    for i, s in enumerate(sids):
        sl = slice(int(ref.offsets[s]), int(ref.offsets[s + 1]))
        nums = ref.pt_number[sl]
        cover = _covered_hundreds(nums[near[sl]])
        # a street that ends near the zone: the numbers past its end that the geocoder places
        ext = int(settings.GEOCODE_MAX_EXTRAPOLATION_NUMBERS)
        if cover[0][0] <= nums[0]:
            cover[0][0] = max(0, int(nums[0]) // 100 * 100 - ext)
        if cover[-1][1] >= nums[-1]:
            cover[-1][1] = int(nums[-1]) // 100 * 100 + 99 + ext
        f = _Sampler(g, keys[i], boundary, tol_ft, rel_tol)
        in_cover = [int(n) for n in np.unique(nums) if any(lo <= n <= hi for lo, hi in cover)]
        exact = {n: f(n) for n in in_cover}
        exact = {n: h for n, h in exact.items() if h[2] == "exact"}
        entry: dict[str, Any] = {"cover": [v for c in cover for v in c]}
        ex_lon, ex_lat = _published([h[0] for h in exact.values()], [h[1] for h in exact.values()])
        # exact numbers: [n, lon, lat, score x 1000] rows, delta-encoded
        entry["exact"] = _deltas([(n, lo_i, la_i, round(exact[n][3] * 1000))
                                  for n, lo_i, la_i in zip(exact, ex_lon.tolist(), ex_lat.tolist(), strict=True)])
        for parity, side in ((1, "odd"), (0, "even")):
            sampled: list[int] = []
            for lo, hi in cover:
                seq = [n for n in range(lo + (parity - lo) % 2, hi + 1, 2) if n not in exact]
                # the placement bends at every known number (either side's): seed the numbers
                # next to each, so that bisection only has to find what bends between them
                at = np.searchsorted(seq, in_cover)
                seeds = {seq[j] for k in at for j in (k - 1, k) if 0 <= j < len(seq)}
                sampled += _sample_side(f, seq, seeds)
            entry[side] = _runs(f, sampled, street_idx, lonlat_of(f))
        numbers.append(entry)
        n_geocoded += len(f.memo)
        hundreds = [h for lo, hi in cover for h in range(lo, hi + 1, 100)]
        hits = [g.match_parsed(parse_address(f"{h} BLOCK {keys[i]}")) for h in hundreds]
        ok = [k for k, h in enumerate(hits) if h.match_type != "unmatched"]
        lo_, la_ = _published([hits[k].x for k in ok], [hits[k].y for k in ok])
        # hundred-blocks: [hundred, lon, lat, score x 1000, street index, match type] rows,
        # delta-encoded (past the known numbers the geocoder may answer ``street``);
        # the geocoder's label is "<H50> <street>" (the block's middle)
        rows = []
        for k, lon_i, lat_i in zip(ok, lo_.tolist(), la_.tolist(), strict=True):
            h, mid = hits[k], f"{hundreds[k] + 50} "
            street = h.matched[len(mid):] if h.matched.startswith(mid) else ""
            rows.append((hundreds[k] // 100, lon_i, lat_i, round(h.score * 1000), street_idx.get(street, -1),
                         MATCH_CODES.index(h.match_type)))
        blocks.append(_deltas(rows))
        if progress and (i + 1) % 50 == 0:
            progress(f"  street index: {i + 1} of {len(sids)} streets")
    t_numbers = time.perf_counter() - started
    crossings = _crossings(g, sids, keys, area, street_idx)
    out = {
        "format": INDEX_FORMAT, "radius_ft": radius_ft, "tolerance_ft": tol_ft, "relative_tolerance": rel_tol,
        "hedge_ft": settings.ZONE_PAGE_STREETS_HEDGE_FT,
        "hedge_beyond_ft": settings.ZONE_PAGE_STREETS_HEDGE_BEYOND_FT,
        "origin": list(_ORIGIN),
        "curve": None if getattr(ref, "block_curve", None) is None
        else [round(float(v), 12) for v in ref.block_curve],
        "normalize": _normalizer_tables(), "match_types": list(MATCH_CODES),
        "streets": keys, "spellings": spellings, "numbers": numbers, "blocks": blocks,
        "crossings": crossings,
        "counts": {"crossing_pairs_tried": crossings.pop("_tried", 0), "streets": len(keys),
                   "spellings": len(spellings), "crossings": len(crossings),
                   "numbers_geocoded": n_geocoded,
                   "numbers_covered": sum(hi - lo + 1 for e in numbers
                                          for lo, hi in zip(e["cover"][::2], e["cover"][1::2], strict=True)),
                   "seconds_numbers": round(t_numbers, 1),
                   "seconds": round(time.perf_counter() - started, 1)},
    }
    log.info("zone street index: %s", out["counts"])
    return out


def _spellings(g: Any, sids: list[int], keys: list[str]) -> dict[str, list[Any]]:
    """Every reading of a covered street -> ``[street index, score factor]`` when the
    geocoder's candidate search (`Geocoder._candidates`) gives it the same candidates, in the
    same order, as that street's own name (so it places numbers the same way), else
    ``[[names of its candidates]]`` (the page asks which)."""
    ref = g.ref
    size = {s: int(ref.offsets[s + 1] - ref.offsets[s]) for s in range(len(ref.street_keys))}

    def ranked(street: Any) -> list[tuple[int, float]]:
        cands = g._candidates(street, allow_dir_conflict=False)
        return sorted(cands, key=lambda c: (-c[1], -size[c[0]], c[0]))

    own = {i: ranked(ref.street_parts[s]) for i, s in enumerate(sids)}
    by_order: dict[tuple[int, ...], list[int]] = {}
    for i, c in own.items():
        by_order.setdefault(tuple(sid for sid, _ in c), []).append(i)
    out: dict[str, list[Any]] = {}
    for s in sids:
        for v in _variants(ref.street_parts[s]):
            if v.key in out or not v.name:
                continue
            c = ranked(v)
            if not c:
                continue
            same = by_order.get(tuple(sid for sid, _ in c), [])
            if same:
                i = next((k for k in same if keys[k] == v.key), same[0])
                pen_own = dict(own[i])
                factor = dict(c)[sids[i]] / pen_own[sids[i]] if sids[i] in pen_own else 1.0
                out[v.key] = [i, round(factor, 6)]
            else:
                out[v.key] = [[ref.street_keys[sid] for sid, _ in c]]
    return out


def _crossings(g: Any, sids: list[int], keys: list[str], area: shapely.Geometry,
               street_idx: dict[str, int]) -> dict[str, list[Any]]:
    """The geocoder's answer for pairs of covered streets whose reference geometry comes within
    `settings.ZONE_PAGE_CROSSING_NEAR_FT` inside the covered area, when it places their crossing
    inside that area; and the pairs of covered streets the intersection table names."""
    from geo_lead.geocode.normalize import parse_address

    ref = g.ref
    # each street's reference geometry as the geocoder draws it (points joined in number
    # order, `Geocoder._geometry`), clipped to the covered area
    geoms = [shapely.intersection(shapely.GeometryCollection(list(g._geometry(s)[0])), area) for s in sids]
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="dwithin", distance=settings.ZONE_PAGE_CROSSING_NEAR_FT)
    pairs: Any = {(int(i), int(j)) for i, j in zip(a, b, strict=True) if i < j}
    # and the pairs the intersection table names (its points may lie beyond both streets'
    # reference points)
    from geo_lead.geocode.reference import intersection_name

    by_name: dict[str, list[int]] = {}
    for i, s in enumerate(sids):
        by_name.setdefault(intersection_name(ref.street_parts[s]), []).append(i)
    for na, nb in ref.intersections:
        for i in by_name.get(na, []):
            pairs |= {(min(i, j), max(i, j)) for j in by_name.get(nb, []) if i != j}
    pairs = sorted(pairs)
    out: dict[str, Any] = {"_tried": len(pairs)}
    found = []
    for i, j in pairs:
        h = g.match_parsed(parse_address(f"{keys[i]} / {keys[j]}"))
        if h.match_type == "intersection" and shapely.contains_xy(area, h.x, h.y):
            found.append((i, j, h))
    lon, lat = _published([h.x for *_, h in found], [h.y for *_, h in found])
    for (i, j, h), lo, la in zip(found, lon.tolist(), lat.tolist(), strict=True):
        ka, _, kb = h.matched.partition(" / ")
        label: Any = h.matched
        if ka in street_idx and kb in street_idx:
            label = [street_idx[ka], street_idx[kb]]
        out[f"{i}|{j}"] = [lo, la, round(h.score * 1000), label]
    return out


def _cache_key(zone_ft: shapely.Geometry, geocoder: Any, radius_ft: float, tol_ft: float) -> str:
    h = hashlib.sha256()
    for part in (INDEX_FORMAT, geocoder.reference_hash, repr(radius_ft), repr(tol_ft),
                 repr(settings.ZONE_PAGE_STREETS_RELATIVE_TOLERANCE),
                 repr(settings.ZONE_PAGE_STREETS_HEDGE_FT), repr(settings.ZONE_PAGE_STREETS_HEDGE_BEYOND_FT),
                 repr(settings.ZONE_PAGE_CROSSING_NEAR_FT)):
        h.update(part.encode())
    h.update(shapely.to_wkb(shapely.normalize(zone_ft)))
    # the geocoder's source too: a placement change without a MATCHER_VERSION bump must not
    # leave the page answering as the old geocoder did
    for path in sorted((Path(__file__).parent / "geocode").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def street_index(zone_ft: shapely.Geometry, geocoder: Any = None, *, index_dir: Path | None = None,
                 use_cache: bool = True, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`build_street_index`, cached as JSON beside the geocoder's reference index.

    Parameters
    ----------
    zone_ft
        The zone in EPSG:2246 feet.
    geocoder
        Default: the shipped reference's `Geocoder`.
    index_dir
        Cache folder (default `geo_lead.geocode.reference.default_index_dir`).
    use_cache
        False: build, write nothing.
    progress
        Passed to `build_street_index` when it builds.
    """
    from geo_lead.geocode import Geocoder
    from geo_lead.geocode.reference import default_index_dir

    g = geocoder if geocoder is not None else Geocoder()
    radius, tol = settings.ZONE_PAGE_STREETS_RADIUS_FT, settings.ZONE_PAGE_STREETS_TOLERANCE_FT
    key = _cache_key(zone_ft, g, radius, tol)
    cache = (index_dir or default_index_dir()) / f"zone-streets-{key[:24]}.json"
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text("utf-8"))
            if data.get("key") == key:
                return data
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable street index cache %s (%s)", cache, exc)
    data = build_street_index(zone_ft, g, radius_ft=radius, tol_ft=tol, progress=progress)
    data["key"] = key
    if use_cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_text(cache, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            log.warning("cannot cache the street index in %s (%s)", cache, exc)
    return data
