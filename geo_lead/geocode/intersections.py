"""Intersections: the intersection table, crossings of two streets' reference geometry and
Louisville's numbered-street grid.

A street's reference geometry is its points joined in number order (`StreetShapes`), split
where consecutive points lie farther apart than their numbers explain. Coordinates are
EPSG:2246 (US survey feet); shapely is imported on first use. No pandas, no scipy.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from geo_lead import settings
from geo_lead.geocode.hits import Candidate, Hit, Query, conflict, miss, street_points
from geo_lead.geocode.normalize import Street
from geo_lead.geocode.reference import Reference, intersection_name

if TYPE_CHECKING:
    import shapely

    from geo_lead.geocode.numbering import Numbering
    from geo_lead.geocode.street_names import StreetNames

INTERSECTION_EXTEND_FT = settings.GEOCODE_INTERSECTION_EXTEND_FT
INTERSECTION_MAX_GAP_FT = settings.GEOCODE_INTERSECTION_MAX_GAP_FT
STREET_BREAK_FT = settings.GEOCODE_STREET_BREAK_FT
GRID_CHECK_FT = settings.GEOCODE_GRID_CHECK_FT
#: table entries with the same names within this distance are one place
TABLE_PLACE_FT = 1500.0

_ORDINAL_NAME = re.compile(r"^(\d{1,2})(?:ST|ND|RD|TH)$")


class StreetGeometry(NamedTuple):
    """A street's pieces: ``plain`` (points joined in number order; a lone point stays a
    point) and ``extended`` (each line prolonged by `settings.GEOCODE_INTERSECTION_EXTEND_FT`
    at both ends)."""

    plain: list[shapely.Geometry]
    extended: list[shapely.Geometry]


class TablePlace(NamedTuple):
    """The intersection-table place meant by a query, with a note on how it was chosen."""

    x: float
    y: float
    note: str


class Crossing(NamedTuple):
    """An estimated crossing of two streets: place, score before name penalties, how."""

    x: float
    y: float
    score: float
    how: str


class _Cluster(NamedTuple):
    x: float
    y: float
    ambiguous: bool


class StreetShapes:
    """Streets' reference geometry, built per street on first need and kept."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self._lines: dict[int, StreetGeometry] = {}
        self._collections: dict[tuple[int, ...], shapely.Geometry] = {}

    def geometry(self, sid: int) -> StreetGeometry:
        """The street's pieces, plain and extended; a new piece where consecutive points lie
        farther apart than `settings.GEOCODE_STREET_BREAK_FT` and 40 ft per number."""
        geom = self._lines.get(sid)
        if geom is None:
            geom = self._lines[sid] = _street_geometry(self.ref, sid)
        return geom

    def distance(self, sids: list[int], x: float, y: float) -> float:
        """Distance (ft) from (x, y) to the streets' reference geometry (points and lines)."""
        import shapely

        key = tuple(sids)
        geom = self._collections.get(key)
        if geom is None:
            geom = self._collections[key] = shapely.GeometryCollection(
                [g for s in sids for g in self.geometry(s).plain])
        return float(geom.distance(shapely.Point(x, y)))


def _street_geometry(ref: Reference, sid: int) -> StreetGeometry:
    import shapely

    sl = street_points(ref, sid)
    xs, ys, nums = ref.pt_x[sl], ref.pt_y[sl], ref.pt_number[sl]
    step = np.hypot(np.diff(xs), np.diff(ys))
    # a jump far longer than the numbers explain is another street of the same name
    breaks = np.flatnonzero(step > np.maximum(STREET_BREAK_FT, 40.0 * np.diff(nums))) + 1
    out = StreetGeometry([], [])
    for run in np.split(np.arange(xs.size), breaks):
        pts = np.column_stack([xs[run], ys[run]])
        if len(run) >= 2 and np.ptp(pts, axis=0).max() > 1:
            out.plain.append(shapely.LineString(pts))
            out.extended.append(shapely.LineString(_extend(pts, INTERSECTION_EXTEND_FT)))
        else:
            pt = shapely.Point(pts.mean(axis=0))
            out.plain.append(pt)
            out.extended.append(pt)
    return out


