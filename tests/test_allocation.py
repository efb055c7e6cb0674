"""Boundary-aware allocation (issue 13 section 1): hand-built units sharing an edge, points on
and near it; shares, conservation of weight, the `first` rule as the old behaviour, beat
settling, and the score's boundary sensitivity ranks checked by hand."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

from geo_lead import settings
from geo_lead.allocation import (
    boundary_units,
    explode,
    settle_by_beat,
    summary,
    unit_counts,
    unit_shares,
)
from geo_lead.errors import GeoLeadError
from geo_lead.scoring import score_neighborhoods
from geo_lead.spatial_join import join_records

FT = settings.CRS_PROJECTED


def _units() -> gpd.GeoDataFrame:
    """Three 1000 ft squares in a row: A | B | C (edges at x = 1000 and x = 2000), and D
    above B (edge y = 1000 shared with B; corner points with A and C)."""
    geoms = [box(0, 0, 1000, 1000), box(1000, 0, 2000, 1000), box(2000, 0, 3000, 1000),
             box(1000, 1000, 2000, 2000)]
    return gpd.GeoDataFrame({"NH_NAME": ["A", "B", "C", "D"], "NH_CODE": [1, 2, 3, 4],
                             "is_named": [True] * 4}, geometry=geoms, crs=FT)


def _points(xy: list[tuple[float, float] | None]) -> gpd.GeoDataFrame:
    geom = [Point(p) if p is not None else None for p in xy]
    return gpd.GeoDataFrame({"record_id": [f"r{i}" for i in range(len(xy))]},
                            geometry=gpd.GeoSeries(geom, crs=FT), crs=FT)


# Distances from the A|B edge (x = 1000): on it, 10 ft inside A, 49.9 ft inside B (within
# 50 ft), 50.1 ft inside B (not), deep inside C, near the B|D edge, a corner of A, B and D,
# outside every unit, not geocoded.
XY = [(1000, 500), (990, 500), (1049.9, 500), (1050.1, 500), (2500, 500), (1500, 1020),
      (1000, 1000), (5000, 5000), None]


def test_boundary_units_by_hand() -> None:
    units = _units()
    pts = _points(XY)
    joined = join_records(pts, units)
    got = joined["boundary_units"].tolist()
    assert got == ["A;B", "A;B", "A;B", "", "", "B;D", "A;B;D", "", ""]
    # the first-unit rule is the join's as before: a point on the edge goes to A (file order)
    assert joined["neighborhood"].tolist() == ["A", "A", "B", "B", "C", "D", "A", "", ""]
    # tolerance 0: only points exactly on an edge are shared
    at0 = boundary_units(pts.geometry, units, (joined["neighborhood"] != "").to_numpy(), 0.0)
    assert at0.tolist() == ["A;B", "", "", "", "", "", "A;B;D", "", ""]
    # in another CRS the answer is the same (distances are taken in EPSG:2246)
    again = join_records(pts.to_crs(settings.CRS_STORE), units.to_crs(settings.CRS_STORE))
    assert again["boundary_units"].tolist() == got


def test_shares_sum_to_one_and_weight_is_conserved() -> None:
    units = _units()
    joined = join_records(_points(XY), units)
    joined["weight"] = [1.0, 2.0, 7.0, 1.0, 1 / 0.14, 3.0, 1.0, 5.0, 1.0]
    shares = unit_shares(joined, "split")
    per_record = shares.groupby("row")["share"].sum()
    np.testing.assert_allclose(per_record.to_numpy(), 1.0)
    placed = joined["neighborhood"] != ""
    assert set(shares["row"]) == set(joined.index[placed])  # no unit, no row
    assert shares.loc[shares["row"] == 6, "share"].tolist() == pytest.approx([1 / 3] * 3)
    counts = unit_counts(joined, shares, list(units["NH_NAME"]))
    assert counts.sum() == pytest.approx(joined.loc[placed, "weight"].sum())
    # by hand: A gets r0/2 + r1/2 + r2/2 + r6/3; B gets the same halves + r3 + r5/2 + r6/3
    assert counts[0] == pytest.approx(0.5 + 1.0 + 3.5 + 1 / 3)
    assert counts[1] == pytest.approx(0.5 + 1.0 + 3.5 + 1.0 + 1.5 + 1 / 3)
    assert counts[2] == pytest.approx(1 / 0.14)
    assert counts[3] == pytest.approx(1.5 + 1 / 3)
    shared_only = unit_counts(joined, shares, list(units["NH_NAME"]), only_shared=True)
    assert shared_only[2] == 0 and shared_only[1] == pytest.approx(counts[1] - 1.0)
    s = summary(joined, "split")
    assert s["placed"] == 7 and s["shared"] == 5 and s["shared_weight"] == pytest.approx(1 + 2 + 7 + 3 + 1)


def test_rule_first_is_the_old_behaviour() -> None:
    joined = join_records(_points(XY), _units())
    shares = unit_shares(joined, "first")
    assert not shares["shared"].any() and (shares["share"] == 1.0).all()
    old = joined.loc[joined["neighborhood"] != "", "neighborhood"]
    assert shares.set_index("row")["unit"].to_dict() == old.to_dict()
    with pytest.raises(GeoLeadError, match="--boundary"):
        unit_shares(joined, "nearest")


def test_explode_keeps_points_and_weights() -> None:
    joined = join_records(_points(XY), _units())
    joined["weight"] = 2.0
    rows = explode(joined, "split")
    assert rows.groupby("record_row")["weight"].sum().to_dict() == {i: 2.0 for i in range(7)}
    for rec, grp in rows.groupby("record_row"):  # a record's parts lie on its own point
        assert all(g.equals(joined.geometry[rec]) for g in grp.geometry)


def test_settle_by_beat_takes_the_side_its_beat_is_on() -> None:
    units = _units()
    pts = _points([(1000, 500), (1010, 300), (1500, 1010)])
    # beat 111 covers A (its edge runs along the A|B street); beat 222 straddles B and D
    beats = gpd.GeoDataFrame({"beat": ["111", "222"]},
                             geometry=[box(0, 0, 1000, 1000), box(1000, 500, 2000, 1500)], crs=FT)
    joined = join_records(pts.assign(beat=["111", "111", "222"]), units, beats=beats)
    # r0 and r1 (beat 111, near A|B): settled to A; r2 (beat 222 straddles B|D): still shared
    assert joined["boundary_units"].tolist() == ["A", "A", "B;D"]
    assert joined["neighborhood"].tolist() == ["A", "B", "D"]  # the join's first unit, as before
    shares = unit_shares(joined, "split")
    assert shares[shares["row"] == 1]["unit"].tolist() == ["A"]  # whole to its beat's side
    assert unit_shares(joined, "first").set_index("row")["unit"].to_dict() == {0: "A", 1: "B", 2: "D"}
    # without beats (or without a beat code) nothing is settled
    assert settle_by_beat(join_records(pts, units), units, None).eq("").all()
    unknown = join_records(pts.assign(beat=["999", "", "222"]), units, beats=beats)
    assert unknown["boundary_units"].tolist() == ["A;B", "A;B", "B;D"]


def test_settling_geometry_is_made_once_per_distinct_input() -> None:
    """The shrunk beats and units are memoised by `settle_geometry_key`: the same inputs (new
    frames, equal content) hit; a change of any input (beat codes, beat geometry, beats' CRS,
    unit names, unit geometry, units' CRS, name column, tolerance) misses, and the settled
    units equal those computed with an empty memo."""
    from geo_lead import allocation

    units = _units()
    pts = _points([(1000, 500), (1010, 300), (1500, 1010)]).assign(beat=["111", "111", "222"])
    beats = gpd.GeoDataFrame({"beat": ["111", "222"]},
                             geometry=[box(0, 0, 1000, 1000), box(1000, 500, 2000, 1500)], crs=FT)
    allocation._SETTLE_MEMO.clear()
    first = join_records(pts, units, beats=beats)["boundary_units"].tolist()
    made = allocation._settle_geometry(beats, units, 10.0, "NH_NAME")
    assert allocation._settle_geometry(beats.copy(), units.copy(), 10.0, "NH_NAME") is made
    assert join_records(pts, units, beats=beats.copy())["boundary_units"].tolist() == first == ["A", "A", "B;D"]
    renamed = units.assign(NAME2=units["NH_NAME"])
    changed = {
        "beat codes": (beats.assign(beat=["112", "222"]), units, 10.0, "NH_NAME"),
        "beat geometry": (beats.set_geometry([box(0, 0, 999, 1000), box(1000, 500, 2000, 1500)]),
                          units, 10.0, "NH_NAME"),
        "beats' CRS": (beats.set_crs(2245, allow_override=True), units, 10.0, "NH_NAME"),
        "unit names": (beats, units.assign(NH_NAME=["A", "B", "C", "E"]), 10.0, "NH_NAME"),
        "unit geometry": (beats, units.set_geometry([*units.geometry[:3], box(1000, 1000, 2000, 2100)]),
                          10.0, "NH_NAME"),
        "units' CRS": (beats, units.set_crs(2245, allow_override=True), 10.0, "NH_NAME"),
        "name column": (beats, renamed.assign(NAME2=["A", "B", "C", "X"]), 10.0, "NAME2"),
        "tolerance": (beats, units, 11.0, "NH_NAME"),
    }
    keys = {allocation.settle_geometry_key(beats, units, 10.0, "NH_NAME")}
    for what, args in changed.items():
        key = allocation.settle_geometry_key(*args)
        assert key not in keys, what
        keys.add(key)
        assert allocation._settle_geometry(*args) is not made, what
    # a memo full of other inputs evicts the oldest; results never depend on the memo
    allocation._SETTLE_MEMO.clear()
    assert join_records(pts, units, beats=beats)["boundary_units"].tolist() == first
    assert len(allocation._SETTLE_MEMO) <= allocation.SETTLE_MEMO_SIZE


def test_settling_geometry_is_kept_across_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new process (memo empty) reads the shrunk beats and units kept in the result cache:
    no buffer is computed, and every geometry equals a fresh computation's (WKB, bit for bit).
    Fails on the old code (it buffers again)."""
    from geo_lead import allocation, result_cache

    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    units = _units()
    beats = gpd.GeoDataFrame({"beat": ["111", "222"]},
                             geometry=[box(0, 0, 1000, 1000), box(1000, 500, 2000, 1500)], crs=FT)
    allocation._SETTLE_MEMO.clear()
    with result_cache.switched_off():
        fresh = allocation._settle_geometry(beats, units, 10.0, "NH_NAME")
    allocation._SETTLE_MEMO.clear()
    allocation._settle_geometry(beats, units, 10.0, "NH_NAME")  # computed and kept
    allocation._SETTLE_MEMO.clear()

    def no_buffer(*_a: object, **_k: object) -> None:
        raise AssertionError("buffered again")

    monkeypatch.setattr(allocation.shapely, "buffer", no_buffer)
    kept = allocation._settle_geometry(beats, units, 10.0, "NH_NAME")
    monkeypatch.undo()
    for name in ("shrunk", "unit_geom"):
        a, b = getattr(fresh, name), getattr(kept, name)
        assert list(a) == list(b)
        assert [g.wkb for g in a.values()] == [g.wkb for g in b.values()], name
    assert kept.piece("111", "A") is not None and kept.piece("111", "A").equals_exact(fresh.piece("111", "A"), 0)
    allocation._SETTLE_MEMO.clear()


def _scored(records: pd.DataFrame, rule: str) -> pd.DataFrame:
    units = _units().to_crs(settings.CRS_STORE)
    pop = np.array([1000.0, 1000.0, 1000.0, 1000.0])
    return score_neighborhoods(records, units, pop, area="city", n_boot=50, boundary=rule,
                               weights={"count": 1.0}).set_index("neighborhood")


def _records(units_of: list[str], boundary: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"neighborhood": units_of, "boundary_units": boundary,
                         "occurred_at": "2017-06-01T12:00:00", "reported_at": "2017-06-01T13:00:00",
                         "source_file": "x.csv", "lead_eligible": True})


