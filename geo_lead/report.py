"""The site-selection report: one self-contained HTML page (figures inlined as base64 PNG).

`collect_report_data` reads the store (records' sources and geocode match types, the
``scores``, ``site_zones`` layers and the ``site_result`` / ``hotspots_result`` JSON);
`build_report_html` turns that dict into HTML (pure, every data string escaped);
`write_report` does both and writes ``maps/report.html``. Missing stages are said in the
page, never fatal. Person fields are never read.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.maps import esc, parse_when
from geo_lead.outputs import write_text

log = logging.getLogger(__name__)

DEFAULT_REPORT: Path = settings.MAPS_DIR / "report.html"
#: Ratcliffe (2004): the minimum geocoding hit rate for reliable crime maps.
MIN_HIT_RATE: float = 0.85
MATCH_TYPES: tuple[str, ...] = ("exact", "interpolated", "block", "intersection", "street", "unmatched")

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px;
       margin: 24px auto; padding: 0 18px; color: #222; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.pilot td { background: #fff0f0; font-weight: 600; }
.muted { color: #666; font-size: 13px; } .warn { color: #a50026; font-weight: 600; }
.verdict { border-left: 5px solid #1a9850; background: #f3faf4; padding: 8px 14px; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 3px; }
"""


# --- store -> data ----------------------------------------------------------------------------
#: Record columns the report reads.
REPORT_RECORD_COLUMNS: tuple[str, ...] = ("source", "source_file", "occurred_at", "match_type",
                                          "geocode_reason", "opiate", "lead_eligible", "lon", "lat")


def collect_report_data(store: Any, records: pd.DataFrame | None = None) -> dict[str, Any]:
    """Everything the report shows, read from an open `geo_lead.store.Store`.

    `records`: every stored record, already read with `REPORT_RECORD_COLUMNS` but
    ``geocode_reason`` (e.g. `geo_lead.pipeline.analysis_records`); used instead of a second
    full read when it fits (`_given_records`), else the records are read here.
    """
    from geo_lead.maps import read_layer

    have = set(store.columns("records")) if "records" in store.tables() else set()
    cols = [c for c in REPORT_RECORD_COLUMNS if c in have]
    given = _given_records(store, records, cols) if records is not None and cols else None
    records = given if given is not None else store.read_records(cols) if cols else pd.DataFrame()
    ingests = store.read_table("ingests") if "ingests" in store.tables() else pd.DataFrame()
    return {
        "store": str(store.path),
        "records": records,
        "ingests": ingests,
        "rejects": store.count("rejects"),
        "reject_reasons": (store.read_table("rejects", ["reason"])["reason"].fillna("(none)")
                           .value_counts().rename_axis("reason").rename("rows").reset_index()
                           if "rejects" in store.tables() else pd.DataFrame()),
        "scores": read_layer(store, "scores"),
        "zones": read_layer(store, "site_zones"),
        "site_result": store.get_json("site_result"),
        "hotspots_result": store.get_json("hotspots_result"),
        "beat_checks": _beat_check_table(store),
    }


def _beat_check_table(store: Any) -> pd.DataFrame:
    from geo_lead.geocode.beat_check import beat_check_table

    return beat_check_table(store)


def _given_records(store: Any, records: pd.DataFrame, cols: list[str]) -> pd.DataFrame | None:
    """`cols` of every stored record from `records` (read earlier), or None when they do not fit.

    The report uses ``geocode_reason`` only for unmatched records, so only those few reasons
    are read (a full read of that long text column cost ~0.3 s at a million records); they
    are put back in fid order, which is `records`' order (`Store.read_records`).
    """
    plain = [c for c in cols if c != "geocode_reason"]
    if any(c not in records for c in plain) or len(records) != store.count("records"):
        return None
    out = pd.DataFrame({c: records[c] for c in plain}, index=records.index)
    if "geocode_reason" in cols:
        if "match_type" not in out:
            return None
        reasons = store.unmatched_reasons()
        unmatched = (out["match_type"] == "unmatched").fillna(False).to_numpy(bool)
        if int(unmatched.sum()) != len(reasons):  # a writer in between: read it all instead
            return None
        values = np.full(len(out), None, dtype=object)
        values[unmatched] = reasons
        out["geocode_reason"] = pd.Series(values, index=out.index, dtype=out["match_type"].dtype)
    return out[cols].reset_index(drop=True)


