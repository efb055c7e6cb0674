"""Reuse of rendered outputs: figure PNGs (geo_lead.figure_cache), map pages and the zone page
(geo_lead.page_reuse).

Oracles are independent of the reuse: a reused PNG is compared with the PNG the public figure
builder draws afresh, a kept page with the file an earlier build wrote, and a changed input
or an edited file must give a new rendering. The layers are the TEST FIXTURE of
tests/test_maps.py (real boundaries and address points, made-up counts).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure
from test_maps import fill_store, map_inputs

from geo_lead import (
    figure_cache,
    figure_data,
    figures,
    map_plans,
    maps,
    offline,
    page_reuse,
    parallel,
    result_cache,
    settings,
)
from geo_lead.store import opened


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty result cache of this test's own."""
    folder = tmp_path / "results"
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(folder))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    return folder


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    return map_inputs()


def _line_figure(values: list[float]) -> Figure:
    fig = Figure(figsize=(2.0, 1.5))
    fig.subplots().plot(values)
    return fig


class Counter:
    """Wraps a callable and counts its calls."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


# --- figures ------------------------------------------------------------------------------------
def test_cached_png_is_the_fresh_drawing_and_is_drawn_once_per_input(cache_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = figures.png_bytes(_line_figure([1.0, 3.0, 2.0]))
    build = Counter(lambda: _line_figure([1.0, 3.0, 2.0]))
    first = figure_cache.cached_png("test_line", ([1.0, 3.0, 2.0],), build)
    second = figure_cache.cached_png("test_line", ([1.0, 3.0, 2.0],), build)
    assert first == second == fresh and first.startswith(b"\x89PNG")
    assert build.calls == 1
    assert len(list(cache_dir.glob("figure_png-*.json"))) == 1
    # other data: drawn again (and kept beside the first)
    other = Counter(lambda: _line_figure([1.0, 3.0, 2.5]))
    assert figure_cache.cached_png("test_line", ([1.0, 3.0, 2.5],), other) == \
        figures.png_bytes(_line_figure([1.0, 3.0, 2.5]))
    assert other.calls == 1 and len(list(cache_dir.glob("figure_png-*.json"))) == 2
    # the cache switched off: drawn every time
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")
    figure_cache.cached_png("test_line", ([1.0, 3.0, 2.0],), build)
    assert build.calls == 2


def test_cached_png_with_a_damaged_entry_is_drawn_again(cache_dir: Path) -> None:
    build = Counter(lambda: _line_figure([0.0, 1.0]))
    png = figure_cache.cached_png("test_line", ([0.0, 1.0],), build)
    (entry,) = cache_dir.glob("figure_png-*.json")
    entry.write_text(entry.read_text().replace('"png": "', '"png": "!!not base64!!'), encoding="utf-8")
    assert figure_cache.cached_png("test_line", ([0.0, 1.0],), build) == png
    assert build.calls == 2


def test_data_digest_tells_apart_what_a_figure_could_show() -> None:
    geoms = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)]
    base = gpd.GeoDataFrame({"name": ["A", "B"], "v": [1, 2]}, geometry=geoms, crs=4326)
    d = figure_cache.data_digest
    assert d(base) == d(base.copy())
    variants = [
        base.assign(v=[1, 3]),  # a value
        base.assign(v=[1.0, 2.0]),  # a dtype
        base.assign(name=["A", "C"]),  # a text
        base.assign(name=["A", None]),  # missing text is not empty text ...
        base.assign(name=["A", ""]),
        base.set_crs(2246, allow_override=True),  # the CRS
        base.set_geometry([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 2)]),  # a shape
        base.rename(columns={"v": "w"}),  # a column name
        base.iloc[::-1],  # the order
    ]
    digests = {d(v) for v in variants}
    assert len(digests) == len(variants) and d(base) not in digests
    assert d(np.array([1, 2])) != d(np.array([1.0, 2.0])) != d([1, 2])
    assert d({"a": 1, "b": [1, 2]}) == d({"b": [1, 2], "a": 1})
    assert d(pd.Series(["x", "y"], dtype="string[pyarrow]")) == d(pd.Series(["x", "y"], dtype="string[pyarrow]"))
    with pytest.raises(TypeError, match="figure cache"):
        d({"a": object()})


def test_report_choropleth_is_the_fresh_figure_and_ignores_values_it_does_not_draw(
        cache_dir: Path, inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    scores, zones = inputs["scores"], inputs["zones"]
    draw = Counter(figures.draw_choropleth)
    monkeypatch.setattr(figures, "draw_choropleth", draw)
    png = figure_data.choropleth_png(scores, zones)
    assert png == figures.png_bytes(figures.choropleth_figure(scores, zones, column="score"))
    assert draw.calls == 2  # ours, then the oracle's
    outside = scores.index[~scores["in_area"].astype(bool)][0]
    moved = scores.copy()
    moved.loc[outside, "score"] = 0.987654  # drawn grey whatever its value: same picture
    assert figure_data.choropleth_png(moved, zones) == png and draw.calls == 2
    inside = scores.index[scores["in_area"].astype(bool)]
    swapped = scores.copy()
    swapped.loc[inside, "score"] = scores.loc[inside, "score"].to_numpy()[::-1]  # the colours move
    assert figure_data.choropleth_png(swapped, zones) != png and draw.calls == 3


def test_monthly_figure_is_the_fresh_figure_and_keyed_on_what_it_draws(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The before/after figure is drawn from `monthly_series_data` alone: the PNG equals the one
    drawn from the whole result; accounting, gap months and limits (not drawn) reuse it; every
    drawn value draws it again."""
    import copy

    from test_evaluation import HAND, _records

    from geo_lead import pilot_figures
    from geo_lead.evaluation import EvaluationParams, evaluate

    res = evaluate(_records(HAND), ["A"], ["B"],
                   EvaluationParams(pilot_start="2018-04-15", replicates=99, min_months=2)).to_dict()
    fresh = figures.png_bytes(pilot_figures.monthly_series_figure(res))
    draw = Counter(pilot_figures.monthly_series_figure)
    monkeypatch.setattr(pilot_figures, "monthly_series_figure", draw)
    assert figure_data.monthly_series_png(res) == fresh and draw.calls == 1
    not_drawn = copy.deepcopy(res)
    not_drawn["accounting"]["records_in"] = res["accounting"].get("records_in", 0) + 1
    not_drawn["periods"]["gap_months"] = ["2024-01"]
    not_drawn["limits"] = [*res["limits"], "one more limit"]
    not_drawn["versus_rest"]["did_log"] = 9.0
    assert figure_data.monthly_series_png(not_drawn) == fresh and draw.calls == 1

    def changed(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        out = copy.deepcopy(res)
        edit(out)
        return out

    drawn = [
        changed(lambda r: r["monthly"][0].update(pilot=r["monthly"][0]["pilot"] + 1.0)),
        changed(lambda r: r["monthly"][1].update(rest=r["monthly"][1]["rest"] + 1.0)),
        changed(lambda r: r["monthly"][2].update(comparison=r["monthly"][2]["comparison"] + 1.0)),
        changed(lambda r: r["monthly"][0].update(period="transition")),
        changed(lambda r: r["monthly"][0].update(month="2017-12")),
        changed(lambda r: r.update(pilot_start="2018-04-16")),
        changed(lambda r: r["zones"].update(pilot=["Z"])),
        changed(lambda r: r["groups"]["pilot"].update(before_mean_per_month=99.0)),
        changed(lambda r: r["groups"]["rest"].update(after_mean_per_month=99.0)),
        changed(lambda r: r["estimate"].update(did_log=0.5)),
        changed(lambda r: r["estimate"].update(ci_low=-3.0)),
        changed(lambda r: r["estimate"].update(ci_high=3.0)),
        changed(lambda r: r["bootstrap"].update(level=0.5)),
        changed(lambda r: r.update(indicator="opiate")),
    ]
    for i, variant in enumerate(drawn, start=2):
        png = figure_data.monthly_series_png(variant)
        assert draw.calls == i
        monkeypatch.setattr(pilot_figures, "monthly_series_figure", draw.fn)
        assert png == figures.png_bytes(pilot_figures.monthly_series_figure(variant))
        monkeypatch.setattr(pilot_figures, "monthly_series_figure", draw)


def test_point_record_counts_are_aggregate_points_counts(inputs: dict[str, Any]) -> None:
    recs = inputs["records"]
    assert maps.aggregate_points(recs)["n"].tolist() == figure_data.point_counts(recs).tolist()
    assert len(figure_data.point_counts(recs.assign(lon=np.nan))) == 0


# --- map pages ----------------------------------------------------------------------------------
def _write_maps(store_path: Path, out: Path) -> dict[str, Path]:
    with opened(store_path) as store:
        return maps.write_maps(store, out)


def test_map_pages_are_kept_while_inputs_and_files_are_unchanged(
        cache_dir: Path, store_path: Path, tmp_path: Path, inputs: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.NO_FORK_ENV, "1")  # renders counted here: no page rendered in a child
    fill_store(store_path, inputs)
    out = tmp_path / "maps"
    render = Counter(offline.render_map)
    monkeypatch.setattr(offline, "render_map", render)
    paths = _write_maps(store_path, out)
    assert render.calls == 2
    written = {name: (p.read_bytes(), p.stat().st_mtime_ns) for name, p in paths.items()}
    # same inputs, files intact: nothing rendered, the files are the ones written
    _write_maps(store_path, out)
    assert render.calls == 2
    assert {name: (p.read_bytes(), p.stat().st_mtime_ns) for name, p in paths.items()} == written
    # a page edited on disk is written again: filled from the kept rendering of its shape (not
    # rendered), so the very bytes written first
    paths["timeline"].write_text("<html>edited</html>", encoding="utf-8")
    _write_maps(store_path, out)
    assert render.calls == 2
    assert paths["timeline"].read_bytes() == written["timeline"][0]
    # a removed page likewise
    paths["site_selection"].unlink()
    _write_maps(store_path, out)
    assert render.calls == 2 and paths["site_selection"].read_bytes() == written["site_selection"][0]
    # with the kept renderings gone too, both are rendered again
    for held in cache_dir.glob(f"{page_reuse.TEMPLATE_KIND}-*.json"):
        held.unlink()
    for p in paths.values():
        p.unlink()
    _write_maps(store_path, out)
    assert render.calls == 4
    assert all(_without_ids(p.read_text(encoding="utf-8")) == _without_ids(written[n][0].decode("utf-8"))
               for n, p in paths.items())


def test_map_pages_are_rebuilt_when_an_input_changes(
        cache_dir: Path, store_path: Path, tmp_path: Path, inputs: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.NO_FORK_ENV, "1")  # renders counted here: no page rendered in a child
    fill_store(store_path, inputs)
    out = tmp_path / "maps"
    _write_maps(store_path, out)
    before = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}
    render = Counter(offline.render_map)
    monkeypatch.setattr(offline, "render_map", render)
    kde = inputs["kde"].copy()
    kde["density_per_sqmi"] = kde["density_per_sqmi"] * 2.0
    with opened(store_path) as store:
        store.replace_features("hotspot_kde", kde)
    timeline_written = (out / "timeline.html").stat().st_mtime_ns
    _write_maps(store_path, out)
    # the site map shows the density surface (written again, filled: same shape, other data);
    # the timeline does not (kept)
    assert render.calls == 0
    assert (out / "site_selection.html").read_text(encoding="utf-8") != before["site_selection.html"]
    assert (out / "timeline.html").stat().st_mtime_ns == timeline_written
    # a setting the pages read (free text cut to 12 characters), changed at run time: both
    # rendered again (the setting is in every key, the shape's too)
    monkeypatch.setattr(maps.settings, "PAGE_TEXT_MAX_CHARS", 12)
    _write_maps(store_path, out)
    assert render.calls == 2
    assert (out / "timeline.html").read_text(encoding="utf-8") != before["timeline.html"]
    # the reuse switched off: rendered every time
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")
    _write_maps(store_path, out)
    assert render.calls == 4


