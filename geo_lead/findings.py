"""The findings as sentences, each built from the result objects (pure; no HTML, no I/O).

`findings(site, scores, hotspots)` reads the ``site --json`` object (`geo_lead.siting`), the
``scores`` rows (`geo_lead.scoring`: neighborhood, rank, rank_low, rank_high, in_area) and
the ``hotspots --json`` object (`geo_lead.hotspots`), and returns `Findings`: the verdict
sentence, the reasons that decide it, the limits of the data and every other computed claim.
No claim is written by hand: every number, name and comparison in a sentence comes from the
inputs, so the sentences change when the data do. The report and the README quote these.

Conventions: unit names are LOJIC NH_NAMEs, written in title case ("the Central Business
District"); rank intervals are the 5%-95% bootstrap quantiles (`INTERVAL`, as
`geo_lead.scoring.RANK_INTERVAL` and `geo_lead.siting.RANK_QUANTILES`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Width of the bootstrap rank intervals quoted (5%-95% quantiles).
INTERVAL = "90%"
#: Check statuses, as `geo_lead.siting`.
PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"


@dataclass
class Findings:
    """Sentences built from results: the verdict, why, what limits it, everything claimed."""

    verdict: str | None
    verdict_sentence: str
    reasons: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- names and numbers ------------------------------------------------------------------------
def place(name: str) -> str:
    """A NH_NAME as prose: ``CENTRAL BUSINESS DISTRICT`` -> ``the Central Business District``."""
    text = " ".join(w.capitalize() for w in str(name).split())
    return f"the {text}" if text.lower().endswith("district") else text


def zone_name(names: Iterable[str]) -> str:
    """Units of a zone joined with ``+`` (``Portland + Russell``)."""
    return " + ".join(place(n) for n in names)


def join_names(names: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if math.isfinite(v) else "n/a"
    return str(v)


def _records(v: Any) -> str:
    """A record count: whole numbers without decimals (a split record counts by its share)."""
    if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return "n/a"
    return f"{v:,.0f}" if abs(float(v) - round(float(v))) < 0.05 else f"{v:,.1f}"


def _pct(v: Any) -> str:
    return f"{float(v):.0%}" if isinstance(v, (int, float)) and math.isfinite(float(v)) else "n/a"


def _value_text(check: Mapping[str, Any]) -> str:
    v, t, d = check.get("value"), check.get("threshold"), check.get("direction")
    if d == "disjoint":
        return f"interval {v}, needs to be {t}"
    if isinstance(v, float) and isinstance(t, float) and t <= 1 and (v is None or v <= 1.5):
        vt = f"{v:.0%}" if math.isfinite(v) else "n/a"
        return f"value {vt}, threshold {'at least' if d == 'at_least' else 'at most'} {t:.0%}"
    word = "at most" if d == "at_most" else "at least"
    return f"value {_num(v)}, threshold {word} {_num(t)}"


# --- the verdict --------------------------------------------------------------------------------
def _margin(check: Mapping[str, Any]) -> float:
    """How far a passing check is from its threshold, relative (smaller = closer)."""
    v, t, d = check.get("value"), check.get("threshold"), check.get("direction")
    try:
        if d == "disjoint":
            lo_alt = check["alternative_interval"][0]
            hi_pilot = check["pilot_interval"][1]
            return (lo_alt - hi_pilot) / max(lo_alt, 1)
        if d == "at_most":
            return (float(t) - float(v) + 1) / max(float(t), 1.0)
        return (float(v) - float(t)) / max(abs(float(t)), 1e-9)
    except (KeyError, TypeError, ValueError, IndexError):
        return math.inf


def weakest_check(checks: Sequence[Mapping[str, Any]]) -> str | None:
    """The passing check closest to its threshold (the one that would fail first)."""
    passing = [c for c in checks if c.get("status") == PASS]
    if not passing:
        return None
    return str(min(passing, key=_margin)["name"])


def verdict_sentence(verdict: str | None, deciding: str | None, checks: Sequence[Mapping[str, Any]]) -> str:
    """One sentence: the verdict, the check that decides it and that check's reason."""
    by_name = {c["name"]: c for c in checks}
    c = by_name.get(deciding or "")
    if verdict is None:
        return "No site-selection verdict has been computed."
    if c is None:
        return f"{str(verdict).capitalize()}."
    label = c.get("label", c["name"])
    others = [o for o in checks if o["name"] != c["name"] and o.get("status") == c.get("status")]
    also = (f" ({join_names([o.get('label', o['name']) for o in others])} "
            f"{'is' if len(others) == 1 else 'are'} {c.get('status')} too)") if others else ""
    if verdict == "inconclusive":
        failed = [o for o in checks if o.get("status") == FAIL]
        fails = "".join(f"; the {o.get('label', o['name'])} check fails ({o['detail']})" for o in failed)
        return (f"Inconclusive: the {label} check has too little data to decide ({c['detail']}){also}{fails}.")
    if verdict == "revise":
        return f"Revise: the {label} check fails ({c['detail']}){also}."
    if verdict == "justified":
        n = len([o for o in checks if o.get("status") == PASS])
        return (f"Justified: all {n} checks pass; the closest to its threshold is the {label} check "
                f"({c['detail']}; {_value_text(c)}).")
    return f"{str(verdict).capitalize()}: the {label} check decides ({c['detail']})."