def source_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Records per source file with the date range of ``occurred_at``."""
    if records.empty or "source_file" not in records:
        return pd.DataFrame(columns=["source_file", "source", "records", "first", "last"])
    when = parse_when(records["occurred_at"]) if "occurred_at" in records else pd.Series(pd.NaT, index=records.index)
    frame = pd.DataFrame({"source_file": records["source_file"].fillna("(unknown)"),
                          "source": records.get("source", pd.Series("", index=records.index)).fillna(""),
                          "when": when})
    out = frame.groupby(["source_file", "source"], dropna=False).agg(
        records=("when", "size"), first=("when", "min"), last=("when", "max")).reset_index()
    for c in ("first", "last"):
        out[c] = out[c].dt.strftime("%Y-%m-%d").fillna("n/a")
    return out


def match_rates(records: pd.DataFrame) -> pd.DataFrame:
    """Records by geocode match type (plus ``not geocoded yet``), with shares summing to 1."""
    if records.empty:
        return pd.DataFrame(columns=["match_type", "records", "share"])
    mt = records["match_type"].fillna("not geocoded yet") if "match_type" in records else \
        pd.Series("not geocoded yet", index=records.index)
    mt = mt.replace("", "not geocoded yet")
    counts = mt.value_counts()
    order = [t for t in (*MATCH_TYPES, "not geocoded yet") if t in counts.index]
    order += [t for t in counts.index if t not in order]
    out = pd.DataFrame({"match_type": order, "records": [int(counts[t]) for t in order]})
    out["share"] = out["records"] / out["records"].sum()
    return out


# --- data -> HTML ---------------------------------------------------------------------------
def _num(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return esc(v)


def _table(frame: pd.DataFrame, formats: dict[str, int] | None = None,
           row_class: list[str] | None = None) -> str:
    formats = formats or {}
    head = "".join(f'<th class="{"n" if c in formats else ""}">{esc(c)}</th>' for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = "".join(
            f'<td class="n">{_num(v, formats[c])}</td>' if c in formats else f"<td>{esc(v)}</td>"
            for c, v in zip(frame.columns, row, strict=True))
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and all(not isinstance(v, (dict, list)) for v in obj):
        return [(prefix, ", ".join(str(v) for v in obj))]
    if isinstance(obj, list):
        return [(prefix, json.dumps(obj))]
    return [(prefix, obj)]


def _kv_table(obj: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v if not isinstance(v, float) else round(v, 4))}</td></tr>"
                   for k, v in _flatten(obj))
    return f"<table>{rows}</table>"


def _records_table(rows: list[dict[str, Any]], digits: int = 2) -> str:
    """A list of flat dicts (e.g. the comparison area's balance) as a table."""
    frame = pd.DataFrame(rows)
    for col in frame.columns:  # lists (neighborhood names) read better joined
        frame[col] = frame[col].map(lambda v: ", ".join(map(str, v)) if isinstance(v, list) else v)
    nums = {}
    for c in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]):
            vals = frame[c].dropna().to_numpy(dtype=float)
            whole = vals.size > 0 and bool(np.all(np.isclose(vals, np.round(vals))))
            nums[c] = 0 if whole else digits
    return _table(frame, nums)


ZONE_KEYS: tuple[tuple[str, str], ...] = (
    ("pilot_zone", "pilot zone"), ("best_zone_same_size", "best zone of the same size"),
    ("best_zone", "best zone (requested size)"), ("capacity_zone", "zone sized to capacity"))
ZONE_FIELDS: tuple[str, ...] = ("neighborhoods", "k", "area_sqmi", "records", "share", "pai_train",
                                "pai_test", "pei_test", "expected_participants")


