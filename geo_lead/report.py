"""The site-selection report: one self-contained HTML page (figures inlined as base64 PNG).

`collect_report_data` reads the store (records' sources and geocode match types, the
``scores``, ``site_zones`` layers and the ``site_result`` / ``hotspots_result`` JSON);
`build_report_html` turns that dict into HTML (pure, every data string escaped);
`write_report` does both and writes ``maps/report.html``. Missing stages are said in the
page, never fatal. Person fields are never read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, Template, select_autoescape
from jinja2.bccache import Bucket
from markupsafe import Markup

from geo_lead import settings
from geo_lead.outputs import write_text
from geo_lead.pilot_report import PILOT_SECTIONS
from geo_lead.report_blocks import (
    Block,
    Bullets,
    Cell,
    Details,
    Glossary,
    Heading,
    Image,
    Para,
    RawHtml,
    Span,
    Table,
    blocks,
    bold,
    code,
    inline,
    warn,
)
from geo_lead.report_tallies import (  # noqa: F401 - match_rates, source_summary: the report's names for them
    MATCH_TYPES,
    RecordTallies,
    match_rates,
    source_summary,
    tallies_of_frame,
    tallies_of_store,
)

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

DEFAULT_REPORT: Path = settings.MAPS_DIR / "report.html"
#: Ratcliffe (2004): the minimum geocoding hit rate for reliable crime maps.
MIN_HIT_RATE: float = 0.85

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px;
       margin: 0 auto; padding: 8px 14px 24px; color: #222; }
h1 { font-size: 21px; margin: 6px 0 2px; line-height: 1.2; }
h2 { font-size: 19px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; } h4 { font-size: 15px; }
.params { color: #555; font-size: 12.5px; margin: 0 0 6px; }
.answer { border-left: 5px solid #888; background: #f6f6f6; padding: 6px 12px; margin: 4px 0 10px; }
.answer.justified { border-color: #1a9850; background: #f3faf4; }
.answer.revise { border-color: #d73027; background: #fdf3f2; }
.answer.inconclusive { border-color: #fdae61; background: #fffaf0; }
.answer p { margin: 4px 0; } .question { font-size: 14px; color: #333; }
.verdict { font-size: 17px; line-height: 1.3; }
.reasons { margin: 4px 0; padding-left: 20px; font-size: 14px; } .reasons li { margin: 2px 0; }
.limit { font-size: 13.5px; } .links { font-size: 14px; margin: 4px 0 2px; }
.toc { font-size: 13px; color: #555; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
section > table, section > div > table { display: block; max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.pilot td { background: #fff0f0; font-weight: 600; }
.muted { color: #666; font-size: 13px; } .warn { color: #a50026; font-weight: 600; }
dl.glossary dt { font-weight: 600; margin-top: 6px; } dl.glossary dd { margin-left: 14px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 3px; }
@media (max-width: 600px) { body { padding: 4px 10px 20px; } h1 { font-size: 19px; }
  .verdict { font-size: 16px; } .reasons { font-size: 13.5px; } }
"""


# --- store -> data ----------------------------------------------------------------------------
#: Record columns the report reads (rows: the figure's records; counts: the tallies of all).
REPORT_RECORD_COLUMNS: tuple[str, ...] = ("source", "source_file", "occurred_at", "match_type",
                                          "geocode_reason", "opiate", "lead_eligible", "lon", "lat")


def collect_report_data(store: Store, records: pd.DataFrame | None = None,
                        pilot: dict[str, Any] | None = None,
                        figure_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the report shows, read from an open `geo_lead.store.Store`.

    ``tallies``: every stored record counted in the store (`report_tallies.tallies_of_store`);
    ``records``: the records the concentration figure counts, those of the scores' indicator
    (`map_data.indicator_records`), `FIGURE_COLUMNS` of them. `records`: records already read
    (e.g. the flagged ones `geo_lead.pipeline.analysis_records` reads); taken when they hold
    every record of that indicator, else those are read here. `pilot`: the pilot sections'
    data (`pilot_report.collect_pilot_data`) of this store as it is now, read earlier (it
    reads the records and ``site_result`` only); read here when None. `figure_data`: the
    store's `report_figure_data` as it is now, read earlier; read here when None.
    """
    from geo_lead.map_data import stored_parameters
    from geo_lead.parameters import consistent_parameters

    figure_data = figure_data if figure_data is not None else report_figure_data(store, records)
    site, hot = store.get_json("site_result"), store.get_json("hotspots_result")
    return {
        "store": str(store.path),
        **figure_data,
        "tallies": tallies_of_store(store),
        "ingests": store.read_table("ingests") if "ingests" in store.tables() else pd.DataFrame(),
        "rejects": store.count("rejects"),
        "reject_reasons": (store.read_table("rejects", ["reason"])["reason"].fillna("(none)")
                           .value_counts().rename_axis("reason").rename("rows").reset_index()
                           if "rejects" in store.tables() else pd.DataFrame()),
        "site_result": site,
        "hotspots_result": hot,
        "parameters": consistent_parameters(stored_parameters(store, site, hot), "report"),
        "changes": changes_since_last_run(store),
        "out_dir": None,
        "beat_checks": _beat_check_table(store),
        "pilot": _pilot_data(store, records) if pilot is None else pilot,
    }


def report_figure_data(store: Store, records: pd.DataFrame | None = None) -> dict[str, Any]:
    """What the report's figures plot (`_figures`), as `collect_report_data` reads it: the
    ``scores`` and ``site_zones`` layers and the concentration figure's ``records``
    (`_figure_records`; `records` as there)."""
    from geo_lead.map_data import read_layer

    scores = read_layer(store, "scores")
    return {"scores": scores, "zones": read_layer(store, "site_zones"),
            "records": _figure_records(store, scores, records)}


#: Record columns of the concentration figure's records (`map_layers.aggregate_points`).
FIGURE_COLUMNS: tuple[str, ...] = ("match_type", "opiate", "lead_eligible", "lon", "lat")


def _figure_records(store: Store, scores: Any, given: pd.DataFrame | None) -> pd.DataFrame:
    """`FIGURE_COLUMNS` of the records `map_data.indicator_records` keeps for `scores`, in fid
    order: only the indicator's when it is a flag (from `given` when it holds every one of
    them, else read), every record otherwise."""
    from geo_lead.map_layers import MIX_FLAGS
    from geo_lead.store import FLAG_COLUMNS

    have = set(store.columns("records")) if "records" in store.tables() else set()
    cols = [c for c in FIGURE_COLUMNS if c in have]
    if not cols:
        return pd.DataFrame()
    indicator = None
    if scores is not None and "indicator" in scores and scores["indicator"].notna().any():
        indicator = str(scores["indicator"].dropna().iloc[0])
    if not (indicator and indicator in cols and indicator in MIX_FLAGS and indicator in FLAG_COLUMNS):
        return store.read_records(cols)
    if given is not None and set(cols) <= set(given.columns):
        flagged = given[indicator].fillna(False).astype(bool)
        if int(flagged.sum()) == store.count_flagged(indicator):
            return pd.DataFrame({c: given.loc[flagged, c] for c in cols}).reset_index(drop=True)
    return store.flagged_records(cols, indicator)


def _pilot_data(store: Store, records: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The pilot-period sections' data (`geo_lead.pilot_report`; `records`: the read already
    made, used where exact); None when it cannot be read."""
    from geo_lead.pilot_report import collect_pilot_data

    return collect_pilot_data(store, records)


