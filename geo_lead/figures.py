"""Static figures for the report (matplotlib, Agg backend, PNG bytes).

* `rank_interval_figure`: neighborhoods ranked by score with their bootstrap rank intervals;
* `choropleth_figure`: the score by neighborhood with the zone outlines;
* `concentration_figure`: a Lorenz-style curve, share of records vs share of block points
  (and of area, by neighborhood), as in Weisburd's law of crime concentration.

Each builder returns a `matplotlib.figure.Figure` (no global pyplot state); `png_bytes`
turns one into PNG bytes. `concentration_curve` is the pure computation behind the curve.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # no display on servers / CI; must precede any pyplot import elsewhere

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from geo_lead import settings
from geo_lead.cartography import (
    NO_DATA_COLOR,
    SCORE_COLORS,
    ZONE_STYLES,
    choropleth_classes,
    choropleth_shapes,
    for_figure,
)

log = logging.getLogger(__name__)


#: Column -> words for titles (no raw field names or CRS codes in what people read).
COLUMN_TITLES: dict[str, str] = {"score": "score (0-1)", "count": "records",
                                 "density_per_sqmi": "records per sq mi",
                                 "eb_rate_per_1000": "smoothed rate per 1,000 residents"}


def png_bytes(fig: Figure, dpi: int = settings.FIGURE_DPI) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def concentration_curve(counts: Sequence[float] | np.ndarray,
                        weights: Sequence[float] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of units (or of their weight) vs cumulative share of records.

    Units are sorted from the most to the least records per unit of weight (the order that
    makes the curve steepest), as in a Lorenz curve of crime concentration.

    Parameters
    ----------
    counts
        Records per unit (block point, neighborhood); units with zero records count too.
    weights
        Size of each unit (e.g. area in sq mi); equal weights when None.

    Returns
    -------
    x, y
        Arrays starting at 0 and ending at 1: x = share of units/weight, y = share of records.
    """
    c = np.asarray(counts, dtype=float)
    w = np.ones_like(c) if weights is None else np.asarray(weights, dtype=float)
    if c.size == 0 or c.sum() <= 0 or w.sum() <= 0:
        return np.array([0.0, 1.0]), np.array([0.0, 0.0])
    density = np.divide(c, w, out=np.full_like(c, -np.inf), where=w > 0)  # weightless units last
    order = np.argsort(-density, kind="stable")
    x = np.concatenate([[0.0], np.cumsum(w[order]) / w.sum()])
    y = np.concatenate([[0.0], np.cumsum(c[order]) / c.sum()])
    return x, y


def share_at(x: np.ndarray, y: np.ndarray, share_of_records: float = 0.5) -> float:
    """The smallest share of units (x) that holds `share_of_records` of the records."""
    idx = int(np.searchsorted(y, share_of_records - 1e-12))
    return float(x[min(idx, len(x) - 1)])


