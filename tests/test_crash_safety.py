"""Crash safety and concurrency of `geo-lead ingest`, with real subprocesses and SIGKILL.

The store starts with the 2016 sample ingested ("before"). The ingest under test adds the
2017 and 2023 samples and a re-download of 2016 in which the premise of 100 rows was
corrected (so it also updates records and writes history): "after". A process killed at any
point must leave the store exactly "before" or exactly "after" (timestamps aside), pass
``PRAGMA integrity_check``, and accept the same ingest again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from geo_lead import settings
from geo_lead.geocode.cache import geocode_store
from geo_lead.ingest import CRASH_POINTS, ENRICH_CRASH_POINTS, ingest_files
from geo_lead.spatial_join import join_store
from geo_lead.store import opened

ROOT = Path(__file__).resolve().parent.parent
LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
BASE = LMPD / "crime_data_2016_drug_sample.csv"
#: Columns whose values are wall-clock times of the write, not content.
VOLATILE = frozenset({"ingested_at", "updated_at", "replaced_at", "last_change", "declared_at", "fid",
                      "created_at"})  # (geocode_cache rows: written by the enriched ingest)
CORRECTED_ROWS = 100


def state(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (sorted, time-of-write columns left out), after integrity_check.

    Opening the file read-write makes SQLite roll back a hot journal left by a killed writer,
    exactly as the next geo-lead command would.
    """
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        out: dict[str, list[tuple[Any, ...]]] = {}
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(tables):
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")') if r[1] not in VOLATILE]
            rows = conn.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}"')
            out[table] = sorted(rows.fetchall(), key=repr)
        return out
    finally:
        conn.close()


def _corrected_copy(dst: Path) -> Path:
    """The 2016 sample as a later re-download: PREMISE_TYPE corrected on the first rows."""
    with BASE.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    premise = rows[0].index("PREMISE_TYPE")
    for row in rows[1:CORRECTED_ROWS + 1]:
        row[premise] = row[premise] + " (CORRECTED)"
    with dst.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return dst


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("crash")
    new_files = [LMPD / "crime_data_2017_drug_sample.csv", LMPD / "crime_data_2023_sample.csv",
                 _corrected_copy(tmp / "crime_data_2016_redownload.csv")]
    before = tmp / "before.gpkg"
    with opened(before) as store:
        ingest_files(store, [BASE])
    after = tmp / "after.gpkg"
    shutil.copyfile(before, after)
    started = time.monotonic()
    done = _ingest(after, new_files)
    assert done.returncode == 0, done.stderr
    duration_s = time.monotonic() - started
    s_before, s_after = state(before), state(after)
    assert s_before != s_after
    assert len(s_after["record_history"]) == CORRECTED_ROWS  # the update path is exercised
    return {"tmp": tmp, "before": before, "files": new_files, "state_before": s_before,
            "state_after": s_after, "duration_s": duration_s}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_LEAD_")}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def _cmd(store: Path, files: list[Path]) -> list[str]:
    return [sys.executable, "-m", "geo_lead", "ingest", *map(str, files), "--store", str(store), "--json"]


def _ingest(store: Path, files: list[Path], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(store, files), capture_output=True, text=True, env=_env(**env), timeout=300)


#: `geo-lead ingest` (the CLI, as `python -m geo_lead` runs it) with `ingest.checkpoint_hook` set:
#: at the named point it writes its pid to the flag file and sleeps (argv: point, flag, pause_s,
#: then the command's arguments).
_PAUSING_INGEST = """
import os, sys, time
from pathlib import Path
from geo_lead import ingest
from geo_lead.cli import main
point, flag, pause_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
def pause(name):
    if name == point:
        flag.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(pause_s)
ingest.checkpoint_hook = pause
raise SystemExit(main(sys.argv[4:]))
"""


