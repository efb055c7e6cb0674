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

The matcher is split by concern: `geo_lead.geocode.street_names` (candidate streets, fuzzy
names), `geo_lead.geocode.numbering` (house numbers along a street, the county grid, the side
of the street), `geo_lead.geocode.intersections` (table, crossings, numbered-street grid);
this module holds the `Geocoder` facade, which dispatches a parsed address to them and
publishes the answers. pandas only for `Geocoder.geocode` (many addresses -> a DataFrame).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_lead import settings
from geo_lead.geocode.hits import Candidate, Hit, Query, conflict, miss, street_points
from geo_lead.geocode.intersections import Intersections, StreetGeometry, StreetShapes
from geo_lead.geocode.normalize import ParsedAddress, Street, parse_address
from geo_lead.geocode.numbering import MAX_EXTRAPOLATION_NUMBERS, Numbering
from geo_lead.geocode.reference import Reference, SideModel, load_reference, to_lonlat
from geo_lead.geocode.street_names import StreetNames

if TYPE_CHECKING:  # only `Geocoder.geocode` (many addresses -> a DataFrame) needs pandas;
    import pandas as pd  # one address (`Geocoder.locate`, the zone check) needs numpy alone
    import shapely

    from geo_lead.beats import BeatIndex
    from geo_lead.progress import Progress

log = logging.getLogger(__name__)

RESULT_COLUMNS: tuple[str, ...] = ("input", "lon", "lat", "match_type", "score", "matched_address", "reason")
MATCH_TYPES: tuple[str, ...] = ("exact", "interpolated", "block", "intersection", "street", "unmatched")

#: Bump when matching or placement changes what a given address returns: stores' cached
#: results are keyed by the reference hash *and* this, so an upgrade re-geocodes them once.
MATCHER_VERSION = "matcher-3 (beat choice, typed table, capped extrapolation)"


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