def rank_interval_figure(scores: pd.DataFrame, top_n: int = 20,
                         highlight: Sequence[str] = settings.PILOT_NEIGHBORHOODS) -> Figure:
    """Neighborhoods ranked by score, with their bootstrap rank intervals (in-area, named only)."""
    frame = pd.DataFrame(scores).copy()
    if "in_area" in frame:
        frame = frame[frame["in_area"].astype(bool)]
    if "is_named" in frame:
        frame = frame[frame["is_named"].astype(bool)]
    frame = frame.dropna(subset=["rank"]).sort_values("rank").head(top_n)
    fig = Figure(figsize=(7.5, 0.32 * max(len(frame), 4) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(frame))[::-1]
    pilot = frame["neighborhood"].astype(str).str.upper().isin([h.upper() for h in highlight]).to_numpy()
    low = frame.get("rank_low", frame["rank"]).to_numpy(dtype=float)
    high = frame.get("rank_high", frame["rank"]).to_numpy(dtype=float)
    ax.hlines(y, low, high, color=np.where(pilot, "#bd0026", "#777777"), linewidth=3, alpha=0.6)
    ax.scatter(frame["rank"], y, color=np.where(pilot, "#bd0026", "#222222"), zorder=3, s=22)
    ax.set_yticks(y, [str(n).title() for n in frame["neighborhood"]], fontsize=8)
    ax.set_xlabel("rank (1 = highest score); bar = likely rank range (bootstrap)")
    ax.set_xlim(0.5, max(float(np.nanmax(high)) if len(frame) else 1.0, 1.0) + 0.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Neighborhoods ranked by score (pilot neighborhoods in red)", fontsize=10)
    fig.tight_layout()
    return fig


def choropleth_figure(scores: gpd.GeoDataFrame, zones: gpd.GeoDataFrame | None = None,
                      column: str = "score") -> Figure:
    """The score by neighborhood (quantile classes) with the pilot/best/comparison outlines."""
    colors, breaks = choropleth_classes(scores, column)
    return draw_choropleth(choropleth_shapes(scores), colors, breaks, zones, column)


def draw_choropleth(shapes: gpd.GeoDataFrame, colors: Sequence[str], breaks: Sequence[float],
                    zones: gpd.GeoDataFrame | None = None, column: str = "score") -> Figure:
    """`choropleth_figure` from its parts (`geo_lead.cartography`: `choropleth_shapes`,
    `choropleth_classes`, `zone_outlines`)."""
    sc = for_figure(shapes)
    in_area = sc["in_area"].astype(bool)
    fig = Figure(figsize=(8.5, 6.0))
    ax = fig.subplots()
    sc.plot(ax=ax, color=colors, edgecolor="#666666", linewidth=0.4)
    handles: list[Patch | Line2D] = []
    offset = len(SCORE_COLORS) - len(breaks)
    low = None
    for i, b in enumerate(breaks):
        label = f"<= {b:.2f}" if low is None else f"{low:.2f} - {b:.2f}"
        handles.append(Patch(facecolor=SCORE_COLORS[offset + i], edgecolor="#666666", label=label))
        low = b
    handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="#666666", label="outside study area"))
    if zones is not None and len(zones) and "role" in zones:
        z = for_figure(zones)
        for role, part in z.groupby("role", sort=False):
            color, dash, label = ZONE_STYLES.get(str(role), ("#e7298a", "4 4", str(role)))
            style: Literal["-", "--"] = "-" if dash is None else "--"
            part.boundary.plot(ax=ax, color=color, linewidth=2.2, linestyle=style)
            handles.append(Line2D([0], [0], color=color, linewidth=2.2, linestyle=style, label=label))
    study = sc[in_area] if in_area.any() else sc
    xmin, ymin, xmax, ymax = study.total_bounds
    pad = 0.08 * max(xmax - xmin, ymax - ymin)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, framealpha=0.9,
              title=f"{COLUMN_TITLES.get(column, column)} (quantiles)", title_fontsize=8)
    ax.set_title(f"Neighborhoods by {COLUMN_TITLES.get(column, column)}", fontsize=10)
    fig.tight_layout()
    return fig


def concentration_figure(point_counts: Sequence[float] | np.ndarray | None,
                         area_counts: pd.DataFrame | None = None) -> Figure:
    """Share of records vs share of block points (and of area, by neighborhood).

    Parameters
    ----------
    point_counts
        Records per geocoded block point (``n`` of `geo_lead.map_layers.aggregate_points`).
    area_counts
        ``count`` and ``area_sqmi`` per neighborhood (the ``scores`` layer), optional.
    """
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="no concentration")
    if point_counts is not None and len(point_counts):
        x, y = concentration_curve(point_counts)
        half = share_at(x, y)
        ax.plot(x, y, color="#bd0026", label=f"block points: 50% of records on {half:.1%} of points")
    if area_counts is not None and len(area_counts) and {"count", "area_sqmi"} <= set(area_counts.columns):
        x, y = concentration_curve(area_counts["count"].fillna(0), area_counts["area_sqmi"])
        half = share_at(x, y)
        ax.plot(x, y, color="#2166ac", label=f"neighborhoods: 50% of records on {half:.1%} of area")
    ax.set_xlabel("cumulative share of places (points or area), densest first")
    ax.set_ylabel("cumulative share of records")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Concentration of records", fontsize=10)
    fig.tight_layout()
    return fig
