"""The report's pilot-period sections: year by year, the official First Division, before/after.

`collect_pilot_data(store)` computes (reads only, writes nothing): the year-by-year scores and
siting (`geo_lead.by_year`), the official vs record-derived First Division
(`geo_lead.divisions`) and the before/after estimate at the city's announcement date
(`settings.PILOT_ANNOUNCEMENT_DATE`, `geo_lead.evaluation`). `pilot_html(data)` renders them
(every data string escaped); a part that could not be computed is said in the page, never
fatal. `geo_lead.report` calls these two through one hook each.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from geo_lead.store import Store

log = logging.getLogger(__name__)


def collect_pilot_data(store: Store, records: pd.DataFrame | None = None) -> dict[str, Any]:
    """Everything the pilot sections show, from an open store (each part None + a note on failure):
    `started_pilot_parts`, then `evaluation_part`.

    `records`: the run's shared read of the records (`geo_lead.pipeline.analysis_records`),
    used by the year-by-year and before/after parts where it gives their own read's answer
    (`by_year.shared_read`, `analysis_reads.reusable_points`); otherwise they read the store.
    """
    out = started_pilot_parts(store, records)()
    return joined(out, evaluation_part(store, records)) if "neighborhoods" in out else out


def started_pilot_parts(store: Store, records: pd.DataFrame | None = None) -> Callable[[], dict[str, Any]]:
    """The parts of `collect_pilot_data` that do not read the site result (the year-by-year
    scores and siting, the official vs record-derived First Division), in two steps: this call
    starts siting the years in a child (when it can fork: `by_year.by_year_started`), scores
    them and computes the divisions here; the function it returns (call it once) waits for the
    years' sites and gives the parts. What the caller does in between runs beside that child."""
    from geo_lead.boundaries import load_neighborhoods

    out: dict[str, Any] = {"notes": [], "announcement": settings.PILOT_ANNOUNCEMENT_DATE}
    if "records" not in store.tables() or "lon" not in store.columns("records"):
        out["notes"].append("no geocoded records in the store yet")
        return lambda: out
    nh = load_neighborhoods()
    out["neighborhoods"] = nh
    from geo_lead.by_year import by_year_started, shared_read
    from geo_lead.divisions import divisions_for_store

    notes: dict[str, list[str]] = {"by_year": [], "divisions": []}  # in this order
    started: list[Callable[[], Any]] = []  # out["by_year"] keeps its place; its value comes in finish
    _attempt(out, "by_year", lambda: started.append(by_year_started(store, records=shared_read(store, records))),
             notes["by_year"])
    _attempt(out, "divisions", lambda: divisions_for_store(store, nh).to_dict(), notes["divisions"])

    def finish() -> dict[str, Any]:
        if started:
            _attempt(out, "by_year", lambda: started[0]().to_dict(), notes["by_year"])
        out["notes"].extend(n for part in notes.values() for n in part)
        return out

    return finish


def evaluation_part(store: Store, records: pd.DataFrame | None = None) -> dict[str, Any]:
    """The before/after estimate at the announcement date, ``{"evaluation": .., "notes": [..]}``
    (it reads the stored site result: the pilot and comparison zones)."""
    from geo_lead.analysis_reads import reusable_points
    from geo_lead.evaluation import EVALUATION_COLUMNS, EvaluationParams, evaluate_store

    out: dict[str, Any] = {"notes": []}
    ev = EvaluationParams(pilot_start=settings.PILOT_ANNOUNCEMENT_DATE)
    _attempt(out, "evaluation", lambda: evaluate_store(
        store, ev, records=reusable_points(store, records, ev.indicator,
                                           [*EVALUATION_COLUMNS, "lon", "lat"])).to_dict(), out["notes"])
    return out