def _beat_check_table(store: Store) -> pd.DataFrame:
    from geo_lead.geocode.beat_check import beat_check_table

    return beat_check_table(store)


def changes_since_last_run(store: Store) -> list[str]:
    """Plain lines saying what changed in ranks, hot spots and verdict since the last run.

    Compares the last successful run's results snapshot with the results now in the store
    (`geo_lead.changes.compare_snapshots`): inside ``geo-lead run`` that is this run against
    the previous one. When nothing differs (the report is rebuilt after a run), the lines are
    the change report that last run recorded.
    """
    from geo_lead.changes import compare_snapshots, describe
    from geo_lead.manifest import last_run, results_snapshot

    if "runs" not in store.tables():
        return ["no run recorded yet (`geo-lead run` records one): nothing to compare with."]
    prev = last_run(store)
    if prev is None:
        return ["no successful run recorded yet: nothing to compare with."]
    now = compare_snapshots(prev.get("results"), results_snapshot(store), prev.get("run_id"))
    lines = describe(now)
    earlier = prev.get("changes") or {}
    if not now.get("changed") and earlier.get("changed"):  # rebuilt after that run: say what it changed
        lines += [f"run {prev.get('run_id')} itself changed, against run {earlier.get('previous_run')}:",
                  *describe(earlier)[1:]]
    return lines


# --- numbers and tables for people ------------------------------------------------------------
#: Stored column -> the heading people read (units included). No raw field names on the page.
COLUMN_NAMES: dict[str, str] = {
    "rank": "Rank", "rank_range": "Likely rank range", "neighborhood": "Neighborhood",
    "count": "Records", "count_shared": "Records on a shared boundary (split)",
    "rank_boundary": "Rank if shared records all here / none here",
    "density_per_sqmi": "Records per sq mi", "rate_per_1000": "Per 1,000 residents",
    "eb_rate_per_1000": "Smoothed per 1,000 residents (EB)", "score": "Score (0-1)",
    "zone": "Zone", "neighborhoods": "Neighborhoods", "k": "Neighborhoods (n)",
    "area_sqmi": "Area (sq mi)", "records": "Records (weighted)", "share": "Share of records",
    "pai_train": "PAI, choosing months", "pai_test": "PAI, later months",
    "pei_test": "PEI, later months", "expected_participants": "Expected participants",
    "role": "Role", "measure": "Measure", "pilot": "Pilot zone", "comparison": "Comparison area",
    "pool": "All candidates", "std_mean_diff": "Standardized difference (SMD)",
    "source_file": "File", "source": "Format", "first": "First date", "last": "Last date",
    "match_type": "Placed by", "percent": "Percent", "reason": "Reason", "rows": "Rows",
    "rows_read": "Rows read", "accepted": "Accepted", "rejected": "Rejected", "added": "Added",
    "unchanged": "Unchanged", "updated": "Updated", "ingested_at": "Ingested at",
    "check": "Check", "result": "Result", "value": "Value", "threshold": "Threshold", "why": "Why",
    "passed": "Passed", "no_beat": "no beat on record",
}
MEASURE_NAMES: dict[str, str] = {"density_per_sqmi": "records per sq mi",
                                 "eb_rate_per_1000": "smoothed rate per 1,000 residents (EB)",
                                 "rate_per_1000": "records per 1,000 residents",
                                 "population": "residents (2020)", "count": "records"}
ROLE_NAMES: dict[str, str] = {"pilot": "pilot zone", "best": "best zone", "capacity": "zone sized to capacity",
                              "comparison": "comparison area"}
GLOSSARY: tuple[tuple[str, str], ...] = (
    ("EB rate (Empirical Bayes)", "A rate per 1,000 residents pulled toward the area's average in "
     "proportion to how few residents a neighborhood has, so a small place cannot top the list by chance."),
    ("PAI (Predictive Accuracy Index)", "Share of records captured divided by share of area covered: "
     "2 means the zone holds twice the records its size would suggest."),
    ("PEI (Predictive Efficiency Index)", "PAI divided by the best PAI any zone of the same area could "
     "reach: 1 means no zone of that size does better."),
    ("Rank interval", "The range of ranks (5% to 95%) a neighborhood takes when the records are "
     "resampled many times (bootstrap): overlapping ranges mean the order is not settled."),
    ("SMD (standardized mean difference)", "Difference between the pilot and the comparison area in "
     "units of the candidates' spread; a comparison area is called balanced when every |SMD| is "
     "at most 0.25."),
    ("FDR (false discovery rate)", "The share of the areas called hot spots that may be false alarms "
     "when many areas are tested at once (Benjamini-Hochberg); \"hot, FDR 5%\" keeps it at 5%."),
    ("Weighted records", "Counts where each record weighs 1 / its file's sampling fraction, and a record "
     "on a boundary shared by neighborhoods is split between them; that is why counts can have decimals."),
)


