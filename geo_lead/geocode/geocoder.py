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
    only the street is known: the known point nearest the centre of its extent; or a number
    beyond the extrapolation cap (`settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS` / ``_FT``), placed
    no farther than the cap past the last known number, with the reason.
``unmatched``
    with a ``reason``.

A ZIP picks between same-named streets; a fuzzy street-name fallback lowers the score.

The record's LMPD beat (optional, like the ZIP) chooses among candidate places, never invents
one: of several same-named streets, intersection-table rows or crossings of the same two
streets, the one inside the beat (`geo_lead.beats`, within `settings.GEOCODE_BEAT_TOLERANCE_FT`)
is preferred, then the ZIP. A point is never moved toward or clipped into the beat.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_lead import settings
from geo_lead.geocode.normalize import (
    TYPE_WORDS,
    ParsedAddress,
    Street,
    parse_address,
    parse_street,
)
from geo_lead.geocode.reference import (
    SRC_CENTERLINE,
    SRC_POINT,
    Reference,
    block_position,
    intersection_name,
    learn_side_model,
    load_reference,
    to_lonlat,
)

if TYPE_CHECKING:  # only `Geocoder.geocode` (many addresses -> a DataFrame) needs pandas;
    import pandas as pd  # one address (`Geocoder.locate`, the zone check) needs numpy alone

log = logging.getLogger(__name__)

RESULT_COLUMNS: tuple[str, ...] = ("input", "lon", "lat", "match_type", "score", "matched_address", "reason")
MATCH_TYPES: tuple[str, ...] = ("exact", "interpolated", "block", "intersection", "street", "unmatched")