def joined(parts: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """`collect_pilot_data`'s dict from `started_pilot_parts` and `evaluation_part`: the evaluation
    last, its notes after the parts' notes."""
    return {**parts, "evaluation": evaluation["evaluation"], "notes": [*parts["notes"], *evaluation["notes"]]}


def _attempt(out: dict[str, Any], key: str, fn: Callable[[], object], notes: list[str]) -> None:
    """``out[key] = fn()``; on failure None, and a note in `notes` (an optional section must
    not take the whole report down)."""
    try:
        out[key] = fn()
    except GeoLeadError as exc:
        out[key] = None
        notes.append(f"{key}: {exc}")
    except Exception as exc:
        log.warning("report section %s failed", key, exc_info=True)
        out[key] = None
        notes.append(f"{key}: failed ({type(exc).__name__}: {exc})")


# --- html -----------------------------------------------------------------------------------
def _esc(v: object) -> str:
    import html

    return html.escape(str(v), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _f(v: object, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _title(names: list[str]) -> str:
    return " + ".join(n.title() for n in names) or "(none)"


def by_year_html(by: dict[str, Any], nh: gpd.GeoDataFrame | None = None, with_figures: bool = True) -> str:
    """The pilot's place per year (table), the small multiples, and each year's checks."""
    places = by.get("pilot_places") or []
    pilot = list(settings.PILOT_NEIGHBORHOODS)
    head = ("<tr><th>year</th><th class=n>eligible records in the year (city, sampled)</th>"
            + "".join(f"<th>{_esc(p.title())} rank (90% int.)</th>" for p in pilot)
            + "<th>pilot zone among contiguous pairs</th><th class=n>share</th><th class=n>PAI train</th>"
              "<th class=n>PAI test</th><th>verdict</th><th>checks</th></tr>")
    rows = []
    for r in places:
        ranks = r.get("ranks") or {}
        cells = []
        for p in pilot:
            x = ranks.get(p) or {}
            cells.append(f"<td>{_esc(x.get('rank'))} of {_esc(x.get('of'))} ({_esc(x.get('rank_low'))}-"
                         f"{_esc(x.get('rank_high'))})</td>" if x.get("rank") is not None else "<td>n/a</td>")
        checks = ", ".join(f"{_esc(k)}: {_esc(v)}" for k, v in (r.get("checks") or {}).items())
        rows.append(f"<tr><td>{_esc(r['year'])}</td><td class=n>{_esc(r.get('records', ''))}</td>{''.join(cells)}"
                    f"<td>{_esc(r.get('zone_rank', 'n/a'))} of {_esc(r.get('n_zones', 'n/a'))}</td>"
                    f"<td class=n>{_f(r.get('share'), '{:.1%}')}</td><td class=n>{_f(r.get('pai_train'))}</td>"
                    f"<td class=n>{_f(r.get('pai_test'))}</td><td><b>{_esc(r.get('verdict', 'n/a'))}</b>"
                    + (f" ({_esc(r['deciding_check'])})" if r.get("deciding_check") else "")
                    + f"</td><td>{checks}</td></tr>")
    parts = ["<p>Each calendar year scored and sited on its own records (each year weighted by its own "
             "sampling fraction; siting's train months 1-8 and test months 9-12 of the year). The city "
             "chose the zone from data up to 2017; the pilot ran from late 2018.</p>",
             f"<div class=\"scroll\"><table>{head}{''.join(rows)}</table></div>"]
    if with_figures and nh is not None and by.get("scores"):
        from geo_lead.boundaries import load_first_division, load_pilot_zone
        from geo_lead.figure_data import year_choropleths_png

        try:
            fd, pz = load_first_division(), load_pilot_zone()
        except (GeoLeadError, OSError):
            fd = pz = None
        parts.append("<h3>Eligible records per square mile, one map per year</h3>" + _img(
            year_choropleths_png(nh, by, first_division=fd, pilot=pz), "one choropleth per year"))
    for note in by.get("notes") or []:
        parts.append(f"<p class=muted>{_esc(note)}</p>")
    return "".join(parts)


def divisions_html(c: dict[str, Any]) -> str:
    """Official vs record-derived First Division: both, the overlap, the units that differ."""
    same = "They agree." if c.get("agree") else (
        "They differ: " + "; ".join([*(f"{_esc(n.title())} only in the official one" for n in c["only_official"]),
                                    *(f"{_esc(n.title())} only from the records" for n in c["only_records"])]) + ".")
    rows = "".join(
        f"<tr><td>{_esc(u['neighborhood'].title())}</td><td class=n>{u['share_inside_official']:.1%}</td>"
        f"<td>{'yes' if u['official'] else 'no'}</td><td>{'yes' if u['records'] else 'no'}</td>"
        f"<td class=n>{_esc(u['n_records'])}</td><td>{_esc(u['records_division'])}</td>"
        f"<td class=n>{_f(u['records_division_share'], '{:.0%}')}</td></tr>" for u in c.get("units", []))
    return (f"<p>Scoring uses LMPD's official 1st Division polygon (beats dissolved on DISTRICT, the 2014-2016 "
            f"beat plan): <b>{_esc(_title(c['official']))}</b>. The records' own division field gives "
            f"<b>{_esc(_title(c['records']))}</b>. Overlap: {len(c['both'])} of "
            f"{len(set(c['official']) | set(c['records']))}. {same}</p>"
            "<div class=\"scroll\"><table><tr><th>neighborhood</th><th class=n>area inside the official polygon</th><th>official</th>"
            "<th>from records</th><th class=n>geocoded records</th><th>their leading division</th>"
            f"<th class=n>its share</th></tr>{rows}</table></div>"
            f"<p class=muted>{_esc(c.get('rule', ''))}.</p>")


def evaluation_html(e: dict[str, Any], announcement: str, with_figures: bool = True) -> str:
    """The before/after estimate, its interval, the group means, the figure and the limits."""
    est, rest = e["estimate"], e["versus_rest"]
    lvl = f"{e['bootstrap']['level']:.0%}"

    def contrast(c: dict[str, Any], against: str) -> str:
        if c["did_log"] is None:
            return f"<p>Against {against}: no estimate (a period mean is 0).</p>"
        ci = ("no interval" if c["ci_low"] is None else
              f"{lvl} interval {c['ci_low']:+.2f} to {c['ci_high']:+.2f}, i.e. {c['relative_change_low']:+.0%} to "
              f"{c['relative_change_high']:+.0%}")
        return (f"<p>Against {against}: difference in differences of log mean monthly records "
                f"<b>{c['did_log']:+.2f}</b> (the pilot zone's change relative to it: "
                f"<b>{c['relative_change']:+.0%}</b>; {ci}).</p>")

    per = e["periods"]
    rows = "".join(
        f"<tr><td>{_esc(g)}</td><td>{_esc(_title(e['zones'].get(g, [])) if g in e['zones'] else 'every other placed record')}</td>"
        f"<td class=n>{d['before_mean_per_month']:.1f}</td><td class=n>{d['after_mean_per_month']:.1f}</td>"
        f"<td class=n>{d['records_before']:.0f}</td><td class=n>{d['records_after']:.0f}</td></tr>"
        for g, d in e["groups"].items())
    parts = [(f"<p>This section splits the months at <b>{_esc(e['pilot_start'])}</b>, the date of the city's "
              "announcement of the pilot, not the date the first person was diverted; "
              if e["pilot_start"] == announcement else
              f"<p>This section splits the months at <b>{_esc(e['pilot_start'])}</b> (the city announced the "
              f"pilot on {_esc(announcement)}); ")
             + "<code>geo-lead evaluate --pilot-start DATE</code> reruns it with the real start. "
             f"Before: {_esc(per['before']['first'])} to {_esc(per['before']['last'])} ({per['before']['months']} "
             f"months); after: {_esc(per['after']['first'])} to {_esc(per['after']['last'])} "
             f"({per['after']['months']} months)"
             + (f"; {_esc(per['transition_month'])}, which holds the start, is left out" if per.get("transition_month") else "")
             + ".</p>",
             "<div class=\"scroll\"><table><tr><th>group</th><th>neighborhoods</th><th class=n>records / month before (weighted)</th>"
             "<th class=n>after</th><th class=n>sampled records before</th><th class=n>after</th></tr>"
             f"{rows}</table></div>",
             contrast(est, "the comparison area"), contrast(rest, "the rest of the city"),
             f"<p class=muted>{_esc(e['method'])}. Interval: {_esc(e['bootstrap']['method'])}, blocks of "
             f"{e['bootstrap']['block_months']} months, {e['bootstrap']['replicates']} replicates, seed "
             f"{e['bootstrap']['seed']}.</p>"]
    if with_figures:
        from geo_lead.figure_data import monthly_series_png

        parts.append(_img(monthly_series_png(e), "monthly eligible records with the pilot start"))
    parts.append("<h3>What this comparison cannot show</h3><ul>"
                 + "".join(f"<li>{_esc(t)}</li>" for t in e["limits"]) + "</ul>")
    return "".join(parts)


def _section_by_year(data: dict[str, Any]) -> str:
    p = data.get("pilot") or {}
    return by_year_html(p["by_year"], p.get("neighborhoods"), data.get("with_figures", True)) if p.get("by_year") else ""


def _section_divisions(data: dict[str, Any]) -> str:
    p = data.get("pilot") or {}
    return divisions_html(p["divisions"]) if p.get("divisions") else ""


def _section_before_after(data: dict[str, Any]) -> str:
    p = data.get("pilot") or {}
    out = evaluation_html(p["evaluation"], p.get("announcement", ""), data.get("with_figures", True)) \
        if p.get("evaluation") else ""
    if p.get("notes"):
        out += "<p class=muted>Pilot-period sections not shown: " + _esc("; ".join(p["notes"])) + ".</p>"
    return out


#: The report's pilot-period sections, in page order: (id, heading, builder(report data) -> HTML).
#: Each builder reads ``data["pilot"]`` (`collect_pilot_data`) and ``data.get("with_figures")``;
#: a report listing its sections as such triples appends these after its comparison section.
PILOT_SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("by-year", "The pilot period, year by year", _section_by_year),
    ("first-division", "The First Division: official and from the records", _section_divisions),
    ("before-after", "Before and after the pilot began", _section_before_after),
]


def pilot_html(data: dict[str, Any] | None, with_figures: bool = True) -> str:
    """The sections of `PILOT_SECTIONS` with their headings, from `collect_pilot_data`'s dict
    (missing parts noted; empty sections left out)."""
    if not data:
        return ""
    report_data = {"pilot": data, "with_figures": with_figures}
    parts = []
    for sid, title, build in PILOT_SECTIONS:
        body = build(report_data)
        if body:
            parts.append(f'<h2 id="{sid}">{_esc(title)}</h2>{body}')
    return "".join(parts)