def verdict_html(result: dict[str, Any], found: Any = None) -> str:
    """The verdict sentence, the checks table and the zones' numbers from ``site_result``
    (sentences from `geo_lead.findings`, never written here)."""
    from geo_lead.findings import findings

    found = found if found is not None else findings(result)
    out = []
    verdict = result.get("verdict")
    if verdict is not None:
        out.append(f'<div class="verdict"><p><b>Verdict: {esc(str(verdict).upper())}</b></p>'
                   f"<p>{esc(found.verdict_sentence)}</p>"
                   + (f"<p class=muted>Rule: {esc(result['verdict_rule'])}.</p>" if result.get("verdict_rule") else "")
                   + "</div>")
    checks = result.get("checks")
    if isinstance(checks, list) and checks and all(isinstance(c, dict) for c in checks):
        out.append("<h3>Checks</h3>" + _table(pd.DataFrame(
            {"check": [c.get("label", c.get("name")) for c in checks],
             "measure": [c.get("measure", "") for c in checks],
             "status": [c.get("status") for c in checks],
             "value": [_check_value(c.get("value")) for c in checks],
             "threshold": [_check_value(c.get("threshold")) for c in checks],
             "why": [c.get("detail", "") for c in checks]})))
    elif isinstance(result.get("verdict_checks"), dict) and result["verdict_checks"]:
        old = result["verdict_checks"]
        out.append("<h3>Checks</h3>" + _table(pd.DataFrame(
            {"check": list(old), "passed": ["yes" if v else "NO" for v in old.values()]})))
    if result.get("pilot_rank") is not None:
        out.append(f"<p>The pilot zone ranks <b>{esc(result['pilot_rank'])}</b> of "
                   f"{esc(result.get('n_candidate_zones', '?'))} contiguous candidate zones of its size"
                   + (f" on the training period; it stays in the top set in "
                      f"{float(result['stability']['bootstrap_top_share']):.0%} of bootstrap resamples"
                      if isinstance(result.get("stability"), dict) and result["stability"].get("bootstrap_top_share") is not None else "")
                   + ".</p>")
    rows = []
    for key, label in ZONE_KEYS:
        z = result.get(key)
        if isinstance(z, dict) and z.get("neighborhoods"):
            rows.append({"zone": label, **{f: z.get(f) for f in ZONE_FIELDS if f in z}})
    if rows:
        out.append("<h3>Zones compared</h3><p class=muted>share = share of the indicator's records in the "
                   "candidate area; PAI = share of records / share of area, on the training and the later "
                   "(test) period; PEI = PAI / best achievable PAI for that area.</p>" + _records_table(rows))
    periods = result.get("periods")
    if isinstance(periods, dict) and periods.get("rule"):
        out.append(f"<p class=muted>Periods: {esc(periods['rule'])} "
                   f"(train {esc(periods.get('train', '?'))}, test {esc(periods.get('test', '?'))} records).</p>")
    cap = result.get("capacity_zone")
    if isinstance(cap, dict) and cap.get("neighborhoods"):
        params = cap.get("parameters") or {}
        exp = cap.get("expected_participants")
        out.append(f"<h3>Capacity</h3><p>Smallest best zone expected to fill "
                   f"{esc(params.get('capacity', settings.PILOT_CAPACITY_PARTICIPANTS))} places in "
                   f"{esc(params.get('months', settings.PILOT_MONTHS))} months: "
                   f"<b>{esc(', '.join(map(str, cap['neighborhoods'])))}</b>"
                   + (f" ({float(exp):.1f} expected participants)" if exp is not None else "")
                   + ("" if cap.get("reached", True) else " &mdash; <span class=warn>capacity not reached</span>") + ".</p>")
        sources = params.get("sources")
        if isinstance(sources, dict):
            out.append("<p class=muted>Assumptions: " + "; ".join(
                f"{esc(k)} = {esc(params.get(k, ''))} ({esc(v)})" for k, v in sources.items()) + ".</p>")
    by_k = result.get("zones_by_k")
    if isinstance(by_k, list) and by_k and all(isinstance(z, dict) for z in by_k):
        cols = [c for c in ("k", "neighborhoods", "share", "pai_train", "pai_test") if c in by_k[0]]
        out.append("<h3>Best zone by size</h3>" + _records_table([{c: z.get(c) for c in cols} for z in by_k]))
    return "".join(out)