def check_sentence(check: Mapping[str, Any]) -> str:
    """``Yearly windows (reach): insufficient -- <detail> (<value vs threshold>).``"""
    label = str(check.get("label", check["name"]))
    return (f"{label[:1].upper()}{label[1:]} ({check.get('measure', '')}): {check['status']}: "
            f"{check['detail']} ({_value_text(check)}).")


# --- scores ---------------------------------------------------------------------------------------
def _rows(scores: Any) -> list[dict[str, Any]]:
    if scores is None:
        return []
    if hasattr(scores, "to_dict"):
        frame = scores.drop(columns=[c for c in ("geometry",) if c in getattr(scores, "columns", [])])
        return list(frame.to_dict("records"))
    return [dict(r) for r in scores]


def _ranked(scores: Any) -> list[dict[str, Any]]:
    out = []
    for r in _rows(scores):
        if "in_area" in r and not bool(r["in_area"]):
            continue
        try:
            rank, lo, hi = int(r["rank"]), int(r["rank_low"]), int(r["rank_high"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append({**r, "rank": rank, "rank_low": lo, "rank_high": hi})
    return sorted(out, key=lambda r: r["rank"])


def interval_statements(scores: Any, units: Sequence[str]) -> list[str]:
    """For each of `units`: its rank interval and the units it overlaps (cannot be told apart from)."""
    rows = _ranked(scores)
    by = {str(r["neighborhood"]).upper(): r for r in rows}
    out = []
    for u in units:
        r = by.get(str(u).upper())
        if r is None:
            continue
        lo, hi = r["rank_low"], r["rank_high"]
        overlap = [place(o["neighborhood"]) for o in rows if o is not r
                   and str(o["neighborhood"]).upper() not in {str(x).upper() for x in units}
                   and o["rank_low"] <= hi and lo <= o["rank_high"]]
        head = f"{place(u)} ranks {r['rank']} of {len(rows)}; its {INTERVAL} interval is {lo}-{hi}"
        if overlap:
            out.append(f"{head}: the data do not separate it from {join_names(overlap)}.")
        else:
            out.append(f"{head}: clear of every unit outside the pilot zone.")
    return out


def top_claim(scores: Any, units: Sequence[str]) -> str | None:
    """Whether the data support "the `units` are the top len(units)" (every interval within it)."""
    rows = _ranked(scores)
    by = {str(r["neighborhood"]).upper(): r for r in rows}
    have = [by[str(u).upper()] for u in units if str(u).upper() in by]
    if not have or len(have) != len(units):
        return None
    n = len(have)
    names = join_names([place(r["neighborhood"]) for r in have])
    claim = f"'{names} {'are' if n > 1 else 'is'} the top {n}'" if n > 1 else f"'{names} ranks first'"
    beyond = [r for r in have if r["rank_high"] > n]
    if not beyond:
        return f"The data support {claim}: every {INTERVAL} interval ends at or above rank {n}."
    why = "; ".join(f"{place(r['neighborhood'])}'s interval reaches {r['rank_high']}" for r in beyond)
    return f"The data do not support {claim}: {why}."


# --- site ---------------------------------------------------------------------------------------
def zone_statements(site: Mapping[str, Any]) -> list[str]:
    """Reach and concentration of the pilot and the best zone, the holdout, capacity, comparison."""
    out = []
    pz, best = site.get("pilot_zone") or {}, site.get("best_zone_same_size") or {}
    n_z = site.get("n_candidate_zones")
    if pz.get("neighborhoods"):
        obj = (site.get("measures") or {}).get("objective", site.get("objective", "reach"))
        out.append(f"The pilot zone, {zone_name(pz['neighborhoods'])}, holds {_pct(pz.get('share'))} "
                   f"of the candidate area's weighted eligible records "
                   f"({_num(pz.get('reach_per_year'), 1)} a year) at a PAI of {_num(pz.get('pai'))}; "
                   f"it ranks {site.get('pilot_rank')} of {n_z} contiguous zones of its size by {obj} "
                   f"on the training months.")
        if best.get("neighborhoods") and sorted(best["neighborhoods"]) != sorted(pz["neighborhoods"]):
            out.append(f"The best zone of the same size by {obj} is {zone_name(best['neighborhoods'])} "
                       f"({_num(best.get('reach_per_year'), 1)} records a year, PAI {_num(best.get('pai'))}).")
        elif best.get("neighborhoods"):
            out.append(f"No contiguous zone of the same size holds more by {obj} on the training months.")
    ho = site.get("holdout") or {}
    if ho:
        lead = ("it is the best" if ho.get("pilot_rank_test") == 1 else
                f"{zone_name(ho.get('best_test', []))} is first at {_num(ho.get('best_test_pai'))}")
        out.append(f"On the held-out months ({_records(ho.get('records_test'))} records) the pilot's PAI of "
                   f"{_num(ho.get('pilot_pai_test'))} ranks {ho.get('pilot_rank_test')} of {ho.get('n_zones')} "
                   f"zones of its size ({ho.get('pilot_rank_train')} on the training months); {lead}.")
    cap = site.get("capacity_zone") or {}
    if cap.get("neighborhoods"):
        prm = cap.get("parameters") or {}
        word = "is expected to fill" if cap.get("reached") else "is the largest zone tried and does not fill"
        out.append(f"{zone_name(cap['neighborhoods'])} {word} {prm.get('capacity')} places in "
                   f"{prm.get('months')} months ({_num(cap.get('expected_participants'), 1)} expected participants, "
                   f"assuming a take-up of {_num(prm.get('take_up_rate'))} and "
                   f"{_num(prm.get('persons_per_record'))} persons per record over "
                   f"{_num(prm.get('months_of_data'), 1)} months of data).")
    comp = site.get("comparison_area") or {}
    if comp.get("neighborhoods"):
        word = "balanced" if comp.get("balanced") else "not balanced"
        out.append(f"The comparison area {zone_name(comp['neighborhoods'])} is {word} with the pilot "
                   f"(largest |standardised mean difference| {_num(comp.get('max_abs_std_mean_diff'))}; "
                   f"rule: {comp.get('balance_rule', '')}).")
    return out


def _limits(site: Mapping[str, Any], hot: Mapping[str, Any] | None) -> list[str]:
    out = []
    for c in site.get("checks") or []:
        if c.get("status") == INSUFFICIENT:
            out.append(f"Too little data for the {c.get('label', c['name'])} check: {c['detail']}.")
    rec = site.get("records") or {}
    flagged = (rec.get("kept") or 0) + (rec.get("not_geocoded") or 0)
    if flagged and rec.get("not_geocoded"):
        out.append(f"{_num(rec['not_geocoded'])} of {_num(flagged)} eligible records "
                   f"({rec['not_geocoded'] / flagged:.1%}) could not be placed on the map.")
    if rec.get("in_candidates") is not None:
        out.append(f"The verdict rests on {_num(rec['in_candidates'])} eligible records in the candidate area.")
    comp = site.get("comparison_area") or {}
    if comp.get("neighborhoods") and comp.get("balanced") is False:
        worst = max(comp.get("balance") or [{}], key=lambda b: abs(b.get("std_mean_diff", 0.0)))
        if worst.get("feature"):
            out.append(f"The comparison area differs most on {worst['feature']} "
                       f"(pilot {_num(worst.get('pilot_mean'))}, comparison {_num(worst.get('comparison_mean'))}).")
    for key, what in (("gistar_neighborhoods", "neighborhoods"), ("gistar_grid", "grid cells")):
        g = (hot or {}).get(key) or {}
        missing = g.get("fdr_levels_not_offered") or []
        if missing:
            out.append(f"Gi* on {what}: FDR {', '.join(f'{q * 100:g}%' for q in missing)} cannot be reached "
                       f"with {_num(g.get('permutations'))} permutations among {_num(g.get('tests'))} tests, "
                       "so it is not offered.")
    return out


def hotspot_statements(hot: Mapping[str, Any] | None, units: Sequence[str]) -> list[str]:
    """Which neighborhoods Gi* finds hot at each FDR level, and what it says of `units`."""
    g = (hot or {}).get("gistar_neighborhoods") or {}
    labels = g.get("labels") or {}
    if not labels:
        return []
    out = []
    top = g.get("top") or []
    hot_by_label: dict[str, list[str]] = {}
    for row in top:
        lab = str(row.get("label", ""))
        if lab.startswith("hot"):
            hot_by_label.setdefault(lab, []).append(place(row["neighborhood"]))
    parts = []
    for lab in sorted(hot_by_label, key=lambda s: float(s.rsplit(" ", 1)[-1].rstrip("%") or 0)):
        parts.append(f"{lab.split(', ', 1)[-1]}: {join_names(hot_by_label[lab])}")
    p_text = g.get("p_value", "two-sided pseudo p")
    if parts:
        out.append(f"Gi* ({_num(g.get('permutations'))} permutations, {p_text}) finds hot neighborhoods at "
                   + "; ".join(parts) + ".")
    else:
        out.append(f"Gi* ({_num(g.get('permutations'))} permutations, {p_text}) finds no hot neighborhood "
                   "at any FDR level offered.")
    by = {str(r.get("neighborhood", "")).upper(): r for r in top}
    for u in units:
        r = by.get(str(u).upper())
        if r is not None and "p_two_sided" in r:
            out.append(f"{place(u)}: Gi* z {_num(r.get('gi_z'))}, two-sided p {_num(r.get('p_two_sided'), 4)}, "
                       f"{r.get('label')}.")
    return out


# --- all of it ------------------------------------------------------------------------------------
def findings(site: Mapping[str, Any] | None, scores: Any = None,
             hotspots: Mapping[str, Any] | None = None) -> Findings:
    """Every finding of a run as sentences built from its results.

    Parameters
    ----------
    site
        The ``site --json`` object (`geo_lead.siting.SiteResult.to_dict`), or None.
    scores
        Rows of the ``scores`` layer (DataFrame or list of dicts) with neighborhood, rank,
        rank_low, rank_high (and in_area), or None.
    hotspots
        The ``hotspots --json`` object, or None.

    Returns
    -------
    Findings
        ``verdict_sentence``; ``reasons``: one sentence per check, the deciding check first;
        ``limits``; ``statements``: every claim (intervals and overlaps, the top-k claim, the
        zones, holdout, capacity, comparison area, hot spots).
    """
    site = dict(site or {})
    checks = list(site.get("checks") or [])
    verdict = site.get("verdict")
    sentence = verdict_sentence(verdict, site.get("deciding_check"), checks) if checks else (
        f"{str(verdict).capitalize()}." if verdict else "No site-selection verdict has been computed.")
    deciding = site.get("deciding_check")
    ordered = sorted(checks, key=lambda c: c["name"] != deciding)
    reasons = [check_sentence(c) for c in ordered]
    units = list((site.get("pilot_zone") or {}).get("neighborhoods") or [])
    statements = [*interval_statements(scores, units)]
    claim = top_claim(scores, units) if units else None
    if claim:
        statements.append(claim)
    statements += zone_statements(site) if site else []
    statements += hotspot_statements(hotspots, units)
    return Findings(verdict, sentence, reasons, _limits(site, hotspots), statements)
