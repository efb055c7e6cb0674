"""Hotspots: Gi* against esda's documented values and a hand-computed case, KDE, PAI/PEI."""

from __future__ import annotations

import math
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from libpysal.weights import DistanceBand, W

from geo_lead import settings
from geo_lead.boundaries import load_neighborhoods
from geo_lead.errors import GeoLeadError
from geo_lead.hotspots import (
    MAX_PERMUTATIONS,
    attainable_levels,
    bandwidth_ft,
    gistar,
    gistar_labels,
    gistar_grid,
    grid_counts,
    hotspots,
    kde_surface,
    label_gistar,
    loo_log_likelihood,
    make_grid,
    max_capture,
    pai,
    pei,
    permutations_for,
    record_weights,
    smallest_p,
    study_area,
)

FIRST_DIVISION = ["BUTCHERTOWN", "CENTRAL BUSINESS DISTRICT", "PHOENIX HILL", "PORTLAND", "RUSSELL"]


def test_gistar_reproduces_esda_documented_values() -> None:
    # esda's own test (esda/tests/test_getisord.py::TestGLocal::test_star_binary).
    points = np.array([(10, 10), (20, 10), (40, 10), (15, 20), (30, 20), (30, 30)])
    y = np.array([2, 3, 3.2, 5, 8, 7])
    out = gistar(y, DistanceBand(points, threshold=15), permutations=999, seed=10)
    assert out["gi_z"].iloc[0] == pytest.approx(-1.39727626, rel=1e-6)
    # esda documents p_sim[0] = 0.102 = (101 + 1) / 1000: the 101 permutations strictly below
    # the observed G*. 109 more permutations tie with it (only 5 values can be drawn); "at least
    # as extreme" counts them too: (101 + 109 + 1) / 1000.
    assert out["p_sim"].iloc[0] == pytest.approx(0.211)
    # Where z > 0, esda's folded p counts ">=" as we do: the values are esda's, seed for seed.
    esda_p = {2: 0.195, 4: 0.176, 5: 0.196}  # esda 2.9 p_sim for this example, seed 10
    for i, p in esda_p.items():
        assert out["gi_z"].iloc[i] > 0 and out["p_sim"].iloc[i] == pytest.approx(p)


def test_gistar_matches_hand_computed_z_on_a_chain() -> None:
    # Five units in a line, binary weights to the left/right neighbour plus self (Gi*).
    y = np.array([1.0, 2.0, 8.0, 9.0, 3.0])
    w = W({0: [1], 1: [0, 2], 2: [1, 3], 3: [2, 4], 4: [3]})
    n, mean = len(y), y.mean()
    s = math.sqrt((y**2).mean() - mean**2)
    expected = []
    for i in range(n):
        nbrs = [i, *w.neighbors[i]]
        wi = len(nbrs)
        num = y[nbrs].sum() - mean * wi
        den = s * math.sqrt((n * wi - wi**2) / (n - 1))
        expected.append(num / den)
    out = gistar(y, w, permutations=99, seed=1)
    np.testing.assert_allclose(out["gi_z"], expected, rtol=1e-9)
    assert ((out["p_sim"] >= 0.01) & (out["p_sim"] <= 1)).all()


def test_gistar_is_reproducible_with_the_seed() -> None:
    y = np.arange(25, dtype=float) % 7
    centres = np.array([(i, j) for i in range(5) for j in range(5)], float)
    w = DistanceBand(centres, threshold=1.5)
    a, b = gistar(y, w, seed=5), gistar(y, w, seed=5)
    pd.testing.assert_frame_equal(a, b)


def test_directed_p_does_not_count_ties_as_evidence() -> None:
    # A sparse count grid: one busy block in a 7 x 7 lattice of zeros. Zero cells far from it
    # have a negative z, but every permutation ties them (all zeros): they are not "cold".
    centres = np.array([(i, j) for i in range(7) for j in range(7)], float)
    y = np.zeros(49)
    y[[16, 17, 18, 23, 24, 25, 30, 31, 32]] = 12.0  # a busy 3 x 3 block around cell 24
    out = gistar(y, DistanceBand(centres, threshold=1.5), permutations=199, seed=3)
    far = out.index[np.abs(centres - 3).max(axis=1) >= 3]
    assert (out.loc[far, "gi_z"] < 0).all()
    assert (out.loc[far, "p_sim"] > 0.1).all()
    assert not any(label.startswith("cold") for label in label_gistar(out["gi_z"], out["p_sim"]))
    assert out.loc[24, "p_sim"] < 0.05 and out.loc[24, "gi_z"] > 0


