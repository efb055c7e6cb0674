"""Pure layer builders of the maps: frames in, plain data out (GeoJSON dicts, escaped HTML
strings, rows of numbers). No store, no folium.

Colours, classes and the reprojection for display come from `geo_lead.cartography`. Data
strings (addresses, offence text, neighborhood names) are HTML-escaped here, before they reach
a page. Incidents are aggregated to their geocoded point (one row per block point with the
record count and the offence mix); person fields are never read.

`site_layers` turns the site map's inputs into a `SitePage` (layers in drawing order, legend
blocks, notes, the boxes to fit); `timeline` turns records and areas into a `Timeline` (the
slider's months, weighted counts per area and record counts per block point). The folium
elements that draw them are in `geo_lead.map_elements`; `geo_lead.maps` assembles the pages.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_lead import allocation, settings
from geo_lead.cartography import (
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

#: Offence categories shown in a block point's mix (the store's indicator flags).
MIX_FLAGS: tuple[str, ...] = ("opiate", "possession", "trafficking", "paraphernalia",
                              "overdose", "other_drug", "lead_eligible")
COORD_DECIMALS: int = settings.MAP_COORD_DECIMALS
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

#: A (minx, miny, maxx, maxy) box in EPSG:4326.
Box = tuple[float, float, float, float]


# --- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One GeoJSON overlay: features with ``_s`` (style), ``_tip`` and ``_popup`` (escaped HTML)."""

    data: dict[str, Any]
    name: str
    base_style: dict[str, Any]
    css_class: str
    show: bool = True
    interactive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "name": self.name, "base_style": self.base_style,
                "css_class": self.css_class, "show": self.show, "interactive": self.interactive}


@dataclass(frozen=True)
class PointSpec:
    """The block-point layer: `point_rows`' payload and the layer's name."""

    payload: dict[str, Any]
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"payload": self.payload, "name": self.name}


@dataclass
class SitePage:
    """The site map as plain data: layers in drawing order, legend blocks and notes (escaped
    HTML), the boxes the opening view fits (`bounds`) and those fitted only when near (`far`)."""

    layers: list[LayerSpec | PointSpec] = field(default_factory=list)
    legends: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bounds: list[Box] = field(default_factory=list)
    far: list[Box] = field(default_factory=list)

    def fit_bounds(self) -> list[list[float]] | None:
        """``[[south, west], [north, east]]`` of the opening view (None: nothing to fit)."""
        return latlng_bounds(with_nearby(self.bounds, self.far))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers], "legends": list(self.legends),
                "notes": list(self.notes), "bounds": self.fit_bounds()}


@dataclass(frozen=True)
class SiteMapInputs:
    """The site map's inputs; every one optional (a missing one is noted on the page).

    Attributes
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
    """

    scores: gpd.GeoDataFrame | None = None
    kde: gpd.GeoDataFrame | None = None
    gistar: gpd.GeoDataFrame | None = None
    zones: gpd.GeoDataFrame | None = None
    record_points: pd.DataFrame | None = None
    gistar_grid: gpd.GeoDataFrame | None = None
    neighborhoods: gpd.GeoDataFrame | None = None
    first_division: gpd.GeoDataFrame | None = None


@dataclass(frozen=True)
class Timeline:
    """The timeline's data: ``months`` (``YYYY-MM``), ``areas`` (GeoJSON, feature ``_i`` = area
    index), ``counts`` (per month {area index as text: weighted records}), ``point_table``
    ([lat, lon, escaped address] per point), ``points`` (per month [[point index, records]]),
    ``breaks`` (class upper bounds of the counts)."""

    months: list[str]
    areas: dict[str, Any]
    counts: list[dict[str, float]]
    point_table: list[list[Any]]
    points: list[list[list[int]]]
    breaks: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"months": self.months, "areas": self.areas, "counts": self.counts,
                "point_table": self.point_table, "points": self.points, "breaks": self.breaks}


# --- small helpers ----------------------------------------------------------------------------
#: The CDN addresses of Leaflet and Leaflet.markercluster (`geo_lead.offline` inlines the vendored
#: copies for offline pages) and the tiles' attribution; here, not in `geo_lead.map_elements`, so that
#: a map page's key (`geo_lead.maps.page_key`) reads them without importing folium.
LEAFLET_JS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"
LEAFLET_CSS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"
CLUSTER_JS = "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/leaflet.markercluster.js"
CLUSTER_CSS = (
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/MarkerCluster.css",
    "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/MarkerCluster.Default.css",
)
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
#: What Jinja reads as syntax (its default delimiters) or rewrites (a carriage return).
JINJA_ACTIVE: tuple[str, ...] = ("{{", "{%", "{#", "\r")


