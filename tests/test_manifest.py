"""Run manifest: one row per run with inputs (sha256), version, counts, outputs, changes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from geo_lead import __version__, settings
from geo_lead.ingest import ingest_files
from geo_lead.manifest import last_run, list_runs, record_run
from geo_lead.store import opened

REAL_FILE = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"
ROOT = Path(__file__).resolve().parent.parent


def _write_scores(store, ranks: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    names = list(ranks)
    gdf = gpd.GeoDataFrame(
        {"neighborhood": names, "rank": [ranks[n] for n in names], "score": [1.0 / ranks[n] for n in names],
         "count": [10 * ranks[n] for n in names], "indicator": "opiate"},
        geometry=[box(-85.8 + i * 0.01, 38.2, -85.79 + i * 0.01, 38.21) for i in range(len(names))],
        crs=settings.CRS_STORE)
    store.replace_features("scores", gdf, "MULTIPOLYGON")


def test_run_row_has_inputs_version_counts_outputs(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    with opened(store_path) as store:
        with record_run(store, "run", inputs=[REAL_FILE], parameters={"out": str(out)}) as run:
            reports = ingest_files(store, [REAL_FILE])
            run.stage("ingest", {k: sum(getattr(r, k) for r in reports) for k in ("rows_read", "added")})
            run.output(out / "zone.html")
        rows = list_runs(store)
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and row["error"] == "" and row["command"] == "run"
    assert row["package_version"] == __version__
    assert row["inputs"] == [{"path": str(REAL_FILE.resolve()), "name": REAL_FILE.name,
                              "sha256": hashlib.sha256(REAL_FILE.read_bytes()).hexdigest(),
                              "bytes": REAL_FILE.stat().st_size}]
    data_rows = len(REAL_FILE.read_text(encoding="utf-8").splitlines()) - 1
    seconds = row["counts"]["ingest"].pop("seconds")
    assert row["counts"]["ingest"].pop("peak_rss_mb") > 0
    assert row["counts"] == {"ingest": {"rows_read": data_rows, "added": data_rows}}
    assert 0 <= seconds <= row["duration_s"]
    assert row["outputs"] == [str(out / "zone.html")]
    assert row["parameters"] == {"out": str(out)}
    assert row["started_at"] <= row["finished_at"] and row["duration_s"] >= 0
    assert row["changes"]["first_run"] is True


def test_failed_run_is_recorded_and_reraised(store_path: Path) -> None:
    with opened(store_path) as store:
        with pytest.raises(ValueError, match="boom"), record_run(store, "run"):
            raise ValueError("boom")
        row = last_run(store, status=None)
        assert last_run(store) is None  # no successful run yet
    assert row is not None and row["status"] == "failed" and row["error"] == "ValueError: boom"


def test_second_run_reports_changes_against_last_ok_run(store_path: Path) -> None:
    with opened(store_path) as store:
        _write_scores(store, {"RUSSELL": 1, "PORTLAND": 2, "SHAWNEE": 3})
        store.put_json("site_result", {"verdict": "pilot zone within 10% of the best"})
        with record_run(store, "run"):
            pass
        with pytest.raises(RuntimeError), record_run(store, "run"):
            raise RuntimeError("interrupted")  # failed runs are not the comparison baseline
        _write_scores(store, {"RUSSELL": 2, "PORTLAND": 1, "SHAWNEE": 3})
        with record_run(store, "run") as second:
            pass
        runs = list_runs(store)
    first_id = runs[-1]["run_id"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    changes = second.changes
    assert changes["previous_run"] == first_id
    assert {(m["neighborhood"], m["move"]) for m in changes["rank_moves"]} == {("PORTLAND", 1), ("RUSSELL", -1)}
    assert changes["verdict_changed"] is False
    assert runs[0]["changes"] == json.loads(json.dumps(changes))
    assert runs[0]["results"]["scores"][0]["neighborhood"] == "RUSSELL"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geo_lead", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_runs_command(store_path: Path, tmp_path: Path) -> None:
    with opened(store_path) as store, record_run(store, "run", inputs=[REAL_FILE]) as run:
        run.stage("ingest", {"added": 5})
    js = _cli("runs", "--store", str(store_path), "--json", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    listed = json.loads(js.stdout)
    assert [r["run_id"] for r in listed] == [run.run_id]
    assert listed[0]["inputs"][0]["sha256"] == hashlib.sha256(REAL_FILE.read_bytes()).hexdigest()
    text = _cli("runs", "--store", str(store_path), cwd=tmp_path)
    assert text.returncode == 0 and run.run_id in text.stdout and "ingest: added 5, seconds" in text.stdout
    missing = _cli("runs", "--store", str(tmp_path / "nope.gpkg"), cwd=tmp_path)
    assert missing.returncode == 2 and "no store here yet" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_pipeline_records_each_run_and_what_changed(store_path: Path, tmp_path: Path) -> None:
    """`geo-lead run` twice: a manifest row each, the rerun geocodes only new addresses."""
    from geo_lead.pipeline import run_pipeline

    f2017 = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"
    f2023 = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2023_sample.csv"
    first = run_pipeline(store_path, [f2017], out_dir=tmp_path / "maps", echo=None)
    second = run_pipeline(store_path, [f2017, f2023], out_dir=tmp_path / "maps", echo=None,
                          engine="dask")  # the join on dask partitions: same code, same result
    with opened(store_path) as store:
        runs = list_runs(store)
        n_records = store.count("records")
    assert [r["run_id"] for r in runs] == [second["run_id"], first["run_id"]]
    assert first["changes"]["first_run"] is True
    assert second["changes"]["previous_run"] == first["run_id"]
    assert second["ingest"]["added"] == n_records - first["ingest"]["added"]
    assert second["ingest"]["unchanged"] == first["ingest"]["added"]
    # Only the new file's records need new lookups; the 2017 addresses come from the cache.
    assert 0 < second["geocoded_new"] <= second["ingest"]["added"]
    assert second["geocoded_from_cache"] >= 0
    row = runs[0]
    assert [i["name"] for i in row["inputs"]] == [f2017.name, f2023.name]
    assert set(row["counts"]) >= {"ingest", "geocode", "join", "score", "hotspots", "site"}
    assert row["counts"]["join"]["records"] == n_records
    assert row["parameters"]["engine"] == "dask"
    join = second["join"]
    assert join["records"] == join["joined"] + join["outside"] + join["not_geocoded"]
    with opened(store_path) as store:
        named = store.conn.execute("SELECT COUNT(*) FROM records WHERE neighborhood <> ''").fetchone()[0]
    assert named == join["joined"]
    assert row["changes"]["verdict_after"] == second["site"].get("verdict")
