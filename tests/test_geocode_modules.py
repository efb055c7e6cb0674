"""The matcher's modules on their own: named results, the fuzzy-name search, the county-grid
gradients, publishing, and a matcher bug that raises instead of becoming a reason.

Fixtures are built in code in projected feet (EPSG:2246) around a point in western Louisville.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead.geocode import Geocoder
from geo_lead.geocode.geocoder import _placements
from geo_lead.geocode.hits import Candidate, Hit, Query
from geo_lead.geocode.intersections import StreetGeometry
from geo_lead.geocode.normalize import parse_street
from geo_lead.geocode.numbering import LocalNumbering, Numbering
from geo_lead.geocode.reference import Reference, build_reference, to_lonlat, to_projected
from geo_lead.geocode.street_names import StreetNames, levenshtein

X0, Y0 = (float(v[0]) for v in to_projected(np.array([-85.76]), np.array([38.22])))


def _points_csv(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """Address points: (address, x_ft, y_ft) relative to (X0, Y0)."""
    lon, lat = to_lonlat(np.array([X0 + r[1] for r in rows]), np.array([Y0 + r[2] for r in rows]))
    pd.DataFrame({"street": [r[0] for r in rows], "postcode": "40210",
                  "longitude": lon, "latitude": lat}).to_csv(path, index=False)
    return path


def _grid(tmp_path: Path) -> Reference:
    # NORTH/SOUTH ST: 1200 at x=0, 1300 at x=400 (4 ft per number, eastward); TEST ST: 1200 only
    rows = [(f"{n} {name}", x, dy) for name, dy in (("NORTH ST", 400.0), ("SOUTH ST", -400.0))
            for n, x in ((1200, 0.0), (1250, 200.0), (1300, 400.0))]
    rows.append(("1200 TEST ST", 0.0, 0.0))
    return build_reference([_points_csv(tmp_path / "pts.csv", rows)])


def _full_levenshtein(a: str, b: str) -> int:
    """The textbook table, no cut-off (an independent oracle)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[len(a)][len(b)]


@hsettings(max_examples=300, deadline=None)
@given(st.text("ABCD ", max_size=9), st.text("ABCD ", max_size=9), st.integers(0, 3))
def test_capped_levenshtein_is_the_full_distance_up_to_the_cap(a: str, b: str, cap: int) -> None:
    full = _full_levenshtein(a, b)
    got = levenshtein(a, b, cap)
    assert got == full if full <= cap else got > cap


def test_fuzzy_name_takes_the_one_nearest_name_and_refuses_a_tie() -> None:
    ref = SimpleNamespace(name_to_ids={"MAPLEWOOD": [0], "BARDSTOWN": [1], "BARDSTOWM": [2]})
    names = StreetNames(ref)  # type: ignore[arg-type]
    assert names.fuzzy_name("MAPLEWOD") == "MAPLEWOOD"  # one deletion
    assert names.fuzzy_name("MAPLE WOOD") == "MAPLEWOOD"  # the same name without spaces
    assert names.fuzzy_name("BARDSTOWX") is None  # one edit from two names, same first letter
    assert names.fuzzy_name("XYZ") is None  # too short to guess


def test_candidates_and_geometry_are_named(tmp_path: Path) -> None:
    g = Geocoder(_grid(tmp_path))
    sid = g.ref.key_to_id["NORTH ST"]
    cands = g._candidates(parse_street("NORTH ST"), allow_dir_conflict=False)
    assert cands == [Candidate(sid, 1.0)] and cands[0].sid == sid and cands[0].penalty == 1.0
    geom = g._geometry(sid)
    assert isinstance(geom, StreetGeometry) and geom[0] is geom.plain
    assert geom.plain[0].length == pytest.approx(400.0, abs=0.01)
    assert geom.extended[0].length > geom.plain[0].length


def test_gradients_and_local_numbering(tmp_path: Path) -> None:
    num = Numbering(_grid(tmp_path))
    g = num.gradients
    assert g is not None
    # pairs 40-400 numbers apart: 1200->1250, 1250->1300 on each of the two parallel streets
    assert g.street.size == 4 and np.allclose(g.ft_per_number, 4.0) and np.allclose(g.ux, 1.0)
    test_st = num.ref.key_to_id["TEST ST"]
    local = num.local_numbering(test_st, X0, Y0, 1200.0)
    assert isinstance(local, LocalNumbering)
    assert (local.ux, local.uy) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-9))
    assert local.ft_per_number == pytest.approx(4.0) and local.n_streets == 2
    assert local.agreement == pytest.approx(1.0)


def test_no_gradients_when_no_street_has_two_points_40_numbers_apart(tmp_path: Path) -> None:
    ref = build_reference([_points_csv(tmp_path / "p.csv", [("1200 A ST", 0.0, 0.0), ("1210 A ST", 40.0, 0.0),
                                                            ("1200 B ST", 0.0, 400.0)])])
    num = Numbering(ref)
    assert num.gradients is None
    assert num.local_numbering(0, X0, Y0, 1200.0) is None
    assert num.aligned_along(0, X0, Y0, 1.0, 0.0, 1205.0, X0, Y0) is None


def test_a_point_outside_the_county_is_published_unmatched() -> None:
    out = _placements([Hit(0.0, 0.0, "exact", 1.0, "1 A ST", "known address point"),
                       Hit(np.nan, np.nan, "unmatched", 0.0, "", "empty address"),
                       Hit(X0, Y0, "exact", 1.0, "1200 B ST", "known address point")])
    assert out.match_type.tolist() == ["unmatched", "unmatched", "exact"]
    assert out.reason[0] == "placed outside Jefferson County" and out.matched[0] == ""
    assert np.isnan(out.lon[:2]).all() and out.lon[2] == pytest.approx(-85.76, abs=1e-6)


def test_a_matcher_bug_raises_instead_of_becoming_a_reason(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    g = Geocoder(_grid(tmp_path))

    def broken(*args: object, **kwargs: object) -> Hit:
        raise IndexError("a bug in the matcher")

    monkeypatch.setattr(g.numbering, "on_street", broken)
    with pytest.raises(IndexError, match="a bug in the matcher"):
        g.geocode(["1250 NORTH ST"])
    with pytest.raises(IndexError):
        g.locate("1275 NORTH ST")
    # what the data says stays a reason
    assert g.locate("1200 NOWHERE ST").match_type == "unmatched"


def test_the_beat_is_passed_explicitly() -> None:
    q = Query(40210, None)
    assert q.in_beat(np.array([X0, X0 + 1]), np.array([Y0, Y0])).tolist() == [False, False]
