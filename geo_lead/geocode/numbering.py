"""House numbers along one street: exact points, interpolation, capped extrapolation, the
numbering of nearby parallel streets (the county grid) and the side of the street.

Everything runs on the range scale: a rooftop's number goes through the reference's learned
block curve (`reference.block_position`), Census and centerline points (range-interpolated)
are taken as they are, so both kinds of point mix consistently. Coordinates are EPSG:2246
(US survey feet). numpy alone (no pandas, no scipy): the officer's zone check places one
address through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from geo_lead import settings
from geo_lead.geocode.grid_index import GridIndex
from geo_lead.geocode.hits import Hit, Query, miss, street_points
from geo_lead.geocode.reference import (
    SRC_CENTERLINE,
    SRC_POINT,
    Reference,
    SideModel,
    block_position,
    learn_side_model,
)

# thresholds live in geo_lead.settings (GEOCODE_*), named here for brevity
MAX_EXTRAPOLATION_NUMBERS = settings.GEOCODE_MAX_EXTRAPOLATION_NUMBERS
FT_PER_NUMBER_DEFAULT = settings.GEOCODE_FT_PER_NUMBER
STREET_BREAK_FT = settings.GEOCODE_STREET_BREAK_FT
#: a same-side bracket this many times wider (+ 50 numbers) than the both-sides one is not used
SIDE_SPAN_FACTOR = 3.0
#: Same-side interpolation is blended with a closer both-sides bracket, each weighted by
#: 1 / (span + 10); the other side's houses count this much (they face across the street).
OTHER_SIDE_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Gradients:
    """Point pairs 40-400 numbers apart (range scale) on one street, indexed by position.

    Each pair gives, at its lower point (``x``, ``y``, number ``pos``), the direction toward
    higher numbers (``ux``, ``uy``, unit vector), feet per number ``ft_per_number``, its
    ``street`` id and how many numbers apart the points are (``numbers_apart``). ``grid``
    answers radius queries on the lower points.
    """

    grid: GridIndex
    x: np.ndarray
    y: np.ndarray
    pos: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    ft_per_number: np.ndarray
    street: np.ndarray
    numbers_apart: np.ndarray


class LocalNumbering(NamedTuple):
    """How numbers run at a place, from nearby parallel streets (`Numbering.local_numbering`)."""

    ux: float
    uy: float
    ft_per_number: float
    n_streets: int
    agreement: float


class _Near(NamedTuple):
    """`Gradients` and the indexes of its pairs near a place on other streets."""

    g: Gradients
    idx: np.ndarray


@dataclass(slots=True)  # not frozen: made per query, and a frozen __init__ is slower
class _Target:
    """A number to place on street ``sid`` (``key``): ``q`` is its range-scale position;
    ``pos`` is given for a hundred-block's middle (placed on the range line)."""

    sid: int
    key: str
    number: float
    q: float
    pos: float | None

    @property
    def label(self) -> str:
        return f"{int(self.number)} {self.key}"


@dataclass(slots=True)  # not frozen: made per query, and a frozen __init__ is slower
class _Points:
    """One street's points in number order: number, x, y, source, parity, ZIP, range position."""

    nums: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    src: np.ndarray
    par: np.ndarray
    zips: np.ndarray
    pp: np.ndarray

    def take(self, sel: np.ndarray) -> _Points:
        return _Points(self.nums[sel], self.xs[sel], self.ys[sel], self.src[sel], self.par[sel],
                       self.zips[sel], self.pp[sel])


@dataclass(slots=True)  # not frozen: made per query, and a frozen __init__ is slower
class _Edge:
    """The street's known end nearest a number past its range: index ``i`` into the points,
    ``below`` (the number lies below the range), range-scale distance ``gap`` (shortened to the
    cap), position ``x``, ``y``, ``n_past`` numbers past it and ``beyond`` (non-empty: past the
    numbers cap, how far)."""

    i: int
    below: bool
    gap: float
    x: float
    y: float
    n_past: int
    beyond: str