def test_score_split_first_and_boundary_sensitivity_by_hand() -> None:
    # A: 3 whole; B: 2 whole; C: 1 whole; 4 records on the A|B street (first unit A);
    # D: 2.5 whole-ish -> 2 whole + 1 shared with B.
    recs = _records(["A"] * 3 + ["B"] * 2 + ["C"] + ["A"] * 4 + ["D"] * 2 + ["B"],
                    [""] * 6 + ["A;B"] * 4 + [""] * 2 + ["B;D"])
    first = _scored(recs, "first")
    split = _scored(recs, "split")
    # first: A 7, B 3, C 1, D 2 (the old counts, ranks by count)
    assert first["count"].to_dict() == {"A": 7, "B": 3, "C": 1, "D": 2}
    assert first["count_shared"].sum() == 0
    assert first["rank"].to_dict() == {"A": 1, "B": 2, "D": 3, "C": 4}
    # split: A 3 + 2 = 5; B 2 + 2 + 0.5 = 4.5; D 2 + 0.5 = 2.5; C 1
    assert split["count"].to_dict() == pytest.approx({"A": 5.0, "B": 4.5, "C": 1.0, "D": 2.5})
    assert split["count_shared"].to_dict() == pytest.approx({"A": 2.0, "B": 2.5, "C": 0.0, "D": 0.5})
    assert split["count"].sum() == pytest.approx(len(recs))
    # sensitivity: B best = 2 + 4 + 1 = 7 (A drops to 3) -> rank 1; B worst = 2 (A 7, D 3) -> rank 3
    assert split.loc["B", "rank_boundary_best"] == 1 and split.loc["B", "rank_boundary_worst"] == 3
    # A best = 7 -> 1; A worst = 3 (B 2 + 4 + 0.5 = 6.5) -> rank 2
    assert split.loc["A", "rank_boundary_best"] == 1 and split.loc["A", "rank_boundary_worst"] == 2
    # C shares nothing: its rank in both
    assert split.loc["C", "rank_boundary_best"] == split.loc["C", "rank_boundary_worst"] == split.loc["C", "rank"]


