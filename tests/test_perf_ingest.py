"""Reruns skip what they know: a file already ingested (same sha256) is not parsed again.

Oracle: the first ingest's own counts (rows_read = accepted + rejected), and the parser
itself (`sources.iter_chunks`), which must not be called for the known file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_lead import ingest
from geo_lead.store import open_store

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "lmpd" / "crime_data_2016_drug_sample.csv"


def _small_copy_with_a_bad_row(dst: Path) -> Path:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join([*lines[:41], "this,row,is,too,short"]) + "\n", encoding="utf-8")
    return dst


def test_known_file_is_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _small_copy_with_a_bad_row(tmp_path / "extract.csv")
    store = open_store(tmp_path / "s.gpkg")
    try:
        (first,) = ingest.ingest_files(store, [path], sample_fraction=0.5)
        assert not first.skipped and first.rejected >= 1 and first.added == first.accepted == 40
        assert first.rows_read == first.accepted + first.rejected
        parsed: list[Path] = []
        real = ingest.iter_chunks

        def spy(p, *args, **kwargs):  # type: ignore[no-untyped-def]
            parsed.append(Path(p))
            return real(p, *args, **kwargs)

        monkeypatch.setattr(ingest, "iter_chunks", spy)
        (again,) = ingest.ingest_files(store, [path], sample_fraction=0.5)
        assert parsed == []
        assert again.skipped
        assert (again.rows_read, again.accepted, again.rejected) == (first.rows_read, first.accepted, first.rejected)
        assert (again.added, again.unchanged, again.updated) == (0, first.accepted, 0)
        assert again.rows_read == again.accepted + again.rejected
        assert again.years == first.years and again.source == first.source
        assert store.count("ingests") == 2 and store.count("records") == 40
        assert store.count("rejects") == first.rejected

        # a new declaration of the same file is parsed (its frame changes)
        (declared,) = ingest.ingest_files(store, [path], sample_fraction=0.25)
        assert parsed == [path] and not declared.skipped
        assert (declared.added, declared.unchanged) == (0, 40)
        # the same file under another name is still the same file
        renamed = tmp_path / "renamed.csv"
        renamed.write_bytes(path.read_bytes())
        (other,) = ingest.ingest_files(store, [renamed], sample_fraction=0.25)
        assert other.skipped and parsed == [path] and other.file == "renamed.csv"
    finally:
        store.close()
