"""Sampling frames and coverage (issue 13 section 2): declared fractions by sha256, frame
weights (disjoint samples add, capped at 1; a complete file supersedes), the union of spans,
out-of-range dates rejected, and the issue's two-samples-of-2017 scenario on real rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.frames import (
    FileFrame,
    Frames,
    coverage,
    declared_fraction,
    record_weights,
    shipped_fraction,
)
from geo_lead.outputs import sha256_file
from geo_lead.sources import read_records

LMPD = settings.SHIPPED_DATA_DIR / "lmpd"
FILE_2016 = LMPD / "crime_data_2016_drug_sample.csv"
FILE_2017 = LMPD / "crime_data_2017_drug_sample.csv"


def _file(name: str, source: str, f: float, years: tuple[int, ...], first: str = "", last: str = "") -> FileFrame:
    return FileFrame(sha256=name, file=name, source=source, sample_fraction=f, years=years, first=first, last=last)


def _recs(source: str, reported: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"source": source, "reported_at": reported, "occurred_at": reported})


def test_frame_weights_disjoint_samples_add_and_complete_supersedes() -> None:
    recs = pd.concat([_recs("crime-pre2023", ["2017-03-01T00:00:00", "2017-11-01T00:00:00"]),
                      _recs("crime-pre2023", ["2016-05-01T00:00:00"]),
                      _recs("crime-2023", ["2017-05-01T00:00:00"]),
                      _recs("crime-pre2023", ["2015-05-01T00:00:00"])], ignore_index=True)
    two = Frames([_file("a", "crime-pre2023", 0.14, (2017,)), _file("b", "crime-pre2023", 0.05, (2017,)),
                  _file("c", "crime-pre2023", 0.1503, (2016,))])
    w = record_weights(recs, two)
    # 2017: 1/(0.14 + 0.05); 2016: 1/0.1503; another source's 2017 and an undeclared year: 1
    assert w.tolist() == pytest.approx([1 / 0.19, 1 / 0.19, 1 / 0.1503, 1.0, 1.0])
    # a complete 2017 file supersedes both samples
    full = Frames([*two.files, _file("d", "crime-pre2023", 1.0, (2017,))])
    assert record_weights(recs, full).tolist()[:2] == [1.0, 1.0]
    fr = {(f.source, f.year): f for f in full.frames()}
    assert fr[("crime-pre2023", 2017)].complete and fr[("crime-pre2023", 2017)].files == ("d",)
    # samples summing past 1 are capped: the frame never exceeds the year
    over = Frames([_file("a", "x", 0.7, (2017,)), _file("b", "x", 0.6, (2017,))])
    (only,) = over.frames()
    assert only.fraction == 1.0 and only.capped
    assert record_weights(_recs("x", ["2017-01-02T00:00:00"]), over).tolist() == [1.0]
    # a record without a report date takes its occurrence year
    undated = pd.DataFrame({"source": ["crime-pre2023"], "reported_at": [""], "occurred_at": ["2016-02-01T00:00:00"]})
    assert record_weights(undated, two).tolist() == pytest.approx([1 / 0.1503])
    assert any("0.14 + " in line or "b 0.05" in line for line in two.describe())


def test_coverage_is_the_union_of_spans() -> None:
    spans = [("2016-01-01", "2016-12-31"), ("2016-06-01", "2017-06-30"), ("2023-12-27", "2024-01-16")]
    cov = coverage(spans)
    assert cov.days == pytest.approx((pd.Timestamp("2017-06-30") - pd.Timestamp("2016-01-01")).days + 20)
    assert cov.years == pytest.approx(cov.days / 365.25) and cov.months == pytest.approx(cov.days / (365.25 / 12))
    assert len(cov.spans) == 2
    # the same span twice (another file over the same months) adds nothing
    assert coverage([*spans, ("2016-03-01", "2016-09-01")]).days == cov.days
    # clipped to a window (until includes its day)
    assert coverage(spans, since="2017-01-01", until="2017-01-31").days == pytest.approx(31)
    frames = Frames([_file("a", "s", 0.5, (2016,), "2016-01-01T00:00:00", "2016-12-31T00:00:00"),
                     _file("b", "s", 0.5, (2016,), "2016-01-01T00:00:00", "2016-12-31T00:00:00")])
    assert coverage(frames).days == pytest.approx(365)


def test_declared_fractions_come_from_the_manifest_by_sha256(tmp_path: Path) -> None:
    sha = sha256_file(FILE_2017)
    assert shipped_fraction(sha) == pytest.approx(0.14)
    assert shipped_fraction(sha256_file(FILE_2016)) == pytest.approx(0.1503)
    assert declared_fraction(sha, None) == (0.14, "manifest")
    with pytest.raises(GeoLeadError, match="disagrees with the shipped manifest"):
        declared_fraction(sha, 0.5, FILE_2017.name)
    # the same rows under another name are still the shipped file (sha256, not the name)...
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(FILE_2017.read_bytes())
    assert declared_fraction(sha256_file(copy), None)[0] == pytest.approx(0.14)
    # ...and a file named like a shipped one but with other content is the user's
    other = tmp_path / FILE_2017.name
    other.write_bytes(FILE_2017.read_bytes()[:2000])
    assert declared_fraction(sha256_file(other), None) == (1.0, "default (complete)")
    assert declared_fraction(sha256_file(other), 0.05) == (0.05, "declared")
    for bad in (0, 1.5, -0.1, "x"):
        with pytest.raises(GeoLeadError, match="sample-fraction"):
            declared_fraction(sha256_file(other), bad)  # type: ignore[arg-type]


def test_out_of_range_dates_are_rejected_with_a_reason(tmp_path: Path) -> None:
    lines = FILE_2017.read_bytes().split(b"\n")
    header, body = lines[0], [ln for ln in lines[1:] if ln.strip()]
    # the real row 80-17-055507 with a typo in its report year (2099) and one dated 1999
    future = body[1].replace(b"7/10/17 1:19 PM,7/10/17 1:19 PM", b"7/10/2099 1:19 PM,7/10/17 1:19 PM")
    old = body[2].replace(body[2].split(b",")[2], b"1/2/1999 3:00 AM")
    assert future != body[1] and old != body[2]
    path = tmp_path / "typos.csv"
    path.write_bytes(b"\n".join([header, body[0], future, old, body[3]]) + b"\n")
    result = read_records(path)
    assert result.rows_read == result.accepted + result.rejected == 4
    reasons = {(r["source_line"], r["reason"], r["column"]) for r in result.rejects.to_dict("records")}
    assert reasons == {(3, "date after the ingest date", "reported_at"),
                       (4, "date before 2000-01-01 (settings.DATE_FLOOR)", "occurred_at")}
    assert pd.to_datetime(result.records["occurred_at"]).max() < pd.Timestamp("2018-01-01")


def test_ingest_stores_the_fraction_and_runs_show_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geo_lead.cli import main
    from geo_lead.frames import load_frames
    from geo_lead.store import open_store

    store_path = tmp_path / "s.gpkg"
    part = tmp_path / "part.csv"
    lines = FILE_2017.read_bytes().split(b"\n")
    part.write_bytes(b"\n".join(lines[:41]) + b"\n")  # the header and 40 real rows of 2017
    assert main(["ingest", str(part), "--sample-fraction", "0.05", "--store", str(store_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"][0]["sample_fraction"] == 0.05 and out["files"][0]["fraction_from"] == "declared"
    with pytest.raises(SystemExit) as usage:  # argparse: a usage error, exit 2
        main(["ingest", str(part), "--sample-fraction", "0", "--store", str(store_path)])
    assert usage.value.code == 2 and "must be a share above 0" in capsys.readouterr().err
    store = open_store(store_path)
    (fr,) = load_frames(store).files
    assert (fr.sha256, fr.sample_fraction, fr.years) == (sha256_file(part), 0.05, (2017,))
    store.close()


def _write_rows(path: Path, header: bytes, rows: list[bytes]) -> Path:
    path.write_bytes(b"\n".join([header, *rows]) + b"\n")
    return path


def test_two_disjoint_samples_of_2017_form_one_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's test. The only 2017 rows we have are the shipped sample's, so the second,
    disjoint sample is made of real rows too: the shipped file's rows are split in two files
    (every fourth incident apart; no row is invented or edited), declared at the issue's fractions:
    0.14 for the larger part (standing for the shipped sample) and 0.05 for the other. After the
    second file every 2017 record weighs 1/0.19, the months covered do not change (the second
    file's report dates lie within the first's), and the change report names the frame."""
    from geo_lead.changes import describe
    from geo_lead.frames import attach_weights, load_frames
    from geo_lead.pipeline import run_pipeline
    from geo_lead.siting import months_covered
    from geo_lead.store import open_store

    lines = [ln for ln in FILE_2017.read_bytes().split(b"\n") if ln.strip()]
    header, body = lines[0], lines[1:]
    # every fourth incident (all its rows: a repeated offence of one incident is one record
    # key, so splitting an incident's rows would not give disjoint samples) goes to file b
    incidents = list(dict.fromkeys(r.split(b",")[0] for r in body))
    to_b = set(incidents[::4])
    big = _write_rows(tmp_path / "sample_a_2017.csv", header, [r for r in body if r.split(b",")[0] not in to_b])
    small = _write_rows(tmp_path / "sample_b_2017.csv", header, [r for r in body if r.split(b",")[0] in to_b])
    store_path, out = tmp_path / "lead.gpkg", tmp_path / "maps"

    run_pipeline(store_path, [big], out, echo=None, sample_fraction=0.14)
    store = open_store(store_path)
    months_before = months_covered(pd.DataFrame(), load_frames(store))
    w = attach_weights(store, store.read_records(["source", "reported_at", "occurred_at"]))["weight"]
    assert w.to_numpy() == pytest.approx(1 / 0.14)
    store.close()

    summary = run_pipeline(store_path, [small], out, echo=None, sample_fraction=0.05)
    store = open_store(store_path)
    sampling = load_frames(store)
    recs = attach_weights(store, store.read_records(["source", "reported_at", "occurred_at"]), sampling)
    assert len(recs) == len(body)
    assert recs["weight"].to_numpy() == pytest.approx(1 / 0.19)
    assert months_covered(pd.DataFrame(), sampling) == pytest.approx(months_before)
    assert [(f.year, f.fraction) for f in sampling.frames()] == [(2017, pytest.approx(0.19))]
    store.close()
    changes = summary["changes"]
    assert changes["frames_changed"] == [{"source": "crime-pre2023", "year": 2017, "before": pytest.approx(0.14),
                                          "after": pytest.approx(0.19),
                                          "files": ["sample_a_2017.csv", "sample_b_2017.csv"]}]
    text = "\n".join(describe(changes))
    assert "sampling frame crime-pre2023 2017: fraction 0.14 -> 0.19" in text
    # the manifest keeps each input's fraction, and `geo-lead runs` shows it
    from geo_lead.cli import main
    from geo_lead.manifest import list_runs

    store = open_store(store_path)
    runs = list_runs(store)
    store.close()
    assert [i["sample_fraction"] for r in runs for i in r["inputs"]] == [0.05, 0.14]
    capsys.readouterr()
    assert main(["runs", "--store", str(store_path)]) == 0
    shown = capsys.readouterr().out
    assert "sample_b_2017.csv" in shown and "sample fraction 0.05" in shown and "sample fraction 0.14" in shown


