"""Statistics reused across runs (issue 19: reruns skip what they know): site, scores, Gi*.

Oracles: the same computation with the result cache off (``GEO_LEAD_RESULT_CACHE=0``) on the
same inputs; a reused result must equal it exactly. A hit is proven by patching the
computation to fail, a miss by counting its calls: every input the result depends on (one
record's weight, date or unit share, a parameter, the seed) changes the key.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo_lead import boundaries, by_year, hotspots, result_cache, scoring, settings, siting
from geo_lead.boundaries import load_neighborhoods
from geo_lead.siting import SiteParams
from geo_lead.zones_milp import queen_adjacency

FIRST_DIVISION = ["BUTCHERTOWN", "CENTRAL BUSINESS DISTRICT", "PHOENIX HILL", "PORTLAND", "RUSSELL"]
#: Records per unit (others get 2): enough for a verdict, few enough to be quick.
PER_UNIT = {"RUSSELL": 30, "PORTLAND": 24, "CENTRAL BUSINESS DISTRICT": 18, "PHOENIX HILL": 8, "BUTCHERTOWN": 6}


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty result cache for this test."""
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    return tmp_path / "results"


@pytest.fixture(scope="module")
def neighborhoods() -> gpd.GeoDataFrame:
    return load_neighborhoods()


@pytest.fixture(scope="module")
def adjacency(neighborhoods: gpd.GeoDataFrame) -> dict[str, set[str]]:
    return queen_adjacency(neighborhoods)


def records_in(neighborhoods: gpd.GeoDataFrame, years: tuple[int, ...] = (2016, 2017)) -> gpd.GeoDataFrame:
    """Eligible records at points inside the First Division's units (+ 2 in every other named
    unit), months cycling 1..12 over `years`; every fourth one not eligible."""
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME")
    rows = []
    for name, row in proj[proj["is_named"].astype(bool)].iterrows():
        inner = row.geometry.representative_point()
        for i in range(PER_UNIT.get(name, 2)):
            year = years[i % len(years)]
            rows.append({"incident_number": f"{name}-{i}", "occurred_at": f"{year}-{1 + i % 12:02d}-15T10:00:00",
                         "reported_at": f"{year}-{1 + i % 12:02d}-16T10:00:00", "source": "crime",
                         "source_file": f"crime_{year}.csv", "neighborhood": name, "boundary_units": "",
                         "weight": 1.0, "lead_eligible": i % 4 != 3, "division": "1ST DIVISION",
                         "geometry": shapely.Point(inner.x + 10 * i, inner.y)})
    return gpd.GeoDataFrame(rows, crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)


