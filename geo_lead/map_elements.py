"""The folium elements of the maps: each one a single call into a static script.

The JavaScript lives in ``geo_lead/static/maps/*.js`` (read with `importlib.resources`); an
element adds its script to the page's header when it is rendered, once per page, so a page
carries only the scripts of the elements it holds. Every JSON blob an element writes into the
page goes through `script_json` (no ``</script>``, no ``<!--``), and every string in it was
HTML-escaped by the layer builders (`geo_lead.map_layers`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, ClassVar

import folium
from branca.element import Element, Figure, MacroElement
from folium.elements import JSCSSMixin
from jinja2 import Template

from geo_lead.map_layers import (  # the page-asset constants live there (no folium); re-exported
    CLUSTER_CSS,
    CLUSTER_JS,
    JINJA_ACTIVE,
    LEAFLET_CSS,
    LEAFLET_JS,
    OSM_ATTRIBUTION,
    esc,
    script_json,
)


def static_text(*parts: str) -> str:
    """A file of ``geo_lead/static`` (the maps' own CSS/JS), read with importlib.resources."""
    return resources.files("geo_lead").joinpath("static", *parts).read_text(encoding="utf-8")


def _root(element: Element) -> Figure:
    root = element.get_root()
    if not isinstance(root, Figure):
        raise TypeError(f"{type(element).__name__} is not in a folium page (add it to a map first)")
    return root


def _include_script(element: Element, filename: str) -> None:
    """Put ``static/maps/<filename>`` into the page header once (keyed by the file name)."""
    name = "geo_lead_" + filename.replace(".", "_")
    _root(element).header.add_child(text_element(f"<script>{static_text('maps', filename)}</script>"), name=name)


class _Text(Element):
    """An element that renders as its text, compiling nothing."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        return self._text


def text_element(text: str) -> Element:
    """An element rendering exactly as ``branca.element.Element(text)`` does, without compiling
    `text` as a Jinja template when it holds no Jinja syntax (its page data and scripts run to
    hundreds of kB: compiling them cost ~0.3 s a page).

    ``Element(text)`` renders the template `text`: with no ``{{``, ``{%``, ``{#`` and no
    carriage return, that is `text` less one trailing newline (Jinja's default
    ``keep_trailing_newline=False``); any other text is given to ``Element`` as before.
    """
    if any(s in text for s in JINJA_ACTIVE):
        return Element(text)
    return _Text(text[:-1] if text.endswith("\n") else text)


class _TextMacro(MacroElement):
    """``MacroElement`` whose rendered header/html/script parts join the page as `text_element`s
    (branca's ``MacroElement.render`` compiles each part, the layer's data included, as a new
    template); the same output. Put it after a folium class in the bases, so that class's own
    ``render`` runs first and reaches this one through ``super()``."""

    def render(self, **kwargs: Any) -> Any:  # branca.element.MacroElement.render, parts as text
        figure = _root(self)
        module = self._template.module.__dict__
        for part, target in (("header", figure.header), ("html", figure.html), ("script", figure.script)):
            macro = module.get(part)
            if macro is not None:
                target.add_child(text_element(str(macro(self, kwargs))), name=self.get_name())
        for element in self._children.values():
            element.render(**kwargs)
        return None


class _ScriptElement(_TextMacro):
    """A macro element whose script is one call into `SCRIPT` (a file of ``static/maps``)."""

    SCRIPT: ClassVar[str] = ""

    def render(self, **kwargs: Any) -> str:
        _include_script(self, self.SCRIPT)
        return super().render(**kwargs)


class DataLayer(folium.map.Layer, _TextMacro):
    """A GeoJSON overlay styled by per-feature ``_s`` and with escaped ``_tip``/``_popup``."""

    _template = Template("{% macro script(this, kwargs) %}"
                         "var {{ this.get_name() }} = geoLeadDataLayer({{ this.data }}, {{ this.options }});"
                         "{% endmacro %}")

    def __init__(self, data_json: str, name: str, base_style: dict[str, Any],
                 css_class: str, show: bool = True, interactive: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "DataLayer"
        self.data = data_json  # `script_json` of the FeatureCollection
        self.options = script_json({"className": css_class, "interactive": bool(interactive),
                                    "baseStyle": {**base_style, "className": css_class}})

    def render(self, **kwargs: Any) -> str:
        _include_script(self, "data_layer.js")
        return super().render(**kwargs)


class PointLayer(JSCSSMixin, folium.map.Layer, _TextMacro):
    """Aggregated block points in a marker cluster, built in the browser from a compact array.

    The payload is `script_json` of `geo_lead.map_layers.point_rows`' output; clusters show the
    number of *records* they hold.
    """

    _template = Template("{% macro script(this, kwargs) %}"
                         "var {{ this.get_name() }} = geoLeadPointLayer({{ this.data }});"
                         "{% endmacro %}")

    default_js: list[tuple[str, str]] = [("markerclusterjs", CLUSTER_JS)]  # noqa: RUF012 - JSCSSMixin's API
    default_css: list[tuple[str, str]] = [("markerclustercss", CLUSTER_CSS[0]),  # noqa: RUF012
                                          ("markerclusterdefaultcss", CLUSTER_CSS[1])]

    def __init__(self, payload_json: str, name: str, show: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "PointLayer"
        self.data = payload_json

    def render(self, **kwargs: Any) -> str:
        _include_script(self, "point_layer.js")
        return super().render(**kwargs)


class Control(_ScriptElement):
    """A collapsible box (``<details>``) of trusted HTML (built from escaped parts).

    Open on wide screens, a one-line button on narrow ones (`static/maps/layout.js`).
    """

    SCRIPT = "control.js"
    _template = Template("{% macro script(this, kwargs) %}"
                         "geoLeadControl({{ this._parent.get_name() }}, {{ this.options }});"
                         "{% endmacro %}")

    def __init__(self, inner_html: str, css_class: str, position: str = "bottomright",
                 summary: str = "Legend") -> None:
        super().__init__()
        self._name = "Control"
        self.options = script_json({"position": position, "cssClass": css_class, "summary": summary,
                                    "html": inner_html})


class LabelLayer(folium.map.Layer, _TextMacro):
    """Neighborhood names as non-interactive labels, each shown from its own zoom on.

    `labels_json`: `script_json` of ``[lat, lon, escaped name, min zoom]`` rows; the markers
    are made in the browser by `static/maps/layout.js`.
    """

    _template = Template("{% macro script(this, kwargs) %}"
                         "var {{ this.get_name() }} = L.layerGroup();"
                         "{% endmacro %}")

    def __init__(self, labels_json: str, name: str = "Neighborhood names") -> None:
        super().__init__(name=name, overlay=True, control=True, show=True)
        self._name = "LabelLayer"
        self.labels = labels_json


class Layout(_TextMacro):
    """Fit, collapse and label logic of `static/maps/layout.js`; add it to the map last.
    `bounds_json`: `script_json` of ``[[south, west], [north, east]]`` or of None."""

    _template = Template("{% macro script(this, kwargs) %}"
                         "window.geoLeadView = window.geoLeadLayout({{ this._parent.get_name() }}, {"
                         "bounds: {{ this.bounds }}, maxZoom: {{ this.max_zoom }}, "
                         "control: {{ this.control }}, "
                         "labelLayer: {{ this.label_layer }}, labelData: {{ this.label_data }}});"
                         "{% endmacro %}")

    def __init__(self, bounds_json: str, control: folium.LayerControl | None = None,
                 labels: LabelLayer | None = None, max_zoom: int = 16) -> None:
        super().__init__()
        self._name = "Layout"
        self.bounds = bounds_json
        self.max_zoom = int(max_zoom)
        self.control = control.get_name() if control is not None else "null"
        self.label_layer = labels.get_name() if labels is not None else "null"
        self.label_data = labels.labels if labels is not None else "[]"


class TimelineElement(_ScriptElement):
    """Monthly choropleth + block points with a range slider (`static/maps/timeline.js`);
    `options_json`: `script_json` of its options (`geo_lead.map_plans.timeline_plan`)."""

    SCRIPT = "timeline.js"
    _template = Template("{% macro script(this, kwargs) %}"
                         "geoLeadTimeline({{ this._parent.get_name() }}, {{ this.options }});"
                         "{% endmacro %}")

    def __init__(self, options_json: str) -> None:
        super().__init__()
        self._name = "Timeline"
        self.options = options_json


def new_map(tiles: bool, title: str) -> folium.Map:
    """A bare Leaflet map: no CDN extras (jQuery, Bootstrap, awesome-markers), tiles optional."""
    m = folium.Map(location=[38.25, -85.78], zoom_start=13, tiles=None, control_scale=True,
                   prefer_canvas=False, zoom_snap=0.25, zoom_delta=0.5)
    m.options["maxZoom"] = 19  # without tiles Leaflet has no max zoom; markercluster needs one
    m.options["minZoom"] = 9
    m.default_js = [("leaflet", LEAFLET_JS)]
    m.default_css = [("leaflet_css", LEAFLET_CSS)]
    root = _root(m)
    root.header.add_child(text_element(f"<title>{esc(title)}</title>"), name="page_title")
    root.header.add_child(text_element(f"<style>{static_text('maps', 'map.css')}</style>"), name="geo_lead_css")
    root.header.add_child(text_element(f"<script>{static_text('maps', 'layout.js')}</script>"),
                          name="geo_lead_layout_js")
    if tiles:
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap basemap",
                         attr=OSM_ATTRIBUTION).add_to(m)
    return m