class _Pair:
    """The two streets of an intersection query and their candidates, searched on first need
    (a single table entry needs none)."""

    def __init__(self, names: StreetNames, a: Street, b: Street) -> None:
        self.names, self.a, self.b = names, a, b

    @cached_property
    def cands(self) -> tuple[list[Candidate], list[Candidate]]:
        a, b = self.a, self.b
        return (self.names.candidates(a, allow_dir_conflict=True) if not a.is_interstate else [],
                self.names.candidates(b, allow_dir_conflict=True) if not b.is_interstate else [])


class Intersections:
    """Places ``A / B`` queries.

    Parameters
    ----------
    ref
        The reference index (its intersection table and street points).
    names, numbering, shapes
        The candidate search, the numbering along streets (for the numbered-street grid) and
        the streets' geometry, shared with the rest of the matcher.
    """

    def __init__(self, ref: Reference, names: StreetNames, numbering: Numbering,
                 shapes: StreetShapes) -> None:
        self.ref, self.names, self.numbering, self.shapes = ref, names, numbering, shapes

    def match(self, a: Street, b: Street, query: Query) -> Hit:
        """The intersection of `a` and `b`: from the table (0.95; an interchange 0.7), else a
        crossing of their reference geometry, the numbered-street grid or their closest
        approach (`Crossing`), scored down by the streets' name penalties; else unmatched."""
        label = f"{a.key} / {b.key}"
        pair = _Pair(self.names, a, b)
        table = self._table_lookup(pair, query)
        if a.is_interstate or b.is_interstate:
            if table is not None:
                return Hit(table.x, table.y, "intersection", 0.7, label,
                           "interchange from the intersection table" + table.note)
            return miss("interstate or ramp: no interstate geometry in the reference")
        if table is not None:
            return Hit(table.x, table.y, "intersection", 0.95, label, "intersection table" + table.note)
        ca, cb = pair.cands
        est = self._estimate(pair, query) if ca and cb else None
        if est is None or est.score < 0.8:
            # no direct crossing in the reference: the numbered-street grid, when it applies,
            # is better than an extended or closest-approach estimate
            grid = self._grid_crossing(pair, query)
            if grid is not None:
                return grid
        if not ca or not cb:
            missing = a.key if not ca else b.key
            return miss(f"no such street in the reference: {missing}")
        pen = max(p for _, p in ca) * max(p for _, p in cb)
        if est is None:
            return miss("the two streets do not meet in the reference")
        ka = self.ref.street_keys[max(ca, key=lambda c: c[1])[0]]
        kb = self.ref.street_keys[max(cb, key=lambda c: c[1])[0]]
        return Hit(est.x, est.y, "intersection", round(est.score * pen, 3), f"{ka} / {kb}", est.how)

    def _estimate(self, pair: _Pair, query: Query) -> Crossing | None:
        """Where the two streets' geometry crosses. A name that begins with a direction word
        (SOUTH PARK RD, NORTH BEND RD) reads as direction + name; where the reference has that
        very street, it alone is tried first, not a same-named street without the direction."""
        ca, cb = pair.cands
        est = None
        ea = self._exact(pair.a, ca)
        eb = self._exact(pair.b, cb)
        if ea is not None or eb is not None:
            est = self.estimate_crossing([s for s, _ in (ea or ca)], [s for s, _ in (eb or cb)], query)
        if est is None:
            est = self.estimate_crossing([s for s, _ in ca], [s for s, _ in cb], query)
        return est

    def _exact(self, st: Street, cands: list[Candidate]) -> list[Candidate] | None:
        """The candidates whose key is the query's own, when the query states a direction and
        other candidates lack it (None otherwise: nothing to prefer)."""
        if not (st.predir or st.postdir):
            return None
        exact = [c for c in cands if self.ref.street_keys[c[0]] == st.key]
        return exact if exact and len(exact) < len(cands) else None

    # --- the numbered-street grid -----------------------------------------------------------
    def _grid_crossing(self, pair: _Pair, query: Query) -> Hit | None:
        """Louisville's numbered-street grid: ``NTH ST`` crosses a W street at number N x 100.

        West of downtown the numbered streets (1st-45th) mark the hundred-blocks of the
        east-west streets (``3100 W MADISON ST`` is at 31st Street). Used when the reference
        shows no direct crossing, only when the number lies within two blocks of the other
        street's known range, and, for streets without a W prefix, only when the numbered
        street's own points pass within `settings.GEOCODE_GRID_CHECK_FT` of the result. Off
        with `settings.GEOCODE_NUMBERED_STREET_GRID`.
        """
        if not settings.GEOCODE_NUMBERED_STREET_GRID:
            return None
        a, b = pair.a, pair.b
        ca, cb = pair.cands
        for num_st, other, c_num, c_other in ((a, b, ca, cb), (b, a, cb, ca)):
            m = _ORDINAL_NAME.match(num_st.name)
            if not m or _ORDINAL_NAME.match(other.name) or num_st.stype not in ("", "ST"):
                continue
            number = float(int(m.group(1)) * 100)
            ranked = sorted(c_other, key=lambda c: self.ref.street_parts[c[0]].predir != "W")
            for cand in ranked:
                hit = self._grid_on(num_st, other, (c_num, cand), number, query)
                if hit is not None:
                    return hit
        return None

    def _grid_on(self, num_st: Street, other: Street, cands: tuple[list[Candidate], Candidate],
                 number: float, query: Query) -> Hit | None:
        """The numbered street `num_st` (its candidates ``cands[0]``) at `number` on the other
        street's candidate ``cands[1]``; None when the grid does not hold there."""
        import shapely

        c_num, (sid, pen) = cands
        part = self.ref.street_parts[sid]
        if part.predir not in ("W", "") or (other.predir and other.predir != part.predir):
            return None
        nums = self.ref.pt_number[street_points(self.ref, sid)]
        if not nums[0] - 200 <= number <= nums[-1] + 200:  # two blocks past the known end at most
            return None
        hit = self.numbering.on_street(sid, number, Query(0, query.beat), exact_ok=True)
        if hit.match_type == "unmatched" or "far apart" in hit.reason:
            return None
        near = np.inf
        if c_num and part.predir != "W":
            geoms = [g for s, _ in c_num for g in self.shapes.geometry(s).plain]
            near = float(shapely.GeometryCollection(geoms).distance(shapely.Point(hit.x, hit.y)))
        # W streets: the grid holds on its own (the signalized-intersection table bears it
        # out); others only when the numbered street's points confirm it
        if not (part.predir == "W" or near <= GRID_CHECK_FT):
            return None
        num_key = self.ref.street_keys[c_num[0][0]] if c_num else num_st.key
        return Hit(hit.x, hit.y, "intersection", round(min(0.9, hit.score) * pen, 3),
                   f"{num_key} / {self.ref.street_keys[sid]}",
                   f"numbered-street grid: {int(number)} {self.ref.street_keys[sid]}; {hit.reason}")

    # --- the intersection table --------------------------------------------------------------
    def _table_lookup(self, pair: _Pair, query: Query) -> TablePlace | None:
        """The intersection-table entry meant by ``a / b``; None when none fits.

        Tables name streets without type, ZIP or place, and hold duplicates (two signals at two
        crossings of the same pair). An entry is taken only when the type its source stated does
        not contradict the query's (SOUTHERN HEIGHTS is not SOUTHERN PKWY) and no same-named
        street of another type lies nearer it than the query's own (TYLER at Bardstown Road is
        TYLER LN, not TYLER PKWY: `_names_other_type`). (A plain distance cap would reject good
        entries: the sampled reference often knows only part of a street.) Entries within
        `TABLE_PLACE_FT` form one place; of several places, the one in the record's beat wins,
        then one whose nearby reference points carry the ZIP, then the one nearest both streets
        (the pair's candidates are searched only then).
        """
        found = self._table_entries(pair.a, pair.b)
        if not found:
            return None
        spots = self._table_places(pair.a, pair.b, found)
        if not spots:
            return None
        if len(spots) == 1:
            return TablePlace(spots[0][0], spots[0][1], "")
        return self._choose_place(pair, spots, query)

    def _table_entries(self, a: Street, b: Street) -> list[tuple[float, float]]:
        """The table's points for ``a / b`` (any reading of the names) whose stated types do not
        contradict the query's."""
        table = self.ref.intersections
        if not table:
            return []
        va = {(intersection_name(a), a.stype), (a.name, a.stype)}
        vb = {(intersection_name(b), b.stype), (b.name, b.stype)}
        if a.stype:
            va.add((f"{a.name} {a.stype}", ""))
        if b.stype:
            vb.add((f"{b.name} {b.stype}", ""))
        found: list[tuple[float, float]] = []
        for na, qa in sorted(va):
            for nb, qb in sorted(vb):
                for entry in table.get((na, nb) if na < nb else (nb, na), ()):
                    x, y, *types = entry
                    ta, tb = [*types, "", ""][:2] if na < nb else [*types, "", ""][1::-1]
                    if not (conflict(qa, ta) or conflict(qb, tb)):
                        found.append((float(x), float(y)))
        return found

    def _table_places(self, a: Street, b: Street, found: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """`found` grouped into places (entries within `TABLE_PLACE_FT`, averaged), less those a
        same-named street of another type passes nearer than the query's own."""
        arr = np.unique(np.asarray(found), axis=0)
        spots: list[tuple[float, float]] = []
        left = np.ones(len(arr), bool)
        while left.any():
            first = arr[np.flatnonzero(left)[0]]
            near = left & (np.hypot(arr[:, 0] - first[0], arr[:, 1] - first[1]) <= TABLE_PLACE_FT)
            left &= ~near
            x, y = float(arr[near, 0].mean()), float(arr[near, 1].mean())
            if not (self._names_other_type(a, x, y) or self._names_other_type(b, x, y)):
                spots.append((x, y))
        return spots

    def _choose_place(self, pair: _Pair, spots: list[tuple[float, float]], query: Query) -> TablePlace:
        """Of several table places: in the record's beat, then with the ZIP nearby, then nearest
        both streets; the note says which and among how many."""
        ca, cb = pair.cands
        zip5 = query.zip5
        places: list[tuple[bool, bool, float, float, float]] = []
        for x, y in spots:
            off = max(self._distance_to(pair.a, ca, x, y), self._distance_to(pair.b, cb, x, y))
            in_beat = query.beat is not None and bool(query.in_beat(x, y)[0])
            has_zip = bool(zip5) and (self._zip_near(ca, x, y, zip5) or self._zip_near(cb, x, y, zip5))
            places.append((not in_beat, not has_zip, off, x, y))
        places.sort()
        best = places[0]
        why = "the record's beat" if not best[0] else "the ZIP" if not best[1] else "nearest both streets"
        return TablePlace(best[3], best[4], f" (one of {len(places)} entries with these names: {why})")

    def _distance_to(self, st: Street, cands: list[Candidate], x: float, y: float) -> float:
        """Distance (ft) from (x, y) to the reference geometry of the candidates of the query's
        own type (any type when it states none); 0 when they have fewer than 5 points (nothing
        to check)."""
        cands = [c for c in cands if not conflict(st.stype, self.ref.street_parts[c[0]].stype)]
        n_points = sum(int(self.ref.offsets[s + 1] - self.ref.offsets[s]) for s, _ in cands)
        if n_points < 5:  # a point or two say nothing about where the street runs
            return 0.0
        return self.shapes.distance([s for s, _ in cands], x, y)

    def _names_other_type(self, st: Street, x: float, y: float) -> bool:
        """True when a table point, whose name states no type, is a same-named street of another
        type: that street passes within 1000 ft of it while the query's own type lies more than
        twice as far + 1000 ft. TYLER at Bardstown Road is TYLER LN (14 ft), not TYLER PKWY
        (11,500 ft); CHEROKEE at Grinstead in the park is CHEROKEE PKWY (570 ft), not CHEROKEE
        RD (2,770 ft)."""
        if not st.stype:
            return False
        ids = self.ref.name_to_ids.get(st.name, [])
        own = [i for i in ids if self.ref.street_parts[i].stype == st.stype]
        other = [i for i in ids if conflict(st.stype, self.ref.street_parts[i].stype)]
        if not own or not other:
            return False
        d_other = self.shapes.distance(other, x, y)
        return d_other <= 1000.0 and self.shapes.distance(own, x, y) > 2.0 * d_other + 1000.0

    def _zip_near(self, cands: list[Candidate], x: float, y: float, zip5: int) -> bool:
        """Whether a reference point of the candidates within 2000 ft of (x, y) carries the ZIP."""
        ref = self.ref
        for sid, _ in cands:
            sl = street_points(ref, sid)
            near = np.hypot(ref.pt_x[sl] - x, ref.pt_y[sl] - y) <= 2000
            if (ref.pt_zip[sl][near] == zip5).any():
                return True
        return False

    # --- crossings of the reference geometry ---------------------------------------------------
    def estimate_crossing(self, sids_a: list[int], sids_b: list[int], query: Query) -> Crossing | None:
        """Where streets `sids_a` and `sids_b` cross: their geometry's crossing (0.85), else
        their extended geometry's (0.75; not when it strays far past a closer approach), else
        the midpoint of their closest approach within `settings.GEOCODE_INTERSECTION_MAX_GAP_FT`
        (0.5-0.7); scores x 0.9 when the streets cross in several places. None when none."""
        import shapely
        from shapely.ops import nearest_points

        core_a = shapely.GeometryCollection([g for s in sids_a for g in self.shapes.geometry(s).plain])
        core_b = shapely.GeometryCollection([g for s in sids_b for g in self.shapes.geometry(s).plain])
        pts = _points_of(shapely.intersection(core_a, core_b))
        if pts.size:
            c = self._choose_cluster(pts, (sids_a, sids_b), query)
            return Crossing(c.x, c.y, 0.85 * (0.9 if c.ambiguous else 1.0),
                            "crossing of the two streets' reference geometry")
        ext_a = shapely.GeometryCollection([g for s in sids_a for g in self.shapes.geometry(s).extended])
        ext_b = shapely.GeometryCollection([g for s in sids_b for g in self.shapes.geometry(s).extended])
        pts = _points_of(shapely.intersection(ext_a, ext_b))
        pa, pb = nearest_points(core_a, core_b)
        gap = float(pa.distance(pb))
        if pts.size:
            c = self._choose_cluster(pts, (sids_a, sids_b), query)
            # an extended end can swing past a street it merely ends at (SOUTH PARK RD ends at
            # PRESTON HWY; prolonged, it crosses it 1 km on): where the known geometries come
            # closer to each other than the extended crossing lies from them, that is the place
            stray = max(core_a.distance(shapely.Point(c.x, c.y)), core_b.distance(shapely.Point(c.x, c.y)))
            if not (gap <= INTERSECTION_MAX_GAP_FT and stray > 2.0 * gap + 500.0):
                return Crossing(c.x, c.y, 0.75 * (0.9 if c.ambiguous else 1.0),
                                "crossing of the two streets' reference geometry, extended past the known ends")
        if gap <= INTERSECTION_MAX_GAP_FT:
            return Crossing((pa.x + pb.x) / 2, (pa.y + pb.y) / 2,
                            round(0.7 - 0.2 * gap / INTERSECTION_MAX_GAP_FT, 3),
                            f"midpoint of the streets' closest approach ({gap:.0f} ft apart)")
        return None

    def _choose_cluster(self, pts: np.ndarray, sids: tuple[list[int], list[int]], query: Query) -> _Cluster:
        """The crossing best supported by both streets' points (and the ZIP): crossings within
        1000 ft are one; of two crossings of the same pair of streets, the record's beat chooses
        when it can, else support; ``ambiguous`` when support chose."""
        d0 = np.hypot(pts[:, 0] - pts[0, 0], pts[:, 1] - pts[0, 1])
        if d0.max() <= 1000:
            return _Cluster(float(pts[:, 0].mean()), float(pts[:, 1].mean()), False)
        inside = query.in_beat(pts[:, 0], pts[:, 1])
        if inside.any() and not inside.all():
            pts = pts[inside]
            d0 = np.hypot(pts[:, 0] - pts[0, 0], pts[:, 1] - pts[0, 1])
            if d0.max() <= 1000:
                return _Cluster(float(pts[:, 0].mean()), float(pts[:, 1].mean()), False)
        best_k = self._best_supported(pts, sids, query.zip5)
        near = np.hypot(pts[:, 0] - pts[best_k, 0], pts[:, 1] - pts[best_k, 1]) <= 1000
        return _Cluster(float(pts[near, 0].mean()), float(pts[near, 1].mean()), True)

    def _best_supported(self, pts: np.ndarray, sids: tuple[list[int], list[int]], zip5: int) -> int:
        """Index of the crossing with the most of both streets' points within 2000 ft (the ZIP
        among them counts 3 per street; ties: the one nearest known points)."""
        ref = self.ref
        ia = np.concatenate([np.arange(ref.offsets[s], ref.offsets[s + 1]) for s in sids[0]])
        ib = np.concatenate([np.arange(ref.offsets[s], ref.offsets[s + 1]) for s in sids[1]])
        best, best_k = -1.0, 0
        for k in range(len(pts)):
            da = np.hypot(ref.pt_x[ia] - pts[k, 0], ref.pt_y[ia] - pts[k, 1])
            db = np.hypot(ref.pt_x[ib] - pts[k, 0], ref.pt_y[ib] - pts[k, 1])
            support = min((da <= 2000).sum(), (db <= 2000).sum()) + 0.5 * ((da <= 2000).sum() + (db <= 2000).sum())
            if zip5:
                support += 3 * ((ref.pt_zip[ia][da <= 2000] == zip5).any() + (ref.pt_zip[ib][db <= 2000] == zip5).any())
            support -= 1e-4 * (da.min() + db.min())  # ties: the crossing nearest known points
            if support > best:
                best, best_k = support, k
        return best_k


def _extend(pts: np.ndarray, dist_ft: float) -> np.ndarray:
    """The polyline with both end segments prolonged by `dist_ft`."""
    out = [pts[0], *pts, pts[-1]]
    for end, nb, pos in ((0, 1, 0), (-1, -2, -1)):
        d = pts[end] - pts[nb]
        norm = float(np.hypot(*d))
        if norm > 0:
            out[pos] = pts[end] + d / norm * dist_ft
    return np.asarray(out)


def _points_of(geom: shapely.Geometry) -> np.ndarray:
    """The coordinates (x, y) of a geometry's vertices; ``(0, 2)`` when empty."""
    import shapely

    if geom.is_empty:
        return np.empty((0, 2))
    coords: np.ndarray = shapely.get_coordinates(geom)
    return coords[:, :2]