def _text(v: Any) -> str:
    """A value as plain text for a cell (None/NaN -> empty); the template escapes it."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v)


def _num(v: Any, digits: int = 0) -> str:
    if v is None or isinstance(v, bool):
        return "n/a" if v is None else ("yes" if v else "no")
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _text(v)
    if not np.isfinite(f):
        return "n/a"
    return f"{f:,.{digits}f}"


def people_number(v: Any) -> str:
    """A number as people read it: counts whole (or one decimal when weighted), others 2-3 figures."""
    if v is None or isinstance(v, (bool, str)):
        return _text(v) if v is not None else "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _text(v)
    if not np.isfinite(f):
        return "n/a"
    if abs(f - round(f)) < 1e-9:
        return f"{f:,.0f}"
    a = abs(f)
    return f"{f:,.1f}" if a >= 10 else f"{f:.2f}" if a >= 0.1 else f"{f:.3g}"


def _pct(v: Any, digits: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return f"{f:.{digits}%}" if np.isfinite(f) else "n/a"


def _cell(v: Any, fmt: Any) -> Cell:
    """A cell in the column's format: ``"%"``, ``"w"`` (weighted count), digits, or None (text)."""
    if fmt == "%":
        return Cell(_pct(v), numeric=True)
    if fmt == "w":
        return Cell(people_number(v), numeric=True)
    if fmt is not None:
        return Cell(_num(v, fmt), numeric=True)
    return Cell(_text(v))


def _table(frame: pd.DataFrame, formats: dict[str, Any] | None = None,
           row_class: list[str] | None = None) -> Table:
    """A table with human headings (`COLUMN_NAMES`); `formats`: column -> digits, "w" or "%"."""
    formats = formats or {}
    head = tuple(Cell(COLUMN_NAMES.get(c, c), numeric=c in formats) for c in frame.columns)
    rows = tuple(tuple(_cell(v, formats.get(c)) for c, v in zip(frame.columns, row, strict=True))
                 for row in frame.itertuples(index=False))
    return Table(head, rows, tuple(row_class or ()))


def _names(value: Any) -> str:
    items = value if isinstance(value, list) else [n for n in str(value or "").split(";") if n]
    return ", ".join(str(n).title() for n in items)


def _cite(text: Any) -> str:
    """`text` with file paths that are not in this repository replaced by the data notes."""
    out = str(text)
    for token in re.findall(r"[\w.-]+(?:/[\w.-]+)+\.(?:md|csv|toml|py|json)", out):
        if not (settings.PROJECT_ROOT / token).exists():
            out = out.replace(token, "the data notes (data/SOURCE.md)")
    return out


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


def key_words(key: str) -> str:
    """A stored key path (``capacity_zone.parameters.take_up_rate``) in words
    (``capacity zone / parameters / take up rate``)."""
    return " / ".join(part.replace("_", " ") for part in key.split("."))


def _kv_table(obj: dict[str, Any]) -> Table:
    rows = tuple((Cell(key_words(k)), Cell(people_number(v) if isinstance(v, float) else plain_words(_cite(v))))
                 for k, v in _flatten(obj))
    return Table((), rows, keyed=True)


#: Code names that reach a reader through stored text (rules, sources), in words. Indicator
#: flags (``lead_eligible``) stay: they are the names the reader types (``--indicator``).
CODE_WORDS: dict[str, str] = {
    "settings.SITE_TAKE_UP_RATE": "the configured take-up rate",
    "geo_lead.frames": "the sampling frames",
    "geo_lead.allocation": "the boundary rule",
    "top_on_train": "training rank",
}


def plain_words(text: Any, names: dict[str, str] | None = None) -> str:
    """`text` with code names (`CODE_WORDS`, then `names`: e.g. check name -> label) in words."""
    out = str(text)
    table = {**CODE_WORDS, **(names or {})}
    for name, words in sorted(table.items(), key=lambda kv: -len(kv[0])):
        if name in out:  # a name that does not occur changes nothing: skip the regex scan (a
            # pilot section's HTML carries its figures as base64, ~100 kB each)
            out = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w])", words, out)
    return out


# --- the answer (first screen) ------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What the first screen says: question, verdict sentence, deciding reasons, main limit."""

    question: str
    verdict: str
    verdict_word: str
    verdict_sentence: str
    reasons: list[str]
    limit: str
    parameters: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _answer(data: dict[str, Any]) -> Answer:
    """The first screen from the stored results (plain text; escaped by the template).

    The verdict sentence, reasons and limits are `geo_lead.findings`' computed sentences; the
    main limit is the first that adds to the reasons (`main_limit`).
    """
    from geo_lead.parameters import AREA_WORDS, describe

    params = data.get("parameters") or {}
    stored = data.get("site_result")
    site: dict[str, Any] = stored if isinstance(stored, dict) else {}
    pilot = " + ".join(n.title() for n in (site.get("pilot_zone") or {}).get("neighborhoods", [])
                       or settings.PILOT_NEIGHBORHOODS)
    indicator = params.get("indicator") or site.get("indicator") or "lead_eligible"
    question = (f"Do LMPD records ({str(indicator).replace('_', '-')}) support the LEAD pilot zone, "
                f"{pilot}, over every other zone of its size"
                + (f" in the {AREA_WORDS.get(str(params.get('area')), 'study area')}" if params.get("area") else "")
                + "?")
    verdict = str(site.get("verdict") or "").lower()
    word = {"justified": "Justified.", "revise": "Revise.", "inconclusive": "Inconclusive."}.get(verdict, "")
    found = _findings(data)
    sentence, reasons, limits = found if found is not None else (
        "No site-selection result yet: run `geo-lead site` (or `geo-lead run`).", [], [])
    if word and sentence.lower().startswith(verdict):  # "Inconclusive: ..." already says it
        word = ""
    return Answer(question=question, verdict=verdict or "none", verdict_word=word,
                  verdict_sentence=sentence, reasons=reasons[:3], limit=main_limit(limits, [sentence, *reasons[:3]]),
                  parameters="Made with: " + describe(params) if params else "")


def main_limit(limits: list[str], said: list[str]) -> str:
    """The first limit that adds to what the first screen already `said` (else the first one).

    A limit repeats a reason when its detail (the text after its first colon) appears in one.
    """
    for limit in limits:
        detail = limit.split(":", 1)[-1].strip().rstrip(".")
        if not any(detail and detail in text for text in said):
            return limit
    return limits[0] if limits else ""


def in_words(text: Any) -> str:
    """`text` with stored field names (``eb_rate_per_1000``...) replaced by their words."""
    out = str(text)
    for field, words in sorted(MEASURE_NAMES.items(), key=lambda kv: -len(kv[0])):
        out = re.sub(rf"\b{re.escape(field)}\b", words, out)
    return out


