"""The analysis stages read only the flagged records; what they need of the others is counted
in the store (issue 19). Every answer must equal the one computed from a read of every record.

The store (two shipped LMPD files, geocoded and joined) is altered so that the unflagged
records decide answers a flagged-only computation would get wrong if it dropped them:
PORTLAND's and RUSSELL's unflagged records say ``2ND DIVISION`` (the records' First Division
loses them), 150 unflagged records occurred in 2015 (a year of data only by their number), and
40 unflagged unmatched records share their own reason (the report's tallies). The oracles
compute from a full read with pandas (or run the old full-read code path), never from the
store's aggregates.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo_lead import settings
from geo_lead.analysis_reads import (
    count_left_out,
    flagged_read_is_exact,
    left_out,
    read_analysis_records,
)
from geo_lead.boundaries import first_division_members, load_neighborhoods
from geo_lead.store import FLAG_COLUMNS, Store, open_store

EXTRA_2015 = 150
FLAGGED_2015 = 3


def _add_2015_records(store: Store) -> None:
    """`EXTRA_2015` unflagged + `FLAGGED_2015` flagged copies of placed 2016 records, dated 2015."""
    every = store.read_records([c for c in store.columns("records") if c not in ("fid", "geom")])
    placed = every[every["lon"].notna() & every["occurred_at"].str.startswith("2016-")]
    flagged = placed[placed["lead_eligible"]].head(FLAGGED_2015)
    other = placed[~placed["lead_eligible"]].head(EXTRA_2015)
    rows = pd.concat([flagged, other], ignore_index=True)
    rows["record_id"] = [f"y2015-{i}" for i in range(len(rows))]
    rows["content_hash"] = [f"h2015-{i}" for i in range(len(rows))]
    rows["occurred_at"] = "2015-06-15T10:00:00"
    rows["reported_at"] = "2015-06-20T10:00:00"
    canonical = rows.drop(columns=[c for c in ("lon", "lat", "match_type", "score", "matched_address",
                                               "geocode_reason", "beat_check", "neighborhood", "boundary_units")
                                   if c in rows])
    for flag in FLAG_COLUMNS:
        canonical[flag] = canonical[flag].astype(int)
    with store.write():
        store.upsert_records(canonical, "2026-01-01T00:00:00Z")
        store.update_records(rows[["record_id", "lon", "lat", "match_type", "score", "matched_address",
                                   "geocode_reason"]])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from geo_lead.geocode import geocode_store
    from geo_lead.ingest import ingest_files
    from geo_lead.spatial_join import join_store

    path = tmp_path_factory.mktemp("analysis_reads") / "s.gpkg"
    s = open_store(path)
    files = [f for f in settings.SHIPPED_LMPD_FILES if "2016" in f.name or "2017" in f.name]
    ingest_files(s, files)
    geocode_store(s)
    _add_2015_records(s)
    join_store(s)
    recs = s.read_records(["record_id", "neighborhood", "lead_eligible", "match_type"])
    moved = recs[recs["neighborhood"].isin(["PORTLAND", "RUSSELL"]) & ~recs["lead_eligible"]]
    odd = recs[(recs["match_type"] == "unmatched") & ~recs["lead_eligible"]].head(40)
    with s.write():
        s.update_records(pd.DataFrame({"record_id": moved["record_id"], "division": "2ND DIVISION"}))
        s.update_records(pd.DataFrame({"record_id": odd["record_id"], "geocode_reason": "only-an-unflagged-reason"}))
    yield s
    s.close()


def _full(store: Store, columns: list[str]) -> pd.DataFrame:
    return store.read_records([c for c in columns if c in store.columns("records")])


def test_the_store_makes_unflagged_records_matter(store: Store) -> None:
    full = _full(store, ["neighborhood", "division", "lead_eligible", "occurred_at", "geocode_reason"])
    flag = full["lead_eligible"]
    assert 0 < int(flag.sum()) < len(full)
    by_all = first_division_members(load_neighborhoods(), full).set_index("NH_NAME")
    by_flagged = first_division_members(load_neighborhoods(), full[flag]).set_index("NH_NAME")
    assert by_all.loc["PORTLAND", "division"] == "2ND DIVISION"
    assert by_flagged.loc["PORTLAND", "division"] == "1ST DIVISION"
    years = pd.to_datetime(full["occurred_at"], format="ISO8601").dt.year
    assert int((years == 2015).sum()) >= 100 > int((years[flag] == 2015).sum()) > 0
    assert "only-an-unflagged-reason" in set(full.loc[~flag, "geocode_reason"])


def test_flagged_read_holds_exactly_the_flagged_records(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = ["record_id", "lead_eligible", "lon", "lat", "occurred_at"]
    full = _full(store, cols)
    assert flagged_read_is_exact(store, "lead_eligible")
    got = read_analysis_records(store, cols, "lead_eligible")
    want = full[full["lead_eligible"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert left_out(store, got) == int((~full["lead_eligible"]).sum())
    # no First Division file: the study area comes from every record's division -> full read
    monkeypatch.setattr(settings, "FIRST_DIVISION_FILE", Path("/nonexistent/first_division.geojson"))
    assert not flagged_read_is_exact(store, "lead_eligible")
    assert len(read_analysis_records(store, cols, "lead_eligible")) == len(full)


def test_count_left_out_keeps_the_accounting_equation() -> None:
    result = {"indicator": "x", "records": {"records_in": 10, "not_flagged": 0, "not_geocoded": 2, "kept": 8}}
    out = count_left_out(result, 5)
    assert out["records"] == {"records_in": 15, "not_flagged": 5, "not_geocoded": 2, "kept": 8}
    assert list(out) == list(result) and result["records"]["records_in"] == 10
    assert count_left_out(result, 0) is result
    with pytest.raises(ValueError):
        count_left_out(result, -1)


def test_score_equals_the_full_read(store: Store) -> None:
    from geo_lead.scoring import SCORE_RECORD_COLUMNS, score_store

    nh = load_neighborhoods()
    pop = pd.Series(np.full(len(nh), 1000.0))
    own = score_store(store, neighborhoods=nh, population=pop, n_boot=40)  # reads the flagged records
    full = score_store(store, neighborhoods=nh, population=pop, n_boot=40,
                       records=_full(store, [*SCORE_RECORD_COLUMNS, "lead_eligible", "division"]))
    pd.testing.assert_frame_equal(pd.DataFrame(own.drop(columns="geometry")),
                                  pd.DataFrame(full.drop(columns="geometry")), check_exact=True)
    assert own.attrs == full.attrs
    flagged = _full(store, ["lead_eligible", "neighborhood"])
    assert own.attrs["records_in_window"] == int(flagged["lead_eligible"].sum())


def test_site_and_hotspots_equal_the_full_read(store: Store) -> None:
    from geo_lead.frames import load_frames
    from geo_lead.hotspots import compute_hotspots
    from geo_lead.pipeline import analysis_records
    from geo_lead.siting import compute_site
    from geo_lead.zones_milp import stored_queen_adjacency

    nh = load_neighborhoods()
    shared = analysis_records(store)
    n_left = left_out(store, shared)
    full = _full(store, ["lead_eligible", "lon", "lat"])
    assert len(shared) == int(full["lead_eligible"].sum()) and n_left == len(full) - len(shared)

    _layer, site = compute_site(str(store.path), records=shared, adjacency=stored_queen_adjacency(store, nh),
                                sampling=load_frames(store), replicates=40)
    _layer_full, site_full = compute_site(store, replicates=40)  # every record read, as before
    assert count_left_out(site, n_left) == site_full
    assert site_full["records"]["records_in"] == len(full)
    assert site_full["records"]["not_flagged"] == int((~full["lead_eligible"]).sum())

    layers, hot = compute_hotspots(store, records=shared, permutations=99)
    layers_full, hot_full = compute_hotspots(store, permutations=99)
    assert count_left_out(hot, n_left) == hot_full
    for name, layer in layers.items():
        pd.testing.assert_frame_equal(pd.DataFrame(layer), pd.DataFrame(layers_full[name]), check_exact=True)


def test_report_tallies_equal_the_full_frame(store: Store) -> None:
    from geo_lead.report import collect_report_data
    from geo_lead.report_tallies import TALLY_COLUMNS, tallies_of_frame, tallies_of_store

    full = _full(store, list(TALLY_COLUMNS))
    got, want = tallies_of_store(store), tallies_of_frame(full)
    assert got.total == want.total == len(full)
    assert got.flags == want.flags == {f: int(full[f].sum()) for f in ("opiate", "lead_eligible")}
    pd.testing.assert_frame_equal(got.sources, want.sources)
    pd.testing.assert_frame_equal(got.match_rates, want.match_rates)
    assert got.match_rates.set_index("match_type")["records"].sum() == len(full)
    pd.testing.assert_frame_equal(got.unmatched_reasons, want.unmatched_reasons)
    assert "only-an-unflagged-reason" in set(got.unmatched_reasons["reason"])
    # the report's own data: its tallies, and the scores' indicator records for the figure
    data = collect_report_data(store)
    assert data["tallies"].total == len(full)
    if data["scores"] is not None and len(data["scores"]):
        assert len(data["records"]) == int(full[str(data["scores"]["indicator"].iloc[0])].sum())


def test_report_sources_with_dates_sql_cannot_read(tmp_path: Path) -> None:
    """Dates not in ingest's ISO format: the per-file range is parsed in pandas, as before."""
    from geo_lead.report_tallies import tallies_of_frame, tallies_of_store
    from geo_lead.sources import RECORD_COLUMNS

    rows = []
    for i, when in enumerate(["2017-05-01T10:00:00", "2017-05-03", "2016-02-30T00:00:00", "", None]):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at=when, source_line=i + 2, source_file="x.csv" if i < 3 else None,
                   content_hash=f"h{i}", source="crime-pre2023")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["lead_eligible"] = [1, 0, 0, 1, 0]
    s = open_store(tmp_path / "odd.gpkg")
    try:
        with s.write():
            s.upsert_records(frame, "2026-01-01T00:00:00Z")
        assert s.odd_record_dates() == 2  # "2017-05-03" (no time) and the 30th of February (no date)
        full = _full(s, ["source", "source_file", "occurred_at", "match_type", "lead_eligible"])
        assert "match_type" not in full  # never geocoded: every record "not geocoded yet"
        got, want = tallies_of_store(s), tallies_of_frame(full)
        pd.testing.assert_frame_equal(got.sources, want.sources)
        pd.testing.assert_frame_equal(got.match_rates, want.match_rates)
        assert got.flags == want.flags == {"lead_eligible": 2}
    finally:
        s.close()


