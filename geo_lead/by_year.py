"""Year by year: the scoring and siting steps run on each calendar year's records alone.

A wrapper over `geo_lead.scoring.score_neighborhoods` and `geo_lead.siting.compute_site` (their
internals untouched): for each year Y the window is Y-01-01 .. Y-12-31 on ``occurred_at``;
every record keeps its own frame weight (1 / its report year's declared sample fraction,
`geo_lead.frames`), so each year is scaled by its own fraction. Per year:

* **scores** -- weighted counts, per-year count, density, rates and EB rates, ranks with
  their bootstrap intervals (`score_neighborhoods`, First Division by default);
* **siting** -- the pilot's rank among every contiguous zone of its size, its share and PAI
  (siting's train/test split within the year: months 1-8 vs 9-12), and that year's verdict
  with its checks (`compute_site` on the year's records; a check with too little data says
  so when siting reports ``insufficient``).

Nothing is written by the computations; `score_by_year_store` / `site_by_year_store` /
`by_year_store` are the store edges (they read), and the CLI stores the JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.parallel import Deferred
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: Per-neighborhood values kept for each year (from the scores).
YEAR_SCORE_KEYS: tuple[str, ...] = (
    "neighborhood", "in_area", "is_named", "count", "count_per_year", "density_per_sqmi", "population",
    "rate_per_1000", "eb_rate_per_1000", "score", "rank", "rank_low", "rank_high",
)
#: A year counts only when the data hold at least this many records (of any kind) in it:
#: stray incidents of earlier years reported later are not a year of data.
MIN_RECORDS_PER_YEAR: int = 100


@dataclass
class YearScores:
    """One year's scores: the ranked units and every unit's weighted density (for the maps)."""

    year: int
    records_in_window: int  #: indicator records in the year (unweighted)
    area_total: float  #: weighted indicator records in the area
    years_covered: float
    ranked: list[dict[str, Any]]  #: ranked units, best first (`YEAR_SCORE_KEYS`)
    density_per_sqmi: dict[str, float]  #: every unit: weighted records per sq mi in the year
    pilot_ranks: dict[str, dict[str, Any]]  #: pilot unit -> rank, rank_low, rank_high of n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class YearSite:
    """One year's siting answer, reduced to what the year-by-year table shows."""

    year: int
    verdict: str
    checks: list[dict[str, Any]]  #: {name, status (pass/fail/insufficient), value, threshold, detail}
    deciding_check: str | None
    pilot_rank: int
    n_zones: int  #: contiguous zones of the pilot's size among the candidates
    share: float
    pai_train: float
    pai_test: float
    records_train: float
    records_test: float
    best_zone: list[str]
    comparison_area: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ByYearResult:
    """The ``--by year`` JSON: one entry per year, scores and/or siting."""

    indicator: str
    area: str
    years: list[int]
    scores: list[YearScores] = field(default_factory=list)
    sites: list[YearSite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": self.indicator, "area": self.area, "years": self.years,
                "scores": [s.to_dict() for s in self.scores], "sites": [s.to_dict() for s in self.sites],
                "notes": self.notes, "pilot_places": pilot_places(self)}


# --- years ----------------------------------------------------------------------------------
def data_years(records: pd.DataFrame, min_records: int = MIN_RECORDS_PER_YEAR) -> list[int]:
    """Calendar years of ``occurred_at`` holding at least `min_records` records of any kind."""
    year = pd.to_datetime(records["occurred_at"], errors="coerce", format="ISO8601").dt.year
    counts = year.value_counts()
    return sorted(int(y) for y, n in counts.items() if n >= min_records)


def year_mask(records: pd.DataFrame, year: int) -> pd.Series:
    """Records whose ``occurred_at`` falls in calendar year `year`."""
    return pd.to_datetime(records["occurred_at"], errors="coerce", format="ISO8601").dt.year == year


