"""What changed between two runs: rank moves, new or vanished hotspots, the site verdict.

Pure functions on the documented result shapes (docs/ARCHITECTURE.md): rows of the
``scores`` layer (``neighborhood``, ``rank``, optionally ``indicator``, ``score``,
``count``), the ``site_result`` JSON (its ``verdict``) and hotspots given either as the
Gi* layers' ``{id: label}`` maps or as the ``hotspots_result`` JSON. Nothing here reads the
store; `geo_lead.manifest` takes the snapshots and calls `compare_snapshots`.

Rules
-----
* A rank move is a neighborhood (per ``indicator`` when the table has several) whose rank
  differs between the runs; ``move = old_rank - new_rank`` (positive = moved up, towards
  rank 1). Neighborhoods ranked in only one run are listed as ``entered`` / ``left``.
* A hotspot is any row whose ``label`` starts with ``hot`` (``hot 99%``, ``hot 95%``,
  ``hot 90%``), keyed by ``neighborhood:<name>`` or ``grid:<cell_id>`` (Gi*), or a KDE
  hotspot cell, keyed by ``kde:<lon>,<lat>`` of its centre. New = hot now and
  not before; vanished = hot before and not now.
* The verdict is the first ``verdict`` value found in ``site_result`` (top level first):
  ``justified``, ``revise`` or ``inconclusive``; it changed when the two values differ
  (compared as JSON). Its ``deciding_check`` is reported with it.
* Checks: the status (``pass`` / ``fail`` / ``insufficient``) of each check in
  ``site_result["checks"]`` (older results: ``verdict_checks`` booleans, True = pass,
  False = fail, None = insufficient); a check whose status differs, or that exists in one
  run only, is a check change.
* Sampling frames (snapshot ``frames``: source, year, fraction, files) whose fraction or
  files differ are listed, and so is a change of the capacity zone's neighborhoods or
  months of data (``site_result.capacity_zone``): a new file can move these without moving
  any rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

#: Keys that identify a hotspot row in a hotspots JSON object, and the kind they name.
HOTSPOT_ID_KEYS: dict[str, str] = {"neighborhood": "neighborhood", "NH_NAME": "neighborhood",
                                   "cell_id": "grid"}
#: Gi* layers and the kind of unit their rows are.
HOTSPOT_LAYERS: dict[str, str] = {"hotspot_gistar_neighborhoods": "neighborhood",
                                  "hotspot_gistar_grid": "grid", "hotspot_kde": "kde"}


def _rows(scores: pd.DataFrame | Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if scores is None:
        return []
    if isinstance(scores, pd.DataFrame):
        return scores.to_dict("records")
    return [dict(r) for r in scores]


def _rank(value: Any) -> int | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f)


def _ranks(rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        rank = _rank(r.get("rank"))
        if rank is not None and r.get("neighborhood") not in (None, ""):
            indicator = r.get("indicator")
            out[(str(indicator) if indicator not in (None, "") else "", str(r["neighborhood"]))] = rank
    return out


def rank_moves(previous: pd.DataFrame | Iterable[Mapping[str, Any]] | None,
               current: pd.DataFrame | Iterable[Mapping[str, Any]] | None) -> dict[str, list[dict[str, Any]]]:
    """Neighborhoods whose rank changed, entered or left the ranking.

    Returns
    -------
    dict
        ``moves`` (``indicator``, ``neighborhood``, ``old_rank``, ``new_rank``, ``move``; the
        largest moves first), ``entered`` and ``left`` (``indicator``, ``neighborhood``, ``rank``).
    """
    old, new = _ranks(_rows(previous)), _ranks(_rows(current))
    moves = [{"indicator": k[0], "neighborhood": k[1], "old_rank": old[k], "new_rank": new[k],
              "move": old[k] - new[k]} for k in old.keys() & new.keys() if old[k] != new[k]]
    moves.sort(key=lambda m: (-abs(m["move"]), m["new_rank"], m["indicator"], m["neighborhood"]))
    entered = [{"indicator": k[0], "neighborhood": k[1], "rank": new[k]} for k in new.keys() - old.keys()]
    left = [{"indicator": k[0], "neighborhood": k[1], "rank": old[k]} for k in old.keys() - new.keys()]
    entered.sort(key=lambda m: (m["rank"], m["indicator"], m["neighborhood"]))
    left.sort(key=lambda m: (m["rank"], m["indicator"], m["neighborhood"]))
    return {"moves": moves, "entered": entered, "left": left}


def _is_hot(label: Any) -> bool:
    return isinstance(label, str) and label.strip().lower().startswith("hot")


def _scan_hot(obj: Any, found: dict[str, str]) -> None:
    if isinstance(obj, Mapping):
        for key, kind in HOTSPOT_ID_KEYS.items():
            if key in obj and _is_hot(obj.get("label")):
                found[f"{kind}:{obj[key]}"] = str(obj["label"])
                break
        for value in obj.values():
            _scan_hot(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _scan_hot(value, found)


def hotspots(layers: Mapping[str, Mapping[Any, Any]] | None = None,
             hotspots_result: Any = None) -> dict[str, str]:
    """Hot units as ``{"neighborhood:RUSSELL": "hot 99%", "grid:412": "hot 95%"}``.

    Parameters
    ----------
    layers
        ``{layer name: {unit id: label}}`` for the Gi* layers in `HOTSPOT_LAYERS`.
    hotspots_result
        The ``hotspots_result`` JSON; every object in it with a ``label`` and an id key of
        `HOTSPOT_ID_KEYS` counts (the layers win when both name a unit).
    """
    found: dict[str, str] = {}
    _scan_hot(hotspots_result, found)
    for layer, labels in (layers or {}).items():
        kind = HOTSPOT_LAYERS.get(layer, layer)
        for unit, label in labels.items():
            if _is_hot(label):
                found[f"{kind}:{unit}"] = str(label)
    return found


def verdict(site_result: Any) -> Any:
    """The ``verdict`` of a site result (breadth-first, so a top-level one wins), or None."""
    queue = [site_result]
    while queue:
        obj = queue.pop(0)
        if isinstance(obj, Mapping):
            if "verdict" in obj:
                return obj["verdict"]
            queue.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            queue.extend(obj)
    return None


def check_statuses(site_result: Any) -> dict[str, str]:
    """``{check name: status}`` of a site result (see the module rules), empty when none."""
    if not isinstance(site_result, Mapping):
        return {}
    checks = site_result.get("checks")
    if isinstance(checks, list):
        return {str(c["name"]): str(c.get("status")) for c in checks if isinstance(c, Mapping) and "name" in c}
    old = site_result.get("verdict_checks")
    if isinstance(old, Mapping):
        return {str(k): {True: "pass", False: "fail"}.get(v, "insufficient") for k, v in old.items()}
    return {}


def check_changes(previous_site: Any, current_site: Any) -> list[dict[str, Any]]:
    """Checks whose status changed (``before``/``after`` None when absent in that run), by name."""
    before, after = check_statuses(previous_site), check_statuses(current_site)
    return [{"check": k, "before": before.get(k), "after": after.get(k)}
            for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)]


def compare_results(previous_scores: Any, current_scores: Any,
                    previous_site: Any = None, current_site: Any = None,
                    previous_hotspots: Mapping[str, str] | None = None,
                    current_hotspots: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The change report between two runs' results.

    Parameters
    ----------
    previous_scores, current_scores
        Rows of the ``scores`` layer (DataFrame or list of dicts), or None.
    previous_site, current_site
        The ``site_result`` JSON objects, or None.
    previous_hotspots, current_hotspots
        Hot units as returned by `hotspots`.

    Returns
    -------
    dict
        ``rank_moves``, ``entered_ranking``, ``left_ranking``, ``new_hotspots``,
        ``vanished_hotspots`` (sorted ``kind:id`` with label), ``verdict_before``,
        ``verdict_after``, ``verdict_changed``, ``deciding_check_before``/``_after``,
        ``check_changes`` (`check_changes`), ``checks_after`` (every check's status now),
        ``top_before``, ``top_after`` and ``changed`` (anything at all).
    """
    ranks = rank_moves(previous_scores, current_scores)
    before, after = dict(previous_hotspots or {}), dict(current_hotspots or {})
    new_hot = [{"unit": u, "label": after[u]} for u in sorted(after.keys() - before.keys())]
    gone_hot = [{"unit": u, "label": before[u]} for u in sorted(before.keys() - after.keys())]
    v_before, v_after = verdict(previous_site), verdict(current_site)
    verdict_changed = json.dumps(v_before, sort_keys=True, default=str) != json.dumps(
        v_after, sort_keys=True, default=str)
    report = {
        "rank_moves": ranks["moves"], "entered_ranking": ranks["entered"],
        "left_ranking": ranks["left"], "new_hotspots": new_hot, "vanished_hotspots": gone_hot,
        "verdict_before": v_before, "verdict_after": v_after, "verdict_changed": verdict_changed,
        "deciding_check_before": _deciding(previous_site), "deciding_check_after": _deciding(current_site),
        "check_changes": check_changes(previous_site, current_site),
        "checks_after": check_statuses(current_site),
        "top_before": _top(previous_scores), "top_after": _top(current_scores),
    }
    report["changed"] = bool(ranks["moves"] or ranks["entered"] or ranks["left"] or new_hot
                             or gone_hot or verdict_changed or report["check_changes"])
    return report


