"""Scoring: EB against esda, hand-computed counts/densities/rates, windows, yearly scaling,
bootstrap rank intervals, the area, and the store edge."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from esda.smoothing import Empirical_Bayes
from shapely.geometry import box

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.scoring import (
    descending_ranks,
    empirical_bayes,
    parse_weights,
    score_neighborhoods,
    score_store,
    scores_json,
    years_covered,
)
from geo_lead.sources import RECORD_COLUMNS
from geo_lead.store import open_store

MILE_FT = 5280.0


# --- Empirical Bayes ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eb_equals_esda(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = rng.integers(500, 20_000, size=12).astype(float)
    e = rng.poisson(b * rng.uniform(0.001, 0.02, size=12)).astype(float)
    ours = empirical_bayes(e, b)
    esda = Empirical_Bayes(e, b).r.ravel()
    assert ours == pytest.approx(esda, rel=1e-12)


def test_eb_equals_esda_on_stl_example_shape() -> None:
    # Hand-made inputs with one tiny-population unit: EB pulls it towards the mean.
    e = np.array([0.0, 3.0, 40.0, 12.0, 1.0])
    b = np.array([1000.0, 2000.0, 9000.0, 4000.0, 50.0])
    ours = empirical_bayes(e, b)
    assert ours == pytest.approx(Empirical_Bayes(e, b).r.ravel(), rel=1e-12)
    assert abs(ours[4] - e.sum() / b.sum()) < abs(e[4] / b[4] - e.sum() / b.sum())


def test_eb_clips_phi_at_zero_hand_computed() -> None:
    # Equal raw rates: s2 = 0, phi = -theta/mean(b) < 0 -> clipped -> every unit gets theta.
    e = np.array([1.0, 2.0, 4.0])
    b = np.array([1000.0, 2000.0, 4000.0])
    assert empirical_bayes(e, b) == pytest.approx([0.001, 0.001, 0.001])


def test_descending_ranks_ties_share_best() -> None:
    assert descending_ranks(np.array([0.2, 0.9, 0.2, 0.5])).tolist() == [3, 1, 3, 2]


# --- a hand-built city -----------------------------------------------------------------------
def _city() -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Four units in a row: A, B, C are 1 sq mi, D is 2 sq mi; X is an unnamed remainder."""
    geoms = [box(0, 0, MILE_FT, MILE_FT), box(MILE_FT, 0, 2 * MILE_FT, MILE_FT),
             box(2 * MILE_FT, 0, 3 * MILE_FT, MILE_FT), box(3 * MILE_FT, 0, 5 * MILE_FT, MILE_FT),
             box(5 * MILE_FT, 0, 6 * MILE_FT, MILE_FT)]
    nh = gpd.GeoDataFrame({"NH_CODE": [1, 2, 3, 4, 0], "NH_NAME": ["A", "B", "C", "D", "UNNAMED #9"],
                           "is_named": [True, True, True, True, False]},
                          geometry=geoms, crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    return nh, np.array([1000.0, 2000.0, 4000.0, 8000.0, 10.0])


def _records(counts: dict[str, int], source_file: str = "full.csv", day: str = "2017-06-01",
             flag: bool = True) -> pd.DataFrame:
    rows = []
    for name, n in counts.items():
        rows += [{"neighborhood": name, "occurred_at": f"{day}T12:00:00", "reported_at": f"{day}T13:00:00",
                  "source_file": source_file, "lead_eligible": flag}] * n
    return pd.DataFrame(rows)


def test_hand_computed_counts_density_rates() -> None:
    nh, pop = _city()
    recs = pd.concat([_records({"A": 30, "B": 10, "C": 4, "D": 8, "UNNAMED #9": 2, "": 5}),
                      _records({"A": 7}, flag=False)], ignore_index=True)
    s = score_neighborhoods(recs, nh, pop, area="city", n_boot=200).set_index("neighborhood")
    assert s.loc[["A", "B", "C", "D", "UNNAMED #9"], "count"].tolist() == [30, 10, 4, 8, 2]
    assert s.loc["D", "density_per_sqmi"] == pytest.approx(4.0, rel=1e-6)   # 8 / 2 sq mi
    assert s.loc["A", "density_per_sqmi"] == pytest.approx(30.0, rel=1e-6)
    assert s.loc["A", "area_sqmi"] == pytest.approx(1.0, rel=1e-6)
    assert s.loc["B", "rate_per_1000"] == pytest.approx(5.0)                 # 10 / 2000 * 1000
    assert s.loc["A", "share"] == pytest.approx(30 / 54)                     # 54 in the area's units
    # EB over the named, ranked units only, compared with esda
    e = np.array([30.0, 10.0, 4.0, 8.0])
    b = pop[:4]
    expected = Empirical_Bayes(e, b).r.ravel() * 1000
    assert s.loc[["A", "B", "C", "D"], "eb_rate_per_1000"].tolist() == pytest.approx(expected.tolist())
    # the remainder piece is counted but not ranked
    assert pd.isna(s.loc["UNNAMED #9", "rank"]) and pd.isna(s.loc["UNNAMED #9", "eb_rate_per_1000"])
    assert s.loc["A", "rank"] == 1
    # composite: each metric over its max, equal weights
    dens = np.array([30, 10, 4, 4.0])
    score = (e / e.max() + dens / dens.max() + expected / expected.max()) / 3
    assert s.loc[["A", "B", "C", "D"], "score"].tolist() == pytest.approx(score.tolist())
    assert s.loc[["A", "B", "C", "D"], "rank"].tolist() == descending_ranks(score).tolist()


def test_weights_override() -> None:
    nh, pop = _city()
    recs = _records({"A": 5, "D": 9})
    s = score_neighborhoods(recs, nh, pop, area="city", weights={"count": 1.0}, n_boot=50)
    top = s.iloc[0]
    assert top["neighborhood"] == "D" and top["score"] == pytest.approx(1.0)
    assert parse_weights("count=0.5, eb_rate_per_1000=0.5") == {"count": 0.5, "eb_rate_per_1000": 0.5}
    with pytest.raises(GeoLeadError, match="NAME=NUMBER"):
        parse_weights("count")
    with pytest.raises(GeoLeadError, match="use one or more of"):
        parse_weights("bogus=1")


def test_bootstrap_is_seeded_and_brackets_rank() -> None:
    nh, pop = _city()
    recs = _records({"A": 12, "B": 10, "C": 11, "D": 3})
    one = score_neighborhoods(recs, nh, pop, area="city", n_boot=300, seed=7)
    two = score_neighborhoods(recs, nh, pop, area="city", n_boot=300, seed=7)
    pd.testing.assert_frame_equal(one.drop(columns="geometry"), two.drop(columns="geometry"))
    ranked = one[one["rank"].notna()]
    assert (ranked["rank_low"] <= ranked["rank"]).all() and (ranked["rank"] <= ranked["rank_high"]).all()
    # close counts in A, B, C: their ranks are uncertain
    assert (ranked.set_index("neighborhood").loc[["A", "B", "C"], "rank_high"]
            - ranked.set_index("neighborhood").loc[["A", "B", "C"], "rank_low"]).max() >= 1


def test_bootstrap_certain_when_counts_far_apart() -> None:
    nh, pop = _city()
    recs = _records({"A": 400, "B": 60, "C": 8, "D": 0})
    s = score_neighborhoods(recs, nh, pop, area="city", n_boot=300).set_index("neighborhood")
    for name in "ABCD":
        assert s.loc[name, "rank_low"] == s.loc[name, "rank"] == s.loc[name, "rank_high"]


def test_window_and_per_year_scaling() -> None:
    nh, pop = _city()
    # A sample file (fraction 0.15: its records carry the frame weight 1/0.15, as
    # geo_lead.frames gives them) covering exactly one year of report dates. Since issue 13
    # `count` is the weighted count (frame weight x share), so it is 6/0.15 here, not 6.
    recs = pd.concat([
        _records({"A": 3}, source_file="crime_data_2016_drug_sample.csv", day="2016-01-01"),
        _records({"A": 3}, source_file="crime_data_2016_drug_sample.csv", day="2016-12-31"),
        _records({"B": 4}, source_file="full.csv", day="2019-03-01"),
    ], ignore_index=True)
    recs["weight"] = np.where(recs["source_file"] == "full.csv", 1.0, 1 / 0.15)
    s = score_neighborhoods(recs, nh, pop, area="city", until="2016-12-31", n_boot=20).set_index("neighborhood")
    years = 365 / 365.25  # Jan 1 13:00 .. Dec 31 13:00
    assert s.loc["A", "count"] == pytest.approx(6 / 0.15) and s.loc["B", "count"] == 0
    assert s.loc["A", "count_per_year"] == pytest.approx(6 / 0.15 / years)
    s2 = score_neighborhoods(recs, nh, pop, area="city", since="2017-01-01", n_boot=20).set_index("neighborhood")
    assert s2.loc["A", "count"] == 0 and s2.loc["B", "count"] == 4
    with pytest.raises(GeoLeadError, match="before"):
        score_neighborhoods(recs, nh, pop, area="city", since="2018-01-01", until="2017-01-01")


def test_years_covered_merges_overlaps() -> None:
    a = _records({"A": 1}, source_file="a.csv", day="2016-01-01")
    b = _records({"A": 1}, source_file="a.csv", day="2016-07-02")
    c = _records({"A": 1}, source_file="b.csv", day="2016-04-01")
    d = _records({"A": 1}, source_file="b.csv", day="2016-12-31")
    got = years_covered(pd.concat([a, b, c, d], ignore_index=True))
    assert got == pytest.approx(365 / 365.25)


def test_first_division_area_and_errors() -> None:
    nh, pop = _city()
    fd = gpd.GeoDataFrame({"name": ["1ST DIVISION"]}, geometry=[box(0, 0, 2.2 * MILE_FT, MILE_FT)],
                          crs=settings.CRS_PROJECTED)
    recs = _records({"A": 3, "B": 2, "C": 9})
    s = score_neighborhoods(recs, nh, pop, first_division=fd, n_boot=20).set_index("neighborhood")
    assert s["in_area"].to_dict() == {"A": True, "B": True, "C": False, "D": False, "UNNAMED #9": False}
    assert s.loc["A", "share"] == pytest.approx(0.6)
    assert pd.isna(s.loc["C", "rank"]) and s.loc["C", "count"] == 9
    assert [r["neighborhood"] for r in scores_json(s.reset_index())] == ["A", "B"]
    with pytest.raises(GeoLeadError, match="indicator 'nope'"):
        score_neighborhoods(recs, nh, pop, indicator="nope", first_division=fd)
    with pytest.raises(GeoLeadError, match="boundaries rebuild"):
        score_neighborhoods(recs, nh, pop)
    with pytest.raises(GeoLeadError, match="--area"):
        score_neighborhoods(recs, nh, pop, area="county")


def test_json_keys_exact() -> None:
    nh, pop = _city()
    s = score_neighborhoods(_records({"A": 3}), nh, pop, area="city", n_boot=10)
    keys = set(scores_json(s)[0])
    assert keys == {"neighborhood", "count", "count_shared", "count_per_year", "density_per_sqmi", "population",
                    "rate_per_1000", "eb_rate_per_1000", "score", "rank", "rank_low", "rank_high",
                    "rank_boundary_best", "rank_boundary_worst"}


def test_score_store_writes_layer(store_path: Path) -> None:
    nh, pop = _city()
    recs = _records({"A": 3, "B": 1})
    rows = []
    for i, r in enumerate(recs.to_dict("records")):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at=r["occurred_at"], reported_at=r["reported_at"],
                   source_file="full.csv", source_line=i + 2, content_hash=f"h{i}")
        rows.append(row)
    store = open_store(store_path)
    try:
        with store.write():
            store.upsert_records(pd.DataFrame(rows), "2026-01-01T00:00:00Z")
            store.update_records(pd.DataFrame({"record_id": [f"r{i}" for i in range(len(rows))],
                                               "neighborhood": recs["neighborhood"],
                                               "lead_eligible": [1] * len(rows)}))
        scores = score_store(store, area="city", neighborhoods=nh, population=pd.Series(pop), n_boot=20)
    finally:
        store.close()
    layer = gpd.read_file(store_path, layer="scores")
    assert layer.crs.to_epsg() == 4326 and len(layer) == len(nh)
    assert set(layer.columns) >= {"neighborhood", "NH_CODE", "is_named", "in_area", "area_sqmi", "count",
                                  "share", "count_per_year", "density_per_sqmi", "population",
                                  "rate_per_1000", "eb_rate_per_1000", "score", "rank", "rank_low",
                                  "rank_high", "indicator"}
    assert layer.set_index("neighborhood").loc["A", "count"] == 3
    assert scores.iloc[0]["neighborhood"] == "A"