# --- scores ---------------------------------------------------------------------------------
def scores_for_year(records: pd.DataFrame, neighborhoods: Any, population: Any, year: int,
                    pilot: Sequence[str] = settings.PILOT_NEIGHBORHOODS, **kwargs: Any) -> YearScores:
    """`score_neighborhoods` on the window ``year``-01-01 .. ``year``-12-31 (pure).

    `kwargs` go to `score_neighborhoods` (indicator, area, first_division, seed, n_boot,
    boundary, sampling, weights).
    """
    from geo_lead.scoring import score_neighborhoods

    sc = score_neighborhoods(records, neighborhoods, population, since=f"{year}-01-01",
                             until=f"{year}-12-31", **kwargs)
    ranked = pd.DataFrame(sc.loc[sc["rank"].notna().to_numpy(), [k for k in YEAR_SCORE_KEYS if k in sc]])
    rows = [{k: _plain(v) for k, v in r.items()} for r in ranked.to_dict("records")]
    n = len(ranked)
    pilot_ranks = {}
    for name in pilot:
        hit = ranked[ranked["neighborhood"] == name]
        pilot_ranks[name] = ({"rank": int(hit["rank"].iloc[0]), "rank_low": int(hit["rank_low"].iloc[0]),
                              "rank_high": int(hit["rank_high"].iloc[0]), "of": n,
                              "count": float(hit["count"].iloc[0])}
                             if len(hit) else {"rank": None, "rank_low": None, "rank_high": None, "of": n,
                                               "count": None})
    density = {str(a): float(b) for a, b in zip(sc["neighborhood"], sc["density_per_sqmi"], strict=True)}
    attrs = sc.attrs
    return YearScores(year=year, records_in_window=int(attrs.get("records_in_window", 0)),
                      area_total=float(attrs.get("area_total", float("nan"))),
                      years_covered=float(attrs.get("years_covered", float("nan"))),
                      ranked=rows, density_per_sqmi=density, pilot_ranks=pilot_ranks)


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    return v


