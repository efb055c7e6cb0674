"""No hidden global state (issue 18): csv's field size limit is scoped to the reader, the ingest
crash-test hook is a callback the tests set (no environment variable, no sleep in production
code), settings a test changes are read at call time, and hotspots reads the records through the
one reader the project has (no ImportError fallback)."""

from __future__ import annotations

import csv
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_lead import ingest, settings
from geo_lead.sources import iter_chunks
from geo_lead.store import opened

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
SAMPLE = LMPD / "crime_data_2023_sample.csv"


@pytest.fixture
def callers_limit() -> Iterator[int]:
    before = csv.field_size_limit()
    mine = 54_321
    csv.field_size_limit(mine)
    try:
        yield mine
    finally:
        csv.field_size_limit(before)


def test_the_readers_field_size_limit_never_leaks(callers_limit: int) -> None:
    assert callers_limit != settings.MAX_FIELD_CHARS
    chunks = iter_chunks(SAMPLE, chunk_rows=100)
    first = next(chunks)
    assert len(first.records) > 0
    assert csv.field_size_limit() == callers_limit  # between chunks: the caller's limit
    rest = list(chunks)
    assert rest and csv.field_size_limit() == callers_limit
    chunks = iter_chunks(SAMPLE, chunk_rows=100)
    next(chunks)
    chunks.close()  # abandoned half-way
    assert csv.field_size_limit() == callers_limit


def test_a_field_over_the_limit_is_still_a_rejected_row(tmp_path: Path, callers_limit: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "MAX_FIELD_CHARS", 1000)
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    header, row = lines[0], lines[1]
    long_row = row.replace(",", ',"' + "x" * 5000 + '",', 1)  # a quoted field of 5,000 characters
    path = tmp_path / "long_field.csv"
    path.write_text("\n".join([header, long_row, row]) + "\n", encoding="utf-8")
    chunks = list(iter_chunks(path))
    rejects = [r for c in chunks for r in c.rejects.to_dict("records")]
    assert any("field larger than field limit" in str(r.get("reason")) for r in rejects), rejects
    assert sum(len(c.records) for c in chunks) == 1
    assert csv.field_size_limit() == callers_limit


def test_ingest_calls_the_checkpoint_hook_at_each_named_point(store_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert ingest.checkpoint_hook is None  # production: nothing is called
    seen: list[str] = []
    monkeypatch.setattr(ingest, "checkpoint_hook", seen.append)
    with opened(store_path) as store:
        ingest.ingest_files(store, [SAMPLE])
    # a plain ingest passes every point but the enriched ingest's own (`geo-lead run`'s, below)
    assert [p for p in dict.fromkeys(seen)] == [p for p in ingest.CRASH_POINTS if p not in ingest.ENRICH_CRASH_POINTS]
    assert seen[0] == "before-write" and seen[-1] == "after-commit"
    from geo_lead.enrich import Enricher

    seen.clear()
    with opened(store_path.with_name("enriched.gpkg")) as store:
        ingest.ingest_with(store, [SAMPLE], ingest.IngestOptions(enrich=Enricher()))
    assert [p for p in dict.fromkeys(seen)] == list(ingest.CRASH_POINTS)


def test_no_environment_variable_or_sleep_in_ingest() -> None:
    source = inspect.getsource(ingest)
    assert "os.environ" not in source and "sleep" not in source
    assert not hasattr(settings, "PAUSE_AT_ENV")


def test_hotspots_has_no_import_fallback_for_the_projects_own_modules() -> None:
    from geo_lead import hotspots

    assert "except ImportError" not in inspect.getsource(hotspots)


def test_first_division_file_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A test (or a caller) that points `settings.FIRST_DIVISION_FILE` elsewhere moves every reader
    of it, not only those that happened to read it at call time."""
    from geo_lead.boundaries import load_first_division
    from geo_lead.errors import GeoLeadError

    missing = tmp_path / "no_such_first_division.geojson"
    monkeypatch.setattr(settings, "FIRST_DIVISION_FILE", missing)
    with pytest.raises(GeoLeadError, match="no_such_first_division"):
        load_first_division()
    from geo_lead import division_records

    default = inspect.signature(division_records.first_division_for_store).parameters["path"].default
    assert default is None


def test_child_timeouts_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import parallel

    monkeypatch.setattr(settings, "CHILD_TIMEOUT_S", 7.5)
    assert parallel._timeout_s() == 7.5
    monkeypatch.setattr(settings, "CHILD_IDLE_S", 2.5)
    assert parallel._idle_s() == 2.5
