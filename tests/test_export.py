"""Export of records and scores: every record out, no person fields, geometry from lon/lat."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.dataset as pads
import pytest
from shapely.geometry import box

from geo_lead import settings
from geo_lead.export import RECORD_EXPORT_COLUMNS, ExportError, export
from geo_lead.ingest import ingest_files
from geo_lead.store import FLAG_COLUMNS, opened

ROOT = Path(__file__).resolve().parent.parent
REAL_FILES = [settings.SHIPPED_DATA_DIR / "lmpd" / n for n in
              ("crime_data_2017_drug_sample.csv", "crime_data_2023_sample.csv")]
PERSON = ("sex", "race", "ethnicity", "age")

CITATIONS = """CITATION_CONTROL_NUMBER,CITATION_TYPE_DESC,CITATION_DATE,CITATION_LOCATION,DIVISION,BEAT,PERSONS_SEX,PERSONS_RACE,PERSONS_AGE,VIOLATION_CODE,STATUTE,CHARGE_DESC,UCR_CODE,UCR_DESC
C1001,CITATION,03/02/2018,2700 BLOCK W MADISON ST,1,112,M,W,34,TEST1,218A.1415,POSS CONT SUB 1ST DEG 1ST OFF (HEROIN),3540,NARCOTICS
C1002,ARREST,04/05/2018,N 26TH ST / BANK ST,1,111,F,B,29,TEST2,218A.500,DRUG PARAPHERNALIA - BUY/POSSESS,3590,NARCOTICS
"""


@pytest.fixture(scope="module")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real shipped rows + two citation rows with person fields; a few records geocoded."""
    tmp_path = tmp_path_factory.mktemp("export_store")
    store_path = tmp_path / "lead.gpkg"
    cit = tmp_path / "citations.csv"
    cit.write_text(CITATIONS, encoding="utf-8")
    with opened(store_path) as store:
        ingest_files(store, [*REAL_FILES, cit])
        ids = store.read_records(["record_id"])["record_id"].head(3).tolist()
        with store.write():
            store.update_records(pd.DataFrame({
                "record_id": ids, "lon": [-85.80, -85.79, -85.78], "lat": [38.25, 38.26, 38.27],
                "match_type": ["block", "intersection", "block"],
                "neighborhood": ["RUSSELL", "PORTLAND", ""]}))
        assert store.count("persons") == 2
    return store_path


@pytest.fixture
def filled_store(built_store: Path, tmp_path: Path) -> Path:
    """A private copy of the module's store (tests must not see each other's writes)."""
    copy = tmp_path / "lead.gpkg"
    shutil.copyfile(built_store, copy)
    return copy


def _store_count(path: Path) -> int:
    with opened(path) as store:
        return store.count("records")


