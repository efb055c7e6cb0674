"""Candidate streets for a parsed street name: the name itself, a type word that is part of
the name, or a near spelling (fuzzy), filtered by direction and type.

pandas-free; the officer's zone check uses it through `Geocoder.locate`.
"""

from __future__ import annotations

from geo_lead import settings
from geo_lead.geocode.hits import Candidate
from geo_lead.geocode.normalize import TYPE_WORDS, Street, parse_street
from geo_lead.geocode.reference import Reference

FUZZY_PENALTY = settings.GEOCODE_FUZZY_PENALTY


class StreetNames:
    """The reference's street names, searchable by exact and near spelling.

    Parameters
    ----------
    ref
        The reference index. The fuzzy index (symmetric deletions) and the set of named
        streets are built on first need; answers are memoised per name.
    """

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self._fuzzy: dict[str, str | None] = {}
        self._deletes: dict[str, set[str]] | None = None
        self._nospace: dict[str, str] = {}
        self._known_names: frozenset[str] | None = None  # names of `Reference.known_streets`

    def fuzzy_name(self, name: str) -> str | None:
        """The reference name within a small edit distance of `name` (None when none or a tie).

        The same name without spaces is taken first; else, for names of 4+ letters, the names
        within 1 edit (names under 7 letters) or 2 edits, ranked by distance and then by a
        shared first letter; a tie on both is no answer.
        """
        if name in self._fuzzy:
            return self._fuzzy[name]
        deletes = self._delete_index()
        found = self._nospace.get(name.replace(" ", ""))
        if found is None and len(name) >= 4:
            found = _closest(name, deletes)
        self._fuzzy[name] = found
        return found

    def _delete_index(self) -> dict[str, set[str]]:
        """Every name (4+ letters) under itself and its one-letter deletions (as in SymSpell)."""
        if self._deletes is None:
            self._deletes = {}
            self._nospace = {}
            for nm in self.ref.name_to_ids:
                self._nospace.setdefault(nm.replace(" ", ""), nm)
                if len(nm) >= 4:
                    for d in {nm, *deletions(nm)}:
                        self._deletes.setdefault(d, set()).add(nm)
        return self._deletes

    def known_street(self, st: Street) -> bool:
        """True when the reference files name this street (with its type, or any type when the
        query states none), located or not (`Reference.known_streets`)."""
        known: frozenset[str] = getattr(self.ref, "known_streets", frozenset())
        if st.stype:
            return f"{st.name}|{st.stype}" in known
        if self._known_names is None:
            self._known_names = frozenset(k.partition("|")[0] for k in known)
        return st.name in self._known_names

    def candidates(self, st: Street, allow_dir_conflict: bool) -> list[Candidate]:
        """The reference streets `st` may mean, each with its score factor.

        A type word may be part of the name (``FERN VALLEY RD`` is the reference's ``FERN
        VALLEY``); a name the reference does not have gets its fuzzy match (`fuzzy_name`) unless
        the reference files name the street (then another name one letter away is another
        street). Direction and type conflicts are kept only when `allow_dir_conflict` (street
        only and intersections) and nothing agrees (`filter_candidates`).
        """
        ref = self.ref
        name = st.name[: -len(" RAMP")] if st.name.endswith(" RAMP") else st.name
        ids = ref.name_to_ids.get(name)
        if st.stype and (not ids or allow_dir_conflict):
            typed = self._type_in_name(st, name, ids, allow_dir_conflict)
            if typed is not None:
                return typed
        fuzzy = 1.0
        if not ids:
            if self.known_street(st):
                # a real street without points here: another existing name one letter away is
                # another street, not a typo (MARCH BLVD is not MARCY)
                return []
            alt = self.fuzzy_name(st.name)
            if alt is None:
                return []
            ids, fuzzy = ref.name_to_ids[alt], FUZZY_PENALTY
        return filter_candidates(ref, st, ids, fuzzy, allow_dir_conflict)

    def _type_in_name(self, st: Street, name: str, ids: list[int] | None,
                      allow_dir_conflict: bool) -> list[Candidate] | None:
        """Candidates when the type word may be part of the name (``FERN VALLEY`` / ``LAKE
        FOREST``); None when that reading finds nothing to add."""
        ref = self.ref
        whole = parse_street(f"{name} {TYPE_WORDS.get(st.stype, st.stype)}")
        alt = ref.name_to_ids.get(f"{name} {TYPE_WORDS.get(st.stype, st.stype)}") or (
            ref.name_to_ids.get(whole.name) if whole.name != name else None)
        if not alt:
            return None
        as_name = [Candidate(sid, 0.9) for sid in alt]
        if not ids or not any(ref.street_parts[s].stype == st.stype for s in ids):
            return as_name
        # intersections: both readings; the crossing's support decides
        return filter_candidates(ref, st, ids, 1.0, allow_dir_conflict) + as_name


def filter_candidates(ref: Reference, st: Street, ids: list[int], fuzzy: float,
                      allow_dir_conflict: bool) -> list[Candidate]:
    """Candidates whose direction/type agree with `st` (conflicts only when nothing agrees).

    Each stated part that differs multiplies the score factor (`fuzzy`) by 0.7 (pre-direction),
    0.75 (type) or 0.8 (post-direction); a part stated on one side only by 0.97. A guessed
    (fuzzy) name must agree on type and direction; conflicting candidates are returned only
    when `allow_dir_conflict` and none agrees.
    """
    clean: list[Candidate] = []
    conflicting: list[Candidate] = []
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
            clean.append(Candidate(sid, pen))
        elif fuzzy < 1.0:
            continue  # a guessed name must agree on type and direction ("DYER AVE" != "DEER LN")
        elif allow_dir_conflict:  # intersections and street-only; never for house numbers
            conflicting.append(Candidate(sid, pen))
    return clean or conflicting


def _closest(name: str, deletes: dict[str, set[str]]) -> str | None:
    """The one indexed name nearest `name` (see `StreetNames.fuzzy_name`), None on a tie."""
    max_dist = 1 if len(name) < 7 else 2
    cands: set[str] = set()
    for d in {name, *deletions(name)}:
        cands |= deletes.get(d, set())
    # rank by distance, then a shared first letter (typos rarely hit the first letter)
    scored = sorted((levenshtein(name, c, max_dist), c[0] != name[0], c) for c in cands)
    scored = [sc for sc in scored if sc[0] <= max_dist]
    if scored and (len(scored) == 1 or scored[0][:2] < scored[1][:2]):
        return scored[0][2]
    return None


def deletions(word: str) -> set[str]:
    """`word` with one letter deleted, each way."""
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def levenshtein(a: str, b: str, cap: int) -> int:
    """Edit distance (insert/delete/substitute) when it is at most `cap`; some value above
    `cap` otherwise (the table stops as soon as a row exceeds it)."""
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
