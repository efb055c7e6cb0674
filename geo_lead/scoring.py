"""Neighborhood scores: counts, density, rates, Empirical Bayes smoothing, composite, ranks.

For one indicator (a flag of the records, default ``lead_eligible``) and one time window,
every neighborhood unit gets

count             weighted count of the records in the window with the indicator set: each
                  record weighs its frame weight (1 / its year's declared sample fraction,
                  `geo_lead.frames`; so counts are frame-scaled) times its share of the unit
                  (`geo_lead.allocation.unit_shares`: records within the boundary tolerance
                  of an edge shared by two or more units are split equally among them)
count_shared      the part of count that came from shared records
share             count / the area's total count
count_per_year    count / the years the files cover (`geo_lead.frames.coverage`: the union
                  of the files' report-date spans, clipped to the window)
density_per_sqmi  count / area in square miles (EPSG:2246)
population        2020 residents, areally interpolated from tracts (`geo_lead.population`)
rate_per_1000     1000 * count / population
eb_rate_per_1000  1000 * global Empirical Bayes rate over the area's ranked neighborhoods
                  (`empirical_bayes`, as esda's ``Empirical_Bayes`` but with phi clipped at 0)
score             composite: sum of weight * metric / max(metric) over the ranked units
                  (`DEFAULT_WEIGHTS`, overridable)
rank              1 = highest score among the area's named neighborhoods
rank_low/high     90% bootstrap interval of the rank: the area's records are resampled
                  with replacement (seeded), each with its weight and shares, scores and
                  ranks recomputed
rank_boundary_best / rank_boundary_worst
                  the unit's rank when every record it shares goes wholly to it / when none
                  does (they go to the other units that share them): how much the boundary
                  streets decide its rank

Every metric (count, density, rates, EB, composite, bootstrap) uses the same weighted count.

Only *named* neighborhoods inside the area are ranked and enter the EB prior; the
``REMAINDER OF CITY #`` / ``UNNAMED #`` units are listed with their counts (and count in
the area's total) but are not ranked: they are leftover pieces, not neighborhoods.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_lead import allocation, frames, settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: A window end as callers give it: ``YYYY-MM-DD`` text, a date or datetime (pandas'
#: Timestamp is one), or None / ``""`` for an open end.
Day: TypeAlias = str | date | None

AREAS: tuple[str, ...] = ("first-division", "city")
#: Composite weights (each metric is divided by its maximum over the ranked units first).
DEFAULT_WEIGHTS: dict[str, float] = {"count": 1 / 3, "density_per_sqmi": 1 / 3, "eb_rate_per_1000": 1 / 3}
#: Lower / upper quantile of the bootstrap rank interval (a 90% interval).
RANK_INTERVAL: tuple[float, float] = (0.05, 0.95)
DAYS_PER_YEAR = 365.25

SCORE_COLUMNS: tuple[str, ...] = (
    "neighborhood", "NH_CODE", "is_named", "in_area", "area_sqmi", "count", "count_shared", "share",
    "count_per_year", "density_per_sqmi", "population", "rate_per_1000", "eb_rate_per_1000",
    "score", "rank", "rank_low", "rank_high", "rank_boundary_best", "rank_boundary_worst", "indicator",
)
JSON_KEYS: tuple[str, ...] = (
    "neighborhood", "count", "count_shared", "count_per_year", "density_per_sqmi", "population",
    "rate_per_1000", "eb_rate_per_1000", "score", "rank", "rank_low", "rank_high",
    "rank_boundary_best", "rank_boundary_worst",
)


# --- statistics (pure, numpy in / numpy out) --------------------------------------------
def empirical_bayes(events: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Global (aspatial) Empirical Bayes rates per person.

    theta = sum(e)/sum(b); s2 = sum(b (r - theta)^2)/sum(b); phi = max(s2 - theta/mean(b), 0);
    w = phi / (phi + theta/b); EB = w r + (1 - w) theta. Equals esda's ``Empirical_Bayes``
    whenever phi >= 0; esda does not clip, which gives negative weights otherwise.

    Parameters
    ----------
    events, population
        Counts and populations (population > 0) of the units.

    Raises
    ------
    ValueError
        A population is <= 0 (callers pass only units with population).
    """
    e = np.asarray(events, dtype=float)
    b = np.asarray(population, dtype=float)
    if len(e) == 0:
        return np.array([], dtype=float)
    if np.any(b <= 0):
        raise ValueError("Empirical Bayes needs a positive population for every unit.")
    theta = e.sum() / b.sum()
    r = e / b
    s2 = float((b * (r - theta) ** 2).sum() / b.sum())
    phi = max(s2 - theta / b.mean(), 0.0)
    if phi == 0.0:
        return np.full_like(r, theta)
    w = phi / (phi + theta / b)
    return np.asarray(w * r + (1.0 - w) * theta, dtype=float)