def _fail(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("computed although the cache holds the result")


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _uncached(monkeypatch: pytest.MonkeyPatch, fn: Callable[[], Any]) -> Any:
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        return fn()


def _same_json(a: Any, b: Any) -> None:
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# --- the cache's files ------------------------------------------------------------------
def test_object_cache_round_trip_and_rejects_other_keys_formats_and_bad_files(
        cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, other = "a" * 64, "b" * 64
    frame = pd.DataFrame({"x": [0.1, float("nan")], "y": ["a", None]})
    assert result_cache.read_object("scores", key) is None
    result_cache.write_object("scores", key, frame)
    pd.testing.assert_frame_equal(result_cache.read_object("scores", key), frame, check_exact=True)
    path = next(cache_dir.glob("scores-*.pkl"))
    path.rename(cache_dir / f"scores-{other[:32]}.pkl")  # a file under another key's name
    assert result_cache.read_object("scores", other) is None
    path.write_bytes(pickle.dumps({"format": result_cache.OBJECT_FORMAT + 1, "key": key, "value": 1}))
    assert result_cache.read_object("scores", key) is None  # another format: computed again
    path.write_bytes(b"not a pickle")
    with caplog.at_level(logging.WARNING, logger="geo_lead.result_cache"):
        assert result_cache.read_object("scores", key) is None
    assert "unreadable" in caplog.text


def test_frame_digest_follows_every_value_the_dtype_the_index_and_the_column_order() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", None]})
    base = result_cache.frame_digest(frame, ["a", "b"])
    assert result_cache.frame_digest(frame.copy(), ["a", "b"]) == base
    changed = frame.copy()
    changed.loc[1, "a"] = 2.0000000001
    assert result_cache.frame_digest(changed, ["a", "b"]) != base
    assert result_cache.frame_digest(frame.set_axis([0, 1, 5]), ["a", "b"]) != base
    assert result_cache.frame_digest(frame.astype({"a": "float32"}), ["a", "b"]) != base
    assert result_cache.frame_digest(frame, ["b", "a"]) != base
    assert result_cache.frame_digest(frame, ["a"]) != base
    pts = gpd.GeoDataFrame(frame, geometry=[shapely.Point(0, 0), shapely.Point(1, 1), None], crs=settings.CRS_STORE)
    moved = pts.copy()
    moved.loc[0, "geometry"] = shapely.Point(0, 1e-9)
    assert result_cache.frame_digest(pts, ["a", "geometry"]) != result_cache.frame_digest(moved, ["a", "geometry"])



def test_frame_digest_of_points_follows_each_point_and_tells_them_from_other_geometries() -> None:
    """2D points are hashed by their coordinates (`result_cache._geometry_parts`); any other
    column (an empty point, a 3D point, a line) by WKB: the digest still follows every value."""
    def digest(geoms: list[object]) -> str:
        return result_cache.frame_digest(gpd.GeoDataFrame({"a": range(len(geoms))}, geometry=geoms,
                                                          crs=settings.CRS_STORE), ["geometry"])

    pts = [shapely.Point(0, 0), None, shapely.Point(1, 2)]
    base = digest(pts)
    assert digest([shapely.Point(0, 0), None, shapely.Point(1, 2)]) == base
    variants = [
        [shapely.Point(0, 0), shapely.Point(1, 2), None],  # the missing one elsewhere
        [shapely.Point(0, 0), None, shapely.Point(2, 1)],  # x and y swapped
        [shapely.Point(0, 0), None, shapely.Point(1, 2.0000000001)],
        [shapely.Point(0, 0), shapely.Point(), shapely.Point(1, 2)],  # empty, not missing
        [shapely.Point(0, 0), None, shapely.Point(1, 2, 0)],  # 3D
        [shapely.Point(0, 0), None, shapely.LineString([(1, 2), (1, 2)])],
        [shapely.MultiPoint([(0, 0)]), None, shapely.Point(1, 2)],
    ]
    digests = [digest(v) for v in variants]
    assert base not in digests and len(set(digests)) == len(digests)
    assert digest([None, None]) != digest([shapely.Point(), shapely.Point()])

def test_frame_digest_of_arrow_strings_follows_the_values_not_their_layout() -> None:
    """A pyarrow-backed string column is hashed from its UTF-8 bytes (`result_cache._arrow_string_parts`):
    equal values give one digest whatever the chunks, slices and the bytes behind missing values;
    any other value, a missing one moved, or "" for a missing one gives another."""
    import pyarrow as pa

    def digest(values: object) -> str:
        return result_cache.frame_digest(pd.DataFrame({"s": values}).reset_index(drop=True), ["s"])

    def arrow(*chunks: list[str | None]) -> pd.Series:
        return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(c, pa.string()) for c in chunks])),
                         dtype=pd.StringDtype("pyarrow", na_value=np.nan))

    plain = pd.Series(["a", None, "bc", "é"], dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    base = digest(plain)
    assert digest(arrow(["a", None], ["bc", "é"])) == base
    assert digest(arrow(["z", "a", None, "bc", "é"]).iloc[1:]) == base  # a slice
    # a null slot whose offsets span bytes (Arrow allows it) hashes as any null
    spans = pa.StringArray.from_buffers(4, pa.py_buffer(np.array([0, 1, 3, 5, 7], np.int32).tobytes()),
                                        pa.py_buffer("axxbcé".encode()),
                                        pa.py_buffer(np.packbits([1, 0, 1, 1], bitorder="little").tobytes()))
    assert digest(arrow(spans.to_pylist())) == base
    with_bytes = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([spans])),
                           dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    assert digest(with_bytes) == base
    others = [["a", None, "bc", "e"], ["a", "", "bc", "é"], [None, "a", "bc", "é"], ["ab", None, "c", "é"],
              ["a", None, "bcé", ""], [None, "b", None]]
    digests = {digest(pd.Series(v, dtype=plain.dtype)) for v in others}
    assert base not in digests and len(digests) == len(others)
    # the collision a hash of lengths and bytes alone would have: nulls' bytes are never hashed
    assert digest(arrow(["a", None])) != digest(arrow([None, "a"]))


def test_code_version_is_one_digest_of_the_package_per_process() -> None:
    assert result_cache.code_version() == result_cache.code_version()
    assert len(result_cache.code_version()) == 64


# --- site ------------------------------------------------------------------------------
def _one_record_changed(recs: pd.DataFrame, change: str, weight: float, occurred_at: str) -> pd.DataFrame:
    """A copy of `recs` with one RUSSELL record's `change` (weight, date, share or flag) made;
    for any other `change` (a parameter, the seed, ...) the records are as they were."""
    other = recs.copy()
    i = int(np.flatnonzero(other["neighborhood"] == "RUSSELL")[0])
    if change == "weight":
        other.loc[i, "weight"] = weight
    elif change == "date":
        other.loc[i, "occurred_at"] = occurred_at
    elif change == "share":
        other.loc[i, "boundary_units"] = "RUSSELL;PORTLAND"
    elif change == "flag":
        other.loc[i, "lead_eligible"] = not other.loc[i, "lead_eligible"]
    return other