def test_bootstrap_with_whole_records_is_unchanged_by_sharing_columns() -> None:
    # No record near a shared edge: split and first give the same scores and intervals
    recs = _records(["A"] * 5 + ["B"] * 3 + ["C"] * 2 + ["D"], [""] * 11)
    a, b = _scored(recs, "split"), _scored(recs, "first")
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")), pd.DataFrame(b.drop(columns="geometry")))


def test_join_store_keeps_boundary_units_incremental(tmp_path: Path) -> None:
    from geo_lead.sources import RECORD_COLUMNS
    from geo_lead.spatial_join import META_JOIN_BOUNDARY, join_store
    from geo_lead.store import open_store

    units = _units().to_crs(settings.CRS_STORE)
    lonlat = _points([(1000, 500), (1030, 500), (1500, 500)]).to_crs(settings.CRS_STORE).geometry
    rows = []
    for i in range(len(lonlat)):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-03-01T10:00:00", source_line=i + 2, content_hash=f"h{i}")
        rows.append(row)
    store = open_store(tmp_path / "s.gpkg")
    with store.write():
        store.upsert_records(pd.DataFrame(rows), "2026-01-01T00:00:00Z")
        store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(3)],
                                           "lon": [p.x for p in lonlat], "lat": [p.y for p in lonlat]}))
    join_store(store, units, beats=None)
    got = store.read_records(["record_id", "neighborhood", "boundary_units"]).set_index("record_id")
    assert got["boundary_units"].tolist() == ["A;B", "A;B", ""]
    assert store.get_json(META_JOIN_BOUNDARY)["tolerance_ft"] == settings.BOUNDARY_TOLERANCE_FT
    # a smaller tolerance rejoins every record: the point 30 ft from the edge is no longer shared
    join_store(store, units, tolerance_ft=20, beats=None)
    got = store.read_records(["record_id", "boundary_units"]).set_index("record_id")
    assert got["boundary_units"].tolist() == ["A;B", "", ""]
    store.close()