def _deciding(site_result: Any) -> Any:
    return site_result.get("deciding_check") if isinstance(site_result, Mapping) else None


def _top(scores: Any) -> dict[str, str]:
    """Rank-1 neighborhood per indicator ('' when the table has no indicator column)."""
    return {k[0]: k[1] for k, rank in sorted(_ranks(_rows(scores)).items()) if rank == 1}


def compare_snapshots(previous: Mapping[str, Any] | None, current: Mapping[str, Any],
                      previous_run_id: str | None = None) -> dict[str, Any]:
    """Compare two `geo_lead.manifest.results_snapshot` dicts (previous None = first run)."""
    prev = previous or {}
    report = compare_results(
        prev.get("scores"), current.get("scores"), prev.get("site_result"), current.get("site_result"),
        hotspots(prev.get("hotspots"), prev.get("hotspots_result")),
        hotspots(current.get("hotspots"), current.get("hotspots_result")))
    report["frames_changed"] = frame_changes(prev.get("frames"), current.get("frames"))
    cap_before, cap_after = _capacity(prev.get("site_result")), _capacity(current.get("site_result"))
    report["capacity_before"], report["capacity_after"] = cap_before, cap_after
    report["capacity_changed"] = previous is not None and cap_before != cap_after
    report["changed"] = bool(report["changed"] or report["frames_changed"] or report["capacity_changed"])
    report["previous_run"] = previous_run_id
    report["first_run"] = previous is None
    return report