def empirical_bayes_rows(events: np.ndarray, population: np.ndarray) -> np.ndarray:
    """`empirical_bayes` of each row of `events` (replicates x units) with the same
    `population`, in one pass over the array: row i equals ``empirical_bayes(events[i],
    population)`` bit for bit (the same operations in the same order; each row's sums are
    numpy's sums of that row).

    Raises
    ------
    ValueError
        `events` is not 2-D with one column per unit, or a population is <= 0.
    """
    e = np.ascontiguousarray(events, dtype=float)
    b = np.asarray(population, dtype=float)
    if e.ndim != 2 or e.shape[1] != len(b):
        raise ValueError(f"empirical_bayes_rows needs replicates x {len(b)} units, got shape {e.shape}")
    if e.shape[1] == 0:
        return np.empty_like(e)
    if np.any(b <= 0):
        raise ValueError("Empirical Bayes needs a positive population for every unit.")
    b_sum = b.sum()
    theta = e.sum(axis=1) / b_sum
    r = e / b
    s2 = (b * (r - theta[:, None]) ** 2).sum(axis=1) / b_sum
    phi = np.maximum(s2 - theta / b.mean(), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = phi[:, None] / (phi[:, None] + theta[:, None] / b)
        eb = w * r + (1.0 - w) * theta[:, None]
    return np.asarray(np.where((phi == 0.0)[:, None], theta[:, None], eb), dtype=float)


def composite_score(metrics: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """sum_k weight_k * metric_k / max(metric_k); NaN metrics count as 0.

    Works on 1-D arrays (units) or 2-D arrays (replicates x units, max taken per row).
    """
    total: np.ndarray | None = None
    for name, weight in weights.items():
        x = np.nan_to_num(np.asarray(metrics[name], dtype=float), nan=0.0)
        top = x.max(axis=-1, keepdims=True) if x.size else np.ones(1)
        part = weight * np.divide(x, top, out=np.zeros_like(x), where=top > 0)
        total = part if total is None else total + part
    assert total is not None
    return total


def descending_ranks(score: np.ndarray) -> np.ndarray:
    """Competition ranks (1 = highest; ties share the best rank) along the last axis."""
    s = np.asarray(score, dtype=float)
    # rank = 1 + number of strictly greater scores
    return np.asarray(1 + (s[..., None, :] > s[..., :, None]).sum(axis=-1))


def bootstrap_rank_interval(counts: np.ndarray, ranked: np.ndarray, area_sqmi: np.ndarray,
                            population: np.ndarray, weights: dict[str, float], n_boot: int,
                            seed: int, classes: tuple[np.ndarray, np.ndarray] | None = None,
                            ) -> tuple[np.ndarray, np.ndarray]:
    """90% bootstrap interval of the ranks of the `ranked` units.

    Resampling the area's N records with replacement is a multinomial draw of N over classes
    of interchangeable records (same units, shares and weight) with probabilities size/N;
    each replicate's unit counts are the drawn class sizes times the classes' contributions
    (weight x share per unit), and count, density, EB rate, composite score and rank are
    recomputed. `classes` = (sizes, contributions: classes x units) from `record_classes`;
    None: one class per unit of whole records of weight 1 (``counts`` = their numbers).

    Reused across runs (`geo_lead.result_cache`, kind ``rank_interval``) when the classes,
    ranked units, areas, population, weights, `n_boot` and `seed` hash as before.

    Returns
    -------
    (rank_low, rank_high) for the ranked units, integers.
    """
    from geo_lead import result_cache

    sizes, contrib = (np.asarray(counts, float), np.eye(len(counts))) if classes is None else classes
    arrays = [np.ascontiguousarray(a) for a in (sizes, contrib, ranked, area_sqmi, population)]
    key = result_cache.digest([RANK_INTERVAL_CACHE, result_cache.code_version(), result_cache.settings_version(), result_cache.library_versions("numpy"),
                               *(f"{a.dtype.str}{a.shape}" for a in arrays), *(a.tobytes() for a in arrays),
                               json.dumps(sorted(weights.items())), f"n_boot={int(n_boot)}", f"seed={int(seed)}"])
    hit = result_cache.read(RANK_INTERVAL_CACHE, key)
    k = int(np.asarray(ranked, bool).sum())
    if hit is not None and len(hit.get("low", ())) == len(hit.get("high", ())) == k:
        return np.asarray(hit["low"], dtype=int), np.asarray(hit["high"], dtype=int)
    low, high = _bootstrap_rank_interval(sizes, contrib, ranked, area_sqmi, population, weights, n_boot, seed)
    result_cache.write(RANK_INTERVAL_CACHE, key, {"low": low.tolist(), "high": high.tolist()})
    return low, high


#: `geo_lead.result_cache` kind of `bootstrap_rank_interval`'s intervals.
RANK_INTERVAL_CACHE = "rank_interval"


def _bootstrap_rank_interval(sizes: np.ndarray, contrib: np.ndarray, ranked: np.ndarray, area_sqmi: np.ndarray,
                             population: np.ndarray, weights: dict[str, float], n_boot: int,
                             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`bootstrap_rank_interval` computed (no cache), on the classes' sizes and contributions."""
    n_total = round(float(sizes.sum()))
    k = int(ranked.sum())
    if k == 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    if n_total == 0 or n_boot <= 0:
        r = descending_ranks(np.zeros(k))
        return r, r
    rng = np.random.default_rng(seed)
    draws = (rng.multinomial(n_total, sizes / sizes.sum(), size=n_boot).astype(float) @ contrib)[:, ranked]
    pop = population[ranked]
    with_pop = pop > 0
    eb = np.full_like(draws, np.nan)
    if with_pop.any():
        eb[:, with_pop] = empirical_bayes_rows(draws[:, with_pop], pop[with_pop]) * 1000.0
    metrics = {"count": draws, "density_per_sqmi": draws / area_sqmi[ranked],
               "eb_rate_per_1000": eb, "rate_per_1000": np.where(with_pop, draws / np.where(with_pop, pop, 1) * 1000, np.nan)}
    ranks = descending_ranks(composite_score(metrics, weights))
    low = np.quantile(ranks, RANK_INTERVAL[0], axis=0, method="lower").astype(int)
    high = np.quantile(ranks, RANK_INTERVAL[1], axis=0, method="higher").astype(int)
    return low, high


# --- time windows and yearly scaling ----------------------------------------------------
def _parse_day(value: Day, name: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise GeoLeadError(f"--{name} {value!r}: not a date; use YYYY-MM-DD.") from None


def window_mask(records: pd.DataFrame, since: Day = None, until: Day = None) -> pd.Series:
    """Records whose ``occurred_at`` is in [since, until] (until is inclusive of its day)."""
    start, end = _parse_day(since, "since"), _parse_day(until, "until")
    if start is not None and end is not None and end < start:
        raise GeoLeadError(f"--until {until} is before --since {since}.")
    mask = pd.Series(True, index=records.index)
    if start is None and end is None:  # no window: no need to parse a million dates
        return mask
    when = pd.to_datetime(records["occurred_at"], errors="coerce")
    if start is not None:
        mask &= when >= start
    if end is not None:
        mask &= when < end + pd.Timedelta(days=1) if end == end.normalize() else when <= end
    return mask


def years_covered(records: pd.DataFrame, since: Day = None, until: Day = None,
                  frames_: frames.Frames | None = None) -> float:
    """Years the data cover, clipped to the window: `geo_lead.frames.coverage` of the stored
    declarations (`frames_`), else of the records' own files (report dates; occurrence date
    when unreported). Overlapping spans are merged, so the same days never count twice."""
    return frames.coverage_of(records, frames_, since, until).years


def record_classes(records: pd.DataFrame, shares: pd.DataFrame, n_units: int,
                   unit_index: pd.Series, in_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes of interchangeable area records for `bootstrap_rank_interval`.

    A record's contribution is weight x share to each of its units inside the area; records
    with equal contributions form a class. The first `n_units` classes are "one whole record
    of weight 1 in unit i" (size 0 when there is none), so with such records only the draw is
    exactly the per-unit multinomial.

    Returns
    -------
    sizes, contributions
        Class sizes (records) and a classes x units matrix.
    """
    ix = unit_positions(shares["unit"], unit_index)
    found = ~np.isnan(ix)
    keep = found & in_area[np.where(found, ix, 0).astype(int)]
    sh = shares[keep]
    unit = ix[keep].astype(int)
    value = allocation.record_weight(records).reindex(sh["row"]).to_numpy(float) * sh["share"].to_numpy(float)
    parts = pd.DataFrame({"row": sh["row"].to_numpy(), "unit": unit, "value": np.round(value, 12)})
    parts = parts.sort_values(["row", "unit"], kind="stable")
    sizes_by_key = _class_sizes(parts)
    simple = {f"{i}:{1.0!r}": i for i in range(n_units)}
    extra = sorted(k for k in sizes_by_key if k not in simple)
    sizes = np.zeros(n_units + len(extra))
    contrib = np.zeros((n_units + len(extra), n_units))
    contrib[np.arange(n_units), np.arange(n_units)] = 1.0
    for k, i in simple.items():
        sizes[i] = sizes_by_key.get(k, 0)
    for j, k in enumerate(extra, start=n_units):
        sizes[j] = sizes_by_key[k]
        for item in k.split("|"):
            u, v = item.split(":")
            contrib[j, int(u)] += float(v)
    return sizes, contrib


def unit_positions(units: pd.Series, unit_index: pd.Series) -> np.ndarray:
    """``units.map(unit_index).to_numpy(float)``: each unit's value in `unit_index` (a unit
    name -> position Series), NaN for a unit it does not hold; one index lookup instead of
    pandas' element-wise map of Arrow strings."""
    where = unit_index.index.get_indexer(units)
    if not len(unit_index):
        return np.full(len(where), np.nan)
    return np.where(where >= 0, unit_index.to_numpy(dtype=float)[where], np.nan)


def _part_keys(parts: pd.DataFrame) -> pd.Series:
    """``unit:repr(value)`` of each row of `parts` (the text of one contribution)."""
    return parts["unit"].astype(str) + ":" + parts["value"].map(repr).astype(str)


def _class_sizes(parts: pd.DataFrame) -> dict[str, int]:
    """Records per class key (`record_classes`): a record's key joins its parts' keys, in
    `parts` order (sorted by row and unit), with ``|``. Records of one part (nearly all) are
    counted per distinct (unit, value) pair and keyed once per pair; only records with
    several parts are keyed one by one."""
    several = parts["row"].duplicated(keep=False).to_numpy()
    one = parts[~several]
    pairs = one.groupby(["unit", "value"], sort=False, dropna=False).size()
    keys = _part_keys(pairs.index.to_frame(index=False))
    sizes = {str(k): int(n) for k, n in zip(keys, pairs.to_numpy(), strict=True)}
    multi = parts[several]
    if len(multi):
        sizes.update(_joined_key_counts(_part_keys(multi).to_numpy(dtype=object), multi["row"].to_numpy()))
    return sizes


def _joined_key_counts(keys: np.ndarray, rows: np.ndarray) -> dict[str, int]:
    """Records per joined key: each record's part `keys` (consecutive, its `rows` equal) joined
    with ``|`` in their order, counted; the distinct part sequences are found with numpy (a
    records x parts table of part codes) and only those are joined."""
    codes, uniques = pd.factorize(keys)
    start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    length = np.diff(np.r_[start, len(rows)])
    table = np.full((len(start), int(length.max())), -1, dtype=np.int64)
    table[np.repeat(np.arange(len(start)), length), np.arange(len(rows)) - np.repeat(start, length)] = codes
    patterns, counts = np.unique(table, axis=0, return_counts=True)
    out: dict[str, int] = {}
    for pattern, n in zip(patterns, counts, strict=True):
        key = "|".join(str(uniques[c]) for c in pattern if c >= 0)
        out[key] = out.get(key, 0) + int(n)
    return out


# --- the area -----------------------------------------------------------------------------
def area_members(neighborhoods: gpd.GeoDataFrame, area: str,
                 first_division: gpd.GeoDataFrame | None) -> np.ndarray:
    """Boolean mask of the units in `area` (``city``: all; ``first-division``: the units
    whose area lies at least half inside the First Division polygon)."""
    if area not in AREAS:
        raise GeoLeadError(f"--area {area!r}: choose one of {', '.join(AREAS)}.")
    if area == "city":
        return np.ones(len(neighborhoods), dtype=bool)
    if first_division is None or first_division.empty:
        raise GeoLeadError("no First Division polygon; run `geo-lead boundaries rebuild`.")
    from geo_lead import result_cache

    key = result_cache.digest([
        result_cache.frame_digest(neighborhoods, [neighborhoods.geometry.name]),
        result_cache.frame_digest(first_division, [first_division.geometry.name]),
        repr(settings.CRS_PROJECTED), repr(settings.AREA_MEMBER_MIN_SHARE)])
    if key not in _AREA_MEMBERS:
        nh = neighborhoods.geometry.to_crs(settings.CRS_PROJECTED)
        fd = first_division.geometry.to_crs(settings.CRS_PROJECTED).union_all()
        inside = nh.intersection(fd).area.to_numpy()
        area_sqft = nh.area.to_numpy()
        if len(_AREA_MEMBERS) >= 8:
            _AREA_MEMBERS.clear()
        _AREA_MEMBERS[key] = np.where(area_sqft > 0, inside / np.where(area_sqft > 0, area_sqft, 1), 0) \
            >= settings.AREA_MEMBER_MIN_SHARE
    return _AREA_MEMBERS[key].copy()


#: `area_members`' first-division masks in this process, by the units' and the division's
#: geometry (WKB, CRS), the projection and the share: the year-by-year scores ask for the
#: same mask once per year.
_AREA_MEMBERS: dict[str, np.ndarray] = {}


# --- scoring --------------------------------------------------------------------------------
def score_neighborhoods(records: pd.DataFrame, neighborhoods: gpd.GeoDataFrame,  # noqa: PLR0913  public keyword API (by_year, tests); a ScoreParams dataclass is a follow-up
                        population: pd.Series | np.ndarray, indicator: str = "lead_eligible",
                        area: str = "first-division", since: Day = None, until: Day = None,
                        weights: dict[str, float] | None = None, seed: int = settings.RANDOM_SEED,
                        n_boot: int = settings.BOOTSTRAP_REPLICATES,
                        first_division: gpd.GeoDataFrame | None = None,
                        boundary: str | None = None,
                        sampling: frames.Frames | None = None) -> gpd.GeoDataFrame:
    """Score every neighborhood unit for one indicator and window.

    Parameters
    ----------
    records
        Records with ``neighborhood`` (from `geo_lead.spatial_join`), ``occurred_at``,
        ``source_file`` and the `indicator` flag.
    neighborhoods
        Units with NH_NAME, NH_CODE, is_named (`geo_lead.boundaries.load_neighborhoods`).
    population
        Residents per unit, aligned to `neighborhoods` (`geo_lead.population`).
    indicator
        A boolean flag column of `records` (``lead_eligible``, ``opiate``, ...).
    area
        ``first-division`` (needs `first_division`) or ``city``.
    since, until
        Inclusive window on ``occurred_at`` (``YYYY-MM-DD``); None = open.
    weights
        Composite weights over ``count``, ``density_per_sqmi``, ``eb_rate_per_1000``,
        ``rate_per_1000`` (default `DEFAULT_WEIGHTS`).
    seed, n_boot
        Bootstrap seed and replicates for the rank interval.
    first_division
        The First Division polygon(s) (`geo_lead.boundaries.load_first_division`).
    boundary
        ``split`` (default `settings.BOUNDARY_RULE`) or ``first``: how records near a shared
        edge (``boundary_units``) count (`geo_lead.allocation.unit_shares`).
    sampling
        The store's sampling declarations (`geo_lead.frames.load_frames`) for the years
        covered; None: the records' own file spans. Record weights come from the records'
        ``weight`` column (1 when absent).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per unit (EPSG:4326) with `SCORE_COLUMNS`, sorted by rank (unranked last).
    """
    rule = allocation.check_rule(boundary)
    weights = _check_weights(weights)
    if indicator not in records.columns:
        flags = [c for c in records.columns if records[c].dtype == bool]
        raise GeoLeadError(f"indicator {indicator!r} is not a column of the records; "
                           f"choose one of: {', '.join(flags) or '(no flags: run ingest first)'}.")
    if "neighborhood" not in records.columns:
        raise GeoLeadError("records have no `neighborhood` column; run the spatial join first "
                           "(geo_lead.spatial_join.join_store).")
    pop = np.asarray(population, dtype=float)
    if len(pop) != len(neighborhoods):
        raise ValueError(f"population has {len(pop)} values for {len(neighborhoods)} neighborhoods.")
    in_window = window_mask(records, since, until)
    cols = [c for c in dict.fromkeys([*SCORE_MEMO_COLUMNS, indicator]) if c in records.columns]
    win = pd.DataFrame(records.loc[in_window.to_numpy(), cols])
    job = ScoreJob(indicator, area, weights, seed, n_boot, rule, years_covered(win, since, until, sampling))
    key = score_key(win, neighborhoods, pop, first_division, job)
    from geo_lead import result_cache

    hit = result_cache.read_object(SCORES_CACHE, key)
    if isinstance(hit, tuple) and len(hit) == 2 and len(hit[1]) == len(neighborhoods):
        table, order = hit  # kept without the units' geometry: it is the key's neighborhoods'
        return _with_geometry(table, neighborhoods, np.asarray(order, dtype=np.int64))
    out, order = _score_window(win, neighborhoods, pop, first_division, job)
    table = pd.DataFrame(out.drop(columns=out.geometry.name))
    table.attrs = dict(out.attrs)
    result_cache.write_object(SCORES_CACHE, key, (table, order.tolist()))
    return out


def _with_geometry(table: pd.DataFrame, neighborhoods: gpd.GeoDataFrame, order: np.ndarray) -> gpd.GeoDataFrame:
    """A cached score `table` (rows in `order` of the neighborhoods) with their geometry again."""
    out = gpd.GeoDataFrame(table, geometry=neighborhoods.geometry.to_numpy()[order], crs=neighborhoods.crs)
    out.attrs = table.attrs
    return out


#: `geo_lead.result_cache` kind of `score_neighborhoods`' tables.
SCORES_CACHE = "scores"
#: The record columns scoring reads (with the indicator flag): `SCORE_RECORD_COLUMNS` and those
#: `geo_lead.allocation` reads when present (frame weight, beat).
SCORE_MEMO_COLUMNS: tuple[str, ...] = ("occurred_at", "reported_at", "source", "source_file", "neighborhood",
                                       "boundary_units", "weight", "beat", "division")


@dataclass(frozen=True)
class ScoreJob:
    """`score_neighborhoods`' checked settings and the years its window covers."""

    indicator: str
    area: str
    weights: dict[str, float]
    seed: int
    n_boot: int
    rule: str
    years: float


def score_key(win: pd.DataFrame, neighborhoods: gpd.GeoDataFrame, pop: np.ndarray,
              first_division: gpd.GeoDataFrame | None, job: ScoreJob) -> str:
    """sha256 of what a score table depends on: the window's records (`SCORE_MEMO_COLUMNS`, index),
    the neighborhoods and First Division (every column, WKB), population, `job`, the package's
    code and the libraries' versions."""
    from geo_lead import result_cache

    fd = "none" if first_division is None else result_cache.frame_digest(first_division,
                                                                         list(first_division.columns))
    return result_cache.digest([
        SCORES_CACHE, result_cache.code_version(), result_cache.settings_version(),
        result_cache.library_versions("numpy", "pandas", "geopandas", "shapely", "pyproj"),
        result_cache.frame_digest(win, list(win.columns)),
        result_cache.frame_digest(neighborhoods, list(neighborhoods.columns)), fd,
        np.ascontiguousarray(pop, dtype=float).tobytes(), repr(job)])


def _score_window(win: pd.DataFrame, neighborhoods: gpd.GeoDataFrame, pop: np.ndarray,
                  first_division: gpd.GeoDataFrame | None, job: ScoreJob) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """`score_neighborhoods` on the records of its window (`win`), `job` checked; and the
    table's rows as positions in `neighborhoods`."""
    indicator, area, weights, seed, n_boot, rule, years = (job.indicator, job.area, job.weights, job.seed,
                                                           job.n_boot, job.rule, job.years)
    in_area = area_members(neighborhoods, area, first_division)
    names = neighborhoods["NH_NAME"].astype(str).to_numpy()
    is_named = neighborhoods["is_named"].astype(bool).to_numpy() if "is_named" in neighborhoods \
        else np.ones(len(names), dtype=bool)

    flag = win[indicator].fillna(False).astype(bool)
    sel = win[flag]
    pos = pd.Series(np.arange(len(names)), index=names)
    shares = allocation.unit_shares(sel, rule)
    counts = allocation.unit_counts(sel, shares, names)
    counts_shared = allocation.unit_counts(sel, shares, names, only_shared=True)
    placed = shares["row"].unique()

    area_sqmi = neighborhoods.geometry.to_crs(settings.CRS_PROJECTED).area.to_numpy() / settings.SQFT_PER_SQMI
    area_counts = np.where(in_area, counts, 0.0)
    area_total = area_counts.sum()
    ranked = in_area & is_named & (pop > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(in_area, area_counts / area_total if area_total else 0.0, np.nan)
        rate = np.where(pop > 0, counts / pop * 1000.0, np.nan)
        per_year = counts / years if years > 0 else np.full(len(names), np.nan)
    metrics = _metrics(counts, ranked, area_sqmi, pop)
    eb = metrics["eb_rate_per_1000"]
    score = np.full(len(names), np.nan)
    rank = np.full(len(names), np.nan)
    low = np.full(len(names), np.nan)
    high = np.full(len(names), np.nan)
    best = np.full(len(names), np.nan)
    worst = np.full(len(names), np.nan)
    classes = record_classes(sel, shares, len(names), pos, in_area)

    def interval(w: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        return bootstrap_rank_interval(area_counts, ranked, area_sqmi, pop, w, n_boot, seed, classes)

    if ranked.any():
        score[ranked] = composite_score({k: v[ranked] for k, v in metrics.items()}, weights)
        rank[ranked] = descending_ranks(score[ranked])
        low[ranked], high[ranked] = interval(weights)
        best, worst = boundary_sensitivity(sel, shares, pos, counts, ranked, area_sqmi, pop, weights)
    by_metric = _metric_ranks(names, ranked, metrics, interval)
    log.info("%s: %d records in window, %.1f weighted in %s (%d outside every unit or not geocoded; "
             "%d shared among units, rule %s)", indicator, len(sel), float(area_total), area,
             len(sel) - len(placed), int(shares.loc[shares["shared"], "row"].nunique()), rule)

    out = gpd.GeoDataFrame({
        "neighborhood": names, "NH_CODE": neighborhoods["NH_CODE"].to_numpy() if "NH_CODE" in neighborhoods else 0,
        "is_named": is_named, "in_area": in_area, "area_sqmi": area_sqmi,
        "count": counts, "count_shared": counts_shared, "share": share, "count_per_year": per_year,
        "density_per_sqmi": metrics["density_per_sqmi"], "population": pop, "rate_per_1000": rate,
        "eb_rate_per_1000": eb, "score": score, "rank": pd.array(rank, dtype="Int64"),
        "rank_low": pd.array(low, dtype="Int64"), "rank_high": pd.array(high, dtype="Int64"),
        "rank_boundary_best": pd.array(best, dtype="Int64"), "rank_boundary_worst": pd.array(worst, dtype="Int64"),
        "indicator": indicator,
    }, geometry=neighborhoods.geometry.to_numpy(), crs=neighborhoods.crs)
    out.attrs.update({"records_in_window": len(sel), "area_total": float(area_total),
                      "years_covered": years, "area": area, "weights": weights,
                      "metric_ranks": by_metric, "n_ranked": int(ranked.sum()), "boundary": rule,
                      "shared_records": int(shares.loc[shares["shared"], "row"].nunique())})
    order = np.lexsort((names, ~in_area, np.nan_to_num(rank, nan=np.inf)))
    return out.iloc[order].reset_index(drop=True), order


#: Single metrics ranked on their own (with bootstrap intervals) next to the composite.
RANKED_METRICS: tuple[str, ...] = ("count", "density_per_sqmi", "eb_rate_per_1000")


def _metrics(counts: np.ndarray, ranked: np.ndarray, area_sqmi: np.ndarray,
             pop: np.ndarray) -> dict[str, np.ndarray]:
    """count, density, EB rate (over the ranked units) and raw rate of weighted counts."""
    eb = np.full(len(counts), np.nan)
    if ranked.any():
        eb[ranked] = empirical_bayes(counts[ranked], pop[ranked]) * 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(pop > 0, counts / pop * 1000.0, np.nan)
    return {"count": counts, "density_per_sqmi": counts / area_sqmi, "eb_rate_per_1000": eb,
            "rate_per_1000": rate}


def boundary_sensitivity(records: pd.DataFrame, shares: pd.DataFrame, unit_index: pd.Series,
                         counts: np.ndarray, ranked: np.ndarray, area_sqmi: np.ndarray,
                         pop: np.ndarray, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Each ranked unit's composite rank when every record it shares goes wholly to it (best)
    and when each goes to the other units sharing it, in equal parts (worst); the other
    records keep their shares. Units sharing nothing keep their rank in both."""
    n = len(counts)
    best, worst = np.full(n, np.nan), np.full(n, np.nan)
    sh = shares[shares["shared"]].copy()
    sh["ix"] = unit_positions(sh["unit"], unit_index)
    sh = sh[sh["ix"].notna()]
    sh["ix"] = sh["ix"].astype(int)
    sh["w"] = allocation.record_weight(records).reindex(sh["row"]).to_numpy(float)
    sh["k"] = sh.groupby("row")["unit"].transform("size")

    def rank_of(c: np.ndarray, u: int) -> int:
        m = _metrics(c, ranked, area_sqmi, pop)
        sc = composite_score({k: v[ranked] for k, v in m.items()}, weights)
        return int(descending_ranks(sc)[int(np.flatnonzero(ranked).tolist().index(u))])

    row = sh["row"].to_numpy()
    ix = sh["ix"].to_numpy()
    w = sh["w"].to_numpy(float)
    share = sh["share"].to_numpy(float)
    parts = sh["k"].to_numpy(float)
    for u in np.flatnonzero(ranked).tolist():
        at_u = ix == u
        if not at_u.any():
            best[u] = worst[u] = rank_of(counts, u)
            continue
        # every part of the records u shares, in the table's order
        m = np.isin(row, row[at_u])
        m_row, m_ix, m_w, m_share = row[m], ix[m], w[m], share[m]
        delta = np.bincount(m_ix, weights=-(m_w * m_share), minlength=n)
        best_c = counts + delta
        _, first = np.unique(m_row, return_index=True)
        best_c[u] += m_w[np.sort(first)].sum()
        own, others = m_ix == u, m_ix != u
        # u's part of each record goes to the record's other units, equally.
        own_share = pd.Series(m_share[own], index=m_row[own]).reindex(m_row[others]).to_numpy()
        extra = m_w[others] * own_share / (parts[m][others] - 1)
        worst_c = counts.copy()
        worst_c[u] -= float((m_w[own] * m_share[own]).sum())
        worst_c += np.bincount(m_ix[others], weights=extra, minlength=n)
        best[u] = rank_of(np.maximum(best_c, 0.0), u)
        worst[u] = rank_of(np.maximum(worst_c, 0.0), u)
    return best, worst


def _metric_ranks(names: np.ndarray, ranked: np.ndarray, metrics: dict[str, np.ndarray],
                  interval: Callable[[dict[str, float]], tuple[np.ndarray, np.ndarray]],
                  ) -> dict[str, dict[str, list[int]]]:
    """Per ranked unit and metric of `RANKED_METRICS`: [rank, rank_low, rank_high];
    `interval(weights)` gives the ranked units' bootstrap (rank_low, rank_high)."""
    out: dict[str, dict[str, list[int]]] = {str(n): {} for n in names[ranked]}
    if not ranked.any():
        return out
    for metric in RANKED_METRICS:
        w = {metric: 1.0}
        r = descending_ranks(composite_score({metric: metrics[metric][ranked]}, w))
        lo, hi = interval(w)
        for name, a, b, c in zip(names[ranked], r, lo, hi, strict=True):
            out[str(name)][metric] = [int(a), int(b), int(c)]
    return out


def _check_weights(weights: dict[str, float] | None) -> dict[str, float]:
    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    known = ("count", "density_per_sqmi", "eb_rate_per_1000", "rate_per_1000")
    bad = [k for k in weights if k not in known]
    if bad or not weights:
        raise GeoLeadError(f"weights {bad or '{}'}: use one or more of {', '.join(known)}.")
    if any(float(w) < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise GeoLeadError(f"weights {weights}: must be non-negative and not all zero.")
    return {k: float(v) for k, v in weights.items()}


def parse_weights(text: str) -> dict[str, float]:
    """``"count=0.5,eb_rate_per_1000=0.5"`` -> dict (the CLI's --weights)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise GeoLeadError(f"--weights {text!r}: {part!r} is not NAME=NUMBER.") from None
        if not sep:
            raise GeoLeadError(f"--weights {text!r}: {part!r} is not NAME=NUMBER.")
    return _check_weights(out)


def scores_json(scores: pd.DataFrame, only_area: bool = True) -> list[dict[str, Any]]:
    """The `score --json` objects (`JSON_KEYS`) of the ranked units, best first."""
    rows = scores[scores["rank"].notna()] if only_area else scores
    out = []
    for rec in rows.to_dict("records"):
        item = {}
        for k in JSON_KEYS:
            v = rec[k]
            if k in ("rank", "rank_low", "rank_high", "rank_boundary_best", "rank_boundary_worst"):
                v = None if pd.isna(v) else int(v)
            elif k != "neighborhood":
                v = None if pd.isna(v) else round(float(v), 4)
            item[k] = v
        out.append(item)
    return out


# --- store edge -----------------------------------------------------------------------------
#: Record columns `score_store` reads (plus the indicator flag).
SCORE_RECORD_COLUMNS: tuple[str, ...] = ("occurred_at", "reported_at", "source", "source_file", "neighborhood",
                                         "boundary_units")


def score_store(store: Store, indicator: str = "lead_eligible", area: str = "first-division",  # noqa: PLR0913  public keyword API (pipeline, commands, tests); a ScoreParams dataclass is a follow-up
                since: Day = None, until: Day = None, weights: dict[str, float] | None = None,
                seed: int = settings.RANDOM_SEED, n_boot: int = settings.BOOTSTRAP_REPLICATES,
                neighborhoods: gpd.GeoDataFrame | None = None,
                population: pd.Series | None = None,
                first_division: gpd.GeoDataFrame | None = None,
                records: pd.DataFrame | None = None, boundary: str | None = None) -> gpd.GeoDataFrame:
    """Score from the store's (joined) records and write the ``scores`` layer.

    `records`: the store's records already read (with at least `SCORE_RECORD_COLUMNS` and
    `indicator`, e.g. once per `geo-lead run` for every stage: every record, or only the
    flagged ones); default: read them here, only the flagged ones when that is exact
    (`geo_lead.analysis_reads.read_analysis_records`).
    Their frame ``weight`` comes from the store's sampling declarations
    (`geo_lead.frames.attach_weights`) unless they carry one. `boundary`: ``split`` or
    ``first`` (default `settings.BOUNDARY_RULE`).

    Neighborhoods, population and the First Division default to the shipped files and
    `geo_lead.division_records.first_division_for_store` (an official division file when one was
    installed, otherwise derived from the store's records).
    """
    from geo_lead.analysis_reads import read_analysis_records
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.division_records import first_division_for_store
    from geo_lead.parameters import result_parameters, store_frames_fingerprint
    from geo_lead.population import population_of

    nh = load_neighborhoods() if neighborhoods is None else neighborhoods
    if population is None:
        population = population_of(nh).population
    cols = set(store.columns("records"))
    if "neighborhood" not in cols and "lon" not in cols:
        raise GeoLeadError(f"{store.path}: records have no coordinates yet; run "
                           f"`geo-lead geocode --store {store.path}` (or `geo-lead run`) first.")
    if "neighborhood" not in cols:
        raise GeoLeadError(f"{store.path}: records are not joined to neighborhoods yet; "
                           "run `geo-lead run` (or geocode, then join) first.")
    if indicator not in cols:
        raise GeoLeadError(f"{store.path}: indicator {indicator!r} is not a column of the records.")
    want = [c for c in (*SCORE_RECORD_COLUMNS, indicator) if c in cols]
    given = records
    sampling = frames.load_frames(store)
    # Only these columns, and only the flagged records when that is exact: every text column
    # of a million records would cost seconds and GBs.
    if records is None:
        records = read_analysis_records(store, want, indicator, sampling, require_point=False)
    else:
        records = pd.DataFrame(records[[c for c in (*want, "weight") if c in records]]).copy()
    records[indicator] = records[indicator].astype(bool)
    records["neighborhood"] = records["neighborhood"].fillna("")
    if "weight" not in records:
        frames.attach_weights(store, records, sampling)
    if area == "first-division" and first_division is None:
        first_division = first_division_for_store(store, nh, records=given)
    scores = score_neighborhoods(records, nh, population, indicator=indicator, area=area,
                                 since=since, until=until, weights=weights, seed=seed,
                                 n_boot=n_boot, first_division=first_division, boundary=boundary,
                                 sampling=sampling)
    store.replace_features("scores", _as_multipolygons(scores), "MULTIPOLYGON",
                           description=f"neighborhood scores of {indicator} ({area})")
    # the parameters travel with the layer, so pages never show scores of another run
    store.put_json("scores_parameters", result_parameters(
        indicator=indicator, area=area, since=since, until=until, boundary_rule=boundary,
        frames=store_frames_fingerprint(store)))
    return scores


def _as_multipolygons(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Promote Polygon to MultiPolygon so the layer has the one geometry type it declares."""
    import shapely

    geoms = [shapely.MultiPolygon([g]) if g is not None and g.geom_type == "Polygon" else g
             for g in gdf.geometry]
    return gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))


def write_csv(scores: pd.DataFrame, path: Path) -> None:
    """The scores without geometry, as CSV (ranked first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from geo_lead.outputs import write_csv

    write_csv(pd.DataFrame(scores.drop(columns=scores.geometry.name)), path, float_format="%.6g")


def format_table(scores: gpd.GeoDataFrame, joined: dict[str, int] | None = None) -> str:
    """The ranked table a planner reads (pilot neighborhoods marked with *)."""
    a = scores.attrs
    lines = []
    if joined is not None:
        lines.append(f"records: {joined['records']:,} = {joined['joined']:,} in a neighborhood + "
                     f"{joined['outside']:,} outside every neighborhood + {joined['not_geocoded']:,} not geocoded")
    ind = scores["indicator"].iloc[0] if len(scores) else "?"
    lines.append(f"indicator {ind}, area {a.get('area')}: {a.get('records_in_window', 0):,} records in the "
                 f"window, {a.get('area_total', 0):,.1f} weighted in the area; data cover "
                 f"{a.get('years_covered', 0):.2f} years")
    lines.append(f"count = records weighted by their sampling frame (1 / the year's declared fraction) and "
                 f"by their share of the unit (boundary rule {a.get('boundary', settings.BOUNDARY_RULE)}: "
                 f"{a.get('shared_records', 0):,} record(s) near a shared edge split equally); "
                 "per_year = count / years covered; rates use count and 2020 population; "
                 "bdry = rank if every shared record went to / away from the unit")
    head = (f"{'rank':>4} {'90% int':>7}  {'neighborhood':<28} {'count':>7} {'shared':>6} {'per_year':>9} "
            f"{'per_sqmi':>9} {'pop':>7} {'rate/1k':>8} {'EB/1k':>7} {'score':>6} {'bdry':>5}")
    lines += [head, "-" * len(head)]
    ranked = scores[scores["rank"].notna()]
    if not a.get("area_total", 0):
        lines.append("(no records of this indicator in the area and window: every rank is a tie)")
    for r in ranked.itertuples(index=False):
        star = "*" if r.neighborhood in settings.PILOT_NEIGHBORHOODS else " "
        shared = getattr(r, "count_shared", 0.0)
        bb, bw = getattr(r, "rank_boundary_best", pd.NA), getattr(r, "rank_boundary_worst", pd.NA)
        bdry = f"{int(bb)}-{int(bw)}" if not (pd.isna(bb) or pd.isna(bw)) else "-"
        lines.append(
            f"{int(r.rank):>4} {f'{int(r.rank_low)}-{int(r.rank_high)}':>7} {star}{r.neighborhood[:28]:<28} "
            f"{_num(r.count, 7, 1)} {_num(shared, 6, 1)} {_num(r.count_per_year, 9, 1)} {_num(r.density_per_sqmi, 9, 1)} "
            f"{_num(r.population, 7, 0)} {_num(r.rate_per_1000, 8, 2)} {_num(r.eb_rate_per_1000, 7, 2)} "
            f"{_num(r.score, 6, 3)} {bdry:>5}")
    unranked = scores[scores["in_area"] & scores["rank"].isna() & (scores["count"] > 0)]
    if len(unranked):
        lines.append("not ranked (remainder / unnamed pieces, or no residents): " + ", ".join(
            f"{n} ({c:.1f})" for n, c in zip(unranked["neighborhood"], unranked["count"], strict=True)))
    lines.append("* pilot zone neighborhood")
    by_metric = a.get("metric_ranks", {})
    labels = {"count": "count", "density_per_sqmi": "density", "eb_rate_per_1000": "EB rate"}
    for name in settings.PILOT_NEIGHBORHOODS:
        if name in by_metric and len(ranked):
            row = ranked[ranked["neighborhood"] == name].iloc[0]
            parts = [f"by {labels[m]} {v[0]} (90% {v[1]}-{v[2]})" for m, v in by_metric[name].items()]
            lines.append(f"{name}: of {a.get('n_ranked', len(ranked))}, " + ", ".join(parts)
                         + f", composite {int(row['rank'])} ({int(row['rank_low'])}-{int(row['rank_high'])})")
    return "\n".join(lines)


def _num(value: float, width: int, digits: int) -> str:
    if value != value:  # NaN
        return f"{'-':>{width}}"
    return f"{value:>{width},.{digits}f}"