def _findings(data: dict[str, Any]) -> tuple[str, list[str], list[str]] | None:
    """Verdict sentence, deciding reasons and limits from `geo_lead.findings` (None: no site result)."""
    site = data.get("site_result")
    if not isinstance(site, dict) or not site:
        return None
    f = _found(data)
    return in_words(f.verdict_sentence), [in_words(r) for r in f.reasons], [in_words(x) for x in f.limits]


def _found(data: dict[str, Any]) -> Any:
    """`geo_lead.findings.findings` of the stored site result, scores and hot spots."""
    from geo_lead.findings import findings

    hot = data.get("hotspots_result")
    return findings(data["site_result"], _score_rows(data.get("scores")), hot if isinstance(hot, dict) else None)


def _score_rows(scores: Any) -> list[dict[str, Any]]:
    """The score rows `geo_lead.findings` reads (no geometry)."""
    if scores is None or not len(scores):
        return []
    cols = [c for c in ("neighborhood", "rank", "rank_low", "rank_high", "in_area") if c in scores]
    return pd.DataFrame(scores[cols]).to_dict("records")


def _figures(data: dict[str, Any]) -> tuple[list[Block], list[str]]:
    """(blocks, notes) for the three figures; a figure whose input is missing is noted.

    Each PNG is drawn once per distinct input (`geo_lead.figure_data`, keyed by what the
    figure plots: the ranking's columns, the choropleth's shapes, colours and zone outlines,
    the concentration curve's counts).
    """
    from geo_lead.figure_data import choropleth_png, concentration_png, point_counts, rank_png
    from geo_lead.map_data import indicator_records

    out: list[Block] = []
    notes = []
    scores = data.get("scores")
    if scores is not None and len(scores) and "rank" in scores:
        out += [Heading("Ranking with bootstrap rank intervals"), Image("ranked neighborhoods", rank_png(scores))]
    else:
        notes.append("ranking figure: no scores")
    if scores is not None and len(scores):
        out += [Heading("Choropleth"), Image("choropleth", choropleth_png(scores, data.get("zones")))]
    else:
        notes.append("choropleth: no scores")
    records, _ = indicator_records(data.get("records"), scores)  # same records as the choropleth
    points = point_counts(records)
    area = pd.DataFrame(scores[["count", "area_sqmi"]]).reset_index(drop=True) if scores is not None and \
        len(scores) and {"count", "area_sqmi"} <= set(scores.columns) else None
    if (points is not None and len(points)) or area is not None:
        out += [Heading("Concentration"), Image("concentration curve", concentration_png(points, area))]
    else:
        notes.append("concentration curve: no geocoded records and no scores")
    return out, notes


# --- the detail sections ------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One detail section: anchor id, heading, and its blocks (`geo_lead.report_blocks`)."""

    id: str
    title: str
    blocks: tuple[Block, ...]


def _missing(*parts: str | Span, css: str = "warn") -> tuple[Block, ...]:
    return (Para(inline(*parts), css),)


def _section_changes(data: dict[str, Any]) -> tuple[Block, ...]:
    lines = data.get("changes") or ["no change report available."]
    head, rest = lines[0], lines[1:]
    return blocks(Para(inline(head)), Bullets(tuple(inline(x.strip()) for x in rest)) if rest else None)


def _ranking_frame(scores: Any) -> pd.DataFrame:
    """The study area's score rows, best first, with the rank ranges as text."""
    sc = pd.DataFrame(scores.drop(columns=scores.geometry.name) if hasattr(scores, "geometry") else scores)
    if "in_area" in sc:
        sc = sc[sc["in_area"].astype(bool)]
    sc = sc.sort_values("rank") if "rank" in sc else sc
    sc = sc.assign(neighborhood=sc["neighborhood"].astype(str).str.title()) if "neighborhood" in sc else sc
    if {"rank_low", "rank_high"} <= set(sc.columns):
        sc["rank_range"] = [f"{_num(lo)}\u2013{_num(hi)}" for lo, hi in zip(sc["rank_low"], sc["rank_high"], strict=True)]
    if {"rank_boundary_best", "rank_boundary_worst"} <= set(sc.columns):
        sc["rank_boundary"] = [f"{_num(b)} / {_num(w)}" for b, w in
                               zip(sc["rank_boundary_best"], sc["rank_boundary_worst"], strict=True)]
    return sc


def _section_ranking(data: dict[str, Any]) -> tuple[Block, ...]:
    scores = data.get("scores")
    if scores is None or not len(scores):
        return _missing("No scores in the store: run ", code("geo-lead score"), ".")
    sc = _ranking_frame(scores)
    cols = [c for c in ("rank", "rank_range", "neighborhood", "count", "count_shared", "rank_boundary",
                        "density_per_sqmi", "rate_per_1000", "eb_rate_per_1000", "score") if c in sc]
    fmt = {"rank": 0, "count": "w", "count_shared": "w", "density_per_sqmi": 1, "rate_per_1000": 1,
           "eb_rate_per_1000": 1, "score": 2}
    pilot = [h.upper() for h in settings.PILOT_NEIGHBORHOODS]
    classes = ["pilot" if str(v).upper() in pilot else "" for v in sc.get("neighborhood", [])]
    weighted = "count" in sc and bool((pd.to_numeric(sc["count"], errors="coerce").fillna(0) % 1 != 0).any())
    return (Para(inline("Neighborhoods of the study area, best first; pilot neighborhoods highlighted. The likely rank "
                        f"range comes from {settings.BOOTSTRAP_REPLICATES} resamples of the records (see the glossary)."
                        + (" Records are weighted counts, hence the decimals." if weighted else ""))),
            _table(sc[cols], {c: d for c, d in fmt.items() if c in cols}, classes))


ZONE_KEYS: tuple[tuple[str, str], ...] = (
    ("pilot_zone", "pilot zone"), ("best_zone_same_size", "best zone of the same size"),
    ("best_zone", "best zone (requested size)"), ("capacity_zone", "zone sized to capacity"))
ZONE_FIELDS: tuple[str, ...] = ("neighborhoods", "k", "area_sqmi", "records", "share", "pai_train",
                                "pai_test", "pei_test", "expected_participants")