def test_labels_apply_benjamini_hochberg() -> None:
    # BH at alpha: largest i with p_(i) <= i * alpha / m; here m = 5.
    p = np.array([0.001, 0.008, 0.012, 0.039, 0.5])
    z = np.array([3.0, 2.5, -2.2, 2.0, 0.1])
    labels = label_gistar(z, p)
    # alpha 0.01: cut-offs 0.002 0.004 0.006 0.008 0.01 -> p_(1)=0.001 and p_(2)=0.008 > 0.004,
    #   p_(4)=0.04 > 0.008 ... only unit 0 passes.
    # alpha 0.05: 0.01 0.02 0.03 0.04 0.05 -> p_(4)=0.039 < 0.04: units 0-3 pass.
    # (Labels are named by the FDR level they pass; they were "hot 99%" ... before issue 13.)
    assert labels == ["hot, FDR 1%", "hot, FDR 5%", "cold, FDR 5%", "hot, FDR 5%", "not significant"]
    raw = label_gistar(z, p, fdr=False)
    assert raw[1] == "hot, FDR 1%" and raw[3] == "hot, FDR 5%"
    # Only the levels offered are used: without 1%, unit 0 is labelled at 5%.
    assert label_gistar(z, p, levels=(0.05, 0.10))[0] == "hot, FDR 5%"


def test_fdr_cutoff_is_esdas_on_ties_extremes_and_random_p_values() -> None:
    import esda

    from geo_lead.hotspots import fdr_cutoff

    rng = np.random.default_rng(7)
    cases = [np.array([0.001, 0.008, 0.012, 0.039, 0.5]), np.full(6, 0.3), np.array([0.0]), np.array([1.0]),
             np.array([0.002, 0.002, 0.002, 0.9]), np.round(rng.uniform(0, 0.2, 90), 4), rng.uniform(0, 1, 242)]
    cases += [2.0 / (18_001) * rng.integers(1, 30, 90) for _ in range(5)]  # pseudo-p on a permutation lattice
    for p in cases:
        for q in (0.01, 0.05, 0.10, 0.2):
            assert fdr_cutoff(p, q) == float(esda.fdr(p, q)), (p, q)
    with pytest.raises(ValueError, match="at least one"):
        fdr_cutoff(np.array([]), 0.05)


def test_levels_offered_are_attainable_with_the_permutations() -> None:
    # The case: 90 units, 999 permutations. The two-sided smallest p is 2/1000 = 0.002;
    # BH's lowest cut-off for one significant unit is q/90: 0.000111 (1%), 0.000556 (5%),
    # 0.00111 (10%). None can be reached.
    assert smallest_p(999) == pytest.approx(0.002)
    assert attainable_levels(90, 999) == ()
    r = permutations_for(90)
    assert r == 18_000 and 2 / (r + 1) < 0.01 / 90  # ceil(2 x 90 / 0.01)
    assert attainable_levels(90, r) == (0.01, 0.05, 0.10)
    assert attainable_levels(90, 3_999) == (0.05, 0.10)  # 2/4000 = 0.0005 < 0.000556
    assert permutations_for(4) == 999  # never fewer than settings.PERMUTATIONS (2 x 4 / 0.01 = 800)
    assert permutations_for(10**6) == MAX_PERMUTATIONS
    # A lone unit at the smallest p R permutations can give passes the strictest level offered.
    p = np.ones(90)
    p[7] = smallest_p(r)
    z = np.zeros(90)
    z[7] = 4.0
    assert label_gistar(z, p, attainable_levels(90, r))[7] == "hot, FDR 1%"
    assert gistar_labels((0.05, 0.10)) == ["hot, FDR 5%", "hot, FDR 10%", "not significant",
                                          "cold, FDR 10%", "cold, FDR 5%"]


