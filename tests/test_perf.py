"""Cheap reruns: the incremental spatial join, the maps' flagged read, the shared records read.

Each optimisation is checked against the plain computation it replaces (a full join, an
in-memory filter, a per-stage read): the results must be the same, only cheaper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geo_lead import maps, spatial_join
from geo_lead.boundaries import load_neighborhoods
from geo_lead.sources import RECORD_COLUMNS
from geo_lead.store import open_store


def _points(nh: object) -> dict[str, tuple[float, float]]:
    names = ["RUSSELL", "PORTLAND", "SHAWNEE"]
    out = {}
    for name in names:
        p = nh[nh["NH_NAME"] == name].geometry.iloc[0].representative_point()  # type: ignore[index]
        out[name] = (p.x, p.y)
    out["OUTSIDE"] = (-85.5644, 38.1942)  # Jeffersontown: outside every LOJIC unit
    return out


def _make_store(path: Path, lonlat: list[tuple[float, float] | None], flags: list[int],
                opiate: list[int] | None = None) -> None:
    rows = []
    for i, _ in enumerate(lonlat):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-05-01T10:00:00", source_line=i + 2,
                   source_file="x.csv", content_hash=f"h{i}", address_raw=f"{100 * i} BLOCK MAIN ST")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["lead_eligible"] = flags
    if opiate is not None:
        frame["opiate"] = opiate
    store = open_store(path)
    with store.write():
        store.upsert_records(frame, "2026-01-01T00:00:00Z")
        store.update_records(pd.DataFrame({
            "record_id": [f"r{i}" for i in range(len(lonlat))],
            "lon": [p[0] if p else np.nan for p in lonlat],
            "lat": [p[1] if p else np.nan for p in lonlat]}))
    store.close()


def _stored(store: object) -> dict[str, str | None]:
    got = store.read_records(["record_id", "neighborhood"])  # type: ignore[attr-defined]
    return dict(zip(got["record_id"], got["neighborhood"], strict=True))


def _full_join(store: object, nh: object) -> dict[str, str]:
    """The oracle: every record joined in memory, nothing incremental."""
    recs = spatial_join.records_gdf(store, ["record_id"])  # type: ignore[arg-type]
    joined = spatial_join.join_records(recs, nh)  # type: ignore[arg-type]
    return dict(zip(joined["record_id"], joined["neighborhood"], strict=True))


def test_incremental_join_joins_only_new_and_moved_records(store_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["PORTLAND"], pts["OUTSIDE"], None], [1, 1, 0, 1])
    joined_sizes: list[int] = []
    real = spatial_join.join_records

    def counting(records, neighborhoods, name_column="NH_NAME", **kwargs):  # type: ignore[no-untyped-def]
        joined_sizes.append(len(records))
        return real(records, neighborhoods, name_column, **kwargs)

    monkeypatch.setattr(spatial_join, "join_records", counting)
    store = open_store(store_path)
    try:
        first = spatial_join.join_store(store, nh)
        assert first == {"records": 4, "joined": 2, "outside": 1, "not_geocoded": 1}
        assert joined_sizes == [4]
        # A rerun with nothing new joins nothing and reports the same counts.
        assert spatial_join.join_store(store, nh) == first
        assert joined_sizes == [4]  # join_records skipped: no record to join
        # The geocoder moves r0 to Shawnee: its neighborhood is cleared, then rejoined alone.
        with store.write():
            store.update_records(pd.DataFrame({"record_id": ["r0"], "lon": [pts["SHAWNEE"][0]],
                                               "lat": [pts["SHAWNEE"][1]]}))
        assert pd.isna(_stored(store)["r0"])
        again = spatial_join.join_store(store, nh)
        assert joined_sizes == [4, 1]
        assert again == first
        assert {k: "" if pd.isna(v) else v for k, v in _stored(store).items()} == _full_join(store, nh.to_crs(4326))
        assert _stored(store)["r0"] == "SHAWNEE"
    finally:
        store.close()


def test_changed_neighborhoods_rejoin_every_record(store_path: Path) -> None:
    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["PORTLAND"]], [1, 0])
    store = open_store(store_path)
    try:
        spatial_join.join_store(store, nh)
        renamed = nh.assign(NH_NAME=nh["NH_NAME"].replace({"RUSSELL": "RUSSELL (NEW NAME)"}))
        assert spatial_join.neighborhoods_fingerprint(renamed) != spatial_join.neighborhoods_fingerprint(nh)
        counts = spatial_join.join_store(store, renamed)
        assert counts["joined"] == 2
        assert _stored(store) == {"r0": "RUSSELL (NEW NAME)", "r1": "PORTLAND"}
    finally:
        store.close()


def test_first_division_from_stored_join_equals_in_memory_join(store_path: Path) -> None:
    from geo_lead import division_records

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"]] * 6 + [pts["PORTLAND"]] * 6 + [pts["OUTSIDE"], None],
                [1] * 14)
    store = open_store(store_path)
    try:
        with store.write():
            store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(14)],
                                               "division": ["1ST DIVISION"] * 6 + ["2ND DIVISION"] * 6 + ["", ""]}))
        before, members_before = division_records.derive_first_division(store, nh)  # joins in memory
        spatial_join.join_store(store, nh)
        assert division_records._join_current(store, nh, set(store.columns("records")))
        after, members_after = division_records.derive_first_division(store, nh)  # reads the stored join
        pd.testing.assert_frame_equal(members_before, members_after)
        assert before.geometry.iloc[0].equals(after.geometry.iloc[0])
    finally:
        store.close()


def test_maps_flagged_read_equals_filtering_all_records(store_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["PORTLAND"], pts["OUTSIDE"], None, pts["SHAWNEE"]],
                [1, 0, 1, 1, 0])
    store = open_store(store_path)
    try:
        scores = gpd.GeoDataFrame({"neighborhood": ["RUSSELL"], "indicator": ["lead_eligible"]},
                                  geometry=[box(-85.8, 38.2, -85.7, 38.3)], crs=4326)
        store.replace_features("scores", scores, "POLYGON")
        full = maps.read_map_inputs(store)
        oracle, oracle_notes = maps.indicator_records(full["records"], full["scores"])
        fast = maps.read_map_inputs(store, flagged_only=True)
        assert fast["records_total"] == 5 and fast["indicator"] == "lead_eligible"
        pd.testing.assert_frame_equal(fast["records"].reset_index(drop=True), oracle.reset_index(drop=True))
        assert oracle_notes == ["Records shown: the 3 with the 'lead_eligible' flag (the scores' "
                                "indicator) of 5 in the store."]
    finally:
        store.close()


def test_arrow_read_equals_sqlite_read(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import store as store_mod

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], None, pts["OUTSIDE"], pts["PORTLAND"]], [1, 0, 1, 0])
    store = open_store(store_path)
    try:
        spatial_join.join_store(store, nh)
        with store.write():  # NULL text, an empty string and a NULL flag, as real stores have
            store.conn.execute("UPDATE records SET reported_at = NULL, lead_eligible = NULL WHERE record_id = 'r1'")
        monkeypatch.setattr(store_mod, "ARROW_MIN_ROWS", 0)
        used: list[bool] = []
        real = store_mod.Store._read_records_arrow

        def spy(self, columns):  # type: ignore[no-untyped-def]
            out = real(self, columns)
            used.append(out is not None)
            return out

        monkeypatch.setattr(store_mod.Store, "_read_records_arrow", spy)
        for cols in (None, ["occurred_at", "reported_at", "source_file", "neighborhood", "lead_eligible", "lon", "lat"],
                     ["occurred_at"], ["record_id"]):
            fast = store.read_records(cols)
            plain = store.read_table("records", cols)
            for c in store_mod.FLAG_COLUMNS:
                if c in plain:
                    plain[c] = plain[c].fillna(0).astype(bool)
            pd.testing.assert_frame_equal(fast, plain)
        # the analysis columns go through Arrow, and occurred_at alone (a table scan: its index
        # is on the month prefix, records_occurred_month, so it covers no read of the value);
        # a covering-index scan (record_id: another row order) stays on sqlite3
        assert used[1:] == [True, True, False]
        with store.write():  # inside a transaction uncommitted rows must be seen: sqlite3
            store.conn.execute("UPDATE records SET neighborhood = 'X' WHERE record_id = 'r0'")
            assert store.read_records(["neighborhood", "lon"])["neighborhood"].iloc[0] == "X"
        assert used[-1] is False
    finally:
        store.close()


def _sqlite_flagged(store: object, columns: list[str], flag: str) -> pd.DataFrame:
    """The oracle: the flagged records read through sqlite3 (no Arrow)."""
    with store.scan_cache():  # type: ignore[attr-defined]
        return store.read_records(columns, where=f'COALESCE("{flag}", 0) <> 0')  # type: ignore[attr-defined,no-any-return]


def test_flagged_arrow_read_equals_sqlite_read(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Store.flagged_records` read through GDAL's Arrow reader (the flag's partial index)
    equals the sqlite3 read of the same rows: NULL and empty text, NULL flags, NULL points,
    both flags, fid first; and it is used for it."""
    from geo_lead import store as store_mod

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], None, pts["OUTSIDE"], pts["PORTLAND"], pts["SHAWNEE"], None],
                [1, 0, 1, 0, 1, 1], opiate=[0, 0, 1, 0, 0, 0])
    store = open_store(store_path)
    try:
        spatial_join.join_store(store, nh)
        with store.write():  # NULL text, NULL flags, an opiate flag on other rows
            store.conn.execute("UPDATE records SET reported_at = NULL, opiate = NULL, lead_eligible = NULL "
                               "WHERE record_id = 'r1'")
            store.conn.execute("UPDATE records SET opiate = 1, neighborhood = NULL WHERE record_id IN ('r0', 'r3')")
            store.conn.execute("UPDATE records SET lead_eligible = 2 WHERE record_id = 'r5'")
        monkeypatch.setattr(store_mod, "ARROW_MIN_ROWS", 0)
        used: list[bool] = []
        real = store_mod.Store._read_flagged_arrow

        def spy(self, columns, flag):  # type: ignore[no-untyped-def]
            out = real(self, columns, flag)
            used.append(out is not None)
            return out

        monkeypatch.setattr(store_mod.Store, "_read_flagged_arrow", spy)
        cols = ["fid", "occurred_at", "reported_at", "source_file", "neighborhood", "lon", "lat", "opiate",
                "lead_eligible", "record_id"]
        for flag in ("lead_eligible", "opiate"):
            for want in (cols, ["fid", "lon"], ["fid", "record_id", flag]):
                fast = store._read_flagged(list(want), flag)
                pd.testing.assert_frame_equal(fast, _sqlite_flagged(store, list(want), flag))
        assert used and all(used)
        assert store._read_flagged(["fid", "record_id"], "lead_eligible")["record_id"].tolist() == ["r0", "r2", "r4", "r5"]
        got = store.flagged_records(["record_id", "lon"], "opiate")
        assert got["record_id"].tolist() == ["r0", "r2", "r3"]
    finally:
        store.close()


