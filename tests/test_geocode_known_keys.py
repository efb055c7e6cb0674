"""Address keys kept across runs (`geo_lead.geocode.cache.known_keys`, issue 19's +10k rerun).

Oracle: `cache_key` of each address triple, parsed afresh (`parse_address`' own memo cleared).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead import result_cache, settings
from geo_lead.enrich import Enricher
from geo_lead.geocode import cache as gc
from geo_lead.geocode import normalize
from geo_lead.geocode.normalize import parse_address
from geo_lead.pipeline import stage_geocode, stage_ingest
from geo_lead.store import opened

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FIRST = [LMPD / "crime_data_2016_drug_sample.csv"]
LATER = [LMPD / "crime_data_2017_drug_sample.csv"]


def _quiet(_line: str) -> None:
    pass


def _run(path: Path, files: list[Path]) -> Enricher:
    enricher = Enricher()
    with opened(path) as store:
        stage_ingest(store, files, _quiet, None, enrich=enricher)
        stage_geocode(store, _quiet, None, enricher)
    return enricher


def _fresh_key(triple: str) -> str:
    parse_address.cache_clear()
    return gc.cache_key(*triple.rsplit("\x1f", 2))


def _record_keys(path: Path) -> dict[str, str]:
    """fid -> cache key of each stored record, keyed afresh."""
    with opened(path) as store:
        recs = store.read_table("records", ["record_id", "address_raw", "zip", "beat"])
    keys = gc.cache_keys(recs["address_raw"], recs["zip"].fillna(""), recs["beat"].fillna(""))
    return dict(zip(recs["record_id"], keys, strict=True))


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


def test_kept_keys_are_the_parsed_keys(tmp_path: Path, results: Path) -> None:
    _run(tmp_path / "a.gpkg", FIRST)
    kept = gc.known_keys()
    assert len(kept) > 100
    for triple, key in kept.items():
        assert key == _fresh_key(triple), triple


def test_rerun_reads_the_kept_keys_and_stores_the_same(tmp_path: Path, results: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun whose addresses were all kept parses none of them, and its store's keys and
    geocodes equal a run with nothing kept (fails on the old code: it parses every one)."""
    _run(tmp_path / "a.gpkg", [*FIRST, *LATER])  # keeps every triple of both files
    _run(tmp_path / "b.gpkg", FIRST)
    parsed: list[object] = []
    real = gc.cache_key

    def counting(*args: object) -> str:
        parsed.append(args)
        return real(*args)

    monkeypatch.setattr(gc, "cache_key", counting)
    _run(tmp_path / "b.gpkg", LATER)
    assert parsed == []
    monkeypatch.setattr(gc, "cache_key", real)
    with result_cache.switched_off():  # oracle: nothing kept, every address parsed
        _run(tmp_path / "c.gpkg", FIRST)
        _run(tmp_path / "c.gpkg", LATER)
    assert _record_keys(tmp_path / "b.gpkg") == _record_keys(tmp_path / "c.gpkg")
    cols = ["record_id", "lon", "lat", "match_type", "matched_address", "geocode_reason"]
    with opened(tmp_path / "b.gpkg") as b, opened(tmp_path / "c.gpkg") as c:
        pd.testing.assert_frame_equal(b.read_table("records", cols).sort_values("record_id", ignore_index=True),
                                      c.read_table("records", cols).sort_values("record_id", ignore_index=True))


def test_keys_of_another_version_are_not_read(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key is read only under the code and the constants it was computed with."""
    kept = {"150 MAIN ST\x1f40202\x1f": "kept"}
    gc.keep_known_keys(kept)
    assert gc.known_keys() == kept
    for owner, name, value in ((settings, "NULL_STRINGS", frozenset({"", "XNULL"})),
                               (normalize, "PLACE_WORDS", frozenset({"PARK"})),
                               (result_cache, "code_version", lambda: "other code")):
        with monkeypatch.context() as m:
            m.setattr(owner, name, value)
            assert gc.known_keys() == {}, name
    assert gc.known_keys() == kept
    with result_cache.switched_off():
        assert gc.known_keys() == {}


def test_too_many_keys_are_not_kept(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "KNOWN_KEYS_MAX", 2)
    gc.keep_known_keys({"a\x1f\x1f": "1", "b\x1f\x1f": "2", "c\x1f\x1f": "3"})
    assert gc.known_keys() == {}


_TEXT = st.text(st.sampled_from(list("0123456789 /&@#-,.ABCNSEWLKT\x1f\t")) | st.characters(exclude_categories=("Cs",)), max_size=40)


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_TEXT, st.sampled_from(["", "40202", "40211-1234", "x"]),
                          st.sampled_from(["", "112", " 112 ", "NULL", "112.0"])), min_size=1, max_size=8))
def test_memo_keys_equal_cache_key(triples: list[tuple[str, str, str]]) -> None:
    """Keys through a memo filled by an earlier call (what `known_keys` hands back) equal
    `cache_key` of each address, odd text (``\\x1f`` inside) included."""
    a, z, b = (pd.Series([t[i] for t in triples]) for i in range(3))
    memo: dict[str, str] = {}
    first = gc.cache_keys(a, z, b, memo)
    again = gc.cache_keys(a, z, b, dict(memo))
    expect = [gc.cache_key(*t) for t in triples]
    assert list(first) == expect and list(again) == expect
    for triple, key in memo.items():
        assert key == gc.cache_key(*triple.rsplit("\x1f", 2))