def _site(recs: gpd.GeoDataFrame, nh: gpd.GeoDataFrame, adj: dict[str, set[str]],
          params: SiteParams | None = None) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    return siting.site(recs, nh, FIRST_DIVISION, params=params or SiteParams(replicates=40), adjacency=adj)


def _assert_same_site(got: tuple[gpd.GeoDataFrame, dict[str, Any]],
                      want: tuple[gpd.GeoDataFrame, dict[str, Any]]) -> None:
    pd.testing.assert_frame_equal(pd.DataFrame(got[0].drop(columns="geometry")),
                                  pd.DataFrame(want[0].drop(columns="geometry")), check_exact=True)
    assert list(shapely.to_wkb(got[0].geometry.values)) == list(shapely.to_wkb(want[0].geometry.values))
    _same_json(got[1], want[1])


def test_site_reused_equals_the_computation_exactly(cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                    adjacency: dict[str, set[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods)
    oracle = _uncached(monkeypatch, lambda: _site(recs, neighborhoods, adjacency))
    first = _site(recs, neighborhoods, adjacency)
    assert len(list(cache_dir.glob("site-*.pkl"))) == 1
    monkeypatch.setattr(siting, "evaluate_site", _fail)
    again = _site(records_in(neighborhoods), load_neighborhoods(), adjacency)  # equal inputs, new objects
    for got in (first, again):
        _assert_same_site(got, oracle)
    # extra record columns the answer does not read leave the key as it is
    _site(recs.assign(address_raw="1 MAIN ST"), neighborhoods, adjacency)


@pytest.mark.parametrize("change", ["weight", "date", "share", "flag", "parameter", "seed"])
def test_site_any_changed_input_is_computed_again(change: str, cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                  adjacency: dict[str, set[str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods)
    _site(recs, neighborhoods, adjacency)
    calls = _counting(monkeypatch, siting, "evaluate_site")
    params = SiteParams(replicates=40)
    other = _one_record_changed(recs, change, weight=2.0, occurred_at="2016-10-15T10:00:00")
    if change == "parameter":
        params = SiteParams(replicates=41)
    elif change == "seed":
        params = SiteParams(replicates=40, seed=settings.RANDOM_SEED + 1)
    got = _site(other, neighborhoods, adjacency, params)
    assert calls == [1]
    monkeypatch.undo()
    _assert_same_site(got, _uncached(monkeypatch, lambda: _site(other, neighborhoods, adjacency, params)))


def _declared(*extra: Any, fraction: float = 0.5) -> Any:
    """Declarations of `records_in`'s two files (report dates 2016/2017-01-16 .. -12-16) + `extra`."""
    from geo_lead.frames import FileFrame, Frames

    files = [FileFrame(f"sha{y}", f"crime_{y}.csv", "crime", fraction, (y,), f"{y}-01-16T10:00:00",
                       f"{y}-12-16T10:00:00") for y in (2016, 2017)]
    return Frames([*files, *extra])


@pytest.mark.parametrize("window", [None, "2016-01-01:2016-12-31"])
def test_site_key_reads_only_the_covered_time_of_the_sampling_declarations(
        window: str | None, cache_dir: Path, neighborhoods: gpd.GeoDataFrame, adjacency: dict[str, set[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer reads of the declarations only their coverage of the window (months of data):
    a declaration that adds no covered time (a one-record file, a span inside another, another
    fraction, name or hash; outside the window) is a hit equal to a fresh evaluation; one that
    changes the covered time is a miss."""
    from geo_lead.frames import FileFrame, Frames

    recs = records_in(neighborhoods)
    params = SiteParams(replicates=40, window=window)

    def run(sampling: Any) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
        return siting.site(recs, neighborhoods, FIRST_DIVISION, params=params, adjacency=adjacency,
                           sampling=sampling)

    first = run(_declared())
    one_record = FileFrame("sha2023", "one.csv", "crime", 1.0, (2023,), "2023-05-02T08:00:00", "2023-05-02T08:00:00")
    inside = FileFrame("shaX", "inside.csv", "other", 0.1, (2016,), "2016-03-01T00:00:00", "2016-04-01T00:00:00")
    unused = [_declared(one_record), _declared(inside), _declared(fraction=0.25),
              _declared(FileFrame("sha2016b", "crime_2016.csv", "crime", 1.0, (2016,), "2016-01-16T10:00:00",
                                  "2016-12-16T10:00:00"))]
    if window is not None:  # a file covering only time outside the window
        unused.append(_declared(FileFrame("sha2019", "crime_2019.csv", "crime", 0.5, (2019,),
                                          "2019-01-01T00:00:00", "2019-12-31T00:00:00")))
    for sampling in unused:
        with monkeypatch.context() as m:
            m.setattr(siting, "evaluate_site", _fail)
            hit = run(sampling)
        _assert_same_site(hit, first)
        _assert_same_site(hit, _uncached(monkeypatch, lambda s=sampling: run(s)))
    longer = FileFrame("sha2016c", "late.csv", "crime", 0.5, (2016,), "2016-12-16T10:00:00", "2016-12-30T00:00:00")
    used = [_declared(longer),
            _declared(FileFrame("sha2016d", "early.csv", "crime", 0.5, (2016,), "2016-01-01T00:00:00",
                                "2016-01-16T10:00:00"))]
    if window is None:
        used.append(_declared(FileFrame("sha2019", "crime_2019.csv", "crime", 0.5, (2019,),
                                        "2019-01-01T00:00:00", "2019-12-31T00:00:00")))
    calls = _counting(monkeypatch, siting, "evaluate_site")
    for i, sampling in enumerate(used, start=1):
        got = run(sampling)
        assert calls == [1] * i
        # the covered time is in the answer (months of data: reach per year, capacity)
        assert json.dumps(got[1], sort_keys=True, default=str) != json.dumps(first[1], sort_keys=True, default=str)
    assert siting.sampling_part(None, window) == siting.sampling_part(Frames(), window) == "records"


def _series(n_before: int = 14, n_after: int = 11, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cols = ("pilot", "comparison", "rest")
    before = pd.DataFrame({c: rng.gamma(4.0, 2.0, n_before) for c in cols})
    after = pd.DataFrame({c: rng.gamma(4.0, 2.0, n_after) for c in cols})
    before.loc[3, "comparison"] = 0.0  # some replicates undefined (a zero mean is possible)
    return before, after


def test_evaluation_bootstrap_reused_equals_the_computation_and_misses_on_any_input(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import evaluation

    before, after = _series()
    oracle = _uncached(monkeypatch, lambda: evaluation.bootstrap_did(before, after, 3, 200, 7))
    first = evaluation.bootstrap_did(before, after, 3, 200, 7)
    with monkeypatch.context() as m:
        m.setattr(evaluation, "_bootstrap_did", _fail)
        again = evaluation.bootstrap_did(before.copy(), after.copy(), 3, 200, 7)
    for got in (first, again):
        assert sorted(got) == sorted(oracle)
        for c in oracle:
            np.testing.assert_array_equal(got[c], oracle[c])  # NaN where undefined, bit for bit
            assert got[c].tobytes() == oracle[c].tobytes()
    calls = _counting(monkeypatch, evaluation, "_bootstrap_did")
    variants: list[tuple[pd.DataFrame, pd.DataFrame, int, int, int, tuple[str, ...]]] = []
    for frame in ("before", "after"):
        for col in ("pilot", "comparison", "rest"):
            b, a = before.copy(), after.copy()
            (b if frame == "before" else a).loc[1, col] += 1e-9
            variants.append((b, a, 3, 200, 7, ("comparison", "rest")))
    variants += [(before.iloc[:-1], after, 3, 200, 7, ("comparison", "rest")),  # a month fewer
                 (before.iloc[::-1].reset_index(drop=True), after, 3, 200, 7, ("comparison", "rest")),  # order
                 (before, after, 4, 200, 7, ("comparison", "rest")), (before, after, 3, 201, 7, ("comparison", "rest")),
                 (before, after, 3, 200, 8, ("comparison", "rest")), (before, after, 3, 200, 7, ("comparison",))]
    for b, a, block, reps, seed, controls in variants:
        done = len(calls)
        got = evaluation.bootstrap_did(b, a, block, reps, seed, controls)
        assert len(calls) == done + 1  # a miss: computed
        want = _uncached(monkeypatch, lambda b=b, a=a, bl=block, r=reps, s=seed, c=controls:
                         evaluation.bootstrap_did(b, a, bl, r, s, c))
        for c in want:
            assert got[c].tobytes() == want[c].tobytes()


# --- scores ----------------------------------------------------------------------------
def _scores(recs: pd.DataFrame, nh: gpd.GeoDataFrame, **kwargs: Any) -> gpd.GeoDataFrame:
    return scoring.score_neighborhoods(recs, nh, np.full(len(nh), 1000.0), area="city", n_boot=60, **kwargs)


def _assert_same_scores(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    pd.testing.assert_frame_equal(pd.DataFrame(got.drop(columns="geometry")),
                                  pd.DataFrame(want.drop(columns="geometry")), check_exact=True)
    assert list(shapely.to_wkb(got.geometry.values)) == list(shapely.to_wkb(want.geometry.values))
    _same_json(got.attrs, want.attrs)


def test_scores_reused_equal_the_computation_exactly(cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods)
    oracle = _uncached(monkeypatch, lambda: _scores(recs, neighborhoods))
    first = _scores(recs, neighborhoods)
    monkeypatch.setattr(scoring, "_score_window", _fail)
    for got in (first, _scores(records_in(neighborhoods), load_neighborhoods())):
        _assert_same_scores(got, oracle)


@pytest.mark.parametrize("change", ["weight", "date", "share", "population", "parameter", "seed"])
def test_scores_any_changed_input_is_computed_again(change: str, cache_dir: Path,
                                                    neighborhoods: gpd.GeoDataFrame,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods)
    kwargs: dict[str, Any] = {}
    _scores(recs, neighborhoods)
    calls = _counting(monkeypatch, scoring, "_score_window")
    other = _one_record_changed(recs, change, weight=0.5, occurred_at="2017-03-15T10:00:00")
    if change == "parameter":
        kwargs["weights"] = {"count": 1.0}
    elif change == "seed":
        kwargs["seed"] = settings.RANDOM_SEED + 1

    def run() -> gpd.GeoDataFrame:
        if change == "population":
            return scoring.score_neighborhoods(other, neighborhoods, np.full(len(neighborhoods), 999.0),
                                               area="city", n_boot=60)
        return _scores(other, neighborhoods, **kwargs)

    got = run()
    assert calls == [1]
    monkeypatch.undo()
    _assert_same_scores(got, _uncached(monkeypatch, run))


def test_a_year_whose_records_did_not_change_is_reused_when_another_year_changed(
        cache_dir: Path, neighborhoods: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods, years=(2016, 2017))
    pop = np.full(len(neighborhoods), 1000.0)
    kwargs: dict[str, Any] = {"area": "city", "n_boot": 60}
    before = {y: by_year.scores_for_year(recs, neighborhoods, pop, y, **kwargs) for y in (2016, 2017)}
    later = recs.copy()
    in_2017 = int(np.flatnonzero(later["occurred_at"].str.startswith("2017"))[0])
    later.loc[in_2017, "weight"] = 3.0
    new = later.iloc[[in_2017]].assign(incident_number="NEW", occurred_at="2023-05-01T00:00:00")
    later = pd.concat([later, new], ignore_index=True)  # a record of another year appended
    calls = _counting(monkeypatch, scoring, "_score_window")
    after = {y: by_year.scores_for_year(later, neighborhoods, pop, y, **kwargs) for y in (2016, 2017)}
    assert calls == [1]  # 2017 only
    assert after[2016] == before[2016]
    assert after[2017] != before[2017]
    monkeypatch.undo()
    oracle = _uncached(monkeypatch, lambda: by_year.scores_for_year(later, neighborhoods, pop, 2016, **kwargs))
    assert after[2016] == oracle


# --- Gi* -------------------------------------------------------------------------------
def test_gistar_reused_equals_the_computation_and_misses_on_other_values_or_seed(
        cache_dir: Path, neighborhoods: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    from libpysal.weights import Queen

    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    w = Queen.from_dataframe(proj, use_index=False, silence_warnings=True)
    y = np.random.default_rng(3).gamma(2.0, 10.0, len(proj))
    oracle = hotspots._gistar(y, Queen.from_dataframe(proj, use_index=False, silence_warnings=True), 199, 7)
    first = hotspots.gistar(y, w, 199, 7)
    with monkeypatch.context() as m:
        m.setattr(hotspots, "_gistar", _fail)
        again = hotspots.gistar(y.copy(), Queen.from_dataframe(proj, use_index=False, silence_warnings=True), 199, 7)
    for got in (first, again):
        pd.testing.assert_frame_equal(got, oracle, check_exact=True)
    calls = _counting(monkeypatch, hotspots, "_gistar")
    y2 = y.copy()
    y2[5] += 1e-9
    hotspots.gistar(y2, w, 199, 7)
    hotspots.gistar(y, w, 199, 8)
    hotspots.gistar(y, w, 99, 7)
    assert calls == [1, 1, 1]


# --- boundary files: parsed once per process per content ----------------------------------
def test_boundary_files_are_parsed_once_and_each_caller_gets_its_own_copy(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nh.geojson"
    path.write_bytes(settings.NEIGHBORHOODS_FILE.read_bytes())
    boundaries._PARSED.clear()
    calls = _counting(monkeypatch, gpd, "read_file")
    a = boundaries.load_neighborhoods(path)
    a.loc[0, "NH_NAME"] = "CHANGED"
    b = boundaries.load_neighborhoods(path)
    assert calls == [1] and b.loc[0, "NH_NAME"] != "CHANGED"
    pd.testing.assert_frame_equal(pd.DataFrame(b.drop(columns="geometry")),
                                  pd.DataFrame(gpd.read_file(path).drop(columns="geometry")))
    text = path.read_text("utf-8")
    path.write_text(text.replace(str(b.loc[0, "NH_NAME"]), str(b.loc[0, "NH_NAME"]) + "X", 1), "utf-8")
    assert boundaries.load_neighborhoods(path).loc[0, "NH_NAME"] == str(b.loc[0, "NH_NAME"]) + "X"


def test_boundary_files_parsed_in_an_earlier_run_are_taken_from_the_result_cache(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that finds a boundary file's parse kept (kind ``boundary_parsed``: same bytes,
    suffix, code and libraries) does not parse it and gets the frame a parse gives; changed
    bytes, another suffix or the cache off parse again."""
    path = tmp_path / "nh.geojson"
    path.write_bytes(settings.NEIGHBORHOODS_FILE.read_bytes())
    boundaries._PARSED.clear()
    fresh = gpd.read_file(path)
    boundaries.load_neighborhoods(path)  # parsed: kept
    assert list(cache_dir.glob(f"{boundaries.PARSED_CACHE}-*.pkl"))
    boundaries._PARSED.clear()  # as a new process finds it
    calls = _counting(monkeypatch, gpd, "read_file")
    kept = boundaries.load_neighborhoods(tmp_path / "nh.geojson")
    assert len(calls) == 0
    from geopandas.testing import assert_geodataframe_equal

    assert_geodataframe_equal(kept, fresh, check_dtype=True, check_crs=True, check_less_precise=False)
    assert kept.geometry.to_wkb().tolist() == fresh.geometry.to_wkb().tolist()  # bit for bit
    assert kept.crs == fresh.crs and list(kept.columns) == list(fresh.columns)
    elsewhere = tmp_path / "copy" / "nh.geojson"  # the same bytes elsewhere: the same parse
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    boundaries.load_neighborhoods(elsewhere)
    assert len(calls) == 0
    renamed = tmp_path / "nh.json"  # another suffix: another driver may read it
    renamed.write_bytes(path.read_bytes())
    boundaries.load_neighborhoods(renamed)
    assert len(calls) == 1
    path.write_text(path.read_text("utf-8").replace('"', '"', 1) + "\n", "utf-8")  # one byte more
    boundaries.load_neighborhoods(path)
    assert len(calls) == 2
    boundaries._PARSED.clear()
    with result_cache.switched_off():
        boundaries.load_neighborhoods(elsewhere)
    assert len(calls) == 3


def test_beat_files_parsed_in_an_earlier_run_are_taken_from_the_result_cache(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that finds a beat file's parse kept (kind ``beats_parsed``: same bytes, code
    and libraries) parses nothing and gets what a parse gives: the projected, repaired frame
    (`load_beats`) and the index (`read_beat_index`: codes, divisions, neighbours, polygons bit
    for bit, prepared, the same lookups); changed bytes or the cache off parse again."""
    from geopandas.testing import assert_geodataframe_equal

    from geo_lead import beats

    path = tmp_path / "beats.geojson"
    path.write_bytes(settings.BEATS_FILE.read_bytes())

    def fresh_process() -> None:
        beats._READ.clear()
        beats._read_index.cache_clear()

    fresh_process()
    parsed, index = beats.load_beats(path), beats.read_beat_index(path)  # parsed: kept
    assert len(list(cache_dir.glob(f"{beats.PARSED_CACHE}-*.pkl"))) == 2
    fresh_process()
    reads, builds = _counting(monkeypatch, gpd, "read_file"), _counting(monkeypatch, beats, "_index_of")
    kept, kept_index = beats.load_beats(path), beats.read_beat_index(path)
    assert reads == [] and builds == []
    assert_geodataframe_equal(kept, parsed, check_dtype=True, check_crs=True, check_less_precise=False)
    assert kept.geometry.to_wkb().tolist() == parsed.geometry.to_wkb().tolist()
    assert (kept_index.codes, kept_index.divisions, kept_index.adjacent) == (
        index.codes, index.divisions, index.adjacent)
    assert shapely.to_wkb(kept_index.geoms).tolist() == shapely.to_wkb(index.geoms).tolist()
    assert shapely.is_prepared(kept_index.geoms).all()
    rng = np.random.default_rng(3)
    xmin, ymin, xmax, ymax = shapely.total_bounds(index.geoms)
    x, y = rng.uniform(xmin, xmax, 2000), rng.uniform(ymin, ymax, 2000)
    assert kept_index.beat_at(x, y).tolist() == index.beat_at(x, y).tolist()
    path.write_bytes(path.read_bytes() + b"\n")  # one byte more: parsed again
    fresh_process()
    beats.load_beats(path), beats.read_beat_index(path)
    assert len(reads) == 1 and len(builds) == 1
    fresh_process()
    with result_cache.switched_off():
        beats.load_beats(path), beats.read_beat_index(path)
    assert len(reads) == 2 and len(builds) == 2


def test_comparison_area_reused_equals_the_computation_and_misses_on_a_changed_feature(
        cache_dir: Path, adjacency: dict[str, set[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    names = sorted(adjacency)
    rng = np.random.default_rng(5)
    feats = pd.DataFrame({"density_per_sqmi": rng.gamma(2.0, 50.0, len(names)),
                          "population": rng.integers(500, 9000, len(names)).astype(float)}, index=names)
    pilot = ["PORTLAND", "RUSSELL"]
    oracle = siting._comparison_area(feats, pilot, adjacency)
    first = siting.comparison_area(feats, pilot, adjacency)
    with monkeypatch.context() as m:
        m.setattr(siting, "_comparison_area", _fail)
        again = siting.comparison_area(feats.copy(), list(pilot), adjacency)
    for got in (first, again):
        _same_json(got, oracle)
        assert got[0] == oracle[0] and [b["std_mean_diff"] for b in got[1]] == [b["std_mean_diff"] for b in oracle[1]]
    calls = _counting(monkeypatch, siting, "_comparison_area")
    other = feats.copy()
    other.iloc[7, 0] += 0.001
    siting.comparison_area(other, pilot, adjacency)
    siting.comparison_area(feats, pilot, adjacency, n=3)
    assert calls == [1, 1]


def test_rank_intervals_reused_equal_the_computation_and_miss_on_other_inputs(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    counts = rng.integers(0, 40, 12).astype(float)
    ranked = counts > 3
    area = rng.uniform(0.2, 3.0, 12)
    pop = rng.uniform(500, 9000, 12)
    weights = dict(scoring.DEFAULT_WEIGHTS)

    def interval(**over: Any) -> tuple[np.ndarray, np.ndarray]:
        args: dict[str, Any] = {"counts": counts, "ranked": ranked, "area_sqmi": area, "population": pop,
                                "weights": weights, "n_boot": 200, "seed": 4, **over}
        return scoring.bootstrap_rank_interval(**args)

    oracle = _uncached(monkeypatch, interval)
    first = interval()
    with monkeypatch.context() as m:
        m.setattr(scoring, "_bootstrap_rank_interval", _fail)
        again = interval()
    for got in (first, again):
        for g, o in zip(got, oracle, strict=True):
            assert g.dtype == o.dtype and g.tolist() == o.tolist()
    calls = _counting(monkeypatch, scoring, "_bootstrap_rank_interval")
    more = counts.copy()
    more[2] += 1
    interval(counts=more)
    interval(seed=5)
    interval(n_boot=201)
    interval(weights={**weights, "count": weights.get("count", 0.0) + 0.1})
    assert calls == [1, 1, 1, 1]


def test_gistar_layers_reused_without_building_their_weights(cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import libpysal.weights

    points, _ = hotspots.indicator_points(records_in(neighborhoods))
    area = hotspots.study_area(neighborhoods, FIRST_DIVISION)
    oracle_nh = _uncached(monkeypatch, lambda: hotspots.gistar_neighborhoods(neighborhoods, points, 199))
    oracle_grid = _uncached(monkeypatch, lambda: hotspots.gistar_grid(points, area, 1000.0, None, 199))
    hotspots.gistar_neighborhoods(neighborhoods, points, 199)
    hotspots.gistar_grid(points, area, 1000.0, None, 199)
    with monkeypatch.context() as m:
        m.setattr(libpysal.weights.Queen, "from_dataframe", _fail)
        m.setattr(libpysal.weights, "DistanceBand", _fail)
        got_nh = hotspots.gistar_neighborhoods(neighborhoods, points, 199)
        got_grid = hotspots.gistar_grid(points, area, 1000.0, None, 199)
    pd.testing.assert_frame_equal(got_nh, oracle_nh, check_exact=True)
    pd.testing.assert_frame_equal(got_grid, oracle_grid, check_exact=True)
    assert got_nh.attrs == oracle_nh.attrs and got_grid.attrs == oracle_grid.attrs
    calls = _counting(monkeypatch, hotspots, "gistar")
    hotspots.gistar_neighborhoods(neighborhoods, points.iloc[1:], 199)  # one record fewer
    hotspots.gistar_grid(points, area, 1000.0, 2000.0, 199)  # another band
    hotspots.gistar_neighborhoods(neighborhoods, points, 199, seed=settings.RANDOM_SEED + 1)
    assert calls == [1, 1, 1]


def test_each_kind_keeps_only_its_most_recently_used_files(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(result_cache, "MAX_FILES_PER_KIND", 3)
    keys = [f"{i:x}" * 64 for i in range(1, 6)]
    for i, key in enumerate(keys[:3]):
        result_cache.write("gistar", key[:64], {"i": i})
        os.utime(next(cache_dir.glob(f"gistar-{key[:32]}.json")), (1000 + i, 1000 + i))
    result_cache.write_object("site", keys[0][:64], 1)  # another kind: not counted
    assert result_cache.read("gistar", keys[0][:64]) == {"i": 0, "key": keys[0][:64]}  # used now: kept
    result_cache.write("gistar", keys[3][:64], {"i": 3})
    left = {p.name.split("-")[1][:32] for p in cache_dir.glob("gistar-*.json")}
    assert left == {keys[0][:32], keys[2][:32], keys[3][:32]}  # the least recently used (1) went
    assert result_cache.read_object("site", keys[0][:64]) == 1


def test_a_changed_setting_changes_every_key(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from libpysal.weights import lat2W

    y = np.arange(16, dtype=float)
    w = lat2W(4, 4)
    before = result_cache.settings_version()
    hotspots.gistar(y, w, 99, 1)
    calls = _counting(monkeypatch, hotspots, "_gistar")
    monkeypatch.setattr(settings, "SITE_BALANCE_MAX_SMD", settings.SITE_BALANCE_MAX_SMD + 0.01)
    assert result_cache.settings_version() != before
    hotspots.gistar(y, w, 99, 1)
    assert calls == [1]


def test_a_years_site_is_reused_when_another_year_changed(cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                          adjacency: dict[str, set[str]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    recs = records_in(neighborhoods, years=(2016, 2017))
    params = SiteParams(replicates=40)
    first = _site(recs[by_year.year_mask(recs, 2016).to_numpy()], neighborhoods, adjacency, params)
    later = recs.copy()
    in_2017 = int(np.flatnonzero(later["occurred_at"].str.startswith("2017"))[0])
    later.loc[in_2017, "weight"] = 3.0  # another year's record changed
    later = pd.concat([later, later.iloc[[in_2017]].assign(occurred_at="2023-05-01T00:00:00")], ignore_index=True)
    with monkeypatch.context() as m:
        m.setattr(siting, "evaluate_site", _fail)
        again = _site(later[by_year.year_mask(later, 2016).to_numpy()], neighborhoods, adjacency, params)
    _assert_same_site(again, first)


_LAYERS_IN_FRESH_PROCESS = """
import pickle, sys
from geo_lead import hotspots
points, area, neighborhoods = pickle.load(open(sys.argv[1], "rb"))
got = (hotspots.gistar_neighborhoods(neighborhoods, points, 199), hotspots.gistar_grid(points, area, 1000.0, None, 199),
       hotspots.kde_surface(points, area))
heavy = sorted(m for m in sys.argv[3].split(",") if m in sys.modules)
pickle.dump((got, heavy), open(sys.argv[2], "wb"))
"""


def hot_spot_layers_in_fresh_process(tmp_path: Path, points: gpd.GeoDataFrame, area: Any,
                                     neighborhoods: gpd.GeoDataFrame, watched: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The neighborhoods' and the grid's Gi* (R = 199) and the KDE of `points`, computed in a new
    Python process (with this process's environment: the same result cache), and which of the
    `watched` modules that process had imported by then."""
    import os
    import subprocess
    import sys

    (tmp_path / "in.pkl").write_bytes(pickle.dumps((points, area, neighborhoods)))
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _LAYERS_IN_FRESH_PROCESS, str(tmp_path / "in.pkl"),
                           str(tmp_path / "out.pkl"), ",".join(watched)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-3000:]
    got, heavy = pickle.loads((tmp_path / "out.pkl").read_bytes())
    return got, heavy


def assert_same_hot_spot_layers(got: Any, want: Any) -> None:
    """`hot_spot_layers_in_fresh_process`' layers equal `want` exactly (frames, attrs, KDE info)."""
    for g, w in zip(got[:2], want[:2], strict=True):
        pd.testing.assert_frame_equal(g, w, check_exact=True)
        assert g.attrs == w.attrs
    pd.testing.assert_frame_equal(got[2][0], want[2][0], check_exact=True)
    assert got[2][1] == want[2][1]


def test_reused_hot_spots_import_no_statistics_library(cache_dir: Path, neighborhoods: gpd.GeoDataFrame,
                                                        tmp_path: Path) -> None:
    """A process whose Gi* layers and KDE are all reused imports neither esda, libpysal nor
    scikit-learn or scipy's statistics (the labels' FDR cut-off is `hotspots.fdr_cutoff`), and
    gets what a process computing them got (`pipeline.HOTSPOT_COMPUTE_MODULES` are imported
    ahead only when a computation is likely)."""
    points, _ = hotspots.indicator_points(records_in(neighborhoods))
    area = hotspots.study_area(neighborhoods, FIRST_DIVISION)
    want = (hotspots.gistar_neighborhoods(neighborhoods, points, 199), hotspots.gistar_grid(points, area, 1000.0, None, 199),
            hotspots.kde_surface(points, area))  # computed: fills the cache
    got, heavy = hot_spot_layers_in_fresh_process(tmp_path, points, area, neighborhoods,
                                                  ("esda", "libpysal", "sklearn", "scipy.special", "scipy.stats"))
    assert heavy == []
    assert_same_hot_spot_layers(got, want)
