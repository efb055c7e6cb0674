"""The maps and the report in a real headless Chromium, opened from file:// with the network blocked.

Uses the `offline_page` fixture (tests/conftest.py): every request that is not file:/data:/blob:
is aborted and recorded. Skips with a clear reason when Chromium or Playwright is missing.
Inputs: the TEST FIXTURE layers of tests/test_maps.py (real boundaries, made-up numbers).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_maps import map_inputs

from geo_lead import maps, offline

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    inputs = map_inputs()
    out = tmp_path_factory.mktemp("maps")
    site = maps.build_site_map(maps.SiteMapInputs(inputs["scores"], inputs["kde"], inputs["gistar"], inputs["zones"],
                                                  inputs["records"], neighborhoods=inputs["neighborhoods"],
                                                  first_division=inputs["first_division"]))
    timeline = maps.build_timeline_map(inputs["records"], inputs["scores"], name_col="neighborhood")
    return {"site": offline.save_map(site, out / "site_selection.html"),
            "timeline": offline.save_map(timeline, out / "timeline.html"),
            "empty": offline.save_map(maps.build_site_map(), out / "empty.html")}


def _open(page: object, path: Path) -> None:
    page.goto(path.as_uri(), wait_until="load")  # type: ignore[attr-defined]
    page.wait_for_selector(".leaflet-container")  # type: ignore[attr-defined]


def test_site_map_renders_offline(offline_page: object, pages: dict[str, Path], tmp_path: Path) -> None:
    page = offline_page
    _open(page, pages["site"])
    page.wait_for_selector(".geo-lead-score")
    # layers in the DOM: score polygons, zone outlines, clusters; legend and notes shown
    assert page.locator("path.geo-lead-score").count() == 90
    for role in ("pilot", "best", "comparison", "first_division"):
        assert page.locator(f"path.geo-lead-zone-{role}").count() >= 1, role
    assert page.locator(".marker-cluster, path.geo-lead-point").count() > 0
    assert page.locator(".geo-lead-legend").is_visible()
    assert "Neighborhoods by score" in page.inner_text(".geo-lead-legend")
    assert "not geocoded" in page.inner_text(".geo-lead-notes")
    labels = page.inner_text(".leaflet-control-layers")
    for name in ("Kernel density surface", "Gi* hot/cold spots", "Records by block point", "Comparison area"):
        assert name in labels
    # turn on the hidden layers: they draw
    page.get_by_text("Kernel density surface").click()
    page.get_by_text("Gi* hot/cold spots (neighborhoods)").click()
    assert page.locator("path.geo-lead-kde").count() > 0
    assert page.locator("path.geo-lead-gistar").count() > 0
    page.screenshot(path=str(tmp_path / "site_selection.png"))
    assert page.console_errors == []
    assert page.external_requests == []


def test_hostile_addresses_do_not_run(offline_page: object, pages: dict[str, Path]) -> None:
    page = offline_page
    page.add_init_script("window.__xss = 0;")
    _open(page, pages["site"])
    page.wait_for_function("window.geoLeadPointsLoaded === true")
    # open the popup of every block point (as a click does) and every polygon popup/tooltip
    point_popups = page.evaluate("""() => {
        const map = Object.values(window).find(v => v && v instanceof L.Map);
        const out = [];
        map.eachLayer(l => {
            if (l instanceof L.MarkerClusterGroup) {
                l.getLayers().forEach(m => {
                    l.fire('click', {layer: m, latlng: m.getLatLng()});
                    const all = document.querySelectorAll('.leaflet-popup-content');
                    const c = all[all.length - 1];  // the one just opened (the old one may be fading out)
                    out.push([c ? c.innerText : '', c ? c.querySelectorAll('img, script').length : -1]);
                });
            }
        });
        map.eachLayer(l => {
            if (l.feature && l.getPopup && l.getPopup()) { l.openPopup(); }
            if (l.getTooltip && l.getTooltip()) { l.openTooltip(); }
        });
        return out;
    }""")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__xss") == 0
    n_points = len(maps.aggregate_points(map_inputs()["records"]))
    assert len(point_popups) == n_points and all(n == 0 for _, n in point_popups)
    texts = "\n".join(t for t, _ in point_popups)
    assert "<script>window.__xss = 1</script>2700 BLOCK W MADISON ST" in texts  # shown as text
    assert '<img src=x onerror="window.__xss = 2">' in texts
    assert '<img src=y onerror="window.__xss = 3">' in texts  # hostile offence text
    assert page.locator(".leaflet-popup-content img, .leaflet-tooltip img").count() == 0
    tooltips = page.evaluate("document.body.innerText")
    assert '<img src=z onerror="window.__xss = 4">SHAWNEE' in tooltips
    assert page.console_errors == []
    assert page.external_requests == []


def test_timeline_slider_changes_month(offline_page: object, pages: dict[str, Path], tmp_path: Path) -> None:
    page = offline_page
    _open(page, pages["timeline"])
    first = page.inner_text("#geo-lead-month")
    assert first == "2017-01"
    assert page.locator("path.geo-lead-timeline-areas").count() == 90
    page.locator("#geo-lead-range").fill("5")
    assert page.inner_text("#geo-lead-month") == "2017-06"
    assert page.locator("path.geo-lead-timeline-point").count() > 0
    assert page.locator(".geo-lead-legend").is_visible()
    page.screenshot(path=str(tmp_path / "timeline.png"))
    assert page.console_errors == []
    assert page.external_requests == []


def test_empty_map_says_what_is_missing(offline_page: object, pages: dict[str, Path]) -> None:
    page = offline_page
    _open(page, pages["empty"])
    assert "No neighborhood scores" in page.inner_text(".geo-lead-notes")
    assert page.console_errors == []
    assert page.external_requests == []


def test_report_renders_offline(offline_page: object, tmp_path: Path) -> None:
    from geo_lead import report

    inputs = map_inputs()
    recs = inputs["records"].assign(source_file="fixture.csv", source="crime_pre2023")
    path = tmp_path / "report.html"
    path.write_text(report.build_report_html({
        "store": "fixture.gpkg", "records": recs, "rejects": 0, "scores": inputs["scores"],
        "zones": inputs["zones"], "site_result": {"verdict": "FIXTURE verdict", "k": 2}}), encoding="utf-8")
    page = offline_page
    page.goto(path.as_uri(), wait_until="load")
    widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 3 and all(w > 100 for w in widths)
    assert "Ranked neighborhoods" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert page.console_errors == []
    assert page.external_requests == []


def test_tiles_page_asks_only_for_osm_tiles(offline_page: object, tmp_path: Path) -> None:
    """--tiles: scripts are still inlined; the only requests are basemap tiles (blocked here)."""
    path = offline.save_map(maps.build_site_map(tiles=True), tmp_path / "tiles.html")
    page = offline_page
    _open(page, path)
    page.wait_for_timeout(300)
    assert page.external_requests, "a basemap was asked for"
    assert all(u.startswith("https://tile.openstreetmap.org/") for u in page.external_requests)
