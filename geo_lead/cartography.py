"""Cartography shared by the web maps and the static figures: palettes, quantile classes,
and the one reprojection for display.

`geo_lead.maps` (folium) and `geo_lead.figures` (matplotlib) both draw from here, so the
figures never import the web maps. ``for_display`` (EPSG:4326 for the web) and ``for_figure``
(EPSG:2246 feet, shapes not stretched) are the only reprojections for display.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_lead import settings

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

#: ColorBrewer YlOrRd, 5 classes (score choropleth) and PuBu (density surface).
SCORE_COLORS: tuple[str, ...] = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
KDE_COLORS: tuple[str, ...] = ("#f1eef6", "#bdc9e1", "#74a9cf", "#2b8cbe", "#045a8d")
NO_DATA_COLOR: str = "#d9d9d9"
#: Fixed label -> colour map for Gi* (as esda's examples: red hot, blue cold).
GISTAR_COLORS: dict[str, str] = {
    # labels named by FDR level (hotspots.label_gistar); the older "hot 99%" names below
    # colour stores written before them
    "hot, FDR 1%": "#b2182b", "hot, FDR 5%": "#ef8a62", "hot, FDR 10%": "#fddbc7",
    "cold, FDR 10%": "#d1e5f0", "cold, FDR 5%": "#67a9cf", "cold, FDR 1%": "#2166ac",
    "hot 99%": "#b2182b", "hot 95%": "#ef8a62", "hot 90%": "#fddbc7",
    "cold 90%": "#d1e5f0", "cold 95%": "#67a9cf", "cold 99%": "#2166ac",
    "not significant": "#f7f7f7",
}
#: Outline styles for the zones (role -> colour, dash pattern, label).
ZONE_STYLES: dict[str, tuple[str, str | None, str]] = {
    "first_division": ("#444444", "6 4", "First Division"),
    "pilot": ("#000000", None, "Pilot zone"),
    "best": ("#1a9850", None, "Best zone of the same size"),
    "capacity": ("#762a83", "2 4", "Zone sized to capacity"),
    "comparison": ("#2166ac", "8 4", "Comparison area"),
}


def for_display(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Reproject to lon/lat for the web map (assumes EPSG:4326 when no CRS is set)."""
    if gdf.crs is None:
        return gdf.set_crs(settings.CRS_STORE)
    return gdf if gdf.crs.to_epsg() == 4326 else gdf.to_crs(settings.CRS_STORE)


def for_figure(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Reproject to the projected CRS (feet) for static figures, so shapes are not stretched."""
    return for_display(gdf).to_crs(settings.CRS_PROJECTED)


def class_breaks(values: Iterable[float], k: int = 5, integer: bool = False) -> list[float]:
    """Quantile class upper bounds (k classes) of the finite values; fewer when values tie.

    With `integer` (counts), bounds are rounded up to whole numbers, so classes read
    ``1``, ``2``, ``3 - 5`` rather than ``1 - 1.4``.
    """
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return []
    qs = np.quantile(arr, np.linspace(0, 1, k + 1)[1:])
    if integer:
        qs = np.ceil(qs)
    return sorted({float(q) for q in qs})


def color_for(value: Any, breaks: Sequence[float], colors: Sequence[str]) -> str:
    """The colour of the first class whose upper bound is >= value (grey when missing)."""
    if value is None or not np.isfinite(float(value)) or not breaks:
        return NO_DATA_COLOR
    offset = len(colors) - len(breaks)  # fewer classes -> use the darker end of the ramp
    for i, b in enumerate(breaks):
        if float(value) <= b:
            return colors[offset + i]
    return colors[-1]


# --- what a choropleth draws (the report's figure and its cache key) ---------------------------
def choropleth_classes(scores: pd.DataFrame, column: str = "score") -> tuple[list[str], list[float]]:
    """The colour of each unit and the class breaks (quantiles of the study area's values) of
    `geo_lead.figures.choropleth_figure`: units outside the study area (``in_area`` false) get `NO_DATA_COLOR`."""
    import pandas as pd

    in_area = scores["in_area"].astype(bool) if "in_area" in scores else pd.Series(True, index=scores.index)
    vals = pd.to_numeric(scores[column], errors="coerce")
    breaks = class_breaks(vals[in_area])
    colors = [color_for(v, breaks, SCORE_COLORS) if a else NO_DATA_COLOR for v, a in zip(vals, in_area, strict=True)]
    return colors, breaks


def choropleth_shapes(scores: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """What `geo_lead.figures.draw_choropleth` reads of the units: their geometry and ``in_area`` (all True when
    absent), in their CRS."""
    import geopandas as gpd
    import pandas as pd

    in_area = scores["in_area"].astype(bool) if "in_area" in scores else pd.Series(True, index=scores.index)
    return gpd.GeoDataFrame({"in_area": in_area.to_numpy(bool)}, geometry=scores.geometry.to_numpy(),
                            crs=scores.crs)


def zone_outlines(zones: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    """What `geo_lead.figures.draw_choropleth` reads of the zones (``role`` and geometry), None without zones."""
    import geopandas as gpd

    if zones is None or not len(zones) or "role" not in zones:
        return None
    return gpd.GeoDataFrame({"role": zones["role"].astype(str).to_numpy(object)},
                            geometry=zones.geometry.to_numpy(), crs=zones.crs)
