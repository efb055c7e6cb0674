"""`geo-lead run` with nothing new: "nothing changed", about a second, no page rewritten.

The short-cut holds only when the inputs (by sha256), every parsed option, the data, the code
and the outputs (by sha256) are as the last run left them and nothing has written to the
store since; `--force` rebuilds. Oracles: file modification times and the manifest rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from geo_lead import cli, settings
from geo_lead.manifest import list_runs
from geo_lead.pipeline import run_fingerprint, store_change_counter, unchanged_since
from geo_lead.store import opened

FILE_2017 = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> tuple[int, str, float]:
    started = time.perf_counter()
    code = cli.main(["run", str(FILE_2017), "--store", str(tmp_path / "s.gpkg"),
                     "--out", str(tmp_path / "maps"), *extra])
    return code, capsys.readouterr().out, time.perf_counter() - started


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_noop_rerun_is_fast_and_rewrites_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, tmp_path)
    assert code == 0 and "nothing changed" not in out
    maps = tmp_path / "maps"
    before = _mtimes(maps)
    assert {"site_selection.html", "report.html", "zone_check.html"} <= set(before)

    code, out, seconds = _run(capsys, tmp_path)
    assert code == 0 and out.startswith("nothing changed since run")
    assert _mtimes(maps) == before
    assert seconds < 3.0  # measured ~0.3 s in-process on an idle machine (imports already loaded)
    with opened(tmp_path / "s.gpkg", create=False) as store:
        assert len(list_runs(store)) == 1  # a no-op records no run

    # an output edited by hand: the run notices and rebuilds
    (maps / "report.html").write_text("edited", encoding="utf-8")
    code, out, _ = _run(capsys, tmp_path)
    assert "report.html is missing or changed" in out and "nothing changed" not in out
    assert (maps / "report.html").read_text(encoding="utf-8") != "edited"

    # --force rebuilds although nothing changed
    before = _mtimes(maps)
    code, out, _ = _run(capsys, tmp_path, "--force")
    assert code == 0 and "nothing changed" not in out
    assert all(_mtimes(maps)[name] > t for name, t in before.items())
    with opened(tmp_path / "s.gpkg", create=False) as store:
        assert len(list_runs(store)) == 3


def test_a_write_to_the_store_or_another_option_means_work(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, tmp_path)
    store_path = tmp_path / "s.gpkg"
    params = {"store": str(store_path)}
    with opened(store_path, create=False) as store:
        key = list_runs(store)[0]["parameters"]["fingerprint"]
    # the CLI keys on every parsed option: an option added by a later change is included
    # without touching the fingerprint code
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-option", default=1.0, type=float)
    a = run_fingerprint([FILE_2017], {**params, **vars(parser.parse_args([]))})
    b = run_fingerprint([FILE_2017], {**params, **vars(parser.parse_args(["--new-option", "2"]))})
    assert a["key"] != b["key"] and a["inputs"] == b["inputs"]
    # another command writing to the store after the run (here: its meta) means work

    counter = store_change_counter(store_path)
    with opened(store_path) as store, store.write():
        store.put_json("touched_by_test", {"x": 1})
    assert store_change_counter(store_path) == counter + 1
    last, why = unchanged_since(store_path, {"key": key})
    assert last is None and why == "the store was written after the last run"
