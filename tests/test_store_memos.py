"""The store's per-connection memos of the records (`Store.record_dates`, `Store.flagged_records`)
are kept while `Store.records_state` stays: a hit equals a fresh computation, every kind of
records change (insert, update, delete; by this store, by its connection's own SQL, by another
connection; a rolled-back write) is a miss, and a write to another table (a result layer, meta,
the rejects) is a hit. The oracles read the store afresh (`_record_dates` of a sqlite3 read,
`read_records` with the flag's WHERE), never through the memo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Point

from geo_lead import settings
from geo_lead.store import RecordDates, Store, _record_dates, open_store, register_gpkg_functions

FLAG = "lead_eligible"
COLS = ["record_id", "occurred_at", "source", FLAG]
MORE = ["address_raw", "offense_text", "fid"]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    from geo_lead.ingest import ingest_files

    s = open_store(tmp_path / "s.gpkg")
    ingest_files(s, [f for f in settings.SHIPPED_LMPD_FILES if "2016" in f.name])
    ids = s.read_records(["record_id"])["record_id"].head(40).tolist()
    with s.write():  # a few beat checks for `beat_check_counts`
        s.update_records(pd.DataFrame({"record_id": ids, "match_type": ["block", "intersection"] * 20,
                                       "beat_check": ["same", "same", "adjacent", "other"] * 10}))
    yield s
    s.close()


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Record each call of `Store.<name>` (its arguments) and run it."""
    calls: list[Any] = []
    real = getattr(Store, name)

    def spy(self: Store, *args: Any) -> Any:
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(Store, name, spy)
    return calls


def _fresh_dates(store: Store) -> RecordDates:
    return _record_dates(store._record_columns(list(RecordDates.COLUMNS), arrow=False))


def _fresh_flagged(store: Store, columns: list[str]) -> pd.DataFrame:
    return store.read_records(columns, where=f'COALESCE("{FLAG}", 0) <> 0')


def _check_dates(store: Store) -> None:
    got, want = store.record_dates(), _fresh_dates(store)
    pd.testing.assert_frame_equal(got.cube, want.cube)
    assert got.odd == want.odd


def _check_flagged(store: Store, columns: list[str]) -> None:
    pd.testing.assert_frame_equal(store.flagged_records(columns, FLAG), _fresh_flagged(store, columns))


def _one_record(store: Store, record_id: str) -> pd.DataFrame:
    """A copy of a stored flagged record as `upsert_records` takes it, under a new id."""
    row = store.read_records([c for c in store.columns("records") if c not in ("fid", "geom")],
                             where=f'COALESCE("{FLAG}", 0) <> 0').head(1).copy()
    row["record_id"], row["content_hash"] = record_id, f"h-{record_id}"
    row["occurred_at"] = "2016-07-04T10:00:00"
    for flag in ("opiate", FLAG):
        row[flag] = row[flag].astype(int)
    return row


AGGREGATES = {"count_by:source": lambda s: s.count_by("records", "source"),
              "beat_check_counts": lambda s: s.beat_check_counts()}


def _fresh_aggregates(store: Store) -> dict[str, Any]:
    return {"count_by:source": dict(store.conn.execute(
                "SELECT source, COUNT(*) FROM records GROUP BY source").fetchall()),
            "beat_check_counts": pd.DataFrame(store.conn.execute(
                "SELECT match_type, beat_check, COUNT(*) FROM records WHERE beat_check IS NOT NULL "
                "GROUP BY match_type, beat_check ORDER BY 1, 2").fetchall(),
                columns=["match_type", "beat_check", "records"])}


def _check_aggregates(store: Store) -> dict[str, Any]:
    """Each kept aggregate equals a fresh SQL count; returns each kept value (the object)."""
    want = _fresh_aggregates(store)
    for name, ask in AGGREGATES.items():
        got = ask(store)
        if isinstance(got, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want[name])
            got["records"] = -1  # a caller's change does not reach the kept value
        else:
            assert got == want[name]
            got.clear()
    return {name: store._aggregates[name][1] for name in AGGREGATES}


