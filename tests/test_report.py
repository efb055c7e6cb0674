"""geo_lead.figures, geo_lead.report and the `geo-lead maps` / `geo-lead report` commands.

Numbers are checked against hand-computed cases; the store is filled with the TEST FIXTURE
layers of tests/test_maps.py (real boundaries and address points, made-up counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_maps import fill_store, map_inputs

from geo_lead import figures, offline, report
from geo_lead.cli import main


@pytest.fixture(scope="module")
def inputs() -> dict[str, object]:
    return map_inputs()


# --- figures ----------------------------------------------------------------------------------
def test_concentration_curve_equal_weights_hand_computed() -> None:
    x, y = figures.concentration_curve([1, 6, 0, 3])
    assert x == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert y == pytest.approx([0, 0.6, 0.9, 1.0, 1.0])
    assert figures.share_at(x, y, 0.5) == pytest.approx(0.25)
    assert figures.share_at(x, y, 0.9) == pytest.approx(0.5)


def test_concentration_curve_by_area_hand_computed() -> None:
    # densities 1/3 and 9/1: the small dense unit comes first
    x, y = figures.concentration_curve([1, 9], [3, 1])
    assert x == pytest.approx([0, 0.25, 1.0])
    assert y == pytest.approx([0, 0.9, 1.0])
    x, y = figures.concentration_curve([], None)
    assert list(y) == [0.0, 0.0]


def test_figures_render_png(inputs: dict[str, object]) -> None:
    fig = figures.rank_interval_figure(inputs["scores"], top_n=5)
    assert len(fig.axes[0].get_yticks()) == 5
    for f in (fig, figures.choropleth_figure(inputs["scores"], inputs["zones"]),
              figures.concentration_figure(np.array([5, 3, 1]), pd.DataFrame(inputs["scores"])[["count", "area_sqmi"]])):
        png = figures.png_bytes(f, dpi=40)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --- report pieces ----------------------------------------------------------------------------
def test_match_rates_account_for_every_record() -> None:
    recs = pd.DataFrame({"match_type": ["exact", "exact", "block", None, "unmatched", "intersection"]})
    rates = report.match_rates(recs)
    assert rates.set_index("match_type")["records"].to_dict() == {
        "exact": 2, "block": 1, "intersection": 1, "unmatched": 1, "not geocoded yet": 1}
    assert rates["records"].sum() == len(recs)
    assert rates["share"].sum() == pytest.approx(1.0)


def test_source_summary_dates() -> None:
    recs = pd.DataFrame({"source_file": ["a.csv", "a.csv", "b.csv"], "source": ["crime_pre2023"] * 3,
                         "occurred_at": ["2017-03-01T10:00:00", "2017-01-02T00:00:00", "not a date"]})
    out = report.source_summary(recs).set_index("source_file")
    assert out.loc["a.csv", "records"] == 2
    assert (out.loc["a.csv", "first"], out.loc["a.csv", "last"]) == ("2017-01-02", "2017-03-01")
    assert out.loc["b.csv", "first"] == "n/a"


def test_report_html_sections_escaping_and_self_contained(inputs: dict[str, object]) -> None:
    recs = inputs["records"].assign(source_file="fixture.csv", source="crime_pre2023",
                                    geocode_reason="")
    recs.loc[recs["match_type"] == "unmatched", "geocode_reason"] = "no such street in the reference: <b>X</b> ST"
    page = report.build_report_html({
        "store": "<b>x</b>.gpkg", "records": recs, "rejects": 3,
        "reject_reasons": pd.DataFrame({"reason": ["bad date"], "rows": [3]}), "scores": inputs["scores"],
        "zones": inputs["zones"], "site_result": {"verdict": "<script>alert(1)</script> FIXTURE verdict", "k": 2},
        "hotspots_result": None})
    for heading in ("Changes since the last run", "The data", "Geocoding match rates by type", "Ranked neighborhoods",
                    "Figures", "Verdict in detail", "Comparison area", "Glossary", "Method", "Limits"):
        assert f">{heading}</h" in page, heading
    assert "<script>" not in page and "<img src=z" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; FIXTURE verdict" in page
    assert page.count('src="data:image/png;base64,') == 3
    assert offline.external_references(page) == []
    assert 'class="pilot"' in page
    assert "no such street in the reference: &lt;b&gt;X&lt;/b&gt; ST" in page
    assert "Rejected rows by reason" in page and "bad date" in page
    assert "Shawnee, Limerick" in page  # the comparison area's members


def test_report_with_empty_store_says_what_is_missing(store_path: Path, tmp_path: Path) -> None:
    from geo_lead.store import opened

    with opened(store_path) as store:
        path = report.write_report(store, tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert "No records in the store yet" in page and "run <code>geo-lead score</code>" in page
    assert "No site-selection result" in page


# --- CLI --------------------------------------------------------------------------------------
def test_cli_maps_and_report(store_path: Path, tmp_path: Path, inputs: dict[str, object],
                             capsys: pytest.CaptureFixture[str]) -> None:
    fill_store(store_path, inputs)
    out = tmp_path / "maps"
    assert main(["maps", "--store", str(store_path), "--out", str(out)]) == 0
    assert main(["report", "--store", str(store_path), "--out", str(out / "report.html")]) == 0
    printed = capsys.readouterr().out
    assert "site_selection" in printed and "report" in printed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "FIXTURE: the pilot zone" in page
    assert "600</b> records in the store" in page
    assert offline.external_references(page) == []
    total_mb = sum(p.stat().st_size for p in out.glob("*.html")) / 1e6
    assert total_mb <= 5.0


def test_cli_missing_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["maps", "--store", str(tmp_path / "none.gpkg")]) == 2
    assert "no store here yet" in capsys.readouterr().err


def test_cli_maps_flags(store_path: Path, tmp_path: Path, inputs: dict[str, object],
                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    fill_store(store_path, inputs)
    assert main(["maps", "--store", str(store_path), "--out", str(tmp_path / "t"), "--tiles", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    # --tiles writes *_tiles.html beside the offline pages and leaves those offline
    assert set(paths) == {"site_selection", "timeline", "site_selection_tiles", "timeline_tiles"}
    assert Path(paths["site_selection_tiles"]).name == "site_selection_tiles.html"
    page = Path(paths["site_selection_tiles"]).read_text(encoding="utf-8")
    assert "tile.openstreetmap.org" in page and offline.external_references(page) == []
    for name in ("site_selection", "timeline"):
        assert "tile.openstreetmap.org" not in Path(paths[name]).read_text(encoding="utf-8")
    assert main(["maps", "--store", str(store_path), "--out", str(tmp_path / "t"), "--tiles"]) == 0
    assert "load OpenStreetMap tiles from the internet" in capsys.readouterr().out
    assert main(["maps", "--store", str(store_path), "--out", str(tmp_path / "o"), "--no-offline"]) == 0
    online = (tmp_path / "o" / "site_selection.html").read_text(encoding="utf-8")
    assert "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js" in online
    assert (tmp_path / "o" / "site_selection.html").stat().st_size < len(page)


# --- template and words -----------------------------------------------------------------------
def test_report_builds_no_html_in_python() -> None:
    # the page's markup lives in templates/report.html.j2 (autoescape); report.py builds data
    import re

    source = Path(report.__file__).read_text(encoding="utf-8")
    assert not re.search(r"<(p|td|th|tr|table|ul|li|b|h\d|div|span|img|code|dl|details)\b", source)
    assert "esc(" not in source


def test_rule_words_names_checks_by_their_labels() -> None:
    rule = "checks in order: (1) top_on_train: top set; (2) windows: yearly windows; (3) new_check: x"
    labels = {"top_on_train": "training rank", "windows": "yearly windows"}
    assert report.rule_words(rule, labels) == (
        "checks in order: (1) training rank: top set; (2) yearly windows: yearly windows; (3) new check: x")


def test_plain_words_replaces_code_names_only_as_whole_names() -> None:
    assert report.plain_words("assumption (settings.SITE_TAKE_UP_RATE); indicator lead_eligible") == \
        "assumption (the configured take-up rate); indicator lead_eligible"  # a flag is a name users type
    assert report.plain_words("(geo_lead.frames) x (geo_lead.allocation); my_top_on_train stays") == \
        "(the sampling frames) x (the boundary rule); my_top_on_train stays"
    assert report.key_words("capacity_zone.parameters.take_up_rate") == "capacity zone / parameters / take up rate"


def test_report_sections_escape_every_string(inputs: dict[str, object]) -> None:
    page = report.build_report_html({
        "store": "s.gpkg", "records": pd.DataFrame(), "scores": None, "zones": None,
        "changes": ["<i>head</i>", "  <u>line</u>"], "hotspots_result": "<em>hot</em>",
        "site_result": {"verdict": "revise", "verdict_rule": "(1) a_b: <x>", "k": 2}}, with_figures=False)
    for raw in ("<i>head</i>", "<u>line</u>", "<em>hot</em>", "<x>"):
        assert raw not in page
    assert "&lt;i&gt;head&lt;/i&gt;" in page and "(1) a b: &lt;x&gt;" in page
    assert '<p class="warn">No scores in the store: run <code>geo-lead score</code>.</p>' in page


def test_pilot_sections_built_ahead_are_what_the_report_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """`report.pilot_sections_html` (drawn in a child while a run waits for its hot spots) gives
    each pilot section the HTML its builder gives; the report takes it instead of building
    again, and builds when it was made for the other figures switch."""
    from geo_lead import report

    calls: list[bool] = []

    def build(d: dict[str, Any]) -> str:
        calls.append(d["with_figures"])
        return f"<p>{d['pilot']['x']} {d['with_figures']}</p>"

    monkeypatch.setattr(report, "PILOT_SECTIONS", [("s1", "One", build)])
    pilot = {"x": 1}
    ahead = report.pilot_sections_html(pilot)
    assert ahead == {"with_figures": True, "sections": {"s1": "<p>1 True</p>"}}
    assert report.pilot_sections_html(None)["sections"] == {"s1": ""}
    section = report._pilot_section("s1", build)
    calls.clear()
    direct = section({"pilot": pilot})
    assert calls == [True]
    calls.clear()
    assert section({"pilot": pilot, "pilot_html": ahead}) == direct and calls == []
    assert section({"pilot": pilot, "pilot_html": ahead, "with_figures": False}) != direct and calls == [False]
    assert section({"pilot": None, "pilot_html": ahead}) == ()


def test_a_report_drafted_before_its_pilot_sections_is_the_report_built_with_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`draft_without_pilot` + `fill_pilot_slots` (a run puts the report together while the
    figures child still draws the pilot sections) give the page `build_report_html` gives with
    the pilot data, but for the minute it was made; a draft needs every figure drawn already
    (`figure_cache.only_cached`), and a section left empty or drawn without figures is no fill."""
    import re

    from geo_lead import report, result_cache, settings
    from geo_lead.pilot_report import PILOT_SECTIONS
    from geo_lead.pipeline import run_pipeline
    from geo_lead.store import opened

    monkeypatch.setenv("GEO_LEAD_NO_FORK", "1")
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    lmpd = settings.SHIPPED_DATA_DIR / "lmpd"
    store_path = tmp_path / "lead.gpkg"
    run_pipeline(store_path, [lmpd / "crime_data_2017_drug_sample.csv", lmpd / "crime_data_2019_drug_sample.csv"],
                 out_dir=tmp_path / "maps", echo=None)

    def minute_free(page: str) -> str:
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "WHEN", page)

    with opened(store_path) as store:
        data = report.collect_report_data(store)
        waiting = report.collect_report_data(store, None, {})
    pilot_html = report.pilot_sections_html(data["pilot"])
    assert all(pilot_html["sections"][sid] for sid, _t, _b in PILOT_SECTIONS)
    full = report.build_report_html({**data, "pilot_html": pilot_html})
    draft = report.draft_without_pilot(waiting)  # the run's figures are in the cache
    assert draft is not None and all(report._slot(i) in draft for i in range(len(PILOT_SECTIONS)))
    filled = report.fill_pilot_slots(draft, pilot_html)
    assert filled is not None and minute_free(filled) == minute_free(full)
    first = PILOT_SECTIONS[0][0]
    assert report.fill_pilot_slots(draft, {**pilot_html, "sections": {**pilot_html["sections"], first: ""}}) is None
    assert report.fill_pilot_slots(draft, {**pilot_html, "with_figures": False}) is None
    for figure in (tmp_path / "results").glob("figure_png-*"):
        figure.unlink()  # not drawn yet: no draft (it would draw them)
    assert report.draft_without_pilot(waiting) is None


def test_the_report_template_is_compiled_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's template is compiled once and kept in the result cache folder; the kept
    form renders the same page; a damaged or unwritable cache only costs the compilation; the
    cache off (``GEO_LEAD_RESULT_CACHE=0``) keeps nothing."""
    import jinja2

    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    compiled: list[str] = []
    real = jinja2.Environment.compile

    def counted(self: jinja2.Environment, source: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(name))
        return real(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    context = {"css": "", "answer": {}, "links": [], "sections": [], "generated": "now", "store": "s.gpkg",
               "version": "0"}
    fresh = report._report_template().render(**context)
    assert compiled == ["report.html.j2"]
    kept = list((tmp_path / "results" / "templates").iterdir())
    assert len(kept) == 1
    assert report._report_template().render(**context) == fresh
    assert compiled == ["report.html.j2"]  # read, not compiled
    kept[0].write_bytes(b"damaged")
    assert report._report_template().render(**context) == fresh
    assert len(compiled) == 2
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    assert report._report_template().render(**context) == fresh
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE", "0")
    assert report._report_template().render(**context) == fresh
    assert not (tmp_path / "off").exists()
