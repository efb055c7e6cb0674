"""Types shared by the matcher's modules: a placed answer, a candidate street, one query.

Coordinates are projected (EPSG:2246, US survey feet) until `geo_lead.geocode.geocoder`
publishes them in EPSG:4326. numpy alone (shapely on first use), so the officer's zone check
can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from geo_lead import settings

if TYPE_CHECKING:
    import shapely

    from geo_lead.geocode.reference import Reference


@dataclass(frozen=True, slots=True)
class Hit:
    """One address placed (projected ``x``, ``y``; NaN when ``match_type`` is ``unmatched``).

    ``score`` is 0-1, ``matched`` the reference's reading of the address, ``reason`` how it
    was placed (or, unmatched, why not).
    """

    x: float
    y: float
    match_type: str
    score: float
    matched: str
    reason: str


def miss(reason: str) -> Hit:
    """An ``unmatched`` hit with `reason`."""
    return Hit(np.nan, np.nan, "unmatched", 0.0, "", reason)


class Candidate(NamedTuple):
    """A reference street a query may mean, with the score factor of that reading (1.0: the
    name itself; lower for a guessed type, direction or spelling)."""

    sid: int
    penalty: float


@dataclass(frozen=True, slots=True)
class Query:
    """What a record says besides its street: the ZIP (0: none) and its beat's polygon
    (EPSG:2246; None: no beat, or a beat without a polygon)."""

    zip5: int = 0
    beat: shapely.Geometry | None = None

    def in_beat(self, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
        """Whether each point lies inside the beat (within `settings.GEOCODE_BEAT_TOLERANCE_FT`);
        all False without a beat."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        if self.beat is None:
            return np.zeros(x.shape, bool)
        import shapely

        return np.asarray(shapely.dwithin(self.beat, shapely.points(x, y),
                                          settings.GEOCODE_BEAT_TOLERANCE_FT))


NO_QUERY = Query()


def conflict(a: str, b: str) -> bool:
    """True when both parts are stated and differ (``N`` vs ``S``, ``AVE`` vs ``ST``)."""
    return bool(a and b and a != b)


def street_points(ref: Reference, sid: int) -> slice:
    """The slice of street `sid`'s points (in number order) in the reference's point arrays."""
    return slice(int(ref.offsets[sid]), int(ref.offsets[sid + 1]))