def _without_ids(page: str) -> str:
    """A page with folium's random element ids (uuid4 hex) replaced: what differs between two
    renderings of the same inputs."""
    import re

    return re.sub(r"_[0-9a-f]{32}", "_ID", page)


def test_map_pages_filled_from_their_slotted_rendering_equal_fresh_renderings(
        cache_dir: Path, store_path: Path, tmp_path: Path, inputs: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun that changes the pages' notes (the store's record count), parameters line or a
    layer's data renders nothing: the pages are filled from the kept renderings of their shapes
    with slots, and equal what a fresh rendering (reuse off, as `--force`) writes, but for
    folium's random ids. A text with Jinja syntax, or a new shape, is rendered."""
    from geo_lead import parameters
    from geo_lead.sources import RECORD_COLUMNS
    from geo_lead.store import FLAG_COLUMNS

    monkeypatch.setenv(parallel.NO_FORK_ENV, "1")  # renders counted here: no page rendered in a child
    fill_store(store_path, inputs)
    with opened(store_path) as store:  # the maps show the scores' indicator's records (and count the others)
        store.replace_features("scores", inputs["scores"].assign(indicator="opiate"))
    line = {"text": 'indicator lead_eligible; frames <a href="x">&amp;</a> \u2028 caf\u00e9 \\ "q"'}
    monkeypatch.setattr(parameters, "consistent_parameters", lambda *_a, **_k: {"p": 1})
    monkeypatch.setattr(parameters, "describe", lambda _p: line["text"])
    out = tmp_path / "maps"
    render = Counter(offline.render_map)
    monkeypatch.setattr(offline, "render_map", render)
    _write_maps(store_path, out)
    assert render.calls == 2
    line["text"] = "other </script><!-- line & 'sampling' 9f8e"
    with opened(store_path) as store:
        n = store.count("records")
        extra = pd.DataFrame({c: None for c in RECORD_COLUMNS}, index=[0])
        extra["record_id"] = extra["content_hash"] = "extra-1"
        extra["occurred_at"], extra["offense_text"], extra["address_raw"] = "2019-05-01T10:00:00", "X", "1 MAIN ST"
        extra["source"], extra["source_file"] = "crime_pre2023", "extra.csv"
        for flag in FLAG_COLUMNS:
            extra[flag] = 0
        with store.write():
            store.upsert_records(extra, "2026-01-02T00:00:00Z")
    planned = Counter(maps.site_plan)
    monkeypatch.setattr(maps, "site_plan", planned)
    paths = _write_maps(store_path, out)
    assert render.calls == 2  # filled, not rendered
    assert planned.calls == 0  # from the rendering with slots for the notes and line: no plan made
    filled = {name: p.read_text(encoding="utf-8") for name, p in paths.items()}
    with result_cache.switched_off(), opened(store_path) as store:
        fresh_paths = maps.write_maps(store, tmp_path / "fresh")
    assert render.calls == 4
    for name, page in filled.items():
        fresh = fresh_paths[name].read_text(encoding="utf-8")
        assert page != fresh  # other ids ...
        assert _without_ids(page) == _without_ids(fresh)  # ... the same page
        assert maps.page_text(line["text"]) in page and f"{n + 1:,} in the store" in page
        assert "other </script>" not in page  # written escaped, as a fresh rendering writes it
    # a layer's data changed (the density surface), with records added: filled again, no rendering
    kde = inputs["kde"].copy()
    kde["density_per_sqmi"] = kde["density_per_sqmi"] * 3.0
    with opened(store_path) as store:
        store.replace_features("hotspot_kde", kde)
        extra["record_id"] = extra["content_hash"] = "extra-2"
        with store.write():
            store.upsert_records(extra, "2026-01-03T00:00:00Z")
    line["text"] = "a third line {{ not jinja }}"  # the parameters line holds Jinja syntax: rendered
    paths = _write_maps(store_path, out)
    assert render.calls == 6
    line["text"] = "a third line"
    scheduled: list[Any] = []
    write_pages = maps._write_pages
    monkeypatch.setattr(maps, "_write_pages", lambda pages: scheduled.extend(pages) or write_pages(pages))
    paths = _write_maps(store_path, out)
    # neither page is scheduled as a rendering (which would import folium and fork a child for
    # the second): the site map is filled from its shape's rendering, the timeline from its notes'
    assert [(p.path.name, p.renders) for p in scheduled] == [("site_selection.html", False), ("timeline.html", False)]
    assert render.calls == 6  # filled from the site map's plan (its shape's rendering with slots)
    assert planned.calls == 3  # the fresh build's, the Jinja line's, this one's
    with result_cache.switched_off(), opened(store_path) as store:
        fresh_paths = maps.write_maps(store, tmp_path / "fresh")
    assert render.calls == 8
    for name, p in paths.items():
        assert _without_ids(p.read_text(encoding="utf-8")) == _without_ids(fresh_paths[name].read_text(encoding="utf-8"))
    # the site map's shape changed (no Gi* grid layer): rendered again; the timeline filled
    with opened(store_path) as store:
        store.replace_features("hotspot_gistar_grid", inputs["gistar_grid"].iloc[0:0])
    line["text"] = "a fourth line"
    _write_maps(store_path, out)
    assert render.calls == 9  # the site map's rendering with slots