def test_derived_first_division_and_years_count_every_record(store: Store) -> None:
    from geo_lead.by_year import data_years, store_data_years
    from geo_lead.division_records import derive_first_division

    nh = load_neighborhoods()
    full = _full(store, ["neighborhood", "division", "occurred_at"])
    full["neighborhood"] = full["neighborhood"].fillna("")
    _fd, members = derive_first_division(store, nh)  # counted in the store
    pd.testing.assert_frame_equal(members, first_division_members(nh, full))
    assert not bool(members.set_index("NH_NAME").loc["PORTLAND", "member"])
    assert store_data_years(store) == data_years(full) == [2015, 2016, 2017]


def test_by_year_equals_the_full_read(store: Store) -> None:
    from geo_lead.by_year import _read, by_year_store
    from geo_lead.spatial_join import records_gdf

    params = {"site_params": {"replicates": 20}, "score_params": {"n_boot": 20}}
    own = by_year_store(store, **params)
    assert len(_read(store, "lead_eligible")) < store.count("records")  # it read the flagged records
    cols = ["occurred_at", "reported_at", "source", "source_file", "neighborhood", "boundary_units",
            "incident_number", "lead_eligible", "division"]
    full = by_year_store(store, records=records_gdf(store, cols), **params)  # every record, as before
    assert own.to_dict() == full.to_dict()
    assert own.years == [2015, 2016, 2017]