ZONE_FORMATS: dict[str, Any] = {"k": 0, "area_sqmi": 2, "records": "w", "share": "%", "pai_train": 2,
                                "pai_test": 2, "pei_test": 2, "expected_participants": 0}


def _zone_rows(rows: list[dict[str, Any]]) -> Table:
    frame = pd.DataFrame(rows)
    if "neighborhoods" in frame:
        frame["neighborhoods"] = frame["neighborhoods"].map(_names)
    return _table(frame, {c: f for c, f in ZONE_FORMATS.items() if c in frame})


def _section_verdict(data: dict[str, Any]) -> tuple[Block, ...]:
    result = data.get("site_result")
    if not isinstance(result, dict) or not result:
        return (_missing("No site-selection result in the store: run ", code("geo-lead site"), ".")
                if not result else (Para(inline(str(result))),))
    return verdict_blocks(result, _found(data), data.get("zones"))


def _check_names(result: dict[str, Any]) -> dict[str, str]:
    """Check name -> its label (``top_on_train`` -> ``training rank``), from ``result["checks"]``."""
    checks = result.get("checks")
    if not isinstance(checks, list):
        return {}
    return {str(c["name"]): str(c["label"]) for c in checks
            if isinstance(c, dict) and c.get("name") and c.get("label")}


def rule_words(rule: str, labels: dict[str, str]) -> str:
    """The verdict rule with each numbered check's name as its label: ``(1) top_on_train:`` ->
    ``(1) training rank:`` (`labels`: check name -> label); other code names in words."""
    def label(m: re.Match[str]) -> str:
        return f"({m.group(1)}) {labels.get(m.group(2), m.group(2).replace('_', ' '))}:"
    return plain_words(re.sub(r"\((\d+)\) (\w+):", label, str(rule)))


def _checks_blocks(result: dict[str, Any]) -> tuple[Block, ...]:
    checks = result.get("checks")
    if isinstance(checks, list) and checks and all(isinstance(c, dict) for c in checks):
        return (Heading("Checks"), _table(pd.DataFrame(
            [{"check": c.get("label", c.get("name")), "measure": c.get("measure", ""), "result": c.get("status"),
              "value": people_number(c.get("value")), "threshold": people_number(c.get("threshold")),
              "why": c.get("detail", "")} for c in checks])))
    if isinstance(result.get("verdict_checks"), dict) and result["verdict_checks"]:
        vc = result["verdict_checks"]
        return (Heading("Checks"), _table(pd.DataFrame(
            {"check": [k.replace("_", " ") for k in vc], "passed": ["yes" if v else "NO" for v in vc.values()]})))
    return ()


def _zones_compared(result: dict[str, Any]) -> tuple[Block, ...]:
    rows = [{"zone": label, **{f: z.get(f) for f in ZONE_FIELDS if f in z}}
            for key, label in ZONE_KEYS
            if isinstance(z := result.get(key), dict) and z.get("neighborhoods")]
    if not rows:
        return ()
    return (Heading("Zones compared"),
            Para(inline("Share = share of the indicator's records in the candidate area; PAI on the months that "
                        "chose the zone and on later months; PEI on the later months (see the glossary). Records "
                        "are weighted, so they can have decimals."), "muted"),
            _zone_rows(rows))


def _capacity_blocks(result: dict[str, Any]) -> tuple[Block, ...]:
    cap = result.get("capacity_zone")
    if not isinstance(cap, dict) or not cap.get("neighborhoods"):
        return ()
    params = cap.get("parameters") or {}
    exp = cap.get("expected_participants")
    out: list[Block] = [Heading("Capacity"), Para(inline(
        f"Smallest best zone expected to fill {params.get('capacity', settings.PILOT_CAPACITY_PARTICIPANTS)} "
        f"places in {params.get('months', settings.PILOT_MONTHS)} months: ", bold(_names(cap["neighborhoods"])),
        f" (about {_num(exp)} expected participants)" if exp is not None else "",
        *(() if cap.get("reached", True) else (" \u2014 ", warn("capacity not reached"))), "."))]
    sources = params.get("sources")
    if isinstance(sources, dict):
        def value(k: str) -> str:
            v = params.get(k)
            return people_number(v) if isinstance(v, (int, float)) else plain_words(_cite(params.get(k, "")))
        out.append(Para(inline("Assumptions: " + "; ".join(
            f"{k.replace('_', ' ')} = {value(k)} ({plain_words(_cite(v))})" for k, v in sources.items()) + "."),
            "muted"))
    return tuple(out)


def _map_zones(zones: Any) -> tuple[Block, ...]:
    if zones is None or not len(zones):
        return ()
    z = pd.DataFrame(zones.drop(columns=zones.geometry.name))
    cols = [c for c in ("role", "neighborhoods", "k", "share", "pai_train", "pai_test") if c in z]
    z = z[cols].copy()
    if "role" in z:
        z["role"] = z["role"].map(lambda r: ROLE_NAMES.get(str(r), str(r)))
    if "neighborhoods" in z:
        z["neighborhoods"] = z["neighborhoods"].map(_names)
    return (Heading("Zones on the map"), _table(z, {c: f for c, f in ZONE_FORMATS.items() if c in cols}))


def verdict_blocks(result: dict[str, Any], found: Any = None, zones: Any = None) -> tuple[Block, ...]:
    """The verdict with its sentence (`geo_lead.findings`, never written here), the checks,
    the zones compared, capacity and the best zone by size, from ``site_result``."""
    if found is None:
        from geo_lead.findings import findings

        found = findings(result)
    out: list[Block] = []
    verdict = result.get("verdict")
    if verdict is not None:
        out += [Para(inline(bold(f"Verdict: {str(verdict).upper()}"))), Para(inline(in_words(found.verdict_sentence)))]
    if result.get("verdict_rule"):
        out.append(Para(inline("Rule: " + rule_words(result["verdict_rule"], _check_names(result))), "muted"))
    out += _checks_blocks(result)
    out += _zones_compared(result)
    periods = result.get("periods")
    if isinstance(periods, dict) and periods.get("rule"):
        out.append(Para(inline(f"Periods: {periods['rule']} (choosing {periods.get('train', '?')}, "
                               f"later {periods.get('test', '?')} records)."), "muted"))
    out += _capacity_blocks(result)
    by_k = result.get("zones_by_k")
    if isinstance(by_k, list) and by_k and all(isinstance(z, dict) for z in by_k):
        cols = [c for c in ("k", "neighborhoods", "records", "share", "pai_train", "pai_test") if c in by_k[0]]
        out += [Heading("Best zone by size"), _zone_rows([{c: z.get(c) for c in cols} for z in by_k])]
    out += _map_zones(zones)
    return tuple(out)


