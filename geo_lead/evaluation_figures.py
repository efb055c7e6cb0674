"""The before/after figure: weighted monthly records per group, the pilot start marked.

Kept apart from `geo_lead.figures` (the report's other figures) so the evaluation owns its
picture; uses the same Agg backend and `geo_lead.figures.png_bytes`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers / CI

import pandas as pd
from matplotlib.figure import Figure

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
    monthly["when"] = pd.PeriodIndex(monthly["month"], freq="M").to_timestamp() + pd.Timedelta(days=14)
    start = pd.Timestamp(data["pilot_start"])
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
            ax.axvspan(p.start_time, p.end_time, color="#dddddd", alpha=0.7, lw=0)
        ax.set_ylabel("records / month\n(weighted)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    e = data["estimate"]
    did = "n/a" if e["did_log"] is None else f"{e['did_log']:+.2f}"
    ci = "" if e["ci_low"] is None else f" ({data['bootstrap']['level']:.0%} interval {e['ci_low']:+.2f} .. {e['ci_high']:+.2f})"
    top.set_title(f"{data['indicator']} records per month; pilot start {data['pilot_start']} (dashed); "
                  f"DiD of log means vs comparison {did}{ci}", fontsize=9)
    fig.tight_layout()
    return fig
