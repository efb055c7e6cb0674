"""The zone-check web page: one self-contained HTML file (offline) or the service's ``/`` page.

The template ``geo_lead/static/zone/zone_check.html`` carries the whole client: the
EPSG:2246 projection (Lambert conformal conic on GRS80, as pyproj does it), even-odd
point-in-polygon and point-to-segment distance in JavaScript, browser geolocation, a small SVG
sketch of the zone with the point. This module embeds the data it needs:

* the zone polygons in lon/lat (inside test) and in EPSG:2246 feet (distance to boundary,
  projected here by pyproj so the browser only projects the query point);
* the member neighborhoods and every LOJIC neighborhood (to name the neighborhood of an
  outside point), simplified to ``NEIGHBORHOOD_SIMPLIFY_DEG`` to keep the file small;
* the near-boundary tolerance and the zone version;
* offline only: the street index of `geo_lead.zone_streets` (the geocoder's answers for house
  numbers, hundred-blocks and intersections within about a mile of the zone, and the
  normaliser's tables), so typed addresses there answer as ``geo-lead zone check --address``
  does, with no network.

In ``offline`` mode the page answers with no network at all; in ``service`` mode (served by
``geo_lead.zone_service`` at ``/``) it asks ``/zone`` for addresses and imports nothing of the
geocoder here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geo_lead import settings
from geo_lead.zone import ZoneChecker

log = logging.getLogger(__name__)

#: Neighborhood outlines are only used to *name* an outside point; 1e-5 degrees is ~3 ft.
NEIGHBORHOOD_SIMPLIFY_DEG = 1e-5
MODES = ("offline", "service")
#: Keys of the street index the page reads (the rest, e.g. ``counts``, stays in the cache).
STREET_INDEX_KEYS = ("radius_ft", "tolerance_ft", "relative_tolerance", "hedge_ft", "hedge_beyond_ft",
                     "origin", "curve", "normalize", "match_types",
                     "streets", "spellings", "numbers", "blocks", "crossings")


def _polygons(geom: shapely.Geometry, ndigits: int) -> list[list[list[list[float]]]]:
    """Polygon/MultiPolygon -> [[ring coords...], ...] per polygon, rounded."""
    out = []
    for part in shapely.get_parts(geom):
        if part.geom_type != "Polygon" or part.is_empty:
            continue
        rings = [part.exterior, *part.interiors]
        out.append([np.round(shapely.get_coordinates(r), ndigits).tolist() for r in rings])
    return out


def page_data(checker: ZoneChecker, streets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON the page embeds (see the module docstring); `streets`: a street index
    (`geo_lead.zone_streets.street_index`) or None (no offline address lookup)."""
    neighborhoods = []
    for name, geom in zip(checker.neighborhood_names, checker.neighborhood_geoms, strict=True):
        if name is None:
            continue
        g = geom if name in checker.members else shapely.simplify(geom, NEIGHBORHOOD_SIMPLIFY_DEG)
        neighborhoods.append({"name": name, "polygons": _polygons(g, 6)})
    # members first, so an inside point is named by its member neighborhood
    neighborhoods.sort(key=lambda n: n["name"] not in checker.members)
    return {
        "zone_name": checker.zone_name,
        "members": list(checker.members),
        "zone_version": checker.zone_version,
        "near_boundary_ft": checker.near_boundary_ft,
        "zone": _polygons(checker.zone, 7),
        "zone_ft": _polygons(checker.zone_ft, 2),
        "bounds_ft": [round(v, 1) for v in checker.zone_ft.bounds],
        "county_bbox": list(settings.JEFFERSON_BBOX),
        "neighborhoods": neighborhoods,
        "streets": None if streets is None else {k: streets[k] for k in STREET_INDEX_KEYS},
    }