def _check_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if np.isfinite(v) else "n/a"
    return "n/a" if v is None else str(v)


def findings_html(found: Any) -> str:
    """The findings (`geo_lead.findings.Findings`): why, every computed claim, the limits."""
    out = []
    for title, items in (("Why", found.reasons), ("What the data show", found.statements),
                         ("Limits of these data", found.limits)):
        if items:
            out.append(f"<h3>{title}</h3><ul>" + "".join(f"<li>{esc(t)}</li>" for t in items) + "</ul>")
    return "".join(out)


def comparison_html(comp: dict[str, Any]) -> str:
    """Balance of the comparison area against the pilot (from ``site_result``)."""
    out = []
    if comp.get("balanced") is not None:
        ok = bool(comp["balanced"])
        out.append(f"<p>Balance: {'balanced' if ok else '<span class=warn>NOT balanced</span>'}"
                   + (f" (max |SMD| {float(comp['max_abs_std_mean_diff']):.2f}; rule: {esc(comp.get('balance_rule', ''))})"
                      if comp.get("max_abs_std_mean_diff") is not None else "") + ".</p>")
    if comp.get("rule"):
        out.append(f"<p class=muted>How it is chosen: {esc(comp['rule'])}.</p>")
    bal = comp.get("balance")
    if isinstance(bal, list) and bal and all(isinstance(b, dict) for b in bal):
        out.append(_records_table(bal))
    return "".join(out)


def hotspots_html(hot: dict[str, Any]) -> str:
    """The key hot-spot numbers (KDE bandwidth, Gi* labels) from ``hotspots_result``."""
    out = []
    kde = hot.get("kde")
    if isinstance(kde, dict):
        out.append(f"<p>Kernel density: bandwidth {_num(kde.get('bandwidth_ft'))} ft "
                   f"({esc(kde.get('bandwidth_method', ''))}), {_num(kde.get('cell_ft'))} ft cells; hotspot = "
                   f"{esc(kde.get('hotspot_rule', ''))}: {_num(kde.get('hotspot_cells'))} of {_num(kde.get('cells'))} cells.</p>")
    for key, label in (("gistar_neighborhoods", "Gi* by neighborhood"), ("gistar_grid", "Gi* by grid cell")):
        g = hot.get(key)
        if isinstance(g, dict) and isinstance(g.get("labels"), dict):
            out.append(f"<p>{label}: " + ", ".join(f"{esc(k)} {_num(v)}" for k, v in g["labels"].items())
                       + (f" ({esc(g.get('fdr', ''))}, {_num(g.get('permutations'))} permutations)" if g.get("fdr") else "") + ".</p>")
    return "".join(out) or _kv_table(hot)


