"""`geo-lead run` takes its fork path and gives what one process gives (issue 18, deliverable 5).

In a full test run this process cannot fork (earlier tests leave dask's threads behind), so the
pipeline runs in a fresh interpreter: once with its children (the hotspots and figures
workers, site, the zone page, the timeline page: `parallel.forks()` counts them) and once with
``GEO_LEAD_NO_FORK=1``; the stage results and the report must be equal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geo_lead import parallel, settings

ROOT = Path(__file__).resolve().parent.parent

_RUN = """
import json, os, sys
from pathlib import Path
from geo_lead import parallel, pipeline
from geo_lead.pipeline import run_pipeline

out, data = Path(sys.argv[1]), Path(sys.argv[2])
from geo_lead import settings
results = {}
for mode in ("fork", "fork_read", "fork_big", "fork_again", "no_fork", "no_fork_big", "no_fork_again"):
    # *_again: the same file run again on the store of the mode named before it (nothing new:
    # the flagged records unchanged, the figures child reads the before/after part itself)
    # *_big: the figures child only draws, the parent reads the pilot data (a big store);
    # the setting is in every result key: a result cache of its own. fork_read: the records
    # are not sent to the figures child (too big to send), it reads them itself
    settings.PILOT_CHILD_MAX_RECORDS = 0 if mode.endswith("_big") else 100_000
    pipeline.SEND_MAX_BYTES = 0 if mode == "fork_read" else 128 * 1024
    base = mode.removesuffix("_again")
    os.environ["GEO_LEAD_RESULT_CACHE_DIR"] = str(out / ("results" if base in ("fork", "no_fork") else "results_" + base))
    if mode.startswith("no_fork"):
        os.environ["GEO_LEAD_NO_FORK"] = "1"
    before = parallel.forks()
    summary = run_pipeline(out / base / "lead.gpkg", [data], out_dir=out / mode / "maps", echo=None)
    results[mode] = {"forks": parallel.forks() - before, "score": summary["score"],
                     "hotspots": summary["hotspots"], "site": summary["site"],
                     "records": summary["records_in_store"]}
print(json.dumps(results, default=str, sort_keys=True))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork with PR_SET_PDEATHSIG: Linux")
def test_run_forks_its_children_and_equals_a_one_process_run(tmp_path: Path) -> None:
    data = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"
    env = {k: v for k, v in os.environ.items() if k != parallel.NO_FORK_ENV}
    env["PYTHONPATH"] = str(ROOT)
    # empty result caches (the script's, under tmp_path): which pages need rendering (and so
    # which children fork) does not depend on what earlier tests left there
    out = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path), str(data)], capture_output=True,
                         text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    fork, read, big, one, one_big = (results[m] for m in ("fork", "fork_read", "fork_big", "no_fork", "no_fork_big"))
    # hotspots worker, figures worker (the report's pilot sections and figures), site, zone
    # page, and the timeline page (rendered in a child while the site map renders here:
    # `maps._write_pages`); in a big store the parent reads the pilot data and sites its years
    # in a child too (`by_year.by_year_store`; the figures worker, with its watch thread, cannot)
    assert (fork["forks"], read["forks"], big["forks"]) == (5, 5, 6)
    assert one["forks"] == one_big["forks"] == 0
    assert fork["records"] == one["records"] > 0
    for stage in ("score", "hotspots", "site"):
        assert fork[stage] == read[stage] == big[stage] == one[stage] == one_big[stage], stage
    # the report (its pilot sections read and its figures drawn by the figures child) is the
    # one-process report, but for the store's folder, the ingest time it lists, the minute it was
    # made and the run ids
    pages = {mode: re.sub(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\dZ| \d\d:\d\d UTC)|\d{8}T\d{6}Z-[0-9a-f]{8}", "TIME",
                          (tmp_path / mode / "maps" / "report.html").read_text(encoding="utf-8")
                          .replace(str(tmp_path / mode), "STORE_FOLDER")
                          .replace(str(tmp_path / mode.removesuffix("_again")), "STORE_FOLDER")) for mode in results}
    first = {m: p for m, p in pages.items() if not m.endswith("_again")}
    assert len(set(first.values())) == 1, [m for m in first if first[m] != first["no_fork"]]
    assert pages["fork_again"] == pages["no_fork_again"]  # a rerun with nothing new, forked or not
    # the report drawn here took the figures child's drawings: one PNG per figure in the cache
    # (a figure keyed otherwise here would have been drawn and kept a second time)
    for results in ("results", "results_fork_read", "results_fork_big"):
        drawn = [json.loads(p.read_text())["name"] for p in (tmp_path / results).glob("figure_png-*.json")]
        assert drawn and len(drawn) == len(set(drawn)), (results, drawn)
    assert "gave no result" not in out.stderr  # every child answered: nothing was recomputed


def test_only_what_a_pipe_holds_is_sent_to_a_child() -> None:
    """`pipeline._sendable`: a value that pickles to at most `SEND_MAX_BYTES` is sent (the
    shipped data's flagged records), a bigger one is not (None: the child reads it itself)."""
    import pandas as pd

    from geo_lead.pipeline import SEND_MAX_BYTES, _sendable

    small = pd.DataFrame({"lon": [-85.8] * 100, "lat": [38.2] * 100})
    assert _sendable(small) is small
    big = pd.DataFrame({"text": ["x" * 1000] * (SEND_MAX_BYTES // 1000 + 1)})
    assert _sendable(big) is None


def test_statistics_libraries_are_imported_ahead_only_when_the_flagged_records_changed() -> None:
    """`pipeline._prefetch_ahead`: the hotspots child imports the statistics modules ahead only
    when the ingest changed the flagged records (their count, an updated record, a re-flag)."""
    from geo_lead.pipeline import HOTSPOT_COMPUTE_MODULES, _prefetch_ahead

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[tuple[str, ...]] = []

        def prefetch(self, modules: tuple[str, ...]) -> None:
            self.sent.append(tuple(modules))

    cases = [((530, 530, {"added": 1, "updated": 0, "reflagged": 0}), False),
             ((530, 531, {"added": 1, "updated": 0, "reflagged": 0}), True),
             ((530, 530, {"added": 0, "updated": 2, "reflagged": 0}), True),
             ((530, 530, {"added": 0, "updated": 0, "reflagged": 7}), True)]
    for (before, after, ingest), expected in cases:
        worker = Recorder()
        _prefetch_ahead(((worker, HOTSPOT_COMPUTE_MODULES),), before, after, ingest)  # type: ignore[arg-type]
        assert worker.sent == ([HOTSPOT_COMPUTE_MODULES] if expected else []), (before, after, ingest)
