"""Interactive folium maps: the site-selection map and the monthly timeline map.

Colours, classes and the reprojection for display come from `geo_lead.cartography` (shared
with the static figures). Every layer is optional: a missing input is skipped and said in a note on the page. Data strings
(addresses, offence text, neighborhood names) are HTML-escaped in Python before they reach
the page, and every JSON blob embedded in a ``<script>`` has ``<``, ``>`` and ``&`` written
as ``\\u003c``-style escapes, so no record can close the script or inject markup.

Incidents are shown aggregated to their geocoded point (one marker per block point with the
record count and the offence mix); person fields never reach this module.

Layers are drawn by small Leaflet templates (`_DataLayer`, `_PointLayer`) rather than
``folium.GeoJson``: the style and the escaped tooltip/popup HTML travel as feature
properties, which keeps a 100,000-record map small, and the only scripts needed are Leaflet
and Leaflet.markercluster (vendored in ``geo_lead/static``, inlined by `geo_lead.offline`).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from folium.elements import JSCSSMixin
from jinja2 import Template

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
from geo_lead.outputs import cap_text

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: Offence categories shown in a block point's mix (the store's indicator flags).
MIX_FLAGS: tuple[str, ...] = ("opiate", "possession", "trafficking", "paraphernalia",
                              "overdose", "other_drug", "lead_eligible")
COORD_DECIMALS: int = settings.MAP_COORD_DECIMALS
LEAFLET_JS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"
LEAFLET_CSS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"
CLUSTER_JS = "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/leaflet.markercluster.js"
CLUSTER_CSS = (
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/MarkerCluster.css",
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/MarkerCluster.Default.css",
)
#: The choropleth's column in words (legend and layer control).
COLUMN_WORDS: dict[str, str] = {
    "score": "score (count, density and smoothed rate, 0&ndash;1)",
    "eb_rate_per_1000": "smoothed rate per 1,000 residents", "density_per_sqmi": "records per sq mi",
    "count": "records",
}
#: Zoom from which neighborhood names show: study-area units, then every other named unit.
LABEL_ZOOM_AREA: int = 12
LABEL_ZOOM_OTHER: int = 14
#: A far comparison area is left out of the opening view when it would grow it more than this.
FIT_MAX_GROWTH: float = 1.5
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'


# --- small helpers ----------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escape any value for a tooltip or popup (None/NaN -> empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return esc(value)


def _usable(frame: Any) -> bool:
    return frame is not None and len(frame) > 0


def _features(gdf: gpd.GeoDataFrame, props: Sequence[dict[str, Any]],
              simplify_ft: float = settings.MAP_SIMPLIFY_FT) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of simplified, rounded geometries with the given properties.

    Simplification (in feet, projected) is for display only and keeps each polygon valid.
    """
    if simplify_ft > 0 and len(gdf):
        gdf = for_figure(gdf)
        gdf = gdf.set_geometry(gdf.geometry.simplify(simplify_ft, preserve_topology=True))
    geoms = shapely.transform(np.asarray(for_display(gdf).geometry.values),
                              lambda xy: np.round(xy, COORD_DECIMALS))
    feats = [{"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": p}
             for g, p in zip(geoms, props, strict=True) if g is not None and not g.is_empty]
    return {"type": "FeatureCollection", "features": feats}


# --- page elements ----------------------------------------------------------------------------
class _DataLayer(folium.map.Layer):
    """A GeoJSON overlay styled by per-feature ``_s`` and with escaped ``_tip``/``_popup``."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJson({{ this.data }}, {
            className: {{ this.css_class }}, interactive: {{ this.interactive }},
            style: function (f) { return Object.assign({{ this.base_style }}, f.properties._s || {}); },
            onEachFeature: function (f, layer) {
                if (f.properties._tip) { layer.bindTooltip(f.properties._tip, {sticky: true}); }
                if (f.properties._popup) { layer.bindPopup(f.properties._popup, {maxWidth: 360}); }
            }
        });
        {% endmacro %}
    """)

    def __init__(self, data: dict[str, Any], name: str, base_style: dict[str, Any],
                 css_class: str, show: bool = True, interactive: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "DataLayer"
        self.data = script_json(data)
        self.base_style = script_json({**base_style, "className": css_class})
        self.css_class = script_json(css_class)
        self.interactive = script_json(bool(interactive))


class _PointLayer(JSCSSMixin, folium.map.Layer):
    """Aggregated block points in a marker cluster, built in the browser from a compact array.

    The payload is `point_rows`' output; clusters show the number of *records* they hold.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function () {
            var d = {{ this.data }}, rows = d.rows;
            // every string in d was HTML-escaped in Python; numbers are integers
            function popup(r) {
                var h = '<b>' + (r[3] || 'geocoded point') + '</b><br>records here: <b>' + r[2] + '</b>';
                if (d.match_types[r[4]]) { h += '<br>placed by: ' + d.match_types[r[4]] + ' match'; }
                var mix = [];
                r[5].forEach(function (c, i) { if (c > 0) { mix.push(d.flags[i] + ': ' + c); } });
                if (mix.length) { h += '<br>mix: ' + mix.join(', '); }
                if (r[6].length) {
                    h += '<br>top offences:' + r[6].map(function (o) {
                        return '<br>&nbsp;' + o[1] + ' &times; ' + d.offences[o[0]]; }).join('');
                }
                return h;
            }
            var group = L.markerClusterGroup({
                showCoverageOnHover: false, maxClusterRadius: 40, chunkedLoading: true,
                // block points stand apart from zoom 17 on: fewer cluster levels to build;
                // no pause between chunks (the page stays responsive within each 200 ms chunk)
                disableClusteringAtZoom: 17, chunkDelay: 1,
                // onAdd first "adds" an empty pending list (0 of 0): only our own full list counts
                chunkProgress: function (done, total) {
                    if (total === rows.length && done === total) { window.geoLeadPointsLoaded = true; }
                },
                iconCreateFunction: function (c) {
                    var n = 0;
                    c.getAllChildMarkers().forEach(function (m) { n += m.options.n; });
                    var size = n < 10 ? 'small' : (n < 100 ? 'medium' : 'large');
                    return L.divIcon({html: '<div><span>' + n + '</span></div>',
                        className: 'marker-cluster marker-cluster-' + size, iconSize: L.point(40, 40)});
                }
            });
            var style = {radius: 5, color: '#67000d', weight: 1, fillColor: '#cb181d', fillOpacity: 0.8,
                         className: 'geo-lead-point'};
            var markers = new Array(rows.length);
            for (var i = 0; i < rows.length; i++) {
                var r = rows[i];
                // options are shared except n and the row; popups are built on click (no closure per marker)
                markers[i] = L.circleMarker([r[0], r[1]], Object.assign({}, style,
                    {n: r[2], row: i, radius: 4 + Math.min(8, Math.sqrt(r[2]))}));
            }
            group.on('click', function (e) {
                var r = rows[e.layer.options.row];
                L.popup({maxWidth: 360}).setLatLng([r[0], r[1]]).setContent(popup(r)).openOn(e.target._map);
            });
            // add the markers once the group is on the map, so chunked loading keeps the page
            // responsive (off the map, markercluster would cluster all of them in one go)
            group.once('add', function () {
                group.addLayers(markers);
                if (!markers.length) { window.geoLeadPointsLoaded = true; }
            });
            return group;
        })();
        {% endmacro %}
    """)

    default_js: ClassVar[list[tuple[str, str]]] = [("markerclusterjs", CLUSTER_JS)]
    default_css: ClassVar[list[tuple[str, str]]] = [("markerclustercss", CLUSTER_CSS[0]),
                                                    ("markerclusterdefaultcss", CLUSTER_CSS[1])]

    def __init__(self, payload: dict[str, Any], name: str, show: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "PointLayer"
        self.data = script_json(payload)


class _Control(MacroElement):
    """A collapsible box (``<details>``) of trusted HTML (built here from escaped parts).

    Open on wide screens, a one-line button on narrow ones (`static/maps/layout.js`).
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function () {
            var box = L.control({position: {{ this.position }}});
            box.onAdd = function () {
                var div = L.DomUtil.create('details', {{ this.css_class }});
                div.innerHTML = '<summary>' + {{ this.summary }} + '</summary><div class="geo-lead-body">'
                    + {{ this.html }} + '</div>';
                div.open = true;
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            box.addTo({{ this._parent.get_name() }});
        })();
        {% endmacro %}
    """)

    def __init__(self, inner_html: str, css_class: str, position: str = "bottomright",
                 summary: str = "Legend") -> None:
        super().__init__()
        self._name = "Control"
        self.html = script_json(inner_html)
        self.summary = script_json(summary)
        self.css_class = script_json(css_class)
        self.position = script_json(position)