class Numbering:
    """Places house numbers on a reference street.

    Parameters
    ----------
    ref
        The reference index. The range-scale position of every point is computed at once; the
        side-of-street model (`side_model`) and the parallel streets' gradients (`gradients`)
        are learned on first need.
    """

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.curve: np.ndarray | None = getattr(ref, "block_curve", None)
        #: every point's number on the range scale
        self.pos: np.ndarray = np.where(ref.pt_src == SRC_POINT, block_position(ref.pt_number, self.curve),
                                        ref.pt_number)

    # --- learned on first need ------------------------------------------------------------
    @cached_property
    def side_model(self) -> SideModel | None:
        """The side-of-street model (`reference.learn_side_model`); None when it cannot be learned."""
        ref = self.ref
        return learn_side_model(ref.pt_street, ref.pt_number, ref.pt_x, ref.pt_y, ref.pt_src) or None

    @cached_property
    def gradients(self) -> Gradients | None:
        """`build_gradients` of the reference; None when no street has such a pair."""
        return build_gradients(self.ref, self.pos)

    # --- one street -----------------------------------------------------------------------
    def on_street(self, sid: int, number: float, query: Query, exact_ok: bool,
                  pos: float | None = None) -> Hit:
        """Place `number` on street `sid`: exact, interpolated, extrapolated or at its nearest point.

        Parameters
        ----------
        sid
            Street id in the reference.
        number
            The house number.
        query
            The record's ZIP and beat: of same-named pieces of the street, those in the beat, then
            those of the ZIP, are used when they cover the number.
        exact_ok
            Whether a known point with this very number answers (``exact``).
        pos
            The range-scale position to place instead of the number's own (a hundred-block's
            middle); such a place stays on the range line.

        Returns
        -------
        Hit
            ``exact``, ``interpolated`` (between known numbers, or extrapolated a little past
            them), ``street`` (past the extrapolation cap, placed at the cap) or ``unmatched``
            (far outside the street's known range).
        """
        pts = self._street_view(sid, number, query)
        key = self.ref.street_keys[sid]
        if exact_ok:
            hit = _exact(pts, number, f"{int(number)} {key}")
            if hit is not None:
                return hit
        q = float(block_position(number, self.curve)) if pos is None else float(pos)
        if pts.pp.size > 1 and (np.diff(pts.pp) < 0).any():  # a Census H50 among rooftops H00-H99
            pts = pts.take(np.argsort(pts.pp, kind="stable"))
        tg = _Target(sid, key, number, q, pos)
        for side_only in (True, False):
            hit = self._interpolate(pts, tg, side_only)
            if hit is not None:
                return hit
        return self._extrapolate(pts, tg)

    def _street_view(self, sid: int, number: float, query: Query) -> _Points:
        """The street's points, narrowed to the pieces in the record's beat, then to the ZIP's
        points, each only when those cover the number (within half the extrapolation limit)."""
        ref = self.ref
        sl = street_points(ref, sid)
        pts = _Points(ref.pt_number[sl], ref.pt_x[sl], ref.pt_y[sl], ref.pt_src[sl], ref.pt_parity[sl],
                      ref.pt_zip[sl], self.pos[sl])
        if query.beat is not None and pts.nums.size > 1:
            keep = beat_pieces(query, pts.xs, pts.ys, pts.nums)
            if keep is not None and _covers(pts.nums[keep], number):
                pts = pts.take(keep)
        if query.zip5:
            # Same-named streets in different places: keep this ZIP's points when they cover
            # the number (ZIP lines often run down the street itself, so not otherwise).
            inzip = pts.zips == query.zip5
            if inzip.any() and not inzip.all() and _covers(pts.nums[inzip], number):
                pts = pts.take(inzip)
        return pts

    def _interpolate(self, pts: _Points, tg: _Target, side_only: bool) -> Hit | None:
        """Interpolate between the known numbers that bracket the number: its own side's
        (`side_only`) or both sides'; None when none bracket it (or, on its own side, only a
        bracket much wider than both sides' gives)."""
        side = pts
        if side_only:
            m = pts.par == int(tg.number) % 2
            if not m.any():
                return None
            side = pts.take(m)
        p_ = side.pp
        hi = int(np.searchsorted(p_, tg.q, side="right"))
        lo = hi - 1
        if not (lo >= 0 and hi < p_.size and p_[lo] <= tg.q <= p_[hi]):
            return None
        span = p_[hi] - p_[lo]
        if side_only and span > SIDE_SPAN_FACTOR * _any_side_span(pts.pp, tg.q) + 50:
            return None  # both sides together have much closer neighbours
        x_, y_, n_ = side.xs, side.ys, side.nums
        gap_ft = float(np.hypot(x_[hi] - x_[lo], y_[hi] - y_[lo]))
        if gap_ft > max(STREET_BREAK_FT, 40.0 * span):
            # the neighbours lie on separate pieces of a same-named street
            k = lo if tg.q - p_[lo] <= p_[hi] - tg.q else hi
            return Hit(float(x_[k]), float(y_[k]), "interpolated", 0.5, tg.label,
                       f"placed at the nearest known number {int(n_[k])} (neighbours far apart)")
        x, y = self._bracket_point(pts, side, tg, (lo, hi), side_only)
        score = 0.9 if span <= 200 else 0.85 if span <= 1000 else 0.75
        if not side_only:
            score -= 0.05
        return Hit(float(x), float(y), "interpolated", score, tg.label,
                   f"interpolated between {int(n_[lo])} and {int(n_[hi])}")

    def _bracket_point(self, pts: _Points, side: _Points, tg: _Target, bracket: tuple[int, int],
                       side_only: bool) -> tuple[float, float]:
        """The interpolated point between `side`'s points ``lo`` and ``hi``: on its own side's
        chord (blended with a closer both-sides chord), moved along toward where parallel streets
        carry the number, then across to the number's side of the street."""
        lo, hi = bracket
        p_, x_, y_, s_, n_ = side.pp, side.xs, side.ys, side.src, side.nums
        span = p_[hi] - p_[lo]
        t = 0.0 if span == 0 else (tg.q - p_[lo]) / span
        x = x_[lo] + t * (x_[hi] - x_[lo])
        y = y_[lo] + t * (y_[hi] - y_[lo])
        # how far the estimate stands off the range line: its endpoints' expected offsets
        implied = (1 - t) * self.point_offset(tg.sid, s_[lo], n_[lo]) + t * self.point_offset(tg.sid, s_[hi], n_[hi])
        if side_only:
            x, y, implied = self._blend_both_sides(pts, tg, span, (x, y, implied))
        if settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT > 0 and span >= settings.GEOCODE_ALIGN_MIN_SPAN:
            x, y = self._align_interpolation(tg, (x_[lo], y_[lo], x_[hi], y_[hi]), x, y)
        return self._to_side(tg, implied, (x_[hi] - x_[lo], y_[hi] - y_[lo]), x, y)

    def _blend_both_sides(self, pts: _Points, tg: _Target, span: float,
                          est: tuple[float, float, float]) -> tuple[float, float, float]:
        """Blend a same-side estimate ``(x, y, implied offset)`` with the closer bracket of both
        sides' points, each weighted by 1 / (span + 10), the other side's by `OTHER_SIDE_WEIGHT`
        (not along centerlines: both sides' vertices lie on the same line)."""
        x, y, implied = est
        pp, xs, ys, src, nums = pts.pp, pts.xs, pts.ys, pts.src, pts.nums
        hi2 = int(np.searchsorted(pp, tg.q, side="right"))
        lo2 = hi2 - 1
        if not (lo2 >= 0 and hi2 < pp.size and SRC_CENTERLINE not in (src[lo2], src[hi2])):
            return x, y, implied
        span2 = pp[hi2] - pp[lo2]
        apart_ft = float(np.hypot(xs[hi2] - xs[lo2], ys[hi2] - ys[lo2]))
        if not (span2 < span and apart_ft <= max(STREET_BREAK_FT, 40.0 * span2)):
            return x, y, implied
        t2 = 0.0 if span2 == 0 else (tg.q - pp[lo2]) / span2
        x2 = xs[lo2] + t2 * (xs[hi2] - xs[lo2])
        y2 = ys[lo2] + t2 * (ys[hi2] - ys[lo2])
        w1, w2 = 1.0 / (span + 10.0), OTHER_SIDE_WEIGHT / (span2 + 10.0)
        x, y = (w1 * x + w2 * x2) / (w1 + w2), (w1 * y + w2 * y2) / (w1 + w2)
        implied2 = ((1 - t2) * self.point_offset(tg.sid, src[lo2], nums[lo2])
                    + t2 * self.point_offset(tg.sid, src[hi2], nums[hi2]))
        return x, y, (w1 * implied + w2 * implied2) / (w1 + w2)

    # --- past the known numbers -----------------------------------------------------------
    def _extrapolate(self, pts: _Points, tg: _Target) -> Hit:
        """A number past the street's known range: extrapolated a little along the street's end
        (the way parallel streets number, else the street's own chord), capped; or its nearest
        known number; unmatched when far outside the range."""
        nums = pts.nums
        if tg.number < nums.min() - MAX_EXTRAPOLATION_NUMBERS or tg.number > nums.max() + MAX_EXTRAPOLATION_NUMBERS:
            return miss(f"number far outside the street's known range "
                        f"({int(nums.min())}-{int(nums.max())} {tg.key})")
        edge = _edge(pts, tg)
        # the way numbers run on nearby parallel streets first: better than the street's own
        # chord to a farther point
        local = None
        if settings.GEOCODE_LOCAL_NUMBERING and edge.gap > 0:
            local = self.local_numbering(tg.sid, edge.x, edge.y, float(pts.pp[edge.i]))
        if local is not None:
            return self._extrapolate_local(pts, tg, edge, local)
        hit = self._extrapolate_chord(pts, tg, edge)
        if hit is not None:
            return hit
        if edge.beyond:
            return _past_cap(edge.x, edge.y, tg, nums[edge.i], edge.beyond)
        return Hit(edge.x, edge.y, "interpolated", 0.5, tg.label,
                   f"placed at the nearest known number {int(nums[edge.i])}")

    def _extrapolate_local(self, pts: _Points, tg: _Target, edge: _Edge, local: LocalNumbering) -> Hit:
        """Step from the known end the way numbers run on nearby streets (`local_numbering`),
        shortened by the directions' agreement; where parallel streets carry the number itself
        within `settings.GEOCODE_ALIGN_STEP_RANGE` of the step, there. Capped at
        `settings.GEOCODE_EXTRAPOLATION_CAP_FT`."""
        cap_ft = settings.GEOCODE_EXTRAPOLATION_CAP_FT
        ux, uy, ft_per_n, n_streets, agree = local
        beyond = edge.beyond
        ex, ey = edge.x, edge.y
        # shortened by the directions' agreement (mean resultant length, the expected cosine
        # between the mean direction and the true one): where the neighbours disagree the
        # number's expected position lies nearer the known end
        step = edge.gap * ft_per_n * (-1.0 if edge.below else 1.0)
        if settings.GEOCODE_LOCAL_NUMBERING_SHRINK:
            step *= agree
        if abs(step) > cap_ft:
            beyond = beyond or f"{abs(step):,.0f} ft"
            step = float(np.clip(step, -cap_ft, cap_ft))
        elif not beyond:
            # where parallel streets carry the number itself, when that roughly agrees with the step
            lo_f, hi_f = settings.GEOCODE_ALIGN_STEP_RANGE
            aligned = self.aligned_along(tg.sid, ex, ey, ux, uy, tg.q, ex + ux * step, ey + uy * step)
            if aligned is not None and aligned * step > 0 and lo_f * abs(step) <= abs(aligned) <= hi_f * abs(step):
                step = float(np.clip(aligned, -cap_ft, cap_ft))
        i = edge.i
        px, py = self._to_side(tg, self.point_offset(tg.sid, pts.src[i], pts.nums[i]),
                               (ux, uy), ex + ux * step, ey + uy * step)
        if beyond:
            return _past_cap(px, py, tg, pts.nums[i], beyond)
        return Hit(px, py, "interpolated", 0.55, tg.label,
                   f"extrapolated {edge.n_past} numbers from {int(pts.nums[i])} the way numbers run on "
                   f"{n_streets} nearby streets")

    def _extrapolate_chord(self, pts: _Points, tg: _Target, edge: _Edge) -> Hit | None:
        """Step from the known end along the chord to the farthest point at least 40 numbers
        away, at that chord's feet per number (at most 4 x `settings.GEOCODE_FT_PER_NUMBER`),
        capped; None when no such point."""
        cap_ft = settings.GEOCODE_EXTRAPOLATION_CAP_FT
        pp, i = pts.pp, edge.i
        far = np.flatnonzero(np.abs(pp - pp[i]) >= 40)
        if not far.size:
            return None
        j = far[0] if edge.below else far[-1]
        dn = abs(pp[j] - pp[i])
        dx, dy = edge.x - pts.xs[j], edge.y - pts.ys[j]
        dist = float(np.hypot(dx, dy))
        if dist <= 0:
            return None
        beyond = edge.beyond
        ft_per_n = min(dist / dn, 4 * FT_PER_NUMBER_DEFAULT)
        step = edge.gap * ft_per_n
        if step > cap_ft:
            beyond = beyond or f"{step:,.0f} ft"
            step = cap_ft
        sgn = -1.0 if edge.below else 1.0  # (dx, dy) points away from the known numbers
        px, py = self._to_side(tg, self.point_offset(tg.sid, pts.src[i], pts.nums[i]), (sgn * dx, sgn * dy),
                               edge.x + dx / dist * step, edge.y + dy / dist * step)
        if beyond:
            return _past_cap(float(px), float(py), tg, pts.nums[i], beyond)
        return Hit(float(px), float(py), "interpolated",
                   0.6, tg.label, f"extrapolated {edge.n_past} numbers past {int(pts.nums[i])}")

    # --- the side of the street -----------------------------------------------------------
    def point_offset(self, sid: int, src: int, number: float) -> float:
        """Expected offset of a known point from the range line (left of higher numbers is +).

        Census and centerline points lie on the range line (0), as do hundreds (block starts);
        a rooftop stands on its number's side (`SideModel.signed_offset_ft`).
        """
        if not settings.GEOCODE_SIDE_OFFSET or src != SRC_POINT or int(number) % 100 == 0:
            return 0.0
        model = self.side_model
        return 0.0 if model is None else model.signed_offset_ft(sid, int(number))

    def _to_side(self, tg: _Target, implied_ft: float, direction: tuple[float, float],
                 x: float, y: float) -> tuple[float, float]:
        """Move (x, y) across the street to where the number is expected to stand.

        `direction` (dx, dy) points toward higher numbers; `implied_ft` is how far (x, y)
        already stands off the range line (from the points it was interpolated or extrapolated
        from). A house number belongs on its side (`SideModel`); a hundred (``2700 W MADISON
        ST``, a block start) and a hundred-block's middle (``pos`` given) on the range line.
        Unchanged without a side model or with `settings.GEOCODE_SIDE_OFFSET` off.
        """
        if not settings.GEOCODE_SIDE_OFFSET or self.side_model is None:
            return x, y
        dx, dy = direction
        length = float(np.hypot(dx, dy))
        if length <= 0:
            return x, y
        target = 0.0 if tg.pos is not None else self.point_offset(tg.sid, SRC_POINT, tg.number)
        shift = target - implied_ft
        # left of the way numbers increase: (dx, dy) turned 90 degrees anticlockwise
        return x - shift * dy / length, y + shift * dx / length

    # --- the county grid ------------------------------------------------------------------
    def _align_interpolation(self, tg: _Target, chord: tuple[float, float, float, float],
                             x: float, y: float) -> tuple[float, float]:
        """Move an interpolated point along its bracket toward where parallel streets carry the
        number.

        Linear interpolation between two known numbers far apart assumes evenly long blocks; on
        Louisville's county grid the parallel streets nearby show where the number (range scale)
        actually falls (`aligned_along`). When that lies within the bracket `chord` (x0, y0, x1,
        y1), the point's position along it becomes the weighted mean of the two estimates
        (weight `settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT` for the parallel streets); its
        offset across the bracket (side of the street, blend with the other side) is kept.
        """
        x0, y0, x1, y1 = chord
        length = float(np.hypot(x1 - x0, y1 - y0))
        if length <= 0:
            return x, y
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        aligned = self.aligned_along(tg.sid, x0, y0, ux, uy, tg.q, x, y)
        if aligned is None or not 0.0 <= aligned <= length:
            return x, y
        cur = (x - x0) * ux + (y - y0) * uy
        shift = settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT * (aligned - cur)
        return x + shift * ux, y + shift * uy

    def local_numbering(self, sid: int, ex: float, ey: float, pe: float) -> LocalNumbering | None:
        """Which way, and how fast, numbers run at (ex, ey) on a street that cannot tell itself.

        Louisville numbers on a county grid: parallel streets carry about the same numbers at
        the same cross-street. Every street with two points at least 40 numbers apart (on the
        range scale) gives a local gradient: a direction toward higher numbers and feet per
        number. A nearby street (within `settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT`) whose
        numbering, carried across to (ex, ey), gives this street's number `pe` within
        `settings.GEOCODE_LOCAL_NUMBERING_TOLERANCE` runs parallel to it; the weighted mean
        direction and weighted median feet per number (at most 4 x
        `settings.GEOCODE_FT_PER_NUMBER`) of those streets are returned, with how many streets
        agreed and how well their directions agree (length of the weighted mean of their unit
        vectors, 0-1). None when fewer than `settings.GEOCODE_LOCAL_NUMBERING_MIN_STREETS` agree
        or their directions disagree (`settings.GEOCODE_LOCAL_NUMBERING_MIN_AGREEMENT`).
        """
        near = self._other_streets_pairs(sid, ex, ey, settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT)
        if near is None:
            return None
        g, idx = near
        # the neighbour's number at the foot of (ex, ey) on its own line
        along = (ex - g.x[idx]) * g.ux[idx] + (ey - g.y[idx]) * g.uy[idx]
        resid = np.abs(g.pos[idx] + along / g.ft_per_number[idx] - pe)
        keep = resid <= settings.GEOCODE_LOCAL_NUMBERING_TOLERANCE
        if not keep.any():
            return None
        idx, resid = idx[keep], resid[keep]
        streets = np.unique(g.street[idx])
        if streets.size < settings.GEOCODE_LOCAL_NUMBERING_MIN_STREETS:
            return None
        dist = np.hypot(g.x[idx] - ex, g.y[idx] - ey)
        w = 1.0 / ((1.0 + dist / 500.0) * (1.0 + resid / 25.0))
        w = _once_per_street(w, g.street[idx])
        vx, vy = float((w * g.ux[idx]).sum()), float((w * g.uy[idx]).sum())
        agree = np.hypot(vx, vy) / float(w.sum())
        if agree < settings.GEOCODE_LOCAL_NUMBERING_MIN_AGREEMENT:
            return None
        norm = np.hypot(vx, vy)
        # feet per number: the median weighted like the direction (closer, better-agreeing
        # streets count more)
        ft_per_n = _weighted_median(g.ft_per_number[idx], w)
        return LocalNumbering(vx / norm, vy / norm, min(ft_per_n, 4 * FT_PER_NUMBER_DEFAULT),
                              int(streets.size), float(agree))

    def aligned_along(self, sid: int, ex: float, ey: float, ux: float, uy: float, q: float,
                      cx: float, cy: float) -> float | None:
        """How far from (ex, ey) along (ux, uy) (toward higher numbers) number `q` lies.

        County grid: parallel streets carry the same number at the same cross-street. Every
        point pair of another street within `settings.GEOCODE_ALIGN_RADIUS_FT` of (cx, cy)
        (the first estimate) whose numbers span `q` and whose direction is within
        `settings.GEOCODE_ALIGN_MIN_COS` of (ux, uy) gives where that street carries `q`;
        projected on the line, the weighted median (nearer lines weigh more, each street once)
        is returned. None when no such street.
        """
        near = self._other_streets_pairs(sid, cx, cy, settings.GEOCODE_ALIGN_RADIUS_FT)
        if near is None:
            return None
        g, idx = near
        idx = idx[(g.pos[idx] <= q) & (g.pos[idx] + g.numbers_apart[idx] >= q)
                  & (g.ux[idx] * ux + g.uy[idx] * uy >= settings.GEOCODE_ALIGN_MIN_COS)]
        if idx.size == 0:
            return None
        run = (q - g.pos[idx]) * g.ft_per_number[idx]
        px, py = g.x[idx] + run * g.ux[idx], g.y[idx] + run * g.uy[idx]
        along = (px - ex) * ux + (py - ey) * uy
        perp = np.abs((px - ex) * uy - (py - ey) * ux)
        w = 1.0 / (1.0 + perp / 500.0)
        return _weighted_median(along, _once_per_street(w, g.street[idx]))

    def _other_streets_pairs(self, sid: int, x: float, y: float, radius_ft: float) -> _Near | None:
        """`gradients` and the indexes of its point pairs within `radius_ft` of (x, y) that
        belong to streets other than `sid`; None when there are no gradients or no pair near."""
        g = self.gradients
        if g is None:
            return None
        idx = g.grid.query_ball_point((x, y), radius_ft)
        if idx.size == 0:
            return None
        return _Near(g, idx[g.street[idx] != sid])


