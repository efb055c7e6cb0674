"""The join/count stage: dask partitions give exactly the pandas counts, on a real store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.dask_engine import NOT_GEOCODED, OUTSIDE, join_and_count, store_points
from geo_lead.export import export
from geo_lead.ingest import ingest_files
from geo_lead.store import FLAG_COLUMNS, opened

ROOT = Path(__file__).resolve().parent.parent
REAL = settings.SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv"
UNGEOCODED = 97


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 2017 sample; its records get seeded points around the First Division (no
    geocoder on this branch), some left without coordinates, one on the RUSSELL/PORTLAND edge."""
    path = tmp_path_factory.mktemp("dask") / "lead.gpkg"
    rng = np.random.default_rng(settings.RANDOM_SEED)
    nb = load_neighborhoods()
    shared = nb[nb["NH_NAME"] == "RUSSELL"].geometry.iloc[0].intersection(
        nb[nb["NH_NAME"] == "PORTLAND"].geometry.iloc[0])
    with opened(path) as store:
        ingest_files(store, [REAL])
        ids = store.read_records(["record_id"])["record_id"]
        lon = rng.uniform(-85.84, -85.70, len(ids))
        lat = rng.uniform(38.20, 38.29, len(ids))
        lon[:UNGEOCODED] = np.nan
        if not shared.is_empty:
            edge = shapely.get_coordinates(shared)[0]
            lon[UNGEOCODED], lat[UNGEOCODED] = edge
        with store.write():
            store.update_records(pd.DataFrame({"record_id": ids, "lon": lon, "lat": lat}))
    return path


def _oracle(points: pd.DataFrame) -> pd.Series:
    """Counts per unit by a plain shapely loop: first unit (layer order) covering the point."""
    nb = load_neighborhoods()
    to_ft = Transformer.from_crs(settings.CRS_STORE, settings.CRS_PROJECTED, always_xy=True)
    polys = shapely.transform(np.asarray(nb.geometry.values), lambda xy: np.column_stack(
        to_ft.transform(xy[:, 0], xy[:, 1])))
    names = []
    for lon, lat in zip(points["lon"], points["lat"], strict=True):
        if np.isnan(lon) or np.isnan(lat):
            names.append(NOT_GEOCODED)
            continue
        pt = shapely.Point(*to_ft.transform(lon, lat))
        hit = next((n for n, poly in zip(nb["NH_NAME"], polys, strict=True) if poly.intersects(pt)), OUTSIDE)
        names.append(hit)
    return pd.Series(names).value_counts()


def test_pandas_counts_match_shapely_oracle(real_store: Path) -> None:
    with opened(real_store) as store:
        points = store_points(store)
    result = join_and_count(points, load_neighborhoods(), engine="pandas")
    oracle = _oracle(points)
    got = result["counts"].set_index("neighborhood")["records"]
    assert result["records"] == len(points)
    assert result["not_geocoded"] == oracle[NOT_GEOCODED] == UNGEOCODED
    assert result["outside"] == oracle.get(OUTSIDE, 0)
    assert got[got > 0].sort_index().to_dict() == oracle.drop([NOT_GEOCODED, OUTSIDE], errors="ignore").sort_index().to_dict()
    assert result["records"] == result["joined"] + result["outside"] + result["not_geocoded"]
    counts = result["counts"]
    assert (counts[list(FLAG_COLUMNS)].le(counts["records"], axis=0)).all().all()


@pytest.mark.parametrize("npartitions", [1, 3, 7])
def test_dask_partitions_equal_pandas(real_store: Path, npartitions: int) -> None:
    with opened(real_store) as store:
        points = store_points(store)
    nb = load_neighborhoods()
    a = join_and_count(points, nb, engine="pandas")
    b = join_and_count(points, nb, engine="dask", npartitions=npartitions)
    pd.testing.assert_frame_equal(a["counts"], b["counts"])
    assert {k: a[k] for k in ("records", "joined", "outside", "not_geocoded")} == \
           {k: b[k] for k in ("records", "joined", "outside", "not_geocoded")}


