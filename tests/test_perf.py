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


def _make_store(path: Path, lonlat: list[tuple[float, float] | None], flags: list[int]) -> None:
    rows = []
    for i, _ in enumerate(lonlat):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-05-01T10:00:00", source_line=i + 2,
                   source_file="x.csv", content_hash=f"h{i}", address_raw=f"{100 * i} BLOCK MAIN ST")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["lead_eligible"] = flags
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

    def counting(records, neighborhoods, name_column="NH_NAME"):  # type: ignore[no-untyped-def]
        joined_sizes.append(len(records))
        return real(records, neighborhoods, name_column)

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
    from geo_lead import boundaries

    nh = load_neighborhoods()
    pts = _points(nh)
    _make_store(store_path, [pts["RUSSELL"]] * 6 + [pts["PORTLAND"]] * 6 + [pts["OUTSIDE"], None],
                [1] * 14)
    store = open_store(store_path)
    try:
        with store.write():
            store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(14)],
                                               "division": ["1ST DIVISION"] * 6 + ["2ND DIVISION"] * 6 + ["", ""]}))
        before, members_before = boundaries.derive_first_division(store, nh)  # joins in memory
        spatial_join.join_store(store, nh)
        assert boundaries._join_current(store, nh, set(store.columns("records")))
        after, members_after = boundaries.derive_first_division(store, nh)  # reads the stored join
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
        # the analysis columns go through Arrow; a covering-index scan (occurred_at,
        # record_id: another row order) stays on sqlite3
        assert used[1:] == [True, False, False]
        with store.write():  # inside a transaction uncommitted rows must be seen: sqlite3
            store.conn.execute("UPDATE records SET neighborhood = 'X' WHERE record_id = 'r0'")
            assert store.read_records(["neighborhood", "lon"])["neighborhood"].iloc[0] == "X"
        assert used[-1] is False
    finally:
        store.close()