_FORKED_PAGES = """
import json, os, sys
from pathlib import Path
from geo_lead import maps, parallel
from geo_lead.store import opened

store, out = Path(sys.argv[1]), Path(sys.argv[2])
forks = []
for folder, one_process in (("forked", False), ("here", True), ("forked", False)):
    if one_process:
        os.environ[parallel.NO_FORK_ENV] = "1"
    else:
        os.environ.pop(parallel.NO_FORK_ENV, None)
    with opened(store) as s:
        maps.write_maps(s, out / folder)
    forks.append(parallel.forks())
print(json.dumps(forks))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork with PR_SET_PDEATHSIG: Linux")
def test_map_pages_rendered_in_a_child_equal_those_rendered_here(
        cache_dir: Path, store_path: Path, tmp_path: Path, inputs: dict[str, Any]) -> None:
    """Two pages to render: the second is rendered in a forked child while the process renders
    the first (`maps._write_pages`); the pages equal those of a one-process build, but for
    folium's random ids, and are recorded as kept. In a fresh interpreter (a full test run
    leaves threads behind in this one, which then cannot fork)."""
    import subprocess

    fill_store(store_path, inputs)
    env = {k: v for k, v in os.environ.items() if k != parallel.NO_FORK_ENV}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", _FORKED_PAGES, str(store_path), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # one child (the timeline) for the first build; none in one process; none once recorded
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1, 1, 1]
    for name in ("site_selection.html", "timeline.html"):
        forked, here = (tmp_path / f / name for f in ("forked", "here"))
        assert _without_ids(forked.read_text(encoding="utf-8")) == _without_ids(here.read_text(encoding="utf-8"))


def test_map_page_key_reads_every_constant_without_importing_folium() -> None:
    """`maps.page_key` reads the constants of settings, cartography, map_layers and maps, not of
    map_elements (importing it imports folium): map_elements may define none of its own -- each
    of its uppercase names is map_layers' or cartography's object. And the key is made, and a
    kept page filled, in a process that has not imported folium."""
    import subprocess
    import sys

    from geo_lead import cartography, map_elements, map_layers

    own = [name for name, value in vars(map_elements).items() if name.isupper()
           and value is not getattr(map_layers, name, None) and value is not getattr(cartography, name, None)]
    assert own == []
    code = ("import sys\nfrom geo_lead import maps, page_reuse\n"
            "maps.page_key('timeline', 'x'); page_reuse.filled_page('ab' * 32, ['t'], ['t'], lambda t: t[0])\n"
            "print('folium' in sys.modules, 'geo_lead.map_elements' in sys.modules)")
    env = {**os.environ, "GEO_LEAD_RESULT_CACHE": "0"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["False", "False"]


def test_filled_page_renders_directly_when_it_cannot_fill(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def render(texts: Any) -> str:
        calls.append(list(texts))
        return "<p>" + "|".join(texts) + "</p>"

    key = "ab" * 32
    assert page_reuse.filled_page(key, ["x", "y"], ["X", "Y"], render) == "<p>X|Y</p>"
    assert calls == [page_reuse.slot_tokens(2, key)]
    assert page_reuse.filled_page(key, ["u", "v"], ["U", "V"], render) == "<p>U|V</p>" and len(calls) == 1
    assert page_reuse.filled_page(key, ["u", ""], ["U", ""], render) == "<p>u|</p>" and calls[-1] == ["u", ""]
    hidden = page_reuse.filled_page("cd" * 32, ["a"], ["A"], lambda t: calls.append(list(t)) or "<p>none</p>")
    assert hidden == "<p>none</p>" and calls[-1] == ["a"]  # no slot in the page: rendered with its text
    monkeypatch.setenv(result_cache.ENV_SWITCH, "0")
    assert page_reuse.filled_page(key, ["u", "v"], ["U", "V"], render) == "<p>u|v</p>" and calls[-1] == ["u", "v"]


@given(st.text())
def test_a_layer_name_is_written_as_the_layer_control_writes_it(name: str) -> None:
    """`map_plans.layer_name_text` is Jinja's ``tojson`` filter (folium's layer control writes
    the names with it), without the quotes: what a name slot is filled with."""
    from jinja2 import Template

    assert map_plans.layer_name_text(name) == Template("{{ n|tojson }}").render(n=name)[1:-1]


def test_map_plans_with_jinja_syntax_or_one_name_twice_are_not_filled(inputs: dict[str, Any]) -> None:
    """What a rendering with slots cannot reproduce: a text folium's elements compile as Jinja,
    two layers of one name (the layer control keeps one). Such a plan is rendered."""
    layers = maps.SiteMapInputs(inputs["scores"], inputs["kde"], record_points=inputs["records"])
    assert map_plans.site_plan(layers, notes=["n"]).fillable()
    for text in ("{{ x }}", "{% if %}", "{# c #}", "a\rb"):
        assert not map_plans.site_plan(layers, notes=[text]).fillable()
    plan = map_plans.site_plan(layers)
    first, second = [e for e in plan.elements if e.kind in ("DataLayer", "PointLayer")][:2]
    plan.given[second.slots[1]] = plan.given[first.slots[1]]
    assert not plan.fillable()


def test_map_page_key_covers_the_records_shown(inputs: dict[str, Any]) -> None:
    recs = inputs["records"]
    key = maps.page_key("timeline", recs, None, "x")
    assert maps.page_key("timeline", recs.copy(), None, "x") == key
    edited = recs.copy()
    edited.loc[edited.index[0], "address_raw"] = edited["address_raw"].iloc[0] + " "
    assert maps.page_key("timeline", edited, None, "x") != key
    assert maps.page_key("site_selection", recs, None, "x") != key


# --- the zone page ------------------------------------------------------------------------------
def test_zone_page_is_not_rewritten_when_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_lead import outputs
    from geo_lead.zone_page import write_page

    out = write_page(tmp_path / "zone_check.html", streets=False)
    first = out.read_bytes()
    replaced: list[str] = []
    real = os.replace
    monkeypatch.setattr(outputs.os, "replace", lambda a, b: (replaced.append(str(b)), real(a, b))[1])
    write_page(out, streets=False)
    assert replaced == [] and out.read_bytes() == first
    out.write_text(first.decode("utf-8").replace("<title>", "<title>EDITED "), encoding="utf-8")
    write_page(out, streets=False)
    assert replaced == [str(out)] and out.read_bytes() == first


def test_zone_page_key_covers_every_input_and_a_kept_page_is_the_fresh_rendering(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect
    import shutil

    from geo_lead import pipeline, zone_page
    from geo_lead.zone import ZoneChecker

    shipped = zone_page.page_input_files()
    defaults = inspect.signature(ZoneChecker).parameters
    # the files ZoneChecker() and the geocoder behind the street index read are all hashed
    assert shipped[0] == Path(defaults["zone_file"].default)
    assert {Path(defaults["neighborhoods_file"].default), settings.BEATS_FILE,
            settings.PACKAGE_DIR / "static" / "zone" / "zone_check.html",
            *settings.REFERENCE_DIR.glob("*.csv")} <= set(shipped)
    # copies of a few of them, each changed in turn: every change is a miss
    files = []
    for i, path in enumerate((shipped[0], shipped[1], sorted(settings.REFERENCE_DIR.glob("*.csv"))[0])):
        files.append(tmp_path / f"{i}_{path.name}")
        shutil.copy(path, files[-1])
    key = zone_page.offline_page_key(files)
    assert zone_page.offline_page_key(files) == key
    seen = {key}
    for path in files:
        data, times = path.read_bytes(), (path.stat().st_atime_ns, path.stat().st_mtime_ns)
        path.write_bytes(data + b" ")
        os.utime(path, ns=times)
        seen.add(zone_page.offline_page_key(files))
        path.write_bytes(data)
        os.utime(path, ns=times)
        assert zone_page.offline_page_key(files) == key
    os.utime(files[0], ns=(files[0].stat().st_atime_ns, files[0].stat().st_mtime_ns + 10**9))  # zone date
    seen.add(zone_page.offline_page_key(files))
    with monkeypatch.context() as m:
        m.setattr(settings, "ZONE_PAGE_STREETS_RADIUS_FT", settings.ZONE_PAGE_STREETS_RADIUS_FT + 1)
        seen.add(zone_page.offline_page_key(files))
    with monkeypatch.context() as m:
        m.setattr(result_cache, "code_version", lambda: "other code")
        seen.add(zone_page.offline_page_key(files))
    with monkeypatch.context() as m:
        m.setattr(zone_page, "PAGE_LIBRARIES", (*zone_page.PAGE_LIBRARIES, "folium"))
        seen.add(zone_page.offline_page_key(files))
    assert len(seen) == 8
    assert zone_page.offline_page_key() != key  # the shipped files

    # kept: the page the run writes, not rendered again while its key holds
    out, real = tmp_path / "maps" / "zone_check.html", zone_page.offline_page_key()
    zone_page.write_kept(out, real, pipeline.zone_page_text)
    written = out.stat().st_mtime_ns
    zone_page.write_kept(out, real, lambda: pytest.fail("a kept zone page was rendered"))
    assert out.stat().st_mtime_ns == written
    assert out.read_text(encoding="utf-8") == pipeline.zone_page_text()  # a fresh rendering
    out.write_text("edited", encoding="utf-8")  # an edited file is written again
    zone_page.write_kept(out, real, pipeline.zone_page_text)
    assert out.read_text(encoding="utf-8") == pipeline.zone_page_text()


def test_write_if_changed_records_and_checks_the_file(cache_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    key = result_cache.digest(["test page"])
    assert page_reuse.write_if_changed(page, key, lambda: "<html>one</html>") is True
    assert page_reuse.is_current(page, key)
    assert page_reuse.write_if_changed(page, key, lambda: "<html>two</html>") is False
    assert page.read_text(encoding="utf-8") == "<html>one</html>"
    other = result_cache.digest(["test page", "v2"])
    assert not page_reuse.is_current(page, other)
    assert page_reuse.write_if_changed(page, other, lambda: "<html>two</html>") is True
    assert page.read_text(encoding="utf-8") == "<html>two</html>"
    assert not page_reuse.is_current(page, key)  # the file is no longer the page of `key`



def test_pages_are_written_with_the_cache_switched_off(cache_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    key = result_cache.digest(["test page"])
    page_reuse.write_if_changed(page, key, lambda: "<html>one</html>")
    page_reuse.write_if_different(tmp_path / "z.html", "<html>zone</html>")
    with result_cache.switched_off():  # geo-lead run --force
        assert page_reuse.write_if_changed(page, key, lambda: "<html>one</html>") is True
        assert page_reuse.write_if_different(tmp_path / "z.html", "<html>zone</html>") is True
    assert page_reuse.write_if_changed(page, key, lambda: "<html>one</html>") is False
    assert page_reuse.write_if_different(tmp_path / "z.html", "<html>zone</html>") is False


# --- map layers' display geometries -------------------------------------------------------------
def test_display_geometries_reused_equal_the_drawing_and_a_moved_vertex_or_setting_misses(
        cache_dir: Path, inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A site map's layer geometries (simplified, reprojected, rounded) reused from the cache
    equal those drawn with the cache off; a changed geometry or simplification draws again."""
    from geo_lead import map_layers

    scores = inputs["scores"]
    props = [{"_tip": str(n)} for n in scores["neighborhood"]]
    with monkeypatch.context() as m:
        m.setenv(result_cache.ENV_SWITCH, "0")
        want = map_layers._features(scores, props)
        want_raw = map_layers._features(scores, props, simplify_ft=0)
    map_layers._features(scores, props)  # drawn, kept
    map_layers._features(scores, props, simplify_ft=0)
    simplify = Counter(gpd.GeoSeries.simplify)
    monkeypatch.setattr(gpd.GeoSeries, "simplify", lambda self, *a, **k: simplify(self, *a, **k))
    assert map_layers._features(scores, props) == want  # reused: no simplification
    assert map_layers._features(scores, props, simplify_ft=0) == want_raw
    assert simplify.calls == 0
    moved = scores.copy()
    moved.loc[moved.index[0], "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], 0.001)
    got = map_layers._features(moved, props)
    assert simplify.calls == 1 and got["features"][1:] == want["features"][1:]
    assert got["features"][0] != want["features"][0]
    map_layers._features(scores, props, simplify_ft=2 * settings.MAP_SIMPLIFY_FT)
    assert simplify.calls == 2


def test_text_element_renders_as_branca_element_without_compiling_inert_text() -> None:
    """`map_elements.text_element` renders what ``branca.element.Element(text)`` renders (its
    text as a Jinja template), for inert text (kept as it is, less one trailing newline) and
    for text Jinja would read (given to ``Element``)."""
    from branca.element import Element

    from geo_lead import map_elements

    texts = ['var a = {"b":{"c":[1,2]}};', "<script>x</script>\n", "a\n\n", "", "\n", "{{ 1 + 1 }}",
             "{% if true %}y{% endif %}", "{# c #}z", "a\r\nb", "} } { {", "%} }} #}", "é \u2028 ok"]
    for text in texts:
        assert map_elements.text_element(text).render() == Element(text).render(), repr(text)
    assert type(map_elements.text_element("plain")) is not Element
    assert type(map_elements.text_element("{{ x }}")) is Element