def test_two_sided_labels_agree_with_esda_on_a_planted_lattice() -> None:
    """A 10 x 10 lattice of continuous values with 8-20 neighbours each (no permutation ties
    the observed sum, so esda's p_sim is our smaller-tail p) with a hot 3 x 3 block and a cold 3 x 3 block: labels equal those computed from esda
    directly (two-sided p = min(1, 2 p_sim), then esda.fdr at each level), and the answer is
    known: the hot block's centre is hot at FDR 1%, the cold block's centre cold, far units
    not significant."""
    import esda

    rng = np.random.default_rng(11)
    centres = np.array([(i, j) for i in range(10) for j in range(10)], float)
    y = rng.normal(10.0, 1.0, 100)
    hot = [i * 10 + j for i in (1, 2, 3) for j in (1, 2, 3)]
    cold = [i * 10 + j for i in (6, 7, 8) for j in (6, 7, 8)]
    y[hot] += 6.0
    y[cold] -= 6.0
    w = DistanceBand(centres, threshold=2.9)
    r = permutations_for(100)
    out = gistar(y, w, permutations=r, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # esda: alternative= will change
        g = esda.G_Local(y, w, transform="B", star=True, permutations=r, seed=4, n_jobs=1)
    p2 = np.minimum(1.0, 2 * np.asarray(g.p_sim))
    np.testing.assert_allclose(out["p_two_sided"], p2)
    expected = np.full(100, "not significant", dtype=object)
    for q in (0.10, 0.05, 0.01):
        sig = p2 <= esda.fdr(p2, q)
        expected[sig & (np.asarray(g.Zs) > 0)] = f"hot, FDR {q * 100:g}%"
        expected[sig & (np.asarray(g.Zs) < 0)] = f"cold, FDR {q * 100:g}%"
    labels = label_gistar(out["gi_z"], out["p_two_sided"], attainable_levels(100, r))
    assert labels == expected.tolist()
    assert labels[22] == "hot, FDR 1%" and labels[77].startswith("cold, FDR")
    assert labels[9] == labels[90] == "not significant"


def test_gistar_batches_draw_the_same_distribution() -> None:
    # Above SIMULATION_VALUES_MAX the permutations come in seeded batches: same z, p close.
    import geo_lead.hotspots as hs

    centres = np.array([(i, j) for i in range(6) for j in range(6)], float)
    y = np.random.default_rng(2).poisson(3, 36).astype(float)
    w = DistanceBand(centres, threshold=1.5)
    one = gistar(y, w, permutations=4000, seed=1)
    old = hs.SIMULATION_VALUES_MAX
    try:
        hs.SIMULATION_VALUES_MAX = 36 * 1000
        batched = gistar(y, w, permutations=4000, seed=1)
    finally:
        hs.SIMULATION_VALUES_MAX = old
    np.testing.assert_allclose(batched["gi_z"], one["gi_z"])
    assert not np.allclose(batched["p_sim"], one["p_sim"])  # other draws ...
    np.testing.assert_allclose(batched["p_sim"], one["p_sim"], atol=0.03)  # ... same distribution


def test_bandwidth_scott_by_hand_and_cv_runs() -> None:
    rng = np.random.default_rng(3)
    xy = rng.normal(0, [1000.0, 3000.0], size=(400, 2))
    sigma = math.sqrt((xy[:, 0].var(ddof=1) + xy[:, 1].var(ddof=1)) / 2)
    assert bandwidth_ft(xy, "scott") == pytest.approx(sigma * 400 ** (-1 / 6))
    assert bandwidth_ft(xy, "silverman") == bandwidth_ft(xy, "scott")
    scott = bandwidth_ft(xy[:100], "scott")
    cv = bandwidth_ft(xy[:100], "cv")
    assert 0.2 * scott * 0.99 <= cv <= 3.0 * scott * 1.01
    assert bandwidth_ft(xy[:5], "cv") == bandwidth_ft(xy[:5], "scott")  # too few points for CV
    with pytest.raises(GeoLeadError, match="unknown bandwidth"):
        bandwidth_ft(xy, "magic")


def test_loo_likelihood_matches_sklearn_point_by_point() -> None:
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(11)
    xy = np.concatenate([rng.normal(0, 800, (15, 2)), rng.normal(4000, 300, (10, 2))])
    hs = np.array([150.0, 400.0, 900.0, 2500.0])
    # Oracle: refit scikit-learn's KDE without point i and score point i, for every i.
    expected = [sum(KernelDensity(bandwidth=h).fit(np.delete(xy, i, axis=0)).score_samples(xy[i:i + 1])[0]
                    for i in range(len(xy))) for h in hs]
    np.testing.assert_allclose(loo_log_likelihood(xy, hs), expected, rtol=1e-9)


def test_kde_density_is_the_gaussian_mixture_scaled_to_records_per_sqmi() -> None:
    pts = gpd.GeoDataFrame({"weight": [1.0, 3.0]}, geometry=shapely.points([(0, 0), (2000, 0)]),
                           crs=settings.CRS_PROJECTED)
    area = shapely.box(-10_000, -10_000, 12_000, 10_000)
    surface, info = kde_surface(pts, area, cell_ft=500.0, bandwidth=1000.0)
    assert info["bandwidth_ft"] == 1000.0 and (surface["bandwidth_ft"] == 1000.0).all()
    c = surface.geometry.centroid
    h = 1000.0
    # Oracle: a weighted mixture of isotropic 2-D normal densities (per sq ft) x 4 records.
    mix = sum(wt / 4 * np.exp(-((c.x - x0) ** 2 + (c.y) ** 2) / (2 * h * h)) / (2 * math.pi * h * h)
              for wt, x0 in ((1.0, 0.0), (3.0, 2000.0)))
    np.testing.assert_allclose(surface["density_per_sqmi"], mix * 4 * settings.SQFT_PER_SQMI, rtol=1e-6)
    # Nearly all the mass lies inside the area: the surface integrates to the 4 records.
    total = (surface["density_per_sqmi"] * surface.geometry.area / settings.SQFT_PER_SQMI).sum()
    assert total == pytest.approx(4.0, rel=1e-3)
    assert surface.loc[surface["is_hotspot"], "density_per_sqmi"].min() > info["threshold_per_sqmi"]


def test_grid_covers_the_area_and_counts_points() -> None:
    area = shapely.Polygon([(0, 0), (2500, 0), (2500, 1500), (0, 1500)])
    grid = make_grid(area, 1000.0)
    assert len(grid) == 6 and grid["area_sqft"].sum() == pytest.approx(area.area)
    pts = gpd.GeoDataFrame({"weight": [1.0, 2.0, 5.0]},
                           geometry=shapely.points([(10, 10), (990, 999), (2400, 1400)]), crs=settings.CRS_PROJECTED)
    counts = grid_counts(pts, grid, 1000.0)
    by_centre = dict(zip(zip(grid["x_ft"], grid["y_ft"], strict=True), counts, strict=True))
    assert by_centre[(500.0, 500.0)] == 3.0 and by_centre[(2500.0, 1500.0)] == 5.0
    assert counts.sum() == 8.0


def test_pai_pei_by_hand() -> None:
    # 30 of 100 records on 2 of 50 sq units: PAI = 0.3 / 0.04 = 7.5
    assert pai(30, 100, 2, 50) == pytest.approx(7.5)
    assert math.isnan(pai(1, 0, 1, 1))
    counts, areas = np.array([10.0, 40.0, 5.0]), np.array([1.0, 2.0, 1.0])
    # densest first: cell 1 (20/unit) then cell 0 (10/unit): area 2.5 -> 40 + 5
    assert max_capture(counts, areas, 2.5) == pytest.approx(45.0)
    assert pei(30.0, counts, areas, 2.5) == pytest.approx(30 / 45)


def test_record_weights_are_the_frame_weights_never_file_names() -> None:
    # Issue 13: weights come from the declared frames (geo_lead.frames), carried as the
    # records' `weight` column; a file name alone (the old SAMPLE_FRACTION_BY_FILE) means nothing.
    frame = pd.DataFrame({"source_file": ["crime_data_2016_drug_sample.csv",
                                          "/x/crime_data_2017_drug_sample.csv", "full_2019.csv", None]})
    np.testing.assert_allclose(record_weights(frame), [1.0, 1.0, 1.0, 1.0])
    frame["weight"] = [1 / 0.15, 1 / 0.14, 1.0, 1.0]
    np.testing.assert_allclose(record_weights(frame), [1 / 0.15, 1 / 0.14, 1.0, 1.0])


def clustered_records(neighborhoods: gpd.GeoDataFrame, hot: str, n_hot: int = 120,
                      n_each: int = 6, seed: int = 0) -> gpd.GeoDataFrame:
    """Eligible records: a tight cluster in `hot` and a few spread over every FD unit."""
    rng = np.random.default_rng(seed)
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME")
    rows = []
    for name in FIRST_DIVISION:
        g = proj.loc[name].geometry
        target = n_each + (n_hot if name == hot else 0)
        centre = g.representative_point()
        pts: list[shapely.Point] = []
        while len(pts) < target:
            if name == hot and len(pts) < n_hot:
                p = shapely.Point(centre.x + rng.normal(0, 250), centre.y + rng.normal(0, 250))
            else:
                minx, miny, maxx, maxy = g.bounds
                p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if g.contains(p):
                pts.append(p)
        rows += [{"occurred_at": "2016-05-01T12:00:00", "lead_eligible": True, "neighborhood": name,
                  "geometry": p} for p in pts]
    rows.append({"occurred_at": "2016-05-01", "lead_eligible": False, "neighborhood": "", "geometry": None})
    return gpd.GeoDataFrame(rows, crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)


def test_hotspots_on_real_first_division_find_the_planted_cluster() -> None:
    nh = load_neighborhoods()
    records = clustered_records(nh, "PHOENIX HILL")
    layers, result = hotspots(records, nh, FIRST_DIVISION)  # 999: BH over 242 cells needs p < 0.001-ish
    assert result["records"] == {"records_in": len(records), "not_flagged": 1, "not_geocoded": 0,
                                 "kept": len(records) - 1, "in_study_area": len(records) - 1,
                                 "outside_study_area": 0}
    grid = layers["hotspot_gistar_grid"]
    hot = grid[grid["label"].str.startswith("hot")]
    assert not hot.empty
    centre = nh.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME").loc["PHOENIX HILL"].geometry.representative_point()
    assert hot.geometry.distance(centre).min() < 1000
    assert grid["count"].sum() == pytest.approx(len(records) - 1)
    kde = layers["hotspot_kde"]
    assert kde.loc[kde["is_hotspot"]].geometry.distance(centre).min() < 1000
    assert result["kde"]["bandwidth_ft"] > 0
    nbh = layers["hotspot_gistar_neighborhoods"]
    assert len(nbh) == len(nh)  # every unit, named or not, in the lattice
    # the grid covers exactly the study area
    assert grid.geometry.area.sum() == pytest.approx(study_area(nh, FIRST_DIVISION).area, rel=1e-6)


def test_gistar_grid_band_default_is_one_and_a_half_cells() -> None:
    area = shapely.box(0, 0, 5000, 5000)
    pts = gpd.GeoDataFrame({"weight": np.ones(3)}, geometry=shapely.points([(2500, 2500)] * 3),
                           crs=settings.CRS_PROJECTED)
    out = gistar_grid(pts, area, 1000.0, permutations=99)
    assert (out["band_ft"] == 1500.0).all() and len(out) == 25
    centre = out.loc[out["count"] == 3].index[0]
    assert out.loc[centre, "gi_z"] == out["gi_z"].max()


def test_points_on_a_unit_edge_count_where_the_join_put_them() -> None:
    """Block points lie on streets and streets are the units' edges: a point on the study
    area's edge counts in the unit the spatial join gave it, for KDE, both Gi* and the
    accounting alike (score and site count that unit too), not dropped by a stricter test."""
    from geo_lead.spatial_join import join_records

    nh = load_neighborhoods()
    inner = clustered_records(nh, "PHOENIX HILL").to_crs(settings.CRS_PROJECTED)
    edge = shapely.get_coordinates(study_area(nh, FIRST_DIVISION).boundary)[::40]
    on_edge = gpd.GeoDataFrame({"occurred_at": "2016-05-01T12:00:00", "lead_eligible": True},
                               index=range(len(edge)), geometry=shapely.points(edge), crs=settings.CRS_PROJECTED)
    on_edge["neighborhood"] = join_records(on_edge, nh.to_crs(settings.CRS_PROJECTED))["neighborhood"].to_numpy()
    on_edge = on_edge[on_edge["neighborhood"].isin(FIRST_DIVISION)]
    assert len(on_edge) >= 5 and not on_edge.within(study_area(nh, FIRST_DIVISION)).any()
    records = pd.concat([inner, on_edge], ignore_index=True)
    layers, result = hotspots(records, nh, FIRST_DIVISION, permutations=99)
    expected = int((records["lead_eligible"] & records["neighborhood"].isin(FIRST_DIVISION)).sum())
    assert result["records"]["in_study_area"] == expected
    nbh = layers["hotspot_gistar_neighborhoods"].set_index("neighborhood")
    assert nbh.loc[FIRST_DIVISION, "count"].sum() == pytest.approx(expected)
    assert layers["hotspot_gistar_grid"]["count"].sum() == pytest.approx(expected)