def _figures(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(html blocks, notes) for the three figures; a figure whose input is missing is noted."""
    from geo_lead import figures
    from geo_lead.maps import aggregate_points, indicator_records

    blocks, notes = [], []
    scores = data.get("scores")
    if scores is not None and len(scores) and "rank" in scores:
        blocks.append("<h3>Ranking with bootstrap rank intervals</h3>" + _img(
            figures.png_bytes(figures.rank_interval_figure(scores)), "ranked neighborhoods"))
    else:
        notes.append("ranking figure: no scores")
    if scores is not None and len(scores):
        col = "score" if "score" in scores else "count"
        blocks.append("<h3>Choropleth</h3>" + _img(
            figures.png_bytes(figures.choropleth_figure(scores, data.get("zones"), column=col)), "choropleth"))
    else:
        notes.append("choropleth: no scores")
    records, _ = indicator_records(data.get("records"), scores)  # same records as the choropleth
    points = aggregate_points(records) if records is not None and len(records) else None
    area = pd.DataFrame(scores[["count", "area_sqmi"]]) if scores is not None and len(scores) and \
        {"count", "area_sqmi"} <= set(scores.columns) else None
    if (points is not None and len(points)) or area is not None:
        blocks.append("<h3>Concentration</h3>" + _img(figures.png_bytes(figures.concentration_figure(
            points["n"].to_numpy() if points is not None and len(points) else None, area)), "concentration curve"))
    else:
        notes.append("concentration curve: no geocoded records and no scores")
    return blocks, notes


def _score_rows(scores: Any) -> list[dict[str, Any]]:
    """The score rows `geo_lead.findings` reads (no geometry)."""
    if scores is None or not len(scores):
        return []
    cols = [c for c in ("neighborhood", "rank", "rank_low", "rank_high", "in_area") if c in scores]
    return pd.DataFrame(scores[cols]).to_dict("records")


def build_report_html(data: dict[str, Any], with_figures: bool = True) -> str:
    """The report page from `collect_report_data`'s dict (pure apart from rendering figures)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    records = data.get("records")
    records = records if records is not None else pd.DataFrame()
    parts = [f"<h1>LEAD pilot site selection</h1><p class=muted>Generated {esc(now)} from "
             f"<code>{esc(data.get('store', ''))}</code> by geo_lead.</p>"]

    parts.append(
        "<h2>The question</h2><p>Louisville Metro's LEAD pilot (Law Enforcement Assisted Diversion) "
        f"lets officers divert people stopped for low-level, opioid-driven drug offences to case "
        f"management, only inside a pilot zone: {esc(' + '.join(n.title() for n in settings.PILOT_NEIGHBORHOODS))}, "
        f"in LMPD's First Division, with capacity for {settings.PILOT_CAPACITY_PARTICIPANTS} participants over "
        f"{settings.PILOT_MONTHS} months. Do the records support that zone, which zone of the same size "
        "would capture the most eligible records, and which area is a fair comparison for the evaluation?</p>")

    # the data
    parts.append("<h2>The data</h2>")
    n = len(records)
    parts.append(f"<p><b>{n:,}</b> records in the store"
                 + (f"; {int(data.get('rejects') or 0):,} rows were rejected at ingest (with reasons in the "
                    "store's <code>rejects</code> table)." if data.get("rejects") is not None else ".") + "</p>")
    src = source_summary(records)
    if len(src):
        parts.append("<h3>Sources</h3>" + _table(src, {"records": 0}))
    ingests = data.get("ingests")
    if ingests is not None and len(ingests):
        cols = [c for c in ("source_file", "rows_read", "accepted", "rejected", "added", "unchanged", "updated", "ingested_at")
                if c in ingests]
        parts.append("<h3>Ingests</h3>" + _table(ingests[cols], {c: 0 for c in cols if c not in ("source_file", "ingested_at")}))
    reasons = data.get("reject_reasons")
    if reasons is not None and len(reasons):
        parts.append("<h3>Rejected rows by reason</h3>" + _table(reasons.head(15), {"rows": 0}))
    flag_text = [f"{int(records[flag].astype(bool).sum()):,} {label}" for flag, label in
                 (("opiate", "carry the opiate indicator"), ("lead_eligible", "are LEAD-eligible by the rules"))
                 if flag in records]
    if flag_text:
        parts.append(f"<p>Of these, {' and '.join(flag_text)} (<code>geo_lead/rules/opiate_rules.toml</code>).</p>")
    rates = match_rates(records)
    if len(rates):
        geocoded = rates.loc[~rates["match_type"].isin(["unmatched", "not geocoded yet"]), "records"].sum()
        hit = geocoded / max(int(rates["records"].sum()), 1)
        warn = "" if hit >= MIN_HIT_RATE else (f' <span class="warn">Below the {MIN_HIT_RATE:.0%} minimum '
                                              "for reliable crime maps (Ratcliffe 2004).</span>")
        parts.append("<h3>Geocoding match rates by type</h3>" + _table(
            rates.assign(share=rates["share"] * 100).rename(columns={"share": "percent"}),
            {"records": 0, "percent": 1})
            + f"<p>Hit rate {hit:.1%} ({int(geocoded):,} of {int(rates['records'].sum()):,} records placed on the map).{warn}</p>")
        if "geocode_reason" in records and "match_type" in records:
            why = records.loc[records["match_type"] == "unmatched", "geocode_reason"].fillna("(no reason)")
            if len(why):
                top = why.value_counts().head(10).rename_axis("reason").rename("records").reset_index()
                parts.append("<h4>Why records were not placed (top 10 reasons)</h4>" + _table(top, {"records": 0}))
        beats = data.get("beat_checks")
        if beats is not None and len(beats):
            parts.append("<h4>Points in the record's own LMPD beat, by match type</h4>" + _table(
                beats[["match_type", "same", "adjacent", "other", "no_beat", "same_share"]].assign(
                    same_share=beats["same_share"] * 100).rename(columns={"same_share": "percent same"}),
                {"same": 0, "adjacent": 0, "other": 0, "no_beat": 0, "percent same": 1}))
    else:
        parts.append("<p class=warn>No records in the store yet: run <code>geo-lead ingest</code>.</p>")

    # ranked table
    scores = data.get("scores")
    parts.append("<h2>Ranked neighborhoods</h2>")
    if scores is not None and len(scores):
        sc = pd.DataFrame(scores.drop(columns=scores.geometry.name) if hasattr(scores, "geometry") else scores)
        if "in_area" in sc:
            sc = sc[sc["in_area"].astype(bool)]
        sc = sc.sort_values("rank") if "rank" in sc else sc
        cols = [c for c in ("rank", "rank_low", "rank_high", "neighborhood", "count", "density_per_sqmi",
                            "rate_per_1000", "eb_rate_per_1000", "score") if c in sc]
        fmt = {"rank": 0, "rank_low": 0, "rank_high": 0, "count": 0, "density_per_sqmi": 1,
               "rate_per_1000": 1, "eb_rate_per_1000": 1, "score": 3}
        pilot = [h.upper() for h in settings.PILOT_NEIGHBORHOODS]
        classes = ["pilot" if str(v).upper() in pilot else "" for v in sc.get("neighborhood", [])]
        indicator = sc["indicator"].iloc[0] if "indicator" in sc and len(sc) else None
        parts.append((f"<p>Indicator: <b>{esc(indicator)}</b>. " if indicator else "<p>")
                     + "Rank interval = bootstrap "
                     f"({settings.BOOTSTRAP_REPLICATES} replicates) range of each neighborhood's rank; "
                     "pilot neighborhoods highlighted.</p>"
                     + _table(sc[cols], {c: d for c, d in fmt.items() if c in cols}, classes))
    else:
        parts.append("<p class=warn>No scores in the store: run <code>geo-lead score</code>.</p>")

    # figures
    if with_figures:
        blocks, notes = _figures(data)
        parts.append("<h2>Figures</h2>" + "".join(blocks)
                     + (f"<p class=muted>Not drawn: {esc('; '.join(notes))}.</p>" if notes else ""))

    # verdict and zones
    parts.append("<h2>Verdict</h2>")
    result = data.get("site_result")
    if isinstance(result, dict) and result:
        from geo_lead.findings import findings

        found = findings(result, _score_rows(scores), data.get("hotspots_result")
                         if isinstance(data.get("hotspots_result"), dict) else None)
        parts.append(verdict_html(result, found))
        parts.append("<h2>Findings</h2>" + findings_html(found))
    elif result:
        parts.append(f"<p>{esc(result)}</p>")
    else:
        parts.append("<p class=warn>No site-selection result in the store: run <code>geo-lead site</code>.</p>")
    zones = data.get("zones")
    if zones is not None and len(zones):
        z = pd.DataFrame(zones.drop(columns=zones.geometry.name))
        cols = [c for c in ("role", "neighborhoods", "k", "share", "pai_train", "pai_test") if c in z]
        z = z[cols].assign(neighborhoods=z["neighborhoods"].astype(str).str.replace(";", ", ")) if "neighborhoods" in z else z[cols]
        parts.append("<h3>Zones</h3>" + _table(z, {c: d for c, d in (("k", 0), ("share", 3), ("pai_train", 2), ("pai_test", 2)) if c in cols}))
        comp = z[z["role"] == "comparison"] if "role" in z else z.iloc[0:0]
        parts.append("<h2>Comparison area</h2>")
        if len(comp):
            row = comp.iloc[0]
            parts.append(f"<p>The comparison area is <b>{esc(row.get('neighborhoods', ''))}</b>"
                         + (f", holding {float(row['share']):.1%} of the records" if "share" in row and pd.notna(row["share"]) else "")
                         + ". It is meant to resemble the pilot zone without receiving the program, so that "
                         "outcomes can be compared (as Seattle's evaluation did with a &ldquo;system as usual&rdquo; group).</p>")
        else:
            parts.append("<p class=warn>No comparison area in <code>site_zones</code>.</p>")
        comp_result = result.get("comparison_area") if isinstance(result, dict) else None
        if isinstance(comp_result, dict):
            parts.append(comparison_html(comp_result))
    else:
        parts.append("<h2>Comparison area</h2><p class=warn>No zones in the store: run <code>geo-lead site</code>.</p>")
    hot = data.get("hotspots_result")
    if hot:
        parts.append("<h3>Hot spots</h3>" + hotspots_html(hot if isinstance(hot, dict) else {"result": hot}))
    if isinstance(result, dict) and result:
        parts.append("<details><summary>Every number of the site-selection result</summary>"
                     + _kv_table(result) + "</details>")

    parts.append("""<h2>Method</h2><ul>
<li>Records: LMPD crime extracts, ingested with every rejected row kept with its reason; opiate and LEAD-eligibility flags from the rules file.</li>
<li>Geocoding: offline, against address points and street ranges; hundred-blocks are placed mid-block and intersections at the crossing, each with a match type and score.</li>
<li>Scoring: counts, density per square mile, rates per 1,000 residents (2020 tracts, areal interpolation), Empirical Bayes smoothing of rates, and bootstrap rank intervals.</li>
<li>Hot spots: kernel density on projected coordinates (EPSG:2246, bandwidth in feet) and Getis-Ord Gi* with conditional permutations and false-discovery-rate correction.</li>
<li>Siting: the exact best contiguous zone of the same number of neighborhoods (mixed-integer program, CBC), compared with the pilot zone by PAI (share of records over share of area) on a later period than the one that chose it.</li>
</ul>
<h2>Limits</h2><ul>
<li>Records are incidents, not people; one person can appear many times and a diversion needs an officer's contact, not a report.</li>
<li>Shipped LMPD files are samples (about 15% of 2016, 14% of 2017): comparisons between areas hold, yearly totals are scaled estimates.</li>
<li>Block addresses locate an incident to a hundred-block or an intersection, not a door; points near a boundary may fall on either side.</li>
<li>The LOJIC neighborhoods cover the pre-merger city only; the remainder pieces are counted but not ranked.</li>
<li>Population comes from 2020 tracts split by area, which assumes residents spread evenly within a tract.</li>
<li>Other programs in the same area (the Living Room crisis drop-off) confound a before/after comparison.</li>
</ul>
<p class=muted>Interactive maps: <a href="site_selection.html">site_selection.html</a>, <a href="timeline.html">timeline.html</a> (next to this file).</p>""")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>LEAD pilot site selection report</title>'
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def write_report(store: Any, out_path: Path = DEFAULT_REPORT, records: pd.DataFrame | None = None) -> Path:
    """Write the self-contained report page; returns its path.

    `records`: the store's records already read (see `collect_report_data`), to save a read.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_path, build_report_html(collect_report_data(store, records)))  # atomic
    log.info("report written: %s", out_path)
    return out_path
