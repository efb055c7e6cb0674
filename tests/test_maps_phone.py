"""The pages on a phone (390 x 844) and a desktop (1400 x 900) in headless Chromium, offline.

Inputs: the maps use the TEST FIXTURE layers of tests/test_maps.py (real LOJIC boundaries and
address points, made-up numbers); the report is that of a real run on the shipped 2017 sample. Every request that is not file:/data:/blob: is aborted and recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import shapely
from test_maps import map_inputs

from geo_lead import maps, offline, settings
from geo_lead.cli import main

pytestmark = pytest.mark.browser

SIZES = {"phone": (390, 844), "desktop": (1400, 900)}
MAP_JS = "Object.values(window).find(v => v && v instanceof L.Map)"
REAL_FILE = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"


@pytest.fixture(scope="module")
def inputs() -> dict[str, object]:
    return map_inputs()


@pytest.fixture(scope="module")
def pages(inputs: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("phone")
    site = maps.build_site_map(maps.SiteMapInputs(inputs["scores"], inputs["kde"], inputs["gistar"], inputs["zones"],
                                                  inputs["records"], neighborhoods=inputs["neighborhoods"],
                                                  first_division=inputs["first_division"]),
                               parameters="indicator lead_eligible \u00b7 all dates")
    timeline = maps.build_timeline_map(inputs["records"], inputs["scores"], name_col="neighborhood")
    # the report of a real run on the shipped 2017 LMPD sample (real data, real verdict)
    assert main(["run", str(REAL_FILE), "--store", str(out / "lead.gpkg"), "--out", str(out / "run")]) == 0
    return {"site": offline.save_map(site, out / "site_selection.html"),
            "timeline": offline.save_map(timeline, out / "timeline.html"), "report": out / "run" / "report.html"}


@pytest.fixture(params=list(SIZES))
def page(request: pytest.FixtureRequest, offline_page_factory: Callable[..., object]) -> object:
    w, h = SIZES[request.param]
    pg = offline_page_factory(viewport={"width": w, "height": h})
    pg.size_name = request.param
    return pg


def _open_map(pg: object, path: Path) -> None:
    pg.goto(path.as_uri(), wait_until="load")  # type: ignore[attr-defined]
    pg.wait_for_function("window.geoLeadFitted === true")  # type: ignore[attr-defined]


def _boxes(pg: object, selector: str) -> list[dict[str, float]]:
    return pg.evaluate(f"""Array.from(document.querySelectorAll({selector!r}))
        .filter(e => e.offsetParent !== null)
        .map(e => {{ const r = e.getBoundingClientRect();
                     return {{x: r.left, y: r.top, r: r.right, b: r.bottom, c: e.className}}; }})""")  # type: ignore[attr-defined]


def _overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["r"] and b["x"] < a["r"] and a["y"] < b["b"] and b["y"] < a["b"]


CONTROLS = ".leaflet-control"


@pytest.mark.parametrize("which", ["site", "timeline"])
def test_map_fits_the_study_area_at_a_sensible_zoom(page: object, pages: dict[str, Path], which: str,
                                                   inputs: dict[str, object]) -> None:
    _open_map(page, pages[which])
    zoom, bounds = page.evaluate(f"(() => {{ const m = {MAP_JS}; const b = m.getBounds(); "  # type: ignore[attr-defined]
                                 "return [m.getZoom(), [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]]; })()")
    assert 11.5 <= zoom <= 15, zoom  # was 19 on a phone (460 px of fixed padding on a 390 px screen)
    sc = inputs["scores"]
    area = sc[sc["in_area"].astype(bool)].to_crs(4326)
    view = shapely.box(*bounds)
    centre = area.union_all().representative_point()
    assert view.contains(centre)
    minx, miny, maxx, maxy = area.total_bounds
    # the study area is in view, and fills a good part of it (not a speck, not cut off)
    assert view.contains(shapely.box(minx, miny, maxx, maxy).buffer(-0.002))
    assert (maxx - minx) / (bounds[2] - bounds[0]) > 0.4
    assert page.external_requests == [] and page.console_errors == []


@pytest.mark.parametrize("which", ["site", "timeline"])
def test_controls_never_overlap(page: object, pages: dict[str, Path], which: str, tmp_path: Path) -> None:
    _open_map(page, pages[which])
    page.wait_for_timeout(200)
    small = page.size_name == "phone"
    boxes = _boxes(page, CONTROLS)
    assert len(boxes) >= 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _overlaps(a, b), (a, b)
    if which == "site":  # the title and the run's parameters sit at the top
        about = page.locator("details.geo-lead-about")
        assert about.bounding_box()["y"] < 60
        assert about.evaluate("d => d.open") is (not small)
        about.locator("summary").click() if small else None
        assert "indicator lead_eligible" in about.inner_text()
        about.locator("summary").click() if small else None
    else:
        assert "Month:" in page.inner_text(".geo-lead-slider")
    legend = page.locator("details.geo-lead-legend")
    assert legend.evaluate("d => d.open") is (not small)  # collapsed to a button on a phone
    if small:
        legend.locator("summary").click()  # open the legend: it is the only open box
        page.wait_for_timeout(100)
        assert legend.evaluate("d => d.open")
        assert page.locator("details.geo-lead-notes").evaluate("d => d.open") is False
        boxes = _boxes(page, CONTROLS)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not _overlaps(a, b), (a, b)
        w = page.viewport_size["width"]
        assert all(b["x"] >= 0 and b["r"] <= w for b in boxes)
    page.screenshot(path=str(tmp_path / f"{which}_{page.size_name}.png"))
    assert page.external_requests == [] and page.console_errors == []


def test_click_in_russell_opens_russells_numbers(page: object, pages: dict[str, Path],
                                                 inputs: dict[str, object]) -> None:
    _open_map(page, pages["site"])
    page.wait_for_function("window.geoLeadPointsLoaded === true")
    nb = inputs["neighborhoods"]
    russell = nb[nb["NH_NAME"] == "RUSSELL"].to_crs(4326).geometry.iloc[0]
    # points inside Russell (inside the pilot outline too), away from the block-point markers
    candidates = [shapely.Point(x, y) for x, y in zip(*russell.buffer(-0.0015).exterior.coords.xy, strict=False)]
    candidates = [russell.representative_point(), *candidates]
    for pt in candidates:
        xy = page.evaluate(f"(() => {{ const m = {MAP_JS}; const p = m.latLngToContainerPoint([{pt.y}, {pt.x}]); "
                           "const r = m.getContainer().getBoundingClientRect(); return [p.x + r.left, p.y + r.top]; })()")
        hit = page.evaluate(f"(() => {{ const e = document.elementFromPoint({xy[0]}, {xy[1]}); "
                            "return e ? (e.getAttribute('class') || '') : ''; })()")
        if "geo-lead-point" in hit or "marker" in hit or "label" in hit:
            continue  # a block point's own popup is right there; try another spot
        assert "geo-lead-zone" not in hit  # the outlines take no clicks
        popup = page.locator(".leaflet-popup-content")
        for _ in range(3):  # under heavy load a click can land while clusters are still redrawn
            page.mouse.click(xy[0], xy[1])
            try:
                popup.wait_for(timeout=4000)
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError; click again
                continue
        text = popup.inner_text()
        assert text.startswith("Russell") and "records" in text and "rank" in text
        break
    else:
        pytest.fail("no free spot inside Russell to click")
    assert page.console_errors == [] and page.external_requests == []


def test_neighborhood_labels_show_at_useful_zooms(page: object, pages: dict[str, Path]) -> None:
    _open_map(page, pages["site"])
    shown = page.evaluate("Array.from(document.querySelectorAll('.geo-lead-label:not(.geo-lead-off)')).map(e => e.innerText)")
    zoom = page.evaluate(f"{MAP_JS}.getZoom()")
    if zoom >= maps.LABEL_ZOOM_AREA:
        assert "Russell" in shown and "Portland" in shown
    page.evaluate(f"{MAP_JS}.setZoom(15, {{animate: false}})")
    page.wait_for_timeout(100)
    shown = page.evaluate("Array.from(document.querySelectorAll('.geo-lead-label:not(.geo-lead-off)')).map(e => e.innerText)")
    assert len(shown) > 0
    page.evaluate(f"{MAP_JS}.setZoom(11, {{animate: false}})")
    page.wait_for_timeout(100)
    assert page.locator(".geo-lead-label:not(.geo-lead-off)").count() == 0  # no clutter zoomed out


def test_report_answer_on_the_first_screen(page: object, pages: dict[str, Path], tmp_path: Path) -> None:
    page.goto(pages["report"].as_uri(), wait_until="load")
    h = page.viewport_size["height"]
    w = page.viewport_size["width"]
    for sel in ("#question", "#verdict", "#reasons", "#main-limit"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= h, (sel, box, h)
    assert page.locator("#reasons li").count() == 3
    verdict = page.inner_text("#verdict").lower()
    assert any(v in verdict for v in ("justified", "revise", "inconclusive"))
    assert any(ch.isdigit() for ch in page.inner_text("#reasons"))  # reasons carry their numbers
    assert "all dates" in page.inner_text("#parameters")
    # laid out at the screen's width (viewport meta), no sideways scrolling of the page
    assert page.evaluate("document.documentElement.scrollWidth") <= w
    links = page.evaluate("Array.from(document.querySelectorAll('#links a')).map(a => a.getAttribute('href'))")
    assert {"site_selection.html", "timeline.html", "zone_check.html"} <= set(links)
    body = page.inner_text("body")
    for raw in ("rank_low", "eb_rate_per_1000", "pei_test", "std_mean_diff", "0.9857142857142858",
                "EPSG:2246", "shared/data/README.md"):
        assert raw not in body, raw
    for term in ("EB rate", "PAI", "PEI", "Rank interval", "SMD", "FDR"):
        assert term in page.inner_text("#glossary")
    assert "Changes since the last run" in body
    page.screenshot(path=str(tmp_path / f"report_{page.size_name}.png"))
    assert page.external_requests == [] and page.console_errors == []