def _section_findings(data: dict[str, Any]) -> tuple[Block, ...]:
    """Every computed claim and limit (`geo_lead.findings`), never hand-written."""
    site = data.get("site_result")
    if not isinstance(site, dict) or not site or _findings(data) is None:
        return _missing("No site-selection result: no findings.", css="muted")
    found = _found(data)
    out: list[Block] = []
    for title, items in (("Why", found.reasons), ("What the data show", found.statements),
                         ("Limits of these data", found.limits)):
        if items:
            out += [Heading(title), Bullets(tuple(inline(in_words(t)) for t in items))]
    return tuple(out)


def _comparison_zone(zones: Any) -> Any:
    if zones is not None and len(zones) and "role" in zones:
        part = zones[zones["role"].astype(str) == "comparison"]
        return part.iloc[0] if len(part) else None
    return None


def _balance_blocks(comp: dict[str, Any]) -> tuple[Block, ...]:
    out: list[Block] = []
    if comp.get("balanced") is not None:
        detail = (f" (largest |SMD| {_num(comp['max_abs_std_mean_diff'], 2)}; rule: {comp.get('balance_rule', '')})"
                  if comp.get("max_abs_std_mean_diff") is not None else "")
        out.append(Para(inline("Balance: ", "balanced" if comp["balanced"] else warn("NOT balanced"), detail, ".")))
    if comp.get("rule"):
        out.append(Para(inline(f"How it is chosen: {comp['rule']}."), "muted"))
    bal = comp.get("balance")
    if isinstance(bal, list) and bal and all(isinstance(b, dict) for b in bal):
        frame = pd.DataFrame(bal).rename(columns={"feature": "measure", "pilot_mean": "pilot",
                                                  "comparison_mean": "comparison", "pool_mean": "pool"})
        if "measure" in frame:
            frame["measure"] = frame["measure"].map(lambda m: MEASURE_NAMES.get(str(m), str(m).replace("_", " ")))
        frame = frame.rename(columns={"smd": "std_mean_diff"})
        out.append(_table(frame, {c: 2 if c == "std_mean_diff" else "w" for c in frame.columns if c != "measure"}))
    return tuple(out)


def _section_comparison(data: dict[str, Any]) -> tuple[Block, ...]:
    zones = data.get("zones")
    result = data.get("site_result") if isinstance(data.get("site_result"), dict) else {}
    if zones is None or not len(zones):
        return _missing("No zones in the store: run ", code("geo-lead site"), ".")
    comp_zone = _comparison_zone(zones)
    out: list[Block] = []
    if comp_zone is not None:
        share = comp_zone.get("share") if hasattr(comp_zone, "get") else None
        out.append(Para(inline(
            "The comparison area is ", bold(_names(comp_zone.get("neighborhoods", ""))),
            f", holding {_pct(share)} of the records" if share is not None and pd.notna(share) else "",
            ". It is meant to resemble the pilot zone without receiving the program, so that outcomes can "
            "be compared (as Seattle's evaluation did with a \u201csystem as usual\u201d group).")))
    else:
        out += _missing("No comparison area in the stored zones.")
    comp = result.get("comparison_area") if isinstance(result, dict) else None
    if isinstance(comp, dict):
        out += _balance_blocks(comp)
    return tuple(out)


def _section_hotspots(data: dict[str, Any]) -> tuple[Block, ...]:
    hot = data.get("hotspots_result")
    if not hot:
        return _missing("No hot-spot result in the store: run ", code("geo-lead hotspots"), ".")
    if not isinstance(hot, dict):
        return (Para(inline(str(hot))),)
    out: list[Block] = []
    kde = hot.get("kde")
    if isinstance(kde, dict):
        out.append(Para(inline(
            f"Kernel density: bandwidth {_num(kde.get('bandwidth_ft'))} ft ({kde.get('bandwidth_method', '')}), "
            f"{_num(kde.get('cell_ft'))} ft cells; hot spot = {kde.get('hotspot_rule', '')}: "
            f"{_num(kde.get('hotspot_cells'))} of {_num(kde.get('cells'))} cells.")))
    for key, label in (("gistar_neighborhoods", "Gi* by neighborhood"), ("gistar_grid", "Gi* by grid cell")):
        g = hot.get(key)
        if isinstance(g, dict) and isinstance(g.get("labels"), dict):
            out.append(Para(inline(
                f"{label}: " + ", ".join(f"{k} {_num(v)}" for k, v in g["labels"].items())
                + (f" ({g.get('fdr', '')}, {_num(g.get('permutations'))} permutations)" if g.get("fdr") else "")
                + ".")))
    return tuple(out) or (_kv_table(hot),)


def _section_figures(data: dict[str, Any]) -> tuple[Block, ...]:
    figs, notes = _figures(data)
    return blocks(figs, Para(inline(f"Not drawn: {'; '.join(notes)}."), "muted") if notes else None)


def _data_counts(data: dict[str, Any], tallies: RecordTallies) -> tuple[Block, ...]:
    """Records in the store, rejected rows, sources, ingests and the flags' counts."""
    rejects = data.get("rejects")
    out: list[Block] = [Para(inline(
        bold(f"{tallies.total:,}"), " records in the store",
        *((f"; {int(rejects or 0):,} rows were rejected at ingest (with reasons in the store's ", code("rejects"),
           " table).") if rejects is not None else (".",))))]
    src = tallies.sources
    if len(src):
        out += [Heading("Sources"), _table(src, {"records": 0})]
    ingests = data.get("ingests")
    if ingests is not None and len(ingests):
        cols = [c for c in ("source_file", "rows_read", "accepted", "rejected", "added", "unchanged", "updated",
                            "ingested_at") if c in ingests]
        out += [Heading("Ingests"), _table(ingests[cols], {c: 0 for c in cols if c not in ("source_file", "ingested_at")})]
    reasons = data.get("reject_reasons")
    if reasons is not None and len(reasons):
        out += [Heading("Rejected rows by reason"), _table(reasons.head(15), {"rows": 0})]
    flag_text = [f"{tallies.flags[flag]:,} {label}" for flag, label in
                 (("opiate", "carry the opiate indicator"), ("lead_eligible", "are LEAD-eligible by the rules"))
                 if flag in tallies.flags]
    if flag_text:
        out.append(Para(inline(f"Of these, {' and '.join(flag_text)} (", code("geo_lead/rules/opiate_rules.toml"), ").")))
    return tuple(out)