def script_json(obj: object) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def esc(value: Any) -> str:
    """HTML-escape any value for a tooltip or popup (None/NaN -> empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)




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
    The geometries are `display_geometries` (reused across runs for the same geometries).
    """
    geoms = display_geometries(gdf, simplify_ft)
    feats = [{"type": "Feature", "geometry": g, "properties": p}
             for g, p in zip(geoms, props, strict=True) if g is not None]
    return {"type": "FeatureCollection", "features": feats}


#: `geo_lead.result_cache` kind of `display_geometries`' GeoJSON geometries.
DISPLAY_GEOMETRY_CACHE = "map_geometry"


def display_geometries(gdf: gpd.GeoDataFrame, simplify_ft: float = settings.MAP_SIMPLIFY_FT) -> list[Any]:
    """`gdf`'s geometries as a web map draws them: simplified by `simplify_ft` feet (projected;
    none when 0), in lon/lat, rounded to `COORD_DECIMALS`, as GeoJSON geometry mappings (None
    for a missing or empty geometry), in row order.

    Pure in the geometries, their CRS and `simplify_ft`: kept across runs under the sha256 of
    those, the code and the libraries' versions (kind ``map_geometry``), so a page drawn again
    for a new note or score does not simplify and reproject unchanged outlines again.
    """
    from geo_lead import result_cache

    wkb = shapely.to_wkb(np.asarray(gdf.geometry.values, dtype=object)) if len(gdf) else []
    key = result_cache.digest([DISPLAY_GEOMETRY_CACHE, result_cache.code_version(),
                               result_cache.library_versions("shapely", "pyproj", "geopandas"),
                               str(gdf.crs), repr(float(simplify_ft)), str(COORD_DECIMALS),
                               *(b"" if w is None else w for w in wkb)])
    hit = result_cache.read_object(DISPLAY_GEOMETRY_CACHE, key)
    if isinstance(hit, list) and len(hit) == len(gdf):
        return hit
    if simplify_ft > 0 and len(gdf):
        gdf = for_figure(gdf)
        gdf = gdf.set_geometry(gdf.geometry.simplify(simplify_ft, preserve_topology=True))
    geoms = shapely.transform(np.asarray(for_display(gdf).geometry.values),
                              lambda xy: np.round(xy, COORD_DECIMALS))
    out = [None if g is None or g.is_empty else shapely.geometry.mapping(g) for g in geoms]
    result_cache.write_object(DISPLAY_GEOMETRY_CACHE, key, out)
    return out



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


def point_record_counts(records: pd.DataFrame | None) -> np.ndarray:
    """Records per geocoded point, largest first: `aggregate_points`' ``n`` column, counted
    without the addresses and offence mix (int64; empty without coordinates)."""
    if records is None or len(records) == 0 or not {"lon", "lat"} <= set(records.columns):
        return np.zeros(0, dtype=np.int64)
    lon = pd.to_numeric(records["lon"], errors="coerce")
    lat = pd.to_numeric(records["lat"], errors="coerce")
    ok = (lon.notna() & lat.notna()).to_numpy(bool)
    frame = pd.DataFrame({"lon": lon[ok].round(COORD_DECIMALS), "lat": lat[ok].round(COORD_DECIMALS)})
    counts = frame.groupby(["lon", "lat"], sort=False).size().to_numpy(np.int64)
    return -np.sort(-counts)


def _ranked_values(frame: pd.DataFrame, keys: list[str], col: str,
                   k: int) -> tuple[pd.MultiIndex, np.ndarray, np.ndarray, np.ndarray]:
    """The `k` most common non-empty values of `col` per group of `keys`, by column arrays.

    Returns ``(groups, group, value, count)``: ``groups`` the distinct key tuples in order of
    first appearance in `frame`; then one entry per kept (group, value) pair, sorted by group
    position, count descending, value ascending (code-point order): ``group`` positions into
    ``groups``, ``value`` the values (object array of str), ``count`` their counts (int64).
    """
    gcodes = frame.groupby(keys, sort=False).ngroup().to_numpy(np.int64)
    firsts = np.unique(gcodes, return_index=True)[1]
    groups = pd.MultiIndex.from_arrays([frame[c].to_numpy()[firsts] for c in keys], names=keys)
    text = frame[col]
    keep = (text != "").to_numpy(dtype=bool, na_value=False)
    vcodes, uniques = pd.factorize(text[keep])
    texts = np.asarray(uniques, dtype=object)
    order = np.asarray(sorted(range(len(texts)), key=texts.__getitem__), dtype=np.int64)
    rank = np.empty(len(texts), dtype=np.int64)
    rank[order] = np.arange(len(texts))
    width = max(len(texts), 1)
    pairs, count = np.unique(gcodes[keep] * width + rank[vcodes], return_counts=True)
    group, vrank = np.divmod(pairs, width)
    sort = np.lexsort((vrank, -count, group))
    group, vrank, count = group[sort], vrank[sort], count[sort]
    first = np.r_[True, group[1:] != group[:-1]] if len(group) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(group)), 0)) if len(group) else group
    top = (np.arange(len(group)) - start) < k
    return groups, group[top], texts[order][vrank[top]], count[top]