def test_dask_on_month_partitioned_geoparquet_via_scheduler_address(real_store: Path, tmp_path: Path) -> None:
    """The scale-out path: a month-partitioned export, computed through a distributed
    scheduler reached by its tcp:// address (as a multi-node cluster would be)."""
    from distributed import LocalCluster

    out = tmp_path / "by_month"
    with opened(real_store) as store:
        export(store, "records", "geoparquet", out, partition="month")
        points = store_points(store)
    nb = load_neighborhoods()
    expected = join_and_count(points, nb, engine="pandas")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        got = join_and_count(out, nb, engine="dask", scheduler=cluster.scheduler_address)
    assert cluster.scheduler_address.startswith("tcp://")
    pd.testing.assert_frame_equal(expected["counts"], got["counts"])
    assert got["records"] == expected["records"]


def test_join_count_command(real_store: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "geo_lead", "join-count", "--engine", "dask",
                           "--partitions", "4", "--store", str(real_store), "--json"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    with opened(real_store) as store:
        expected = join_and_count(store_points(store), load_neighborhoods())
    assert out["engine"] == "dask" and out["joined"] == expected["joined"]
    assert {r["neighborhood"]: r["records"] for r in out["counts"]} == \
           dict(zip(expected["counts"]["neighborhood"], expected["counts"]["records"], strict=True))


def test_join_store_dask_writes_what_pandas_writes(real_store: Path, tmp_path: Path) -> None:
    """The join stage with --engine dask leaves the records exactly as the pandas stage does."""
    import shutil

    from geo_lead.dask_engine import join_store

    copies = {e: tmp_path / f"{e}.gpkg" for e in ("pandas", "dask")}
    counts, written = {}, {}
    for engine, path in copies.items():
        shutil.copyfile(real_store, path)
        with opened(path) as store:
            counts[engine] = join_store(store, engine=engine, npartitions=5)
            written[engine] = store.read_records(["record_id", "neighborhood"]).sort_values("record_id")
    assert counts["pandas"] == counts["dask"]
    assert counts["dask"]["not_geocoded"] == UNGEOCODED
    pd.testing.assert_frame_equal(written["pandas"].reset_index(drop=True), written["dask"].reset_index(drop=True))
    assert (written["dask"]["neighborhood"] != "").sum() == counts["dask"]["joined"]


def test_dask_join_store_honours_tolerance_and_beats_and_leaves_the_store_current(
        real_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask and pandas write the same neighborhood and boundary_units (beat settling and a
    non-default tolerance included) and the same join meta: a pandas join after a dask one
    joins nothing."""
    import shutil

    from geo_lead import spatial_join
    from geo_lead.dask_engine import join_store

    written = {}
    for engine in ("pandas", "dask"):
        path = tmp_path / f"{engine}.gpkg"
        shutil.copyfile(real_store, path)
        with opened(path) as store:
            join_store(store, engine=engine, npartitions=3, tolerance_ft=200.0)
            written[engine] = store.read_records(["record_id", "neighborhood", "boundary_units"]) \
                .sort_values("record_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(written["pandas"], written["dask"])
    bu = written["dask"]["boundary_units"].fillna("")
    assert bu.str.contains(";").any()  # some records are shared at 200 ft ...
    assert ((bu != "") & ~bu.str.contains(";")).any()  # ... and some settled by their beat

    def no_join(*args: object, **kwargs: object) -> object:
        raise AssertionError("the store was current: nothing should be joined")

    monkeypatch.setattr(spatial_join, "join_records", no_join)
    with opened(tmp_path / "dask.gpkg") as store:
        counts = spatial_join.join_store(store, tolerance_ft=200.0)
        assert store.read_records(["record_id", "neighborhood", "boundary_units"]).sort_values("record_id") \
            .reset_index(drop=True).equals(written["dask"])
    assert counts["records"] == len(written["dask"])
    assert counts["joined"] == int((written["dask"]["neighborhood"].fillna("") != "").sum())