def build_gradients(ref: Reference, pos: np.ndarray) -> Gradients | None:
    """Point pairs 40-400 numbers apart (range positions `pos`) on one street, no farther apart
    than 40 ft per number, each from a point to the first point 40+ numbers on; None when none."""
    st, x, y = ref.pt_street, ref.pt_x, ref.pt_y
    order = np.lexsort((pos, st))
    st, pos, x, y = st[order], pos[order], x[order], y[order]
    span = float(pos.max() - pos.min() + 1e3) if pos.size else 1.0
    key = st * span + (pos - (pos.min() if pos.size else 0.0))
    j = np.searchsorted(key, key + 40.0)
    ok = j < key.size
    i, j = np.flatnonzero(ok), j[ok]
    i, j = i[st[j] == st[i]], j[st[j] == st[i]]
    dn = pos[j] - pos[i]
    dx, dy = x[j] - x[i], y[j] - y[i]
    dist = np.hypot(dx, dy)
    good = (dn <= 400) & (dist > 1) & (dist <= 40.0 * dn)
    i, dn, dx, dy, dist = i[good], dn[good], dx[good], dy[good], dist[good]
    if i.size == 0:
        return None
    cell_ft = max(settings.GEOCODE_ALIGN_RADIUS_FT, settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT)
    return Gradients(GridIndex(np.column_stack([x[i], y[i]]), cell_ft), x[i], y[i], pos[i],
                     dx / dist, dy / dist, dist / dn, st[i], dn)