def _group_mode(frame: pd.DataFrame, keys: list[str], col: str) -> pd.Series:
    """Most common non-empty value of `col` per group (ties: first in sort order); '' if none.

    Indexed by the groups in order of first appearance in `frame`.
    """
    groups, group, values, _ = _ranked_values(frame, keys, col, 1)
    out = np.full(len(groups), "", dtype=object)
    out[group] = values
    return pd.Series(out, index=groups, name=col)


def _group_top(frame: pd.DataFrame, keys: list[str], col: str, k: int) -> pd.Series:
    """The `k` most common non-empty values of `col` per group as [(value, count), ...].

    Indexed by the groups that have one (empty when none has).
    """
    groups, group, values, count = _ranked_values(frame, keys, col, k)
    if not len(group):
        return pd.Series(dtype=object)
    firsts, lists = _runs(group, list(zip(values.tolist(), count.tolist(), strict=True)))
    return pd.Series(lists, index=groups[np.asarray(firsts, dtype=np.int64)], dtype=object)


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
    n = len(points)
    blank = [""] * n
    mt_text = _escape_each(points["match_type"].tolist() if "match_type" in points else blank, capped=False)
    mts: dict[str, int] = {}
    mt_codes = [mts.setdefault(t, len(mts)) for t in mt_text]
    # free text is capped (`cap_text`): one record's 10 MB description cannot bloat a page
    addresses = _escape_each(points["address"].tolist() if "address" in points else blank, capped=True)
    tops = points["offences"].tolist() if "offences" in points else [None] * n
    pairs = [p for top in tops for p in (top or [])]
    offs: dict[str, int] = {}
    codes = [offs.setdefault(t, len(offs)) for t in _escape_each([t for t, _ in pairs], capped=True)]
    flat = [[code, int(c)] for code, (_, c) in zip(codes, pairs, strict=True)]
    ends = np.cumsum([len(top or []) for top in tops]).tolist()
    counts = (np.column_stack([points[f].to_numpy() for f in flags]).astype(np.int64).tolist() if flags
              else [[] for _ in range(n)])
    rows = [[la, lo, k, ad, mt, fl, flat[end - len(top or []):end]]
            for la, lo, k, ad, mt, fl, top, end in zip(
                points["lat"].to_numpy(float).tolist(), points["lon"].to_numpy(float).tolist(),
                points["n"].to_numpy(np.int64).tolist(), addresses, mt_codes, counts, tops, ends, strict=True)]
    return {"rows": rows, "match_types": list(mts), "flags": [esc(f.replace("_", " ")) for f in flags],
            "offences": list(offs)}


def _escape_each(values: list[Any], capped: bool) -> list[str]:
    """`esc` (of `cap_text` when `capped`) of each value; computed once per distinct text."""
    memo: dict[str, str] = {}
    out = []
    for v in values:
        if type(v) is str and v in memo:
            out.append(memo[v])
            continue
        text = esc(cap_text(v)) if capped else esc(v)
        if type(v) is str:
            memo[v] = text
        out.append(text)
    return out


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



def with_nearby(bounds: list[tuple[float, float, float, float]], extra: list[tuple[float, float, float, float]],
                 max_growth: float = FIT_MAX_GROWTH) -> list[tuple[float, float, float, float]]:
    """`bounds` plus the `extra` boxes that do not grow their span more than `max_growth` times.

    The comparison area can lie far from the study area: the map opens on the study area
    (a phone shows it large) and the legend names the comparison area's members.
    """
    base = latlng_bounds(bounds)
    if base is None:
        return bounds + extra
    (s0, w0), (n0, e0) = base
    out = list(bounds)
    for box in extra:
        (s1, w1), (n1, e1) = latlng_bounds([*out, box]) or base
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