# --- siting ---------------------------------------------------------------------------------
def normalise_checks(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A site result's checks as ``[{name, status, value, threshold, detail}]`` and its
    deciding check: the typed ``checks`` list when siting gives one, else built from the older
    ``verdict_checks`` booleans (pass/fail)."""
    if isinstance(result.get("checks"), list):
        return list(result["checks"]), result.get("deciding_check")
    checks = [{"name": k, "status": "pass" if v else "fail", "value": None, "threshold": None, "detail": ""}
              for k, v in (result.get("verdict_checks") or {}).items()]
    failed = [c["name"] for c in checks if c["status"] != "pass"]
    return checks, (failed[0] if failed else None)


def site_for_year(year: int, result: Any) -> YearSite:
    """A `YearSite` from one year's site answer (a dict or a result object with ``to_dict``)."""
    r = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    checks, deciding = normalise_checks(r)
    pz = r["pilot_zone"]
    return YearSite(year=year, verdict=str(r["verdict"]), checks=checks, deciding_check=deciding,
                    pilot_rank=int(r["pilot_rank"]), n_zones=int(r["n_candidate_zones"]),
                    share=float(pz["share"]), pai_train=float(pz["pai_train"]), pai_test=float(pz["pai_test"]),
                    records_train=float(pz.get("records_train", float("nan"))),
                    records_test=float(pz.get("records_test", float("nan"))),
                    best_zone=list((r.get("best_zone_same_size") or r.get("best_zone") or {}).get("neighborhoods", [])),
                    comparison_area=list((r.get("comparison_area") or {}).get("neighborhoods", [])))


# --- the store edges ------------------------------------------------------------------------
def _read(store: Store, indicator: str, records: Any = None) -> Any:
    """The store's records as points with a frame ``weight`` (`records`: already read).

    Read here: only the records `indicator` flags when that is exact (`_read_frame`); the
    facts of the others come from the store (`_years`, `_year_sampling`)."""
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.frames import WEIGHT_COLUMNS, attach_weights
    from geo_lead.hotspots import records_from_store
    from geo_lead.scoring import SCORE_RECORD_COLUMNS
    from geo_lead.siting import SITE_COLUMNS

    cols = list(dict.fromkeys([*SCORE_RECORD_COLUMNS, *SITE_COLUMNS, *WEIGHT_COLUMNS, indicator, "division"]))
    have = set(store.columns("records"))
    if indicator not in have:
        raise GeoLeadError(f"{store.path}: indicator {indicator!r} is not a column of the records.")
    cols = [c for c in cols if c in have]
    if records is None:
        records = _read_frame(store, cols, indicator)
    recs = records_from_store(store, load_neighborhoods(), cols, records=records)
    if "weight" not in recs:
        recs = attach_weights(store, recs.copy())
    return recs


def _read_frame(store: Store, columns: list[str], indicator: str) -> Any:
    """`columns` of the records as points with their frame ``weight`` (`spatial_join.records_gdf`'s
    frame): only the flagged ones when `analysis_reads.read_analysis_points` reads only them,
    except in a year of data without a flagged point, whose records are all read (siting it
    then fails with the message a full read gives: `_with_every_record_of`); else every
    record."""
    from geo_lead.analysis_reads import read_analysis_points

    points = read_analysis_points(store, columns, indicator)
    if len(points) < store.count("records"):
        missing = sorted(set(store_data_years(store)) - _point_years(points, indicator))
        if missing:
            points = _with_every_record_of(store, points, columns, missing)
    return points


def shared_read(store: Store, records: Any, indicator: str = "lead_eligible") -> Any:
    """`records` (the run's shared read, `geo_lead.pipeline.analysis_records`) made into what
    `_read_frame` reads, when that is exact; else None (`by_year_store` then reads itself).

    `analysis_reads.reusable_points` decides whether it holds the rows `_read_frame` starts
    from. A year of data without a flagged point gets every record of that year, as in
    `_read_frame` (`_with_every_record_of`, their dates parsed as the shared read's are).
    """
    from geo_lead.analysis_reads import reusable_points
    from geo_lead.frames import WEIGHT_COLUMNS
    from geo_lead.scoring import SCORE_RECORD_COLUMNS
    from geo_lead.siting import SITE_COLUMNS

    cols = [*SCORE_RECORD_COLUMNS, *SITE_COLUMNS, *WEIGHT_COLUMNS, "division", "lon", "lat"]
    points = reusable_points(store, records, indicator, cols)
    if points is None:
        return None
    missing = sorted(set(store_data_years(store)) - _point_years(points, indicator))
    if not missing:
        return points
    have = set(store.columns("records"))
    return _with_every_record_of(store, points, [c for c in points.columns if c in have], missing)


#: The format ingest writes dates in (`geo_lead.sources`); a shared read's parsed date columns
#: were parsed with it (`pipeline.parse_iso_columns`).
ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"


def _dates_like(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame | None:
    """`frame` with the date columns `like` holds parsed, parsed too (None when a value is not
    in `ISO_SECONDS`: the two could not be joined exactly)."""
    for col in ("occurred_at", "reported_at"):
        if col not in like or like[col].dtype.kind != "M" or frame[col].dtype.kind == "M":
            continue
        text = frame[col]
        parsed = pd.to_datetime(text, errors="coerce", format=ISO_SECONDS)
        empty = text.isna().to_numpy(bool) | pd.Series(text == "").fillna(False).to_numpy(bool)
        if not bool((parsed.isna().to_numpy() == empty).all()):
            return None
        frame[col] = parsed
    return frame


def _with_every_record_of(store: Store, points: Any, columns: list[str], years: list[int]) -> Any:
    """`points` (a flagged read, ISO dates only) with its records of `years` replaced by every
    record of those years (`Store.records_of_years`, made points the same way), after the
    others: each year's rows are then those a full read has, in fid order, or its flagged ones.
    Date columns `points` holds parsed are parsed in the new rows too (None when one cannot be
    exactly: `_dates_like`)."""
    from geo_lead.frames import WEIGHT_COLUMNS, attach_weights
    from geo_lead.spatial_join import points_from_lonlat

    have = set(store.columns("records"))
    cols = [c for c in dict.fromkeys([*columns, "lon", "lat", *WEIGHT_COLUMNS]) if c in have]
    extra = _dates_like(points_from_lonlat(attach_weights(store, store.records_of_years(cols, years))), points)
    if extra is None:
        return None
    year = pd.to_datetime(points["occurred_at"], errors="coerce", format="ISO8601").dt.year
    return pd.concat([points[~year.isin(years).to_numpy()], extra[list(points.columns)]], ignore_index=True)


def _point_years(frame: pd.DataFrame, indicator: str) -> set[int]:
    """Calendar years of the flagged records of `frame` that have a point."""
    flag = frame[indicator].fillna(False).astype(bool)
    placed = pd.to_numeric(frame["lon"], errors="coerce").notna() & pd.to_numeric(frame["lat"], errors="coerce").notna()
    years = pd.to_datetime(frame.loc[flag & placed, "occurred_at"], errors="coerce", format="ISO8601").dt.year
    return {int(y) for y in years.dropna().unique()}


def store_data_years(store: Store, min_records: int = MIN_RECORDS_PER_YEAR) -> list[int]:
    """`data_years` of every stored record, counted in the store (ISO-text dates:
    `Store.odd_record_dates`)."""
    return sorted(y for y, n in store.occurred_year_counts().items() if n >= min_records)


def _holds_every_record(store: Store, recs: pd.DataFrame) -> bool:
    return len(recs) >= store.count("records")


def _years(store: Store, recs: pd.DataFrame, years: Sequence[int] | None) -> list[int]:
    """`years`, else the years of data: of `recs` when it holds every record, else of the store."""
    if years:
        return list(years)
    return data_years(recs) if _holds_every_record(store, recs) else store_data_years(store)


def _year_sampling(store: Store, recs: pd.DataFrame) -> dict[int, Any] | None:
    """Per year, the report-date spans of all its records per file as `frames.Frames`: what
    `siting.compute_site` takes the months of data from when given a year's records alone
    (`frames.spans_from_records` of them). None when `recs` holds every record (compute_site
    then takes the spans from the year's records, as always)."""
    if _holds_every_record(store, recs):
        return None
    from geo_lead.frames import FileFrame, Frames

    out: dict[int, Any] = {}
    for row in store.report_spans_by_year().itertuples(index=False):
        out.setdefault(int(row.year), Frames()).files.append(
            FileFrame("", str(row.source_file), "", 1.0, (int(row.year),), str(row.first), str(row.last)))
    return out


def score_by_year_store(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                        years: Sequence[int] | None = None, records: Any = None,
                        **kwargs: Any) -> ByYearResult:
    """`scores_for_year` for every year of the store's data (or `years`); reads only.

    `kwargs` go to `score_neighborhoods` (seed, n_boot, weights, boundary).
    """
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.division_records import first_division_for_store
    from geo_lead.frames import load_frames
    from geo_lead.population import population_of

    recs = _read(store, indicator, records)
    nh = load_neighborhoods()
    population = population_of(nh).population
    fd = first_division_for_store(store, nh, records=recs) if area == "first-division" else None
    yrs = _years(store, recs, years)
    sampling = load_frames(store)
    out = ByYearResult(indicator=indicator, area=area, years=yrs)
    flagged = recs[indicator].fillna(False).astype(bool)
    for y in yrs:
        if not (flagged & year_mask(recs, y)).any():
            out.notes.append(f"{y}: no {indicator} record; not scored")
            continue
        out.scores.append(scores_for_year(recs, nh, population, y, indicator=indicator, area=area,
                                          first_division=fd, sampling=sampling, **kwargs))
    return out


def site_by_year_store(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                       years: Sequence[int] | None = None, records: Any = None, **params: Any) -> ByYearResult:
    """`compute_site` on each year's records alone (nothing written); reads only.

    `params`: further `compute_site` / `SiteParams` arguments (k, capacity, replicates, ...).
    A year whose records cannot be sited (no record in its train or test months) gets a note
    instead of an entry.
    """
    return _site_by_year_job(store, indicator, area, years, records, params).result()


def _site_by_year_job(store: Store, indicator: str, area: str, years: Sequence[int] | None, records: Any,
                      params: dict[str, Any]) -> Deferred[ByYearResult]:
    """`site_by_year_store`'s answer as a `geo_lead.parallel.Deferred`: what it reads is read
    here, and the years are sited in a forked child when `compute_site` needs no store for
    them (each year's sampling spans given: its path mode), else here when asked."""
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.parallel import Deferred
    from geo_lead.zones_milp import stored_queen_adjacency

    recs = _read(store, indicator, records)
    yrs = _years(store, recs, years)
    spans = _year_sampling(store, recs) if "sampling" not in params else None
    params = dict(params)
    if params.get("adjacency") is None:  # the same for every year: read once
        params["adjacency"] = stored_queen_adjacency(store, load_neighborhoods())
    if spans is None and params.get("sampling") is None:  # compute_site reads the store: here
        return Deferred.here(lambda: _site_years(store, indicator, area, recs, yrs, None, params),
                             name="site_by_year_store")
    return Deferred(_site_years, str(store.path), indicator, area, recs, yrs, spans, params)


def _site_years(store: Store | str, indicator: str, area: str, recs: Any, years: list[int],
                spans: dict[int, Any] | None, params: dict[str, Any]) -> ByYearResult:
    """`compute_site` on each of `years`' records of `recs` (`store`: open, or its path when
    every year's sampling is given: `spans`, or ``sampling`` in `params`)."""
    from geo_lead.frames import Frames
    from geo_lead.siting import compute_site

    out = ByYearResult(indicator=indicator, area=area, years=years)
    for y in years:
        year_spans = {} if spans is None else {"sampling": spans.get(y, Frames())}
        try:
            _layer, res = compute_site(store, indicator=indicator, area=area, records=recs[year_mask(recs, y)],
                                       **year_spans, **params)
        except GeoLeadError as exc:
            out.notes.append(f"{y}: not sited ({exc})")
            continue
        out.sites.append(site_for_year(y, res))
    return out


def by_year_store(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                  records: Any = None, site_params: dict[str, Any] | None = None,
                  score_params: dict[str, Any] | None = None) -> ByYearResult:
    """Both: scores and siting per year (the report's section).

    The years are sited in a forked child while they are scored here, when siting needs no
    store read (`by_year_started`); the answer is the one computed in turn.
    """
    return by_year_started(store, indicator, area, records, site_params, score_params)()


def by_year_started(store: Store, indicator: str = "lead_eligible", area: str = "first-division",
                    records: Any = None, site_params: dict[str, Any] | None = None,
                    score_params: dict[str, Any] | None = None) -> Callable[[], ByYearResult]:
    """`by_year_store` in two steps: this call starts siting the years in a forked child (when
    siting reads nothing of the store and this process can fork: `_site_by_year_job`) and
    scores them here; the function it returns waits for the sites and gives the answer. What
    the caller does in between runs beside the child. Without a child the years are sited here
    before this returns, as `by_year_store` always did.
    """
    recs = _read(store, indicator, records)
    sites = _site_by_year_job(store, indicator, area, None, recs, dict(site_params or {}))
    s = score_by_year_store(store, indicator, area, records=recs, **(score_params or {}))
    sited = None if sites.in_child else sites.result()

    def finish() -> ByYearResult:
        t = sited if sited is not None else sites.result()
        s.sites, s.notes = t.sites, s.notes + t.notes
        return s

    return finish


# --- reading the answer -----------------------------------------------------------------------
def pilot_places(result: ByYearResult) -> list[dict[str, Any]]:
    """One row per year: the pilot units' score ranks and the zone's place among contiguous
    zones, share, PAI and verdict (whatever of these the result holds)."""
    rows: dict[int, dict[str, Any]] = {y: {"year": y} for y in result.years}
    for s in result.scores:
        row = rows[s.year]
        row["records"] = s.records_in_window
        row["area_total_weighted"] = s.area_total
        row["ranks"] = s.pilot_ranks
    for t in result.sites:
        rows[t.year].update({"zone_rank": t.pilot_rank, "n_zones": t.n_zones, "share": t.share,
                             "pai_train": t.pai_train, "pai_test": t.pai_test, "verdict": t.verdict,
                             "deciding_check": t.deciding_check,
                             "checks": {c["name"]: c["status"] for c in t.checks}})
    return [rows[y] for y in result.years]


def format_scores_by_year(result: ByYearResult) -> str:
    """Per year: the ranked table (count, per year, rates, rank and its interval)."""
    lines = [f"Scores by year ({result.indicator}, area {result.area}); each year weighted by its own "
             "sampling fraction; ranks with 90% bootstrap intervals"]
    for s in result.scores:
        lines.append(f"\n{s.year}: {s.records_in_window} records in the year, {s.area_total:,.1f} weighted in the area")
        lines.append(f"  {'rank':>4} {'90% int':>7}  {'neighborhood':<28} {'count':>8} {'per_year':>9} "
                     f"{'per_sqmi':>9} {'rate/1k':>8} {'EB/1k':>7}")
        for r in s.ranked:
            star = "*" if r["neighborhood"] in settings.PILOT_NEIGHBORHOODS else " "
            lines.append(f"  {r['rank']:>4} {r['rank_low']:>3}-{r['rank_high']:<3}  {star}{r['neighborhood']:<27} "
                         f"{r['count']:8.1f} {r['count_per_year']:9.1f} {r['density_per_sqmi']:9.1f} "
                         f"{r['rate_per_1000']:8.2f} {(r['eb_rate_per_1000'] or float('nan')):7.2f}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def format_sites_by_year(result: ByYearResult) -> str:
    """Per year: verdict, checks, the pilot's rank among zones of its size, share and PAI."""
    lines = [f"Site selection by year ({result.indicator}, area {result.area}); train months 1-8, "
             "test months 9-12 of the year",
             f"  {'year':<5} {'verdict':<13} {'rank':>9} {'share':>6} {'PAI tr':>6} {'PAI te':>6}  checks"]
    for t in result.sites:
        checks = ", ".join(f"{c['name']}={c['status']}" for c in t.checks)
        lines.append(f"  {t.year:<5} {t.verdict:<13} {t.pilot_rank:>4} of {t.n_zones:<2} {t.share:6.1%} "
                     f"{t.pai_train:6.2f} {t.pai_test:6.2f}  {checks}"
                     + (f" (deciding: {t.deciding_check})" if t.deciding_check else ""))
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