def _geocoding_blocks(data: dict[str, Any], tallies: RecordTallies) -> tuple[Block, ...]:
    """Match rates by type, the hit rate, why records were not placed, the beat check."""
    rates = tallies.match_rates
    geocoded = rates.loc[~rates["match_type"].isin(["unmatched", "not geocoded yet"]), "records"].sum()
    total = int(rates["records"].sum())
    hit = geocoded / max(total, 1)
    out: list[Block] = [
        Heading("Geocoding match rates by type"),
        _table(rates.assign(share=rates["share"] * 100).rename(columns={"share": "percent"}),
               {"records": 0, "percent": 1}),
        Para(inline(f"Hit rate {hit:.1%} ({int(geocoded):,} of {total:,} records placed on the map).",
                    *(() if hit >= MIN_HIT_RATE else (" ", warn(f"Below the {MIN_HIT_RATE:.0%} minimum for "
                                                                 "reliable crime maps (Ratcliffe 2004)."))))),
    ]
    top = tallies.unmatched_reasons
    if top is not None and len(top):
        out += [Heading("Why records were not placed (top 10 reasons)", 4), _table(top, {"records": 0})]
    beats = data.get("beat_checks")
    if beats is not None and len(beats):
        out += [Heading("Points in the record's own LMPD beat, by match type", 4), _table(
            beats[["match_type", "same", "adjacent", "other", "no_beat", "same_share"]].assign(
                same_share=beats["same_share"] * 100).rename(columns={"same_share": "percent same"}),
            {"same": 0, "adjacent": 0, "other": 0, "no_beat": 0, "percent same": 1})]
    return tuple(out)


def _section_data(data: dict[str, Any]) -> tuple[Block, ...]:
    tallies = data.get("tallies")
    if tallies is None:  # data made without the store (`collect_report_data` counts there): every record given
        records = data.get("records")
        tallies = tallies_of_frame(records if records is not None else pd.DataFrame())
    if not len(tallies.match_rates):
        return blocks(_data_counts(data, tallies),
                      _missing("No records in the store yet: run ", code("geo-lead ingest"), "."))
    return blocks(_data_counts(data, tallies), _geocoding_blocks(data, tallies))


def _section_glossary(data: dict[str, Any]) -> tuple[Block, ...]:
    return (Glossary(GLOSSARY),)


METHOD: tuple[str, ...] = (
    "Records: LMPD crime extracts, ingested with every rejected row kept with its reason; opiate and "
    "LEAD-eligibility flags from the rules file.",
    "Geocoding: offline, against address points and street ranges; hundred-blocks are placed mid-block and "
    "intersections at the crossing, each with a match type and score.",
    "Scoring: counts, density per square mile, rates per 1,000 residents (2020 tracts, areal interpolation), "
    "Empirical Bayes smoothing of rates, and bootstrap rank intervals.",
    "Hot spots: kernel density on projected coordinates (Kentucky North state plane, bandwidth in feet) and "
    "Getis-Ord Gi* with conditional permutations and false-discovery-rate correction.",
    "Siting: the exact best contiguous zone of the same number of neighborhoods (mixed-integer program, CBC), "
    "compared with the pilot zone by PAI on later months than the ones that chose it.",
)
LIMITS: tuple[str, ...] = (
    "Records are incidents, not people; one person can appear many times and a diversion needs an officer's "
    "contact, not a report.",
    "Shipped LMPD files are samples (15% of 2016, 14% of 2017, 11.9% of 2018, 11.85% of 2019): comparisons "
    "between areas hold, yearly totals are weighted estimates.",
    "Block addresses locate an incident to a hundred-block or an intersection, not a door; points near a "
    "boundary may fall on either side.",
    "The LOJIC neighborhoods cover the pre-merger city only; the remainder pieces are counted but not ranked.",
    "Population comes from 2020 tracts split by area, which assumes residents spread evenly within a tract.",
    "Other programs in the same area (the Living Room crisis drop-off) confound a before/after comparison.",
)


def _section_method(data: dict[str, Any]) -> tuple[Block, ...]:
    return (Bullets(tuple(inline(t) for t in METHOD)),)


def _section_limits(data: dict[str, Any]) -> tuple[Block, ...]:
    return (Bullets(tuple(inline(t) for t in LIMITS)),)


def _section_numbers(data: dict[str, Any]) -> tuple[Block, ...]:
    result = data.get("site_result")
    if not isinstance(result, dict) or not result:
        return _missing("No site-selection result.", css="muted")
    return (Details("Show every stored number", (_kv_table(result),)),)


def _pilot_section(sid: str, build: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], tuple[Block, ...]]:
    """A `geo_lead.pilot_report` section (HTML it escapes itself) as report blocks (none without
    pilot data); its HTML from ``data["pilot_html"]`` when built there ahead (`pilot_sections_html`)."""
    def section(data: dict[str, Any]) -> tuple[Block, ...]:
        pilot = data.get("pilot")
        with_figures = data.get("with_figures", True)
        ahead = data.get("pilot_html") or {}
        if pilot and ahead.get("with_figures") == with_figures and sid in ahead.get("sections", {}):
            html = ahead["sections"][sid]
        else:
            html = build({"pilot": pilot, "with_figures": with_figures}) if pilot else ""
        # built and escaped by pilot_report; its check names (top_on_train...) read as words
        return (RawHtml(Markup(plain_words(html))),) if html else ()
    return section


def pilot_sections_html(pilot: dict[str, Any] | None, with_figures: bool = True) -> dict[str, Any]:
    """Each pilot section's HTML as the report builds it from `pilot`
    (`pilot_report.collect_pilot_data`'s dict): ``{"with_figures": .., "sections": {id: html}}``,
    for ``collect_report_data(...)["pilot_html"]`` (e.g. drawn in a child while the run waits
    for its hot spots). Pure in `pilot` and `with_figures`, apart from drawing figures."""
    sections = {sid: build({"pilot": pilot, "with_figures": with_figures}) if pilot else ""
                for sid, _title, build in PILOT_SECTIONS}
    return {"with_figures": with_figures, "sections": sections}