def test_flagged_arrow_read_falls_back_when_not_exact(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Arrow read of the flagged records is not used (the sqlite3 read is, with the same
    answer) inside a transaction (uncommitted rows must be seen), when another connection
    commits during GDAL's read, and when GDAL's rows are not exactly the flagged ones; without
    the flag's partial index it is used and still exact."""
    import pyogrio

    from geo_lead import store as store_mod

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["PORTLAND"], pts["SHAWNEE"], None], [1, 0, 1, 1])
    monkeypatch.setattr(store_mod, "ARROW_MIN_ROWS", 0)
    cols = ["fid", "record_id", "lon", "lead_eligible"]
    store = open_store(store_path)
    try:
        assert store._read_flagged_arrow(cols, "lead_eligible") is not None
        with store.write():
            store.conn.execute("UPDATE records SET lead_eligible = 1 WHERE record_id = 'r1'")
            assert store._read_flagged_arrow(cols, "lead_eligible") is None
            assert store._read_flagged(cols, "lead_eligible")["record_id"].tolist() == ["r0", "r1", "r2", "r3"]
        real_read = pyogrio.read_arrow

        def commit_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
            out = real_read(*args, **kwargs)
            other = open_store(store_path)  # another connection (with the triggers' functions)
            with other.write():
                other.conn.execute("UPDATE records SET lead_eligible = 0 WHERE record_id = 'r0'")
            other.close()
            return out

        monkeypatch.setattr(pyogrio, "read_arrow", commit_meanwhile)
        assert store._read_flagged_arrow(cols, "lead_eligible") is None
        assert store._read_flagged(cols, "lead_eligible")["record_id"].tolist() == ["r1", "r2", "r3"]

        def one_row_less(*args, **kwargs):  # type: ignore[no-untyped-def]
            meta, table = real_read(*args, **kwargs)
            return meta, table.slice(1)

        monkeypatch.setattr(pyogrio, "read_arrow", one_row_less)
        assert store._read_flagged_arrow(cols, "lead_eligible") is None
        monkeypatch.setattr(pyogrio, "read_arrow", real_read)
        assert store._read_flagged_arrow(cols, "lead_eligible") is not None
        with store.write():  # no partial index: GDAL scans the table, the same rows in fid order
            store.conn.execute("DROP INDEX records_lead_eligible")
        pd.testing.assert_frame_equal(store._read_flagged_arrow(cols, "lead_eligible"),
                                      _sqlite_flagged(store, cols, "lead_eligible"))
    finally:
        store.close()


