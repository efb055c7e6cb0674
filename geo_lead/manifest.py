"""The run manifest: one row in the store's ``runs`` table per `geo-lead run`.

Each row says when the run started and finished, which package version ran, every input
file with its sha256 and size, the parameters, the counts of every stage, the output paths,
and a compact snapshot of the results (score ranks, hotspots, the site verdict) so the next
run can say what changed (`geo_lead.changes`).

The row is written once, when the run ends (successfully or with an error), in its own
transaction: a run killed with SIGKILL leaves no half-written manifest row, only the
stages it had already committed (each of which is itself atomic).

Usage (the pipeline)::

    with record_run(store, "run", inputs=files, parameters={"out": str(out)}) as run:
        reports = ingest_files(store, files)
        run.stage("ingest", {"rows_read": ..., "added": ...})
        ...
        run.output(out / "map.html")
    # run.summary: the manifest row as a dict; run.changes: the change report

``runs`` columns
----------------
run_id           ``YYYYmmddTHHMMSSZ-<8 hex>``, sortable by start time
started_at       ISO 8601 UTC
finished_at      ISO 8601 UTC
duration_s       wall-clock seconds
status           ``ok`` or ``failed``
error            the error message of a failed run, else empty
command          e.g. ``run``
package_version  ``geo_lead.__version__``
inputs_json      ``[{"path", "name", "sha256", "bytes", "sample_fraction"}]`` (the fraction the
                 file was ingested with, `geo_lead.frames`)
parameters_json  ``{name: value}``
counts_json      ``{stage: {count: n}}`` in stage order
outputs_json     ``[path, ...]``
results_json     snapshot of the results (see `results_snapshot`)
changes_json     what changed since the previous successful run (see `geo_lead.changes`)
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from geo_lead import __version__
from geo_lead.store import RUNS_TABLE, Store

log = logging.getLogger(__name__)

RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "started_at", "finished_at", "duration_s", "status", "error", "command",
    "package_version", "inputs_json", "parameters_json", "counts_json", "outputs_json",
    "results_json", "changes_json",
)
_JSON_COLUMNS = ("inputs_json", "parameters_json", "counts_json", "outputs_json",
                 "results_json", "changes_json")
#: Layers whose rows the results snapshot keeps (documented in docs/ARCHITECTURE.md).
SCORE_SNAPSHOT_COLUMNS: tuple[str, ...] = ("neighborhood", "rank", "score", "count", "indicator")


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # KiB on Linux


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_inputs(paths: Sequence[Path | str]) -> list[dict[str, Any]]:
    """Path, name, sha256 and size of each input file (missing files get an empty hash)."""
    from geo_lead.outputs import sha256_file

    out = []
    for p in map(Path, paths):
        exists = p.is_file()
        out.append({"path": str(p.resolve()), "name": p.name,
                    "sha256": sha256_file(p) if exists else "",
                    "bytes": p.stat().st_size if exists else None})
    return out


def ensure_runs_table(store: Store) -> None:
    """Create the ``runs`` table (inside the caller's transaction, or in its own)."""
    store.ensure_runs_table()


@dataclass
class RunRecorder:
    """Collects a run's manifest while it runs; `record_run` writes it at the end."""

    command: str
    inputs: list[dict[str, Any]]
    parameters: dict[str, Any]
    run_id: str = ""
    started: float = field(default_factory=time.time)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mark = self.started
        if not self.run_id:
            stamp = datetime.fromtimestamp(self.started, UTC).strftime("%Y%m%dT%H%M%SZ")
            self.run_id = f"{stamp}-{secrets.token_hex(4)}"

    def stage(self, name: str, counts: Mapping[str, Any]) -> None:
        """Record one stage's counts and its wall time since the previous stage (``seconds``)."""
        now = time.time()
        entry = self.counts.setdefault(name, {})
        entry.update(dict(counts))
        entry["seconds"] = round(entry.get("seconds", 0.0) + now - self._mark, 3)
        entry["peak_rss_mb"] = _peak_rss_mb()  # the process's peak so far: shows which stage grows it
        self._mark = now

    def output(self, path: Path | str) -> None:
        """Record an output file or directory the run wrote."""
        self.outputs.append(str(path))


def stage_counts(result: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar counts of a stage's result dict (numbers, strings, booleans; tables left out)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            if isinstance(value, str) and len(value) > 200:
                continue
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = value
        elif hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            out[key] = value.item()
    return out


def _row(rec: RunRecorder, status: str, error: str) -> dict[str, Any]:
    finished = time.time()
    return {
        "run_id": rec.run_id, "started_at": _utc(rec.started), "finished_at": _utc(finished),
        "duration_s": round(finished - rec.started, 3), "status": status, "error": error,
        "command": rec.command, "package_version": __version__,
        "inputs_json": json.dumps(rec.inputs), "parameters_json": json.dumps(rec.parameters, default=str),
        "counts_json": json.dumps(rec.counts, default=str), "outputs_json": json.dumps(rec.outputs),
        "results_json": json.dumps(rec.results, default=str),
        "changes_json": json.dumps(rec.changes, default=str),
    }


def write_run(store: Store, row: Mapping[str, Any]) -> None:
    """Insert one manifest row in its own transaction."""
    with store.write():
        ensure_runs_table(store)
        store.insert_rows(RUNS_TABLE, pd.DataFrame([dict(row)], columns=list(RUN_COLUMNS)))


@contextlib.contextmanager
def record_run(store: Store, command: str, inputs: Sequence[Path | str] = (),
               parameters: Mapping[str, Any] | None = None,
               compare: bool = True) -> Iterator[RunRecorder]:
    """Record a run in the manifest when the ``with`` block ends.

    On success the results snapshot is taken from the store (`results_snapshot`) and compared
    with the previous successful run's (`geo_lead.changes.compare_snapshots`); both go into
    the row, and ``recorder.changes`` holds the comparison for the caller to print. On an
    exception the row is written with status ``failed`` and the error, then it re-raises.
    A SIGKILL writes nothing (see the module docstring).
    """
    from geo_lead.changes import compare_snapshots

    rec = RunRecorder(command=command, inputs=describe_inputs(inputs),
                      parameters=dict(parameters or {}))
    try:
        yield rec
    except BaseException as exc:
        with contextlib.suppress(Exception):  # never mask the original error
            write_run(store, _row(rec, "failed", f"{type(exc).__name__}: {exc}"))
        raise
    if compare:
        rec.results = results_snapshot(store)
        previous = last_run(store, status="ok")
        rec.changes = compare_snapshots(previous["results"] if previous else None, rec.results,
                                        previous_run_id=previous["run_id"] if previous else None)
    row = _row(rec, "ok", "")
    write_run(store, row)
    rec.summary = _decode(row)
    log.info("run %s recorded (%s)", rec.run_id, ", ".join(rec.counts))


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in _JSON_COLUMNS and k != "fid"}
    for col in _JSON_COLUMNS:
        value = row.get(col)
        out[col.removesuffix("_json")] = json.loads(value) if isinstance(value, str) and value else None
    return out


def list_runs(store: Store, limit: int | None = None) -> list[dict[str, Any]]:
    """The manifest rows, newest first, with the JSON columns decoded (``inputs``, ``counts``...)."""
    if RUNS_TABLE not in store.tables():
        return []
    rows = store.read_runs(RUN_COLUMNS, limit)
    return [_decode(dict(zip(RUN_COLUMNS, r, strict=True))) for r in rows]


def last_run(store: Store, status: str | None = "ok") -> dict[str, Any] | None:
    """The most recent run (with `status`, if given), or None."""
    for run in list_runs(store):
        if status is None or run["status"] == status:
            return run
    return None


def _kde_hot_cells(store: Store) -> dict[str, str]:
    """KDE hotspot cells keyed by their centre (lon,lat to 5 decimals, ~1 m): stable across
    reruns even though the layer is rebuilt and its fids renumbered."""
    import shapely

    out: dict[str, str] = {}
    for wkb in store.feature_wkbs("hotspot_kde", "is_hotspot"):
        c = shapely.from_wkb(wkb).centroid
        out[f"{c.x:.5f},{c.y:.5f}"] = "hot (KDE)"
    return out


def results_snapshot(store: Store) -> dict[str, Any]:
    """The results a later run compares against: score ranks, hotspots, site and hotspot JSON.

    Reads only documented layers (docs/ARCHITECTURE.md): ``scores`` (neighborhood, rank,
    score, count, indicator), ``hotspot_gistar_neighborhoods`` and ``hotspot_gistar_grid``
    (label), ``hotspot_kde`` (cells with is_hotspot), and the meta keys ``site_result`` and ``hotspots_result``. Missing layers give
    empty entries, so a run before scoring exists still records a snapshot.
    """
    tables = store.tables()
    snap: dict[str, Any] = {"scores": [], "hotspots": {}, "site_result": None, "hotspots_result": None}
    if "scores" in tables:
        cols = [c for c in SCORE_SNAPSHOT_COLUMNS if c in store.columns("scores")]
        if "neighborhood" in cols:
            snap["scores"] = store.read_table("scores", cols).to_dict("records")
    for layer, key in (("hotspot_gistar_neighborhoods", "neighborhood"), ("hotspot_gistar_grid", "cell_id")):
        if layer in tables and {key, "label"} <= set(store.columns(layer)):
            frame = store.read_table(layer, [key, "label"])
            snap["hotspots"][layer] = {str(k): str(v) for k, v in zip(frame[key], frame["label"], strict=True)}
    if "hotspot_kde" in tables and "is_hotspot" in store.columns("hotspot_kde"):
        snap["hotspots"]["hotspot_kde"] = _kde_hot_cells(store)
    snap["site_result"] = store.get_json("site_result")
    snap["hotspots_result"] = store.get_json("hotspots_result")
    from geo_lead.frames import load_frames

    snap["frames"] = [fr.to_dict() for fr in load_frames(store).frames()]
    return snap