def latlng_bounds(bounds: list[tuple[float, float, float, float]]) -> list[list[float]] | None:
    """``[[south, west], [north, east]]`` of the finite (minx, miny, maxx, maxy) boxes, or None."""
    good = [b for b in bounds if all(np.isfinite(b))]
    if not good:
        return None
    arr = np.asarray(good)
    return [[float(arr[:, 1].min()), float(arr[:, 0].min())], [float(arr[:, 3].max()), float(arr[:, 2].max())]]


def parse_when(values: Any) -> pd.Series:
    """ISO-8601 text (the store's ``occurred_at``) -> UTC timestamps; anything else -> NaT."""
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    return pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")


def _record_units(records: pd.DataFrame, frame: pd.DataFrame, areas: gpd.GeoDataFrame,
                  name_col: str) -> pd.DataFrame:
    """``neighborhood`` (+ ``boundary_units``, ``weight``) of the dated, placed records.

    The records' own ``neighborhood`` when any is set; otherwise a point-in-polygon join of
    the points in `frame` with `areas` (edges belong somewhere, as in the spatial join).
    """
    keep = [c for c in ("neighborhood", "boundary_units", "weight") if c in records]
    units = records.loc[frame.index, keep].copy()
    if "neighborhood" in units and units["neighborhood"].fillna("").ne("").any():
        return units
    pts = gpd.GeoDataFrame(frame[["lon", "lat"]], geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                           crs=settings.CRS_STORE)
    joined = gpd.sjoin(pts, for_display(areas)[[name_col, "geometry"]], how="left", predicate="intersects")
    joined = joined[~joined.index.duplicated(keep="first")]
    units["neighborhood"] = joined[name_col].fillna("").astype(str)
    return units.drop(columns=["boundary_units"], errors="ignore")


def _month_labels(when: pd.Series) -> pd.Series:
    """``YYYY-MM`` of each timestamp (as ``dt.strftime("%Y-%m")``, formatted once per month)."""
    ym = (when.dt.year * 100 + when.dt.month).to_numpy(np.int64)
    codes, months = pd.factorize(ym)
    labels = np.asarray([f"{v // 100:04d}-{v % 100:02d}" for v in months.tolist()], dtype=object)
    return pd.Series(labels[codes], index=when.index, dtype=object)


