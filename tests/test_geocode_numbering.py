"""House numbers on the range scale (learned block curve) and the local numbering model.

Fixtures are built in code in projected feet (EPSG:2246) around a point in western Louisville,
so every expected position is computed by hand from the fixture's geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo_lead import settings
from geo_lead.geocode import Geocoder
from geo_lead.geocode.reference import (
    SRC_CENSUS,
    SRC_POINT,
    SideModel,
    block_position,
    build_reference,
    learn_block_curve,
    learn_side_model,
    to_lonlat,
    to_projected,
)

X0, Y0 = to_projected(np.array([-85.76]), np.array([38.22]))
X0, Y0 = float(X0[0]), float(Y0[0])


def _xy(res: pd.DataFrame, i: int = 0) -> tuple[float, float]:
    x, y = to_projected(np.array([res["lon"].iloc[i]]), np.array([res["lat"].iloc[i]]))
    return float(x[0]), float(y[0])


def _points_csv(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """Address points: (address, x_ft, y_ft) relative to (X0, Y0)."""
    xs = np.array([X0 + r[1] for r in rows])
    ys = np.array([Y0 + r[2] for r in rows])
    lon, lat = to_lonlat(xs, ys)
    pd.DataFrame({"street": [r[0] for r in rows], "postcode": "40210",
                  "longitude": lon, "latitude": lat}).to_csv(path, index=False)
    return path


# --- the block curve ----------------------------------------------------------------------
def _two_census_points(path: Path) -> Path:
    """Census geocoder results for 2700 and 2800 TEST AVE, 1,000 ft apart due east of (X0, Y0)."""
    census = pd.DataFrame({
        "o_address": ["2700 TEST AVE", "2800 TEST AVE"], "status": "Match",
        "m_address": ["2700 TEST AVE", "2800 TEST AVE"], "m_zip": "40210",
    })
    lon, lat = to_lonlat(np.array([X0, X0 + 1000.0]), np.array([Y0, Y0]))
    census["long"], census["lat"] = lon, lat
    census.to_csv(path, index=False)
    return path


def _true_curve(offset: np.ndarray) -> np.ndarray:
    # rooftops fill 0-80% of the block over offsets 0-40, then stop (wide lots)
    return np.minimum(offset / 50.0, 0.8)


def _block_fixture(n_streets: int = 30) -> tuple[np.ndarray, ...]:
    """Each street: Census points at 100 (x=0) and 200 (x=1000 ft); rooftops 101-199 between."""
    street, number, x, y, src = [], [], [], [], []
    for s in range(n_streets):
        yy = 2000.0 * s
        for h, xx in ((100, 0.0), (200, 1000.0)):
            street.append(s), number.append(h), x.append(xx), y.append(yy), src.append(SRC_CENSUS)
        for off in range(1, 100):
            t = float(_true_curve(np.array([off]))[0])
            street.append(s), number.append(100 + off), x.append(1000.0 * t), y.append(yy + 40.0)
            src.append(SRC_POINT)
    return (np.array(street), np.array(number, float), np.array(x), np.array(y), np.array(src, np.int8))


def test_block_curve_is_learned_from_rooftops_between_census_block_starts() -> None:
    curve = learn_block_curve(*_block_fixture())
    assert curve is not None and curve.shape == (101,)
    assert curve[0] == 0.0 and curve[100] == 1.0
    assert (np.diff(curve) >= 0).all()
    # bin [1, 10) has offsets 1..9: median offset 5 and median fraction 5/50 = 0.1
    assert curve[5] == pytest.approx(0.1)
    assert curve[15] == pytest.approx(0.3)  # offsets 10..19 -> 14.5/50
    assert curve[65] == pytest.approx(0.8)  # past 40 the rooftops stop at 0.8
    # on the range scale: H00 + 100 x curve(offset); hundreds stay where they are
    assert block_position(105.0, curve) == pytest.approx(110.0)
    assert block_position(np.array([200.0, 300.0]), curve).tolist() == [200.0, 300.0]


def test_block_curve_needs_enough_points() -> None:
    street, number, x, y, src = _block_fixture(n_streets=2)  # 198 rooftops < 200
    assert learn_block_curve(street, number, x, y, src) is None
    assert learn_block_curve(street, number, x, y, np.full(src.size, SRC_POINT, np.int8)) is None
    assert block_position(123.0, None) == 123.0


def test_geocoder_places_rooftops_and_blocks_on_the_range_scale(tmp_path: Path) -> None:
    _two_census_points(tmp_path / "census.csv")
    ref = build_reference([tmp_path / "census.csv"])
    assert ref.block_curve is None  # two Census points teach nothing: numbers as they are
    ref.block_curve = np.interp(np.arange(101.0), [0.0, 20.0, 100.0], [0.0, 0.6, 1.0])
    g = Geocoder(ref)
    res = g.geocode(["2722 TEST AVE", "2700 BLOCK TEST AVE", "2710 TEST AVE", "2800 TEST AVE"])
    x, y = _xy(res, 0)  # curve(22) = 0.6 + 2 x 0.4 / 80 = 0.61
    assert res["match_type"][0] == "interpolated"
    assert x - X0 == pytest.approx(610.0, abs=0.5) and y - Y0 == pytest.approx(0.0, abs=0.5)
    x, _ = _xy(res, 1)  # the block's middle is halfway between the two block starts
    assert res["match_type"][1] == "block" and x - X0 == pytest.approx(500.0, abs=0.5)
    x, _ = _xy(res, 2)  # curve(10) = 0.3
    assert x - X0 == pytest.approx(300.0, abs=0.5)
    assert res["match_type"][3] == "exact"


# --- the local numbering model ------------------------------------------------------------
def _grid_rows(ft_per_number: float = 4.0) -> list[tuple[str, float, float]]:
    """Two east-west streets 400 ft north and south of TEST ST, numbers rising eastward at
    `ft_per_number`, carrying 1200 at x=0 like TEST ST's only point; and a north-south street
    whose numbers (5000+) are unrelated to TEST ST's."""
    rows: list[tuple[str, float, float]] = []
    for name, dy in (("NORTH ST", 400.0), ("SOUTH ST", -400.0)):
        for n in range(1000, 1601, 50):
            rows.append((f"{n} {name}", (n - 1200) * ft_per_number, dy))
    for n in range(5000, 5401, 50):
        rows.append((f"{n} CROSS ST", 300.0, (n - 5200) * 4.0))
    return rows