def test_evaluation_equals_the_full_read(store: Store) -> None:
    from geo_lead.evaluation import (
        EVALUATION_COLUMNS,
        EvaluationParams,
        evaluate_store,
        weighted_median,
    )
    from geo_lead.spatial_join import records_gdf

    params = EvaluationParams(pilot_start="2016-09-01", replicates=50, min_months=2)
    comparison = ["SHAWNEE", "CHICKASAW"]
    own = evaluate_store(store, params, comparison=comparison)  # the flagged records + store counts
    full = evaluate_store(store, params, comparison=comparison,
                          records=records_gdf(store, [*EVALUATION_COLUMNS, "lead_eligible"]))
    assert own.to_dict() == full.to_dict()
    every = _full(store, ["lead_eligible"])
    assert own.accounting["records_in"] == len(every)
    assert own.accounting["not_flagged"] == int((~every["lead_eligible"]).sum())
    values = np.array([4.0, 1.0, 2.5, 7.0])
    for counts in ([1, 1, 1, 1], [3, 1, 2, 1], [0, 2, 2, 0], [5, 1, 1, 1]):
        assert weighted_median(values, np.array(counts)) == float(pd.Series(np.repeat(values, counts)).median())


def test_iso_seconds_agree_with_pandas() -> None:
    """A value `iso_seconds` calls a date is the same second to pandas; any other non-empty value
    is odd (the callers then read and parse the dates in pandas)."""
    import pyarrow as pa

    from geo_lead.store import iso_seconds

    values = ["2016-01-04T21:13:00", "2016-02-29T00:00:00", "2017-02-29T00:00:00", "2016-13-01T00:00:00",
              "2016-01-01T24:00:00", "1677-01-01T00:00:00", "2262-05-01T00:00:00", "2016-01-04 21:13:00",
              "", None, " 2016-01-04T21:13:00", "2016-01-04T21:13:00Z", "2016-01-04"]
    secs, odd = iso_seconds(pa.chunked_array([values], type=pa.string()))
    # 29 Feb 2017, month 13 and hour 24 are no dates; years outside datetime64[ns] are (pandas reads them)
    assert [bool(v) for v in np.isfinite(secs)] == [True, True, False, False, False, True, True] + [False] * 6
    assert [bool(v) for v in odd] == [False, False, True, True, True, False, False, True, False, False, True, True,
                                      True]
    for value, sec in zip(values, secs, strict=True):
        if np.isfinite(sec):
            assert pd.Timestamp(sec, unit="s") == pd.to_datetime(value, format="ISO8601")