class _LabelLayer(folium.map.Layer):
    """Neighborhood names as non-interactive labels, each shown from its own zoom on.

    `labels`: ``[lat, lon, escaped name, min zoom]`` rows; the markers are made in the
    browser by `static/maps/layout.js`.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.layerGroup();
        {% endmacro %}
    """)

    def __init__(self, labels: list[list[Any]], name: str = "Neighborhood names") -> None:
        super().__init__(name=name, overlay=True, control=True, show=True)
        self._name = "LabelLayer"
        self.labels = script_json(labels)


class _Layout(MacroElement):
    """Fit, collapse and label logic of `static/maps/layout.js`; add it to the map last."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        window.geoLeadView = window.geoLeadLayout({{ this._parent.get_name() }}, {
            bounds: {{ this.bounds }}, maxZoom: {{ this.max_zoom }},
            control: {{ this.control }},
            labelLayer: {{ this.label_layer }}, labelData: {{ this.label_data }}
        });
        {% endmacro %}
    """)

    def __init__(self, bounds: list[list[float]] | None, control: Any = None,
                 labels: _LabelLayer | None = None, max_zoom: int = 16) -> None:
        super().__init__()
        self._name = "Layout"
        self.bounds = script_json(bounds)
        self.max_zoom = int(max_zoom)
        self.control = control.get_name() if control is not None else "null"
        self.label_layer = labels.get_name() if labels is not None else "null"
        self.label_data = labels.labels if labels is not None else "[]"


def _static_text(*parts: str) -> str:
    """A file of ``geo_lead/static`` (the maps' own CSS/JS), read with importlib.resources."""
    from importlib import resources

    return resources.files("geo_lead").joinpath("static", *parts).read_text(encoding="utf-8")


def _new_map(tiles: bool, title: str) -> folium.Map:
    """A bare Leaflet map: no CDN extras (jQuery, Bootstrap, awesome-markers), tiles optional."""
    m = folium.Map(location=[38.25, -85.78], zoom_start=13, tiles=None, control_scale=True,
                   prefer_canvas=False, zoom_snap=0.25, zoom_delta=0.5)
    m.options["maxZoom"] = 19  # without tiles Leaflet has no max zoom; markercluster needs one
    m.options["minZoom"] = 9
    m.default_js = [("leaflet", LEAFLET_JS)]
    m.default_css = [("leaflet_css", LEAFLET_CSS)]
    root = m.get_root()
    root.header.add_child(Element(f"<title>{esc(title)}</title>"), name="page_title")
    root.header.add_child(Element(f"<style>{_static_text('maps', 'map.css')}</style>"), name="geo_lead_css")
    root.header.add_child(Element(f"<script>{_static_text('maps', 'layout.js')}</script>"),
                          name="geo_lead_layout_js")
    if tiles:
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap basemap",
                         attr=OSM_ATTRIBUTION).add_to(m)
    return m


def _legend_rows(rows: Sequence[tuple[str, str]], kind: str = "sw") -> str:
    out = []
    for color, label in rows:
        style = f"background:{color}" if kind == "sw" else f"border-top-color:{color}"
        out.append(f'<div><span class="{kind}" style="{style}"></span>{label}</div>')
    return "".join(out)


def _range_labels(breaks: Sequence[float], colors: Sequence[str], digits: int,
                  integer: bool = False) -> list[tuple[str, str]]:
    offset = len(colors) - len(breaks)
    rows, low = [], None
    for i, b in enumerate(breaks):
        if integer:
            first = 1 if low is None else int(low) + 1
            label = f"{int(b):,}" if first >= b else f"{first:,} &ndash; {int(b):,}"
        else:
            label = f"&le; {_fmt(b, digits)}" if low is None else f"{_fmt(low, digits)} &ndash; {_fmt(b, digits)}"
        rows.append((colors[offset + i], label))
        low = b
    return rows


# --- inputs -> rows ---------------------------------------------------------------------------
def aggregate_points(records: pd.DataFrame) -> pd.DataFrame:
    """Records -> one row per geocoded point with the count and the offence mix.

    Parameters
    ----------
    records
        The store's records (any subset of columns): ``lon``, ``lat`` required; optional
        ``address_raw``/``matched_address``, ``match_type``, ``offense_text`` and the flags in
        `MIX_FLAGS`. Person fields, if a caller passed any, are ignored.

    Returns
    -------
    pandas.DataFrame
        ``lon``, ``lat``, ``n`` (records at the point), ``address`` (the most common block
        address), ``match_type`` (most common), ``offences`` (list of (text, count), top 3),
        one count column per flag present. Sorted by ``n`` descending. Records without
        coordinates are not rows here; ``n`` sums to the number of geocoded records.
    """
    if records is None or len(records) == 0 or not {"lon", "lat"} <= set(records.columns):
        return pd.DataFrame(columns=["lon", "lat", "n", "address", "match_type", "offences"])
    lon = pd.to_numeric(records["lon"], errors="coerce")
    lat = pd.to_numeric(records["lat"], errors="coerce")
    ok = lon.notna() & lat.notna()
    frame = pd.DataFrame({"lon": lon[ok].round(COORD_DECIMALS), "lat": lat[ok].round(COORD_DECIMALS)})
    addr_col = next((c for c in ("address_raw", "matched_address") if c in records), None)
    frame["address"] = records.loc[ok, addr_col].fillna("").astype(str) if addr_col else ""
    frame["match_type"] = (records.loc[ok, "match_type"].fillna("").astype(str)
                           if "match_type" in records else "")
    frame["offense_text"] = (records.loc[ok, "offense_text"].fillna("").astype(str)
                             if "offense_text" in records else "")
    flags = [f for f in MIX_FLAGS if f in records]
    for f in flags:
        frame[f] = pd.to_numeric(records.loc[ok, f], errors="coerce").fillna(0).astype(int)
    if frame.empty:
        return pd.DataFrame(columns=["lon", "lat", "n", "address", "match_type", "offences", *flags])
    keys = ["lon", "lat"]
    out = frame.groupby(keys, sort=False).size().rename("n").to_frame()
    out["address"] = _group_mode(frame, keys, "address")
    out["match_type"] = _group_mode(frame, keys, "match_type")
    out["offences"] = _group_top(frame, keys, "offense_text", 3).reindex(out.index)
    out["offences"] = out["offences"].apply(lambda v: v if isinstance(v, list) else [])
    if flags:
        out = out.join(frame.groupby(keys, sort=False)[flags].sum())
    out = out.reset_index().sort_values(["n", "lat", "lon"], ascending=[False, True, True])
    return out.reset_index(drop=True)