_THREADS_AFTER_FLAGGED_READ = """
import os, sys
from geo_lead import store as store_mod
store_mod.ARROW_MIN_ROWS = 0
s = store_mod.open_store(sys.argv[1], create=False)
s.count_flagged("lead_eligible")
import pyogrio  # noqa: F401  (its import may start threads of its own: not the read's)
before = len(os.listdir("/proc/self/task"))
frame = s._read_flagged_arrow(["fid", "record_id", "occurred_at", "lon", "lat", "lead_eligible"], "lead_eligible")
print(frame is not None, before, len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_flagged_arrow_read_starts_no_thread(store_path: Path) -> None:
    """The Arrow read of the flagged records converts without Arrow's thread pool: a thread
    left running would stop `geo_lead.parallel` from forking the run's children after it."""
    import os
    import subprocess
    import sys

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["PORTLAND"], pts["SHAWNEE"], None], [1, 0, 1, 1])
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _THREADS_AFTER_FLAGGED_READ, str(store_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    used, before, after = done.stdout.split()
    assert used == "True" and int(after) == int(before)


# --- issue 7, incremental rerun under 10% of the full run ---------------------------------
_ONE_SCAN_COUNTS = ("SELECT COUNT(*), COALESCE(SUM(lon IS NULL OR lat IS NULL), 0), "
                    "COALESCE(SUM(lon IS NOT NULL AND lat IS NOT NULL AND COALESCE(neighborhood, '') <> ''), 0) "
                    "FROM records")


@pytest.mark.parametrize("match_type", [False, True])
def test_indexed_join_counts_equal_the_one_scan_query(store_path: Path, match_type: bool) -> None:
    """The four indexed counts give the one full-scan query's numbers, edge cases included
    (a name on a record without a point, '' vs NULL neighborhoods); with a ``match_type``
    column the records without a point are counted on ``records_unlocated_match``."""
    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["OUTSIDE"], None, pts["PORTLAND"], None], [1, 0, 1, 0, 0])
    store = open_store(store_path)
    try:
        if match_type:
            with store.write():
                store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(5)],
                                                   "match_type": ["block", "block", "unmatched", "exact", None]}))
        spatial_join.join_store(store, nh)
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        # (records_match_type comes with the geocoder's match_type column)
        assert {"records_unlocated", "records_neighborhood", "records_lead_eligible"} <= names
        assert ({"records_match_type", "records_unlocated_match"} <= names) == match_type
        with store.write():  # odd rows the pipeline never writes: the counts must still agree
            store.conn.execute("UPDATE records SET neighborhood = 'RUSSELL' WHERE record_id = 'r2'")
            store.conn.execute("UPDATE records SET neighborhood = NULL WHERE record_id = 'r3'")
        n, not_geo, joined = store.conn.execute(_ONE_SCAN_COUNTS).fetchone()
        assert spatial_join.store_join_counts(store) == {
            "records": n, "joined": joined, "outside": n - not_geo - joined, "not_geocoded": not_geo}
        assert (n, not_geo, joined) == (5, 2, 1)
        with store.write():  # a name on both records without a point
            store.conn.execute("UPDATE records SET neighborhood = 'X' WHERE record_id IN ('r2', 'r4')")
        assert spatial_join.store_join_counts(store)["joined"] == 1
        assert spatial_join.store_join_counts(store)["not_geocoded"] == 2
        plan = " ".join(str(r[-1]) for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT fid FROM records WHERE neighborhood IS NULL"))
        assert "records_neighborhood" in plan  # the join's new records: no scan
    finally:
        store.close()


def test_parse_iso_columns_is_exact_or_leaves_text() -> None:
    from geo_lead.pipeline import parse_iso_columns

    text = pd.Series(["2017-05-01T10:00:00", "", "2016-12-31T23:59:59", None], dtype=object)
    frame = parse_iso_columns(pd.DataFrame({"occurred_at": text.copy(), "reported_at": text.copy()}))
    for kw in ({}, {"format": "ISO8601"}, {"format": "ISO8601", "utc": True}):
        # what score, site and the report compute from it equals what they computed from text
        assert pd.to_datetime(frame["occurred_at"], errors="coerce", **kw).equals(
            pd.to_datetime(text, errors="coerce", **kw))
    odd = pd.DataFrame({"occurred_at": ["2017-05-01T10:00:00", "05/01/2017 10:00"]})
    assert parse_iso_columns(odd)["occurred_at"].dtype.kind != "M"  # not the ingest format: kept as text


def test_flagged_points_keep_every_flagged_point(store_path: Path) -> None:
    """Points only for flagged records: indicator_points (hotspots, site) sees the same."""
    from geo_lead.hotspots import indicator_points
    from geo_lead.pipeline import flagged_points

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], pts["OUTSIDE"], None, pts["PORTLAND"]], [1, 0, 1, 0])
    store = open_store(store_path)
    try:
        frame = store.read_records(["record_id", "lon", "lat", "lead_eligible", "source_file"])
        every = spatial_join.points_from_lonlat(frame)
        some = flagged_points(frame, "lead_eligible")
        a, ca = indicator_points(every, "lead_eligible")
        b, cb = indicator_points(some, "lead_eligible")
        assert ca == cb and a.geometry.equals(b.geometry) and a["record_id"].tolist() == b["record_id"].tolist()
        assert some["lon"].equals(frame["lon"])  # coordinates kept for the report
        none = flagged_points(frame.assign(lead_eligible=False), "lead_eligible")
        assert none.geometry.notna().sum() == 3  # no flagged point: every point, as before
    finally:
        store.close()


