"""Map pages as plain data: which elements a page holds (its shape) and the texts they carry.

A `MapPlan` is what `geo_lead.maps.build_map` turns into a folium map, split in two:

* the **shape**: the page's title, basemap switch and its elements in order, each with its
  kind (a `geo_lead.map_elements` class) and fixed arguments (layer names aside: styles, CSS
  classes, positions);
* the **texts**: every JSON blob and HTML fragment the elements carry (layer data, legends,
  notes, the parameters line, layer names, the box to fit, label rows), each in two forms --
  as the element is ``given`` it, and as the page ends up ``written`` with it.

A rerun that adds records changes the texts, rarely the shape, so a page can be made from a
rendering of its shape with slot tokens in place of the texts (`geo_lead.page_reuse.filled_page`)
without importing folium or rendering it again. Pure: no folium, no store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd

from geo_lead import settings
from geo_lead.cartography import SCORE_COLORS, for_display
from geo_lead.map_layers import (
    JINJA_ACTIVE,
    LayerSpec,
    PointSpec,
    SiteMapInputs,
    about_html,
    esc,
    label_rows,
    latlng_bounds,
    notes_html,
    outline_layer,
    script_json,
    site_labels,
    site_layers,
    study_area_outline,
    timeline,
    timeline_legend,
)


def layer_name_text(name: str) -> str:
    """A layer's name as folium's layer control writes it: Jinja's ``tojson`` filter
    (`jinja2.utils.htmlsafe_json_dumps`), without the quotes."""
    from jinja2.utils import htmlsafe_json_dumps

    return str(htmlsafe_json_dumps(name))[1:-1]


@dataclass(frozen=True)
class Element:
    """One element of a page: its `kind` (`geo_lead.maps.build_map` knows each), its fixed
    arguments (`args`, part of the page's shape) and the numbers of the texts it carries
    (`slots`, indexes into `MapPlan.given`). A layer's name is its last argument, or its
    second text when a layer control writes it."""

    kind: str
    args: tuple[Any, ...] = ()
    slots: tuple[int, ...] = ()


@dataclass
class MapPlan:
    """A map page: `title`, `tiles` (an OpenStreetMap basemap), `elements` in page order, and
    each text as its element is `given` it and as the page is `written` with it."""

    title: str
    tiles: bool
    elements: list[Element] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def json_text(self, value: Any) -> int:
        """A slot holding `script_json(value)` (the same text given and written)."""
        text = script_json(value)
        return self._slot(text, text)

    def html_text(self, html: str) -> int:
        """A slot holding an HTML fragment an element writes as JSON string content."""
        return self._slot(html, script_json(html)[1:-1])

    def name_text(self, name: str) -> int:
        """A slot holding a layer's name (written by the layer control, `layer_name_text`)."""
        return self._slot(name, layer_name_text(name))

    def _slot(self, given: str, written: str) -> int:
        self.given.append(given)
        self.written.append(written)
        return len(self.given) - 1

    def add(self, kind: str, *args: Any, slots: Sequence[int] = ()) -> None:
        self.elements.append(Element(kind, tuple(args), tuple(slots)))

    def shape(self) -> str:
        """Everything that decides the page but its texts, as JSON (a key's part)."""
        return json.dumps([self.title, self.tiles, [[e.kind, list(e.args), list(e.slots)] for e in self.elements]],
                          sort_keys=True, default=str)

    def fillable(self) -> bool:
        """True when the page made from a rendering with slots equals a fresh rendering: every
        text written verbatim (no Jinja syntax, which folium's elements would compile), and
        no two layers of one name (folium's layer control keeps one of them)."""
        names = [self.given[e.slots[1]] for e in self.elements
                 if e.kind in ("DataLayer", "PointLayer") and len(e.slots) > 1]
        return (len(set(names)) == len(names)
                and not any(s in text for text in self.given for s in JINJA_ACTIVE))


def _add_layer(plan: MapPlan, spec: LayerSpec | PointSpec, in_control: bool) -> None:
    """A layer: its data a text; its name too when a layer control writes it (`in_control`),
    else a fixed argument (a page without a layer control does not write it)."""
    name: tuple[str, ...] = () if in_control else (spec.name,)
    named = (plan.name_text(spec.name),) if in_control else ()
    if isinstance(spec, PointSpec):
        plan.add("PointLayer", *name, slots=(plan.json_text(spec.payload), *named))
    else:
        plan.add("DataLayer", spec.base_style, spec.css_class, spec.show, spec.interactive, *name,
                 slots=(plan.json_text(spec.data), *named))


def _add_notes(plan: MapPlan, notes: Sequence[str]) -> None:
    plan.add("Control", "geo-lead-box geo-lead-notes", "bottomleft", "Notes",
             slots=(plan.html_text(notes_html(notes)),))


def site_plan(inputs: SiteMapInputs | None = None, *, tiles: bool = False, score_column: str = "score",
              notes: Sequence[str] = (), title: str = "LEAD pilot site selection",
              parameters: str = "") -> MapPlan:
    """The site-selection page (`geo_lead.maps.build_site_map` has the parameters)."""
    inputs = inputs or SiteMapInputs()
    plan = MapPlan(title, tiles)
    page = site_layers(inputs, score_column, notes)
    for spec in page.layers:
        _add_layer(plan, spec, in_control=True)
    rows = site_labels(inputs)
    if rows is not None:
        plan.add("LabelLayer", slots=(plan.json_text(rows),))
    plan.add("LayerControl")
    # the title and the parameters the layers were made with, at the top (a button on a phone)
    plan.add("Control", "geo-lead-box geo-lead-about", "topright", esc(title),
             slots=(plan.html_text(about_html(parameters)),))
    plan.add("Control", "geo-lead-box geo-lead-legend", "bottomright", "Legend",
             slots=(plan.html_text("".join(page.legends)),))
    _add_notes(plan, page.notes)
    plan.add("Layout", slots=(plan.json_text(page.fit_bounds()),))
    return plan


def timeline_plan(records: pd.DataFrame | None, areas: gpd.GeoDataFrame | None, *, name_col: str = "NH_NAME",
                  tiles: bool = False, title: str = "LEAD records by month", notes: Sequence[str] = (),
                  parameters: str = "", rule: str = settings.BOUNDARY_RULE) -> MapPlan:
    """The timeline page (`geo_lead.maps.build_timeline_map` has the parameters)."""
    plan = MapPlan(title, tiles)
    note_lines = [esc(n) for n in notes]
    if areas is None or len(areas) == 0 or records is None or len(records) == 0:
        note_lines.append("No geocoded records with dates (or no neighborhoods): nothing to animate.")
        _add_notes(plan, note_lines)
        plan.add("Layout", slots=(plan.json_text(None),))
        return plan
    if name_col not in areas:
        name_col = "neighborhood" if "neighborhood" in areas else name_col
    areas = for_display(areas)
    data, more = timeline(records, areas, name_col, rule)
    note_lines += more
    if not data.months:
        _add_layer(plan, outline_layer(areas, name_col), in_control=False)
        _add_notes(plan, note_lines)
        plan.add("Layout", slots=(plan.json_text(latlng_bounds([tuple(areas.total_bounds)])),))
        return plan
    plan.add("Timeline", slots=(plan.json_text({
        "months": data.months, "areas": data.areas, "counts": data.counts, "points": data.points,
        "table": data.point_table, "colors": list(SCORE_COLORS), "breaks": data.breaks,
        "title": esc(title), "parameters": esc(parameters)}),))
    plan.add("Control", "geo-lead-box geo-lead-legend", "bottomright", "Legend",
             slots=(plan.html_text(timeline_legend(data.breaks, rule)),))
    _add_notes(plan, note_lines)
    plan.add("LabelLayer", slots=(plan.json_text(label_rows(areas, name_col)),))
    outline, focus = study_area_outline(areas)
    if outline is not None:  # outline the study area (takes no clicks)
        _add_layer(plan, outline, in_control=False)
    plan.add("Layout", slots=(plan.json_text(latlng_bounds([tuple(focus.total_bounds)])),))
    return plan