@dataclass(frozen=True, slots=True)
class Placements:
    """Hits as published, aligned arrays: ``lon``, ``lat`` (EPSG:4326, 7 decimals; NaN when
    unmatched), ``match_type``, ``score``, ``matched``, ``reason``."""

    lon: np.ndarray
    lat: np.ndarray
    match_type: np.ndarray
    score: np.ndarray
    matched: np.ndarray
    reason: np.ndarray


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
                 index_dir: Path | None = None, beats: BeatIndex | None = None) -> None:
        self.ref = reference if reference is not None else load_reference(reference_files, index_dir)
        self._memo: dict[tuple[str, str, str], Hit] = {}
        # beat polygons: given, or the shipped file on first need (`_beats_read`)
        self._beats: BeatIndex | None = beats
        self._beats_read = beats is not None
        self.names = StreetNames(self.ref)
        self.numbering = Numbering(self.ref)
        self.shapes = StreetShapes(self.ref)
        self.intersections = Intersections(self.ref, self.names, self.numbering, self.shapes)

    @property
    def reference_hash(self) -> str:
        """The cache key: the reference files' hash (with `INDEX_VERSION`) and `MATCHER_VERSION`."""
        import hashlib

        return hashlib.sha256(f"{self.ref.hash}|{MATCHER_VERSION}".encode()).hexdigest()

    # --- public -----------------------------------------------------------------------
    def geocode(self, addresses: Sequence[str], zips: Sequence[str] | None = None,
                progress: Progress | None = None, beats: Sequence[str] | None = None) -> pd.DataFrame:
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
        hits: list[Hit] = []
        for u in uniques:
            a, z, b = u.rsplit("\x1f", 2)  # the address text may hold \x1f itself
            hits.append(self._geocode_one(a, z, b))
            if progress is not None:
                progress.update(1)
        return _assemble(addr, codes, hits)

    def geocode_one(self, address: str, zip_code: str = "", beat: str = "") -> dict[str, Any]:
        """One address as a dict with the `RESULT_COLUMNS` keys."""
        row: dict[str, Any] = self.geocode([address], [zip_code], beats=[beat]).iloc[0].to_dict()
        return row

    def locate(self, address: str, zip_code: str | None = "", beat: str = "") -> GeocodeResult:
        """One address, without pandas: the same answer as ``geocode([address], [zip_code],
        beats=[beat])`` gives for it (the officer's zone check takes this path)."""
        text = address if isinstance(address, str) else ""
        code = ""
        if beat:
            from geo_lead.beats import normalize_beat

            code = normalize_beat(beat)
        out = _placements([self._geocode_one(text, _zip_text(zip_code), code)])
        return GeocodeResult(address, float(out.lon[0]), float(out.lat[0]), str(out.match_type[0]),
                             float(out.score[0]), str(out.matched[0]), str(out.reason[0]))

    def match_parsed(self, parsed: ParsedAddress) -> Hit:
        """Match an already parsed address, without a beat (projected coordinates; used by the
        cache and the zone page's street index)."""
        return self._match(parsed)

    # --- matching ---------------------------------------------------------------------
    def _geocode_one(self, text: str, zip_code: str, beat: str = "") -> Hit:
        """One address, memoised by its parsed form, ZIP and (when it has a polygon) beat."""
        parsed = parse_address(text, zip_code)
        polygon = self._beat_polygon(beat)
        # a beat without a polygon (METRO) changes nothing: share the no-beat answer
        key = (f"{parsed.kind}|{parsed.normalized or parsed.reason}", parsed.zip,
               beat if polygon is not None else "")
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._match(parsed, polygon)
        return hit

    def _beat_polygon(self, code: str) -> shapely.Geometry | None:
        """The polygon (EPSG:2246) of beat `code`, None when no code, no polygon or no beat file."""
        if not code:
            return None
        if not self._beats_read:
            from geo_lead.beats import read_beat_index
            from geo_lead.errors import GeoLeadError

            self._beats_read = True
            try:
                self._beats = read_beat_index()
            except GeoLeadError as exc:
                log.warning("beats not used: %s", exc)
        return self._beats.geometry(code) if self._beats else None

    def _match(self, p: ParsedAddress, beat: shapely.Geometry | None = None) -> Hit:
        """Dispatch a parsed address: intersections, a street alone, a hundred-block or a
        house number; `beat` is the record's beat polygon (None: none)."""
        if p.kind in ("empty", "invalid", "place"):
            return miss(p.reason)
        query = Query(int(p.zip) if p.zip else 0, beat)
        if p.kind == "intersection":
            return self.intersections.match(_street(p.street), _street(p.street2), query)
        st = _street(p.street)
        if st.is_interstate:
            return miss("interstate: no interstate geometry in the reference")
        cands = self.names.candidates(st, allow_dir_conflict=p.kind == "street")
        if not cands and p.kind in ("address", "block") and settings.GEOCODE_SIBLING_STREET_FALLBACK:
            sibling = self._sibling_street(p, query)
            if sibling is not None:
                return sibling
        if not cands:
            return self._no_street(st)
        if p.kind == "street":
            return self._street_only(cands, query.zip5)
        if p.number is None:
            raise ValueError(f"a parsed {p.kind} without a number: {p!r}")
        number = float(p.number)
        if p.kind == "block":
            return self._block(cands, number, query)
        return self._on_streets(cands, number, query, exact_ok=True)

    def _no_street(self, st: Street) -> Hit:
        """Unmatched: no candidate street. Same name with another type/direction is a different
        street (say which exist); a street the reference files name is never fuzzy-replaced."""
        others = [self.ref.street_keys[i] for i in self.ref.name_to_ids.get(st.name, [])][:3]
        hint = f" (only {', '.join(others)})" if others else ""
        if not others and self.names.known_street(st):
            return miss(f"no located point of {st.key} in the reference (the reference files "
                        "name it, so no similar name is taken instead)")
        return miss(f"no such street in the reference: {st.key}{hint}")

    def _block(self, cands: list[Candidate], number: float, query: Query) -> Hit:
        """A hundred-block at its middle on the range scale (halfway between H00 and the next
        H00), score x 0.95; a ``street`` or unmatched answer as it is."""
        base = (int(number) // 100) * 100
        target = base + 50.0
        hit = self._on_streets(cands, target, query, exact_ok=False, pos=target)
        if hit.match_type in ("unmatched", "street"):
            return hit
        return Hit(hit.x, hit.y, "block", round(hit.score * 0.95, 3),
                   hit.matched, f"middle of the {base} block; {hit.reason}")

    def _sibling_street(self, p: ParsedAddress, query: Query) -> Hit | None:
        """Place a number on a same-named street of another type (``street``, low score).

        ``AUTUMN BENT WAY`` absent from the reference while ``AUTUMN BENT CT`` is known: in a
        subdivision the two usually meet, so the number on the known one is a street-level
        answer, not a miss. Only with the same ZIP when a ZIP is given (else only when the
        name is unique); interpolated within the sibling's known numbers, or at its nearest known
        number when at most `settings.GEOCODE_SIBLING_MAX_GAP_NUMBERS` away; else None.
        Extrapolating along another street is not done: the nearest known point is better.
        """
        st, zip5 = _street(p.street), query.zip5
        if p.number is None:
            raise ValueError(f"a parsed {p.kind} without a number: {p!r}")
        # opposite directions (E/W X ST) number away from a common baseline: 1500 E is not near 1500 W
        ids = [s for s in self.ref.name_to_ids.get(st.name, [])
               if not conflict(st.predir, self.ref.street_parts[s].predir)
               and not conflict(st.postdir, self.ref.street_parts[s].postdir)]
        if zip5:
            ids = [s for s in ids if (self.ref.pt_zip[street_points(self.ref, s)] == zip5).any()]
        elif len(ids) != 1:
            return None
        number = float(p.number)
        pos = None
        if p.kind == "block":
            number = pos = (int(number) // 100) * 100 + 50.0
        best = self._nearest_sibling(ids, number)
        if best is None:
            return None
        gap, sid = best
        if gap == 0:
            hit = self.numbering.on_street(sid, number, query, exact_ok=False, pos=pos)
            if hit.match_type == "unmatched":
                return None
            x, y, how = hit.x, hit.y, hit.reason
        else:
            sl = street_points(self.ref, sid)
            nums = self.ref.pt_number[sl]
            edge = nums[0] if number < nums[0] else nums[-1]
            at = nums == edge
            x, y = float(self.ref.pt_x[sl][at].mean()), float(self.ref.pt_y[sl][at].mean())
            how = f"placed at its nearest known number {int(edge)}"
        key = self.ref.street_keys[sid]
        score = round(0.9 * settings.GEOCODE_SIBLING_STREET_SCORE * (1.0 if gap == 0 else 0.8), 3)
        return Hit(x, y, "street", score, f"{int(number)} {key}",
                   f"no {st.key} in the reference: placed on the same-named {key}"
                   f"{' (same ZIP)' if zip5 else ''}; {how}")

    def _nearest_sibling(self, ids: list[int], number: float) -> tuple[float, int] | None:
        """``(gap, sid)``: the street of `ids` whose known numbers come nearest `number` (0:
        within them), when within `settings.GEOCODE_SIBLING_MAX_GAP_NUMBERS`; None otherwise."""
        best: tuple[float, int] | None = None
        for sid in ids:
            nums = self.ref.pt_number[street_points(self.ref, sid)]
            gap = 0.0 if nums[0] <= number <= nums[-1] else float(min(abs(number - nums[0]), abs(number - nums[-1])))
            if gap <= settings.GEOCODE_SIBLING_MAX_GAP_NUMBERS and (best is None or gap < best[0]):
                best = (gap, sid)
        return best

    def _street_only(self, cands: list[Candidate], zip5: int) -> Hit:
        """A street without a number: the known point nearest the centre of its known extent
        (of the ZIP's points when some carry it), score 0.3 x the best candidate's factor."""
        ref = self.ref
        idx = np.concatenate([np.arange(ref.offsets[s], ref.offsets[s + 1]) for s, _ in cands])
        if zip5 and (ref.pt_zip[idx] == zip5).any():
            idx = idx[ref.pt_zip[idx] == zip5]
        xs, ys = ref.pt_x[idx], ref.pt_y[idx]
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        k = int(np.argmin(np.hypot(xs - cx, ys - cy)))
        best = max(cands, key=lambda c: c[1])
        return Hit(float(xs[k]), float(ys[k]), "street", round(0.3 * best[1], 3),
                   ref.street_keys[best[0]], "street only: centre of its known extent")

    def _on_streets(self, cands: list[Candidate], number: float, query: Query,
                    exact_ok: bool, pos: float | None = None) -> Hit:
        """Place `number` (at range-scale position `pos`, default from the number) on the best
        candidate street: covering the number (or within the extrapolation limit), with the ZIP,
        nearest, best named, most points; of same-named streets in different places, the one in
        the record's beat. The score is the placement's x the candidate's factor."""
        ref = self.ref
        scored = []
        for sid, pen in cands:
            sl = street_points(ref, sid)
            nums = ref.pt_number[sl]
            gap = 0.0 if nums[0] <= number <= nums[-1] else min(abs(number - nums[0]), abs(number - nums[-1]))
            has_zip = bool(query.zip5) and bool((ref.pt_zip[sl] == query.zip5).any())
            scored.append((gap > MAX_EXTRAPOLATION_NUMBERS, not has_zip, gap, -pen, -(sl.stop - sl.start), sid, pen))
        scored.sort()
        tried_reason = ""
        found: list[tuple[Hit, float]] = []
        for far, *_, sid, pen in scored[:3]:
            if found and (query.beat is None or far != scored[0][0]):
                break
            hit = self.numbering.on_street(sid, number, query, exact_ok, pos)
            if hit.match_type != "unmatched":
                found.append((hit, pen))
            tried_reason = tried_reason or hit.reason
        if not found:
            return miss(tried_reason)
        # same-named streets in different places: the one in the record's beat, else the usual order
        inside = [f for f in found if query.in_beat(f[0].x, f[0].y)[0]] if query.beat is not None else []
        hit, pen = inside[0] if inside else found[0]
        reason = hit.reason + ("; the street in the record's beat" if inside and hit is not found[0][0] else "")
        return Hit(hit.x, hit.y, hit.match_type, round(hit.score * pen, 3), hit.matched, reason)

    # --- used by geo_lead.zone_streets and the tests --------------------------------------
    def _candidates(self, st: Street, allow_dir_conflict: bool) -> list[Candidate]:
        """`StreetNames.candidates` (the zone page's street index maps spellings with it)."""
        return self.names.candidates(st, allow_dir_conflict)

    def _geometry(self, sid: int) -> StreetGeometry:
        """`StreetShapes.geometry` (the zone page's street index draws streets with it)."""
        return self.shapes.geometry(sid)

    def _aligned_along(self, sid: int, ex: float, ey: float, ux: float, uy: float, q: float,
                       cx: float, cy: float) -> float | None:
        """`Numbering.aligned_along`."""
        return self.numbering.aligned_along(sid, ex, ey, ux, uy, q, cx, cy)

    @property
    def _side(self) -> SideModel | None:
        """The side-of-street model in use (`Numbering.side_model`); settable."""
        return self.numbering.side_model

    @_side.setter
    def _side(self, model: SideModel | None) -> None:
        self.numbering.side_model = model


def _street(street: Street | None) -> Street:
    """A parsed address's street, which its kind guarantees."""
    if street is None:
        raise ValueError("a parsed address of this kind has a street")
    return street


def _zip_text(value: object) -> str:
    """A ZIP cell as text: "40211", 40211, 40211.0 (read as a number) and "40211-1234" all work."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if np.isfinite(value) and value == int(value) else ""
    return value if isinstance(value, str) else ""


def _placements(hits: list[Hit]) -> Placements:
    """The hits as published: EPSG:4326 at 7 decimals; a point outside Jefferson County
    (`settings.JEFFERSON_BBOX`) becomes ``unmatched``."""
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
    return Placements(lon, lat, mtype, score, matched, reason)


def _assemble(addr: pd.Series, codes: np.ndarray, hits: list[Hit]) -> pd.DataFrame:
    """The result frame, one row per input (`codes` index the distinct `hits`)."""
    import pandas as pd

    out = _placements(hits)
    if len(codes) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("lon", "lat", "score") else object)
                             for c in RESULT_COLUMNS})
    return pd.DataFrame({
        "input": addr.to_numpy(object), "lon": out.lon[codes], "lat": out.lat[codes],
        "match_type": out.match_type[codes], "score": out.score[codes], "matched_address": out.matched[codes],
        "reason": out.reason[codes],
    })
