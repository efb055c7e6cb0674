"""Match parsed addresses against the reference index.

Match types (score 0-1, higher is better):

``exact`` (1.0)
    the number is a known point of the street.
``interpolated`` (0.6-0.9)
    between the nearest known lower and higher numbers of the street (same parity side
    preferred), or along a centerline's range; a short extrapolation past the known range
    scores lower.
``block`` (0.55-0.85)
    a hundred-block, placed at the middle of the block (``2700 BLOCK`` -> 2750) the same way.
``intersection`` (0.5-0.95)
    from the intersection table, else estimated where the two streets' reference geometry
    (points in number order) crosses.
``street`` (0.3)
    only the street is known: the known point nearest the centre of its extent.
``unmatched``
    with a ``reason``.

A ZIP picks between same-named streets; a fuzzy street-name fallback lowers the score.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.geocode.normalize import ParsedAddress, Street, parse_address
from geo_lead.geocode.reference import (
    SRC_CENTERLINE,
    Reference,
    intersection_name,
    load_reference,
    to_lonlat,
)

log = logging.getLogger(__name__)

RESULT_COLUMNS: tuple[str, ...] = ("input", "lon", "lat", "match_type", "score", "matched_address", "reason")
MATCH_TYPES: tuple[str, ...] = ("exact", "interpolated", "block", "intersection", "street", "unmatched")

#: A number this far beyond a street's known range is not placed (house numbers).
MAX_EXTRAPOLATION_NUMBERS = 400
#: Longest distance a number is extrapolated past the last known point.
MAX_EXTRAPOLATION_FT = 1500.0
#: Feet per house number assumed when extrapolating from one side only (~100 numbers/block).
FT_PER_NUMBER_DEFAULT = 5.0
#: Street ends are extended this far when looking for a crossing the sample does not reach.
INTERSECTION_EXTEND_FT = 1200.0
#: Two streets whose reference geometry comes no closer than this do not meet.
INTERSECTION_MAX_GAP_FT = 800.0
#: Consecutive points (in number order) farther apart than this belong to separate pieces.
STREET_BREAK_FT = 6000.0
#: Score multiplier when the street name was found only by fuzzy matching.
FUZZY_PENALTY = 0.85


@dataclass(frozen=True, slots=True)
class _Hit:
    x: float
    y: float
    match_type: str
    score: float
    matched: str
    reason: str


def _miss(reason: str) -> _Hit:
    return _Hit(np.nan, np.nan, "unmatched", 0.0, "", reason)


class Geocoder:
    """Offline geocoder over a reference index (shipped files by default).

    Parameters
    ----------
    reference
        A built `Reference`; default: the shipped reference (cached index).
    reference_files
        Build from these files instead (address points, Census results, centerlines,
        intersections; see `geo_lead.geocode.reference`).
    index_dir
        Where the built index is cached.

    Examples
    --------
    >>> g = Geocoder()                                        # doctest: +SKIP
    >>> g.geocode(["2700 BLOCK W MADISON ST", "N 26TH ST / BANK ST"])  # doctest: +SKIP
    """

    def __init__(self, reference: Reference | None = None, *,
                 reference_files: Sequence[Path | str] | None = None,
                 index_dir: Path | None = None) -> None:
        self.ref = reference if reference is not None else load_reference(reference_files, index_dir)
        self._memo: dict[tuple[str, str], _Hit] = {}
        self._lines: dict[int, Any] = {}
        self._fuzzy: dict[str, str | None] = {}
        self._names_by_initial: dict[str, list[str]] | None = None

    @property
    def reference_hash(self) -> str:
        return self.ref.hash

    # --- public -----------------------------------------------------------------------
    def geocode(self, addresses: Sequence[str], zips: Sequence[str] | None = None,
                progress: Any = None) -> pd.DataFrame:
        """Geocode many addresses; each distinct (address, ZIP) is matched once.

        Parameters
        ----------
        addresses
            Address strings in any of the LMPD / postal forms (None and NaN allowed).
        zips
            Optional ZIP codes aligned with `addresses` (break ties between same-named streets).
        progress
            Optional `geo_lead.progress.Progress`, advanced per distinct address.

        Returns
        -------
        pandas.DataFrame
            Aligned with the input (same length, same order, RangeIndex): ``input``, ``lon``,
            ``lat`` (EPSG:4326, NaN when unmatched), ``match_type``, ``score``,
            ``matched_address``, ``reason``.
        """
        addr = pd.Series(list(addresses), dtype=object)
        n = len(addr)
        if zips is None:
            zser = pd.Series([""] * n, dtype=object)
        else:
            zser = pd.Series(list(zips), dtype=object)
            if len(zser) != n:
                raise ValueError(f"zips has {len(zser)} values for {n} addresses")
        text = addr.where(addr.map(lambda v: isinstance(v, str)), "")
        ztext = zser.map(lambda v: str(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else "")
        codes, uniques = pd.factorize(text + "\x1f" + ztext)
        hits: list[_Hit] = []
        for u in uniques:
            a, _, z = u.partition("\x1f")
            hits.append(self._geocode_one(a, z))
            if progress is not None:
                progress.update(1)
        return _assemble(addr, codes, hits)

    def geocode_one(self, address: str, zip_code: str = "") -> dict[str, Any]:
        """One address as a dict with the `RESULT_COLUMNS` keys."""
        return self.geocode([address], [zip_code]).iloc[0].to_dict()

    # --- matching ---------------------------------------------------------------------
    def _geocode_one(self, text: str, zip_code: str) -> _Hit:
        parsed = parse_address(text, zip_code)
        key = (parsed.kind + "|" + parsed.normalized, parsed.zip)
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = self._match(parsed)
            except (ValueError, ArithmeticError, IndexError) as exc:  # defensive: never raise
                log.warning("geocoding %r failed: %s", text, exc)
                hit = _miss(f"internal error: {exc}")
            self._memo[key] = hit
        return hit

    def match_parsed(self, parsed: ParsedAddress) -> _Hit:
        """Match an already parsed address (projected coordinates; used by the cache)."""
        return self._match(parsed)

    def _match(self, p: ParsedAddress) -> _Hit:
        if p.kind in ("empty", "invalid", "place"):
            return _miss(p.reason)
        zip5 = int(p.zip) if p.zip else 0
        if p.kind == "intersection":
            return self._intersection(p.street, p.street2, zip5)  # type: ignore[arg-type]
        assert p.street is not None
        if p.street.is_interstate:
            return _miss("interstate: no interstate geometry in the reference")
        cands = self._candidates(p.street, allow_dir_conflict=p.kind == "street")
        if not cands:
            return _miss(f"no such street in the reference: {p.street.key}")
        if p.kind == "street":
            return self._street_only(cands, zip5)
        number = float(p.number)  # type: ignore[arg-type]
        if p.kind == "block":
            base = (int(number) // 100) * 100
            target = base + 50.0
            hit = self._on_streets(cands, target, zip5, exact_ok=False)
            if hit.match_type == "unmatched":
                return hit
            return _Hit(hit.x, hit.y, "block", round(hit.score * 0.95, 3),
                        hit.matched, f"middle of the {base} block; {hit.reason}")
        return self._on_streets(cands, number, zip5, exact_ok=True)

    # --- streets ----------------------------------------------------------------------
    def _fuzzy_name(self, name: str) -> str | None:
        if name in self._fuzzy:
            return self._fuzzy[name]
        ref = self.ref
        if self._names_by_initial is None:
            self._names_by_initial = {}
            self._nospace: dict[str, str] = {}
            for nm in ref.name_to_ids:
                self._names_by_initial.setdefault(nm[:1], []).append(nm)
                self._nospace.setdefault(nm.replace(" ", ""), nm)
        found = self._nospace.get(name.replace(" ", ""))
        if found is None and len(name) >= 4:
            pool = [c for c in self._names_by_initial.get(name[:1], []) if abs(len(c) - len(name)) <= 2]
            close = difflib.get_close_matches(name, pool, n=1, cutoff=0.84)
            found = close[0] if close else None
        self._fuzzy[name] = found
        return found

    def _candidates(self, st: Street, allow_dir_conflict: bool) -> list[tuple[int, float]]:
        ref = self.ref
        ids = ref.name_to_ids.get(st.name)
        fuzzy = 1.0
        if not ids:
            alt = self._fuzzy_name(st.name)
            if alt is None:
                return []
            ids, fuzzy = ref.name_to_ids[alt], FUZZY_PENALTY
        clean: list[tuple[int, float]] = []
        conflict: list[tuple[int, float]] = []
        for sid in ids:
            c = ref.street_parts[sid]
            pen, dir_conflict, type_conflict = fuzzy, False, False
            for q, v, w in ((st.predir, c.predir, 0.7), (st.stype, c.stype, 0.75), (st.postdir, c.postdir, 0.8)):
                if q and v and q != v:
                    pen *= w
                    if w == 0.75:
                        type_conflict = True
                    else:
                        dir_conflict = True
                elif q != v:
                    pen *= 0.97
            if not dir_conflict and not type_conflict:
                clean.append((sid, pen))
            elif allow_dir_conflict or not dir_conflict:
                conflict.append((sid, pen))
        return clean or conflict

    def _street_points(self, sid: int) -> slice:
        return slice(int(self.ref.offsets[sid]), int(self.ref.offsets[sid + 1]))

    def _street_only(self, cands: list[tuple[int, float]], zip5: int) -> _Hit:
        ref = self.ref
        idx = np.concatenate([np.arange(self.ref.offsets[s], self.ref.offsets[s + 1]) for s, _ in cands])
        if zip5 and (ref.pt_zip[idx] == zip5).any():
            idx = idx[ref.pt_zip[idx] == zip5]
        xs, ys = ref.pt_x[idx], ref.pt_y[idx]
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        k = int(np.argmin(np.hypot(xs - cx, ys - cy)))
        best = max(cands, key=lambda c: c[1])
        return _Hit(float(xs[k]), float(ys[k]), "street", round(0.3 * best[1], 3),
                    ref.street_keys[best[0]], "street only: centre of its known extent")

    def _on_streets(self, cands: list[tuple[int, float]], number: float, zip5: int,
                    exact_ok: bool) -> _Hit:
        """Place `number` on the best of the candidate streets."""
        ref = self.ref
        scored = []
        for sid, pen in cands:
            sl = self._street_points(sid)
            nums = ref.pt_number[sl]
            gap = 0.0 if nums[0] <= number <= nums[-1] else min(abs(number - nums[0]), abs(number - nums[-1]))
            has_zip = bool(zip5) and bool((ref.pt_zip[sl] == zip5).any())
            scored.append((gap > MAX_EXTRAPOLATION_NUMBERS, not has_zip, gap, -pen, -(sl.stop - sl.start), sid, pen))
        scored.sort()
        tried_reason = ""
        for *_, sid, pen in scored[:3]:
            hit = self._on_street(sid, number, zip5, exact_ok)
            if hit.match_type != "unmatched":
                return _Hit(hit.x, hit.y, hit.match_type, round(hit.score * pen, 3), hit.matched, hit.reason)
            tried_reason = tried_reason or hit.reason
        return _miss(tried_reason)

    def _on_street(self, sid: int, number: float, zip5: int, exact_ok: bool) -> _Hit:
        ref = self.ref
        sl = self._street_points(sid)
        nums, xs, ys = ref.pt_number[sl], ref.pt_x[sl], ref.pt_y[sl]
        src, par, zips = ref.pt_src[sl], ref.pt_parity[sl], ref.pt_zip[sl]
        key = ref.street_keys[sid]
        label = f"{int(number)} {key}"
        if zip5:
            # Same-named streets in different places: keep this ZIP's points when they cover
            # the number (ZIP lines often run down the street itself, so not otherwise).
            inzip = zips == zip5
            if inzip.any() and not inzip.all():
                zn = nums[inzip]
                if zn[0] - MAX_EXTRAPOLATION_NUMBERS / 2 <= number <= zn[-1] + MAX_EXTRAPOLATION_NUMBERS / 2:
                    nums, xs, ys, src, par = nums[inzip], xs[inzip], ys[inzip], src[inzip], par[inzip]
        if exact_ok:
            same = (nums == number) & (src != SRC_CENTERLINE)
            if same.any():
                return _Hit(float(xs[same].mean()), float(ys[same].mean()), "exact", 1.0, label,
                            "known address point")
        parity = int(number) % 2
        for side_only in (True, False):
            m = par == parity if side_only else np.ones(nums.size, bool)
            if not m.any():
                continue
            n_, x_, y_ = nums[m], xs[m], ys[m]
            hi = int(np.searchsorted(n_, number, side="right"))
            lo = hi - 1
            if 0 <= lo and hi < n_.size and n_[lo] <= number <= n_[hi]:
                span = n_[hi] - n_[lo]
                if side_only and span > 4 * MAX_EXTRAPOLATION_NUMBERS and (~m).any():
                    continue  # the other side has closer neighbours
                t = 0.0 if span == 0 else (number - n_[lo]) / span
                x = x_[lo] + t * (x_[hi] - x_[lo])
                y = y_[lo] + t * (y_[hi] - y_[lo])
                score = 0.9 if span <= 200 else 0.85 if span <= 1000 else 0.75
                if not side_only:
                    score -= 0.05
                return _Hit(float(x), float(y), "interpolated", score, label,
                            f"interpolated between {int(n_[lo])} and {int(n_[hi])}")
        # beyond the known range: extrapolate a little along the street's end
        below = number < nums[0]
        edge = 0 if below else nums.size - 1
        gap = abs(number - nums[edge])
        if gap > MAX_EXTRAPOLATION_NUMBERS:
            return _miss(f"number far outside the street's known range "
                         f"({int(nums[0])}-{int(nums[-1])} {key})")
        far = np.flatnonzero(np.abs(nums - nums[edge]) >= 40)
        ex, ey = xs[edge], ys[edge]
        if far.size:
            j = far[0] if below else far[-1]
            dn = abs(nums[j] - nums[edge])
            dx, dy = ex - xs[j], ey - ys[j]
            dist = float(np.hypot(dx, dy))
            if dist > 0:
                ft_per_n = min(dist / dn, 4 * FT_PER_NUMBER_DEFAULT)
                step = min(gap * ft_per_n, MAX_EXTRAPOLATION_FT)
                return _Hit(float(ex + dx / dist * step), float(ey + dy / dist * step), "interpolated",
                            0.6, label, f"extrapolated {int(gap)} numbers past {int(nums[edge])}")
        return _Hit(float(ex), float(ey), "interpolated", 0.5, label,
                    f"placed at the nearest known number {int(nums[edge])}")

    # --- intersections ----------------------------------------------------------------
    def _intersection(self, a: Street, b: Street, zip5: int) -> _Hit:
        label = f"{a.key} / {b.key}"
        table = self._table_lookup(a, b)
        if a.is_interstate or b.is_interstate:
            if table is not None:
                return _Hit(table[0], table[1], "intersection", 0.7, label,
                            "interchange from the intersection table")
            return _miss("interstate or ramp: no interstate geometry in the reference")
        ca = self._candidates(a, allow_dir_conflict=True)
        cb = self._candidates(b, allow_dir_conflict=True)
        if table is not None:
            return _Hit(table[0], table[1], "intersection", 0.95, label, "intersection table")
        if not ca or not cb:
            missing = a.key if not ca else b.key
            return _miss(f"no such street in the reference: {missing}")
        pen = max(p for _, p in ca) * max(p for _, p in cb)
        est = self._estimate_crossing([s for s, _ in ca], [s for s, _ in cb], zip5)
        if est is None:
            return _miss("the two streets do not meet in the reference")
        x, y, score, how = est
        ka = self.ref.street_keys[max(ca, key=lambda c: c[1])[0]]
        kb = self.ref.street_keys[max(cb, key=lambda c: c[1])[0]]
        return _Hit(x, y, "intersection", round(score * pen, 3), f"{ka} / {kb}", how)

    def _table_lookup(self, a: Street, b: Street) -> tuple[float, float] | None:
        table = self.ref.intersections
        if not table:
            return None
        va = {intersection_name(a), a.name}
        vb = {intersection_name(b), b.name}
        if a.stype:
            va.add(f"{a.name} {a.stype}")
        if b.stype:
            vb.add(f"{b.name} {b.stype}")
        for na in va:
            for nb in vb:
                pts = table.get((na, nb) if na < nb else (nb, na))
                if pts:
                    arr = np.asarray(pts)
                    # several entries (ramps on both sides): keep the cluster of the first
                    near = np.hypot(arr[:, 0] - arr[0, 0], arr[:, 1] - arr[0, 1]) <= 1500
                    return float(arr[near, 0].mean()), float(arr[near, 1].mean())
        return None

    def _geometry(self, sid: int) -> tuple[list[Any], list[Any]]:
        """The street's pieces as (plain, extended) lists: points joined in number order."""
        geom = self._lines.get(sid)
        if geom is None:
            import shapely

            sl = self._street_points(sid)
            xs, ys, nums = self.ref.pt_x[sl], self.ref.pt_y[sl], self.ref.pt_number[sl]
            step = np.hypot(np.diff(xs), np.diff(ys))
            # a jump far longer than the numbers explain is another street of the same name
            breaks = np.flatnonzero(step > np.maximum(STREET_BREAK_FT, 40.0 * np.diff(nums))) + 1
            plain: list[Any] = []
            extended: list[Any] = []
            for run in np.split(np.arange(xs.size), breaks):
                pts = np.column_stack([xs[run], ys[run]])
                if len(run) >= 2 and np.ptp(pts, axis=0).max() > 1:
                    plain.append(shapely.LineString(pts))
                    extended.append(shapely.LineString(_extend(pts, INTERSECTION_EXTEND_FT)))
                else:
                    pt = shapely.Point(pts.mean(axis=0))
                    plain.append(pt)
                    extended.append(pt)
            geom = self._lines[sid] = (plain, extended)
        return geom

    def _estimate_crossing(self, sids_a: list[int], sids_b: list[int],
                           zip5: int) -> tuple[float, float, float, str] | None:
        import shapely
        from shapely.ops import nearest_points

        core_a = shapely.GeometryCollection([g for s in sids_a for g in self._geometry(s)[0]])
        core_b = shapely.GeometryCollection([g for s in sids_b for g in self._geometry(s)[0]])
        ext_a = shapely.GeometryCollection([g for s in sids_a for g in self._geometry(s)[1]])
        ext_b = shapely.GeometryCollection([g for s in sids_b for g in self._geometry(s)[1]])
        for geoms_a, geoms_b, score, how in (
            (core_a, core_b, 0.85, "crossing of the two streets' reference geometry"),
            (ext_a, ext_b, 0.75, "crossing of the two streets' reference geometry, extended past the known ends"),
        ):
            pts = _points_of(shapely.intersection(geoms_a, geoms_b))
            if pts.size:
                x, y = self._choose_cluster(pts, sids_a + sids_b, zip5)
                return x, y, score, how
        pa, pb = nearest_points(core_a, core_b)
        gap = float(pa.distance(pb))
        if gap <= INTERSECTION_MAX_GAP_FT:
            return ((pa.x + pb.x) / 2, (pa.y + pb.y) / 2,
                    round(0.7 - 0.2 * gap / INTERSECTION_MAX_GAP_FT, 3),
                    f"midpoint of the streets' closest approach ({gap:.0f} ft apart)")
        return None

    def _choose_cluster(self, pts: np.ndarray, sids: list[int], zip5: int) -> tuple[float, float]:
        d0 = np.hypot(pts[:, 0] - pts[0, 0], pts[:, 1] - pts[0, 1])
        if d0.max() <= 1000:
            return float(pts[:, 0].mean()), float(pts[:, 1].mean())
        anchor = None
        if zip5:
            idx = np.concatenate([np.arange(self.ref.offsets[s], self.ref.offsets[s + 1]) for s in sids])
            m = self.ref.pt_zip[idx] == zip5
            if m.any():
                anchor = (self.ref.pt_x[idx][m].mean(), self.ref.pt_y[idx][m].mean())
        k = 0 if anchor is None else int(np.argmin(np.hypot(pts[:, 0] - anchor[0], pts[:, 1] - anchor[1])))
        near = np.hypot(pts[:, 0] - pts[k, 0], pts[:, 1] - pts[k, 1]) <= 1000
        return float(pts[near, 0].mean()), float(pts[near, 1].mean())