def _group_mode(frame: pd.DataFrame, keys: list[str], col: str) -> pd.Series:
    """Most common non-empty value of `col` per group (ties: first in sort order); '' if none."""
    sub = frame[frame[col] != ""]
    counts = sub.groupby([*keys, col], sort=False).size().rename("_c").reset_index()
    counts = counts.sort_values(["_c", col], ascending=[False, True], kind="stable")
    best = counts.drop_duplicates(keys).set_index(keys)[col]
    index = frame.groupby(keys, sort=False).size().index
    return best.reindex(index).fillna("")


def _group_top(frame: pd.DataFrame, keys: list[str], col: str, k: int) -> pd.Series:
    """The `k` most common non-empty values of `col` per group as [(value, count), ...]."""
    sub = frame[frame[col] != ""]
    if sub.empty:
        return pd.Series(dtype=object)
    counts = sub.groupby([*keys, col], sort=False).size().rename("_c").reset_index()
    counts = counts.sort_values(["_c", col], ascending=[False, True], kind="stable")
    counts = counts.groupby(keys, sort=False).head(k)
    pairs = list(zip(counts[col], counts["_c"].astype(int), strict=True))
    counts = counts.assign(_p=pairs)
    return counts.groupby(keys, sort=False)["_p"].agg(list)


def _mode(s: pd.Series) -> str:
    s = s[s != ""]
    return "" if s.empty else str(s.value_counts().index[0])


def point_rows(points: pd.DataFrame) -> dict[str, Any]:
    """Aggregated points -> the compact, escaped payload `_PointLayer` renders.

    Returns
    -------
    dict
        ``rows``: ``[lat, lon, n, address_html, match_type_code, [count per flag],
        [[offence_code, n], ...]]``; ``match_types``, ``flags``, ``offences``: the escaped
        strings the codes refer to. Popups are assembled in the browser from these
        already-escaped pieces and integers only.
    """
    flags = [f for f in MIX_FLAGS if f in points]
    mts: dict[str, int] = {}
    offs: dict[str, int] = {}
    rows = []
    for r in points.to_dict("records"):
        mt = mts.setdefault(esc(r.get("match_type", "")), len(mts))
        # free text is capped (`cap_text`): one record's 10 MB description cannot bloat a page
        top = [[offs.setdefault(esc(cap_text(t)), len(offs)), int(c)] for t, c in (r.get("offences") or [])]
        rows.append([float(r["lat"]), float(r["lon"]), int(r["n"]), esc(cap_text(r.get("address", ""))), mt,
                     [int(r[f]) for f in flags], top])
    return {"rows": rows, "match_types": list(mts), "flags": [esc(f.replace("_", " ")) for f in flags],
            "offences": list(offs)}


