"""Interactive folium maps: the site-selection map and the monthly timeline map.

This module assembles the pages; the work is in three others: `geo_lead.map_data` (store
reads), `geo_lead.map_layers` (pure layer builders: frames in, GeoJSON and escaped HTML out)
and `geo_lead.map_elements` (the folium elements, each one call into a static script of
``geo_lead/static/maps``). Every layer is optional: a missing input is skipped and said in a
note on the page. Data strings are HTML-escaped before they reach the page, and every JSON
blob embedded in a ``<script>`` has ``<``, ``>`` and ``&`` written as ``\\u003c``-style
escapes, so no record can close the script or inject markup.

Incidents are shown aggregated to their geocoded point (one marker per block point with the
record count and the offence mix); person fields never reach the maps. The only scripts a
page needs are Leaflet and Leaflet.markercluster (vendored in ``geo_lead/static``, inlined by
`geo_lead.offline`) and the maps' own static scripts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from geo_lead import settings
from geo_lead.cartography import (  # re-exported: maps.SCORE_COLORS etc. keep working
    GISTAR_COLORS,
    KDE_COLORS,
    NO_DATA_COLOR,
    SCORE_COLORS,
    ZONE_STYLES,
    class_breaks,
    color_for,
    for_display,
    for_figure,
)
from geo_lead.map_data import (  # re-exported: the store reads
    RECORD_MAP_COLUMNS,
    context_layers,
    indicator_records,
    read_layer,
    read_map_inputs,
    read_map_records,
    stored_parameters,
)
from geo_lead.map_layers import (  # re-exported: the pure layer builders
    COLUMN_WORDS,
    COORD_DECIMALS,
    FIT_MAX_GROWTH,
    LABEL_ZOOM_AREA,
    LABEL_ZOOM_OTHER,
    MIX_FLAGS,
    SiteMapInputs,
    _range_labels,
    aggregate_points,
    esc,
    label_rows,
    monthly_counts,
    parse_when,
    point_rows,
    score_popup,
    script_json,
    zone_label,
)
from geo_lead.map_plans import Element, MapPlan, site_plan, timeline_plan

if TYPE_CHECKING:
    import folium

    from geo_lead.store import Store

__all__ = [
    "COLUMN_WORDS", "COORD_DECIMALS", "FIT_MAX_GROWTH", "GISTAR_COLORS", "KDE_COLORS", "LABEL_ZOOM_AREA",
    "LABEL_ZOOM_OTHER", "MAP_PAGES", "MIX_FLAGS", "NO_DATA_COLOR", "RECORD_MAP_COLUMNS", "SCORE_COLORS",
    "TILES_SUFFIX", "ZONE_STYLES", "SiteMapInputs", "_range_labels", "aggregate_points", "build_site_map",
    "build_timeline_map", "class_breaks", "color_for", "context_layers", "esc", "for_display", "for_figure",
    "indicator_records", "label_rows", "monthly_counts", "parse_when", "point_rows", "read_layer",
    "read_map_inputs", "read_map_records", "score_popup", "script_json", "stored_parameters", "write_maps",
    "zone_label",
]

log = logging.getLogger(__name__)


def build_map(plan: MapPlan, texts: Sequence[str] | None = None) -> folium.Map:
    """The folium map of `plan` (`geo_lead.map_plans`), carrying `texts` (default: the plan's
    own, ``plan.given``; `write_maps` gives slot tokens to render a page to fill)."""
    import folium

    from geo_lead.map_elements import (
        Control,
        DataLayer,
        LabelLayer,
        Layout,
        PointLayer,
        TimelineElement,
        new_map,
    )

    text = list(plan.given if texts is None else texts)
    m = new_map(plan.tiles, plan.title)
    control: folium.LayerControl | None = None
    labels: LabelLayer | None = None
    for e in plan.elements:
        slot = [text[i] for i in e.slots]
        if e.kind == "DataLayer":
            base_style, css_class, show, interactive = e.args[:4]
            DataLayer(slot[0], _layer_name(e, slot), base_style, css_class, show, interactive).add_to(m)
        elif e.kind == "PointLayer":
            PointLayer(slot[0], _layer_name(e, slot)).add_to(m)
        elif e.kind == "LabelLayer":
            labels = LabelLayer(slot[0])
            labels.add_to(m)
        elif e.kind == "LayerControl":
            control = folium.LayerControl(position="topleft", collapsed=False)
            control.add_to(m)
        elif e.kind == "Control":
            css_class, position, summary = e.args
            Control(slot[0], css_class, position, summary).add_to(m)
        elif e.kind == "Timeline":
            TimelineElement(slot[0]).add_to(m)
        elif e.kind == "Layout":
            Layout(slot[0], control, labels).add_to(m)
        else:
            raise ValueError(f"unknown map element kind {e.kind!r}")
    return m


def _layer_name(e: Element, slot: Sequence[str]) -> str:
    """A layer element's name: its second text when a layer control writes it, else its last
    argument (`geo_lead.map_plans.Element`)."""
    return slot[1] if len(slot) > 1 else str(e.args[-1])


# --- the site-selection map ---------------------------------------------------------------------
def build_site_map(inputs: SiteMapInputs | None = None, *, tiles: bool = False, score_column: str = "score",
                   notes: Sequence[str] = (), title: str = "LEAD pilot site selection",
                   parameters: str = "") -> folium.Map:
    """The site-selection map; every input is optional (a missing one is noted on the page).

    Parameters
    ----------
    inputs
        The layers to draw (`geo_lead.map_layers.SiteMapInputs`); None: an empty map whose
        notes say what to run.
    tiles
        Add an OpenStreetMap basemap (the page then loads tiles from the internet).
    score_column
        The ``scores`` column that colours the choropleth.
    notes
        Extra lines for the notes box (already plain text; escaped here).
    title
        The page's title (plain text).
    parameters
        One plain-text line naming the parameters the layers were made with (indicator,
        window, area, k, ...), shown under the title.

    Returns
    -------
    folium.Map
        Render with `geo_lead.offline.save_map` to get a page that sends no request.
    """
    return build_map(site_plan(inputs, tiles=tiles, score_column=score_column, notes=notes, title=title,
                               parameters=parameters))


# --- the timeline map -------------------------------------------------------------------------
def build_timeline_map(records: pd.DataFrame | None, areas: gpd.GeoDataFrame | None, *,
                       name_col: str = "NH_NAME", tiles: bool = False,
                       title: str = "LEAD records by month", notes: Sequence[str] = (),
                       parameters: str = "", rule: str = settings.BOUNDARY_RULE) -> folium.Map:
    """A map of monthly records with a time slider (choropleth by area + block points).

    Parameters
    ----------
    records
        Records with ``occurred_at``, ``lon``, ``lat`` and optionally ``neighborhood``,
        ``boundary_units``, ``weight``, ``address_raw``.
    areas
        Polygons to count in (neighborhoods or the ``scores`` layer) with a `name_col`.
    rule
        The boundary rule the areas count by (`geo_lead.map_layers.monthly_counts`): the
        run's ``boundary_rule``.
    """
    return build_map(timeline_plan(records, areas, name_col=name_col, tiles=tiles, title=title, notes=notes,
                                   parameters=parameters, rule=rule))


# --- store -> files ---------------------------------------------------------------------------
#: Page name -> file stem; ``--tiles`` pages get a ``_tiles`` suffix and never replace these.
MAP_PAGES: tuple[str, ...] = ("site_selection", "timeline")
TILES_SUFFIX: str = "_tiles"


def write_maps(store: Store, out_dir: Path = settings.MAPS_DIR, offline: bool = True,
               tiles: bool = False, prefetched: tuple[Any, int | None, str | None] | None = None,
               ) -> dict[str, Path]:
    """Write ``site_selection.html`` and ``timeline.html`` from the store.

    A page whose `page_key` (what it shows, the code and libraries that draw it) is the one
    recorded for its file, and whose file is intact, is kept as it is and not rendered
    (`geo_lead.page_reuse.write_if_changed`). Any other page is filled when it can be, from a
    kept rendering of the same layers with slots for its notes and parameters line (a rerun that
    changed only those), else from a kept rendering of the same shape with slots for all its
    texts (`geo_lead.map_plans`: a rerun that changed the layers' data); either way without
    folium (`_page`, `geo_lead.page_reuse.filled_page`). A new shape is rendered.

    Parameters
    ----------
    store
        An open `geo_lead.store.Store`.
    out_dir
        Output folder (created).
    offline
        Inline Leaflet and its plugins so the page sends no request (the default).
    tiles
        Also write ``site_selection_tiles.html`` and ``timeline_tiles.html`` with an
        OpenStreetMap basemap (those pages load tiles from the internet when opened); the
        offline pages are written as always, never replaced by them.
    prefetched
        `read_map_records(store, scores, flagged_only=True)` read earlier (optional).

    Returns
    -------
    dict
        ``{"site_selection": path, "timeline": path}`` (+ ``site_selection_tiles``,
        ``timeline_tiles`` with `tiles`).

    Raises
    ------
    geo_lead.parameters.MixedResultsError
        When the stored scores, hot spots and site result were made with different
        parameters (the message says what to rerun); nothing is written.
    """
    from geo_lead.figure_cache import data_digest
    from geo_lead.page_reuse import is_current
    from geo_lead.parameters import consistent_parameters, describe

    params = consistent_parameters(stored_parameters(store), "maps")
    line = describe(params) if params else ""
    inputs = read_map_inputs(store, flagged_only=True, prefetched=prefetched)
    ctx = context_layers()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if inputs.get("records_total") is not None:  # read already filtered to the indicator
        records = inputs["records"]
        notes = [f"Records shown: the {len(records):,} with the '{inputs['indicator']}' flag (the scores' "
                 f"indicator) of {inputs['records_total']:,} in the store."] if inputs["records_total"] else []
    else:
        records, notes = indicator_records(inputs["records"], inputs["scores"])
    areas = inputs["scores"] if inputs["scores"] is not None else ctx["neighborhoods"]
    name_col = "neighborhood" if inputs["scores"] is not None else "NH_NAME"
    layers = SiteMapInputs(inputs["scores"], inputs["kde"], inputs["gistar"], inputs["zones"], records,
                           gistar_grid=inputs["gistar_grid"], neighborhoods=ctx["neighborhoods"],
                           first_division=ctx["first_division"])
    rule = str((params or {}).get("boundary_rule") or settings.BOUNDARY_RULE)
    paths: dict[str, Path] = {}
    shown = data_digest(records)  # both pages show the records: hashed once
    # what each page shows but its notes and parameters line (hashed once): the rest of its key
    site_rest = data_digest(layers.scores, layers.kde, layers.gistar, layers.zones, shown, layers.gistar_grid,
                            layers.neighborhoods, layers.first_division)
    timeline_rest = data_digest(shown, areas, name_col, rule)
    texts = [*notes, line]  # what a rerun that changes no layer changes (counts, the frames' digest)
    pending: list[_Page] = []
    for with_tiles in (False, True) if tiles else (False,):
        suffix = TILES_SUFFIX if with_tiles else ""

        def site(texts: Sequence[str], with_tiles: bool = with_tiles) -> MapPlan:
            return site_plan(layers, tiles=with_tiles, notes=texts[:-1], parameters=texts[-1])

        def monthly(texts: Sequence[str], with_tiles: bool = with_tiles) -> MapPlan:
            return timeline_plan(records, areas, name_col=name_col, tiles=with_tiles, notes=texts[:-1],
                                 parameters=texts[-1], rule=rule)

        for name, plan_of, rest in (("site_selection", site, site_rest), ("timeline", monthly, timeline_rest)):
            path = out_dir / f"{name}{suffix}.html"
            key = page_key(name, with_tiles, offline, rest, notes, line)
            if not is_current(path, key):
                slotted = page_key(name, with_tiles, offline, rest, "slots", len(texts))
                pending.append(_page(name, path, key, slotted, texts, plan_of, offline))
            paths[name + suffix] = path
    _write_pages(pending)
    log.info("maps written: %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _page(name: str, path: Path, key: str, slotted: str, texts: Sequence[str],
          plan_of: Callable[[Sequence[str]], MapPlan], offline: bool) -> _Page:
    """A page to write, made at the cheapest level that gives it:

    1. filled from a kept rendering of the same layers with slots for its notes and parameters
       line (`slotted`: a rerun that changed only those, e.g. the store's record count, makes
       no plan);
    2. else from its plan (`plan_of`, `_planned_text`): filled from a kept rendering of the same
       shape with slots for every text (a rerun that changed the layers' data); the plan with
       slots for the notes and line is made here, and its fill kept for level 1;
    3. else rendered through folium (`_Page.renders`: `_write_pages` renders two such pages on
       two cores).

    A note or line with Jinja syntax skips level 1 (folium's elements would compile it: the
    plan is then not fillable and the page is rendered, as a fresh build would); so does a run
    with the result cache off (nothing kept: planned and rendered).
    """
    from geo_lead import result_cache
    from geo_lead.map_layers import JINJA_ACTIVE
    from geo_lead.page_reuse import can_fill, filled_page, slot_tokens

    if not result_cache.enabled() or any(s in t for t in texts for s in JINJA_ACTIVE):
        plan = plan_of(texts)
        return _Page(path, key, lambda: _planned_text(name, plan, offline), _renders(name, plan, offline))
    written = [page_text(t) for t in texts]

    def planned(tokens: Sequence[str]) -> str:
        return _planned_text(name, plan_of(tokens), offline)

    if can_fill(slotted, texts):
        return _Page(path, key, lambda: filled_page(slotted, texts, written, planned), False)
    tokens = slot_tokens(len(texts), slotted)
    plan = plan_of(tokens)

    def render(given: Sequence[str]) -> str:
        return _planned_text(name, plan, offline) if list(given) == tokens else planned(given)

    return _Page(path, key, lambda: filled_page(slotted, texts, written, render), _renders(name, plan, offline))


def _shape_key(name: str, plan: MapPlan, offline: bool) -> str:
    """The key of page `name`'s rendering with slots for all the texts of `plan`: its shape."""
    return page_key(name, "shape", offline, plan.shape())


def _renders(name: str, plan: MapPlan, offline: bool) -> bool:
    """True when `_planned_text` of `plan` will likely render through folium (a guess for
    scheduling, `page_reuse.can_fill`)."""
    from geo_lead.page_reuse import can_fill

    return not plan.fillable() or not can_fill(_shape_key(name, plan, offline), plan.given)


def _planned_text(name: str, plan: MapPlan, offline: bool) -> str:
    """The page of `plan`: filled from a kept rendering of its shape with slot tokens when it
    can be (`geo_lead.page_reuse.filled_page`: no folium, no rendering), else rendered."""
    from geo_lead.offline import render_map
    from geo_lead.page_reuse import filled_page

    def render(texts: Sequence[str]) -> str:
        return render_map(build_map(plan, texts), offline)

    if not plan.fillable():
        return render(plan.given)
    return filled_page(_shape_key(name, plan, offline), plan.given, plan.written, render)


@dataclass(frozen=True)
class _Page:
    """A map page to write: its file, its key, what makes its text, and whether that renders
    it (no kept rendering with slots to fill)."""

    path: Path
    key: str
    text: Callable[[], str]
    renders: bool


def _write_pages(pages: Sequence[_Page]) -> None:
    """Write `pages` (`geo_lead.page_reuse.write_if_changed`); when two or more must be
    rendered, all but the first are rendered in forked children (`geo_lead.parallel.Deferred`,
    which computes here when it cannot fork) while this process renders the first: the same
    texts, on both cores (a page renders in a few tenths of a second, most of it folium and
    building the page's layers)."""
    from geo_lead.page_reuse import write_if_changed
    from geo_lead.parallel import Deferred

    rendered = [p for p in pages if p.renders]
    if len(rendered) > 1:  # folium (~0.2 s) imported once, here: the children fork with it
        import geo_lead.map_elements  # noqa: F401
    ahead = {id(p): Deferred(p.text) for p in rendered[1:]}
    for p in pages:
        job = ahead.get(id(p))
        write_if_changed(p.path, p.key, job.result if job is not None else p.text)


def page_text(text: str) -> str:
    """A note or the parameters line as the map pages write it: HTML-escaped (`esc`), inside a
    JSON string of a page script (`script_json`) -- the only way those texts reach a page."""
    return script_json(esc(text))[1:-1]


#: Modules whose source is in every map page's key (what reads, lays out, draws and writes).
MAP_SOURCES: tuple[str, ...] = ("maps.py", "map_data.py", "map_layers.py", "map_plans.py", "map_elements.py",
                                "cartography.py",
                                "offline.py", "outputs.py", "settings.py", "allocation.py", "page_reuse.py",
                                "figure_cache.py")
#: Distributions whose versions are in every map page's key.
MAP_LIBRARIES: tuple[str, ...] = ("folium", "branca", "jinja2", "markupsafe", "geopandas", "shapely", "pyproj",
                                  "numpy", "pandas")


@functools.cache
def map_code_version() -> str:
    """sha256 of `MAP_SOURCES`, every file under ``geo_lead/static`` (the pages' scripts, styles
    and the vendored Leaflet they inline) and the versions of `MAP_LIBRARIES`."""
    from geo_lead import result_cache

    static = sorted(p for p in (settings.PACKAGE_DIR / "static").rglob("*") if p.is_file())
    parts: list[bytes | str] = [result_cache.source_version(*(settings.PACKAGE_DIR / f for f in MAP_SOURCES)),
                                result_cache.library_versions(*MAP_LIBRARIES)]
    for path in static:
        parts += [path.relative_to(settings.PACKAGE_DIR).as_posix(), path.read_bytes()]
    return result_cache.digest(parts)


def page_key(name: str, *data: Any) -> str:
    """The key of map page `name` (`geo_lead.page_reuse`): the page's name, every input it
    shows (`data`, hashed by `geo_lead.figure_cache.data_digest`: the store's layers and the
    records column by column, the notes, the parameters line, the boundary rule, the tiles
    and offline switches) and `map_code_version`."""
    import sys

    from geo_lead import cartography, map_layers, result_cache
    from geo_lead.figure_cache import data_digest

    # `geo_lead.map_elements` has no constant of its own (its page-asset constants are
    # map_layers', tests/test_outputs_reuse.py): a kept page needs no folium import
    constants = result_cache.constants_version(settings, cartography, map_layers, sys.modules[__name__])
    return result_cache.digest(["map_page", name, data_digest(*data), constants, map_code_version()])