def frame_changes(previous: Iterable[Mapping[str, Any]] | None,
                  current: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Sampling frames (`geo_lead.frames.Frame.to_dict`: source, year, fraction, files) whose
    fraction or files differ, appeared or vanished: ``{source, year, before, after, files}``."""
    def key(rows: Iterable[Mapping[str, Any]] | None) -> dict[tuple[str, int], Mapping[str, Any]]:
        return {(str(r.get("source")), int(r.get("year", 0))): r for r in (rows or [])}

    old, new = key(previous), key(current)
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        fa = None if a is None else float(a.get("fraction", 1.0))
        fb = None if b is None else float(b.get("fraction", 1.0))
        files_a = list(a.get("files", [])) if a else []
        files_b = list(b.get("files", [])) if b else []
        if fa != fb or files_a != files_b:
            out.append({"source": k[0], "year": k[1], "before": fa, "after": fb, "files": files_b or files_a})
    return out


def _capacity(site_result: Any) -> dict[str, Any] | None:
    if not isinstance(site_result, Mapping) or not isinstance(site_result.get("capacity_zone"), Mapping):
        return None
    cz = site_result["capacity_zone"]
    months = (cz.get("parameters") or {}).get("months_of_data")
    return {"neighborhoods": list(cz.get("neighborhoods") or []),
            "months_of_data": None if months is None else round(float(months), 2)}


def describe(report: Mapping[str, Any], max_moves: int = 10) -> list[str]:
    """Human-readable lines for a change report (the CLI prints them)."""
    if report.get("first_run"):
        return ["first recorded run: nothing to compare with yet"]
    lines = [f"changes since run {report.get('previous_run')}:"]
    if not report.get("changed"):
        return [*lines, "  no change in ranks, hotspots, sampling frames, capacity zone or verdict"]
    moves = report.get("rank_moves", [])
    for m in moves[:max_moves]:
        ind = f" [{m['indicator']}]" if m.get("indicator") else ""
        arrow = "up" if m["move"] > 0 else "down"
        lines.append(f"  {m['neighborhood']}{ind}: rank {m['old_rank']} -> {m['new_rank']} "
                     f"({arrow} {abs(m['move'])})")
    if len(moves) > max_moves:
        lines.append(f"  ... and {len(moves) - max_moves} more rank moves")
    for key, word in (("entered_ranking", "entered the ranking at"), ("left_ranking", "left the ranking from")):
        for m in report.get(key, []):
            lines.append(f"  {m['neighborhood']}: {word} rank {m['rank']}")
    for key, word in (("new_hotspots", "new hotspot"), ("vanished_hotspots", "hotspot vanished")):
        for h in report.get(key, []):
            lines.append(f"  {word}: {h['unit']} ({h['label']})")
    for f in report.get("frames_changed", []):
        before = "none" if f["before"] is None else f"{f['before']:.4g}"
        after = "none" if f["after"] is None else f"{f['after']:.4g}"
        lines.append(f"  sampling frame {f['source']} {f['year']}: fraction {before} -> {after} "
                     f"({', '.join(f['files'])})")
    if report.get("capacity_changed"):
        a, b = report.get("capacity_before") or {}, report.get("capacity_after") or {}
        lines.append(f"  capacity zone: {' + '.join(a.get('neighborhoods') or []) or 'none'} -> "
                     f"{' + '.join(b.get('neighborhoods') or []) or 'none'} (months of data "
                     f"{a.get('months_of_data')} -> {b.get('months_of_data')})")
    for c in report.get("check_changes", []):
        lines.append(f"  check {c['check']}: {c['before'] or 'absent'} -> {c['after'] or 'absent'}")
    deciding = report.get("deciding_check_after")
    why = f" (deciding check: {deciding})" if deciding else ""
    if report.get("verdict_changed"):
        lines.append(f"  verdict changed: {report.get('verdict_before')!r} -> {report.get('verdict_after')!r}{why}")
    else:
        lines.append(f"  verdict unchanged: {report.get('verdict_after')!r}{why}")
    return lines