def _weighted(value: Any) -> str:
    """A record count: whole numbers as integers, weighted counts with one decimal."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def score_popup(row: dict[str, Any]) -> str:
    """A neighborhood's numbers as escaped HTML lines, in words with units.

    Shows the weighted count (one decimal when fractional) and, when the scores carry them,
    the records shared with a neighbouring unit (``count_shared``) and the rank range
    under the boundary rule (``rank_boundary_best``/``rank_boundary_worst``).
    """
    name = esc(str(row.get("neighborhood", row.get("NH_NAME", ""))).title())
    lines = [f"<b>{name}</b>"]
    if row.get("rank") is not None and np.isfinite(float(row["rank"])):
        lines.append(f"rank <b>{_fmt(row['rank'], 0)}</b> (likely {_fmt(row.get('rank_low'), 0)}"
                     f"&ndash;{_fmt(row.get('rank_high'), 0)})")
    if "count" in row:
        lines.append(f"records: {_weighted(row['count'])}")
    shared = row.get("count_shared")
    if shared is not None and np.isfinite(float(shared)) and float(shared) > 0:
        lines.append(f"of which on a shared boundary (split): {_weighted(shared)}")
    for col, label, digits in (
            ("count_per_year", "records per year (sample-scaled)", 1),
            ("share", "share of the area's records", None), ("area_sqmi", "area (sq mi)", 2),
            ("density_per_sqmi", "records per sq mi", 1), ("population", "residents (2020)", 0),
            ("rate_per_1000", "records per 1,000 residents", 1),
            ("eb_rate_per_1000", "smoothed rate per 1,000 (EB)", 1), ("score", "score (0&ndash;1)", 2)):
        if col in row and row[col] is not None:
            if digits is None:
                v = row[col]
                lines.append(f"{label}: {float(v):.1%}" if v is not None and np.isfinite(float(v)) else f"{label}: n/a")
            else:
                lines.append(f"{label}: {_fmt(row[col], digits)}")
    best, worst = row.get("rank_boundary_best"), row.get("rank_boundary_worst")
    if best is not None and worst is not None and np.isfinite(float(best)) and np.isfinite(float(worst)):
        lines.append(f"rank with every shared record here / none: {_fmt(best, 0)} / {_fmt(worst, 0)}")
    return "<br>".join(lines)


def _score_props(scores: gpd.GeoDataFrame, value_col: str) -> tuple[list[dict[str, Any]], list[float]]:
    in_area = scores["in_area"].astype(bool) if "in_area" in scores else pd.Series(True, index=scores.index)
    vals = pd.to_numeric(scores[value_col], errors="coerce") if value_col in scores else pd.Series(np.nan, index=scores.index)
    breaks = class_breaks(vals[in_area])
    props = []
    for i, row in enumerate(scores.drop(columns=scores.geometry.name).to_dict("records")):
        row = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        name = esc(row.get("neighborhood", row.get("NH_NAME", "")))
        tip = f"<b>{name}</b>"
        if row.get("rank") is not None:
            tip += f" &middot; rank {_fmt(row.get('rank'), 0)}"
        color = color_for(vals.iloc[i], breaks, SCORE_COLORS) if bool(in_area.iloc[i]) else NO_DATA_COLOR
        props.append({"_tip": tip, "_popup": score_popup(row),
                      "_s": {"fillColor": color, "fillOpacity": 0.7 if bool(in_area.iloc[i]) else 0.25}})
    return props, breaks


# --- the site-selection map ---------------------------------------------------------------------
def build_site_map(scores: gpd.GeoDataFrame | None = None,
                   kde: gpd.GeoDataFrame | None = None,
                   gistar: gpd.GeoDataFrame | None = None,
                   zones: gpd.GeoDataFrame | None = None,
                   record_points: pd.DataFrame | None = None,
                   *,
                   gistar_grid: gpd.GeoDataFrame | None = None,
                   neighborhoods: gpd.GeoDataFrame | None = None,
                   first_division: gpd.GeoDataFrame | None = None,
                   tiles: bool = False,
                   score_column: str = "score",
                   notes: Sequence[str] = (),
                   title: str = "LEAD pilot site selection",
                   parameters: str = "") -> folium.Map:
    """The site-selection map; every input is optional (a missing one is noted on the page).

    Parameters
    ----------
    scores
        Store layer ``scores`` (polygons; neighborhood, count, density_per_sqmi,
        rate_per_1000, eb_rate_per_1000, score, rank, rank_low, rank_high, in_area, ...).
    kde
        Store layer ``hotspot_kde`` (grid cells; density_per_sqmi, is_hotspot, bandwidth_ft).
    gistar
        ``hotspot_gistar_neighborhoods`` (neighborhood, gi_z, p_sim, label).
    zones
        Store layer ``site_zones`` (role in pilot/best/capacity/comparison, neighborhoods,
        k, share, pai_train, pai_test).
    record_points
        Either raw records (``lon``, ``lat``, ...) or the output of `aggregate_points`.
    gistar_grid
        ``hotspot_gistar_grid`` (cell_id, count, gi_z, p_sim, label); merged by label for
        display above ``settings.MAP_MAX_CELL_FEATURES`` cells.
    neighborhoods, first_division
        Context outlines (EPSG:4326 or any CRS; reprojected here).
    tiles
        Add an OpenStreetMap basemap (the page then loads tiles from the internet).
    score_column
        The ``scores`` column that colours the choropleth.
    notes
        Extra lines for the notes box (already plain text; escaped here).
    parameters
        One plain-text line naming the parameters the layers were made with (indicator,
        window, area, k, ...), shown under the title.

    Returns
    -------
    folium.Map
        Render with `geo_lead.offline.save_map` to get a page that sends no request.
    """
    m = _new_map(tiles, title)
    note_lines = [esc(n) for n in notes]
    legends: list[str] = []
    bounds: list[tuple[float, float, float, float]] = []
    far: list[tuple[float, float, float, float]] = []  # fitted only when near (`_with_nearby`)

    if _usable(neighborhoods) and not _usable(scores):  # the score layer already outlines them
        nb = for_display(neighborhoods)
        name_col = "NH_NAME" if "NH_NAME" in nb else nb.columns[0]
        props = [{"_tip": esc(n)} for n in nb[name_col]]
        _DataLayer(_features(nb, props), "Neighborhoods (outlines)",
                   {"color": "#7f7f7f", "weight": 0.8, "fill": True, "fillOpacity": 0.0},
                   "geo-lead-neighborhoods").add_to(m)
        bounds.append(tuple(nb.total_bounds))

    if _usable(scores):
        sc = for_display(scores)
        col = score_column if score_column in sc else next(
            (c for c in ("score", "eb_rate_per_1000", "density_per_sqmi", "count") if c in sc), None)
        props, breaks = _score_props(sc, col or "score")
        _DataLayer(_features(sc, props), "Neighborhood scores (click one)",
                   {"color": "#555555", "weight": 1, "fillOpacity": 0.7}, "geo-lead-score").add_to(m)
        legends.append(f"<h4>Neighborhoods by {COLUMN_WORDS.get(col or '', esc(col))}</h4>" + _legend_rows(
            [*_range_labels(breaks, SCORE_COLORS, 2), (NO_DATA_COLOR, "outside the study area / no data")]))
        bounds.append(tuple(sc[sc["in_area"].astype(bool)].total_bounds) if "in_area" in sc and sc["in_area"].astype(bool).any()
                      else tuple(sc.total_bounds))
    else:
        note_lines.append("No neighborhood scores in the store (run <code>geo-lead score</code>): choropleth not shown.")

    if _usable(kde):
        k = for_display(kde)
        dens = pd.to_numeric(k["density_per_sqmi"], errors="coerce")
        positive = dens > 0
        k, dens = k[positive], dens[positive]
        breaks = class_breaks(dens)
        hot = k["is_hotspot"].astype(bool).to_numpy() if "is_hotspot" in k else np.zeros(len(k), bool)
        bw = (f" (bandwidth {_fmt(float(k['bandwidth_ft'].iloc[0]), 0)} ft)"
              if "bandwidth_ft" in k and len(k) else "")
        if len(k) <= settings.MAP_MAX_CELL_FEATURES:
            props = [{"_tip": f"{_fmt(d, 1)} records per sq mi" + (" &middot; hotspot" if h else ""),
                      "_s": {"fillColor": color_for(d, breaks, KDE_COLORS),
                             "color": "#000000" if h else color_for(d, breaks, KDE_COLORS),
                             "weight": 1.2 if h else 0}}
                     for d, h in zip(dens, hot, strict=True)]
            cells = k
        else:  # many cells: one polygon per density class (+ one for the hotspot), same picture
            cells, props = _dissolved_kde(k, dens, hot, breaks)
            note_lines.append(f"Density grid cells merged by class for display ({len(k):,} cells).")
        _DataLayer(_features(cells, props, simplify_ft=0), "Kernel density surface", {"fillOpacity": 0.55, "weight": 0},
                   "geo-lead-kde", show=False).add_to(m)
        legends.append(f"<h4>Kernel density{bw}</h4>" + _legend_rows(
            _range_labels(breaks, KDE_COLORS, 0)) + "<div>records per sq mi; hotspot cells outlined</div>")
        note_lines.append(f"Density surface: {len(k):,} grid cells with density &gt; 0 "
                          f"({int((~positive).sum()):,} empty cells not drawn).")
    else:
        note_lines.append("No kernel-density surface in the store (run <code>geo-lead hotspots</code>).")

    gi_layers = [(layer, what) for layer, what in ((gistar, None), (gistar_grid, "grid cells")) if _usable(layer)]
    gi_labels: set[str] = set()
    for layer, what in gi_layers:
        g = for_display(layer)
        is_grid = what == "grid cells" or "cell_id" in g
        labels = g["label"].fillna("not significant").astype(str) if "label" in g else pd.Series("not significant", index=g.index)
        gi_labels |= set(labels)
        unit = g["neighborhood"] if "neighborhood" in g else (g["cell_id"].map(lambda c: f"cell {c}") if "cell_id" in g else pd.Series("", index=g.index))
        if len(g) <= settings.MAP_MAX_CELL_FEATURES:
            props = [{"_tip": f"<b>{esc(u)}</b> {esc(lab)}",
                      "_popup": (f"<b>{esc(u)}</b><br>Gi* z = {_fmt(z, 2)}<br>pseudo-p = {_fmt(p, 3)}"
                                 f"<br>{esc(lab)}" + (f"<br>records {_fmt(c, 1)}" if c is not None else "")),
                      "_s": {"fillColor": GISTAR_COLORS.get(lab, NO_DATA_COLOR),
                             "fillOpacity": 0.05 if lab == "not significant" else 0.7}}
                     for u, lab, z, p, c in zip(unit, labels, g.get("gi_z", [None] * len(g)),
                                                 g.get("p_sim", [None] * len(g)),
                                                 g.get("count", [None] * len(g)), strict=True)]
        else:  # a fine Gi* grid: one polygon per label, with the z range and the cell count
            g, props = _dissolved_gistar(g, labels)
        _DataLayer(_features(g, props, simplify_ft=0 if is_grid else settings.MAP_SIMPLIFY_FT),
                   f"Gi* hot/cold spots ({'grid' if is_grid else 'neighborhoods'})",
                   {"color": "#666666", "weight": 0.5, "fillOpacity": 0.7},
                   "geo-lead-gistar-grid" if is_grid else "geo-lead-gistar", show=False).add_to(m)
    if gi_layers:
        present = [lab for lab in GISTAR_COLORS if lab in gi_labels]
        legends.append("<h4>Gi* (FDR-adjusted)</h4>" + _legend_rows([(GISTAR_COLORS[lab], esc(lab)) for lab in present]))
    else:
        note_lines.append("No Gi* results in the store (run <code>geo-lead hotspots</code>).")

    if record_points is not None and len(record_points) > 0:
        pts = record_points if "n" in record_points else aggregate_points(record_points)
        total = int(pts["n"].sum()) if len(pts) else 0
        if "n" not in record_points:
            missing = len(record_points) - total
            if missing:
                note_lines.append(f"{missing:,} of {len(record_points):,} records are not geocoded and not on the map.")
        if len(pts):
            _PointLayer(point_rows(pts), f"Records by block point ({total:,})").add_to(m)
            note_lines.append(f"Records are shown aggregated to {len(pts):,} geocoded block points "
                              f"({total:,} records); a cluster shows the number of records it holds.")
            legends.append("<h4>Records</h4>" + _legend_rows([("#cb181d", "a geocoded block point (click it)")]))
        else:
            note_lines.append("No record is geocoded yet (run <code>geo-lead geocode</code>): incident layer not shown.")
    else:
        note_lines.append("No geocoded records in the store (run <code>geo-lead geocode</code>): incident layer not shown.")

    outline_rows = []
    if _usable(first_division):
        fd = for_display(first_division)
        color, dash, label = ZONE_STYLES["first_division"]
        # outlines take no clicks: a click inside them reaches the neighborhood below
        _DataLayer(_features(fd, [{}] * len(fd)), label,
                   {"color": color, "weight": 3, "dashArray": dash, "fill": False},
                   "geo-lead-zone-first_division", interactive=False).add_to(m)
        outline_rows.append((color, label, ""))
    else:
        note_lines.append("First Division outline not available (no boundary file).")
    if _usable(zones) and "role" in zones:
        z = for_display(zones)
        pilot_k = _pilot_size(z)
        for role, part in z.groupby("role", sort=False):
            label = zone_label(str(role), part, pilot_k)
            color, dash, _ = ZONE_STYLES.get(str(role), ("#e7298a", "4 4", ""))
            # the pilot is drawn widest and first, so an identical best zone still shows it
            weight = {"pilot": 7, "best": 4}.get(str(role), 3)
            _DataLayer(_features(part, [{}] * len(part)), esc(label),
                       {"color": color, "weight": weight, "dashArray": dash, "fill": False},
                       f"geo-lead-zone-{esc(role)}", interactive=False).add_to(m)
            outline_rows.append((color, esc(label), _zone_members(part)))
            if str(role) == "comparison":
                far.append(tuple(part.total_bounds))
            else:
                bounds.append(tuple(part.total_bounds))
    else:
        note_lines.append("No site-selection zones in the store (run <code>geo-lead site</code>): "
                          "pilot, best and comparison outlines not shown.")
    if outline_rows:
        legends.append("<h4>Zones (outlines)</h4>" + "".join(
            f'<div><span class="ln" style="border-top-color:{c}"></span>{lab}</div>'
            + (f'<div class="members">{members}</div>' if members else "")
            for c, lab, members in outline_rows))

    labels = _LabelLayer(label_rows(scores if _usable(scores) else neighborhoods)) \
        if _usable(scores) or _usable(neighborhoods) else None
    if labels is not None:
        labels.add_to(m)
    control = folium.LayerControl(position="topleft", collapsed=False)
    control.add_to(m)
    # the title and the parameters the layers were made with, at the top (a button on a phone)
    _Control(f'<div class="geo-lead-params">{esc(parameters) or "parameters not recorded"}</div>',
             "geo-lead-box geo-lead-about", "topright", esc(title)).add_to(m)
    _Control("".join(legends), "geo-lead-box geo-lead-legend", "bottomright", "Legend").add_to(m)
    _Control("<ul>" + "".join(f"<li>{n}</li>" for n in note_lines) + "</ul>",
             "geo-lead-box geo-lead-notes", "bottomleft", "Notes").add_to(m)
    _Layout(_latlng_bounds(_with_nearby(bounds, far)), control, labels).add_to(m)
    return m


def _with_nearby(bounds: list[tuple[float, float, float, float]], extra: list[tuple[float, float, float, float]],
                 max_growth: float = FIT_MAX_GROWTH) -> list[tuple[float, float, float, float]]:
    """`bounds` plus the `extra` boxes that do not grow their span more than `max_growth` times.

    The comparison area can lie far from the study area: the map opens on the study area
    (a phone shows it large) and the legend names the comparison area's members.
    """
    base = _latlng_bounds(bounds)
    if base is None:
        return bounds + extra
    (s0, w0), (n0, e0) = base
    out = list(bounds)
    for box in extra:
        (s1, w1), (n1, e1) = _latlng_bounds([*out, box]) or base
        if (e1 - w1) <= max_growth * max(e0 - w0, 1e-9) and (n1 - s1) <= max_growth * max(n0 - s0, 1e-9):
            out.append(box)
    return out


def _pilot_size(zones: gpd.GeoDataFrame) -> int | None:
    pilot = zones[zones["role"].astype(str) == "pilot"]
    if len(pilot) and "k" in pilot and pd.notna(pilot["k"].iloc[0]):
        return int(pilot["k"].iloc[0])
    return len(settings.PILOT_NEIGHBORHOODS)


def zone_label(role: str, part: gpd.GeoDataFrame, pilot_k: int | None) -> str:
    """The legend label of a zone role (plain text); a best zone says its own size.

    "Best zone of the same size" only when its ``k`` equals the pilot's; a best zone of
    another size (``geo-lead site --k 3``) reads "Best zone of 3 neighborhoods".
    """
    if role == "best" and "k" in part and len(part) and pd.notna(part["k"].iloc[0]):
        k = int(part["k"].iloc[0])
        if pilot_k is None or k != pilot_k:
            return f"Best zone of {k} neighborhoods" if k != 1 else "Best single neighborhood"
    return ZONE_STYLES.get(role, ("", "", f"zone: {role}"))[2]


def _zone_members(part: gpd.GeoDataFrame) -> str:
    """Escaped member names and PAI of a zone, for its legend entry."""
    out = []
    for row in part.to_dict("records"):
        names = [n.title() for n in str(row.get("neighborhoods", "") or "").split(";") if n]
        text = esc(", ".join(names))
        if row.get("pai_test") is not None and np.isfinite(float(row["pai_test"])):
            text += f" &middot; PAI later period {_fmt(row['pai_test'], 2)}"
        out.append(text)
    return "<br>".join(out)


def label_rows(units: gpd.GeoDataFrame, name_col: str | None = None) -> list[list[Any]]:
    """``[lat, lon, escaped name, min zoom]`` of each named unit, at a point inside it.

    Units of the study area (``in_area``) are labelled from zoom `LABEL_ZOOM_AREA`, the
    others from `LABEL_ZOOM_OTHER`; "REMAINDER OF CITY" / unnamed pieces get no label.
    """
    name_col = name_col or ("neighborhood" if "neighborhood" in units else "NH_NAME")
    if name_col not in units:
        return []
    named = units["is_named"].astype(bool) if "is_named" in units else \
        ~units[name_col].astype(str).str.upper().str.match(r"^(REMAINDER OF CITY|UNNAMED)|^$")
    part = units[named.to_numpy()]
    if part.empty:
        return []
    pts = for_display(gpd.GeoDataFrame(part[[name_col]], geometry=for_figure(part).geometry.representative_point(),
                                       crs=settings.CRS_PROJECTED))
    in_area = part["in_area"].astype(bool).to_numpy() if "in_area" in part else np.ones(len(part), bool)
    return [[round(float(p.y), COORD_DECIMALS), round(float(p.x), COORD_DECIMALS), esc(str(n).title()),
             LABEL_ZOOM_AREA if a else LABEL_ZOOM_OTHER]
            for n, p, a in zip(part[name_col], pts.geometry, in_area, strict=True)]


def _merge_by(cells: gpd.GeoDataFrame, key: np.ndarray) -> gpd.GeoSeries:
    """Union of the cells sharing each key value (index = key, sorted)."""
    geoms = np.asarray(cells.geometry.values)
    keys = sorted(set(key))
    return gpd.GeoSeries([shapely.union_all(geoms[key == k]) for k in keys], index=keys, crs=cells.crs)


def _dissolved_kde(cells: gpd.GeoDataFrame, dens: pd.Series, hot: np.ndarray,
                   breaks: list[float]) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]]]:
    """Merge KDE cells into one feature per colour class, plus one outline for the hotspot."""
    colors = np.asarray([color_for(d, breaks, KDE_COLORS) for d in dens])
    merged = _merge_by(cells, colors)
    stats = pd.DataFrame({"c": colors, "d": dens.to_numpy()}).groupby("c")["d"].agg(["min", "max", "size"])
    props = [{"_tip": f"{_fmt(stats.loc[c, 'min'], 1)} &ndash; {_fmt(stats.loc[c, 'max'], 1)} records per sq mi "
                      f"({int(stats.loc[c, 'size']):,} cells)",
              "_s": {"fillColor": c, "color": c, "weight": 0}} for c in merged.index]
    geoms = list(merged.values)
    if hot.any():
        geoms.append(shapely.union_all(np.asarray(cells.geometry.values)[hot]))
        props.append({"_tip": f"hotspot ({int(hot.sum()):,} cells)",
                      "_s": {"fill": False, "color": "#000000", "weight": 1.5}})
    return gpd.GeoDataFrame(geometry=geoms, crs=cells.crs), props


def _dissolved_gistar(g: gpd.GeoDataFrame, labels: pd.Series) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]]]:
    """Merge Gi* grid cells into one feature per label, with the z range and cell count."""
    z = pd.to_numeric(g["gi_z"], errors="coerce") if "gi_z" in g else pd.Series(np.nan, index=g.index)
    lab = labels.to_numpy().astype(str)
    merged = _merge_by(g, lab)
    stats = pd.DataFrame({"l": lab, "z": z.to_numpy()}).groupby("l")["z"].agg(["min", "max", "size"])
    props = [{"_tip": f"<b>{esc(k)}</b> ({int(stats.loc[k, 'size']):,} cells)",
              "_popup": (f"<b>{esc(k)}</b><br>{int(stats.loc[k, 'size']):,} grid cells"
                         f"<br>Gi* z from {_fmt(stats.loc[k, 'min'], 2)} to {_fmt(stats.loc[k, 'max'], 2)}"),
              "_s": {"fillColor": GISTAR_COLORS.get(k, NO_DATA_COLOR),
                     "fillOpacity": 0.05 if k == "not significant" else 0.7}} for k in merged.index]
    return gpd.GeoDataFrame(geometry=list(merged.values), crs=g.crs), props


def _latlng_bounds(bounds: list[tuple[float, float, float, float]]) -> list[list[float]] | None:
    """``[[south, west], [north, east]]`` of the finite (minx, miny, maxx, maxy) boxes, or None."""
    good = [b for b in bounds if all(np.isfinite(b))]
    if not good:
        return None
    arr = np.asarray(good)
    return [[float(arr[:, 1].min()), float(arr[:, 0].min())], [float(arr[:, 3].max()), float(arr[:, 2].max())]]


# --- the timeline map -------------------------------------------------------------------------
class _Timeline(MacroElement):
    """Monthly choropleth + block points with a range slider (plain Leaflet, no plugin)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function () {
            var map = {{ this._parent.get_name() }};
            var months = {{ this.months }}, areas = {{ this.areas }}, counts = {{ this.counts }};
            var points = {{ this.points }}, table = {{ this.point_table }};
            var colors = {{ this.colors }}, breaks = {{ this.breaks }};
            function colorFor(v) {
                if (!v) { return null; }
                for (var i = 0; i < breaks.length; i++) { if (v <= breaks[i]) { return colors[colors.length - breaks.length + i]; } }
                return colors[colors.length - 1];
            }
            var current = 0;
            var areaLayer = L.geoJson(areas, {
                className: 'geo-lead-timeline-areas',
                style: function (f) {
                    var v = counts[current][f.properties._i] || 0, c = colorFor(v);
                    return {color: '#666', weight: 0.8, fillColor: c || '#ffffff', fillOpacity: c ? 0.75 : 0.05};
                },
                onEachFeature: function (f, layer) {
                    layer.bindTooltip(function () {
                        return f.properties._tip + '<br>' + months[current] + ': ' + (counts[current][f.properties._i] || 0) + ' records';
                    }, {sticky: true});
                }
            }).addTo(map);
            var pointLayer = L.layerGroup().addTo(map);
            function show(i) {
                current = i;
                areaLayer.setStyle(areaLayer.options.style);
                pointLayer.clearLayers();
                points[i].forEach(function (p) {
                    var t = table[p[0]];  // [lat, lon, escaped address]
                    L.circleMarker([t[0], t[1]], {radius: 2 + Math.sqrt(p[1]) * 2, color: '#67000d', weight: 1,
                        fillColor: '#cb181d', fillOpacity: 0.8, className: 'geo-lead-timeline-point'})
                        .bindTooltip(t[2] + '<br>' + p[1] + ' records in ' + months[i]).addTo(pointLayer);
                });
                document.getElementById('geo-lead-month').textContent = months[i];
                var total = 0; for (var k in counts[i]) { total += counts[i][k]; }
                document.getElementById('geo-lead-month-total').textContent = total + ' records mapped';
            }
            var box = L.control({position: 'topright'});
            box.onAdd = function () {
                var div = L.DomUtil.create('div', 'geo-lead-box geo-lead-slider');
                div.innerHTML = '<div class="geo-lead-title">' + {{ this.title }} + '</div>' +
                    '<div class="geo-lead-params">' + {{ this.parameters }} + '</div>' +
                    '<div class="geo-lead-title">Month: <span id="geo-lead-month"></span></div>' +
                    '<input id="geo-lead-range" type="range" min="0" max="' + (months.length - 1) + '" value="0" step="1">' +
                    '<div><button id="geo-lead-play" type="button">&#9654; play</button> <span id="geo-lead-month-total"></span></div>';
                L.DomEvent.disableClickPropagation(div);
                return div;
            };
            box.addTo(map);
            var range = document.getElementById('geo-lead-range'), timer = null;
            range.addEventListener('input', function () { show(parseInt(range.value, 10)); });
            document.getElementById('geo-lead-play').addEventListener('click', function () {
                if (timer) { clearInterval(timer); timer = null; return; }
                timer = setInterval(function () {
                    var i = (parseInt(range.value, 10) + 1) % months.length;
                    range.value = i; show(i);
                }, 800);
            });
            show(0);
        })();
        {% endmacro %}
    """)

    def __init__(self, months: list[str], areas: dict[str, Any], counts: list[dict[str, int]],
                 point_table: list[list[Any]], points: list[list[list[int]]], breaks: list[float],
                 title: str = "", parameters: str = "") -> None:
        super().__init__()
        self._name = "Timeline"
        self.title = script_json(esc(title))
        self.parameters = script_json(esc(parameters))
        self.months, self.areas = script_json(months), script_json(areas)
        self.counts, self.points = script_json(counts), script_json(points)
        self.point_table = script_json(point_table)
        self.colors, self.breaks = script_json(list(SCORE_COLORS)), script_json(breaks)


def parse_when(values: Any) -> pd.Series:
    """ISO-8601 text (the store's ``occurred_at``) -> UTC timestamps; anything else -> NaT."""
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    return pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")


def monthly_counts(records: pd.DataFrame, areas: gpd.GeoDataFrame,
                   name_col: str = "NH_NAME") -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Records -> months, counts per (month, area) and per (month, block point).

    Uses the records' ``neighborhood`` column when present, otherwise a point-in-polygon join
    with `areas`. Records with no parseable ``occurred_at`` or no coordinates are left out
    (the caller notes how many).

    Returns
    -------
    months
        ``YYYY-MM`` strings of the months that have records, in order (a sample or an
        extract with gaps would otherwise give a slider of mostly empty months).
    area_counts
        ``month``, ``area``, ``n``.
    point_counts
        ``month``, ``lon``, ``lat``, ``address`` (the point's most common address), ``n``.
    """
    missing = pd.Series(np.nan, index=records.index, dtype=object)
    when = parse_when(records.get("occurred_at", missing))
    lon = pd.to_numeric(records.get("lon", missing), errors="coerce")
    lat = pd.to_numeric(records.get("lat", missing), errors="coerce")
    ok = when.notna() & lon.notna() & lat.notna()
    frame = pd.DataFrame({"month": when[ok].dt.strftime("%Y-%m"),
                          "lon": lon[ok].round(COORD_DECIMALS), "lat": lat[ok].round(COORD_DECIMALS),
                          "address": records.loc[ok, "address_raw"].fillna("").astype(str)
                          if "address_raw" in records else ""})
    if "neighborhood" in records and records.loc[ok, "neighborhood"].fillna("").ne("").any():
        frame["area"] = records.loc[ok, "neighborhood"].fillna("").astype(str)
    else:
        pts = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                               crs=settings.CRS_STORE)
        joined = gpd.sjoin(pts, for_display(areas)[[name_col, "geometry"]], how="left",
                           predicate="intersects")  # as the spatial join: edges belong somewhere
        joined = joined[~joined.index.duplicated(keep="first")]
        frame["area"] = joined[name_col].fillna("").astype(str)
    if frame.empty:
        return [], frame.assign(n=0)[["month", "area", "n"]], frame.assign(n=0)
    months = sorted(frame["month"].unique())
    area_counts = frame[frame["area"] != ""].groupby(["month", "area"]).size().rename("n").reset_index()
    point_counts = frame.groupby(["month", "lon", "lat"]).size().rename("n").reset_index()
    address = _group_mode(frame, ["lon", "lat"], "address").rename("address").reset_index()
    point_counts = point_counts.merge(address, on=["lon", "lat"], how="left")
    return months, area_counts, point_counts


def build_timeline_map(records: pd.DataFrame | None, areas: gpd.GeoDataFrame | None, *,
                       name_col: str = "NH_NAME", tiles: bool = False,
                       title: str = "LEAD records by month", notes: Sequence[str] = (),
                       parameters: str = "") -> folium.Map:
    """A map of monthly records with a time slider (choropleth by area + block points).

    Parameters
    ----------
    records
        Records with ``occurred_at``, ``lon``, ``lat`` and optionally ``neighborhood``,
        ``address_raw``.
    areas
        Polygons to count in (neighborhoods or the ``scores`` layer) with a `name_col`.
    """
    m = _new_map(tiles, title)
    notes = [esc(n) for n in notes]
    if not _usable(areas) or records is None or len(records) == 0:
        notes.append("No geocoded records with dates (or no neighborhoods): nothing to animate.")
        _Control("<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>",
                 "geo-lead-box geo-lead-notes", "bottomleft", "Notes").add_to(m)
        _Layout(None).add_to(m)
        return m
    if name_col not in areas:
        name_col = "neighborhood" if "neighborhood" in areas else name_col
    areas = for_display(areas)
    months, area_counts, point_counts = monthly_counts(records, areas, name_col)
    if not months:
        notes.append(f"None of the {len(records):,} records has both a date and a geocode yet "
                     "(run <code>geo-lead geocode</code>): nothing to animate.")
        _DataLayer(_features(areas, [{"_tip": f"<b>{esc(n)}</b>"} for n in areas[name_col]]),
                   "Neighborhoods (outlines)", {"color": "#7f7f7f", "weight": 0.8, "fillOpacity": 0.0},
                   "geo-lead-neighborhoods").add_to(m)
        _Control("<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>",
                 "geo-lead-box geo-lead-notes", "bottomleft", "Notes").add_to(m)
        _Layout(_latlng_bounds([tuple(areas.total_bounds)])).add_to(m)
        return m
    index = {name: i for i, name in enumerate(areas[name_col].astype(str))}
    props = [{"_i": i, "_tip": f"<b>{esc(n)}</b>"} for n, i in index.items()]
    by_month = {mo: {} for mo in months}
    for r in area_counts.itertuples(index=False):
        if r.area in index:
            by_month[r.month][str(index[r.area])] = int(r.n)
    # one table of points, then per month [point index, records] pairs: a small page
    pt_index: dict[tuple[float, float], int] = {}
    pt_table: list[list[Any]] = []
    pts_by_month: dict[str, list[list[int]]] = {mo: [] for mo in months}
    for r in point_counts.itertuples(index=False):
        key = (float(r.lat), float(r.lon))
        if key not in pt_index:
            pt_index[key] = len(pt_table)
            pt_table.append([key[0], key[1], esc(cap_text(r.address)) or "geocoded point"])
        pts_by_month[r.month].append([pt_index[key], int(r.n)])
    mapped = int(point_counts["n"].sum()) if len(point_counts) else 0
    notes.append(f"{mapped:,} of {len(records):,} records have a date and a geocode and are shown "
                 f"over {len(months)} months ({esc(months[0]) if months else ''} to "
                 f"{esc(months[-1]) if months else ''}).")
    if months:
        span = pd.period_range(pd.Period(months[0], "M"), pd.Period(months[-1], "M"), freq="M")
        if len(span) > len(months):
            notes.append(f"{len(span) - len(months):,} months in that span have no records and are "
                         "skipped by the slider.")
    if len(records) - mapped:
        notes.append(f"{len(records) - mapped:,} records lack a date or a geocode and are not shown.")
    breaks = class_breaks([v for d in by_month.values() for v in d.values()], integer=True)
    _Timeline(months, _features(areas, props), [by_month[mo] for mo in months],
              pt_table, [pts_by_month[mo] for mo in months], breaks, title, parameters).add_to(m)
    _Control("<h4>Records per neighborhood in the month</h4>"
             + _legend_rows([*_range_labels(breaks, SCORE_COLORS, 0, integer=True), ("#ffffff", "0")])
             + _legend_rows([("#cb181d", "block point (size = records)")]),
             "geo-lead-box geo-lead-legend", "bottomright", "Legend").add_to(m)
    _Control("<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>",
             "geo-lead-box geo-lead-notes", "bottomleft", "Notes").add_to(m)
    labels = _LabelLayer(label_rows(areas, name_col))
    labels.add_to(m)
    focus = areas[areas["in_area"].astype(bool)] if "in_area" in areas and areas["in_area"].astype(bool).any() else areas
    if len(focus) < len(areas):  # outline the study area (takes no clicks)
        outline = gpd.GeoDataFrame(geometry=[for_figure(focus).union_all()], crs=settings.CRS_PROJECTED)
        _DataLayer(_features(outline, [{}]), "Study area", {"color": "#444444", "weight": 2.5, "dashArray": "6 4",
                                                           "fill": False}, "geo-lead-study-area",
                   interactive=False).add_to(m)
    _Layout(_latlng_bounds([tuple(focus.total_bounds)]), None, labels).add_to(m)
    return m


# --- store -> files ---------------------------------------------------------------------------
def read_layer(store: Store, table: str) -> gpd.GeoDataFrame | None:
    """A feature layer of the store as a GeoDataFrame (EPSG:4326), or None when absent/empty."""
    from geo_lead.store import wkb_from_gpkg

    if table not in store.tables() or store.count(table) == 0:
        return None
    cols = store.columns(table)
    frame = store.read_table(table, [c for c in cols if c != "fid"])
    geom = shapely.from_wkb([wkb_from_gpkg(b) for b in frame.pop("geom")]) if "geom" in frame else None
    return gpd.GeoDataFrame(frame, geometry=geom, crs=settings.CRS_STORE)


#: Record columns the maps read (never person fields).
RECORD_MAP_COLUMNS: tuple[str, ...] = ("record_id", "occurred_at", "offense_text", "address_raw",
                                       "lon", "lat", "match_type", "neighborhood", *MIX_FLAGS)


def read_map_inputs(store: Store, flagged_only: bool = False,
                    prefetched: tuple[Any, int | None, str | None] | None = None) -> dict[str, Any]:
    """Everything the maps and the report read from the store (missing layers are None).

    `flagged_only`: when the scores name an indicator flag (`indicator_records`' rule), read
    only the records carrying it (``WHERE flag``: the text of a million records the maps would
    drop costs seconds) and give the store's total as ``records_total`` (else None).
    `prefetched`: `read_map_records`' answer for the same store and scores, read earlier
    (`geo-lead run` reads it while its hotspots child still computes).
    """
    scores = read_layer(store, "scores")
    records, total, indicator = prefetched if prefetched is not None else \
        read_map_records(store, scores, flagged_only)
    return {"scores": scores, "kde": read_layer(store, "hotspot_kde"),
            "gistar": read_layer(store, "hotspot_gistar_neighborhoods"),
            "gistar_grid": read_layer(store, "hotspot_gistar_grid"),
            "zones": read_layer(store, "site_zones"), "records": records,
            "records_total": total, "indicator": indicator}


def read_map_records(store: Store, scores: gpd.GeoDataFrame | None,
                     flagged_only: bool = False) -> tuple[pd.DataFrame | None, int | None, str | None]:
    """The records the maps read: ``(records, records_total, indicator)`` (see `read_map_inputs`)."""
    have = set(store.columns("records")) if "records" in store.tables() else set()
    cols = [c for c in RECORD_MAP_COLUMNS if c in have]
    indicator = None
    if flagged_only and scores is not None and "indicator" in scores and scores["indicator"].notna().any():
        indicator = str(scores["indicator"].dropna().iloc[0])
    total = None
    if have and indicator and indicator in cols and indicator in MIX_FLAGS:
        records = store.flagged_records(cols, indicator)
        total = store.count("records")
    else:
        records = store.read_records(cols) if have else None
    return records, total, indicator


def context_layers() -> dict[str, gpd.GeoDataFrame | None]:
    """Neighborhood outlines and the First Division (None when a boundary file is missing)."""
    from geo_lead import boundaries

    out: dict[str, gpd.GeoDataFrame | None] = {"neighborhoods": None, "first_division": None}
    try:
        out["neighborhoods"] = boundaries.load_neighborhoods()
    except Exception as exc:  # a missing boundary file is a note, not a failure
        log.warning("neighborhood outlines not drawn: %s", exc)
    loader = getattr(boundaries, "load_first_division", None)
    if loader is not None:
        try:
            out["first_division"] = loader()
        except Exception as exc:
            log.warning("First Division outline not drawn: %s", exc)
    return out


def indicator_records(records: pd.DataFrame | None,
                      scores: gpd.GeoDataFrame | None) -> tuple[pd.DataFrame | None, list[str]]:
    """The records the maps show: those of the scores' indicator flag, when it names one.

    The choropleth counts one indicator (``scores.indicator``, e.g. ``lead_eligible``); the
    points and the timeline show the same records so the numbers agree. Returns the records
    and a plain-text note saying which were kept (all of them when there is no indicator).
    """
    if records is None or len(records) == 0:
        return records, []
    indicator = None
    if scores is not None and "indicator" in scores and scores["indicator"].notna().any():
        indicator = str(scores["indicator"].dropna().iloc[0])
    if indicator and indicator in records and indicator in MIX_FLAGS:
        kept = records[records[indicator].astype(bool)]
        return kept, [f"Records shown: the {len(kept):,} with the '{indicator}' flag (the scores' "
                      f"indicator) of {len(records):,} in the store."]
    return records, [f"Records shown: all {len(records):,} in the store."]


def stored_parameters(store: Store, site_result: Any = None, hotspots_result: Any = None) -> dict[str, Any]:
    """Result name -> the parameters stored with it (None when absent or not recorded).

    Reads meta ``scores_parameters`` (when the ``scores`` layer exists) and the
    ``parameters`` of ``hotspots_result`` / ``site_result`` (pass them when already read).
    """
    site = store.get_json("site_result") if site_result is None else site_result
    hot = store.get_json("hotspots_result") if hotspots_result is None else hotspots_result
    has_scores = "scores" in store.tables() and store.count("scores") > 0
    return {"scores": store.get_json("scores_parameters") if has_scores else None,
            "hotspots": hot.get("parameters") if isinstance(hot, dict) else None,
            "site": site.get("parameters") if isinstance(site, dict) else None}


#: Page name -> file stem; ``--tiles`` pages get a ``_tiles`` suffix and never replace these.
MAP_PAGES: tuple[str, ...] = ("site_selection", "timeline")
TILES_SUFFIX: str = "_tiles"


def write_maps(store: Store, out_dir: Path = settings.MAPS_DIR, offline: bool = True,
               tiles: bool = False, prefetched: tuple[Any, int | None, str | None] | None = None,
               ) -> dict[str, Path]:
    """Write ``site_selection.html`` and ``timeline.html`` from the store.

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
    from geo_lead.offline import save_map
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
    paths: dict[str, Path] = {}
    for with_tiles in (False, True) if tiles else (False,):
        suffix = TILES_SUFFIX if with_tiles else ""
        site = build_site_map(inputs["scores"], inputs["kde"], inputs["gistar"], inputs["zones"], records,
                              gistar_grid=inputs["gistar_grid"], neighborhoods=ctx["neighborhoods"],
                              first_division=ctx["first_division"], tiles=with_tiles, notes=notes,
                              parameters=line)
        timeline = build_timeline_map(records, areas, name_col=name_col, tiles=with_tiles, notes=notes,
                                      parameters=line)
        for name, page in (("site_selection", site), ("timeline", timeline)):
            paths[name + suffix] = save_map(page, out_dir / f"{name}{suffix}.html", offline=offline)
    log.info("maps written: %s", ", ".join(str(p) for p in paths.values()))
    return paths