def render_page(checker: ZoneChecker, mode: str = "offline",
                streets: dict[str, Any] | bool | None = None) -> str:
    """The page as HTML text.

    Parameters
    ----------
    checker
        Supplies the zone, the neighborhoods, the tolerance and the version.
    mode
        ``"offline"`` (answers in the browser, no network) or ``"service"`` (asks ``/zone``).
    streets
        The offline street index; default (offline mode): `zone_streets.street_index` for the
        checker's zone (cached; built with the geocoder the first time, which takes a minute);
        False: a page without the offline address lookup.

    Returns
    -------
    str
        One HTML document with no external references.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "offline" and streets is None:
        from geo_lead.zone_streets import street_index

        streets = street_index(checker.zone_ft)
    template = resources.files("geo_lead").joinpath("static/zone/zone_check.html").read_text("utf-8")
    # "</" could close the <script> element early; JSON allows the escaped form.
    data = json.dumps(page_data(checker, streets if mode == "offline" and streets else None),
                      separators=(",", ":")).replace("</", "<\\/")
    return (template.replace("/*__ZONE_DATA__*/null", data, 1)
            .replace('/*__MODE__*/"offline"', json.dumps(mode), 1))


def write_page(out: Path, checker: ZoneChecker | None = None,
               streets: dict[str, Any] | bool | None = None) -> Path:
    """Write the offline page to ``out`` (parent folders created) and return the path
    (`streets`: as in `render_page`); a file that already holds this page byte for byte is
    kept as it is (`geo_lead.page_reuse.write_if_different`)."""
    return write_rendered(out, render_page(checker or ZoneChecker(), "offline", streets))


#: Distributions whose versions are in `offline_page_key` (geometry, projection, rounding).
PAGE_LIBRARIES: tuple[str, ...] = ("shapely", "numpy", "pyproj")


def page_input_files() -> list[Path]:
    """The files the default offline page is made from (`offline_page_key`), zone file first:
    ``ZoneChecker()``'s zone and neighborhoods files, every boundary file, every reference file
    the geocoder behind the street index reads, and the files under ``static/zone``."""
    import inspect

    defaults = inspect.signature(ZoneChecker).parameters
    nh = defaults["neighborhoods_file"].default
    return [Path(defaults["zone_file"].default), *([Path(nh)] if nh is not None else []),
            *sorted(settings.BOUNDARIES_DIR.glob("*.geojson")), *sorted(settings.REFERENCE_DIR.glob("*.csv")),
            *sorted(p for p in (settings.PACKAGE_DIR / "static" / "zone").rglob("*") if p.is_file())]


def offline_page_key(files: list[Path] | None = None) -> str:
    """The key of the default offline page (`render_page` of ``ZoneChecker()`` with its street
    index: what `geo_lead.pipeline.zone_page_text` renders), for `geo_lead.page_reuse`.

    It hashes every input of that page: `files` (default `page_input_files`; each path and its
    bytes) and the first one's modification time (the zone file: the zone version's date when
    the file states none), the checker's default tolerance, `geo_lead.settings`' constants
    (`result_cache.settings_version`), the package's source (`result_cache.code_version`) and
    `PAGE_LIBRARIES`' versions. It costs a few milliseconds (~6 MB hashed); rendering the page
    costs a few tenths of a second.
    """
    import inspect

    from geo_lead import result_cache

    files = page_input_files() if files is None else files
    tolerance = inspect.signature(ZoneChecker).parameters["near_boundary_ft"].default
    parts: list[bytes | str] = ["zone_page", "offline", str(files[0].stat().st_mtime_ns), repr(tolerance)]
    for path in files:
        parts += [str(path), path.read_bytes()]
    return result_cache.digest([*parts, result_cache.settings_version(), result_cache.code_version(),
                                result_cache.library_versions(*PAGE_LIBRARIES)])


def write_kept(out: Path, key: str, render: Callable[[], str]) -> Path:
    """Write ``render()`` to ``out`` unless it holds the page of `key` already (then `render`
    is not called: `geo_lead.page_reuse.write_if_changed`); returns the path."""
    from geo_lead.page_reuse import write_if_changed

    out = Path(out)
    if write_if_changed(out, key, render):
        log.info("wrote %s (%d bytes)", out, out.stat().st_size)
    return out


def write_rendered(out: Path, text: str) -> Path:
    """Write the page `text` (`render_page`'s) to ``out`` and return the path; a file that
    already holds it byte for byte is kept as it is (`geo_lead.page_reuse.write_if_different`)."""
    from geo_lead.page_reuse import write_if_different

    out = Path(out)
    # atomic, and a file that already is this page is left as it is
    if write_if_different(out, text):
        log.info("wrote %s (%d bytes)", out, out.stat().st_size)
    return out