#: `geo-lead run`'s ingest (`ingest_with` and an `Enricher`: records written geocoded and joined),
#: pausing as `_PAUSING_INGEST` does (argv: point, flag, pause_s, store, files).
_PAUSING_ENRICHED_INGEST = """
import os, sys, time
from pathlib import Path
from geo_lead import ingest
from geo_lead.enrich import Enricher
from geo_lead.store import opened
point, flag, pause_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
def pause(name):
    if name == point:
        flag.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(pause_s)
ingest.checkpoint_hook = pause
with opened(sys.argv[4]) as store:
    enricher = Enricher()
    ingest.ingest_with(store, sys.argv[5:], ingest.IngestOptions(enrich=enricher))
    assert enricher.active, "the store had work left: records were not enriched"
"""


def _start_paused(store: Path, files: list[Path], point: str, flag: Path,
                  pause_s: float = 120, enriched: bool = False) -> subprocess.Popen[str]:
    assert point in CRASH_POINTS
    if enriched:
        cmd = [sys.executable, "-c", _PAUSING_ENRICHED_INGEST, point, str(flag), str(pause_s), str(store),
               *map(str, files)]
    else:
        cmd = [sys.executable, "-c", _PAUSING_INGEST, point, str(flag), str(pause_s), *_cmd(store, files)[3:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ingest ended before reaching {point}: {proc.stderr.read()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"ingest never reached {point}")
        time.sleep(0.02)
    return proc


def _kill(proc: subprocess.Popen[str], may_have_finished: bool = False) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    # A process that ended between our poll and the signal exits 0: a race, not a failure.
    allowed = (-signal.SIGKILL, 0) if may_have_finished else (-signal.SIGKILL,)
    assert proc.returncode in allowed, proc.returncode


def _fresh(stores: dict[str, Any], name: str) -> Path:
    path = stores["tmp"] / f"{name}.gpkg"
    shutil.copyfile(stores["before"], path)
    return path


@pytest.mark.parametrize("point", [p for p in CRASH_POINTS if p not in ENRICH_CRASH_POINTS])
def test_sigkill_at_named_point(stores: dict[str, Any], point: str) -> None:
    store = _fresh(stores, f"kill_{point}")
    _kill(_start_paused(store, stores["files"], point, stores["tmp"] / f"flag_{point}"))
    expected = stores["state_after"] if point == "after-commit" else stores["state_before"]
    assert state(store) == expected
    if point == "before-commit":  # the interrupted ingest simply runs again
        again = _ingest(store, stores["files"])
        assert again.returncode == 0, again.stderr
        assert state(store) == stores["state_after"]


@pytest.mark.parametrize("fraction", [0.2, 0.6, 0.9])
def test_sigkill_after_delay(stores: dict[str, Any], fraction: float) -> None:
    """Kill at a fraction of a normal run's duration: the store is before or after, never between."""
    store = _fresh(stores, f"delay_{fraction}")
    proc = subprocess.Popen(_cmd(store, stores["files"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    time.sleep(fraction * stores["duration_s"])
    if proc.poll() is None:
        _kill(proc, may_have_finished=True)
    else:
        proc.communicate()
    assert state(store) in (stores["state_before"], stores["state_after"])


def test_two_ingests_at_once_serialise(stores: dict[str, Any]) -> None:
    store = _fresh(stores, "concurrent")
    first = _start_paused(store, stores["files"], "after-begin", stores["tmp"] / "flag_conc", pause_s=3)
    second = _ingest(store, stores["files"])  # waits for the first's write lock
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    added = sorted(json.loads(x)["added"] for x in (out, second.stdout))
    assert added[0] == 0 and added[1] > 0  # the second saw the first's rows and added nothing
    # Serialised means: exactly the store two ingests one after the other would leave.
    sequential = _fresh(stores, "sequential")
    for _ in range(2):
        with opened(sequential) as handle:
            ingest_files(handle, stores["files"])
    assert state(store) == state(sequential)
    records = {t: v for t, v in state(store).items() if t not in ("ingests", "sqlite_sequence")}
    assert records == {t: v for t, v in stores["state_after"].items() if t not in ("ingests", "sqlite_sequence")}


def test_busy_store_fails_clearly(stores: dict[str, Any]) -> None:
    store = _fresh(stores, "busy")
    holder = _start_paused(store, stores["files"], "after-begin", stores["tmp"] / "flag_busy")
    try:
        blocked = _ingest(store, stores["files"], GEO_LEAD_BUSY_TIMEOUT_S="0.5")
        assert blocked.returncode == 2
        assert "another geo-lead process is writing to this store" in blocked.stderr
        assert "Traceback" not in blocked.stderr
    finally:
        _kill(holder)
    assert state(store) == stores["state_before"]


def test_nested_writes_commit_or_roll_back_together(store_path: Path) -> None:
    """`Store.write` nests as savepoints: a whole run can be one transaction."""
    with opened(store_path) as store:
        with pytest.raises(RuntimeError), store.write():
            store.conn.execute("INSERT INTO meta VALUES ('outer', '1')")
            with store.write():
                store.conn.execute("INSERT INTO meta VALUES ('inner', '1')")
            raise RuntimeError("stage failed")
        assert store.get_json("outer") is None and store.get_json("inner") is None
        with store.write():
            with pytest.raises(ValueError), store.write():
                store.conn.execute("INSERT INTO meta VALUES ('inner', '2')")
                raise ValueError("inner only")
            store.conn.execute("INSERT INTO meta VALUES ('outer', '2')")
        assert store.get_json("outer") == 2 and store.get_json("inner") is None
        assert not store.conn.in_transaction


def test_readers_are_not_blocked_by_a_writer(stores: dict[str, Any]) -> None:
    """While an ingest holds the write lock, `geo-lead runs` and `export` read the old state."""
    store = _fresh(stores, "reader")
    holder = _start_paused(store, stores["files"], "before-commit", stores["tmp"] / "flag_reader")
    try:
        env = _env(GEO_LEAD_BUSY_TIMEOUT_S="2")
        runs = subprocess.run([sys.executable, "-m", "geo_lead", "runs", "--store", str(store), "--json"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert runs.returncode == 0, runs.stderr
        out = stores["tmp"] / "during.csv"
        exp = subprocess.run([sys.executable, "-m", "geo_lead", "export", "--what", "records", "--format",
                              "csv", "--out", str(out), "--store", str(store), "--json"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert exp.returncode == 0, exp.stderr
        assert json.loads(exp.stdout)["rows"] == len(stores["state_before"]["records"])
    finally:
        _kill(holder)
    assert state(store) == stores["state_before"]


@pytest.fixture(scope="module")
def enriched_stores(stores: dict[str, Any]) -> dict[str, Any]:
    """"before": the 2016 sample ingested, geocoded and joined (so new records are written
    enriched); "after": the same ingest as `stores` made by `geo-lead run`'s enriched ingest."""
    tmp = stores["tmp"]
    before = tmp / "enriched_before.gpkg"
    shutil.copyfile(stores["before"], before)
    with opened(before) as store:
        geocode_store(store)
        join_store(store)
    after = tmp / "enriched_after.gpkg"
    shutil.copyfile(before, after)
    done = subprocess.run([sys.executable, "-c", _PAUSING_ENRICHED_INGEST, "none", str(tmp / "unused"), "0",
                           str(after), *map(str, stores["files"])],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    s_before, s_after = state(before), state(after)
    assert s_before != s_after
    assert len(s_after["record_history"]) == CORRECTED_ROWS
    return {"before": before, "state_before": s_before, "state_after": s_after}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_enriched_ingest_at_named_point(stores: dict[str, Any], enriched_stores: dict[str, Any],
                                               point: str) -> None:
    """Records geocoded and joined before their insert: still one transaction."""
    store = stores["tmp"] / f"enriched_kill_{point}.gpkg"
    shutil.copyfile(enriched_stores["before"], store)
    _kill(_start_paused(store, stores["files"], point, stores["tmp"] / f"flag_enriched_{point}", enriched=True))
    expected = enriched_stores["state_after"] if point == "after-commit" else enriched_stores["state_before"]
    assert state(store) == expected
