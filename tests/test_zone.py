"""geo_lead.zone and ``geo-lead zone check`` on the shipped boundaries and small built zones.

Oracles: the LOJIC polygons themselves (interior points from shapely's representative_point
of the *neighborhood* polygons, not of the zone), construction (a point moved a known number
of feet off the boundary), and pyproj's ellipsoidal geodesic distance (Geod) for distances,
an independent method from the planar EPSG:2246 distance the checker computes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import shape

from geo_lead import cli, settings
from geo_lead.errors import CRSMismatchError, InputFileError, ZoneInputError
from geo_lead.zone import GRID_MIN_POINTS, ZoneChecker, check_address, parse_coordinate

GEOD = Geod(ellps="GRS80")
FT_PER_M = 1.0 / settings.M_PER_FT
TO_FT = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True)
TO_LONLAT = Transformer.from_crs(settings.CRS_PROJECTED, settings.CRS_STORE, always_xy=True)


def _neighborhood(name: str) -> shapely.Geometry:
    data = json.loads(settings.NEIGHBORHOODS_FILE.read_text())
    return next(shape(f["geometry"]) for f in data["features"]
                if f["properties"]["NH_NAME"] == name)


def _interior(name: str) -> tuple[float, float]:
    p = _neighborhood(name).representative_point()
    return p.y, p.x


@pytest.fixture(scope="module")
def checker() -> ZoneChecker:
    return ZoneChecker()


# --- known places ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["RUSSELL", "PORTLAND"])
def test_interior_of_each_pilot_neighborhood_is_inside(checker: ZoneChecker, name: str) -> None:
    lat, lon = _interior(name)
    a = checker.check(lat, lon)
    assert a.inside is True
    assert a.neighborhood == name
    assert a.distance_to_boundary_ft > 0


@pytest.mark.parametrize("name", ["SHAWNEE", "CENTRAL BUSINESS DISTRICT"])
def test_neighbouring_areas_are_outside_and_named(checker: ZoneChecker, name: str) -> None:
    lat, lon = _interior(name)
    a = checker.check(lat, lon)
    assert a.inside is False
    assert a.neighborhood == name


def test_issue_example_coordinate_is_inside_russell(checker: ZoneChecker) -> None:
    a = checker.check(38.2587, -85.7930)
    assert (a.inside, a.neighborhood) == (True, "RUSSELL")


@pytest.mark.parametrize("lat,lon", [(38.2776, -85.7372),   # downtown Jeffersonville, IN
                                     (38.2856, -85.8241)])  # New Albany, IN
def test_indiana_across_the_river_is_outside_every_neighborhood(
        checker: ZoneChecker, lat: float, lon: float) -> None:
    a = checker.check(lat, lon)
    assert a.inside is False
    assert a.neighborhood is None
    assert a.distance_to_boundary_ft > 1000


def test_point_on_the_boundary_counts_inside_and_near(checker: ZoneChecker) -> None:
    lon, lat = shapely.get_coordinates(checker.zone.exterior)[100]  # a vertex of the zone
    a = checker.check(lat, lon)
    assert a.inside is True
    assert a.near_boundary is True
    assert a.distance_to_boundary_ft == pytest.approx(0.0, abs=0.05)


def _off_boundary(checker: ZoneChecker, offset_ft: float) -> tuple[float, float, float, float]:
    """A point offset_ft off the middle of the longest zone edge (positive = outward)."""
    ring = shapely.get_coordinates(checker.zone_ft.exterior)
    seg = np.diff(ring, axis=0)
    lines = shapely.linestrings(np.stack([ring[:-1], ring[1:]], axis=1))
    # Longest edges first; keep the first whose offset point has no other edge nearer.
    for i in np.argsort(-np.hypot(seg[:, 0], seg[:, 1])):
        mid = ring[i] + seg[i] / 2
        normal = np.array([seg[i][1], -seg[i][0]]) / np.hypot(*seg[i])
        if checker.zone_ft.contains(shapely.Point(mid + normal * 10)):
            normal = -normal
        p = shapely.Point(mid + normal * offset_ft)
        others = np.delete(shapely.distance(lines, p), i)
        if others.min() > abs(offset_ft) + 50:
            break
    x, y = mid + normal * offset_ft
    lon, lat = TO_LONLAT.transform(x, y)
    mlon, mlat = TO_LONLAT.transform(*mid)
    return lat, lon, mlat, mlon


@pytest.mark.parametrize("offset_ft,inside,near", [(150.0, False, True), (-150.0, True, True),
                                                   (600.0, False, False), (-600.0, True, False)])
def test_points_just_off_the_boundary(checker: ZoneChecker, offset_ft: float, inside: bool,
                                      near: bool) -> None:
    lat, lon, mlat, mlon = _off_boundary(checker, offset_ft)
    a = checker.check(lat, lon)
    assert a.inside is inside
    assert a.near_boundary is near
    # Independent oracle: the ellipsoidal geodesic distance to the boundary point we moved from.
    geod_ft = GEOD.inv(lon, lat, mlon, mlat)[2] * FT_PER_M
    assert geod_ft == pytest.approx(abs(offset_ft), rel=0.002)
    assert a.distance_to_boundary_ft <= geod_ft * 1.002 + 0.1
    assert a.distance_to_boundary_ft == pytest.approx(abs(offset_ft), abs=1.0)


def test_tolerance_is_configurable() -> None:
    wide = ZoneChecker(near_boundary_ft=1000.0)
    lat, lon, *_ = _off_boundary(wide, 600.0)
    assert wide.check(lat, lon).near_boundary is True
    with pytest.raises(ZoneInputError):
        ZoneChecker(near_boundary_ft=-1)


# --- arrays -----------------------------------------------------------------------------------

def test_batch_matches_single_answers(checker: ZoneChecker) -> None:
    places = [_interior(n) for n in ("RUSSELL", "PORTLAND", "SHAWNEE", "CENTRAL BUSINESS DISTRICT")]
    places += [(38.2776, -85.7372), (float("nan"), -85.79)]
    lat = np.array([p[0] for p in places])
    lon = np.array([p[1] for p in places])
    b = checker.check_many(lat, lon)
    assert b.inside.tolist() == [True, True, False, False, False, False]
    assert b.neighborhood.tolist() == ["RUSSELL", "PORTLAND", "SHAWNEE",
                                       "CENTRAL BUSINESS DISTRICT", None, None]
    for i in range(5):
        one = checker.check(lat[i], lon[i])
        assert one.distance_to_boundary_ft == pytest.approx(b.distance_to_boundary_ft[i], abs=0.06)
    assert np.isnan(b.distance_to_boundary_ft[5]) and not b.near_boundary[5]


def test_batch_inside_agrees_with_lojic_membership(checker: ZoneChecker) -> None:
    """Random points: inside the zone <=> inside Russell or Portland (LOJIC polygons)."""
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = checker.zone.bounds
    lon = rng.uniform(minx - 0.01, maxx + 0.01, 4000)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, 4000)
    members = shapely.union_all([_neighborhood("RUSSELL"), _neighborhood("PORTLAND")])
    expected = shapely.contains_xy(members, lon, lat)
    b = checker.check_many(lat, lon, distances=False)
    far = ~shapely.dwithin(members.boundary, shapely.points(lon, lat), 1e-6)  # ~10 cm
    assert (b.inside[far] == expected[far]).all()
    assert set(b.neighborhood[b.inside]) <= {"RUSSELL", "PORTLAND"}


def test_cell_grid_gives_the_exact_answer(checker: ZoneChecker) -> None:
    """Large batches (cell grid) == every point tested exactly, including the hard points:
    zone vertices, points a hair either side of them, cell corners, NaN, 2-D input."""
    rng = np.random.default_rng(3)
    minx, miny, maxx, maxy = checker.zone.bounds
    lon = rng.uniform(minx - 0.005, maxx + 0.005, 60_000)
    lat = rng.uniform(miny - 0.005, maxy + 0.005, 60_000)
    verts = shapely.get_coordinates(checker.zone)
    jitter = rng.normal(0, 1e-7, (len(verts), 2))
    state, (x0, y0, dx, dy) = checker._cell_grid()
    corners_x = x0 + dx * rng.integers(0, state.shape[0] + 1, 5000)
    corners_y = y0 + dy * rng.integers(0, state.shape[1] + 1, 5000)
    lon = np.concatenate([lon, verts[:, 0], verts[:, 0] + jitter[:, 0], corners_x,
                          [np.nan, minx, maxx]])
    lat = np.concatenate([lat, verts[:, 1], verts[:, 1] + jitter[:, 1], corners_y,
                          [38.26, miny, maxy]])
    assert len(lon) >= GRID_MIN_POINTS
    expected = shapely.intersects_xy(checker.zone, lon, lat)
    got = checker.inside_many(lat, lon)
    assert (got == expected).all()
    assert got[60_000:60_000 + len(verts)].all()  # every vertex is on the (closed) boundary
    n2 = (len(lon) // 2) * 2
    assert (checker.inside_many(lat[:n2].reshape(2, -1), lon[:n2].reshape(2, -1)).ravel()
            == expected[:n2]).all()
    assert (state == 2).mean() < 0.05  # the grid answers most points without the exact test


# --- input validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("value,name,match", [
    ("98", "lat", "out of range"), ("-91", "lat", "out of range"), ("181", "lon", "out of range"),
    ("abc", "lat", "not a number"), ("38°15'", "lat", "not a number"), ("", "lon", "missing"),
    (None, "lat", "missing"), ("nan", "lat", "out of range"), ("inf", "lon", "out of range"),
])
def test_bad_coordinates_are_rejected(value: object, name: str, match: str) -> None:
    with pytest.raises(ZoneInputError, match=match):
        parse_coordinate(value, name)


def test_coordinates_as_text_are_accepted() -> None:
    assert parse_coordinate(" 38.2587 ", "lat") == 38.2587
    assert parse_coordinate(-85.793, "lon") == -85.793


# --- other zone files ------------------------------------------------------------------------------

def _write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _square(lon0: float, lat0: float, lon1: float, lat1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                 [lon0, lat1], [lon0, lat0]]]}


def test_custom_zone_file_and_geodesic_distance(tmp_path: Path) -> None:
    zone = _write(tmp_path / "z.geojson", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "test", "date": "2025-01-31"},
         "geometry": _square(-85.80, 38.25, -85.78, 38.27)}]})
    c = ZoneChecker(zone)
    assert c.zone_version.endswith("@2025-01-31") and len(c.zone_version.split("@")[0]) == 12
    # 0.01 deg west of the west edge, mid-height: nearest boundary point is due east.
    a = c.check(38.26, -85.81)
    geod_ft = GEOD.inv(-85.81, 38.26, -85.80, 38.26)[2] * FT_PER_M
    assert a.inside is False
    assert a.distance_to_boundary_ft == pytest.approx(geod_ft, rel=0.001)
    assert a.neighborhood is not None  # no members: named by LOJIC (a west Louisville area)
    inside = c.check(38.26, -85.79)
    assert inside.inside is True
    # the centre of a 0.02 deg square: nearest edge is the east/west one (shorter in feet)
    ew_ft = GEOD.inv(-85.79, 38.26, -85.78, 38.26)[2] * FT_PER_M
    assert inside.distance_to_boundary_ft == pytest.approx(ew_ft, rel=0.001)


def test_zone_file_of_neighborhood_polygons_names_its_members(tmp_path: Path) -> None:
    """A proposed zone given as LOJIC features (NH_NAME), e.g. Russell + Shawnee."""
    data = json.loads(settings.NEIGHBORHOODS_FILE.read_text())
    feats = [f for f in data["features"] if f["properties"]["NH_NAME"] in ("RUSSELL", "SHAWNEE")]
    zone = _write(tmp_path / "proposed.geojson", {"type": "FeatureCollection", "features": feats})
    c = ZoneChecker(zone)
    assert set(c.members) == {"RUSSELL", "SHAWNEE"}
    for name in ("RUSSELL", "SHAWNEE"):
        a = c.check(*_interior(name))
        assert (a.inside, a.neighborhood) == (True, name)
    portland = c.check(*_interior("PORTLAND"))
    assert (portland.inside, portland.neighborhood) == (False, "PORTLAND")


def test_zone_version_changes_with_the_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.geojson", _square(-85.80, 38.25, -85.78, 38.27))
    b = _write(tmp_path / "b.geojson", _square(-85.80, 38.25, -85.77, 38.27))
    assert ZoneChecker(a, None).zone_version != ZoneChecker(b, None).zone_version


def test_zone_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        ZoneChecker(tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{nope")
    with pytest.raises(InputFileError, match="not a readable GeoJSON"):
        ZoneChecker(bad)
    with pytest.raises(InputFileError, match="Point"):
        ZoneChecker(_write(tmp_path / "pt.geojson", {"type": "Point", "coordinates": [-85.8, 38.2]}))
    with pytest.raises(CRSMismatchError, match="EPSG:4326"):
        ZoneChecker(_write(tmp_path / "ft.geojson", _square(1180000, 270000, 1190000, 280000)))
    with pytest.raises(CRSMismatchError, match="2246"):
        ZoneChecker(_write(tmp_path / "crs.geojson", {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2246"}},
            "features": []}))


# --- addresses (a stand-in geocoder with the geo_lead.geocode interface) -----------------------

class FakeGeocoder:
    """Answers like ``Geocoder.geocode``; places the LOJIC Russell interior point."""

    def __init__(self, lat: float, lon: float) -> None:
        self.lat, self.lon, self.calls = lat, lon, []

    def geocode(self, addresses: list[str], zips: list[str | None]) -> pd.DataFrame:
        self.calls.append((addresses, zips))
        if "NOWHERE" in addresses[0]:
            return pd.DataFrame({"lon": [np.nan], "lat": [np.nan], "match_type": ["unmatched"],
                                 "score": [0.0], "matched_address": [None],
                                 "reason": ["street not in the reference"]})
        return pd.DataFrame({"lon": [self.lon], "lat": [self.lat], "match_type": ["block"],
                             "score": [0.9], "matched_address": [addresses[0]], "reason": [""]})


def test_address_answer_says_how_it_was_placed(checker: ZoneChecker) -> None:
    lat, lon = _interior("RUSSELL")
    geo = FakeGeocoder(lat, lon)
    a = check_address(checker, "2700 BLOCK W MADISON ST", "40211", geocoder=geo)
    assert geo.calls == [(["2700 BLOCK W MADISON ST"], ["40211"])]
    assert a["inside"] is True and a["neighborhood"] == "RUSSELL"
    assert a["match_type"] == "block" and a["score"] == 0.9
    assert a["lat"] == pytest.approx(lat) and a["lon"] == pytest.approx(lon)


@pytest.mark.parametrize("address,match", [("1 NOWHERE RD", "street not in the reference"),
                                           ("   ", "empty")])
def test_unmatched_or_empty_address_is_an_input_error(checker: ZoneChecker, address: str,
                                                      match: str) -> None:
    with pytest.raises(ZoneInputError, match=match):
        check_address(checker, address, geocoder=FakeGeocoder(0, 0))


# --- the CLI --------------------------------------------------------------------------------------

@pytest.fixture
def zone_cli(monkeypatch: pytest.MonkeyPatch):
    """cli.main with only the zone commands registered (other helpers' modules may be absent)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("zone",))
    return cli.main


def test_zone_is_registered_in_the_cli() -> None:
    assert "zone" in cli.COMMAND_MODULES


def test_cli_check_json(zone_cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert zone_cli(["zone", "check", "--lat", "38.2587", "--lon", "-85.7930", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"inside", "neighborhood", "distance_to_boundary_ft", "near_boundary",
                        "zone_version"}
    assert out["inside"] is True and out["neighborhood"] == "RUSSELL"


def test_cli_check_text_outside_exit_0(zone_cli, capsys: pytest.CaptureFixture[str]) -> None:
    lat, lon = _interior("SHAWNEE")
    assert zone_cli(["zone", "check", "--lat", str(lat), "--lon", str(lon)]) == 0
    assert capsys.readouterr().out.startswith("OUTSIDE the LEAD pilot zone (SHAWNEE)")


def test_cli_address_path(zone_cli, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    lat, lon = _interior("PORTLAND")
    monkeypatch.setattr("geo_lead.zone.default_geocoder", lambda: FakeGeocoder(lat, lon))
    assert zone_cli(["zone", "check", "--address", "2700 BLOCK W MADISON ST", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"lon", "lat", "match_type"} <= set(out)
    assert out["neighborhood"] == "PORTLAND" and out["match_type"] == "block"
    assert zone_cli(["zone", "check", "--address", "1 NOWHERE RD"]) == 2
    assert "could not be located" in capsys.readouterr().err


def test_cli_notes_swapped_coordinates(zone_cli, capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 17: a swapped pair is answered "far outside Jefferson County — swapped?", not
    # "OUTSIDE, 317,000,803 ft from the boundary" (it was exit 0 with that answer before).
    assert zone_cli(["zone", "check", "--lat=-85.7930", "--lon=38.2587", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "far outside Jefferson County — swapped?" in captured.err
    assert "try lat 38.2587, lon -85.793" in captured.err


@pytest.mark.parametrize("argv,match", [
    (["--lat", "98", "--lon", "-85.79"], "out of range"),
    (["--lat", "x", "--lon", "-85.79"], "not a number"),
    (["--lat", "38.25"], "longitude (lon) is missing"),
    ([], "nothing to check"),
    (["--lat", "38.25", "--lon", "-85.79", "--address", "1 MAIN ST"], "not both"),
])
def test_cli_bad_input_exit_2_with_message(zone_cli, capsys: pytest.CaptureFixture[str],
                                           argv: list[str], match: str) -> None:
    assert zone_cli(["zone", "check", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_cold_cli_imports_no_heavy_modules(tmp_path: Path) -> None:
    """The real ``geo-lead`` in a cold process: the zone check path (every command module is
    registered) never imports geopandas, pandas, fastapi or uvicorn."""
    code = ("import sys; from geo_lead import cli; "
            "rc = cli.main(['zone', 'check', '--lat', '38.2587', '--lon', '-85.7930', '--json']); "
            "heavy = sorted(m for m in ('geopandas', 'pandas', 'fastapi', 'uvicorn', 'pyogrio') "
            "if m in sys.modules); print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(settings.PROJECT_ROOT),
                                             "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert json.loads(proc.stdout.split("HEAVY")[0])["inside"] is True


# --- the real geocoder (geo_lead.geocode, offline reference shipped in data/reference) ----------

@pytest.fixture(scope="module")
def geocoder():
    geocode = pytest.importorskip("geo_lead.geocode")
    return geocode.Geocoder()


def test_real_geocoder_address_path(checker: ZoneChecker, geocoder) -> None:
    a = check_address(checker, "2700 BLOCK W MADISON ST", geocoder=geocoder)
    assert a["match_type"] != "unmatched" and 0 < a["score"] <= 1
    # same answer as checking the geocoded point directly
    assert {k: a[k] for k in ("inside", "neighborhood", "distance_to_boundary_ft")} == {
        k: v for k, v in checker.check(a["lat"], a["lon"]).to_dict().items()
        if k in ("inside", "neighborhood", "distance_to_boundary_ft")}
    # independent of the zone polygon: the LOJIC Russell polygon holds the geocoded point
    assert _neighborhood("RUSSELL").contains(shapely.Point(a["lon"], a["lat"])) == (
        a["neighborhood"] == "RUSSELL")


def test_real_cli_address_and_unmatched(tmp_path: Path) -> None:
    pytest.importorskip("geo_lead.geocode")
    env = {"PYTHONPATH": str(settings.PROJECT_ROOT), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "geo_lead", "zone", "check", "--address",
                         "2700 BLOCK W MADISON ST", "--json"], capture_output=True, text=True,
                        cwd=tmp_path, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert {"inside", "neighborhood", "distance_to_boundary_ft", "near_boundary", "zone_version",
            "lon", "lat", "match_type"} <= set(out)
    bad = subprocess.run([sys.executable, "-m", "geo_lead", "zone", "check", "--address",
                          "99999 NOWHERE BLVD"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=120)
    assert bad.returncode == 2
    assert "could not be located" in bad.stderr and "Traceback" not in bad.stderr
