"""`geo-lead run`: every stage in order on one store, with the counts of each stage.

Stages: ingest -> geocode (through the cache: only new addresses cost time) -> spatial
join -> score -> hotspots -> site selection -> maps, zone page and report. Each stage accounts for its rows, and the summary returned (and printed by
the CLI) carries those counts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from geo_lead import settings
from geo_lead.outputs import sha256_file
from geo_lead.progress import Progress
from geo_lead.store import Store, opened

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from geo_lead.enrich import Enricher
    from geo_lead.indicators import Rules
    from geo_lead.parallel import Deferred, Worker

log = logging.getLogger(__name__)

Say = Callable[[str], None]


#: Allocations of container objects between young-generation collections during a run
#: (CPython's default is 700).
GC_GEN0_THRESHOLD = 100_000


@contextlib.contextmanager
def bulk_gc(gen0: int = GC_GEN0_THRESHOLD) -> Iterator[None]:
    """Collect garbage less often while a run builds million-row frames; restore after.

    Reading a million records makes millions of tuples and strings; with CPython's default
    threshold each 700 of them start a collection that walks every live container, which cost
    ~1 s of a 15 s incremental run at a million records. Cycles are still collected, just in
    bigger batches; no result depends on when.
    """
    import gc

    before = gc.get_threshold()
    gc.set_threshold(gen0, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _progress(label: str, echo: Say | None) -> Progress:
    return Progress(label, enabled=None if echo else False)


def stage_ingest(store: Store, files: Sequence[Path], say: Say, echo: Say | None,
                 rules: Any = None, sample_fraction: float | None = None,
                 enrich: Enricher | None = None) -> dict[str, Any]:
    """Ingest `files`; with `enrich` (`geo_lead.enrich.Enricher`) each new record is inserted
    geocoded and joined (the geocode and join stages then do only what is left)."""
    from geo_lead.indicators import load_rules
    from geo_lead.ingest import IngestOptions, ingest_with, reflag_if_rules_changed

    rules = rules or load_rules()
    with store.write():
        reflagged = reflag_if_rules_changed(store, rules)
    if reflagged:
        say(f"  indicator rules changed ({rules.path}): {reflagged:,} stored records re-flagged")
    progress = _progress("  rows", echo)
    options = IngestOptions(progress=progress, rules=rules, sample_fraction=sample_fraction, enrich=enrich)
    if enrich is not None:
        from geo_lead.enrich import CHUNK_ROWS

        options = replace(options, chunk_rows=CHUNK_ROWS)
    reports = ingest_with(store, files, options)
    progress.close()
    for r in reports:
        say(f"  {r.file}: {r.rows_read:,} read = {r.accepted:,} accepted + {r.rejected:,} rejected;"
            f" added {r.added:,}, unchanged {r.unchanged:,}, updated {r.updated:,};"
            f" sample fraction {r.sample_fraction:g} ({r.fraction_from})"
            + ("; already ingested (same sha256): not parsed again" if r.skipped else ""))
    keys = ("rows_read", "accepted", "rejected", "added", "unchanged", "updated")
    return {**{k: sum(getattr(r, k) for r in reports) for k in keys}, "reflagged": reflagged,
            "files": [r.as_dict() for r in reports]}


def stage_geocode(store: Store, say: Say, echo: Say | None, enriched: Enricher | None = None) -> dict[str, Any]:
    """Geocode the records left to geocode; with `enriched` (the ingest's enricher) its
    geocoder is reused and the counts include the records it geocoded."""
    from geo_lead.geocode import geocode_store

    progress = _progress("  addresses", echo)
    counts = enriched.geocode_counts_if_done(store) if enriched is not None else None
    if counts is None:
        counts = geocode_store(store, geocoder=enriched.geocoder if enriched else None, progress=progress)
        if enriched is not None:
            counts = enriched.merge_geocode_counts(counts)
    progress.close()
    total = store.count("records")
    by_type = {str(k): v for k, v in store.count_by("records", "match_type").items()}
    counts["store_by_match_type"] = by_type
    n_ok = total - by_type.get("unmatched", 0) - by_type.get("None", 0)
    counts["store_match_rate"] = n_ok / total if total else 0.0
    say(f"  {counts['records']:,} records looked up: {counts['geocoded_new']:,} new addresses' records, "
        f"{counts['geocoded_from_cache']:,} from the cache")
    say(f"  store: {n_ok:,} of {total:,} records placed ({counts['store_match_rate']:.1%}); by type: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])))
    beats = counts.get("beat_check_by_match_type") or {}
    if beats.get("all", {}).get("checked"):
        say("  in the record's own LMPD beat: " + ", ".join(
            f"{k} {v['same_share']:.1%} of {v['checked']:,}" for k, v in beats.items() if v.get("checked"))
            + f" ({beats['all']['other']:,} in neither it nor a beat touching it: `geo-lead geocode --review`)")
    return counts


def stage_join(store: Store, say: Say, engine: str = "pandas",
               tolerance_ft: float | None = None) -> dict[str, Any]:
    if engine == "pandas":
        from geo_lead.spatial_join import join_store

        counts = join_store(store, tolerance_ft=tolerance_ft)
    else:  # the same spatial_join.join_records, on dask partitions (geo_lead.dask_engine)
        from geo_lead.dask_engine import join_store as dask_join_store

        counts = dask_join_store(store, engine=engine, tolerance_ft=tolerance_ft)
    say(f"  {counts['records']:,} records = {counts['joined']:,} in a neighborhood + "
        f"{counts['outside']:,} outside every neighborhood + {counts['not_geocoded']:,} not geocoded")
    return counts


#: The fixed format `geo_lead.sources` writes ``occurred_at`` / ``reported_at`` in.
ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"


def parse_iso_columns(frame: Any, columns: Sequence[str] = ("occurred_at", "reported_at")) -> Any:
    """Turn the store's ISO date text columns into datetimes once, when that is exact.

    Score, site and report each parsed a million date strings again (~0.2 s a column each
    time); `pandas.to_datetime` of an already parsed column returns it as it is. A column is
    converted only when every non-empty value is in the `ISO_SECONDS` format ingest writes,
    so every later parse (format inferred, ``ISO8601``, ``utc=True``) gives exactly what it
    gave on the text; otherwise the column stays text. Modifies and returns `frame`.
    """
    import pandas as pd

    for col in columns:
        if col not in frame or frame[col].dtype.kind == "M":
            continue
        text = frame[col]
        parsed = pd.to_datetime(text, errors="coerce", format=ISO_SECONDS)
        empty = text.isna().to_numpy(bool) | pd.Series(text == "").fillna(False).to_numpy(bool)
        if bool((parsed.isna().to_numpy() == empty).all()):
            frame[col] = parsed
    return frame


def analysis_frame(store: Store, indicator: str = "lead_eligible") -> Any:
    """The records score, hotspots, site and the report use, read once: only the columns they
    need, and only the records `indicator` flags when that gives the same answers
    (`geo_lead.analysis_reads.read_analysis_records`; `analysis_reads.left_out` counts the rest).

    Their statistics use only flagged records; of the others they use counts, spans and the
    division majority, which the store aggregates (`geo_lead.analysis_reads`). ``division``
    comes too, for the First Division derived from a full read
    (`division_records.first_division_for_store`).
    """
    from geo_lead.analysis_reads import read_analysis_records
    from geo_lead.hotspots import HOTSPOT_COLUMNS, store_columns
    from geo_lead.report import FIGURE_COLUMNS
    from geo_lead.scoring import SCORE_RECORD_COLUMNS
    from geo_lead.siting import SITE_COLUMNS

    # + the columns of the report's figure (`report.collect_report_data`; its tallies are counted in the store)
    cols = store_columns(store, [*SCORE_RECORD_COLUMNS, *HOTSPOT_COLUMNS, *SITE_COLUMNS, "division",
                                 *FIGURE_COLUMNS], indicator)
    have = set(store.columns("records"))
    cols = [c for c in dict.fromkeys([*cols, "lon", "lat"]) if c in have]  # as spatial_join.records_gdf
    return read_analysis_records(store, cols, indicator)


def analysis_records(store: Store, indicator: str = "lead_eligible") -> Any:
    """`analysis_frame` as points (`flagged_points`) with its dates parsed (`parse_iso_columns`)
    and the frame ``weight`` (`geo_lead.frames.attach_weights`, from the parsed dates)."""
    from geo_lead.frames import attach_weights

    return attach_weights(store, parse_iso_columns(flagged_points(analysis_frame(store, indicator), indicator)))


def flagged_points(frame: Any, indicator: str) -> Any:
    """Records as EPSG:4326 points, built only for the records `indicator` flags.

    The stages sharing this read use points of flagged records only (hotspots and site take
    `hotspots.indicator_points`: flagged and located; score and the report use columns, not
    points), and a million shapely points cost ~0.5 s against ~0.05 s for the flagged ones.
    The others get an empty geometry (their ``lon``/``lat`` are kept). When no flagged record
    has a point every record gets its point, so the stages fail with the messages they always
    gave (`spatial_join.points_from_lonlat` otherwise).
    """
    import geopandas as gpd
    import pandas as pd

    from geo_lead.spatial_join import points_from_lonlat

    if indicator not in frame or not {"lon", "lat"} <= set(frame.columns):
        return points_from_lonlat(frame)
    lon = pd.to_numeric(frame["lon"], errors="coerce")
    lat = pd.to_numeric(frame["lat"], errors="coerce")
    flag = frame[indicator].fillna(False).astype(bool)
    if not bool((flag & lon.notna() & lat.notna()).any()):
        return points_from_lonlat(frame)
    geom = points_from_lonlat(pd.DataFrame({"lon": lon.where(flag), "lat": lat.where(flag)}, index=frame.index))
    return gpd.GeoDataFrame(frame, geometry=geom.geometry, crs=settings.CRS_STORE)


def stage_score(store: Store, say: Say, records: Any = None, boundary: str | None = None) -> dict[str, Any]:
    from geo_lead.scoring import format_table, score_store, scores_json

    scores = score_store(store, records=records, boundary=boundary)
    for line in format_table(scores).splitlines():
        say("  " + line)
    return {"table": scores_json(scores)}


def stage_hotspots(store: Store, say: Say, records: Any = None, computed: Any = None) -> dict[str, Any]:
    from geo_lead.hotspots import format_hotspots, hotspots_store

    result = hotspots_store(store, records=records, computed=computed)
    for line in format_hotspots(result).splitlines():
        say("  " + line)
    return result


def stage_site(store: Store, say: Say, echo: Say | None, records: Any = None,
               computed: Any = None) -> dict[str, Any]:
    from geo_lead.siting import format_site, site_store

    if computed is None:
        progress = _progress("  bootstrap resamples", echo)
        result = site_store(store, progress=progress, records=records)
        progress.close()
    else:  # computed elsewhere (run's child): written here
        result = site_store(store, records=records, computed=computed)
    for line in format_site(result).splitlines():
        say("  " + line)
    return result


def stage_outputs(store: Store, out_dir: Path, say: Say, records: pd.DataFrame | None = None,
                  map_records: tuple[pd.DataFrame | None, int | None, str | None] | None = None,
                  pilot: Deferred[tuple[dict[str, Any], dict[str, Any]]] | None = None,
                  figure_data: dict[str, Any] | None = None) -> dict[str, str]:
    """Maps, the zone page and the report into `out_dir`; `records`, `map_records`, `pilot`
    (the report's pilot data and its sections' HTML being built: `pilot_at`) and
    `figure_data` (`report.report_figure_data`) read earlier in the run, when given."""
    from geo_lead.maps import write_maps
    from geo_lead.outputs import write_text
    from geo_lead.page_reuse import is_current
    from geo_lead.parallel import Deferred
    from geo_lead.zone_page import offline_page_key, write_kept

    # The zone page reads no record: kept when its key (files, settings, code) is the one its
    # file was written for; else a child renders it (its street index from the cache, or
    # built) while this process reads the report's data, and it is written here.
    zone_out, zone_key = Path(out_dir) / "zone_check.html", offline_page_key()
    zone_page = None if is_current(zone_out, zone_key) else Deferred(zone_page_text)
    # The maps are drawn here while the pilot sections and the report's figures are drawn
    # in the figures child (`pilot_at`); then the report is put together here from them.
    paths = dict(write_maps(store, out_dir, offline=True, prefetched=map_records))
    paths["zone_check"] = write_kept(zone_out, zone_key, zone_page.result if zone_page else zone_page_text)
    report = Path(out_dir) / "report.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    write_text(report, _report_page(store, records, pilot, figure_data))  # atomic: a full disk leaves the old report
    paths["report"] = report
    for name, path in paths.items():
        say(f"  {name}: {path} ({Path(path).stat().st_size / 1e6:.2f} MB, opens offline)")
    return {name: str(path) for name, path in paths.items()}


def _report_page(store: Store, records: pd.DataFrame | None,
                 pilot: Deferred[tuple[dict[str, Any], dict[str, Any]]] | None,
                 figure_data: dict[str, Any] | None) -> str:
    """The report page; while the figures child still draws the pilot sections, everything
    else of the page is put together here meanwhile (`report.draft_without_pilot`, when the
    report's figures are drawn) and the sections go in their slots when they come."""
    from geo_lead.report import (
        build_report_html,
        collect_report_data,
        draft_without_pilot,
        fill_pilot_slots,
    )

    if pilot is None:
        return build_report_html(collect_report_data(store, records, None, figure_data))
    waiting = not pilot.answered()
    data = collect_report_data(store, records, {}, figure_data)  # its pilot data comes below
    draft = draft_without_pilot(data) if waiting else None
    data["pilot"], data["pilot_html"] = pilot.result()
    page = fill_pilot_slots(draft, data["pilot_html"]) if draft is not None else None
    return page if page is not None else build_report_html(data)


def zone_page_text() -> str:
    """The offline zone page of the pilot zone (`zone_page.render_page` with `zone_street_index`)."""
    from geo_lead.zone import ZoneChecker
    from geo_lead.zone_page import render_page
    from geo_lead.zone_streets import street_index

    checker = ZoneChecker()
    return render_page(checker, "offline", street_index(checker.zone_ft))


def zone_street_index() -> dict[str, Any]:
    """The offline zone page's street index for the pilot zone (`zone_streets.street_index`)."""
    from geo_lead.zone import ZoneChecker
    from geo_lead.zone_streets import street_index

    return street_index(ZoneChecker().zone_ft)


def run_pipeline(store_path: Path, files: Sequence[Path], out_dir: Path = settings.MAPS_DIR,
                 echo: Say | None = print, engine: str = "pandas",
                 rules_path: Path | None = None, sample_fraction: float | None = None,
                 boundary: str | None = None, boundary_tolerance_ft: float | None = None,
                 fingerprint: str | None = None) -> dict[str, Any]:
    """Run every stage on the store at `store_path` and return a summary of each stage.

    Parameters
    ----------
    store_path
        The GeoPackage store (created on first use).
    files
        LMPD files to ingest first; files already ingested add nothing.
    out_dir
        Where maps and the report are written.
    echo
        Where progress lines go (``print`` for the CLI, ``None`` for silence).
    engine
        ``pandas`` or ``dask``: where the spatial join runs (same code, same result).
    rules_path
        Indicator rules file (default: the shipped one); when it differs from the rules
        that flagged the stored records, those are re-flagged first.
    sample_fraction
        Declared sample fraction of `files` not in the shipped manifest (default 1).
    boundary, boundary_tolerance_ft
        Boundary rule (``split``/``first``) and tolerance (`geo_lead.allocation`); defaults
        in `geo_lead.settings`.
    fingerprint
        The run's `run_fingerprint` key, recorded in the manifest's parameters (with the
        outputs' sha256 and the store's change counter) so that `unchanged_since` can tell
        the next run that nothing changed.
    """
    from geo_lead.allocation import check_rule, check_tolerance
    from geo_lead.indicators import load_rules

    rules = load_rules(rules_path)  # a bad rules file fails here, before any work
    params = {"out_dir": str(out_dir), "files": [str(f) for f in files], "engine": engine,
              "rules": str(rules.path), "rules_sha256": rules.sha256, "sample_fraction": sample_fraction,
              "boundary": check_rule(boundary), "boundary_tolerance_ft": check_tolerance(boundary_tolerance_ft)}
    if fingerprint is not None:
        params["fingerprint"] = fingerprint
    from geo_lead import result_cache
    from geo_lead.parallel import Worker

    # Hotspots need nothing of score or site: a child computes them while score and site run
    # here. Forked now, before the store is opened (so it inherits no SQLite connection), it
    # imports the statistics libraries during ingest and reads the store itself once the
    # join is committed; the layers are written here, in the usual order.
    # A new store, or the result cache off (`--force`), computes every statistic: the child
    # imports what computing them needs at once; otherwise only when the ingest changed the
    # flagged records (`_prefetch_ahead`), so a rerun whose hot spots are reused imports
    # none of it.
    computes = not Path(store_path).is_file() or not result_cache.enabled()
    result_cache.warm_keys()  # what this process and both children would each compute
    worker = Worker(HOTSPOT_MODULES + (_statistics_modules() if computes else ()))
    # The report's pilot sections are read and its figures drawn in a child too, forked now
    # for the same reason; it imports what reading them and drawing figures needs during
    # ingest, which leaves the second core idle: matplotlib (~0.5 s) is imported then even
    # when every figure turns out kept (a rerun adding no flagged record wastes that import
    # on the idle core; waiting for the ingest to tell put it on the run's longest path).
    figures = Worker(PILOT_MODULES + FIGURE_MODULES)
    try:
        return _run(RunJob(store_path, tuple(files), out_dir, echo, engine, params, rules), worker, figures)
    finally:
        figures.close()
        worker.close()


#: Imported by `run_pipeline`'s hotspots child while the parent ingests: what every
#: `hotspots_at` call uses (reading the records, the memo keys, a reused answer).
HOTSPOT_MODULES: tuple[str, ...] = ("geo_lead.hotspots", "geo_lead.store", "pyogrio")
#: What computing the KDE (bandwidth CV, density: numpy) and Gi* (z, G and the permutations
#: from the weights' sparse matrix, `gistar_local`, `gistar_crand`) imports (~0.2 s): the
#: hotspots child imports them ahead only when its statistics are likely to be computed
#: (`_prefetch_ahead`); a job whose results are all reused imports none of them, a job
#: computing one imports what it needs. No esda, libpysal or scikit-learn (~2.5 s).
HOTSPOT_COMPUTE_MODULES: tuple[str, ...] = ("scipy.sparse", "geo_lead.gistar_local", "geo_lead.gistar_crand")
#: What building the neighborhoods' queen weights imports (libpysal, ~2 s with the
#: scikit-learn it imports): needed only when the result cache keeps none
#: (`hotspots.queen_weights`, kind ``queen_weights``), e.g. a first run or ``--force``.
HOTSPOT_CONTIGUITY_MODULES: tuple[str, ...] = ("libpysal.weights",)
#: `hotspots.QUEEN_WEIGHTS_CACHE` (not imported here: the parent forks before importing it).
_QUEEN_WEIGHTS_KIND = "queen_weights"


def _statistics_modules() -> tuple[str, ...]:
    """What a run whose statistics are all computed has its hotspots child import ahead:
    `HOTSPOT_COMPUTE_MODULES`, and `HOTSPOT_CONTIGUITY_MODULES` unless the result cache keeps
    queen weights (a guess about timing only, never a result)."""
    from geo_lead import result_cache

    kept = result_cache.enabled() and any(result_cache.cache_dir().glob(f"{_QUEEN_WEIGHTS_KIND}-*.json"))
    return HOTSPOT_COMPUTE_MODULES + (() if kept else HOTSPOT_CONTIGUITY_MODULES)


#: What reading the report's pilot sections imports (`pilot_at`; ~0.15 s over what the
#: parent has imported when it forks): the figures child imports it while the parent ingests.
PILOT_MODULES: tuple[str, ...] = ("geo_lead.report", "geo_lead.pilot_report", "geo_lead.by_year",
                                  "geo_lead.evaluation", "geo_lead.divisions", "geo_lead.siting",
                                  "geo_lead.figure_data")
#: What drawing the report's figures imports (matplotlib, ~0.5 s): the figures child imports
#: it while the parent ingests.
FIGURE_MODULES: tuple[str, ...] = ("geo_lead.figures", "geo_lead.pilot_figures")


def flagged_changed(flagged_before: int, flagged_after: int, ingest: dict[str, Any]) -> bool:
    """True when the ingest changed the flagged records (their count, an updated record, a
    re-flag): then the statistics and figures are likely computed, not reused. A guess for
    scheduling only, never for a result."""
    return bool(flagged_before != flagged_after or ingest.get("updated") or ingest.get("reflagged"))


def _prefetch_ahead(workers: Sequence[tuple[Worker, tuple[str, ...]]], flagged_before: int,
                    flagged_after: int, ingest: dict[str, Any]) -> None:
    """Have each worker child import its modules now when the ingest changed the flagged
    records (`flagged_changed`): then the hot spots are likely computed, not reused. Only the
    timing depends on this guess, never a result."""
    if flagged_changed(flagged_before, flagged_after, ingest):
        for worker, modules in workers:
            worker.prefetch(modules)


def hotspots_at(store_path: str, indicator: str = "lead_eligible",
                boundary: str | None = None) -> tuple[dict[str, gpd.GeoDataFrame], dict[str, Any]]:
    """`hotspots.compute_hotspots` on the store at `store_path`, opened read-only here (the
    hotspots child's job: forked before the parent opened the store, it reads the records
    itself: only the flagged records when `analysis_reads.read_analysis_records` can, the
    others counted in its accounting, `analysis_reads.count_left_out`)."""
    from geo_lead.analysis_reads import count_left_out, left_out, read_analysis_records
    from geo_lead.frames import attach_weights
    from geo_lead.hotspots import HOTSPOT_COLUMNS, compute_hotspots, store_columns

    with bulk_gc(), opened(store_path, create=False) as store:
        have = set(store.columns("records"))
        cols = [c for c in dict.fromkeys([*store_columns(store, HOTSPOT_COLUMNS, indicator), "lon", "lat"])
                if c in have]  # as spatial_join.records_gdf reads them
        frame = attach_weights(store, read_analysis_records(store, cols, indicator))
        layers, result = compute_hotspots(store, indicator, records=flagged_points(frame, indicator),
                                          boundary=boundary)
        return layers, count_left_out(result, left_out(store, frame))


def pilot_at(store_path: str, records: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures child's job: the pilot sections' data of the store at `store_path`
    (`pilot_report.collect_pilot_data`, from its own reads) and their HTML
    (`report.pilot_sections_html`); the report's figures drawn into the figure cache on the way
    (`report.draw_report_figures`).

    Submitted once the join is committed, with the parent's read of the flagged records
    (`analysis_records`, which the parts take where exact) when it is small enough to send
    (`_sendable`), else it reads them as the parent did; then the year-by-year and division
    parts at once; the report's figures read the scores and the site result, so it waits there
    for the parent's word (`parallel.from_parent`: sent once they are written), then draws the
    report's figures (the parent drafts the report with them) and takes the before/after part
    (`pilot_report.evaluation_part`, a few kB) the parent sends next: read there when the
    ingest changed the flagged records (the figures are then drawn here meanwhile), else None
    and read here (the parent's path is the longer one then).
    """
    from geo_lead.parallel import from_parent
    from geo_lead.pilot_report import evaluation_part, joined, started_pilot_parts
    from geo_lead.report import draw_report_figures, pilot_sections_html, report_figure_data

    with bulk_gc():
        with opened(store_path, create=False) as store:
            if records is None:  # the parent's read: the parts take it where exact
                records = analysis_records(store)
            pilot = started_pilot_parts(store, records)()
        if "neighborhoods" in pilot:
            # waited with the store closed: a read lock held here (a statement not yet reset)
            # would stop the parent's commits, which this wait is for
            from_parent()
            with opened(store_path, create=False) as store:
                data = report_figure_data(store, records)
            draw_report_figures(data)
            evaluation = cast("dict[str, Any] | None", from_parent())
            if evaluation is None:
                with opened(store_path, create=False) as store:
                    evaluation = evaluation_part(store, records)
            pilot = joined(pilot, evaluation)
    return pilot, pilot_sections_html(pilot)


#: Largest pickled value `_sendable` hands a worker child: what a pipe holds (Linux: ~200 KB
#: for the socket pair of a `parallel.Worker`), so the send never waits for the child to read.
SEND_MAX_BYTES = 128 * 1024


def _sendable(value: Any) -> Any:
    """`value` when it pickles to at most `SEND_MAX_BYTES`, else None (the child reads it
    itself): the flagged records of the shipped data pickle to ~0.1 MB in ~2 ms, while the
    child's own read took 0.07-0.25 s of its job, the run's longest path on a +1 eligible rerun."""
    import pickle

    return value if len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) <= SEND_MAX_BYTES else None


def pilot_data(store: Store, records: Any) -> dict[str, Any]:
    """The pilot sections' data read here from the run's shared read (`pilot_report.collect_pilot_data`)."""
    from geo_lead.pilot_report import collect_pilot_data

    return collect_pilot_data(store, records)


def pilot_drawn(figure_data: dict[str, Any], pilot: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures child's job in a big store (`settings.PILOT_CHILD_MAX_RECORDS`): `pilot_at`'s
    answer from the pilot data the parent read. `pilot` None: submitted before the parent has
    it all, the child draws the report's figures meanwhile, then takes the pilot data the
    parent sends (`parallel.from_parent`)."""
    from geo_lead.parallel import from_parent
    from geo_lead.report import draw_report_figures, pilot_sections_html

    if pilot is None:
        draw_report_figures(figure_data)
        pilot = _unpacked(cast(dict[str, Any], from_parent()))
    return pilot, pilot_sections_html(pilot)


def _packed(pilot: dict[str, Any]) -> dict[str, Any]:
    """Pilot data to send to the figures child without its neighborhoods (`_unpacked` loads
    them again there): their shapes made ~0.7 MB of ~0.75, more than a pipe holds, so the
    parent's send waited for the child to finish drawing before it read."""
    return {**pilot, "neighborhoods": True} if "neighborhoods" in pilot else pilot


def _unpacked(pilot: dict[str, Any]) -> dict[str, Any]:
    """`_packed`'s pilot data with the neighborhoods `pilot_report.started_pilot_parts` read."""
    from geo_lead.boundaries import load_neighborhoods

    return {**pilot, "neighborhoods": load_neighborhoods()} if pilot.get("neighborhoods") is True else pilot


def _pilot_here(store: Store, records: Any, figure_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`pilot_at`'s answer computed in this process from the shared read (no figures child)."""
    from geo_lead.report import pilot_sections_html

    return (pilot := pilot_data(store, records)), pilot_sections_html(pilot)


def _hotspots_here(store: Store, records: Any, boundary: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`hotspots_at`'s answer computed in this process from the shared read (when the child failed)."""
    from geo_lead.analysis_reads import count_left_out, left_out
    from geo_lead.hotspots import compute_hotspots

    layers, result = compute_hotspots(store, records=records, boundary=boundary)
    return layers, count_left_out(result, left_out(store, records))


#: The stages `geo-lead run` numbers in its progress lines.
STAGES: tuple[str, ...] = ("ingest", "geocode", "join", "score", "hotspots", "site", "maps and report")


@dataclass(frozen=True)
class RunJob:
    """What one `geo-lead run` works on (`run_pipeline`'s checked arguments)."""

    store_path: Path
    files: tuple[Path, ...]
    out_dir: Path
    echo: Say | None
    engine: str
    params: dict[str, Any]
    rules: Rules

    def say(self, message: str) -> None:
        """A progress line (to `echo`, if any)."""
        if self.echo is not None:
            self.echo(message)


def _run(job: RunJob, worker: Worker, figures: Worker) -> dict[str, Any]:
    from geo_lead.changes import describe
    from geo_lead.manifest import record_run, stage_counts

    store_path, files, out_dir, echo, engine, params = (job.store_path, job.files, job.out_dir, job.echo,
                                                        job.engine, job.params)
    say, rules, n = job.say, job.rules, len(STAGES)
    summary: dict[str, Any] = {"store": str(store_path)}

    with bulk_gc(), opened(store_path) as store, record_run(store, "run", inputs=files, parameters=params) as run:
        # the records' dates counted for the report are saved with the run's commits: the next
        # run adds its new records' dates to them instead of counting every record again
        store.keep_record_dates()
        say(f"[1/{n}] ingest {len(files)} file(s) into {store_path}")
        from geo_lead.enrich import Enricher

        enricher = Enricher(tolerance_ft=params["boundary_tolerance_ft"])  # one write per new record
        flagged_before = store.count_flagged("lead_eligible")
        summary["ingest"] = stage_ingest(store, files, say, echo, rules, params["sample_fraction"], enricher)
        flagged_after = store.count_flagged("lead_eligible")
        _prefetch_ahead(((worker, HOTSPOT_COMPUTE_MODULES),), flagged_before, flagged_after, summary["ingest"])
        run.stage("ingest", stage_counts(summary["ingest"]))
        fractions = {f["sha256"]: f["sample_fraction"] for f in summary["ingest"]["files"]}
        for item in run.inputs:
            item["sample_fraction"] = fractions.get(item.get("sha256"))
        from geo_lead.frames import load_frames

        sampling = load_frames(store)
        summary["frames"] = sampling.to_dict()
        say("  sampling frames (source, report year: declared fractions; geo_lead.frames):")
        for line in sampling.describe():
            say("    " + line)
        say(f"[2/{n}] geocode block addresses and intersections (offline)")
        summary["geocode"] = stage_geocode(store, say, echo, enricher)
        del enricher
        run.stage("geocode", stage_counts(summary["geocode"]))
        say(f"[3/{n}] join records to neighborhoods (EPSG:2246)")
        summary["join"] = stage_join(store, say, engine, params["boundary_tolerance_ft"])
        run.stage("join", stage_counts(summary["join"]))
        # the join is committed: the child reads the records (if it fails: computed here)
        shared: dict[str, Any] = {}
        hot = worker.submit(hotspots_at, (str(store_path), "lead_eligible", params["boundary"]),
                            fallback=lambda: _hotspots_here(store, shared["records"], params["boundary"]))
        say(f"[4/{n}] score First Division neighborhoods")
        # one read for score, site and the report: the flagged records (`analysis_frame`)
        records = shared["records"] = analysis_records(store)
        from geo_lead.analysis_reads import count_left_out, left_out

        # The pilot sections and the report's figures: in a small store the figures child
        # reads what it needs itself (the records now; the site result and the scores once
        # they are written); in a big one this process reads it (below) and the child draws
        figure_data: dict[str, Any] = {}
        pilot = None
        if store.count("records") <= settings.PILOT_CHILD_MAX_RECORDS:
            pilot = figures.submit(pilot_at, (str(store.path), _sendable(records)),
                                   fallback=lambda: _pilot_here(store, shared["records"], figure_data))
        unflagged = left_out(store, records)  # counted in the hotspots' and site's accounting
        from geo_lead.allocation import summary as allocation_summary

        alloc = allocation_summary(records[records["lead_eligible"].fillna(False).astype(bool)]
                                   if "lead_eligible" in records else records,
                                   params["boundary"], params["boundary_tolerance_ft"])
        summary["allocation"] = alloc
        say(f"  allocation (lead_eligible): {alloc['placed']:,} records in a neighborhood, {alloc['shared']:,} of "
            f"them within {alloc['tolerance_ft']:g} ft of an edge shared by two or more units "
            f"(weight {alloc['shared_weight']:,.1f}), rule {alloc['rule']}"
            + (": split equally among those units" if alloc["rule"] == "split" else ": whole to the first unit"))
        from geo_lead.boundaries import load_neighborhoods
        from geo_lead.maps import read_layer, read_map_records
        from geo_lead.parallel import Deferred
        from geo_lead.pilot_report import evaluation_part, joined, started_pilot_parts
        from geo_lead.siting import compute_site
        from geo_lead.zones_milp import stored_queen_adjacency

        # Site needs nothing of score or the hotspots either: a child forked here (it has the
        # records) computes it while this process scores and reads the maps' records (they
        # depend on the scores only); written here, printed after the hotspots as before.
        # The child gets the store's path (errors name it), never the open store: what it
        # would read (records, adjacency, declarations) is read here first.
        site_job = Deferred(compute_site, str(store.path), records=records,
                            adjacency=stored_queen_adjacency(store, load_neighborhoods()),
                            sampling=sampling, boundary=params["boundary"])
        summary["score"] = stage_score(store, say, records, params["boundary"])
        run.stage("score", {"neighborhoods": len(summary["score"].get("table", []))})
        map_records = read_map_records(store, read_layer(store, "scores"), flagged_only=True)
        # a big store: the pilot parts that need no site result, read here while the site child
        # computes (the years sited in a child of their own until `parts_done` is called)
        parts_done = None if pilot is not None else started_pilot_parts(store, records)
        # Hot spots that came before the site are written now instead of waiting idle for it
        # (their lines are printed in their place below)
        hot_lines: list[str] = []
        hot_written = (stage_hotspots(store, hot_lines.append, records, computed=hot.result())
                       if hot.in_child and hot.answered() and not site_job.answered() else None)
        site_lines: list[str] = []
        site_layer, site_result = site_job.result()
        site = stage_site(store, site_lines.append, echo, records,
                          computed=(site_layer, count_left_out(site_result, unflagged)))
        # The site result and the scores are committed: the figures child may read them and
        # draw every figure of the report while this process writes the hot spots and draws
        # the maps (the report is then put together here, its figures drawn).
        from geo_lead.report import report_figure_data

        figure_data.update(report_figure_data(store, records))
        if pilot is not None:  # the child draws the report's figures while this process evaluates
            pilot.send("site and scores written")
            if pilot.in_child:  # else the whole pilot data are read here when its result is asked
                redrawn = flagged_changed(flagged_before, flagged_after, summary["ingest"])
                pilot.send(evaluation_part(store, records) if redrawn else None)
        elif parts_done is not None:  # the child draws the report's figures while this process evaluates
            read: dict[str, Any] = {}
            drawing = figures.submit(pilot_drawn, (figure_data,), fallback=lambda: pilot_drawn(figure_data, read["pilot"]))
            evaluation = evaluation_part(store, records)  # while the years are sited
            parts = parts_done()
            read["pilot"] = joined(parts, evaluation) if "neighborhoods" in parts else parts
            drawing.send(_packed(read["pilot"]))
            pilot = drawing
        say(f"[5/{n}] hotspots: kernel density and Getis-Ord Gi*")
        if hot_written is None:
            hot_written = stage_hotspots(store, hot_lines.append, records, computed=hot.result())
        for line in hot_lines:
            say(line)
        summary["hotspots"] = hot_written
        run.stage("hotspots", stage_counts(summary["hotspots"]))  # its seconds include site's
        say(f"[6/{n}] site selection: is Russell + Portland justified?")
        for line in site_lines:
            say(line)
        summary["site"] = site
        run.stage("site", stage_counts(summary["site"]))
        say(f"[7/{n}] maps, officer zone page and the site-selection report -> {out_dir}")
        summary["outputs"] = stage_outputs(store, out_dir, say, records, map_records,
                                           pilot, figure_data)  # the report reuses them
        del records, map_records, pilot
        for path in summary["outputs"].values():
            run.output(path)
        run.stage("outputs", {"files": len(summary["outputs"]),
                              "sha256": {p: sha256_file(Path(p)) for p in summary["outputs"].values()}})
        summary["records_in_store"] = store.count("records")
        run.stage("store", {"records": summary["records_in_store"]})
        # the manifest row is the one write left (one transaction): after it, the store's
        # change counter is this; a later write by any command moves it (`unchanged_since`)
        run.parameters["store_change_counter"] = store_change_counter(store_path) + 1
    # The manifest row is written when the `with` ends; then the change report exists.
    summary["run_id"] = run.run_id
    summary["geocoded_new"] = summary["geocode"].get("geocoded_new")
    summary["geocoded_from_cache"] = summary["geocode"].get("geocoded_from_cache")
    summary["changes"] = run.changes
    for line in describe(run.changes):
        say(line)
    return summary


# --- a rerun with nothing new (issue 16) -----------------------------------------------------

def store_change_counter(store_path: Path | str) -> int:
    """SQLite's file change counter (header offset 24): every committed write transaction of a
    rollback-journal database (the store's mode) increments it; -1 when unreadable."""
    try:
        with open(store_path, "rb") as fh:
            fh.seek(24)
            raw = fh.read(4)
    except OSError:
        return -1
    return int.from_bytes(raw, "big") if len(raw) == 4 else -1


def _tree_files(root: Path, patterns: Sequence[str]) -> list[Path]:
    return sorted(p for pat in patterns for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts)


def run_fingerprint(files: Sequence[Path | str], parameters: dict[str, Any]) -> dict[str, Any]:
    """What a `geo-lead run` depends on, hashed: the key `unchanged_since` compares.

    Parameters
    ----------
    files
        The LMPD files the run ingests (content: sha256 of each).
    parameters
        Every parsed option of the command (`commands.pipeline` passes them all, so an option
        added later is part of the key without any change here); values as text.

    Returns
    -------
    dict
        ``inputs`` (name, sha256), ``parameters``, ``data`` (sha256 over the boundaries,
        geocoding reference, population and rules files the run reads), ``code`` (sha256 over
        the installed package's source and static files), ``version``, and ``key``: the sha256
        of all of them.
    """
    import hashlib
    import json

    from geo_lead import __version__

    def digest(paths: Sequence[Path]) -> str:
        h = hashlib.sha256()
        for p in paths:
            h.update(str(p.name).encode())
            h.update(sha256_file(p).encode())
        return h.hexdigest()

    data_files = [*_tree_files(settings.BOUNDARIES_DIR, ("*.geojson",)),
                  *_tree_files(settings.REFERENCE_DIR, ("*.csv",)),
                  settings.POPULATION_TRACTS, settings.RULES_FILE]
    fp: dict[str, Any] = {
        "inputs": [{"name": Path(f).name, "sha256": sha256_file(Path(f)) if Path(f).is_file() else ""}
                   for f in files],
        "parameters": json.loads(json.dumps(parameters, default=str, sort_keys=True)),
        "data": digest([p for p in data_files if Path(p).is_file()]),
        "code": digest(_tree_files(settings.PACKAGE_DIR, ("**/*.py", "**/*.toml", "static/**/*"))),
        "version": __version__,
    }
    fp["key"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    return fp


def unchanged_since(store_path: Path | str, fingerprint: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The last successful run, when a run with `fingerprint` would redo exactly it.

    True when that run (the store's newest successful ``run`` manifest row) had the same
    fingerprint key (inputs by sha256, every parameter, data, code), nothing has written to
    the store since (`store_change_counter`), and every output it wrote exists with the
    sha256 it had.

    Returns
    -------
    (run, reason)
        The manifest row (decoded) and "" when nothing changed; else None and why not.
    """
    from geo_lead.manifest import last_run

    if not Path(store_path).is_file():
        return None, "no store yet"
    counter = store_change_counter(store_path)
    with opened(store_path, create=False) as store:
        last = last_run(store, status="ok")
    if last is None or last.get("command") != "run":
        return None, "no earlier run"
    params = last.get("parameters") or {}
    if params.get("fingerprint") != fingerprint["key"]:
        return None, "inputs, parameters, data or code differ from the last run's"
    if params.get("store_change_counter") != counter:
        return None, "the store was written after the last run"
    hashes = ((last.get("counts") or {}).get("outputs") or {}).get("sha256") or {}
    if not hashes:
        return None, "the last run recorded no outputs"
    for path, digest in hashes.items():
        if not Path(path).is_file() or sha256_file(Path(path)) != digest:
            return None, f"output {path} is missing or changed"
    return last, ""