# thresholds live in geo_lead.settings (GEOCODE_*), named here for brevity
MAX_EXTRAPOLATION_NUMBERS = settings.GEOCODE_MAX_EXTRAPOLATION_NUMBERS
MAX_EXTRAPOLATION_FT = settings.GEOCODE_MAX_EXTRAPOLATION_FT
FT_PER_NUMBER_DEFAULT = settings.GEOCODE_FT_PER_NUMBER
INTERSECTION_EXTEND_FT = settings.GEOCODE_INTERSECTION_EXTEND_FT
INTERSECTION_MAX_GAP_FT = settings.GEOCODE_INTERSECTION_MAX_GAP_FT
STREET_BREAK_FT = settings.GEOCODE_STREET_BREAK_FT
FUZZY_PENALTY = settings.GEOCODE_FUZZY_PENALTY
GRID_CHECK_FT = settings.GEOCODE_GRID_CHECK_FT
#: Bump when matching or placement changes what a given address returns: stores' cached
#: results are keyed by the reference hash *and* this, so an upgrade re-geocodes them once.
MATCHER_VERSION = "matcher-3 (beat choice, typed table, capped extrapolation)"
SIDE_SPAN_FACTOR = 3.0
# Same-side interpolation is blended with a closer both-sides bracket, each weighted by
# 1 / (span + 10); the other side's houses count half (they face across the street).
# Hold-out: medians equal or lower on 3 seeds (e.g. Census 62.4 -> 61.6 m), p90 no worse.
OTHER_SIDE_WEIGHT = 0.5  # a same-side span this many times wider loses to both sides


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


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    """One address placed: the `RESULT_COLUMNS` of `Geocoder.geocode`'s row for it.

    ``lon``/``lat`` (EPSG:4326, 7 decimals) are NaN when ``match_type`` is ``unmatched``
    (``reason`` says why).
    """

    input: str
    lon: float
    lat: float
    match_type: str
    score: float
    matched_address: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    beats
        A `geo_lead.beats.BeatIndex` (shapely polygons, EPSG:2246) used when a record names its
        beat; default: the shipped beats, read the first time a beat is given (none when the
        file is missing).

    Examples
    --------
    >>> g = Geocoder()                                        # doctest: +SKIP
    >>> g.geocode(["2700 BLOCK W MADISON ST", "N 26TH ST / BANK ST"])  # doctest: +SKIP
    """

    def __init__(self, reference: Reference | None = None, *,
                 reference_files: Sequence[Path | str] | None = None,
                 index_dir: Path | None = None, beats: Any = None) -> None:
        self.ref = reference if reference is not None else load_reference(reference_files, index_dir)
        self._memo: dict[tuple[str, str, str], _Hit] = {}
        # beat polygons (`geo_lead.beats.BeatIndex`): given, or the shipped file on first need
        self._beats: Any = beats
        self._beat: Any = None  # the polygon of the record being matched (None: no beat)
        self._known_names: frozenset[str] | None = None  # names of `Reference.known_streets`
        self._collections: dict[tuple[int, ...], Any] = {}  # streets' geometry, for distances
        self._lines: dict[int, Any] = {}
        self._fuzzy: dict[str, str | None] = {}
        self._deletes: dict[str, set[str]] | None = None
        self._nospace: dict[str, str] = {}
        # every point's number on the range scale: address points (rooftops) through the
        # learned block curve, Census / centerline points (range-interpolated) as they are
        curve = getattr(self.ref, "block_curve", None)
        self._curve = curve
        self._grad: Any = None  # local numbering model: built on first need (`_local_numbering`)
        self._side: Any = None  # side-of-street model: built on first need (`_side_offset`)
        self._pos = np.where(self.ref.pt_src == SRC_POINT, block_position(self.ref.pt_number, curve),
                             self.ref.pt_number)

    @property
    def reference_hash(self) -> str:
        """The cache key: the reference files' hash (with `INDEX_VERSION`) and `MATCHER_VERSION`."""
        import hashlib

        return hashlib.sha256(f"{self.ref.hash}|{MATCHER_VERSION}".encode()).hexdigest()

    # --- public -----------------------------------------------------------------------
    def geocode(self, addresses: Sequence[str], zips: Sequence[str] | None = None,
                progress: Any = None, beats: Sequence[str] | None = None) -> pd.DataFrame:
        """Geocode many addresses; each distinct (address, ZIP) is matched once.

        Parameters
        ----------
        addresses
            Address strings in any of the LMPD / postal forms (None and NaN allowed).
        zips
            Optional ZIP codes aligned with `addresses` (break ties between same-named streets).
        progress
            Optional `geo_lead.progress.Progress`, advanced per distinct address.
        beats
            Optional LMPD beat codes aligned with `addresses` (``112``): where the geocoder has
            several candidate places, the one inside the beat is preferred (then the ZIP).

        Returns
        -------
        pandas.DataFrame
            Aligned with the input (same length, same order, RangeIndex): ``input``, ``lon``,
            ``lat`` (EPSG:4326, NaN when unmatched), ``match_type``, ``score``,
            ``matched_address``, ``reason``.
        """
        import pandas as pd

        addr = pd.Series(list(addresses), dtype=object)
        n = len(addr)
        if zips is None:
            zser = pd.Series([""] * n, dtype=object)
        else:
            zser = pd.Series(list(zips), dtype=object)
            if len(zser) != n:
                raise ValueError(f"zips has {len(zser)} values for {n} addresses")
        text = addr.where(addr.map(lambda v: isinstance(v, str)), "")
        ztext = zser.map(_zip_text)
        if beats is None:
            btext = pd.Series([""] * n, dtype=object)
        else:
            from geo_lead.beats import normalize_beat

            btext = pd.Series([normalize_beat(b) for b in beats], dtype=object)
            if len(btext) != n:
                raise ValueError(f"beats has {len(btext)} values for {n} addresses")
        codes, uniques = pd.factorize(text + "\x1f" + ztext + "\x1f" + btext)
        hits: list[_Hit] = []
        for u in uniques:
            a, z, b = u.rsplit("\x1f", 2)  # the address text may hold \x1f itself
            hits.append(self._geocode_one(a, z, b))
            if progress is not None:
                progress.update(1)
        return _assemble(addr, codes, hits)

    def geocode_one(self, address: str, zip_code: str = "", beat: str = "") -> dict[str, Any]:
        """One address as a dict with the `RESULT_COLUMNS` keys."""
        return self.geocode([address], [zip_code], beats=[beat]).iloc[0].to_dict()

    def locate(self, address: str, zip_code: str | None = "", beat: str = "") -> GeocodeResult:
        """One address, without pandas: the same answer as ``geocode([address], [zip_code],
        beats=[beat])`` gives for it (the officer's zone check takes this path)."""
        text = address if isinstance(address, str) else ""
        code = ""
        if beat:
            from geo_lead.beats import normalize_beat

            code = normalize_beat(beat)
        hit = self._geocode_one(text, _zip_text(zip_code), code)
        lon, lat, mtype, score, matched, reason = _placements([hit])
        return GeocodeResult(address, float(lon[0]), float(lat[0]), str(mtype[0]), float(score[0]),
                             str(matched[0]), str(reason[0]))

    # --- matching ---------------------------------------------------------------------
    def _geocode_one(self, text: str, zip_code: str, beat: str = "") -> _Hit:
        parsed = parse_address(text, zip_code)
        self._beat = self._beat_polygon(beat)
        # a beat without a polygon (METRO) changes nothing: share the no-beat answer
        key = (f"{parsed.kind}|{parsed.normalized or parsed.reason}", parsed.zip,
               beat if self._beat is not None else "")
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = self._match(parsed)
            except (ValueError, ArithmeticError, IndexError) as exc:  # defensive: never raise
                log.warning("geocoding %r failed: %s", text, exc)
                hit = _miss(f"internal error: {exc}")
            self._memo[key] = hit
        self._beat = None
        return hit

    # --- the record's beat ---------------------------------------------------------------
    def _beat_polygon(self, code: str) -> Any:
        """The polygon (EPSG:2246) of beat `code`, None when no code, no polygon or no beat file."""
        if not code:
            return None
        if self._beats is None:
            from geo_lead.beats import read_beat_index
            from geo_lead.errors import GeoLeadError

            try:
                self._beats = read_beat_index()
            except GeoLeadError as exc:
                log.warning("beats not used: %s", exc)
                self._beats = False
        return self._beats.geometry(code) if self._beats else None

    def _in_beat(self, x: Any, y: Any) -> np.ndarray:
        """Whether each point lies inside the current record's beat (within the tolerance)."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        if self._beat is None:
            return np.zeros(x.shape, bool)
        import shapely

        return np.asarray(shapely.dwithin(self._beat, shapely.points(x, y),
                                          settings.GEOCODE_BEAT_TOLERANCE_FT))

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
        if not cands and p.kind in ("address", "block") and settings.GEOCODE_SIBLING_STREET_FALLBACK:
            sibling = self._sibling_street(p, zip5)
            if sibling is not None:
                return sibling
        if not cands:
            # same name with another type/direction: a different street, say which exist
            others = [self.ref.street_keys[i] for i in self.ref.name_to_ids.get(p.street.name, [])][:3]
            hint = f" (only {', '.join(others)})" if others else ""
            if not others and self._known_street(p.street):
                return _miss(f"no located point of {p.street.key} in the reference (the reference files "
                             "name it, so no similar name is taken instead)")
            return _miss(f"no such street in the reference: {p.street.key}{hint}")
        if p.kind == "street":
            return self._street_only(cands, zip5)
        number = float(p.number)  # type: ignore[arg-type]
        if p.kind == "block":
            base = (int(number) // 100) * 100
            target = base + 50.0
            # the block's middle on the range scale (halfway between H00 and the next H00)
            hit = self._on_streets(cands, target, zip5, exact_ok=False, pos=target)
            if hit.match_type in ("unmatched", "street"):
                return hit
            return _Hit(hit.x, hit.y, "block", round(hit.score * 0.95, 3),
                        hit.matched, f"middle of the {base} block; {hit.reason}")
        return self._on_streets(cands, number, zip5, exact_ok=True)

    def _sibling_street(self, p: ParsedAddress, zip5: int) -> _Hit | None:
        """Place a number on a same-named street of another type (``street``, low score).

        ``AUTUMN BENT WAY`` absent from the reference while ``AUTUMN BENT CT`` is known: in a
        subdivision the two usually meet, so the number on the known one is a street-level
        answer, not a miss. Only with the same ZIP when a ZIP is given (else only when the
        name is unique); interpolated within the sibling's known numbers, or at its nearest known
        number when at most `settings.GEOCODE_SIBLING_MAX_GAP_NUMBERS` away; else None.
        """
        assert p.street is not None and p.number is not None
        st = p.street
        # opposite directions (E/W X ST) number away from a common baseline: 1500 E is not near 1500 W
        ids = [s for s in self.ref.name_to_ids.get(st.name, [])
               if not _conflict(st.predir, self.ref.street_parts[s].predir)
               and not _conflict(st.postdir, self.ref.street_parts[s].postdir)]
        if zip5:
            ids = [s for s in ids if (self.ref.pt_zip[self._street_points(s)] == zip5).any()]
        elif len(ids) != 1:
            return None
        if not ids:
            return None
        number = float(p.number)
        pos = None
        if p.kind == "block":
            number = pos = (int(number) // 100) * 100 + 50.0
        # within the sibling's known numbers only, or next to them: extrapolating along another
        # street is what went wrong in the hold-out (median 350-900 m), the nearest point is not
        best: tuple[float, int] | None = None
        for sid in ids:
            nums = self.ref.pt_number[self._street_points(sid)]
            gap = 0.0 if nums[0] <= number <= nums[-1] else float(min(abs(number - nums[0]), abs(number - nums[-1])))
            if gap <= settings.GEOCODE_SIBLING_MAX_GAP_NUMBERS and (best is None or gap < best[0]):
                best = (gap, sid)
        if best is None:
            return None
        gap, sid = best
        if gap == 0:
            hit = self._on_street(sid, number, zip5, exact_ok=False, pos=pos)
            if hit.match_type == "unmatched":
                return None
            x, y, how = hit.x, hit.y, hit.reason
        else:
            sl = self._street_points(sid)
            nums = self.ref.pt_number[sl]
            edge = nums[0] if number < nums[0] else nums[-1]
            at = nums == edge
            x, y = float(self.ref.pt_x[sl][at].mean()), float(self.ref.pt_y[sl][at].mean())
            how = f"placed at its nearest known number {int(edge)}"
        key = self.ref.street_keys[sid]
        score = round(0.9 * settings.GEOCODE_SIBLING_STREET_SCORE * (1.0 if gap == 0 else 0.8), 3)
        return _Hit(x, y, "street", score, f"{int(number)} {key}",
                    f"no {p.street.key} in the reference: placed on the same-named {key}"
                    f"{' (same ZIP)' if zip5 else ''}; {how}")

    # --- streets ----------------------------------------------------------------------
    def _fuzzy_name(self, name: str) -> str | None:
        """The reference name within a small edit distance of `name` (None when none or a tie)."""
        if name in self._fuzzy:
            return self._fuzzy[name]
        if self._deletes is None:
            # symmetric-delete index (as in SymSpell): every name under its one-letter deletions
            self._deletes = {}
            self._nospace = {}
            for nm in self.ref.name_to_ids:
                self._nospace.setdefault(nm.replace(" ", ""), nm)
                if len(nm) >= 4:
                    for d in {nm, *_deletions(nm)}:
                        self._deletes.setdefault(d, set()).add(nm)
        found = self._nospace.get(name.replace(" ", ""))
        if found is None and len(name) >= 4:
            max_dist = 1 if len(name) < 7 else 2
            cands: set[str] = set()
            for d in {name, *_deletions(name)}:
                cands |= self._deletes.get(d, set())
            # rank by distance, then a shared first letter (typos rarely hit the first letter)
            scored = sorted((_levenshtein(name, c, max_dist), c[0] != name[0], c) for c in cands)
            scored = [sc for sc in scored if sc[0] <= max_dist]
            if scored and (len(scored) == 1 or scored[0][:2] < scored[1][:2]):
                found = scored[0][2]
        self._fuzzy[name] = found
        return found

    def _candidates(self, st: Street, allow_dir_conflict: bool) -> list[tuple[int, float]]:
        ref = self.ref
        name = st.name[: -len(" RAMP")] if st.name.endswith(" RAMP") else st.name
        ids = ref.name_to_ids.get(name)
        fuzzy = 1.0
        if st.stype and (not ids or allow_dir_conflict):
            # "FERN VALLEY" / "LAKE FOREST": the type word may be part of the name
            whole = parse_street(f"{name} {TYPE_WORDS.get(st.stype, st.stype)}")
            alt = ref.name_to_ids.get(f"{name} {TYPE_WORDS.get(st.stype, st.stype)}") or (
                ref.name_to_ids.get(whole.name) if whole.name != name else None)
            if alt and not ids:
                return [(sid, 0.9) for sid in alt]
            if alt and ids and not any(ref.street_parts[s].stype == st.stype for s in ids):
                return [(sid, 0.9) for sid in alt]
            if alt and ids:  # intersections: both readings; the crossing's support decides
                return self._filter(st, ids, 1.0, allow_dir_conflict) + [(sid, 0.9) for sid in alt]
        if not ids:
            if self._known_street(st):
                # a real street without points here: another existing name one letter away is
                # another street, not a typo (MARCH BLVD is not MARCY)
                return []
            alt = self._fuzzy_name(st.name)
            if alt is None:
                return []
            ids, fuzzy = ref.name_to_ids[alt], FUZZY_PENALTY
        return self._filter(st, ids, fuzzy, allow_dir_conflict)

    def _known_street(self, st: Street) -> bool:
        """True when the reference files name this street (with its type, or any type when the
        query states none), located or not (`Reference.known_streets`)."""
        known = getattr(self.ref, "known_streets", frozenset())
        if st.stype:
            return f"{st.name}|{st.stype}" in known
        if self._known_names is None:
            self._known_names = frozenset(k.partition("|")[0] for k in known)
        return st.name in self._known_names

    def _filter(self, st: Street, ids: list[int], fuzzy: float,
                allow_dir_conflict: bool) -> list[tuple[int, float]]:
        """Candidates whose direction/type agree with `st` (conflicts only when nothing agrees)."""
        ref = self.ref
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
            elif fuzzy < 1.0:
                continue  # a guessed name must agree on type and direction ("DYER AVE" != "DEER LN")
            elif allow_dir_conflict:  # intersections and street-only; never for house numbers
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
                    exact_ok: bool, pos: float | None = None) -> _Hit:
        """Place `number` (at range-scale position `pos`, default from the number) on the best street."""
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
        found: list[tuple[_Hit, float]] = []
        for far, *_, sid, pen in scored[:3]:
            if found and (self._beat is None or far != scored[0][0]):
                break
            hit = self._on_street(sid, number, zip5, exact_ok, pos)
            if hit.match_type != "unmatched":
                found.append((hit, pen))
            tried_reason = tried_reason or hit.reason
        if not found:
            return _miss(tried_reason)
        # same-named streets in different places: the one in the record's beat, else the usual order
        inside = [f for f in found if self._in_beat(f[0].x, f[0].y)[0]] if self._beat is not None else []
        hit, pen = inside[0] if inside else found[0]
        reason = hit.reason + ("; the street in the record's beat" if inside and hit is not found[0][0] else "")
        return _Hit(hit.x, hit.y, hit.match_type, round(hit.score * pen, 3), hit.matched, reason)

    def _on_street(self, sid: int, number: float, zip5: int, exact_ok: bool,
                   pos: float | None = None) -> _Hit:
        """Place `number` on street `sid`: exact, interpolated, extrapolated or at its nearest point.

        Interpolation and extrapolation run on the range scale (`_pos`): a house number is
        first mapped through the learned block curve, as are the street's address points,
        so rooftops and Census points (block starts) mix consistently. `pos` overrides the
        query's position (a hundred-block's middle).
        """
        ref = self.ref
        sl = self._street_points(sid)
        nums, xs, ys = ref.pt_number[sl], ref.pt_x[sl], ref.pt_y[sl]
        src, par, zips, pp = ref.pt_src[sl], ref.pt_parity[sl], ref.pt_zip[sl], self._pos[sl]
        key = ref.street_keys[sid]
        label = f"{int(number)} {key}"
        if self._beat is not None and nums.size > 1:
            keep = self._beat_pieces(xs, ys, nums)
            if keep is not None:
                bn = nums[keep]
                if bn[0] - MAX_EXTRAPOLATION_NUMBERS / 2 <= number <= bn[-1] + MAX_EXTRAPOLATION_NUMBERS / 2:
                    nums, xs, ys, src, par, zips, pp = (nums[keep], xs[keep], ys[keep], src[keep],
                                                        par[keep], zips[keep], pp[keep])
        if zip5:
            # Same-named streets in different places: keep this ZIP's points when they cover
            # the number (ZIP lines often run down the street itself, so not otherwise).
            inzip = zips == zip5
            if inzip.any() and not inzip.all():
                zn = nums[inzip]
                if zn[0] - MAX_EXTRAPOLATION_NUMBERS / 2 <= number <= zn[-1] + MAX_EXTRAPOLATION_NUMBERS / 2:
                    nums, xs, ys, src, par, pp = (nums[inzip], xs[inzip], ys[inzip], src[inzip],
                                                  par[inzip], pp[inzip])
        if exact_ok:
            lo_i, hi_i = np.searchsorted(nums, number), np.searchsorted(nums, number, side="right")
            same = np.arange(lo_i, hi_i)[src[lo_i:hi_i] != SRC_CENTERLINE]
            if same.size:
                # an address point beats a Census point (itself interpolated along TIGER)
                rooftop = same[src[same] == SRC_POINT]
                if rooftop.size:
                    same, score, how = rooftop, 1.0, "known address point"
                else:
                    score, how = 0.9, "known point from the Census geocoder results"
                return _Hit(float(xs[same].sum() / same.size), float(ys[same].sum() / same.size),
                            "exact", score, label, how)
        q = float(block_position(number, self._curve)) if pos is None else float(pos)
        if pp.size > 1 and (np.diff(pp) < 0).any():  # a Census H50 among rooftops H00-H99
            o = np.argsort(pp, kind="stable")
            nums, xs, ys, src, par, pp = nums[o], xs[o], ys[o], src[o], par[o], pp[o]
        parity = int(number) % 2
        for side_only in (True, False):
            m = par == parity if side_only else np.ones(nums.size, bool)
            if not m.any():
                continue
            n_, p_, x_, y_, s_ = nums[m], pp[m], xs[m], ys[m], src[m]
            hi = int(np.searchsorted(p_, q, side="right"))
            lo = hi - 1
            if lo >= 0 and hi < p_.size and p_[lo] <= q <= p_[hi]:
                span = p_[hi] - p_[lo]
                if side_only and span > SIDE_SPAN_FACTOR * _any_side_span(pp, q) + 50:
                    continue  # both sides together have much closer neighbours
                t = 0.0 if span == 0 else (q - p_[lo]) / span
                gap_ft = float(np.hypot(x_[hi] - x_[lo], y_[hi] - y_[lo]))
                if gap_ft > max(STREET_BREAK_FT, 40.0 * span):
                    # the neighbours lie on separate pieces of a same-named street
                    k = lo if q - p_[lo] <= p_[hi] - q else hi
                    return _Hit(float(x_[k]), float(y_[k]), "interpolated", 0.5, label,
                                f"placed at the nearest known number {int(n_[k])} (neighbours far apart)")
                x = x_[lo] + t * (x_[hi] - x_[lo])
                y = y_[lo] + t * (y_[hi] - y_[lo])
                # how far the estimate stands off the range line: its endpoints' expected offsets
                implied = (1 - t) * self._point_offset(sid, s_[lo], n_[lo]) + t * self._point_offset(sid, s_[hi], n_[hi])
                if side_only:
                    hi2 = int(np.searchsorted(pp, q, side="right"))
                    lo2 = hi2 - 1
                    # (not along centerlines: both sides' vertices lie on the same line)
                    if lo2 >= 0 and hi2 < pp.size and SRC_CENTERLINE not in (src[lo2], src[hi2]):
                        span2 = pp[hi2] - pp[lo2]
                        apart_ft = float(np.hypot(xs[hi2] - xs[lo2], ys[hi2] - ys[lo2]))
                        if span2 < span and apart_ft <= max(STREET_BREAK_FT, 40.0 * span2):
                            t2 = 0.0 if span2 == 0 else (q - pp[lo2]) / span2
                            x2 = xs[lo2] + t2 * (xs[hi2] - xs[lo2])
                            y2 = ys[lo2] + t2 * (ys[hi2] - ys[lo2])
                            w1, w2 = 1.0 / (span + 10.0), OTHER_SIDE_WEIGHT / (span2 + 10.0)
                            x, y = (w1 * x + w2 * x2) / (w1 + w2), (w1 * y + w2 * y2) / (w1 + w2)
                            implied2 = ((1 - t2) * self._point_offset(sid, src[lo2], nums[lo2])
                                        + t2 * self._point_offset(sid, src[hi2], nums[hi2]))
                            implied = (w1 * implied + w2 * implied2) / (w1 + w2)
                if settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT > 0 and span >= settings.GEOCODE_ALIGN_MIN_SPAN:
                    x, y = self._align_interpolation(sid, x_[lo], y_[lo], x_[hi], y_[hi], q, x, y)
                x, y = self._to_side(sid, number, pos, implied, x_[hi] - x_[lo], y_[hi] - y_[lo], x, y)
                score = 0.9 if span <= 200 else 0.85 if span <= 1000 else 0.75
                if not side_only:
                    score -= 0.05
                return _Hit(float(x), float(y), "interpolated", score, label,
                            f"interpolated between {int(n_[lo])} and {int(n_[hi])}")
        # beyond the known range: extrapolate a little along the street's end
        below = q < pp[0]
        edge = 0 if below else pp.size - 1
        if number < nums.min() - MAX_EXTRAPOLATION_NUMBERS or number > nums.max() + MAX_EXTRAPOLATION_NUMBERS:
            return _miss(f"number far outside the street's known range "
                         f"({int(nums.min())}-{int(nums.max())} {key})")
        gap = abs(q - pp[edge])
        ex, ey = float(xs[edge]), float(ys[edge])
        n_past = abs(int(number) - int(nums[edge]))
        past = f"{n_past} numbers"
        # extrapolation goes no farther than the cap (numbers, then feet); a number beyond it
        # is a `street` match at the cap, not a house on the street
        cap_n = settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS
        cap_ft = settings.GEOCODE_EXTRAPOLATION_CAP_FT
        beyond = f"{n_past} numbers" if n_past > cap_n else ""
        if beyond:
            gap *= cap_n / n_past
        # the way numbers run on nearby parallel streets first: better than the street's own
        # chord to a farther point (hold-out: extrapolated medians 68 -> 58 m, 97 -> 72 m)
        local = None
        if settings.GEOCODE_LOCAL_NUMBERING and gap > 0:
            local = self._local_numbering(sid, ex, ey, float(pp[edge]))
        if local is not None:
            ux, uy, ft_per_n, n_streets, agree = local
            # shortened by the directions' agreement (mean resultant length, the expected cosine
            # between the mean direction and the true one): where the neighbours disagree the
            # number's expected position lies nearer the known end (hold-out: Census medians
            # 58.3/61.6/61.4 -> 57.5/61.2/61.1 m, p90 no worse)
            step = gap * ft_per_n * (-1.0 if below else 1.0)
            if settings.GEOCODE_LOCAL_NUMBERING_SHRINK:
                step *= agree
            if abs(step) > cap_ft:
                beyond = beyond or f"{abs(step):,.0f} ft"
                step = float(np.clip(step, -cap_ft, cap_ft))
            elif not beyond:
                # where parallel streets carry the number itself, when that roughly agrees with
                # the step (hold-out: Census medians 60.4/64.4/64.9 -> 59.3/62.7/62.8 m)
                lo_f, hi_f = settings.GEOCODE_ALIGN_STEP_RANGE
                aligned = self._aligned_along(sid, ex, ey, ux, uy, q, ex + ux * step, ey + uy * step)
                if aligned is not None and aligned * step > 0 and lo_f * abs(step) <= abs(aligned) <= hi_f * abs(step):
                    step = float(np.clip(aligned, -cap_ft, cap_ft))
            px, py = self._to_side(sid, number, pos, self._point_offset(sid, src[edge], nums[edge]),
                                   ux, uy, ex + ux * step, ey + uy * step)
            if beyond:
                return self._past_cap(px, py, key, number, nums[edge], beyond)
            return _Hit(px, py, "interpolated", 0.55, label,
                        f"extrapolated {past} from {int(nums[edge])} the way numbers run on "
                        f"{n_streets} nearby streets")
        far = np.flatnonzero(np.abs(pp - pp[edge]) >= 40)
        if far.size:
            j = far[0] if below else far[-1]
            dn = abs(pp[j] - pp[edge])
            dx, dy = ex - xs[j], ey - ys[j]
            dist = float(np.hypot(dx, dy))
            if dist > 0:
                ft_per_n = min(dist / dn, 4 * FT_PER_NUMBER_DEFAULT)
                step = gap * ft_per_n
                if step > cap_ft:
                    beyond = beyond or f"{step:,.0f} ft"
                    step = cap_ft
                sgn = -1.0 if below else 1.0  # (dx, dy) points away from the known numbers
                px, py = self._to_side(sid, number, pos, self._point_offset(sid, src[edge], nums[edge]),
                                       sgn * dx, sgn * dy, ex + dx / dist * step, ey + dy / dist * step)
                if beyond:
                    return self._past_cap(float(px), float(py), key, number, nums[edge], beyond)
                return _Hit(float(px), float(py), "interpolated",
                            0.6, label, f"extrapolated {past} past {int(nums[edge])}")
        if beyond:
            return self._past_cap(ex, ey, key, number, nums[edge], beyond)
        return _Hit(ex, ey, "interpolated", 0.5, label,
                    f"placed at the nearest known number {int(nums[edge])}")

    def _past_cap(self, x: float, y: float, key: str, number: float, edge: float, how_far: str) -> _Hit:
        """A number beyond the extrapolation cap: the street is known, the house is not
        (``street``, placed no farther than the cap past the last known number, with the reason)."""
        return _Hit(x, y, "street", 0.3, f"{int(number)} {key}",
                    f"{int(number)} lies {how_far} past the last known number {int(edge)} of {key}, beyond "
                    f"the extrapolation cap ({settings.GEOCODE_EXTRAPOLATION_CAP_NUMBERS} numbers, "
                    f"{settings.GEOCODE_EXTRAPOLATION_CAP_FT:,.0f} ft): street only, placed at the cap")

    def _beat_pieces(self, xs: np.ndarray, ys: np.ndarray, nums: np.ndarray) -> np.ndarray | None:
        """Points of the pieces of a same-named street that touch the record's beat.

        A street name's points split into pieces where consecutive numbers lie farther apart
        than the numbers explain (`STREET_BREAK_FT`): same-named streets in different places.
        Returns a mask of the points of the pieces with a point inside the beat, or None when
        every piece or none touches it (nothing to choose).
        """
        step = np.hypot(np.diff(xs), np.diff(ys))
        breaks = np.flatnonzero(step > np.maximum(STREET_BREAK_FT, 40.0 * np.diff(nums))) + 1
        if breaks.size == 0:
            return None
        piece = np.zeros(nums.size, np.int64)
        piece[breaks] = 1
        piece = np.cumsum(piece)
        inside = self._in_beat(xs, ys)
        touching = np.unique(piece[inside])
        if touching.size == 0 or touching.size == piece.max() + 1:
            return None
        keep = np.isin(piece, touching)
        # pieces are runs in number order: two places interleave, so a place is every run near it
        return keep

    def _side_model(self) -> Any:
        """The side-of-street model (`learn_side_model`), learned on first need; None without one."""
        if self._side is None:
            ref = self.ref
            self._side = learn_side_model(ref.pt_street, ref.pt_number, ref.pt_x, ref.pt_y, ref.pt_src) or False
        return self._side or None

    def _point_offset(self, sid: int, src: int, number: float) -> float:
        """Expected offset of a known point from the range line (left of higher numbers is +).

        Census and centerline points lie on the range line (0), as do hundreds (block starts);
        a rooftop stands on its number's side (`SideModel.signed_offset_ft`).
        """
        if not settings.GEOCODE_SIDE_OFFSET or src != SRC_POINT or int(number) % 100 == 0:
            return 0.0
        model = self._side_model()
        return 0.0 if model is None else model.signed_offset_ft(sid, int(number))

    def _to_side(self, sid: int, number: float, pos: float | None, implied_ft: float,
                 dx: float, dy: float, x: float, y: float) -> tuple[float, float]:
        """Move (x, y) across the street to where `number` is expected to stand.

        (dx, dy) points toward higher numbers; `implied_ft` is how far (x, y) already stands
        off the range line (from the points it was interpolated or extrapolated from). A house
        number belongs on its side (`SideModel`); a hundred (``2700 W MADISON ST``, a block
        start) and a hundred-block's middle (`pos` given) on the range line. Hold-out (seeds
        20180801/1/2): address-point medians 53.2/52.7/52.4 -> 50.2/49.9/50.4 m, Census
        57.5/61.2/61.1 -> 57.1/60.4/60.0 m.
        """
        if not settings.GEOCODE_SIDE_OFFSET or self._side_model() is None:
            return x, y
        length = float(np.hypot(dx, dy))
        if length <= 0:
            return x, y
        target = 0.0 if pos is not None else self._point_offset(sid, SRC_POINT, number)
        shift = target - implied_ft
        # left of the way numbers increase: (dx, dy) turned 90 degrees anticlockwise
        return x - shift * dy / length, y + shift * dx / length

    def _align_interpolation(self, sid: int, x0: float, y0: float, x1: float, y1: float, q: float,
                             x: float, y: float) -> tuple[float, float]:
        """Move an interpolated point along its bracket toward where parallel streets carry `q`.

        Linear interpolation between two known numbers far apart assumes evenly long blocks; on
        Louisville's county grid the parallel streets nearby show where number `q` (range scale)
        actually falls (`_aligned_along`). When that lies within the bracket (x0, y0) -> (x1, y1),
        the point's position along the bracket becomes the weighted mean of the two estimates
        (weight `settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT` for the parallel streets); its
        offset across the bracket (side of the street, blend with the other side) is kept.
        Hold-out (seeds 20180801/1/2): medians address points 53.5/53.3/53.2 -> 53.3/52.7/52.4 m,
        Census 59.3/62.7/62.8 -> 58.2/61.8/61.5 m, p90 unchanged.
        """
        length = float(np.hypot(x1 - x0, y1 - y0))
        if length <= 0:
            return x, y
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        aligned = self._aligned_along(sid, x0, y0, ux, uy, q, x, y)
        if aligned is None or not 0.0 <= aligned <= length:
            return x, y
        cur = (x - x0) * ux + (y - y0) * uy
        shift = settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT * (aligned - cur)
        return x + shift * ux, y + shift * uy

    def _local_numbering(self, sid: int, ex: float, ey: float,
                         pe: float) -> tuple[float, float, float, int, float] | None:
        """Which way, and how fast, numbers run at (ex, ey) on a street that cannot tell itself.

        Louisville numbers on a county grid: parallel streets carry about the same numbers at
        the same cross-street. Every street with two points at least 40 numbers apart (on the
        range scale) gives a local gradient: a direction toward higher numbers and feet per
        number. A nearby street (within `settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT`) whose
        numbering, carried across to (ex, ey), gives this street's number `pe` within
        `settings.GEOCODE_LOCAL_NUMBERING_TOLERANCE` runs parallel to it; the weighted mean
        direction and weighted median feet per number of those streets are returned, with how many
        streets agreed and how well their directions agree (length of the weighted mean of their
        unit vectors, 0-1). None when fewer than `settings.GEOCODE_LOCAL_NUMBERING_MIN_STREETS` agree
        or their directions disagree (`settings.GEOCODE_LOCAL_NUMBERING_MIN_AGREEMENT`).
        """
        near = self._other_streets_pairs(sid, ex, ey, settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT)
        if near is None:
            return None
        (_, gx, gy, gp, gux, guy, gft, gst, _), idx = near
        # the neighbour's number at the foot of (ex, ey) on its own line
        along = (ex - gx[idx]) * gux[idx] + (ey - gy[idx]) * guy[idx]
        resid = np.abs(gp[idx] + along / gft[idx] - pe)
        keep = resid <= settings.GEOCODE_LOCAL_NUMBERING_TOLERANCE
        if not keep.any():
            return None
        idx, resid = idx[keep], resid[keep]
        streets = np.unique(gst[idx])
        if streets.size < settings.GEOCODE_LOCAL_NUMBERING_MIN_STREETS:
            return None
        dist = np.hypot(gx[idx] - ex, gy[idx] - ey)
        w = 1.0 / ((1.0 + dist / 500.0) * (1.0 + resid / 25.0))
        w = _once_per_street(w, gst[idx])
        vx, vy = float((w * gux[idx]).sum()), float((w * guy[idx]).sum())
        agree = np.hypot(vx, vy) / float(w.sum())
        if agree < settings.GEOCODE_LOCAL_NUMBERING_MIN_AGREEMENT:
            return None
        norm = np.hypot(vx, vy)
        # feet per number: the median weighted like the direction (closer, better-agreeing
        # streets count more; hold-out: Census medians 61.6/64.9/65.6 -> 60.4/64.4/64.9 m)
        ft_per_n = _weighted_median(gft[idx], w)
        return vx / norm, vy / norm, min(ft_per_n, 4 * FT_PER_NUMBER_DEFAULT), int(streets.size), float(agree)

    def _aligned_along(self, sid: int, ex: float, ey: float, ux: float, uy: float, q: float,
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
        (_, gx, gy, gp, gux, guy, gft, gst, gdn), idx = near
        idx = idx[(gp[idx] <= q) & (gp[idx] + gdn[idx] >= q)
                  & (gux[idx] * ux + guy[idx] * uy >= settings.GEOCODE_ALIGN_MIN_COS)]
        if idx.size == 0:
            return None
        run = (q - gp[idx]) * gft[idx]
        px, py = gx[idx] + run * gux[idx], gy[idx] + run * guy[idx]
        along = (px - ex) * ux + (py - ey) * uy
        perp = np.abs((px - ex) * uy - (py - ey) * ux)
        w = 1.0 / (1.0 + perp / 500.0)
        return _weighted_median(along, _once_per_street(w, gst[idx]))

    def _other_streets_pairs(self, sid: int, x: float, y: float, radius_ft: float) -> tuple[Any, np.ndarray] | None:
        """`_gradients` and the indexes of its point pairs within `radius_ft` of (x, y) that
        belong to streets other than `sid`; None when there are no gradients or no such pair."""
        g = self._gradients()
        if g is None:
            return None
        grid, gst = g[0], g[7]
        idx = grid.query_ball_point((x, y), radius_ft)
        if idx.size == 0:
            return None
        return g, idx[gst[idx] != sid]

    def _gradients(self) -> Any:
        """Point pairs 40-400 numbers apart on one street: position, number, direction, ft/number."""
        if self._grad is None:
            from geo_lead.geocode.grid_index import GridIndex

            ref = self.ref
            st, pos, x, y = ref.pt_street, self._pos, ref.pt_x, ref.pt_y
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
                self._grad = False
                return None
            cell_ft = max(settings.GEOCODE_ALIGN_RADIUS_FT, settings.GEOCODE_LOCAL_NUMBERING_RADIUS_FT)
            self._grad = (GridIndex(np.column_stack([x[i], y[i]]), cell_ft), x[i], y[i], pos[i],
                          dx / dist, dy / dist, dist / dn, st[i], dn)
        return self._grad or None

    # --- intersections ----------------------------------------------------------------
    def _intersection(self, a: Street, b: Street, zip5: int) -> _Hit:
        label = f"{a.key} / {b.key}"
        got: list[list[tuple[int, float]]] = []

        def candidates() -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
            if not got:  # once, and only when needed (a single table entry needs none)
                got.extend([self._candidates(a, allow_dir_conflict=True) if not a.is_interstate else [],
                            self._candidates(b, allow_dir_conflict=True) if not b.is_interstate else []])
            return got[0], got[1]

        table = self._table_lookup(a, b, candidates, zip5)
        if a.is_interstate or b.is_interstate:
            if table is not None:
                return _Hit(table[0], table[1], "intersection", 0.7, label,
                            "interchange from the intersection table" + table[2])
            return _miss("interstate or ramp: no interstate geometry in the reference")
        if table is not None:
            return _Hit(table[0], table[1], "intersection", 0.95, label, "intersection table" + table[2])
        ca, cb = candidates()
        est = None
        if ca and cb:
            # a name that begins with a direction word (SOUTH PARK RD, NORTH BEND RD) reads as
            # direction + name; where the reference has that very street, it alone is meant,
            # not a same-named street without the direction (PARK RD)
            ea = self._exact(a, ca)
            eb = self._exact(b, cb)
            if ea is not None or eb is not None:
                est = self._estimate_crossing([s for s, _ in (ea or ca)], [s for s, _ in (eb or cb)], zip5)
            if est is None:
                est = self._estimate_crossing([s for s, _ in ca], [s for s, _ in cb], zip5)
        if est is None or est[2] < 0.8:
            # no direct crossing in the reference: the numbered-street grid, when it applies,
            # is better than an extended or closest-approach estimate (hold-out: 7 m median)
            grid = self._grid_crossing(a, b, ca, cb)
            if grid is not None:
                return grid
        if not ca or not cb:
            missing = a.key if not ca else b.key
            return _miss(f"no such street in the reference: {missing}")
        pen = max(p for _, p in ca) * max(p for _, p in cb)
        if est is None:
            return _miss("the two streets do not meet in the reference")
        x, y, score, how = est
        ka = self.ref.street_keys[max(ca, key=lambda c: c[1])[0]]
        kb = self.ref.street_keys[max(cb, key=lambda c: c[1])[0]]
        return _Hit(x, y, "intersection", round(score * pen, 3), f"{ka} / {kb}", how)

    def _grid_crossing(self, a: Street, b: Street, ca: list[tuple[int, float]],
                       cb: list[tuple[int, float]]) -> _Hit | None:
        """Louisville's numbered-street grid: ``NTH ST`` crosses a W street at number N x 100.

        West of downtown the numbered streets (1st-45th) mark the hundred-blocks of the
        east-west streets (``3100 W MADISON ST`` is at 31st Street). Checked against the
        signalized-intersection table (median error 7 m on 186 crossings with W streets). Used
        when the reference shows no direct crossing, only when the number lies within two
        blocks of the other street's known range, and, for streets without a W prefix, only
        when the numbered street's own points pass within `GRID_CHECK_FT` of the result.
        """
        if not settings.GEOCODE_NUMBERED_STREET_GRID:
            return None
        import shapely

        for num_st, other, c_num, c_other in ((a, b, ca, cb), (b, a, cb, ca)):
            m = _ORDINAL_NAME.match(num_st.name)
            if not m or _ORDINAL_NAME.match(other.name) or num_st.stype not in ("", "ST"):
                continue
            number = float(int(m.group(1)) * 100)
            ranked = sorted(c_other, key=lambda c: self.ref.street_parts[c[0]].predir != "W")
            for sid, pen in ranked:
                part = self.ref.street_parts[sid]
                if part.predir not in ("W", "") or (other.predir and other.predir != part.predir):
                    continue
                nums = self.ref.pt_number[self._street_points(sid)]
                if not nums[0] - 200 <= number <= nums[-1] + 200:  # two blocks past the known end at most
                    continue
                hit = self._on_street(sid, number, 0, exact_ok=True)
                if hit.match_type == "unmatched" or "far apart" in hit.reason:
                    continue
                near = np.inf
                if c_num and part.predir != "W":
                    geoms = [g for s, _ in c_num for g in self._geometry(s)[0]]
                    near = float(shapely.GeometryCollection(geoms).distance(shapely.Point(hit.x, hit.y)))
                # W streets: the grid holds on its own (table check: 186 crossings, median 7 m,
                # worst 329 m); others only when the numbered street's points confirm it
                if part.predir == "W" or near <= GRID_CHECK_FT:
                    num_key = self.ref.street_keys[c_num[0][0]] if c_num else num_st.key
                    return _Hit(hit.x, hit.y, "intersection", round(min(0.9, hit.score) * pen, 3),
                                f"{num_key} / {self.ref.street_keys[sid]}",
                                f"numbered-street grid: {int(number)} {self.ref.street_keys[sid]}; {hit.reason}")
        return None

    def _exact(self, st: Street, cands: list[tuple[int, float]]) -> list[tuple[int, float]] | None:
        """The candidates whose key is the query's own, when the query states a direction and
        other candidates lack it (None otherwise: nothing to prefer)."""
        if not (st.predir or st.postdir):
            return None
        exact = [c for c in cands if self.ref.street_keys[c[0]] == st.key]
        return exact if exact and len(exact) < len(cands) else None

    def _table_lookup(self, a: Street, b: Street, candidates: Any,
                      zip5: int) -> tuple[float, float, str] | None:
        """The intersection-table entry meant by ``a / b``: (x, y, note), None when none fits.

        Tables name streets without type, ZIP or place, and hold duplicates (two signals at two
        crossings of the same pair). An entry is taken only when the type its source stated does
        not contradict the query's (SOUTHERN HEIGHTS is not SOUTHERN PKWY) and no same-named
        street of another type lies nearer it than the query's own (TYLER at Bardstown Road is
        TYLER LN, not TYLER PKWY: `_names_other_type`). (A plain distance cap would reject good
        entries: the sampled reference often knows only part of a street.) Entries within 1500 ft
        form one place; of several places, the one in the record's beat wins, then one whose
        nearby reference points carry the ZIP, then the one nearest both streets (`candidates()`
        gives the two streets' candidates, computed only then).
        """
        table = self.ref.intersections
        if not table:
            return None
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
                    ta, tb = (types + ["", ""])[:2] if na < nb else (types + ["", ""])[1::-1]
                    if not (_conflict(qa, ta) or _conflict(qb, tb)):
                        found.append((float(x), float(y)))
        if not found:
            return None
        arr = np.unique(np.asarray(found), axis=0)
        spots: list[tuple[float, float]] = []
        left = np.ones(len(arr), bool)
        while left.any():
            first = arr[np.flatnonzero(left)[0]]
            near = left & (np.hypot(arr[:, 0] - first[0], arr[:, 1] - first[1]) <= 1500)
            left &= ~near
            x, y = float(arr[near, 0].mean()), float(arr[near, 1].mean())
            if not (self._names_other_type(a, x, y) or self._names_other_type(b, x, y)):
                spots.append((x, y))
        if not spots:
            return None
        if len(spots) == 1:
            return spots[0][0], spots[0][1], ""
        ca, cb = candidates()
        places: list[tuple[bool, bool, float, float, float]] = []
        for x, y in spots:
            off = max(self._distance_to(a, ca, x, y), self._distance_to(b, cb, x, y))
            in_beat = self._beat is not None and bool(self._in_beat(x, y)[0])
            has_zip = bool(zip5) and (self._zip_near(ca, x, y, zip5) or self._zip_near(cb, x, y, zip5))
            places.append((not in_beat, not has_zip, off, x, y))
        places.sort()
        best = places[0]
        note = ""
        if len(places) > 1:
            why = "the record's beat" if not best[0] else "the ZIP" if not best[1] else "nearest both streets"
            note = f" (one of {len(places)} entries with these names: {why})"
        return best[3], best[4], note

    def _distance_to(self, st: Street, cands: list[tuple[int, float]], x: float, y: float) -> float:
        """Distance (ft) from (x, y) to the reference geometry of the candidates of the query's
        own type (any type when it states none); 0 when they have fewer than 5 points (nothing
        to check)."""
        cands = [c for c in cands if not _conflict(st.stype, self.ref.street_parts[c[0]].stype)]
        n_points = sum(int(self.ref.offsets[s + 1] - self.ref.offsets[s]) for s, _ in cands)
        if n_points < 5:  # a point or two say nothing about where the street runs
            return 0.0
        return self._raw_distance([s for s, _ in cands], x, y)

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
        other = [i for i in ids if _conflict(st.stype, self.ref.street_parts[i].stype)]
        if not own or not other:
            return False
        d_other = self._raw_distance(other, x, y)
        return d_other <= 1000.0 and self._raw_distance(own, x, y) > 2.0 * d_other + 1000.0

    def _raw_distance(self, sids: list[int], x: float, y: float) -> float:
        """Distance (ft) from (x, y) to the streets' reference geometry (points and lines)."""
        import shapely

        key = tuple(sids)
        geom = self._collections.get(key)
        if geom is None:
            geom = self._collections[key] = shapely.GeometryCollection(
                [g for s in sids for g in self._geometry(s)[0]])
        return float(geom.distance(shapely.Point(x, y)))

    def _zip_near(self, cands: list[tuple[int, float]], x: float, y: float, zip5: int) -> bool:
        """Whether a reference point of the candidates within 2000 ft of (x, y) carries the ZIP."""
        for sid, _ in cands:
            sl = self._street_points(sid)
            near = np.hypot(self.ref.pt_x[sl] - x, self.ref.pt_y[sl] - y) <= 2000
            if (self.ref.pt_zip[sl][near] == zip5).any():
                return True
        return False

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
        pts = _points_of(shapely.intersection(core_a, core_b))
        if pts.size:
            x, y, ambiguous = self._choose_cluster(pts, sids_a, sids_b, zip5)
            return x, y, 0.85 * (0.9 if ambiguous else 1.0), "crossing of the two streets' reference geometry"
        ext_a = shapely.GeometryCollection([g for s in sids_a for g in self._geometry(s)[1]])
        ext_b = shapely.GeometryCollection([g for s in sids_b for g in self._geometry(s)[1]])
        pts = _points_of(shapely.intersection(ext_a, ext_b))
        pa, pb = nearest_points(core_a, core_b)
        gap = float(pa.distance(pb))
        if pts.size:
            x, y, ambiguous = self._choose_cluster(pts, sids_a, sids_b, zip5)
            # an extended end can swing past a street it merely ends at (SOUTH PARK RD ends at
            # PRESTON HWY; prolonged, it crosses it 1 km on): where the known geometries come
            # closer to each other than the extended crossing lies from them, that is the place
            stray = max(core_a.distance(shapely.Point(x, y)), core_b.distance(shapely.Point(x, y)))
            if not (gap <= INTERSECTION_MAX_GAP_FT and stray > 2.0 * gap + 500.0):
                return (x, y, 0.75 * (0.9 if ambiguous else 1.0),
                        "crossing of the two streets' reference geometry, extended past the known ends")
        if gap <= INTERSECTION_MAX_GAP_FT:
            return ((pa.x + pb.x) / 2, (pa.y + pb.y) / 2,
                    round(0.7 - 0.2 * gap / INTERSECTION_MAX_GAP_FT, 3),
                    f"midpoint of the streets' closest approach ({gap:.0f} ft apart)")
        return None

    def _choose_cluster(self, pts: np.ndarray, sids_a: list[int], sids_b: list[int],
                        zip5: int) -> tuple[float, float, bool]:
        """The crossing best supported by both streets' points (and the ZIP); ambiguous flag."""
        d0 = np.hypot(pts[:, 0] - pts[0, 0], pts[:, 1] - pts[0, 1])
        if d0.max() <= 1000:
            return float(pts[:, 0].mean()), float(pts[:, 1].mean()), False
        # two crossings of the same pair of streets: the record's beat chooses, when it can
        inside = self._in_beat(pts[:, 0], pts[:, 1])
        if inside.any() and not inside.all():
            pts = pts[inside]
            d0 = np.hypot(pts[:, 0] - pts[0, 0], pts[:, 1] - pts[0, 1])
            if d0.max() <= 1000:
                return float(pts[:, 0].mean()), float(pts[:, 1].mean()), False
        ref = self.ref
        ia = np.concatenate([np.arange(ref.offsets[s], ref.offsets[s + 1]) for s in sids_a])
        ib = np.concatenate([np.arange(ref.offsets[s], ref.offsets[s + 1]) for s in sids_b])
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
        near = np.hypot(pts[:, 0] - pts[best_k, 0], pts[:, 1] - pts[best_k, 1]) <= 1000
        return float(pts[near, 0].mean()), float(pts[near, 1].mean()), True

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


_ORDINAL_NAME = re.compile(r"^(\d{1,2})(?:ST|ND|RD|TH)$")


def _zip_text(value: object) -> str:
    """A ZIP cell as text: "40211", 40211, 40211.0 (read as a number) and "40211-1234" all work."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if np.isfinite(value) and value == int(value) else ""
    return value if isinstance(value, str) else ""


def _conflict(a: str, b: str) -> bool:
    return bool(a and b and a != b)


def _any_side_span(nums: np.ndarray, number: float) -> float:
    hi = int(np.searchsorted(nums, number, side="right"))
    if hi == 0 or hi >= nums.size:
        return np.inf
    return float(nums[hi] - nums[hi - 1])


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _levenshtein(a: str, b: str, cap: int) -> int:
    """Edit distance (insert/delete/substitute), stopping early above `cap`."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > cap:
            return cap + 1
        prev = cur
    return prev[-1]


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


def _placements(hits: list[_Hit]) -> tuple[np.ndarray, ...]:
    """Per hit: lon, lat (EPSG:4326, 7 decimals), match_type, score, matched, reason; a point
    outside Jefferson County becomes ``unmatched``."""
    ux = np.array([h.x for h in hits], float)
    uy = np.array([h.y for h in hits], float)
    ok = np.isfinite(ux) & np.isfinite(uy)
    lon = np.full(ux.size, np.nan)
    lat = np.full(ux.size, np.nan)
    if ok.any():
        lon[ok], lat[ok] = to_lonlat(ux[ok], uy[ok])
        # published at 7 decimals (about 1 cm): a consumer that rounds to that precision (the
        # zone check's answer) sees the very point it was given
        lon, lat = np.round(lon, 7), np.round(lat, 7)
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
    return lon, lat, mtype, score, matched, reason


def _assemble(addr: pd.Series, codes: np.ndarray, hits: list[_Hit]) -> pd.DataFrame:
    import pandas as pd

    lon, lat, mtype, score, matched, reason = _placements(hits)
    if len(codes) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("lon", "lat", "score") else object)
                             for c in RESULT_COLUMNS})
    return pd.DataFrame({
        "input": addr.to_numpy(object), "lon": lon[codes], "lat": lat[codes],
        "match_type": mtype[codes], "score": score[codes], "matched_address": matched[codes],
        "reason": reason[codes],
    })