def test_cli_score_json_on_real_boundaries(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.cli import main

    nh = load_neighborhoods()

    def point(name: str) -> tuple[float, float]:
        p = nh[nh["NH_NAME"] == name].geometry.iloc[0].representative_point()
        return p.x, p.y

    plan = [("RUSSELL", "1ST DIVISION")] * 6 + [("PORTLAND", "1ST DIVISION")] * 3 + \
           [("SHAWNEE", "2ND DIVISION"), (None, "1ST DIVISION")]
    rows, geo = [], []
    for i, (name, division) in enumerate(plan):
        row = {c: "" for c in RECORD_COLUMNS}
        row.update(record_id=f"r{i}", occurred_at="2017-03-01T10:00:00", reported_at="2017-03-01T11:00:00",
                   source_file="crime_data_2017_drug_sample.csv", source_line=i + 2,
                   content_hash=f"h{i}", division=division)
        rows.append(row)
        lon, lat = point(name) if name else (np.nan, np.nan)
        geo.append({"record_id": f"r{i}", "lon": lon, "lat": lat, "lead_eligible": 1})
    store = open_store(store_path)
    with store.write():
        store.upsert_records(pd.DataFrame(rows), "2026-01-01T00:00:00Z")
        store.update_records(pd.DataFrame(geo))
    store.close()
    csv_path = store_path.with_name("out.csv")
    assert main(["score", "--store", str(store_path), "--json", "--replicates", "50",
                 "--csv", str(csv_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    # issue 14: scoring uses LMPD's official First Division (the shipped first_division.geojson),
    # which adds BUTCHERTOWN to the neighborhoods LMPD's description names
    assert {o["neighborhood"] for o in out} == {*settings.FIRST_DIVISION_DESCRIBED, "BUTCHERTOWN"}
    top = out[0]
    assert top["neighborhood"] == "RUSSELL" and top["count"] == 6 and top["rank"] == 1
    # issue 13 adds count_shared and the boundary sensitivity ranks
    assert list(top) == ["neighborhood", "count", "count_shared", "count_per_year", "density_per_sqmi",
                         "population", "rate_per_1000", "eb_rate_per_1000", "score", "rank", "rank_low",
                         "rank_high", "rank_boundary_best", "rank_boundary_worst"]
    assert pd.read_csv(csv_path)["count"].sum() == 10  # Shawnee's record is counted (not in the area)
    assert main(["score", "--store", str(store_path)]) == 0
    text = capsys.readouterr().out
    assert "records: 11 = 10 in a neighborhood + 0 outside every neighborhood + 1 not geocoded" in text
    assert "*RUSSELL" in text
    assert main(["score", "--store", str(store_path), "--indicator", "nope"]) == 2
    assert "indicator 'nope'" in capsys.readouterr().err
    assert main(["score", "--store", str(store_path.with_name("missing.gpkg"))]) == 2


def test_real_shipped_data_end_to_end(store_path: Path) -> None:
    """Ingest the shipped LMPD files, geocode offline, join, score: accounting and invariants."""
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.division_records import derive_first_division
    from geo_lead.geocode import geocode_store
    from geo_lead.ingest import ingest_files
    from geo_lead.spatial_join import join_store

    store = open_store(store_path)
    try:
        ingest_files(store, list(settings.SHIPPED_LMPD_FILES))
        geocode_store(store)
        counts = join_store(store)
        assert counts["records"] == store.count("records")
        assert counts["records"] == counts["joined"] + counts["outside"] + counts["not_geocoded"]
        _fd, members = derive_first_division(store, load_neighborhoods())
        chosen = set(members.loc[members["member"], "NH_NAME"])
        # the records' own division puts LMPD's described neighborhoods in the First Division
        assert set(settings.FIRST_DIVISION_DESCRIBED) <= chosen
        scores = score_store(store, n_boot=100)
        layer_rows = store.count("scores")
    finally:
        store.close()
    assert layer_rows == 90
    ranked = scores[scores["rank"].notna()]
    assert set(settings.PILOT_NEIGHBORHOODS) <= set(ranked["neighborhood"])
    assert ((ranked["rank_low"] <= ranked["rank"]) & (ranked["rank"] <= ranked["rank_high"])).all()
    assert ranked["share"].sum() <= 1.0 + 1e-9
    # EB over the ranked units equals esda on the same counts and populations
    eb = Empirical_Bayes(ranked["count"].to_numpy(float), ranked["population"].to_numpy(float)).r.ravel()
    if ranked["eb_rate_per_1000"].nunique() > 1:  # phi > 0: esda agrees (it does not clip)
        assert ranked["eb_rate_per_1000"].to_numpy() == pytest.approx(eb * 1000)


def test_cli_score_before_geocoding_says_what_to_do(store_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from geo_lead.cli import main

    row = {c: "" for c in RECORD_COLUMNS}
    row.update(record_id="r0", occurred_at="2017-03-01T10:00:00", source_line=2, content_hash="h")
    store = open_store(store_path)
    with store.write():
        store.upsert_records(pd.DataFrame([row]), "2026-01-01T00:00:00Z")
    store.close()
    assert main(["score", "--store", str(store_path)]) == 2
    assert "no coordinates yet; run `geo-lead geocode" in capsys.readouterr().err


def test_years_covered_falls_back_to_occurrence_date() -> None:
    recs = pd.DataFrame({"source_file": ["a.csv", "a.csv"], "reported_at": ["", ""],
                         "occurred_at": ["2020-01-01T00:00:00", "2020-07-01T12:00:00"]})
    assert years_covered(recs) == pytest.approx(182.5 / 365.25)
    assert years_covered(recs, since="2020-04-01") == pytest.approx((91 + 0.5) / 365.25)


def test_record_classes_with_no_record_in_the_window() -> None:
    """An empty window (e.g. `score --since` before the data) gives empty classes, not a TypeError."""
    import numpy as np
    import pandas as pd

    from geo_lead.scoring import record_classes

    records = pd.DataFrame({"weight": pd.Series([], dtype=float)})
    shares = pd.DataFrame({"row": pd.Series([], dtype=int), "unit": pd.Series([], dtype=str),
                           "share": pd.Series([], dtype=float), "shared": pd.Series([], dtype=bool)})
    sizes, contrib = record_classes(records, shares, 3, pd.Series({"A": 0, "B": 1, "C": 2}),
                                    np.ones(3, dtype=bool))
    assert sizes.tolist() == [0, 0, 0] and contrib.shape == (3, 3)