def monthly_counts(records: pd.DataFrame, areas: gpd.GeoDataFrame, name_col: str = "NH_NAME",
                   rule: str = settings.BOUNDARY_RULE) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Records -> months, weighted counts per (month, area) and record counts per (month, point).

    An area's count is the sum of each record's frame ``weight`` (1 when the column is
    missing) x its share of the area (`geo_lead.allocation.unit_shares` with `rule`: under
    ``split`` a record listed in two ``boundary_units`` adds weight/2 to each), as the scores
    count. Areas come from the records' ``neighborhood`` column when present, otherwise from
    a point-in-polygon join with `areas` (each record whole to its area). Records with no
    parseable ``occurred_at`` or no coordinates are left out (the caller notes how many).

    Returns
    -------
    months
        ``YYYY-MM`` strings of the months that have records, in order (a sample or an
        extract with gaps would otherwise give a slider of mostly empty months).
    area_counts
        ``month``, ``area``, ``n`` (float: weighted records).
    point_counts
        ``month``, ``lon``, ``lat``, ``address`` (the point's most common address), ``n``
        (records at the point in the month, unweighted).
    """
    rule = allocation.check_rule(rule)
    records = records.reset_index(drop=True)
    missing = pd.Series(np.nan, index=records.index, dtype=object)
    when = parse_when(records.get("occurred_at", missing))
    lon = pd.to_numeric(records.get("lon", missing), errors="coerce")
    lat = pd.to_numeric(records.get("lat", missing), errors="coerce")
    ok = when.notna() & lon.notna() & lat.notna()
    frame = pd.DataFrame({"month": _month_labels(when[ok]),
                          "lon": lon[ok].round(COORD_DECIMALS), "lat": lat[ok].round(COORD_DECIMALS),
                          "address": records.loc[ok, "address_raw"].fillna("").astype(str)
                          if "address_raw" in records else ""})
    if frame.empty:
        return [], pd.DataFrame({"month": [], "area": [], "n": []}), frame.assign(n=0)
    units = _record_units(records, frame, areas, name_col)
    shares = allocation.unit_shares(units, rule)
    weight = allocation.record_weight(units).reindex(shares["row"]).to_numpy(float) * shares["share"].to_numpy(float)
    area_counts = (pd.DataFrame({"month": frame["month"].reindex(shares["row"]).to_numpy(),
                                 "area": shares["unit"].to_numpy(), "n": weight})
                   .groupby(["month", "area"])["n"].sum().reset_index())
    months = sorted(frame["month"].unique())
    point_counts = frame.groupby(["month", "lon", "lat"]).size().rename("n").reset_index()
    address = _group_mode(frame, ["lon", "lat"], "address").rename("address").reset_index()
    point_counts = point_counts.merge(address, on=["lon", "lat"], how="left")
    return months, area_counts, point_counts


# --- the site map's layers ---------------------------------------------------------------------
def _add_outlines(page: SitePage, neighborhoods: gpd.GeoDataFrame) -> None:
    """Neighborhood outlines (drawn only when there is no score layer, which outlines them)."""
    nb = for_display(neighborhoods)
    name_col = "NH_NAME" if "NH_NAME" in nb else nb.columns[0]
    props = [{"_tip": esc(n)} for n in nb[name_col]]
    page.layers.append(LayerSpec(_features(nb, props), "Neighborhoods (outlines)",
                                 {"color": "#7f7f7f", "weight": 0.8, "fill": True, "fillOpacity": 0.0},
                                 "geo-lead-neighborhoods"))
    page.bounds.append(tuple(nb.total_bounds))


def _add_scores(page: SitePage, scores: gpd.GeoDataFrame, score_column: str) -> None:
    """The score choropleth, its legend, and the study area as the box to fit."""
    sc = for_display(scores)
    col = score_column if score_column in sc else next(
        (c for c in ("score", "eb_rate_per_1000", "density_per_sqmi", "count") if c in sc), None)
    props, breaks = _score_props(sc, col or "score")
    page.layers.append(LayerSpec(_features(sc, props), "Neighborhood scores (click one)",
                                 {"color": "#555555", "weight": 1, "fillOpacity": 0.7}, "geo-lead-score"))
    page.legends.append(f"<h4>Neighborhoods by {COLUMN_WORDS.get(col or '', esc(col))}</h4>" + _legend_rows(
        [*_range_labels(breaks, SCORE_COLORS, 2), (NO_DATA_COLOR, "outside the study area / no data")]))
    in_area = sc["in_area"].astype(bool) if "in_area" in sc else None
    page.bounds.append(tuple(sc[in_area].total_bounds) if in_area is not None and in_area.any()
                       else tuple(sc.total_bounds))


def _add_kde(page: SitePage, kde: gpd.GeoDataFrame) -> None:
    """The kernel-density surface (cells with density > 0; merged by class when many)."""
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
        page.notes.append(f"Density grid cells merged by class for display ({len(k):,} cells).")
    page.layers.append(LayerSpec(_features(cells, props, simplify_ft=0), "Kernel density surface",
                                 {"fillOpacity": 0.55, "weight": 0}, "geo-lead-kde", show=False))
    page.legends.append(f"<h4>Kernel density{bw}</h4>" + _legend_rows(
        _range_labels(breaks, KDE_COLORS, 0)) + "<div>records per sq mi; hotspot cells outlined</div>")
    page.notes.append(f"Density surface: {len(k):,} grid cells with density &gt; 0 "
                      f"({int((~positive).sum()):,} empty cells not drawn).")


def _gistar_props(g: gpd.GeoDataFrame, labels: pd.Series) -> list[dict[str, Any]]:
    """One feature's tooltip, popup and style per Gi* unit (neighborhood or grid cell)."""
    unit = g["neighborhood"] if "neighborhood" in g else (
        g["cell_id"].map(lambda c: f"cell {c}") if "cell_id" in g else pd.Series("", index=g.index))
    none = [None] * len(g)
    return [{"_tip": f"<b>{esc(u)}</b> {esc(lab)}",
             "_popup": (f"<b>{esc(u)}</b><br>Gi* z = {_fmt(z, 2)}<br>pseudo-p = {_fmt(p, 3)}"
                        f"<br>{esc(lab)}" + (f"<br>records {_fmt(c, 1)}" if c is not None else "")),
             "_s": {"fillColor": GISTAR_COLORS.get(lab, NO_DATA_COLOR),
                    "fillOpacity": 0.05 if lab == "not significant" else 0.7}}
            for u, lab, z, p, c in zip(unit, labels, g.get("gi_z", none), g.get("p_sim", none),
                                        g.get("count", none), strict=True)]


def _add_gistar(page: SitePage, layers: Sequence[tuple[gpd.GeoDataFrame, str | None]]) -> None:
    """Gi* layers (neighborhoods, grid cells) and one legend of the labels present."""
    gi_labels: set[str] = set()
    for layer, what in layers:
        g = for_display(layer)
        is_grid = what == "grid cells" or "cell_id" in g
        labels = g["label"].fillna("not significant").astype(str) if "label" in g \
            else pd.Series("not significant", index=g.index)
        gi_labels |= set(labels)
        if len(g) <= settings.MAP_MAX_CELL_FEATURES:
            props = _gistar_props(g, labels)
        else:  # a fine Gi* grid: one polygon per label, with the z range and the cell count
            g, props = _dissolved_gistar(g, labels)
        page.layers.append(LayerSpec(_features(g, props, simplify_ft=0 if is_grid else settings.MAP_SIMPLIFY_FT),
                                     f"Gi* hot/cold spots ({'grid' if is_grid else 'neighborhoods'})",
                                     {"color": "#666666", "weight": 0.5, "fillOpacity": 0.7},
                                     "geo-lead-gistar-grid" if is_grid else "geo-lead-gistar", show=False))
    present = [lab for lab in GISTAR_COLORS if lab in gi_labels]
    page.legends.append("<h4>Gi* (FDR-adjusted)</h4>" + _legend_rows([(GISTAR_COLORS[lab], esc(lab)) for lab in present]))


def _add_points(page: SitePage, record_points: pd.DataFrame) -> None:
    """Records aggregated to block points (or points already aggregated: an ``n`` column)."""
    pts = record_points if "n" in record_points else aggregate_points(record_points)
    total = int(pts["n"].sum()) if len(pts) else 0
    if "n" not in record_points:
        missing = len(record_points) - total
        if missing:
            page.notes.append(f"{missing:,} of {len(record_points):,} records are not geocoded and not on the map.")
    if not len(pts):
        page.notes.append("No record is geocoded yet (run <code>geo-lead geocode</code>): incident layer not shown.")
        return
    page.layers.append(PointSpec(point_rows(pts), f"Records by block point ({total:,})"))
    page.notes.append(f"Records are shown aggregated to {len(pts):,} geocoded block points "
                      f"({total:,} records); a cluster shows the number of records it holds.")
    page.legends.append("<h4>Records</h4>" + _legend_rows([("#cb181d", "a geocoded block point (click it)")]))


def _add_zones(page: SitePage, first_division: gpd.GeoDataFrame | None, zones: gpd.GeoDataFrame | None) -> None:
    """First Division and zone outlines (no clicks), with a legend that names the members."""
    outline_rows: list[tuple[str, str, str]] = []
    if _usable(first_division):
        fd = for_display(first_division)
        color, dash, label = ZONE_STYLES["first_division"]
        # outlines take no clicks: a click inside them reaches the neighborhood below
        page.layers.append(LayerSpec(_features(fd, [{}] * len(fd)), label,
                                     {"color": color, "weight": 3, "dashArray": dash, "fill": False},
                                     "geo-lead-zone-first_division", interactive=False))
        outline_rows.append((color, label, ""))
    else:
        page.notes.append("First Division outline not available (no boundary file).")
    if zones is not None and _usable(zones) and "role" in zones:
        outline_rows += _zone_outlines(page, for_display(zones))
    else:
        page.notes.append("No site-selection zones in the store (run <code>geo-lead site</code>): "
                          "pilot, best and comparison outlines not shown.")
    if outline_rows:
        page.legends.append("<h4>Zones (outlines)</h4>" + "".join(
            f'<div><span class="ln" style="border-top-color:{c}"></span>{lab}</div>'
            + (f'<div class="members">{members}</div>' if members else "")
            for c, lab, members in outline_rows))


def _zone_outlines(page: SitePage, z: gpd.GeoDataFrame) -> list[tuple[str, str, str]]:
    """One outline layer per zone role; returns the legend rows (colour, label, members)."""
    rows = []
    pilot_k = _pilot_size(z)
    for role, part in z.groupby("role", sort=False):
        label = zone_label(str(role), part, pilot_k)
        color, dash, _ = ZONE_STYLES.get(str(role), ("#e7298a", "4 4", ""))
        # the pilot is drawn widest and first, so an identical best zone still shows it
        weight = {"pilot": 7, "best": 4}.get(str(role), 3)
        page.layers.append(LayerSpec(_features(part, [{}] * len(part)), esc(label),
                                     {"color": color, "weight": weight, "dashArray": dash, "fill": False},
                                     f"geo-lead-zone-{esc(role)}", interactive=False))
        rows.append((color, esc(label), _zone_members(part)))
        (page.far if str(role) == "comparison" else page.bounds).append(tuple(part.total_bounds))
    return rows


def site_layers(inputs: SiteMapInputs, score_column: str = "score", notes: Sequence[str] = ()) -> SitePage:
    """The site map's layers, legends and notes from its inputs (see `SiteMapInputs`).

    `notes` are plain text (escaped here); a missing input adds a note saying what to run.
    """
    page = SitePage(notes=[esc(n) for n in notes])
    if _usable(inputs.neighborhoods) and not _usable(inputs.scores):  # scores outline them
        _add_outlines(page, inputs.neighborhoods)
    if _usable(inputs.scores):
        _add_scores(page, inputs.scores, score_column)
    else:
        page.notes.append("No neighborhood scores in the store (run <code>geo-lead score</code>): choropleth not shown.")
    if _usable(inputs.kde):
        _add_kde(page, inputs.kde)
    else:
        page.notes.append("No kernel-density surface in the store (run <code>geo-lead hotspots</code>).")
    gi_layers = [(layer, what) for layer, what in ((inputs.gistar, None), (inputs.gistar_grid, "grid cells"))
                 if _usable(layer)]
    if gi_layers:
        _add_gistar(page, gi_layers)
    else:
        page.notes.append("No Gi* results in the store (run <code>geo-lead hotspots</code>).")
    if inputs.record_points is not None and len(inputs.record_points) > 0:
        _add_points(page, inputs.record_points)
    else:
        page.notes.append("No geocoded records in the store (run <code>geo-lead geocode</code>): incident layer not shown.")
    _add_zones(page, inputs.first_division, inputs.zones)
    return page


def site_labels(inputs: SiteMapInputs) -> list[list[Any]] | None:
    """`label_rows` of the scores' units (else the neighborhoods'); None when neither is given."""
    if _usable(inputs.scores):
        return label_rows(inputs.scores)
    if _usable(inputs.neighborhoods):
        return label_rows(inputs.neighborhoods)
    return None


def notes_html(notes: Sequence[str]) -> str:
    """The notes box's body: one list item per (escaped HTML) note."""
    return "<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"


def about_html(parameters: str) -> str:
    """The title box's body: the parameters line (escaped)."""
    return f'<div class="geo-lead-params">{esc(parameters) or "parameters not recorded"}</div>'


# --- the timeline ------------------------------------------------------------------------------
def outline_layer(areas: gpd.GeoDataFrame, name_col: str) -> LayerSpec:
    """Area outlines with their names as tooltips (the timeline with nothing to animate)."""
    return LayerSpec(_features(areas, [{"_tip": f"<b>{esc(n)}</b>"} for n in areas[name_col]]),
                     "Neighborhoods (outlines)", {"color": "#7f7f7f", "weight": 0.8, "fillOpacity": 0.0},
                     "geo-lead-neighborhoods")


def study_area_outline(areas: gpd.GeoDataFrame) -> tuple[LayerSpec | None, gpd.GeoDataFrame]:
    """The study area (``in_area`` units, else all) and, when it is not every unit, its outline."""
    flag = areas["in_area"].astype(bool) if "in_area" in areas else None
    focus = areas[flag] if flag is not None and flag.any() else areas
    if len(focus) == len(areas):
        return None, focus
    outline = gpd.GeoDataFrame(geometry=[for_figure(focus).union_all()], crs=settings.CRS_PROJECTED)
    return LayerSpec(_features(outline, [{}]), "Study area",
                     {"color": "#444444", "weight": 2.5, "dashArray": "6 4", "fill": False},
                     "geo-lead-study-area", interactive=False), focus


def timeline(records: pd.DataFrame, areas: gpd.GeoDataFrame, name_col: str,
             rule: str = settings.BOUNDARY_RULE) -> tuple[Timeline, list[str]]:
    """The timeline's data and its notes (escaped HTML) from records and areas (EPSG:4326).

    Area counts are `monthly_counts`' weighted counts; points count records. With no month
    to show, the `Timeline` has no months and the notes say why.
    """
    months, area_counts, point_counts = monthly_counts(records, areas, name_col, rule)
    if not months:
        return Timeline([], {}, [], [], [], []), [
            f"None of the {len(records):,} records has both a date and a geocode yet "
            "(run <code>geo-lead geocode</code>): nothing to animate."]
    index = {name: i for i, name in enumerate(areas[name_col].astype(str))}
    props = [{"_i": i, "_tip": f"<b>{esc(n)}</b>"} for n, i in index.items()]
    by_month: dict[str, dict[str, float]] = {mo: {} for mo in months}
    for r in area_counts.itertuples(index=False):
        if r.area in index:
            by_month[r.month][str(index[r.area])] = _count_value(r.n)
    table, pts_by_month = _point_table(point_counts, months)
    mapped = int(point_counts["n"].sum()) if len(point_counts) else 0
    breaks = class_breaks([v for d in by_month.values() for v in d.values()], integer=True)
    data = Timeline(months, _features(areas, props), [by_month[mo] for mo in months], table,
                    [pts_by_month[mo] for mo in months], breaks)
    return data, _timeline_notes(months, mapped, len(records))


def _count_value(n: float) -> float:
    """A weighted count for the page: whole numbers as integers, others to 3 decimals."""
    v = round(float(n), 3)
    return int(v) if v == int(v) else v


def _point_table(point_counts: pd.DataFrame, months: list[str]) -> tuple[list[list[Any]], dict[str, list[list[int]]]]:
    """One table of points, then per month [point index, records] pairs: a small page.

    Points are numbered in order of first appearance in `point_counts`; each month's pairs
    keep `point_counts`' row order.
    """
    by_month: dict[str, list[list[int]]] = {mo: [] for mo in months}
    if not len(point_counts):
        return [], by_month
    lat = point_counts["lat"].to_numpy(float)
    lon = point_counts["lon"].to_numpy(float)
    codes = pd.DataFrame({"lat": lat, "lon": lon}).groupby(["lat", "lon"], sort=False).ngroup().to_numpy(np.int64)
    firsts = np.unique(codes, return_index=True)[1]
    address = point_counts["address"].to_numpy(dtype=object)[firsts]
    table = [[la, lo, esc(cap_text(ad)) or "geocoded point"]
             for la, lo, ad in zip(lat[firsts].tolist(), lon[firsts].tolist(), address.tolist(), strict=True)]
    month = point_counts["month"].to_numpy(dtype=object)
    pairs = np.column_stack([codes, point_counts["n"].to_numpy(np.int64)]).tolist()
    for mo, rows in zip(*_runs(month, pairs), strict=True):
        by_month[mo].extend(rows)
    return table, by_month


def _runs(keys: np.ndarray, rows: list[Any]) -> tuple[list[Any], list[list[Any]]]:
    """`rows` cut into runs of equal consecutive `keys`: (the run keys, the runs)."""
    if not len(rows):
        return [], []
    cuts = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()
    bounds = [0, *cuts, len(rows)]
    return [keys[i] for i in bounds[:-1]], [rows[a:b] for a, b in itertools.pairwise(bounds)]


def _timeline_notes(months: list[str], mapped: int, n_records: int) -> list[str]:
    notes = [f"{mapped:,} of {n_records:,} records have a date and a geocode and are shown "
             f"over {len(months)} months ({esc(months[0])} to {esc(months[-1])})."]
    span = pd.period_range(pd.Period(months[0], "M"), pd.Period(months[-1], "M"), freq="M")
    if len(span) > len(months):
        notes.append(f"{len(span) - len(months):,} months in that span have no records and are "
                     "skipped by the slider.")
    if n_records - mapped:
        notes.append(f"{n_records - mapped:,} records lack a date or a geocode and are not shown.")
    return notes


#: How the timeline's area counts count, by boundary rule (`allocation.unit_shares`).
COUNT_WORDS: dict[str, str] = {
    "split": "sample-scaled; a record on a boundary shared by several neighborhoods counts in equal parts",
    "first": "sample-scaled; each record counts whole in its neighborhood",
}


def timeline_legend(breaks: Sequence[float], rule: str = settings.BOUNDARY_RULE) -> str:
    """The timeline's legend: weighted records per neighborhood in the month, and the points."""
    return ("<h4>Records per neighborhood in the month</h4>"
            + _legend_rows([*_range_labels(breaks, SCORE_COLORS, 0, integer=True), ("#ffffff", "0")])
            + f"<div>{COUNT_WORDS[allocation.check_rule(rule)]}</div>"
            + _legend_rows([("#cb181d", "block point (size = records)")]))