def beat_pieces(query: Query, xs: np.ndarray, ys: np.ndarray, nums: np.ndarray) -> np.ndarray | None:
    """Points of the pieces of a same-named street that touch the record's beat.

    A street name's points split into pieces where consecutive numbers lie farther apart
    than the numbers explain (`STREET_BREAK_FT`): same-named streets in different places.
    Returns a mask of the points of the pieces with a point inside the beat, or None when
    every piece or none touches it (nothing to choose). Pieces are runs in number order: two
    places interleave, so a place is every run near it.
    """
    step = np.hypot(np.diff(xs), np.diff(ys))
    breaks = np.flatnonzero(step > np.maximum(STREET_BREAK_FT, 40.0 * np.diff(nums))) + 1
    if breaks.size == 0:
        return None
    piece = np.zeros(nums.size, np.int64)
    piece[breaks] = 1
    piece = np.cumsum(piece)
    inside = query.in_beat(xs, ys)
    touching = np.unique(piece[inside])
    if touching.size == 0 or touching.size == piece.max() + 1:
        return None
    return np.isin(piece, touching)


def _covers(nums: np.ndarray, number: float) -> bool:
    """Whether `nums` (ascending) reach `number` within half the extrapolation limit."""
    return bool(nums[0] - MAX_EXTRAPOLATION_NUMBERS / 2 <= number <= nums[-1] + MAX_EXTRAPOLATION_NUMBERS / 2)


