"""One write per record (issue 19): `geo-lead run`'s enriched ingest leaves the store that
ingest, then geocode, then join leave, with the same stage counts.

Oracle: the stages as they run on a store ingested without enrichment (`geo-lead ingest` +
`geocode` + `join`), on the shipped LMPD samples, for a first ingest and for a rerun adding
files; every table is compared row by row (time-of-write columns aside), the RTree by its
entries and the meta by key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from geo_lead import settings
from geo_lead.enrich import Enricher
from geo_lead.ingest import ingest_files
from geo_lead.pipeline import stage_geocode, stage_ingest, stage_join
from geo_lead.store import opened

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FIRST = [LMPD / "crime_data_2016_drug_sample.csv", LMPD / "crime_data_2019_drug_sample.csv"]
LATER = [LMPD / "crime_data_2017_drug_sample.csv", LMPD / "crime_data_2023_sample.csv"]
#: Columns whose values are wall-clock times of the write (tests/test_crash_safety.VOLATILE
#: and the cache row's), not content.
VOLATILE = frozenset({"ingested_at", "updated_at", "replaced_at", "last_change", "declared_at", "created_at"})


def tables(path: Path) -> dict[str, Any]:
    """Every table's rows in fid order (volatile columns left out); meta as a dict; the RTree
    as its sorted entries; each table's column names and declared types."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        out: dict[str, Any] = {}
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(names):
            if table.startswith("rtree_") and not table.endswith("_geom"):
                continue  # shadow tables: the node layout depends on the order of inserts
            info = [(r[1], r[2]) for r in conn.execute(f'PRAGMA table_info("{table}")')]
            cols = [c for c, _ in info if c not in VOLATILE]
            quoted = ", ".join(f'"{c}"' for c in cols)
            rows = conn.execute(f'SELECT {quoted} FROM "{table}"').fetchall()
            if table == "meta":
                out[table] = dict(rows)
            else:
                out[table] = {"columns": sorted(info), "rows": sorted(rows, key=repr)}
        return out
    finally:
        conn.close()


def _without_times(old_json: str) -> dict[str, Any]:
    import json

    return {k: v for k, v in json.loads(old_json).items() if k not in VOLATILE}


def _quiet(_line: str) -> None:
    pass


def _plain(path: Path, files: list[Path]) -> list[dict[str, Any]]:
    """ingest, geocode and join as `geo-lead ingest`, `geocode`, `join` run them."""
    with opened(path) as store:
        return [stage_ingest(store, files, _quiet, None), stage_geocode(store, _quiet, None),
                stage_join(store, _quiet)]


def _enriched(path: Path, files: list[Path]) -> tuple[list[dict[str, Any]], Enricher]:
    """The same stages as `geo-lead run` runs them (records written enriched)."""
    enricher = Enricher()
    with opened(path) as store:
        counts = [stage_ingest(store, files, _quiet, None, enrich=enricher),
                  stage_geocode(store, _quiet, None, enricher), stage_join(store, _quiet)]
    return counts, enricher


def test_first_ingest_and_rerun_equal_the_stages(tmp_path: Path) -> None:
    plain, rich = tmp_path / "plain.gpkg", tmp_path / "rich.gpkg"
    for files in (FIRST, LATER):
        (ingest_a, geo_a, join_a) = _plain(plain, files)
        (ingest_b, geo_b, join_b), enricher = _enriched(rich, files)
        assert enricher.active  # the records were written enriched
        assert (ingest_b, geo_b, join_b) == (ingest_a, geo_a, join_a)
        assert join_a["records"] == join_a["joined"] + join_a["outside"] + join_a["not_geocoded"]
        assert tables(rich) == tables(plain)
        with opened(rich) as store:  # the geocode stage had nothing left: its counts were the tally's
            assert enricher.geocode_counts_if_done(store) is not None
    assert geo_a["records"] > 0 and geo_a["addresses_new"] > 0 and geo_a["geocoded_from_cache"] > 0


def test_store_with_work_left_is_not_enriched(tmp_path: Path) -> None:
    """A store ingested without its stages: the enricher leaves it alone, the stages do it all."""
    plain, rich = tmp_path / "plain.gpkg", tmp_path / "rich.gpkg"
    for path in (plain, rich):
        with opened(path) as store:
            ingest_files(store, FIRST[:1])
    counts_a = _plain(plain, LATER)
    counts_b, enricher = _enriched(rich, LATER)
    assert enricher.active is False
    assert counts_b == counts_a
    assert tables(rich) == tables(plain)