@pytest.mark.parametrize("fmt", ["gpkg", "geoparquet", "csv"])
def test_records_export_every_record_no_person_fields(filled_store: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"records.{fmt}"
    with opened(filled_store) as store:
        result = export(store, "records", fmt, out)
    n = _store_count(filled_store)
    if fmt == "csv":
        with out.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        columns = list(rows[0])
        assert len(rows) == n
        placed = [r for r in rows if r["lon"]]
        assert {(r["lon"], r["lat"]) for r in placed} == {("-85.8", "38.25"), ("-85.79", "38.26"), ("-85.78", "38.27")}
    else:
        gdf = gpd.read_parquet(out) if fmt == "geoparquet" else gpd.read_file(out)
        columns = list(gdf.columns)
        assert len(gdf) == n and gdf.crs.to_epsg() == 4326
        placed = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
        assert len(placed) == 3
        assert sorted(zip(placed.geometry.x.round(6), placed.geometry.y.round(6), strict=True)) == [
            (-85.8, 38.25), (-85.79, 38.26), (-85.78, 38.27)]
        assert set(placed["neighborhood"]) == {"RUSSELL", "PORTLAND", ""}
    assert result["rows"] == n and result["geocoded"] == 3
    assert columns[:len(RECORD_EXPORT_COLUMNS)] == list(RECORD_EXPORT_COLUMNS)
    assert not set(PERSON) & {c.lower() for c in columns}


def test_person_values_never_leave_the_store(filled_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "records.csv"
    with opened(filled_store) as store:
        export(store, "records", "csv", out)
    frame = pd.read_csv(out, dtype=str).fillna("")
    cit = frame[frame["source"] == "citations"]
    assert len(cit) == 2
    assert set(cit["incident_number"]) == {"C1001", "C1002"}
    # The ages (34, 29) appear nowhere in the citation rows.
    assert not cit.apply(lambda col: col.isin(["34", "29"])).any().any()


def test_flags_exported_as_integers(filled_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.geoparquet"
    with opened(filled_store) as store:
        export(store, "records", "geoparquet", out)
        stored = store.read_records(["record_id", *FLAG_COLUMNS])
    gdf = gpd.read_parquet(out).set_index("record_id")
    stored = stored.set_index("record_id")
    for flag in FLAG_COLUMNS:
        assert (gdf.loc[stored.index, flag].astype(int) == stored[flag].astype(int)).all(), flag
    heroin = gdf[gdf["incident_number"] == "C1001"].iloc[0]
    assert heroin["opiate"] == 1 and heroin["possession"] == 1


def test_geoparquet_partitioned_by_month(filled_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "records_by_month"
    with opened(filled_store) as store:
        result = export(store, "records", "geoparquet", out, partition="month")
        months = {r[0] for r in store.conn.execute("SELECT DISTINCT substr(occurred_at, 1, 7) FROM records")}
    parts = sorted(p.name for p in out.iterdir())
    assert parts == sorted(f"month={m}" for m in months)
    assert result["partitions"] == len(months)
    table = pads.dataset(out, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == _store_count(filled_store)
    one = gpd.read_parquet(next(out.glob("month=*/part-0.parquet")))
    assert one.crs.to_epsg() == 4326  # each part is a complete GeoParquet file
    frame = table.to_pandas()
    assert (frame["occurred_at"].str.slice(0, 7) == frame["month"].astype(str)).all()


def test_scores_export(store_path: Path, tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"neighborhood": ["RUSSELL", "PORTLAND"], "rank": [1, 2], "score": [0.9, 0.4]},
                           geometry=[box(-85.80, 38.25, -85.79, 38.26), box(-85.82, 38.26, -85.80, 38.28)],
                           crs=settings.CRS_STORE)
    with opened(store_path) as store:
        store.replace_features("scores", gdf, "POLYGON")
        export(store, "scores", "gpkg", tmp_path / "scores.gpkg")
        export(store, "scores", "csv", tmp_path / "scores.csv")
    back = gpd.read_file(tmp_path / "scores.gpkg")
    assert list(back["neighborhood"]) == ["RUSSELL", "PORTLAND"]
    assert [tuple(round(v, 6) for v in g.bounds) for g in back.geometry] == [
        (-85.80, 38.25, -85.79, 38.26), (-85.82, 38.26, -85.80, 38.28)]
    text = pd.read_csv(tmp_path / "scores.csv")
    assert text["geometry_wkt"].str.startswith("POLYGON").all() and list(text["rank"]) == [1, 2]


def test_export_errors(filled_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    out.write_text("keep me")
    with opened(filled_store) as store:
        with pytest.raises(ExportError, match="already exists"):
            export(store, "records", "csv", out)
        with pytest.raises(ExportError, match="partition month applies"):
            export(store, "records", "csv", tmp_path / "x.csv", partition="month")
        with pytest.raises(ExportError, match="no `scores` layer"):
            export(store, "scores", "gpkg", tmp_path / "s.gpkg")
        with pytest.raises(ExportError, match="not a geo_lead partitioned export"):
            export(store, "records", "geoparquet", tmp_path, partition="month", overwrite=True)
    assert out.read_text() == "keep me"
    assert not list(tmp_path.glob(".*tmp-*"))  # no temporary leftovers


def test_export_command(filled_store: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "geo_lead", "export", "--what", "records", "--format", "gpkg",
           "--out", str(tmp_path / "r.gpkg"), "--store", str(filled_store), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == _store_count(filled_store)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("fmt", ["gpkg", "geoparquet", "csv"])
def test_streamed_pieces_equal_one_piece(filled_store: Path, tmp_path: Path, fmt: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing in 700-row pieces (as a 1M-record store is written) changes nothing."""
    import geo_lead.export as export_mod

    def read(path: Path) -> pd.DataFrame:
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        gdf = gpd.read_parquet(path) if fmt == "geoparquet" else gpd.read_file(path)
        return pd.DataFrame(gdf.assign(wkt=gdf.geometry.to_wkt()).drop(columns=gdf.geometry.name))

    with opened(filled_store) as store:
        export(store, "records", fmt, tmp_path / f"whole.{fmt}")
        monkeypatch.setattr(export_mod, "EXPORT_CHUNK_ROWS", 700)
        export(store, "records", fmt, tmp_path / f"pieces.{fmt}")
        n = store.count("records")
    whole, pieces = read(tmp_path / f"whole.{fmt}"), read(tmp_path / f"pieces.{fmt}")
    assert n > 3 * 700 and len(pieces) == n
    pd.testing.assert_frame_equal(whole, pieces)