def _extend(pts: np.ndarray, dist_ft: float) -> np.ndarray:
    """The polyline with both end segments prolonged by `dist_ft`."""
    out = [pts[0], *pts, pts[-1]]
    for end, nb, pos in ((0, 1, 0), (-1, -2, -1)):
        d = pts[end] - pts[nb]
        norm = float(np.hypot(*d))
        if norm > 0:
            out[pos] = pts[end] + d / norm * dist_ft
    return np.asarray(out)


def _points_of(geom: Any) -> np.ndarray:
    import shapely

    if geom.is_empty:
        return np.empty((0, 2))
    coords = shapely.get_coordinates(geom)
    return coords[:, :2]


def _assemble(addr: pd.Series, codes: np.ndarray, hits: list[_Hit]) -> pd.DataFrame:
    ux = np.array([h.x for h in hits], float)
    uy = np.array([h.y for h in hits], float)
    ok = np.isfinite(ux) & np.isfinite(uy)
    lon = np.full(ux.size, np.nan)
    lat = np.full(ux.size, np.nan)
    if ok.any():
        lon[ok], lat[ok] = to_lonlat(ux[ok], uy[ok])
    w, s, e, n = settings.JEFFERSON_BBOX
    inside = ok & (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
    mtype = np.array([h.match_type for h in hits], object)
    score = np.array([h.score for h in hits], float)
    matched = np.array([h.matched for h in hits], object)
    reason = np.array([h.reason for h in hits], object)
    out_of_county = ok & ~inside
    if out_of_county.any():
        mtype[out_of_county] = "unmatched"
        score[out_of_county] = 0.0
        matched[out_of_county] = ""
        reason[out_of_county] = "placed outside Jefferson County"
        lon[out_of_county] = lat[out_of_county] = np.nan
    if len(codes) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("lon", "lat", "score") else object)
                             for c in RESULT_COLUMNS})
    return pd.DataFrame({
        "input": addr.to_numpy(object), "lon": lon[codes], "lat": lat[codes],
        "match_type": mtype[codes], "score": score[codes], "matched_address": matched[codes],
        "reason": reason[codes],
    })