def test_address_change_is_left_to_the_geocode_stage(tmp_path: Path) -> None:
    """A re-download that moves stored records (new addresses) beside new records: the new ones
    are written enriched, the moved ones geocoded and joined by the stages; same store."""
    import csv

    src = FIRST[0]
    with src.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index("BLOCK_ADDRESS")
    for row in rows[1:21]:
        row[col] = "100 BLOCK W MAIN ST"
    moved = tmp_path / "crime_data_2016_redownload.csv"
    with moved.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    # moved records first: the store has work left when the first new record comes (not enriched)
    for files, enriched in (([*LATER, moved], True), ([moved, *LATER], False)):
        plain, rich = tmp_path / f"plain_{enriched}.gpkg", tmp_path / f"rich_{enriched}.gpkg"
        _plain(plain, FIRST)
        _enriched(rich, FIRST)
        counts_a = _plain(plain, files)
        counts_b, enricher = _enriched(rich, files)
        assert enricher.active is enriched
        assert counts_a[0]["updated"] == 20
        assert (counts_b[0], counts_b[2]) == (counts_a[0], counts_a[2])
        # the same cache rows, but the moved records' new keys were added after the new
        # records' (fid order); the history's old rows carry their first ingest's time
        ta, tb = tables(plain), tables(rich)
        for t in (ta, tb):
            t["geocode_cache"]["rows"] = sorted(r[1:] for r in t["geocode_cache"]["rows"])
            t["record_history"]["rows"] = [(*r[:-1], _without_times(r[-1])) for r in t["record_history"]["rows"]]
        assert tb == ta
        # (a key both geocoded at ingest and asked again by the stage counts as new once per call)
        for key in ("records", "geocoded_new", "geocoded_from_cache", "by_match_type", "records_written"):
            assert counts_b[1][key] == counts_a[1][key], key


def equal_both_ways(work: Path, rows: int, rerun_rows: int) -> None:
    """Synthetic LMPD rows (`benchmarks/bench_scale.make_synthetic`, jittered hundred-blocks:
    many new addresses): a first run of `rows` and a rerun adding `rerun_rows`, both ways."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_scale import make_synthetic

    full = make_synthetic(work / "full", rows, settings.RANDOM_SEED, tag="F")
    more = make_synthetic(work / "more", rerun_rows, settings.RANDOM_SEED + 1, tag="I")
    plain, rich = work / "plain.gpkg", work / "rich.gpkg"
    for files in (full, more):
        counts_a = _plain(plain, files)
        counts_b, enricher = _enriched(rich, files)
        assert enricher.active
        assert counts_b == counts_a
        assert tables(rich) == tables(plain)


@pytest.mark.slow
def test_synthetic_run_and_rerun_equal_the_stages(tmp_path: Path) -> None:
    equal_both_ways(tmp_path, 20_000, 2_000)


@pytest.mark.parametrize("chunk_rows", [100_000, 700])
def test_new_records_of_several_files_are_enriched_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              chunk_rows: int) -> None:
    """The new records of successive files go to the enricher together (`store.PendingRecords`),
    at most `chunk_rows` at a time; a file repeating records still kept (not yet written) sees
    them stored: the same store and counts as the stages."""
    import csv

    import geo_lead.enrich as enrich_module

    with LATER[0].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    repeat = tmp_path / "crime_data_2017_again.csv"  # 40 records of LATER[0], unchanged
    with repeat.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows[:41])
    files = [*FIRST, LATER[0], repeat, LATER[1]]
    calls: list[int] = []
    real_call = Enricher.__call__

    def counted(self: Enricher, store: Any, records: Any) -> Any:
        calls.append(len(records))
        return real_call(self, store, records)

    monkeypatch.setattr(Enricher, "__call__", counted)
    monkeypatch.setattr(enrich_module, "CHUNK_ROWS", chunk_rows)
    plain, rich = tmp_path / "plain.gpkg", tmp_path / "rich.gpkg"
    counts_a = _plain(plain, files)
    counts_b, enricher = _enriched(rich, files)
    assert enricher.active
    assert counts_b == counts_a
    assert counts_a[0]["files"][3]["unchanged"] == 40 and counts_a[0]["files"][3]["added"] == 0
    assert tables(rich) == tables(plain)
    assert sum(calls) == counts_a[0]["added"]
    assert max(calls) <= chunk_rows
    if chunk_rows > counts_a[0]["added"]:
        # one batch for the first three files, written when the repeated records come; one for the last
        assert len(calls) == 2