def test_a_complete_file_supersedes_the_samples_of_its_year(tmp_path: Path) -> None:
    """A sample of 2017 (a quarter of the shipped rows, declared 0.25), then a file holding all
    of the year's rows declared complete (the shipped rows with CRLF line ends: other bytes,
    so not the shipped file, same records): its records dedupe against the sample's by
    record_id, and every 2017 record then weighs 1."""
    from geo_lead.frames import attach_weights, load_frames
    from geo_lead.ingest import ingest_files
    from geo_lead.store import open_store

    lines = [ln for ln in FILE_2017.read_bytes().split(b"\n") if ln.strip()]
    header, body = lines[0], lines[1:]
    incidents = list(dict.fromkeys(r.split(b",")[0] for r in body))
    quarter = set(incidents[::4])
    sample = _write_rows(tmp_path / "quarter_2017.csv", header, [r for r in body if r.split(b",")[0] in quarter])
    complete = tmp_path / "complete_2017.csv"
    complete.write_bytes(b"\r\n".join(lines) + b"\r\n")
    store = open_store(tmp_path / "s.gpkg")
    (a,) = ingest_files(store, [sample], sample_fraction=0.25)
    (b,) = ingest_files(store, [complete], sample_fraction=1.0)
    assert b.unchanged == a.added and b.added == b.accepted - a.added  # deduped by record_id
    sampling = load_frames(store)
    (frame,) = sampling.frames()
    assert frame.complete and frame.fraction == 1.0 and frame.files == ("complete_2017.csv",)
    recs = attach_weights(store, store.read_records(["source", "reported_at", "occurred_at"]), sampling)
    assert len(recs) == b.accepted and (recs["weight"] == 1.0).all()
    store.close()
