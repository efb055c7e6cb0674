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
from geo_lead.geocode.cache import geocode_store
from geo_lead.geocode.geocoder import Geocoder
from geo_lead.ingest import IngestOptions, ingest_files, ingest_with
from geo_lead.spatial_join import join_store
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


@pytest.fixture(scope="module")
def geocoder() -> Geocoder:
    return Geocoder()


def _plain(path: Path, files: list[Path], geocoder: Geocoder) -> tuple[dict[str, Any], dict[str, int]]:
    with opened(path) as store:
        ingest_files(store, files)
        geo = geocode_store(store, geocoder=geocoder)
        joined = join_store(store)
    return geo, joined


def _enriched(path: Path, files: list[Path], geocoder: Geocoder) -> tuple[dict[str, Any], dict[str, int], Enricher]:
    enricher = Enricher(geocoder=geocoder)
    with opened(path) as store:
        ingest_with(store, files, IngestOptions(enrich=enricher))
        geo = enricher.merge_geocode_counts(geocode_store(store, geocoder=geocoder))
        joined = join_store(store)
    return geo, joined, enricher


def test_first_ingest_and_rerun_equal_the_stages(tmp_path: Path, geocoder: Geocoder) -> None:
    plain, rich = tmp_path / "plain.gpkg", tmp_path / "rich.gpkg"
    for files in (FIRST, LATER):
        geo_a, join_a = _plain(plain, files, geocoder)
        geo_b, join_b, enricher = _enriched(rich, files, geocoder)
        assert enricher.active  # the records were written enriched
        assert geo_b == geo_a
        assert join_b == join_a
        assert join_a["records"] == join_a["joined"] + join_a["outside"] + join_a["not_geocoded"]
        assert tables(rich) == tables(plain)
    assert geo_a["records"] > 0 and geo_a["addresses_new"] > 0 and geo_a["geocoded_from_cache"] > 0


def test_store_with_work_left_is_not_enriched(tmp_path: Path, geocoder: Geocoder) -> None:
    """A store ingested without its stages: the enricher leaves it alone, the stages do it all."""
    plain, rich = tmp_path / "plain.gpkg", tmp_path / "rich.gpkg"
    for path in (plain, rich):
        with opened(path) as store:
            ingest_files(store, FIRST[:1])
    geo_a, join_a = _plain(plain, LATER, geocoder)
    geo_b, join_b, enricher = _enriched(rich, LATER, geocoder)
    assert enricher.active is False
    assert (geo_b, join_b) == (geo_a, join_a)
    assert tables(rich) == tables(plain)
