"""The geocoder's pandas- and scipy-free pieces against independent oracles.

* `GridIndex.query_ball_point` against a brute-force distance test;
* the side model and the block anchors (numpy group means) against pandas' groupby on the
  shipped reference;
* `Geocoder.locate` (one address, no pandas) against `Geocoder.geocode` (the batch path) on
  real LMPD block addresses, intersections and misses.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from geo_lead import settings
from geo_lead.geocode import Geocoder, GeocodeResult
from geo_lead.geocode import reference as ref_mod
from geo_lead.geocode.grid_index import GridIndex


@pytest.mark.parametrize("cell", [50.0, 500.0, 2000.0])
def test_grid_index_equals_brute_force(cell: float) -> None:
    rng = np.random.default_rng(settings.RANDOM_SEED)
    xy = np.column_stack([rng.uniform(0, 20_000, 3000), rng.uniform(-5_000, 5_000, 3000)])
    xy[:50] = xy[50:100]  # duplicates
    grid = GridIndex(xy, cell)
    for px, py, r in [(10_000, 0, 2000), (0, -5_000, 1500), (-3_000, 0, 2_500), (50_000, 0, 100),
                      (*xy[7], 0.0), (15_000, 4_000, 1e-9), (10_000, 0, 30_000)]:
        want = np.flatnonzero(np.hypot(xy[:, 0] - px, xy[:, 1] - py) <= r)
        np.testing.assert_array_equal(grid.query_ball_point((px, py), r), want)


def test_grid_index_empty_and_bad_cell() -> None:
    assert GridIndex(np.empty((0, 2)), 10.0).query_ball_point((0.0, 0.0), 5.0).size == 0
    with pytest.raises(ValueError, match="cell"):
        GridIndex(np.zeros((1, 2)), 0.0)


@pytest.fixture(scope="module")
def reference() -> ref_mod.Reference:
    return ref_mod.load_reference()


def test_block_anchors_equal_pandas_groupby(reference: ref_mod.Reference) -> None:
    r = reference
    street, number, x, y, src = r.pt_street, r.pt_number, r.pt_x, r.pt_y, r.pt_src
    roof, t, left, chord = ref_mod._rooftops_beside_census_blocks(street, number, x, y, src)
    # oracle: pandas groupby mean of the Census hundreds, looked up by (street, H00) and H00+100
    cen = (src == ref_mod.SRC_CENSUS) & (number % 100 == 0)
    anchors = pd.DataFrame({"s": street[cen], "h": number[cen].astype(np.int64), "x": x[cen], "y": y[cen]})
    anchors = anchors.groupby(["s", "h"], sort=False)[["x", "y"]].mean()
    all_roof = np.flatnonzero((src == ref_mod.SRC_POINT) & (number % 100 != 0))
    h = (number[all_roof] // 100 * 100).astype(np.int64)
    a = anchors.reindex(pd.MultiIndex.from_arrays([street[all_roof], h])).to_numpy()
    b = anchors.reindex(pd.MultiIndex.from_arrays([street[all_roof], h + 100])).to_numpy()
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    np.testing.assert_array_equal(roof, all_roof[ok])
    d = b[ok] - a[ok]
    np.testing.assert_array_equal(chord, np.hypot(d[:, 0], d[:, 1]))
    assert roof.size > 1000  # the shipped reference has thousands of such rooftops


def test_side_model_votes_equal_pandas_groupby(reference: ref_mod.Reference) -> None:
    r = reference
    model = ref_mod.learn_side_model(r.pt_street, r.pt_number, r.pt_x, r.pt_y, r.pt_src)
    assert model is not None
    roof, t, left, chord = ref_mod._rooftops_beside_census_blocks(r.pt_street, r.pt_number, r.pt_x, r.pt_y,
                                                                 r.pt_src)
    use = ((chord >= settings.GEOCODE_BLOCK_CURVE_MIN_FT) & (chord <= settings.GEOCODE_BLOCK_CURVE_MAX_FT)
           & (np.abs(left) <= 0.5 * chord) & (t > 0) & (t < 1))
    odd = r.pt_number[roof][use].astype(np.int64) % 2 == 1
    odd_left = np.where(odd, left[use], -left[use])
    votes = pd.Series(np.sign(odd_left).astype(np.int64)).groupby(r.pt_street[roof][use]).sum()
    assert model.street_votes == {int(k): int(v) for k, v in votes.items() if v}


ADDRESSES = [
    ("2700 BLOCK W MADISON ST", "", ""), ("2700 BLOCK W MADISON ST", "40211", "112"),
    ("N 26TH ST / BANK ST", "", ""), ("1400 BLOCK S 4TH ST", "40208", ""),
    ("100 BLOCK W BROADWAY", "", "111"), ("4TH ST / MUHAMMAD ALI BLVD", "", ""),
    ("NOWHERE AT ALL", "", ""), ("", "", ""), ("@LOUISVILLE", "", ""),
    ("3000 BLOCK HIKES LN", "40220", ""), ("600 BLOCK E CHESTNUT ST", "", ""),
]


def test_locate_equals_geocode(reference: ref_mod.Reference) -> None:
    from pathlib import Path

    lmpd = pd.read_csv(Path(settings.PROJECT_ROOT) / "data/lmpd/crime_data_2017_drug_sample.csv",
                       dtype=str, keep_default_na=False).head(150)
    cases = ADDRESSES + list(zip(lmpd["BLOCK_ADDRESS"], lmpd["ZIP_CODE"], lmpd["LMPD_BEAT"], strict=True))
    batch = Geocoder(reference).geocode([c[0] for c in cases], [c[1] for c in cases], beats=[c[2] for c in cases])
    single = Geocoder(reference)  # a fresh geocoder: no memo shared with the batch
    for (addr, zip_code, beat), (_, row) in zip(cases, batch.iterrows(), strict=True):
        got = single.locate(addr, zip_code, beat)
        assert isinstance(got, GeocodeResult)
        d = got.to_dict()
        for col in ("input", "match_type", "matched_address", "reason"):
            assert d[col] == row[col], (addr, col)
        for col in ("lon", "lat", "score"):
            assert (math.isnan(d[col]) and math.isnan(row[col])) or d[col] == row[col], (addr, col)
    assert set(batch["match_type"]) >= {"block", "intersection", "unmatched"}