def test_single_point_street_runs_the_way_nearby_parallel_streets_do(tmp_path: Path) -> None:
    rows = [*_grid_rows(), ("1200 TEST ST", 0.0, 0.0)]
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    res = g.geocode(["1300 TEST ST", "1100 TEST ST"])
    assert res["match_type"].tolist() == ["interpolated", "interpolated"]
    x, y = _xy(res, 0)  # 100 numbers x 4 ft east of 1200
    assert (x - X0, y - Y0) == (pytest.approx(400.0, abs=0.5), pytest.approx(0.0, abs=0.5))
    x, y = _xy(res, 1)
    assert (x - X0, y - Y0) == (pytest.approx(-400.0, abs=0.5), pytest.approx(0.0, abs=0.5))
    assert "nearby streets" in res["reason"][0]


def test_local_numbering_off_or_without_agreeing_neighbours(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # only the north-south street nearby: its numbering says 5000s at TEST ST, not 1200
    rows = [r for r in _grid_rows() if "CROSS" in r[0]] + [("1200 TEST ST", 0.0, 0.0)]
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    res = g.geocode(["1300 TEST ST"])
    x, y = _xy(res)
    assert abs(x - X0) < 0.5 and abs(y - Y0) < 0.5
    assert res["reason"][0].startswith("placed at the nearest known number 1200")
    monkeypatch.setattr(settings, "GEOCODE_LOCAL_NUMBERING", False)
    rows = [*_grid_rows(), ("1200 TEST ST", 0.0, 0.0)]
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts2.csv", rows)]))
    x, y = _xy(g.geocode(["1300 TEST ST"]))
    assert abs(x - X0) < 0.5 and abs(y - Y0) < 0.5


def test_extrapolation_prefers_the_local_numbering_to_the_own_chord(tmp_path: Path) -> None:
    # TEST ST's own two points run east-north-east (chord (200, 100) ft over 50 numbers); the
    # grid says east at 4 ft per number: 1350 is 100 numbers x 4 ft east of 1250's point
    rows = [*_grid_rows(), ("1200 TEST ST", 0.0, 0.0), ("1250 TEST ST", 200.0, 100.0)]
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    res = g.geocode(["1350 TEST ST"])
    x, y = _xy(res)
    assert (x - X0, y - Y0) == (pytest.approx(600.0, abs=0.5), pytest.approx(100.0, abs=0.5))
    assert "extrapolated 100 numbers from 1250" in res["reason"][0]


def test_same_side_interpolation_is_blended_with_a_closer_other_side_bracket(tmp_path: Path) -> None:
    # odd side: 101 at x=0, 141 at x=400 (y=0); even side across the street (y=60): 120, 124
    rows = [("101 SIDE ST", 0.0, 0.0), ("141 SIDE ST", 400.0, 0.0),
            ("120 SIDE ST", 190.0, 60.0), ("124 SIDE ST", 230.0, 60.0)]
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    x, y = _xy(g.geocode(["121 SIDE ST"]))
    # same side: halfway (200, 0), span 40; both sides: 120-124 a quarter of the way (200, 60),
    # span 4; weights 1/(40+10) and 0.5/(4+10)
    w1, w2 = 1 / 50, 0.5 / 14
    assert x - X0 == pytest.approx(200.0, abs=0.5)
    assert y - Y0 == pytest.approx(60.0 * w2 / (w1 + w2), abs=0.5)


def test_extrapolation_lands_where_parallel_streets_carry_the_number(tmp_path: Path) -> None:
    # NORTH/SOUTH ST: 1200 at x=0, 1250 at x=200 (4 ft per number), 1300 at x=550 (7 ft per
    # number): the feet-per-number step says 1300 TEST ST is 100 x 4 = 400 ft east of 1200;
    # the parallel streets carry 1300 at x=550 (within 0.4-1.5 x the step), so there
    rows = [(f"{n} {name}", x, dy) for name, dy in (("NORTH ST", 400.0), ("SOUTH ST", -400.0))
            for n, x in ((1200, 0.0), (1250, 200.0), (1300, 550.0))]
    rows.append(("1200 TEST ST", 0.0, 0.0))
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    x, y = _xy(g.geocode(["1300 TEST ST"]))
    assert (x - X0, y - Y0) == (pytest.approx(550.0, abs=0.5), pytest.approx(0.0, abs=0.5))
    # the aligned distance itself, from TEST ST's point eastward, for a number between
    sid = g.ref.key_to_id["TEST ST"]
    along = g._aligned_along(sid, X0, Y0, 1.0, 0.0, 1275.0, X0 + 300.0, Y0)
    assert along == pytest.approx(200.0 + 25 * 7.0)
    # a north-running line: no street runs that way, no answer
    assert g._aligned_along(sid, X0, Y0, 0.0, 1.0, 1275.0, X0, Y0 + 300.0) is None


def _aligned_interpolation_rows(test_end_x: float) -> list[tuple[str, float, float]]:
    # NORTH/SOUTH ST carry 1250 at x=200 (1200 at 0, 1250 at 200, 1300 at 550); TEST ST is
    # known only at 1200 (x=0) and 1300 (x=test_end_x), all on one line y=0
    rows = [(f"{n} {name}", x, dy) for name, dy in (("NORTH ST", 400.0), ("SOUTH ST", -400.0))
            for n, x in ((1200, 0.0), (1250, 200.0), (1300, 550.0))]
    return [*rows, ("1200 TEST ST", 0.0, 0.0), ("1300 TEST ST", test_end_x, 0.0)]


def test_interpolation_moves_halfway_to_where_parallel_streets_carry_the_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", _aligned_interpolation_rows(1000.0))]))
    # linear between 1200 (x=0) and 1300 (x=1000): x=500; parallel streets: x=200;
    # weight 0.5: halfway between, x=350, still on TEST ST's line
    assert settings.GEOCODE_ALIGN_INTERPOLATION_WEIGHT == 0.5
    res = g.geocode(["1250 TEST ST"])
    x, y = _xy(res)
    assert (x - X0, y - Y0) == (pytest.approx(350.0, abs=0.5), pytest.approx(0.0, abs=0.5))
    assert res["reason"][0] == "interpolated between 1200 and 1300"
    # switched off: plain linear interpolation
    monkeypatch.setattr(settings, "GEOCODE_ALIGN_INTERPOLATION_WEIGHT", 0.0)
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", _aligned_interpolation_rows(1000.0))]))
    x, y = _xy(g.geocode(["1250 TEST ST"]))
    assert (x - X0, y - Y0) == (pytest.approx(500.0, abs=0.5), pytest.approx(0.0, abs=0.5))


def test_interpolation_ignores_parallel_streets_outside_the_bracket(tmp_path: Path) -> None:
    # TEST ST's 1300 at x=150: the parallel streets' x=200 lies past it, so linear (x=75) stays
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", _aligned_interpolation_rows(150.0))]))
    x, y = _xy(g.geocode(["1250 TEST ST"]))
    assert (x - X0, y - Y0) == (pytest.approx(75.0, abs=0.5), pytest.approx(0.0, abs=0.5))


def test_extrapolation_shrinks_by_the_neighbours_direction_agreement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NORTH ST (y=+400) runs 30 degrees north of east, SOUTH ST (y=-400) 30 degrees south of
    # east, both 4 ft per number from 1200 at x=0; carried across to TEST ST's only point
    # (1200 at the origin) both give 1200 +- 50, at the same distance: equal weights, mean
    # direction east, agreement cos 30 = 0.866. 1250 TEST ST: 50 numbers x 4 ft x 0.866 east.
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    rows = [("1200 NORTH ST", 0.0, 400.0), ("1250 NORTH ST", 200.0 * c, 400.0 + 200.0 * s),
            ("1200 SOUTH ST", 0.0, -400.0), ("1250 SOUTH ST", 200.0 * c, -400.0 - 200.0 * s),
            ("1200 TEST ST", 0.0, 0.0)]
    path = _points_csv(tmp_path / "pts.csv", rows)
    g = Geocoder(build_reference([path]))
    res = g.geocode(["1250 TEST ST"])
    x, y = _xy(res)
    assert "the way numbers run on 2 nearby streets" in res["reason"][0]
    assert (x - X0, y - Y0) == (pytest.approx(200.0 * c, abs=0.5), pytest.approx(0.0, abs=0.5))
    monkeypatch.setattr(settings, "GEOCODE_LOCAL_NUMBERING_SHRINK", False)
    x, y = _xy(Geocoder(build_reference([path])).geocode(["1250 TEST ST"]))
    assert (x - X0, y - Y0) == (pytest.approx(200.0, abs=0.5), pytest.approx(0.0, abs=0.5))


# --- the side of the street ----------------------------------------------------------------
def test_side_model_is_learned_from_rooftops_beside_census_chords(monkeypatch: pytest.MonkeyPatch) -> None:
    # street 0 runs east (Census 100 at x=0, 200 at x=1000): odd rooftops 60 ft north (left),
    # even 60 ft south, one even rooftop 40 ft north; street 1 (Census only) has no rooftops
    street = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    number = np.array([100, 200, 111, 151, 120, 160, 300, 400], float)
    x = np.array([0.0, 1000.0, 300.0, 500.0, 300.0, 600.0, 0.0, 0.0])
    y = np.array([0.0, 0.0, 60.0, 60.0, -60.0, 40.0, 5000.0, 6000.0])
    src = np.array([SRC_CENSUS, SRC_CENSUS] + [SRC_POINT] * 4 + [SRC_CENSUS] * 2, np.int8)
    assert learn_side_model(street, number, x, y, src) is None  # 4 rooftops < 200
    monkeypatch.setattr(settings, "GEOCODE_BLOCK_CURVE_MIN_PAIRS", 4)
    model = learn_side_model(street, number, x, y, src)
    assert model is not None
    assert model.offset_ft == pytest.approx(60.0)  # median of 60, 60, 60, 40
    assert model.odd_left_share == pytest.approx(0.75)  # 160 stands on the odd side
    assert model.street_votes == {0: 2}  # three follow the rule, one does not
    # the street's own lean decides; a street without rooftops gets the expected offset
    assert model.signed_offset_ft(0, 151) == pytest.approx(60.0)
    assert model.signed_offset_ft(0, 150) == pytest.approx(-60.0)
    assert model.signed_offset_ft(1, 351) == pytest.approx((2 * 0.75 - 1) * 60.0)
    assert SideModel(60.0, 0.75, {1: -3}).signed_offset_ft(1, 351) == pytest.approx(-60.0)


def test_interpolation_between_census_points_moves_to_the_house_side(tmp_path: Path) -> None:
    _two_census_points(tmp_path / "census.csv")
    g = Geocoder(build_reference([tmp_path / "census.csv"]))
    sid = g.ref.key_to_id["TEST AVE"]
    queries = ["2722 TEST AVE", "2721 TEST AVE", "2700 BLOCK TEST AVE", "2800 TEST AVE"]
    # no rooftops to learn from: left on the range line
    x, y = _xy(g.geocode(queries[:1]))
    assert (x - X0, y - Y0) == (pytest.approx(220.0, abs=0.5), pytest.approx(0.0, abs=0.5))
    # county share 0.75 odd-left, 60 ft: expected offset 30 ft; numbers rise eastward, so
    # odd (left) is north and even (right) south
    g = Geocoder(g.ref)
    g._side = SideModel(60.0, 0.75, {})
    res = g.geocode(queries)
    assert _xy(res, 0)[0] - X0 == pytest.approx(220.0, abs=0.5)
    assert _xy(res, 0)[1] - Y0 == pytest.approx(-30.0, abs=0.5)
    assert _xy(res, 1)[1] - Y0 == pytest.approx(30.0, abs=0.5)
    # a hundred-block's middle and a known point stay on the range line
    assert (_xy(res, 2)[0] - X0, _xy(res, 2)[1] - Y0) == (pytest.approx(500.0, abs=0.5),
                                                          pytest.approx(0.0, abs=0.5))
    assert _xy(res, 3)[1] - Y0 == pytest.approx(0.0, abs=0.5)
    # the street's own rooftops lean even-left: the full offset, the other way
    g = Geocoder(g.ref)
    g._side = SideModel(60.0, 0.75, {sid: -2})
    res = g.geocode(queries[:2])
    assert _xy(res, 0)[1] - Y0 == pytest.approx(60.0, abs=0.5)
    assert _xy(res, 1)[1] - Y0 == pytest.approx(-60.0, abs=0.5)


def test_side_shift_allows_for_the_offsets_of_the_points_it_came_from(tmp_path: Path) -> None:
    # TEST AVE: Census 2700 at the origin (range line), rooftop 2790 (even) at (900, -60)
    census = pd.DataFrame({"o_address": ["2700 TEST AVE"], "status": "Match",
                           "m_address": ["2700 TEST AVE"], "m_zip": "40210"})
    lon, lat = to_lonlat(np.array([X0]), np.array([Y0]))
    census["long"], census["lat"] = lon, lat
    census.to_csv(tmp_path / "census.csv", index=False)
    pts = _points_csv(tmp_path / "pts.csv", [("2790 TEST AVE", 900.0, -60.0)])
    g = Geocoder(build_reference([tmp_path / "census.csv", pts]))
    sid = g.ref.key_to_id["TEST AVE"]
    g._side = SideModel(60.0, 0.75, {sid: 5})  # this street: odd left (+60), even right (-60)
    res = g.geocode(["2745 TEST AVE", "2744 TEST AVE"])
    # halfway along the chord: (450, -30), standing -30 off the range line (half of 2790's
    # -60); 2745 belongs at +60: shifted 90 ft along the chord's left normal (60, 900) / |.|
    d = np.array([900.0, -60.0])
    left = np.array([-d[1], d[0]]) / np.hypot(*d)
    x, y = _xy(res, 0)
    assert (x - X0, y - Y0) == (pytest.approx(450.0 + 90.0 * left[0], abs=0.5),
                                pytest.approx(-30.0 + 90.0 * left[1], abs=0.5))
    # 2744 (even): 44/90 of the way, standing 44/90 x -60 off; belongs at -60
    t = 44.0 / 90.0
    x, y = _xy(res, 1)
    shift = -60.0 - t * -60.0
    assert (x - X0, y - Y0) == (pytest.approx(900.0 * t + shift * left[0], abs=0.5),
                                pytest.approx(-60.0 * t + shift * left[1], abs=0.5))


def test_extrapolated_house_number_moves_to_its_side(tmp_path: Path) -> None:
    rows = [*_grid_rows(), ("1200 TEST ST", 0.0, 0.0)]  # 1200: a hundred, on the range line
    g = Geocoder(build_reference([_points_csv(tmp_path / "pts.csv", rows)]))
    g._side = SideModel(60.0, 0.75, {})  # no lean of its own: expected offset 30 ft
    res = g.geocode(["1301 TEST ST", "1300 TEST ST"])
    # 101 numbers x 4 ft east; odd: left of east (north) by 30 ft; the hundred stays on the line
    assert (_xy(res, 0)[0] - X0, _xy(res, 0)[1] - Y0) == (pytest.approx(404.0, abs=0.5),
                                                          pytest.approx(30.0, abs=0.5))
    assert (_xy(res, 1)[0] - X0, _xy(res, 1)[1] - Y0) == (pytest.approx(400.0, abs=0.5),
                                                          pytest.approx(0.0, abs=0.5))
