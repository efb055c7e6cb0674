"""Figures of the pilot period (matplotlib, Agg): the before/after monthly series and the
year-by-year small multiples.

Kept apart from `geo_lead.figures` (the report's other figures); each builder returns a
`matplotlib.figure.Figure`, rendered with `geo_lead.figures.png_bytes`.

* `monthly_series_figure`: weighted monthly records per group, the pilot start marked;
* `year_choropleths_figure`: one choropleth per year on one colour scale, the official First
  Division and the pilot zone outlined.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers / CI

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator

from geo_lead import settings
from geo_lead.evaluation import EvaluationResult

#: Line colours per group (colour-blind safe, the pilot red as in the maps' pilot outline).
GROUP_COLORS: dict[str, str] = {"pilot": "#d73027", "comparison": "#4575b4", "rest": "#555555"}
GROUP_LABELS: dict[str, str] = {"pilot": "pilot zone", "comparison": "comparison area",
                                "rest": "rest of the city"}


def monthly_series_figure(result: EvaluationResult | dict, width_in: float = 9.0) -> Figure:
    """Two panels sharing the time axis: the pilot zone and the comparison area (top), the rest
    of the city (bottom, its own scale); each period's mean as a flat segment, the pilot start
    as a dashed line, the left-out transition month shaded.

    Parameters
    ----------
    result
        An `EvaluationResult` or its ``to_dict()`` (as stored in meta ``evaluation_result``).
    """
    data = result.to_dict() if isinstance(result, EvaluationResult) else result
    monthly = pd.DataFrame(data["monthly"])
    # matplotlib date numbers, ticked here (`_year_ticks`): its date locator's rrule search
    # took about a third of the drawing time
    monthly["when"] = mdates.date2num(pd.PeriodIndex(monthly["month"], freq="M").to_timestamp()
                                      + pd.Timedelta(days=14))
    start = mdates.date2num(pd.Timestamp(data["pilot_start"]))
    fig = Figure(figsize=(width_in, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for ax, groups in ((top, ("pilot", "comparison")), (bottom, ("rest",))):
        for g in groups:
            ax.plot(monthly["when"], monthly[g], color=GROUP_COLORS[g], lw=1.2, marker="o", ms=2.5,
                    label=f"{GROUP_LABELS[g]}" + (f" ({' + '.join(data['zones'][g]).title()})"
                                                   if g in data["zones"] else ""))
            for period, key in (("before", "before_mean_per_month"), ("after", "after_mean_per_month")):
                part = monthly[monthly["period"] == period]
                if len(part):
                    ax.hlines(data["groups"][g][key], part["when"].min(), part["when"].max(),
                              color=GROUP_COLORS[g], lw=2.5, alpha=0.45)
        ax.axvline(start, color="black", ls="--", lw=1)
        for m in monthly.loc[monthly["period"] == "transition", "month"]:
            p = pd.Period(m, freq="M")
            ax.axvspan(mdates.date2num(p.start_time), mdates.date2num(p.end_time), color="#dddddd", alpha=0.7, lw=0)
        ax.set_ylabel("records / month\n(weighted)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    e = data["estimate"]
    did = "n/a" if e["did_log"] is None else f"{e['did_log']:+.2f}"
    ci = "" if e["ci_low"] is None else f" ({data['bootstrap']['level']:.0%} interval {e['ci_low']:+.2f} .. {e['ci_high']:+.2f})"
    top.set_title(f"{data['indicator']} records per month; pilot start {data['pilot_start']} (dashed); "
                  f"DiD of log means vs comparison {did}{ci}", fontsize=9)
    ticks, labels = _year_ticks(min(monthly["when"].min(), start), max(monthly["when"].max(), start))
    bottom.xaxis.set_major_locator(FixedLocator(ticks))
    bottom.xaxis.set_major_formatter(FixedFormatter(labels))
    fig.tight_layout()
    return fig


#: At most this many year ticks on a time axis (`_year_ticks` labels every n-th year beyond).
MAX_YEAR_TICKS = 12


def _year_ticks(first: float, last: float) -> tuple[list[float], list[str]]:
    """Ticks at January 1 from the year before `first` to the year after `last` (matplotlib date
    numbers; the axis shows those in view), labelled with the year; every n-th year when more
    than `MAX_YEAR_TICKS` years. A span under two years: every quarter, labelled YYYY-MM."""
    lo, hi = mdates.num2date(first), mdates.num2date(last)
    if hi.year - lo.year < 2:
        quarters = pd.period_range(pd.Period(lo.strftime("%Y-%m"), freq="Q") - 1,
                                   pd.Period(hi.strftime("%Y-%m"), freq="Q") + 1, freq="Q")
        return [float(mdates.date2num(q.start_time)) for q in quarters], [q.start_time.strftime("%Y-%m") for q in quarters]
    step = -(-(hi.year - lo.year + 3) // MAX_YEAR_TICKS)
    years = range(lo.year - lo.year % step, hi.year + 2, step)
    return [float(mdates.date2num(pd.Timestamp(year=y, month=1, day=1))) for y in years], [str(y) for y in years]


def year_choropleths_figure(neighborhoods: gpd.GeoDataFrame, by_year: dict, value: str = "density_per_sqmi",
                            first_division: gpd.GeoDataFrame | None = None, pilot: gpd.GeoDataFrame | None = None,
                            cols: int = 2) -> Figure:
    """Small multiples: one map per year of `value` per neighborhood, one colour scale.

    Parameters
    ----------
    neighborhoods
        Units with NH_NAME (any CRS; drawn in EPSG:2246).
    by_year
        `geo_lead.by_year.ByYearResult.to_dict()`: its ``scores[i][value]`` maps NH_NAME -> value
        (default: weighted records per sq mi in the year).
    first_division, pilot
        Outlines drawn on every panel.
    """
    nh = neighborhoods.to_crs(settings.CRS_PROJECTED)
    years = [s["year"] for s in by_year.get("scores", [])]
    values = {s["year"]: s.get(value, {}) for s in by_year.get("scores", [])}
    every = np.array([v for y in years for v in values[y].values() if v is not None and v > 0], dtype=float)
    vmax = float(np.quantile(every, 0.98)) if len(every) else 1.0
    norm = mcolors.PowerNorm(gamma=0.5, vmin=0.0, vmax=max(vmax, 1e-9))  # one scale for every year
    cmap = matplotlib.colormaps["YlOrRd"]
    rows = max(1, int(np.ceil(len(years) / cols)))
    fig = Figure(figsize=(4.4 * cols, 4.0 * rows + 0.8))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    fd = first_division.to_crs(settings.CRS_PROJECTED) if first_division is not None else None
    pz = pilot.to_crs(settings.CRS_PROJECTED) if pilot is not None else None
    focus = fd if fd is not None else nh
    xmin, ymin, xmax, ymax = focus.total_bounds
    pad = 0.5 * max(xmax - xmin, ymax - ymin)
    for ax, year in zip(axes, years, strict=False):
        v = nh["NH_NAME"].map(values[year]).astype(float).fillna(0.0)
        nh.plot(ax=ax, color=[cmap(norm(x)) for x in v], edgecolor="#888888", linewidth=0.3)
        if fd is not None:
            fd.boundary.plot(ax=ax, color="#2166ac", linewidth=1.4)
        if pz is not None:
            pz.boundary.plot(ax=ax, color="#000000", linewidth=1.6, linestyle="--")
        # the river lies north of the First Division: show more of the city to the south
        ax.set_xlim(xmin - pad, xmax + pad)
        ax.set_ylim(ymin - 1.6 * pad, ymax + 0.1 * pad)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(str(year), fontsize=10)
    for ax in axes[len(years):]:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.12, wspace=0.02, hspace=0.08)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    cax = fig.add_axes((0.15, 0.06, 0.7, 0.02))
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.set_label(f"{value.replace('_', ' ')} of eligible records, weighted (one scale for every year); "
                 "blue: official First Division, dashed: pilot zone", fontsize=8)
    return fig