def _exact(pts: _Points, number: float, label: str) -> Hit | None:
    """The known point(s) with this very number (an address point beats a Census point, itself
    interpolated along TIGER; centerline vertices never count); None when none."""
    nums, src = pts.nums, pts.src
    lo_i, hi_i = np.searchsorted(nums, number), np.searchsorted(nums, number, side="right")
    same = np.arange(lo_i, hi_i)[src[lo_i:hi_i] != SRC_CENTERLINE]
    if not same.size:
        return None
    rooftop = same[src[same] == SRC_POINT]
    if rooftop.size:
        same, score, how = rooftop, 1.0, "known address point"
    else:
        score, how = 0.9, "known point from the Census geocoder results"
    return Hit(float(pts.xs[same].sum() / same.size), float(pts.ys[same].sum() / same.size),
               "exact", score, label, how)


def _edge(pts: _Points, tg: _Target) -> _Edge:
    """The known end the number lies past, and how far (range scale, shortened to the cap of
    `settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS` numbers past it)."""
    pp, nums = pts.pp, pts.nums
    below = tg.q < pp[0]
    i = 0 if below else pp.size - 1
    gap = abs(tg.q - pp[i])
    n_past = abs(int(tg.number) - int(nums[i]))
    cap_n = settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS
    # extrapolation goes no farther than the cap (numbers, then feet); a number beyond it is a
    # `street` match at the cap, not a house on the street
    beyond = f"{n_past} numbers" if n_past > cap_n else ""
    if beyond:
        gap *= cap_n / n_past
    return _Edge(i, bool(below), gap, float(pts.xs[i]), float(pts.ys[i]), n_past, beyond)