def test_iso_seconds_equal_pandas_value_by_value() -> None:
    """Every value, the vectorised conversion against pandas reading it alone: random valid
    seconds over four centuries, 19-character texts that are no dates (impossible fields,
    wrong marks, non-ASCII digits, leap seconds) and values of other lengths; chunked input."""
    import pyarrow as pa

    from geo_lead.store import iso_seconds

    rng = np.random.default_rng(19)
    lo, hi = pd.Timestamp("1678-01-01").value // 10**9, pd.Timestamp("2261-12-31").value // 10**9
    valid = list(pd.to_datetime(rng.integers(lo, hi, 400), unit="s").strftime("%Y-%m-%dT%H:%M:%S"))
    odd19 = ["2016-02-30T00:00:00", "2100-02-29T00:00:00", "2000-02-29T23:59:59", "2016-04-31T00:00:00",
             "2016-06-30T23:59:60", "2016-06-30T23:60:00", "2016-00-01T00:00:00", "2016-01-01T00:00:0x",
             "2016/01/01T00:00:00", "2016-01-01 00:00:00", "2016-01-0\u0661T00:00:0", "0000-01-01T00:00:00",
             "1677-12-31T23:59:59", "2262-01-01T00:00:00", "9999-12-31T23:59:59", "1970-01-01T00:00:00",
             "1969-12-31T23:59:59", "2016-01-01T00:00:00Z"[:19], " 2016-01-01T00:00:0"]
    other = ["", None, "2016-01-01", "2016-01-01T00:00:00Z", "2016-01-01T00:00:00.5", "x"]
    values = [*valid, *odd19, *other]
    rng.shuffle(values)
    secs, odd = iso_seconds(pa.chunked_array([values[:200], values[200:]], type=pa.string()))
    shape = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
    for value, sec, is_odd in zip(values, secs, odd, strict=True):
        want = pd.to_datetime(pd.Series([value], dtype=object), errors="coerce", format="ISO8601").iloc[0] \
            if value and shape.fullmatch(value) else pd.NaT
        if pd.isna(want):
            assert np.isnan(sec), value
            assert bool(is_odd) == bool(value), value
        else:
            assert pd.Timestamp(sec, unit="s") == want, value
            assert not is_odd, value