def _other_table_writes(store: Store) -> list[Callable[[], object]]:
    layer = gpd.GeoDataFrame({"v": [1.0]}, geometry=[Point(-85.7, 38.2)], crs="EPSG:4326")

    def meta_rows() -> None:
        with store.write():
            store.insert_rows("meta", pd.DataFrame({"key": ["memo-test"], "value": ["1"]}))

    return [lambda: store.put_json("memo_test", {"a": 1}),
            lambda: store.replace_features("memo_layer", layer),
            lambda: store.replace_attributes("memo_table", pd.DataFrame({"x": [1, 2]})),
            meta_rows,
            lambda: store.touch("records")]


def test_record_dates_hit_equals_fresh_and_other_tables_keep_it(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = _counted(monkeypatch, "_count_record_dates")
    _check_dates(store)
    kept = _check_aggregates(store)
    assert len(counts) == 1
    for write in _other_table_writes(store):
        write()
        _check_dates(store)
        assert len(counts) == 1, write  # a result layer / meta written: the dates are kept
        assert all(v is kept[k] for k, v in _check_aggregates(store).items()), write


def test_flagged_records_hit_equals_fresh_and_reads_only_new_columns(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _counted(monkeypatch, "_read_flagged")
    _check_flagged(store, COLS)
    assert len(reads) == 1
    _check_flagged(store, COLS[1:3])  # a subset: nothing read
    assert len(reads) == 1
    _check_flagged(store, [*COLS, *MORE])  # only the columns not read yet
    assert len(reads) == 2 and set(reads[1][0]) == {"fid", "address_raw", "offense_text"}
    mine = store.flagged_records(COLS, FLAG)
    mine.loc[:, "occurred_at"] = "changed"  # a caller's change does not reach the memo
    del mine["source"]
    _check_flagged(store, COLS)
    for write in _other_table_writes(store):
        write()
        _check_flagged(store, [*COLS, *MORE])
    assert len(reads) == 2
    with pytest.raises(ValueError, match="not an indicator flag"):
        store.flagged_records(COLS, "no_such_flag")


def _insert_here(store: Store) -> None:
    with store.write():
        store.upsert_records(_one_record(store, "memo-new"), "2026-01-01T00:00:00Z")


def _update_here(store: Store) -> None:
    rid = store.read_records(["record_id"]).iloc[3, 0]
    with store.write():
        store.update_records(pd.DataFrame({"record_id": [rid], "occurred_at": ["2016-12-31T23:00:00"],
                                           FLAG: [1]}))


def _delete_by_sql_here(store: Store) -> None:
    with store.write():  # this connection, not through a Store method: total_changes moves
        store.conn.execute(f'DELETE FROM records WHERE fid = (SELECT MIN(fid) FROM records WHERE "{FLAG}")')


def _update_by_sql_here(store: Store) -> None:
    with store.write():  # same number of records
        store.conn.execute('UPDATE records SET occurred_at = \'2016-01-02T03:04:05\', source = \'x\' '
                           f'WHERE fid = (SELECT MIN(fid) FROM records WHERE "{FLAG}")')


def _rolled_back(store: Store) -> None:
    """A records update seen by both memos inside a transaction, then rolled back."""
    rid = store.flagged_records(["record_id"], FLAG).iloc[0, 0]
    with pytest.raises(RuntimeError), store.write():
        store.update_records(pd.DataFrame({"record_id": [rid], "occurred_at": ["2016-11-11T11:11:11"],
                                           "source": ["rolled"], FLAG: [0]}))
        store.upsert_records(_one_record(store, "memo-rolled-back"), "2026-01-01T00:00:00Z")
        _check_dates(store)
        _check_flagged(store, COLS)
        assert store._record_count() == int(store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        raise RuntimeError("roll back")


CHANGES: dict[str, Callable[[Store], None]] = {
    "insert by this store": _insert_here,
    "update by this store": _update_here,
    "delete by this connection's SQL": _delete_by_sql_here,
    "update by this connection's SQL": _update_by_sql_here,
    "rollback": _rolled_back,
}


@pytest.mark.parametrize("change", ["insert by this store", "update by this store", "delete by this connection's SQL",
                                    "update by this connection's SQL", "insert by another connection",
                                    "update by another connection", "delete by another connection", "rollback"])
def test_every_records_change_is_a_miss(store: Store, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    counts = _counted(monkeypatch, "_count_record_dates")
    reads = _counted(monkeypatch, "_read_flagged")
    _check_dates(store)
    _check_flagged(store, COLS)
    kept = _check_aggregates(store)
    before_dates, before_flagged = store.record_dates(), store.flagged_records(COLS, FLAG)
    n_counts, n_reads = len(counts), len(reads)
    kind, _, who = change.partition(" by ")
    if who == "another connection":
        other = open_store(Path(store.path), create=False)
        try:
            {"insert": _insert_here, "update": _update_by_sql_here, "delete": _delete_by_sql_here}[kind](other)
        finally:
            other.close()
    else:
        CHANGES[change](store)
    _check_dates(store)
    _check_flagged(store, COLS)
    assert store._record_count() == int(store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    assert len(reads) > n_reads  # read again
    # counted again; the records this store inserts are merged into the dates kept instead
    assert len(counts) == n_counts if change == "insert by this store" else len(counts) > n_counts
    again = _check_aggregates(store)
    assert all(again[k] is not kept[k] for k in kept)  # counted again
    changed = not (store.record_dates().cube.equals(before_dates.cube)
                   and store.flagged_records(COLS, FLAG).equals(before_flagged))
    assert changed == (change != "rollback")  # the change is seen; the rolled-back one is not


def test_update_of_other_columns_keeps_the_dates_not_the_flagged_read(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Geocode and join results (no date column) leave the dates as they are: kept; the
    flagged records' columns may change: read again. An update of a date column recounts."""
    counts = _counted(monkeypatch, "_count_record_dates")
    reads = _counted(monkeypatch, "_read_flagged")
    _check_dates(store)
    _check_flagged(store, [*COLS, "lon"])
    ids = store.flagged_records(["record_id"], FLAG)["record_id"].head(5).tolist()
    with store.write():
        store.update_records(pd.DataFrame({"record_id": ids, "lon": [-85.75] * 5, "lat": [38.25] * 5,
                                           "match_type": ["block"] * 5, "neighborhood": ["RUSSELL"] * 5}))
    _check_dates(store)
    _check_flagged(store, [*COLS, "lon"])
    assert len(counts) == 1 and len(reads) == 2
    with store.write():
        store.update_records(pd.DataFrame({"record_id": ids[:1], "reported_at": ["2016-02-02T02:02:02"]}))
    _check_dates(store)
    assert len(counts) == 2


def _saved_run(path: Path) -> RecordDates:
    """What a run leaves: dates counted, then a commit with `keep_record_dates` on."""
    s = open_store(path, create=False)
    try:
        s.keep_record_dates()
        dates = s.record_dates()
        s.put_json("memo_run", {"done": True})  # the run's last commit saves the dates
        return dates
    finally:
        s.close()


def _fresh_store_dates(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RecordDates, int]:
    """`record_dates` of a new Store of `path` and how many full counts that took."""
    counts = _counted(monkeypatch, "_count_record_dates")
    s = open_store(path, create=False)
    try:
        got, want = s.record_dates(), _fresh_dates(s)
        pd.testing.assert_frame_equal(got.cube, want.cube)
        assert got.odd == want.odd
        return got, len(counts)
    finally:
        s.close()
        monkeypatch.undo()


def test_saved_dates_are_adopted_only_when_the_file_is_unchanged(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's saved dates (`keep_record_dates`) serve the next Store (no count) when nothing
    was committed since; a commit by another connection to any table, an edit in WAL mode, or
    other code (`format`) make it count again; merged inserts are saved as counted ones."""
    import json
    import sqlite3

    path = Path(store.path)
    store.close()
    _saved_run(path)
    _got, counted = _fresh_store_dates(path, monkeypatch)
    assert counted == 0  # adopted: equal to a fresh count (checked inside)

    def other_tool(sql: str, wal: str = "") -> None:
        """Another program's connection (GDAL/QGIS-like): in rollback mode, or in WAL mode
        switched back (``back``) or left in it (``stay``)."""
        conn = sqlite3.connect(path, isolation_level=None)
        register_gpkg_functions(conn)  # the RTree triggers call them
        try:
            if wal:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(sql)
            if wal == "back":
                conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()

    for edit, wal in (("INSERT OR REPLACE INTO meta VALUES ('other_tool', '1')", ""),  # another table
                      ("UPDATE records SET source = 'wal-edit' WHERE fid = 2", "back"),
                      ("UPDATE records SET source = 'wal-stay' WHERE fid = 3", "stay")):
        _saved_run(path)
        other_tool(edit, wal)
        _got, counted = _fresh_store_dates(path, monkeypatch)
        assert counted == 1, edit
    _saved_run(path)
    conn = sqlite3.connect(path, isolation_level=None)
    saved = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'record_dates'").fetchone()[0])
    conn.close()
    assert saved["format"] and saved["counter"]
    # a Store that inserts records merges their dates in, and saves them as a count would give them
    s = open_store(path, create=False)
    s.keep_record_dates()
    s.record_dates()
    _insert_here(s)
    s.close()
    _got, counted = _fresh_store_dates(path, monkeypatch)
    assert counted == 0
    s = open_store(path, create=False)
    with s.write():  # another code version's dates are not taken
        s.conn.execute("UPDATE meta SET value = json_set(value, '$.format', 'other') WHERE key = 'record_dates'")
    s.close()
    _got, counted = _fresh_store_dates(path, monkeypatch)
    assert counted == 1


def test_saved_dates_round_trip_exactly(store: Store) -> None:
    import json

    from geo_lead.store import _dates_from_json, _dates_to_json

    dates = store.record_dates()
    back = _dates_from_json(json.loads(json.dumps(_dates_to_json(dates))))
    pd.testing.assert_frame_equal(back.cube, dates.cube)
    assert back.odd == dates.odd
    assert back.cube["occ_min"].isna().any() or back.cube["rep_min"].notna().all()


# --- division_counts: kept, merged with inserts, saved by a run --------------------------
NAMES = ["RUSSELL", "PORTLAND", "SHAWNEE", "", None]


def _placed(store: Store) -> None:
    """Give the records neighborhoods (some empty or NULL), as a join would."""
    ids = store.read_records(["record_id"])["record_id"].tolist()
    with store.write():
        store.update_records(pd.DataFrame({"record_id": ids,
                                           "neighborhood": [NAMES[i % len(NAMES)] for i in range(len(ids))]}))


def _fresh_divisions(store: Store) -> list[tuple[str, str, int]]:
    """The oracle: `boundaries.division_majority`'s pandas count of a sqlite3 read of every record."""
    r = store.read_table("records", ["neighborhood", "division"])
    r = r[(r["neighborhood"].fillna("") != "") & (r["division"].fillna("") != "")]
    g = r.groupby(["neighborhood", "division"]).size()
    return sorted((str(n), str(d), int(v)) for (n, d), v in g.items())


def _check_divisions(store: Store) -> pd.DataFrame:
    got = store.division_counts()
    assert list(got.columns) == ["neighborhood", "division", "n"] and got["n"].dtype == "int64"
    assert list(got.itertuples(index=False, name=None)) == _fresh_divisions(store)  # sorted by the pair
    return got


def _full_division_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """`_record_columns` reads of every record's (neighborhood, division): full counts."""
    calls: list[Any] = []
    real = Store._record_columns

    def spy(self: Store, columns: list[str], arrow: bool = True, where: str = "") -> Any:
        if columns == ["neighborhood", "division"] and not where:
            calls.append(columns)
        return real(self, columns, arrow, where)

    monkeypatch.setattr(Store, "_record_columns", spy)
    return calls


def _insert_placed(store: Store, record_id: str = "memo-placed") -> None:
    row = _one_record(store, record_id)
    row["neighborhood"], row["division"] = "RUSSELL", "9TH DIVISION"  # a new pair
    with store.write():
        store.upsert_records(row, "2026-01-01T00:00:00Z")


def _move_one(store: Store) -> None:
    rid = store.read_records(["record_id"]).iloc[0, 0]
    with store.write():
        store.update_records(pd.DataFrame({"record_id": [rid], "neighborhood": ["PORTLAND"]}))


def _division_by_sql(store: Store) -> None:
    with store.write():
        store.conn.execute("UPDATE records SET division = 'X DIVISION' WHERE fid = (SELECT MIN(fid) FROM records "
                           "WHERE COALESCE(neighborhood, '') <> '')")


def _rolled_back_insert(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write():
        _insert_placed(store, "memo-rolled")
        _check_divisions(store)  # merged inside the transaction: what a count gives there
        raise RuntimeError("roll back")


DIVISION_CHANGES: dict[str, Callable[[Store], None]] = {
    "insert by this store": _insert_placed, "update by this store": _move_one,
    "update by this connection's SQL": _division_by_sql, "delete by this connection's SQL": _delete_by_sql_here,
    "rollback": _rolled_back_insert,
}


@pytest.mark.parametrize("change", [*DIVISION_CHANGES, "insert by another connection",
                                    "update by another connection"])
def test_division_counts_kept_merged_or_counted_again(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                      change: str) -> None:
    """`division_counts` equals a pandas count of every record after each kind of change:
    the records this Store inserts are added to the kept counts (no full read); any other
    records change (update, delete, another connection, a rollback) counts again; a write to
    another table keeps them; a caller's change of the answer does not reach them."""
    _placed(store)
    reads = _full_division_reads(monkeypatch)
    first = _check_divisions(store)
    first.loc[0, "n"] = -1
    for write in _other_table_writes(store):
        write()
        _check_divisions(store)
    assert len(reads) == 1
    if change.endswith("another connection"):
        other = open_store(Path(store.path), create=False)
        try:
            (_insert_placed if change.startswith("insert") else _move_one)(other)
        finally:
            other.close()
    else:
        DIVISION_CHANGES[change](store)
    after = _check_divisions(store)
    assert len(reads) == (1 if change == "insert by this store" else 2)
    if change == "insert by this store":
        assert ("RUSSELL", "9TH DIVISION", 1) in list(after.itertuples(index=False, name=None))


def _saved_divisions_run(path: Path) -> None:
    """What a run leaves: division counts made, then a commit with `keep_record_dates` on."""
    s = open_store(path, create=False)
    try:
        s.keep_record_dates()
        s.division_counts()
        s.put_json("memo_run", {"done": True})
    finally:
        s.close()


def _fresh_store_divisions(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Full counts a new Store of `path` makes for `division_counts` (checked against the oracle)."""
    reads = _full_division_reads(monkeypatch)
    s = open_store(path, create=False)
    try:
        _check_divisions(s)
        return len(reads)
    finally:
        s.close()
        monkeypatch.undo()


def test_saved_division_counts_are_adopted_only_when_the_file_is_unchanged(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's saved counts serve the next Store (no full read) when nothing was committed
    since; a commit by another connection (any table) or other code (``format``) count again;
    a Store that inserts records adds them and saves what a count gives."""
    import sqlite3

    _placed(store)
    path = Path(store.path)
    store.close()
    _saved_divisions_run(path)
    assert _fresh_store_divisions(path, monkeypatch) == 0
    for edit in ("INSERT OR REPLACE INTO meta VALUES ('other_tool', '1')",
                 "UPDATE records SET neighborhood = 'OTHER TOOL' WHERE fid = 2"):
        _saved_divisions_run(path)
        conn = sqlite3.connect(path, isolation_level=None)
        register_gpkg_functions(conn)
        conn.execute(edit)
        conn.close()
        assert _fresh_store_divisions(path, monkeypatch) == 1, edit
    _saved_divisions_run(path)
    s = open_store(path, create=False)  # a run that inserts: adopted, merged, saved
    s.keep_record_dates()
    _insert_placed(s)
    assert "division_counts" in s._aggregates  # adopted before the insert's write, then merged
    s.close()
    assert _fresh_store_divisions(path, monkeypatch) == 0
    s = open_store(path, create=False)
    with s.write():  # another code version's counts are not taken
        s.conn.execute("UPDATE meta SET value = json_set(value, '$.format', 'other') WHERE key = 'record_aggregates'")
    s.close()
    assert _fresh_store_divisions(path, monkeypatch) == 1


KEPT = ("count_by:source", "count_by:match_type", "beat_check_counts", "count_flagged:lead_eligible",
        "count_flagged:opiate", "division_counts")


def _ask_kept(store: Store) -> dict[str, Any]:
    """Each kept aggregate through its public method."""
    return {"count_by:source": store.count_by("records", "source"),
            "count_by:match_type": store.count_by("records", "match_type"),
            "beat_check_counts": store.beat_check_counts(),
            "count_flagged:lead_eligible": store.count_flagged("lead_eligible"),
            "count_flagged:opiate": store.count_flagged("opiate"),
            "division_counts": _check_divisions(store)}


def _check_kept(store: Store) -> None:
    """Every kept aggregate equals its SQL (or pandas) count of every record, in SQLite's order."""
    got = _ask_kept(store)
    sql = store.conn.execute
    for col in ("source", "match_type"):
        want = sql(f'SELECT "{col}", COUNT(*) FROM records GROUP BY "{col}" ORDER BY "{col}"').fetchall()
        assert list(got[f"count_by:{col}"].items()) == want
    pd.testing.assert_frame_equal(got["beat_check_counts"], _fresh_aggregates(store)["beat_check_counts"])
    for flag in ("lead_eligible", "opiate"):
        n = sql(f'SELECT COUNT(*) FROM records WHERE COALESCE("{flag}", 0) <> 0').fetchone()[0]
        assert got[f"count_flagged:{flag}"] == n


def _full_aggregates(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the aggregates computed over every record (`Store._aggregate` without `new_from`)."""
    calls: list[str] = []
    real = Store._aggregate

    def spy(self: Store, name: str, new_from: int | None = None) -> Any:
        if new_from is None:
            calls.append(name)
        return real(self, name, new_from)

    monkeypatch.setattr(Store, "_aggregate", spy)
    return calls


def _insert_checked(store: Store, record_id: str) -> None:
    """A new record with a new source, match type, beat check, pair and both flags."""
    row = _one_record(store, record_id)
    row["neighborhood"], row["division"], row["source"] = "RUSSELL", "9TH DIVISION", f"src-{record_id}"
    row["match_type"], row["beat_check"], row["opiate"], row[FLAG] = "street", "other", 1, 1
    with store.write():
        store.upsert_records(row, "2026-01-01T00:00:00Z")


def test_kept_aggregates_add_inserted_records_and_serve_the_next_store(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The all-record aggregates (`count_by` of records, `beat_check_counts`, `count_flagged`,
    `division_counts`) of a Store that inserts records are its kept values plus the new records'
    (no query over every record) and equal fresh counts; saved by a run's commit they serve
    the next Store without any such query; an update counts again."""
    _placed(store)
    path = Path(store.path)
    full = _full_aggregates(monkeypatch)
    _check_kept(store)
    assert sorted(full) == sorted(KEPT)
    _insert_checked(store, "kept-1")
    _check_kept(store)
    assert sorted(full) == sorted(KEPT)  # added, not counted again
    assert ("street", "other", 1) in store._aggregates["beat_check_counts"][1]
    store.keep_record_dates()
    store.put_json("memo_run", {"done": True})  # the run's commit saves them
    store.close()
    s = open_store(path, create=False)
    try:
        _check_kept(s)
        assert sorted(full) == sorted(KEPT)  # adopted
        _insert_checked(s, "kept-2")  # adopted before this write's insert, then added to
        _check_kept(s)
        assert sorted(full) == sorted(KEPT)
        _move_one(s)
        _check_kept(s)
        assert sorted(full) == sorted(KEPT * 2)  # an update: every one counted again
    finally:
        s.close()


def test_merge_aggregate_orders_as_sqlite() -> None:
    from geo_lead.store import merge_aggregate

    a = {None: 1, "b": 2, "a": 1}
    b = {"c": 1, None: 2, "a": 5, "B": 1}
    assert list(merge_aggregate("count_by:x", a, b).items()) == [(None, 3), ("B", 1), ("a", 6), ("b", 2), ("c", 1)]
    rows = merge_aggregate("beat_check_counts", [("block", "same", 2), (None, "other", 1)],
                           [("block", "adjacent", 1), ("block", "same", 1)])
    assert rows == [(None, "other", 1), ("block", "adjacent", 1), ("block", "same", 3)]
    assert merge_aggregate("count_flagged:opiate", 3, 4) == 7
    with pytest.raises(ValueError, match="no record aggregate"):
        merge_aggregate("nothing", 1, 2)


def test_saved_values_are_keyed_by_the_state_read_with_them(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved dates and aggregates are adopted under the records' state read in the same read
    transaction as the change counter they were saved with: a commit by another connection
    just after cannot pair them with a later state (they would then look current for records
    that changed)."""
    _placed(store)
    store.keep_record_dates()
    store.record_dates()
    _check_kept(store)
    store.put_json("memo_run", {"done": True})  # the run's commit saves both
    path = Path(store.path)
    store.close()
    s = open_store(path, create=False)
    seen: list[tuple[str, bool]] = []
    for name in ("_dates_state", "records_state"):
        real = getattr(s, name)

        def watched(real: Any = real, name: str = name) -> Any:
            seen.append((name, s.conn.in_transaction))
            return real()

        monkeypatch.setattr(s, name, watched)
    try:
        for adopt in (s._adopt_saved_dates, s._adopt_saved_aggregates):
            seen.clear()
            assert adopt()
            assert seen and all(inside for _name, inside in seen), (adopt.__name__, seen)
    finally:
        s.close()


def _locks_held(path: Path) -> list[str]:
    """The POSIX locks this process holds on `path` (Linux's /proc/locks)."""
    import os

    inode = os.stat(path).st_ino
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if "POSIX" in line and line.split()[4] == str(os.getpid())
            and line.split()[5].rsplit(":", 1)[-1] == str(inode)]


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="reads the locks in /proc/locks (Linux)")
def test_the_change_counter_is_read_with_no_lock_held(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file change counter kept with a run's memos (`_save_meta`, `_saved_meta`) is read
    through a descriptor of its own, whose close drops every POSIX lock this process holds on
    the file, SQLite's too. It was read inside each of a run's writes (36 times in a run of
    the shipped data): another process could then start a write of its own meanwhile, the
    corruption https://www.sqlite.org/howtocorrupt.html (2.2) describes. Saving the memos and
    adopting them now read it with no lock held."""
    import geo_lead.store as store_module

    path = Path(store.path)
    real = store_module._file_header
    held: list[list[str]] = []

    def watched(p: Path) -> Any:
        held.append(_locks_held(path))
        return real(p)

    monkeypatch.setattr(store_module, "_file_header", watched)
    store.keep_record_dates()
    store.record_dates()
    store.put_json("memo_run", {"done": True})  # the commit saves the dates with the counter
    store.close()
    s = open_store(path, create=False)
    calls = _counted(monkeypatch, "_count_record_dates")
    try:
        s.keep_record_dates()
        s.put_json("memo_run", {"done": 2})  # adopts the saved memos, then saves them again
        s.record_dates()
        assert s.get_json("memo_run") == {"done": 2}
    finally:
        s.close()
    assert calls == []  # the saved dates were adopted
    assert len(held) >= 3
    assert held == [[]] * len(held)