def _past_cap(x: float, y: float, tg: _Target, edge: float, how_far: str) -> Hit:
    """A number beyond the extrapolation cap: the street is known, the house is not (``street``,
    placed no farther than the cap past the last known number `edge`, with the reason)."""
    number, key = tg.number, tg.key
    return Hit(x, y, "street", 0.3, f"{int(number)} {key}",
               f"{int(number)} lies {how_far} past the last known number {int(edge)} of {key}, beyond "
               f"the extrapolation cap ({settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS} numbers, "
               f"{settings.GEOCODE_EXTRAPOLATION_CAP_FT:,.0f} ft): street only, placed at the cap")


def _any_side_span(nums: np.ndarray, number: float) -> float:
    """The span of the bracket of `number` among `nums` (ascending), both sides; inf when none."""
    hi = int(np.searchsorted(nums, number, side="right"))
    if hi == 0 or hi >= nums.size:
        return np.inf
    return float(nums[hi] - nums[hi - 1])


def _once_per_street(weights: np.ndarray, streets: np.ndarray) -> np.ndarray:
    """`weights` divided by how many entries each street has: a street counts once in total,
    however many point pairs it has."""
    _, inv, cnt = np.unique(streets, return_inverse=True, return_counts=True)
    return weights / cnt[inv]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value where the cumulative weight (values in order) first reaches half the total."""
    o = np.argsort(values, kind="stable")
    cw = np.cumsum(weights[o])
    return float(values[o][np.searchsorted(cw, cw[-1] / 2)])
