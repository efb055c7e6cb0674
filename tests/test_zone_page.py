"""The offline zone-check page: one self-contained file, answers in the browser, no network.

Browser tests open the written file from file:// in headless Chromium with the network
blocked (the ``offline_page`` fixture records and aborts any non-file request). Geolocation is
mocked with Playwright's real mechanism (``context.set_geolocation`` +
``grant_permissions(["geolocation"])``), which Chromium honours on file:// pages; no JS stub
of ``navigator.geolocation`` is needed. The JavaScript answers are checked against
pyproj (projection) and against the Python ZoneChecker on random points.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from geo_lead import cli, settings
from geo_lead.zone import ZoneChecker
from geo_lead.zone_page import page_data, render_page, write_page


@pytest.fixture(scope="module")
def checker() -> ZoneChecker:
    return ZoneChecker()


@pytest.fixture(scope="module")
def page_file(checker: ZoneChecker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_page(tmp_path_factory.mktemp("page") / "maps" / "zone_check.html", checker)


def test_page_is_self_contained(page_file: Path) -> None:
    html = page_file.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    assert '"offline"' in html
    assert page_file.stat().st_size < 1_000_000  # fine on a phone


def test_page_data_has_zone_members_and_tolerance(checker: ZoneChecker) -> None:
    data = page_data(checker)
    assert data["members"] == ["RUSSELL", "PORTLAND"]
    assert data["near_boundary_ft"] == settings.NEAR_BOUNDARY_FT
    assert data["zone_version"] == checker.zone_version
    assert {n["name"] for n in data["neighborhoods"][:2]} == {"RUSSELL", "PORTLAND"}
    rebuilt = shapely.Polygon(data["zone"][0][0], data["zone"][0][1:])
    assert rebuilt.symmetric_difference(checker.zone).area < 1e-12


def test_script_end_tag_in_data_cannot_break_out(tmp_path: Path) -> None:
    zone = tmp_path / "z.geojson"
    zone.write_text(json.dumps({"type": "Feature", "properties": {"name": "</script><b>x"},
                                "geometry": {"type": "Polygon", "coordinates": [[
                                    [-85.8, 38.25], [-85.78, 38.25], [-85.78, 38.27],
                                    [-85.8, 38.25]]]}}))
    html = render_page(ZoneChecker(zone, None), streets=False)  # (no street index for this zone)
    assert "</script><b>" not in html


def test_cli_page_writes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("zone",))
    out = tmp_path / "m" / "zone_check.html"
    assert cli.main(["zone", "page", "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out


# --- in the browser ---------------------------------------------------------------------------

def _open(page: Any, page_file: Path, lat: float | None = None, lon: float | None = None,
          accuracy_m: float = 10.0) -> None:
    if lat is not None:
        page.context.grant_permissions(["geolocation"])
        page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": accuracy_m})
    page.goto(page_file.as_uri())


def _wait_answer(page: Any) -> str:
    page.wait_for_function("['inside','outside','error'].includes(document.getElementById('answer').className)")
    return page.eval_on_selector("#answer", "e => e.className")


@pytest.mark.browser
@pytest.mark.parametrize("place,expected_class,expected_name", [
    ((38.2587, -85.7930), "inside", "RUSSELL"),
    ((38.2680, -85.7926), "inside", "PORTLAND"),
    ((38.2634, -85.8179), "outside", "SHAWNEE"),
    ((38.2529, -85.7558), "outside", "CENTRAL BUSINESS DISTRICT"),
    ((38.2776, -85.7372), "outside", None),  # Jeffersonville, Indiana
])
def test_use_my_location_offline(offline_page: Any, page_file: Path, place: tuple[float, float],
                                 expected_class: str, expected_name: str | None) -> None:
    _open(offline_page, page_file, *place)
    offline_page.click("#locate")
    assert _wait_answer(offline_page) == expected_class
    detail = offline_page.inner_text("#detail")
    if expected_name:
        assert detail.startswith(expected_name)
    else:
        assert detail.startswith(tuple("0123456789"))  # no neighborhood name, just the distance
    assert offline_page.external_requests == []
    assert offline_page.console_errors == []


@pytest.mark.browser
def test_near_boundary_warning_and_gps_accuracy(offline_page: Any, page_file: Path,
                                                checker: ZoneChecker) -> None:
    lon, lat = shapely.get_coordinates(checker.zone.exterior)[100]  # on the boundary
    _open(offline_page, page_file, float(lat), float(lon))
    offline_page.click("#locate")
    assert _wait_answer(offline_page) == "inside"
    assert offline_page.is_visible("#near")
    assert "NEAR THE BOUNDARY" in offline_page.inner_text("#near")
    # 500 ft inside Russell's interior point is not near, unless the GPS fix is worse than that
    lat2, lon2 = 38.2587, -85.7930  # 3,274 ft from the boundary
    _open(offline_page, page_file, lat2, lon2, accuracy_m=2000.0)
    offline_page.click("#locate")
    assert _wait_answer(offline_page) == "inside"
    assert offline_page.is_visible("#near")  # ±6,562 ft GPS fix: cannot be sure
    assert offline_page.external_requests == []


@pytest.mark.browser
def test_typed_coordinate_and_bad_input(offline_page: Any, page_file: Path) -> None:
    _open(offline_page, page_file)
    assert offline_page.is_visible("#address-form")  # offline street index (tests/test_zone_streets.py)
    offline_page.fill("#lat", "38.2587")
    offline_page.fill("#lon", "-85.7930")
    offline_page.click("#coord-form button")
    assert _wait_answer(offline_page) == "inside"
    offline_page.fill("#lat", "98")
    offline_page.click("#coord-form button")
    assert _wait_answer(offline_page) == "error"
    assert "out of range" in offline_page.inner_text("#detail")
    offline_page.fill("#lat", "abc")
    offline_page.click("#coord-form button")
    assert "not a number" in offline_page.inner_text("#detail")
    assert offline_page.external_requests == [] and offline_page.console_errors == []


@pytest.mark.browser
def test_geolocation_denied_says_so(offline_page: Any, page_file: Path) -> None:
    _open(offline_page, page_file)  # no permission granted
    offline_page.click("#locate")
    assert _wait_answer(offline_page) == "error"
    assert "Location unavailable" in offline_page.inner_text("#detail")


@pytest.mark.browser
def test_javascript_agrees_with_python(offline_page: Any, page_file: Path,
                                       checker: ZoneChecker) -> None:
    """The JS projection equals pyproj's; JS answers equal ZoneChecker's on random points."""
    _open(offline_page, page_file)
    rng = np.random.default_rng(11)
    minx, miny, maxx, maxy = checker.zone.bounds
    lon = rng.uniform(minx - 0.02, maxx + 0.02, 600)
    lat = rng.uniform(miny - 0.02, maxy + 0.02, 600)
    pts = [[float(a), float(b)] for a, b in zip(lat, lon, strict=True)]
    js = offline_page.evaluate(
        "pts => pts.map(([la, lo]) => [LCC(lo, la), checkPoint(la, lo)])", pts)
    to_ft = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True)
    x_ft, y_ft = to_ft.transform(lon, lat)
    js_xy = np.array([r[0] for r in js])
    assert np.abs(js_xy[:, 0] - x_ft).max() < 0.01 and np.abs(js_xy[:, 1] - y_ft).max() < 0.01
    py = checker.check_many(lat, lon)
    js_inside = np.array([r[1]["inside"] for r in js])
    js_dist = np.array([r[1]["distance_to_boundary_ft"] for r in js])
    assert (js_inside == py.inside).all()
    assert np.abs(js_dist - py.distance_to_boundary_ft).max() < 0.06  # JS rounds to 0.1 ft
    assert ([r[1]["near_boundary"] for r in js] == py.near_boundary).all()
    # names: outlines of non-member neighborhoods are simplified (~3 ft) in the page, so
    # compare points more than ~30 ft from every neighborhood edge
    edges = shapely.union_all([g.boundary for g in checker.neighborhood_geoms])
    clear = ~shapely.dwithin(edges, shapely.points(lon, lat), 1e-4)
    js_names = np.array([r[1]["neighborhood"] for r in js], dtype=object)
    assert clear.sum() > 400
    assert (js_names[clear] == py.neighborhood[clear]).all()


@pytest.mark.browser
def test_page_screenshot_renders_zone_sketch(offline_page: Any, page_file: Path,
                                             tmp_path: Path) -> None:
    _open(offline_page, page_file, 38.2587, -85.7930)
    offline_page.set_viewport_size({"width": 390, "height": 844})
    offline_page.click("#locate")
    _wait_answer(offline_page)
    assert offline_page.locator("#map path").count() >= 3  # zone + two member outlines
    assert offline_page.locator("#map circle").count() == 1
    offline_page.screenshot(path=str(tmp_path / "zone_check.png"), full_page=True)