def test_scan_cache_shrinks_the_page_cache_for_one_read_only(store: Store) -> None:
    """Inside `Store.scan_cache` the page cache is `SCAN_CACHE_KIB` (outside a transaction),
    after it the connection's own size again; the counts and reads made inside are unchanged,
    and the opiate count uses its partial index (no scan of every record)."""
    from geo_lead.store import CACHE_KIB, SCAN_CACHE_KIB

    def size() -> int:
        return int(store.conn.execute("PRAGMA cache_size").fetchone()[0])

    assert size() == -CACHE_KIB
    with store.scan_cache():
        assert size() == -SCAN_CACHE_KIB
    assert size() == -CACHE_KIB
    with store.write(), store.scan_cache():  # a transaction keeps its cache (dirty pages)
        assert size() == -CACHE_KIB
    every = _full(store, ["opiate", "lead_eligible", "match_type", "geocode_reason"])
    assert store.count_flagged("opiate") == int(every["opiate"].sum())
    assert len(store.flagged_records(["record_id"], "lead_eligible")) == int(every["lead_eligible"].sum())
    want = every.loc[every["match_type"] == "unmatched", "geocode_reason"].tolist()
    assert store.unmatched_reasons() == want
    assert size() == -CACHE_KIB
    plan = store.conn.execute('EXPLAIN QUERY PLAN SELECT COUNT(*) FROM records WHERE COALESCE("opiate", 0) <> 0')
    assert "records_opiate" in " ".join(str(r) for r in plan)


