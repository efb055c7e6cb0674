"""What the report's figures plot, and their PNGs drawn once per distinct input.

The report (`geo_lead.report`, `geo_lead.pilot_report`) asks for each figure here: the values a
figure shows are worked out first (colours and class breaks and the shapes from
`geo_lead.cartography`, the rank columns, the counts), hashed, and the PNG is drawn by `geo_lead.figures` / `geo_lead.pilot_figures` only when
`geo_lead.figure_cache` has none for that input, so an unchanged figure costs neither
matplotlib's import nor its drawing. Every builder gets exactly what was hashed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.cartography import choropleth_classes, choropleth_shapes, zone_outlines
from geo_lead.figure_cache import cached_png


def _figures() -> ModuleType:
    from geo_lead import figures

    return figures


def _pilot_figures() -> ModuleType:
    from geo_lead import pilot_figures

    return pilot_figures


#: Score columns the ranking figure reads (`geo_lead.figures.rank_interval_figure`).
RANK_FIGURE_COLUMNS: tuple[str, ...] = ("neighborhood", "rank", "rank_low", "rank_high", "in_area", "is_named")


def rank_png(scores: pd.DataFrame) -> bytes:
    """`geo_lead.figures.rank_interval_figure` as PNG, keyed by `RANK_FIGURE_COLUMNS` of `scores`."""
    frame = pd.DataFrame(scores[[c for c in RANK_FIGURE_COLUMNS if c in scores]]).reset_index(drop=True)
    highlight = list(settings.PILOT_NEIGHBORHOODS)
    return cached_png("rank_intervals", (frame, highlight),
                      lambda: _figures().rank_interval_figure(frame, highlight=highlight))


def choropleth_png(scores: Any, zones: Any) -> bytes:
    """`geo_lead.figures.choropleth_figure` (score, else count) as PNG, keyed by what it draws:
    the shapes, each unit's colour, the class breaks and the zone outlines."""
    col = "score" if "score" in scores else "count"
    colors, breaks = choropleth_classes(scores, col)
    shapes, outlines = choropleth_shapes(scores), zone_outlines(zones)
    return cached_png("choropleth", (shapes, colors, breaks, outlines, col),
                      lambda: _figures().draw_choropleth(shapes, colors, breaks, outlines, col))


def point_counts(records: pd.DataFrame | None) -> np.ndarray | None:
    """Records per geocoded block point (`geo_lead.map_layers.point_record_counts`), None without records."""
    from geo_lead.map_layers import point_record_counts

    return point_record_counts(records) if records is not None and len(records) else None


def concentration_png(points: np.ndarray | None, area: pd.DataFrame | None) -> bytes:
    """`geo_lead.figures.concentration_figure` as PNG, keyed by the counts per point and the
    ``count``/``area_sqmi`` per unit."""
    counts = points if points is not None and len(points) else None
    return cached_png("concentration", (counts, area), lambda: _figures().concentration_figure(counts, area))


#: Keys of an evaluation result's ``monthly`` rows the monthly figure draws.
MONTHLY_ROW_KEYS: tuple[str, ...] = ("month", "period", "pilot", "comparison", "rest")
#: Keys of each ``groups`` entry and of ``estimate`` the monthly figure draws.
MONTHLY_GROUP_KEYS: tuple[str, ...] = ("before_mean_per_month", "after_mean_per_month")
MONTHLY_ESTIMATE_KEYS: tuple[str, ...] = ("did_log", "ci_low", "ci_high")


def monthly_series_data(result: dict[str, Any]) -> dict[str, Any]:
    """What `geo_lead.pilot_figures.monthly_series_figure` draws of an evaluation result (its
    ``to_dict()``): the monthly rows (`MONTHLY_ROW_KEYS`), the pilot start, the zones, each
    group's period means, the estimate and its interval level, the indicator. Not the record
    accounting, the gap months or the limits' text, which the figure does not show."""
    return {
        "monthly": [{k: row[k] for k in MONTHLY_ROW_KEYS if k in row} for row in result["monthly"]],
        "pilot_start": result["pilot_start"],
        "zones": result["zones"],
        "groups": {g: {k: d[k] for k in MONTHLY_GROUP_KEYS if k in d} for g, d in result["groups"].items()},
        "estimate": {k: result["estimate"][k] for k in MONTHLY_ESTIMATE_KEYS},
        "bootstrap": {"level": result["bootstrap"]["level"]},
        "indicator": result["indicator"],
    }


def monthly_series_png(result: dict[str, Any]) -> bytes:
    """`geo_lead.pilot_figures.monthly_series_figure` of `result` (an evaluation result's
    ``to_dict()``) as PNG bytes, drawn once per distinct `monthly_series_data`: the figure is
    drawn from that projection alone, so its key covers all it reads."""
    data = monthly_series_data(result)
    return cached_png("monthly_series", (data,), lambda: _pilot_figures().monthly_series_figure(data))


def year_choropleths_png(neighborhoods: gpd.GeoDataFrame, by_year: dict[str, Any],
                         first_division: gpd.GeoDataFrame | None = None,
                         pilot: gpd.GeoDataFrame | None = None) -> bytes:
    """`geo_lead.pilot_figures.year_choropleths_figure` (default value) as PNG bytes, drawn once
    per distinct input: the units' names and shapes, each year's values and the two outlines."""
    value = "density_per_sqmi"
    nh = gpd.GeoDataFrame({"NH_NAME": neighborhoods["NH_NAME"].to_numpy(object)},
                          geometry=neighborhoods.geometry.to_numpy(), crs=neighborhoods.crs)
    years = {"scores": [{"year": s["year"], value: s.get(value, {})} for s in by_year.get("scores", [])]}
    fd, pz = (None if g is None else gpd.GeoDataFrame(geometry=g.geometry.to_numpy(), crs=g.crs)
              for g in (first_division, pilot))
    return cached_png("year_choropleths", (nh, years, fd, pz),
                      lambda: _pilot_figures().year_choropleths_figure(nh, years, value, first_division=fd,
                                                                       pilot=pz))