def test_report_reuses_the_shared_read(store_path: Path) -> None:
    """`collect_report_data(store, records)` gives the records frame the report reads itself."""
    from geo_lead.pipeline import analysis_records
    from geo_lead.report import collect_report_data

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"], None, pts["OUTSIDE"]], [1, 0, 1])
    store = open_store(store_path)
    try:
        with store.write():
            store.update_records(pd.DataFrame({"record_id": ["r0", "r1", "r2"],
                                               "match_type": ["block", "unmatched", "block"],
                                               "geocode_reason": ["middle", "no such street", "middle"]}))
        spatial_join.join_store(store, nh)
        own_data = collect_report_data(store)
        shared_data = collect_report_data(store, analysis_records(store))
        own, shared = own_data["records"], shared_data["records"]
        assert list(shared.columns) == list(own.columns)
        for col in own.columns:
            if col == "occurred_at":  # parsed once in the shared read; the report parses both alike
                assert maps.parse_when(shared[col]).equals(maps.parse_when(own[col]))
            else:
                pd.testing.assert_series_equal(shared[col], own[col], obj=col)
        # the unmatched records' reasons are counted in the store, whichever records were passed
        for data in (own_data, shared_data):
            reasons = data["tallies"].unmatched_reasons
            assert dict(zip(reasons["reason"], reasons["records"], strict=True)) == {"no such street": 1}
    finally:
        store.close()


def test_stored_queen_adjacency_equals_libpysal(store_path: Path) -> None:
    from geo_lead.zones_milp import META_QUEEN_ADJACENCY, queen_adjacency, stored_queen_adjacency

    nh = load_neighborhoods()
    store = open_store(store_path)
    try:
        first = stored_queen_adjacency(store, nh)
        assert store.get_json(META_QUEEN_ADJACENCY)["key"]
        again = stored_queen_adjacency(store, nh)  # from meta
        assert first == again == queen_adjacency(nh)
        moved = nh.copy()
        moved.loc[moved.index[0], "geometry"] = moved.geometry.iloc[0].buffer(0.001)
        assert stored_queen_adjacency(store, moved) == queen_adjacency(moved)  # other key: recomputed
    finally:
        store.close()