def test_record_dates_counted_in_batches_equal_one_read(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Store.record_dates` streamed in batches (GDAL's Arrow stream, several batches) equals
    `RecordDates` of one sqlite3 read of every record, rows in the same order; and
    `merge_record_dates` of consecutive slices equals the dates of the whole table."""
    import pyarrow as pa

    from geo_lead import store as store_mod
    from geo_lead.store import RecordDates, _record_dates, merge_record_dates

    cols = list(RecordDates.COLUMNS)
    whole = _record_dates(store._record_columns(cols, arrow=False))
    monkeypatch.setattr(store_mod, "ARROW_MIN_ROWS", 10)
    monkeypatch.setattr(store_mod, "DATE_BATCH_ROWS", 97)
    assert len(list(store._record_column_batches(cols))) > 3
    store._dates = None
    streamed = store.record_dates()
    pd.testing.assert_frame_equal(streamed.cube, whole.cube)
    assert streamed.odd == whole.odd
    table = pa.table({"source_file": [None, "b", "a", "b", None, "c", "a"],
                      "source": ["x", None, "x", "y", "x", None, "y"],
                      "occurred_at": ["2016-01-01T00:00:00", "2016-02-30T00:00:00", None, "2015-05-01T10:00:00",
                                      "", "2017-01-01T00:00:00", "2016-01-03T00:00:00"],
                      "reported_at": [None, "2016-03-01T00:00:00", "2016-04-01T00:00:00", "x", None, None,
                                      "2016-01-02T00:00:00"]})
    want = _record_dates(table)
    for cuts in ([0, 7], [0, 1, 7], [0, 2, 3, 7], [0, 1, 2, 3, 4, 5, 6, 7]):
        got = merge_record_dates([_record_dates(table.slice(a, b - a)) for a, b in itertools.pairwise(cuts)])
        pd.testing.assert_frame_equal(got.cube, want.cube)
        assert got.odd == want.odd == 2


def test_by_year_reads_only_the_year_without_a_flagged_point(store: Store, tmp_path: Path) -> None:
    """A year of data without any flagged record: its records are all read (not every record),
    and the year-by-year result (its note included) equals the full read's."""
    import shutil

    from geo_lead.by_year import _read, by_year_store, store_data_years
    from geo_lead.spatial_join import records_gdf

    shutil.copy(store.path, tmp_path / "c.gpkg")
    s = open_store(tmp_path / "c.gpkg", create=False)
    try:
        every = s.read_records([c for c in s.columns("records") if c not in ("fid", "geom")])
        rows = every[every["lon"].notna() & ~every["lead_eligible"]].head(120).reset_index(drop=True)
        rows["record_id"] = [f"y2014-{i}" for i in range(len(rows))]
        rows["content_hash"] = [f"h2014-{i}" for i in range(len(rows))]
        rows["occurred_at"] = "2014-03-15T10:00:00"
        rows["reported_at"] = "2014-03-16T10:00:00"
        canonical = rows.drop(columns=[c for c in ("lon", "lat", "match_type", "score", "matched_address",
                                                   "geocode_reason", "beat_check", "neighborhood",
                                                   "boundary_units") if c in rows])
        for flag in FLAG_COLUMNS:
            canonical[flag] = canonical[flag].astype(int)
        with s.write():
            s.upsert_records(canonical, "2026-01-01T00:00:00Z")
            s.update_records(rows[["record_id", "lon", "lat", "match_type", "score", "matched_address",
                                   "geocode_reason", "neighborhood", "boundary_units"]])
        assert 2014 in store_data_years(s)
        own_read = _read(s, "lead_eligible")
        assert len(own_read) == int(every["lead_eligible"].sum()) + len(rows) < s.count("records")
        assert len(s.records_of_years(["record_id"], [2014])) == len(rows)
        params = {"site_params": {"replicates": 20}, "score_params": {"n_boot": 20}}
        own = by_year_store(s, **params)
        cols = ["occurred_at", "reported_at", "source", "source_file", "neighborhood", "boundary_units",
                "incident_number", "lead_eligible", "division"]
        full = by_year_store(s, records=records_gdf(s, cols), **params)
        assert own.to_dict() == full.to_dict()
        assert any(n.startswith("2014:") for n in own.notes)
        from geo_lead.by_year import shared_read
        from geo_lead.pipeline import analysis_records

        mine = shared_read(s, analysis_records(s))  # the run's read + every record of 2014
        assert mine is not None and len(mine) == len(own_read)
        assert mine["occurred_at"].dtype.kind == "M"
        assert by_year_store(s, records=mine, **params).to_dict() == own.to_dict()
    finally:
        s.close()


def test_pilot_data_from_the_runs_shared_read_equals_its_own_reads(store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The year-by-year and before/after parts given `pipeline.analysis_records` (the run's read:
    flagged records, parsed dates, points and weights) answer as their own reads do, and read
    no records when they take it."""
    from geo_lead.analysis_reads import reusable_points
    from geo_lead.by_year import by_year_store, shared_read
    from geo_lead.evaluation import EVALUATION_COLUMNS, EvaluationParams, evaluate_store
    from geo_lead.pipeline import analysis_records

    shared = analysis_records(store)
    before = shared.copy()
    mine = shared_read(store, shared)
    assert mine is not None and len(mine) == store.count_flagged("lead_eligible")
    params = {"site_params": {"replicates": 20}, "score_params": {"n_boot": 20}}
    own = by_year_store(store, **params)
    ev = EvaluationParams(pilot_start="2016-09-01", replicates=50, min_months=2)
    comparison = ["SHAWNEE", "CHICKASAW"]
    own_ev = evaluate_store(store, ev, comparison=comparison)
    reused = reusable_points(store, shared, "lead_eligible", [*EVALUATION_COLUMNS, "lon", "lat"])
    assert reused is not None
    with monkeypatch.context() as m:
        def no_read(*_a: object, **_k: object) -> None:
            raise AssertionError("read the records again")

        m.setattr(Store, "flagged_records", no_read)
        m.setattr(Store, "read_records", no_read)
        again = by_year_store(store, records=mine, **params)
        again_ev = evaluate_store(store, ev, comparison=comparison, records=reused)
    assert again.to_dict() == own.to_dict()
    assert again_ev.to_dict() == own_ev.to_dict()
    pd.testing.assert_frame_equal(shared, before)  # the run's frame is left as it was


def test_a_read_that_is_not_the_flagged_one_is_not_reused(store: Store) -> None:
    from geo_lead.analysis_reads import reusable_points
    from geo_lead.by_year import shared_read
    from geo_lead.pipeline import analysis_records

    shared = analysis_records(store)
    cols = ["occurred_at"]
    assert reusable_points(store, None, "lead_eligible", cols) is None
    assert reusable_points(store, shared.iloc[1:], "lead_eligible", cols) is None  # not every flagged record
    assert reusable_points(store, shared.drop(columns=["weight"]), "lead_eligible", cols) is None
    assert reusable_points(store, shared.drop(columns=["occurred_at"]), "lead_eligible", cols) is None
    assert shared_read(store, shared, "opiate") is None  # another indicator's read