def draw_report_figures(figure_data: dict[str, Any]) -> None:
    """Draw the report's figures of `figure_data` (`report_figure_data`) into the figure cache
    (`geo_lead.figure_cache`), so that a report built later from the same data, in another
    process, finds them drawn (one process imports matplotlib for a run's figures). With the
    result cache off nothing would be kept: nothing is drawn here."""
    from geo_lead import result_cache

    if result_cache.enabled():
        _figures(figure_data)


def _slot(i: int) -> str:
    """Where pilot section `i` goes in a page drafted before the pilot data (`draft_without_pilot`)."""
    return f"<!--geo-lead-slot-{i}-->"


def draft_without_pilot(data: dict[str, Any]) -> str | None:
    """The report page of `data` (`collect_report_data`'s; its pilot data not read yet) with a
    slot for each pilot section, for `fill_pilot_slots`; None when one of its figures is not in
    the figure cache yet (another process is drawing it: `figure_cache.only_cached`)."""
    from geo_lead.figure_cache import NotDrawn, only_cached

    slots = {"with_figures": True, "sections": {sid: _slot(i) for i, (sid, _t, _b) in enumerate(PILOT_SECTIONS)}}
    try:
        with only_cached():
            return build_report_html({**data, "pilot": {"slots": True}, "pilot_html": slots})
    except NotDrawn:
        return None


def fill_pilot_slots(draft: str, pilot_html: dict[str, Any]) -> str | None:
    """`draft` (`draft_without_pilot`) with each pilot section's HTML (`pilot_sections_html`) in
    its slot, as `build_report_html` puts it; None when a section is empty or drawn without
    figures (a page built with that pilot data differs in more than the slots)."""
    sections = pilot_html.get("sections", {})
    if not pilot_html.get("with_figures"):
        return None
    for i, (sid, _title, _build) in enumerate(PILOT_SECTIONS):
        html = sections.get(sid) or ""
        if not html or draft.count(_slot(i)) != 1:
            return None
        draft = draft.replace(_slot(i), plain_words(html))
    return draft


#: The detail sections after the answer, in page order: (id, heading, builder(data) -> blocks).
#: Add a section by adding a builder here (e.g. a year-by-year section, a before/after figure).
SECTION_BUILDERS: list[tuple[str, str, Callable[[dict[str, Any]], tuple[Block, ...]]]] = [
    ("changes", "Changes since the last run", _section_changes),
    ("ranking", "Ranked neighborhoods", _section_ranking),
    ("verdict-detail", "Verdict in detail", _section_verdict),
    ("findings", "Findings", _section_findings),
    ("comparison", "Comparison area", _section_comparison),
    ("hotspots", "Hot spots", _section_hotspots),
    ("figures", "Figures", _section_figures),
    *[(sid, title, _pilot_section(sid, build)) for sid, title, build in PILOT_SECTIONS],
    ("data", "The data", _section_data),
    ("glossary", "Glossary", _section_glossary),
    ("method", "Method", _section_method),
    ("limits", "Limits", _section_limits),
    ("numbers", "Every number of the site result", _section_numbers),
]


def report_sections(data: dict[str, Any], with_figures: bool = True) -> list[Section]:
    """The non-empty detail sections of `SECTION_BUILDERS` (figures left out when not
    `with_figures`)."""
    data = {**data, "with_figures": with_figures}
    built = ((sid, title, build(data)) for sid, title, build in SECTION_BUILDERS
             if with_figures or sid != "figures")
    return [Section(sid, title, body) for sid, title, body in built if body]


def report_links(data: dict[str, Any]) -> list[dict[str, str]]:
    """Links to the pages written beside the report (maps and the officers' zone page)."""
    return [{"href": "site_selection.html", "text": "Site map"},
            {"href": "timeline.html", "text": "Timeline map"},
            {"href": "zone_check.html", "text": "Zone check page (officers)"},
            {"href": "#ranking", "text": "Details"}]


def build_report_html(data: dict[str, Any], with_figures: bool = True) -> str:
    """The report page from `collect_report_data`'s dict (pure apart from rendering figures).

    The answer (`_answer`) comes first, then the sections of `SECTION_BUILDERS`; rendered by
    ``geo_lead/templates/report.html.j2`` with autoescaping on.
    """
    from geo_lead import __version__

    return _report_template().render(
        css=Markup(CSS), answer=_answer(data), links=report_links(data),
        sections=report_sections(data, with_figures),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        store=str(data.get("store", "")), version=__version__)


def _report_template() -> Template:
    """``geo_lead/templates/report.html.j2`` (autoescaping on), its compiled form kept in the
    result cache folder (`CompiledTemplates`): compiling it took ~0.03-0.05 s of every run."""
    from geo_lead import result_cache

    cache = CompiledTemplates(str(result_cache.cache_dir() / "templates")) if result_cache.enabled() else None
    env = Environment(loader=PackageLoader("geo_lead", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      trim_blocks=True, lstrip_blocks=True, bytecode_cache=cache)
    return env.get_template("report.html.j2")


class CompiledTemplates(FileSystemBytecodeCache):
    """jinja2's cache of compiled templates in its folder: an entry is keyed by the template's
    name and the sha1 of its source, and holds jinja2's bytecode version and Python's marshal
    magic, so another source, jinja2 or Python compiles again. A folder that cannot be made,
    read or written only costs the compilation (a cache is never why a report fails)."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # unreadable or damaged (pickle, marshal): compiled again
            log.debug("compiled template not read (%s)", exc)
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("compiled template not kept (%s)", exc)


def write_report(store: Store, out_path: Path = DEFAULT_REPORT, records: pd.DataFrame | None = None) -> Path:
    """Write the self-contained report page; returns its path.

    `records`: the store's records already read (see `collect_report_data`), to save a read.

    Raises
    ------
    geo_lead.parameters.MixedResultsError
        When the stored results were made with different parameters (nothing is written).
    """
    out_path = Path(out_path)
    html_text = build_report_html(collect_report_data(store, records))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_path, html_text)  # atomic
    log.info("report written: %s", out_path)
    return out_path
