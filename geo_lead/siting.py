"""Pilot-zone selection: is Russell + Portland justified, and if not, which zone is?

Pure steps on GeoDataFrames (records as in `geo_lead.hotspots`), each returning a typed
result with ``to_dict()``; `evaluate_site` runs them in order and returns a `SiteResult`
(`site` returns its ``(site_zones layer, to_dict())``, the ``site --json`` object);
`site_store` is the store edge. Every step works on a date window too
(`SiteParams.window`, e.g. one calendar year).

1. `prepare` -- the candidate points (First Division by default), each record's frame
   weight x boundary share per unit (`unit_weights`, the one place records meet units),
   train/test periods (default calendar months 1-8 vs 9-12 of every year), months of data.
2. `ranking` -- the exact best contiguous zone of k units for k = 1..k_max
   (`geo_lead.zones_milp.best_zone`) and the pilot's rank among every contiguous zone of
   its size, by the objective on the training months.
3. `stability` -- bootstrap resamples of the records (top-set share and each zone's 90% rank
   interval) and calendar-year windows.
4. `holdout` -- the pilot's PAI rank among every zone of its size on the training and on
   the held-out months.
5. `run_checks` -- each check ``pass`` / ``fail`` / ``insufficient`` with its value,
   threshold, a one-line reason and the measure it uses: reach (weighted eligible
   records, favours large units) or concentration (PAI, fair to small ones); see
   `VERDICT_RULE`.
6. `decide` -- ``inconclusive`` when a check is insufficient (too few records, or rank
   intervals the data cannot separate), else ``revise`` when one fails, else ``justified``;
   the verdict sentence names the deciding check (`geo_lead.findings`).
7. `capacity` -- the smallest best zone whose expected participants over the program
   period reach the capacity.
8. `comparison` -- units outside the pilot zone and not adjacent to it, most similar in the
   train period on rate, density and population (nearest neighbours on z-scores).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_lead import frames, settings
from geo_lead.errors import GeoLeadError
from geo_lead.hotspots import grid_counts, indicator_points, make_grid, max_capture, pai, study_area
from geo_lead.zones_milp import (
    Adjacency,
    best_zone,
    connected_subsets,
    queen_adjacency,
    stored_queen_adjacency,
)

if TYPE_CHECKING:
    from scipy import sparse

    from geo_lead.progress import Progress
    from geo_lead.store import Store

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SiteParams:
    """Every number the siting answer depends on (defaults in `geo_lead.settings`)."""

    k: int | None = None  #: size of the best zone reported (default: the pilot's size)
    k_max: int = settings.SITE_K_MAX
    capacity: int = settings.PILOT_CAPACITY_PARTICIPANTS
    months: int = settings.PILOT_MONTHS
    objective: str = "records"  #: "records" or "rate" (EB-smoothed rate x population)
    take_up_rate: float = settings.SITE_TAKE_UP_RATE
    persons_per_record: float | None = None  #: None: distinct incidents / records, from data
    train: str | None = None  #: "YYYY-MM-DD:YYYY-MM-DD" (either end may be empty)
    test: str | None = None
    top_fraction: float = settings.SITE_TOP_FRACTION
    stability_min: float = settings.SITE_STABILITY_MIN
    pai_tolerance: float = settings.SITE_PAI_TOLERANCE
    replicates: int = settings.BOOTSTRAP_REPLICATES
    min_window_records: int = settings.SITE_MIN_WINDOW_RECORDS
    grid_cell_ft: float = 1000.0
    seed: int = settings.RANDOM_SEED
    window: str | None = None  #: "YYYY-MM-DD:YYYY-MM-DD": only records that occurred in it
    boundary: str = settings.BOUNDARY_RULE  #: "split" or "first" (`geo_lead.allocation`)


# --- periods -----------------------------------------------------------------------------
def _parse_range(text: str, what: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if ":" not in text:
        raise GeoLeadError(f"--{what} {text!r}: expected START:END dates, e.g. 2016-01-01:2016-08-31")
    lo, hi = (t.strip() for t in text.split(":", 1))
    try:
        start = pd.Timestamp(lo) if lo else None
        end = pd.Timestamp(hi) + pd.Timedelta(days=1) if hi else None  # END is inclusive
    except ValueError:
        raise GeoLeadError(f"--{what} {text!r}: not a date range START:END (YYYY-MM-DD)") from None
    return start, end


def _naive_times(occurred_at: pd.Series) -> pd.Series:
    """ISO texts as naive local timestamps (NaT when unreadable)."""
    when = pd.to_datetime(occurred_at, errors="coerce", format="ISO8601")
    if getattr(when.dt, "tz", None) is not None:
        when = when.dt.tz_localize(None)
    return when


def _range_mask(when: pd.Series, text: str, what: str) -> pd.Series:
    """Dated rows of `when` inside the START:END range `text` (END inclusive)."""
    start, end = _parse_range(text, what)
    keep = when.notna()
    if start is not None:
        keep &= when >= start
    if end is not None:
        keep &= when < end
    return keep


def split_periods(occurred_at: pd.Series, train: str | None = None,
                  test: str | None = None) -> tuple[pd.Series, pd.Series, dict[str, Any]]:
    """Boolean train/test masks; default months 1-8 vs 9-12 of each calendar year.

    With only `train` (or only `test`) given as START:END, the other period is every dated
    record outside it.

    Returns
    -------
    train_mask, test_mask, info
        ``info`` names the rule and counts train / test / neither / undated rows.
    """
    when = _naive_times(occurred_at)
    dated = when.notna()
    if train is None and test is None:
        tr = dated & (when.dt.month <= 8)
        te = dated & (when.dt.month >= 9)
        rule = "calendar months 1-8 (train) vs 9-12 (test) of every year"
    else:
        # one period given: the other is every dated record outside it
        if train is not None:
            tr = _range_mask(when, train, "train")
            te = _range_mask(when, test, "test") if test is not None else dated & ~tr
        elif test is not None:
            te = _range_mask(when, test, "test")
            tr = dated & ~te
        rule = f"train {train or 'every date outside test'}, test {test or 'every date outside train'}"
    info = {"rule": rule, "train": int(tr.sum()), "test": int(te.sum()),
            "neither": int((dated & ~tr & ~te).sum()), "undated": int((~dated).sum())}
    return tr, te, info


# --- zones --------------------------------------------------------------------------------
@dataclass
class UnitData:
    """Weighted counts and areas per candidate unit, plus the grid used for PEI."""

    names: list[str]
    area_sqft: np.ndarray
    all: np.ndarray
    train: np.ndarray
    test: np.ndarray
    grid_area_sqft: np.ndarray
    grid_train: np.ndarray
    grid_test: np.ndarray
    years: float = float("nan")  #: years of data the counts cover (reach per year)

    def zone(self, members: Sequence[str]) -> np.ndarray:
        return np.isin(self.names, list(members))


def zone_summary(members: Sequence[str], data: UnitData) -> dict[str, Any]:
    """Both measures of a zone: reach (weighted records, and per year of data) and
    concentration (PAI on all months, train and test; PEI), with its share and area."""
    m = data.zone(members)
    a, big_a = float(data.area_sqft[m].sum()), float(data.area_sqft.sum())
    n = float(data.all[m].sum())
    out: dict[str, Any] = {"neighborhoods": sorted(members), "k": len(members),
                           "area_sqmi": a / settings.SQFT_PER_SQMI,
                           "records": n,
                           "reach_per_year": n / data.years if data.years > 0 else float("nan"),
                           "share": float(n / data.all.sum()) if data.all.sum() else float("nan"),
                           "pai": pai(n, float(data.all.sum()), a, big_a)}
    for period, counts, cells in (("train", data.train, data.grid_train), ("test", data.test, data.grid_test)):
        n = float(counts[m].sum())
        out[f"records_{period}"] = n
        out[f"pai_{period}"] = pai(n, float(counts.sum()), a, big_a)
        best = max_capture(cells, data.grid_area_sqft, a)
        out[f"pei_{period}"] = n / best if best > 0 else float("nan")
    return out


def rank_of(target: float, totals: np.ndarray) -> int:
    """1 + number of zones with a strictly larger total (ties share the better rank)."""
    return int(1 + np.sum(totals > target + 1e-9))


# --- rates (for the rate objective and the comparison area) -------------------------------
def empirical_bayes_rate(events: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Global Empirical Bayes rates (`geo_lead.scoring.empirical_bayes`, phi clipped at 0);
    units without residents (b = 0) take the global rate theta instead of failing."""
    from geo_lead.scoring import empirical_bayes

    e, b = np.asarray(events, float), np.asarray(base, float)
    pos = b > 0
    out = np.full(len(e), e[pos].sum() / b[pos].sum() if pos.any() else np.nan)
    if pos.any():
        out[pos] = empirical_bayes(e[pos], b[pos])
    return out


# --- capacity ------------------------------------------------------------------------------
def months_covered(records: pd.DataFrame, sampling: frames.Frames | None = None) -> float:
    """Months the data cover: `geo_lead.frames.coverage` (the union of the files' report-date
    spans, never their sum) of the stored declarations `sampling`, else of the records' own
    files.

    Report dates, because LMPD extracts are cut by report date (a file reported over two weeks
    holds incidents that occurred all year).
    """
    months = frames.coverage_of(records, sampling).months
    if months <= 0:
        raise GeoLeadError("no record has a readable reported_at/occurred_at date; cannot estimate a monthly rate")
    return months


def expected_participants(records_in_zone: float, months_data: float, params: SiteParams,
                          persons_per_record: float) -> float:
    """Weighted eligible records per month x program months x persons/record x take-up."""
    return records_in_zone / months_data * params.months * persons_per_record * params.take_up_rate


# --- comparison area -----------------------------------------------------------------------
def comparison_area(features: pd.DataFrame, pilot: Sequence[str], adjacency: Adjacency,
                    n: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Units most similar to the pilot units, outside the pilot and not adjacent to it.

    Parameters
    ----------
    features
        Indexed by NH_NAME: numeric columns to match on (e.g. rate, density, population).
    pilot
        Pilot unit names. adjacency: queen contiguity over all units.
    n
        Number of comparison units (default: as many as pilot units).

    Returns
    -------
    names, balance
        Matched units (one per pilot unit, nearest neighbour on z-scores without
        replacement), and per feature the pilot, comparison and pool means with the
        standardised mean difference (pilot - comparison) / pooled sd. Reused across runs
        (`geo_lead.result_cache`, kind ``comparison_area``) when the features (values, index,
        columns), pilot, `n` and adjacency hash as before.
    """
    from geo_lead import result_cache

    key = result_cache.digest([
        COMPARISON_CACHE, result_cache.code_version(), result_cache.settings_version(), result_cache.library_versions("numpy", "pandas"),
        result_cache.frame_digest(features, list(features.columns)), json.dumps(list(map(str, features.columns))),
        json.dumps([list(map(str, pilot)), n]),
        json.dumps({str(k): sorted(map(str, v)) for k, v in adjacency.items()}, sort_keys=True)])
    hit = result_cache.read(COMPARISON_CACHE, key)
    if hit is not None:
        return list(hit["names"]), list(hit["balance"])
    names, balance = _comparison_area(features, pilot, adjacency, n)
    result_cache.write(COMPARISON_CACHE, key, {"names": names, "balance": balance})
    return names, balance


#: `geo_lead.result_cache` kind of `comparison_area`'s answers (names and balance: plain JSON).
COMPARISON_CACHE = "comparison_area"


def nearest_pairs(pool_z: np.ndarray, pilot_z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest pool rows of each pilot row, exact Euclidean distance.

    Parameters
    ----------
    pool_z, pilot_z
        Two-dimensional float arrays with the same number of columns (z-scores).
    k
        Neighbours per pilot row, 1 <= k <= len(pool_z).

    Returns
    -------
    dist, idx
        Arrays of shape (len(pilot_z), k): distances ascending, and the pool rows they belong to.
        A distance is the square root of the squared differences summed column by column in
        column order (what a KD-tree query computes, not the dot-product expansion), so equal
        points are at exactly 0. Equal distances keep pool order (a stable sort).

    Raises
    ------
    ValueError
        On arrays that are not two-dimensional, column counts that differ, or `k` out of range.
    """
    if pool_z.ndim != 2 or pilot_z.ndim != 2 or pool_z.shape[1] != pilot_z.shape[1]:
        raise ValueError(f"nearest_pairs needs two 2-D arrays with equal column counts, "
                         f"got shapes {pool_z.shape} and {pilot_z.shape}")
    if not 1 <= k <= len(pool_z):
        raise ValueError(f"nearest_pairs: k={k} is outside 1..{len(pool_z)} (the pool's rows)")
    d2 = np.zeros((len(pilot_z), len(pool_z)))
    for c in range(pool_z.shape[1]):
        d2 += (pilot_z[:, c, None] - pool_z[None, :, c]) ** 2
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(d2, idx, axis=1)), idx


def _comparison_area(features: pd.DataFrame, pilot: Sequence[str], adjacency: Adjacency,
                     n: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """`comparison_area` computed (no cache).

    Each pilot unit's candidates are its ``len(pilot) + 5`` nearest pool units (`nearest_pairs`);
    pairs are taken greedily by (distance, pilot position, unit name). A pilot unit is matched
    before more than ``len(pilot) - 1`` of its candidates can be taken, so the cut-off decides
    nothing but which of several units at exactly the same distance stay in the list: here the
    first in pool order, where a KD-tree keeps whichever its traversal meets first.
    """
    pilot = list(pilot)
    touching = set().union(*(adjacency.get(p, set()) for p in pilot)) if pilot else set()
    pool = [u for u in features.index if u not in pilot and u not in touching]
    if not pool:
        raise GeoLeadError("no neighborhood is outside the pilot zone and not adjacent to it")
    sd = features.std(ddof=0).replace(0, 1.0)
    z = (features - features.mean()) / sd
    dist, idx = nearest_pairs(z.loc[pool].to_numpy(float), z.loc[pilot].to_numpy(float),
                              min(len(pool), len(pilot) + 5))
    chosen: list[str] = []
    want = n or len(pilot)
    # Greedy matching without replacement: the closest (pilot, candidate) pairs first.
    pairs = sorted((float(d), p_i, pool[j]) for p_i, (drow, irow) in enumerate(zip(dist, idx, strict=True))
                   for d, j in zip(drow, irow, strict=True))
    matched_pilot: set[int] = set()
    for _d, p_i, cand in pairs:
        if len(chosen) >= want:
            break
        if p_i in matched_pilot or cand in chosen:
            continue
        matched_pilot.add(p_i)
        chosen.append(cand)
    balance = []
    for col in features.columns:
        a, b = features.loc[pilot, col], features.loc[chosen, col]
        pooled = math.sqrt((a.var(ddof=1 if len(a) > 1 else 0) + b.var(ddof=1 if len(b) > 1 else 0)) / 2)
        balance.append({"feature": col, "pilot_mean": float(a.mean()), "comparison_mean": float(b.mean()),
                        "pool_mean": float(features.loc[pool, col].mean()),
                        "std_mean_diff": float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0})
    return sorted(chosen), balance


# --- typed results --------------------------------------------------------------------------
#: Check statuses.
PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"
#: Verdicts.
JUSTIFIED, REVISE, INCONCLUSIVE = "justified", "revise", "inconclusive"
#: What each measure means (`SiteResult.measures`, every check names one).
MEASURES: dict[str, str] = {
    "reach": "weighted eligible records the zone holds (frame weight x boundary share), "
             "reported per year of data; favours large units",
    "concentration": "PAI = share of the candidate area's weighted records / share of its area "
                     "(Chainey et al. 2008); fair to small units",
    "rate": "expected records from the Empirical Bayes smoothed rate x population",
}


@dataclass(frozen=True)
class Check:
    """One check of the verdict: ``pass``, ``fail`` or ``insufficient`` (too little data).

    ``value`` is compared with ``threshold`` (``at_most`` for ranks, ``at_least`` for shares
    and ratios); ``measure`` is the key of `MEASURES` it ranks by; ``extra`` carries the
    numbers behind it (ranks, zones, intervals) for the findings.
    """

    name: str
    label: str
    status: str
    value: Any
    threshold: Any
    detail: str
    measure: str
    direction: str = "at_least"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "threshold": self.threshold,
                "detail": self.detail, "label": self.label, "measure": self.measure,
                "direction": self.direction, **dict(self.extra)}


@dataclass(frozen=True)
class Periods:
    """Train (choose) and test (evaluate) masks over the candidate points, and their counts."""

    train: np.ndarray
    test: np.ndarray
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.info)


@dataclass(frozen=True)
class WindowPoints:
    """`record_points` of the records in the window, and their `PointShares`."""

    points: gpd.GeoDataFrame
    shares: PointShares


@dataclass
class SiteInputs:
    """What every step shares: the candidate points and their per-unit weights.

    ``weights`` is the (points x candidate units) sparse matrix of frame weight x share
    (`unit_weights`); ``data`` the per-unit counts and areas; ``adj`` queen contiguity among
    the candidates, ``adj_all`` among every unit.
    """

    indicator: str
    pilot: list[str]
    cands: list[str]
    points: gpd.GeoDataFrame
    weights: sparse.csr_matrix  #: `unit_weights` of the points
    in_area: np.ndarray  #: per point, its share inside the candidate units (1 unless split)
    accounting: dict[str, int]
    data: UnitData
    periods: Periods
    adj: Adjacency
    adj_all: Adjacency
    proj: gpd.GeoDataFrame
    months_of_data: float
    window: str | None = None
    #: every flagged point of the window (not only the candidates') and its shares, for the
    #: comparison area (None: `comparison` computes them from the records)
    window_points: WindowPoints | None = None

    def records(self, mask: np.ndarray | None = None) -> float:
        """Records (not weighted by frame; a split record by its share inside) in `mask`."""
        return float(self.in_area.sum() if mask is None else self.in_area[np.asarray(mask, bool)].sum())

    def counts(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Weighted count per candidate unit of the points in `mask` (all when None)."""
        if mask is None:
            return np.asarray(self.weights.sum(axis=0)).ravel()
        return np.asarray(self.weights_t @ np.asarray(mask, float)).ravel()

    @functools.cached_property
    def weights_t(self) -> sparse.csc_matrix:
        """``weights.T``, made once (`counts` runs once per bootstrap replicate)."""
        return self.weights.T


@dataclass
class Ranking:
    """The pilot among every contiguous zone of its size, and the best zone of each size."""

    objective: str
    zones: list[tuple[str, ...]]
    membership: np.ndarray  #: units x zones, 0/1
    objective_train: np.ndarray  #: per zone, the objective on the training months
    pilot_index: int
    pilot_rank: int
    pilot_rank_by_pai: int
    top_n: int
    best_by_k: dict[int, list[str]]
    zones_by_k: list[dict[str, Any]]
    pilot: dict[str, Any]
    best: dict[str, Any]
    best_same: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"pilot_rank": self.pilot_rank, "n_candidate_zones": len(self.zones), "top_n": self.top_n,
                "pilot_rank_by_pai": self.pilot_rank_by_pai, "objective": self.objective}


@dataclass
class Stability:
    """Bootstrap resamples and calendar-year windows (both by reach)."""

    top_n: int
    replicates: int
    seed: int
    bootstrap_top_share: float
    windows: list[dict[str, Any]]
    min_window_records: int
    rank_low: np.ndarray  #: per zone, 5% quantile of the bootstrap rank
    rank_high: np.ndarray  #: per zone, 95% quantile
    rank_all: np.ndarray  #: per zone, the rank on all the records

    @property
    def sufficient_windows(self) -> list[dict[str, Any]]:
        return [w for w in self.windows if w["sufficient"]]

    @property
    def window_top_share(self) -> float | None:
        ok = self.sufficient_windows
        return sum(bool(w["in_top"]) for w in ok) / len(ok) if ok else None

    def to_dict(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "replicates": self.replicates, "seed": self.seed,
                "bootstrap_top_share": self.bootstrap_top_share,
                "windows": [w for w in self.windows if w["sufficient"]],
                "all_windows": self.windows, "min_window_records": self.min_window_records,
                "sufficient_windows": len(self.sufficient_windows),
                "window_top_share": self.window_top_share,
                "rank_interval": f"{RANK_QUANTILES[0]:.0%}-{RANK_QUANTILES[1]:.0%} quantiles of the bootstrap rank"}


@dataclass
class Holdout:
    """The pilot ranked among every zone of its size by concentration (PAI), on the training
    and on the held-out months."""

    n_zones: int
    records_test: float  #: records in the held-out months (a split record by its share inside)
    pilot_rank_train: int
    pilot_rank_test: int
    pilot_pai_train: float
    pilot_pai_test: float
    best_train: list[str]
    best_train_pai: float
    best_test: list[str]
    best_test_pai: float
    pilot_rank_test_by_reach: int

    @property
    def ratio(self) -> float:
        return self.pilot_pai_test / self.best_test_pai if self.best_test_pai > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "measure": "concentration"}


@dataclass
class Verdict:
    """``justified``, ``revise`` or ``inconclusive``, the check that decides it and why."""

    verdict: str
    deciding_check: str | None
    sentence: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "deciding_check": self.deciding_check,
                "verdict_sentence": self.sentence, "verdict_rule": self.rule}


@dataclass
class SiteResult:
    """Everything `site` answers; ``to_dict()`` is the ``geo-lead site --json`` object."""

    inputs: SiteInputs
    params: SiteParams
    ranking: Ranking
    stability: Stability
    holdout: Holdout
    checks: list[Check]
    verdict: Verdict
    capacity: dict[str, Any]
    comparison: dict[str, Any]
    zones: gpd.GeoDataFrame  #: the ``site_zones`` layer (not in `to_dict`)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        inp, rk, st = self.inputs, self.ranking, self.stability
        pz = rk.pilot_index
        pilot = {**rk.pilot, "rank_train": rk.pilot_rank, "rank_train_by_pai": rk.pilot_rank_by_pai,
                 "rank_all": int(st.rank_all[pz]), "rank_low": int(st.rank_low[pz]),
                 "rank_high": int(st.rank_high[pz])}
        return {
            "indicator": inp.indicator, "candidates": inp.cands, "n_candidates": len(inp.cands),
            "window": inp.window, "records": inp.accounting, "periods": inp.periods.to_dict(),
            "objective": rk.objective, "measures": measures_statement(rk.objective),
            "pilot_zone": pilot, "best_zone": rk.best, "best_zone_same_size": rk.best_same,
            "pilot_rank": rk.pilot_rank, "n_candidate_zones": len(rk.zones), "zone_size": len(inp.pilot),
            "stability": st.to_dict(), "holdout": self.holdout.to_dict(),
            **self.verdict.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            # compatible view of the checks: True pass, False fail, None insufficient
            "verdict_checks": {c.name: {PASS: True, FAIL: False}.get(c.status) for c in self.checks},
            "zones_same_size": zone_table(self),
            "zones_by_k": rk.zones_by_k, "capacity_zone": self.capacity,
            "comparison_area": self.comparison, "parameters": asdict(self.params),
        }


#: Bootstrap rank interval (a 90% interval, as `geo_lead.scoring`).
RANK_QUANTILES: tuple[float, float] = (0.05, 0.95)
#: Zones of the pilot's size listed in ``zones_same_size`` (best first; the pilot always).
ZONE_TABLE_MAX = 200

VERDICT_RULE = (
    "checks in order: (1) top_on_train: the pilot is in the top set (the best max(1, ceil({top:.0%} x n)) "
    "of the n contiguous zones of its size) by the objective on the training months; (2) separation: "
    "the pilot's {lo:.0%}-{hi:.0%} bootstrap rank interval (by reach) is clear of the best alternative "
    "zone's; (3) bootstrap: it stays in the top set in at least {stab:.0%} of bootstrap resamples; "
    "(4) windows: it stays in the top set in at least {stab:.0%} of the calendar-year windows with at "
    "least {minw} records (two such windows needed); (5) holdout: on the held-out months its PAI is at least "
    "{tol:.0%} of the best PAI of any zone of its size. A check with fewer than {minw} records "
    "(or a rank interval overlapping the alternative's) is insufficient. Verdict: inconclusive when a "
    "check is insufficient, else revise when one fails, else justified"
)


def measures_statement(objective: str) -> dict[str, Any]:
    """The objective and the measure each check uses (the ``measures`` key)."""
    obj = "reach" if objective == "records" else "rate"
    return {"objective": obj, "definitions": {k: v for k, v in MEASURES.items() if k in ("reach", "concentration", obj)},
            "checks": {"top_on_train": obj, "separation": "reach", "bootstrap": "reach",
                       "windows": "reach", "holdout": "concentration"}}


# --- steps ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointShares:
    """The points' shares in units (`allocation.unit_shares`, one long table) and frame weights:
    computed once, made into a (points x units) matrix for any list of units (`matrix`)."""

    n_points: int
    shares: pd.DataFrame  #: `allocation.SHARE_COLUMNS`; ``row`` is the point's position
    frame_weight: np.ndarray  #: per point, `allocation.record_weight`

    def matrix(self, units: Sequence[str], frame_weights: bool = True) -> sparse.csr_matrix:
        """`unit_weights` of the points for `units`."""
        from scipy import sparse

        col = pd.Series(np.arange(len(units)), index=pd.Index(list(units)))
        ix = self.shares["unit"].map(col)
        ok = ix.notna().to_numpy()
        rows = self.shares["row"].to_numpy()[ok].astype(int)
        vals = self.shares["share"].to_numpy(float)[ok]
        if frame_weights:
            vals = vals * self.frame_weight[rows]
        return sparse.csr_matrix((vals, (rows, ix[ok].astype(int).to_numpy())), shape=(self.n_points, len(units)))


def point_shares(points: pd.DataFrame, rule: str | None = None) -> PointShares:
    """The `PointShares` of `points` under `rule` (see `unit_weights`)."""
    from geo_lead.allocation import record_weight, unit_shares

    frame = pd.DataFrame(points.drop(columns=points.geometry.name) if hasattr(points, "geometry") else points)
    frame = frame.reset_index(drop=True)
    shares = unit_shares(frame, "first" if rule is None and "boundary_units" not in frame else
                         (rule or settings.BOUNDARY_RULE))
    return PointShares(len(frame), shares, record_weight(frame).to_numpy(float))


def unit_weights(points: pd.DataFrame, units: Sequence[str], rule: str | None = None,
                 frame_weights: bool = True) -> sparse.csr_matrix:
    """The (points x units) sparse matrix of each record's frame weight x share in each unit.

    The one place siting attributes records to units: `geo_lead.allocation.unit_shares`
    (``split`` shares a record near an edge of two or more units equally; ``first`` gives
    it whole to its ``neighborhood``), times the record's ``weight`` (1 when absent; shares
    alone with `frame_weights` False). Units outside `units` are dropped (a record shared
    with one keeps only its share here). `point_shares(points, rule).matrix(units)` is the
    same matrix, for points matched to several lists of units.
    """
    return point_shares(points, rule).matrix(units, frame_weights)


def _window_days(window: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """`window` (START:END, END inclusive) as the first and last day `frames.coverage` clips to."""
    if not window:
        return None, None
    lo, hi = _parse_range(window, "window")
    return lo, (hi - pd.Timedelta(days=1) if hi is not None else None)


def sampling_part(sampling: frames.Frames | None, window: str | None) -> str:
    """What `evaluate_site` reads of the declarations `sampling` (for `site_key`): only the
    coverage `_months_of_data` takes from them -- the union of the files' report-date spans,
    clipped to `window` -- never their fractions (the records carry their ``weight``), names
    or hashes. ``"records"`` when the records' own spans are used (the records are hashed)."""
    if sampling is None or not sampling.files:
        return "records"
    try:
        since, until = _window_days(window)
    except GeoLeadError:
        return "bad window"  # the window is in the key (params); evaluate_site raises
    return repr(frames.coverage(sampling, since, until))


def _months_of_data(records: pd.DataFrame, window: str | None = None,
                    sampling: frames.Frames | None = None) -> float:
    """Months of time the data cover (`months_covered`: the union of the files' report-date
    spans, clipped to `window`): the denominator of reach per year and of capacity."""
    since, until = _window_days(window)
    months = frames.coverage_of(records, sampling, since, until).months
    if months <= 0:
        raise GeoLeadError("no record has a readable reported_at/occurred_at date; cannot estimate a monthly rate")
    return months


def in_window(occurred_at: pd.Series, window: str | None) -> pd.Series:
    """Rows whose ``occurred_at`` lies in `window` (START:END, END inclusive; None: all rows)."""
    if window is None:
        return pd.Series(True, index=occurred_at.index)
    return _range_mask(_naive_times(occurred_at), window, "window")


def year_windows(occurred_at: pd.Series) -> list[str]:
    """One `SiteParams.window` per calendar year the dates fall in (``2016-01-01:2016-12-31``),
    in order: the windows `evaluate_site` takes to answer year by year."""
    when = pd.to_datetime(occurred_at, errors="coerce", format="ISO8601")
    years = sorted({int(y) for y in when.dt.year.dropna().unique()})
    return [f"{y}-01-01:{y}-12-31" for y in years]


def record_points(records: gpd.GeoDataFrame, indicator: str) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """`indicator_points` with one row per record (its shares come from `unit_weights`)."""
    points, accounting = indicator_points(records, indicator, "first")
    return points.reset_index(drop=True), accounting


def prepare(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, candidates: Sequence[str],
            pilot: Sequence[str], indicator: str, params: SiteParams,
            adjacency: Adjacency | None = None, sampling: frames.Frames | None = None) -> SiteInputs:
    """Step 1: the candidate points (in `params.window`), their unit weights, periods and counts.

    `sampling`: the store's declarations (`geo_lead.frames.load_frames`) for the months of
    data; None: the records' own files."""
    p = params
    pilot = sorted({s.upper() for s in pilot})
    missing = [u for u in pilot if u not in set(neighborhoods["NH_NAME"])]
    if missing:
        raise GeoLeadError(f"pilot neighborhoods {missing} are not in the neighborhoods file")
    cands = sorted(set(candidates) | set(pilot))
    if p.window is not None:
        records = records[in_window(records["occurred_at"], p.window).to_numpy()]
    points, accounting = record_points(records, indicator)
    shares = point_shares(points, p.boundary)
    m_all = shares.matrix(cands)
    share_in = np.asarray(shares.matrix(cands, frame_weights=False).sum(axis=1)).ravel()
    in_cands = share_in > 0
    accounting["outside_candidates"] = int((~in_cands).sum())
    accounting["in_candidates"] = int(in_cands.sum())
    pts = points[in_cands].reset_index(drop=True)
    weights = m_all[np.flatnonzero(in_cands)]
    tr, te, period_info = split_periods(pts["occurred_at"], p.train, p.test)
    if tr.sum() == 0 or te.sum() == 0:
        raise GeoLeadError(f"the train or test period holds no {indicator} record in the candidate area "
                           f"({period_info['rule']}: train {period_info['train']}, test {period_info['test']}, "
                           f"in neither {period_info['neither']}, undated {period_info['undated']}); "
                           "choose --train/--test ranges that hold data")
    periods = Periods(tr.to_numpy(), te.to_numpy(), period_info)
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME")
    grid = make_grid(study_area(neighborhoods, cands), p.grid_cell_ft)
    months = _months_of_data(records, p.window, sampling)

    def per_unit(mask: np.ndarray) -> np.ndarray:
        return np.asarray(weights.T @ mask.astype(float)).ravel()

    # The grid (PEI's best capture) counts each record by its weight in the candidates (frame
    # weight x its share there), as the zones do: the whole candidate area captures all of it.
    on_grid = pts.assign(weight=np.asarray(weights.sum(axis=1)).ravel())
    data = UnitData(cands, proj.loc[cands].geometry.area.to_numpy(), per_unit(np.ones(len(pts), bool)),
                    per_unit(periods.train), per_unit(periods.test), grid["area_sqft"].to_numpy(),
                    grid_counts(on_grid[periods.train], grid, p.grid_cell_ft),
                    grid_counts(on_grid[periods.test], grid, p.grid_cell_ft), years=months / 12.0)
    adj_all = queen_adjacency(neighborhoods) if adjacency is None else adjacency
    adj = {u: {v for v in adj_all.get(u, set()) if v in cands} for u in cands}
    return SiteInputs(indicator, pilot, cands, pts, weights, share_in[in_cands], accounting, data, periods,
                      adj, adj_all, proj, months, p.window, WindowPoints(points, shares))


def objective_weights(inp: SiteInputs, params: SiteParams, population: pd.Series | None) -> dict[str, float]:
    """Per candidate unit, the objective on the training months (records or rate)."""
    if params.objective == "records":
        return dict(zip(inp.cands, inp.data.train, strict=True))
    if params.objective == "rate":
        if population is None:
            raise GeoLeadError("--objective rate needs population per neighborhood (tracts file missing?)")
        pop = population.reindex(inp.cands).fillna(0.0).to_numpy()
        eb = empirical_bayes_rate(inp.data.train, pop)
        return dict(zip(inp.cands, eb * pop, strict=True))
    raise GeoLeadError(f"unknown --objective {params.objective!r}; use records or rate")


def ranking(inp: SiteInputs, params: SiteParams, population: pd.Series | None = None) -> Ranking:
    """Step 2: best zone of each size (MILP), and the pilot among every zone of its size."""
    p, data = params, inp.data
    objective = objective_weights(inp, p, population)
    size = len(inp.pilot)
    k = p.k or size
    k_max = min(max(p.k_max, k), len(inp.cands))
    zones_by_k, best_by_k = [], {}
    for kk in range(1, k_max + 1):
        try:
            names, _total = best_zone(objective, inp.adj, kk)
        except GeoLeadError as exc:
            log.info("k=%d: %s", kk, exc)
            continue
        best_by_k[kk] = names
        zones_by_k.append(zone_summary(names, data))
    if k not in best_by_k:
        raise GeoLeadError(f"no contiguous zone of {k} candidate neighborhoods exists")
    zones = connected_subsets(inp.adj, size)
    pilot_key = tuple(inp.pilot)
    if pilot_key not in zones:
        raise GeoLeadError(f"the pilot zone {inp.pilot} is not contiguous under queen contiguity")
    membership = np.array([[u in z for z in zones] for u in inp.cands], dtype=float)
    pz = zones.index(pilot_key)
    totals = np.array([objective[u] for u in inp.cands]) @ membership
    top_n = max(1, math.ceil(p.top_fraction * len(zones)))
    pai_train = (data.train @ membership) / (data.area_sqft @ membership)
    pilot_sum = zone_summary(inp.pilot, data)
    best_same = zone_summary(best_by_k[size], data) if size in best_by_k else pilot_sum
    return Ranking(p.objective, zones, membership, totals, pz, rank_of(totals[pz], totals),
                   rank_of(pai_train[pz], pai_train), top_n, best_by_k, zones_by_k, pilot_sum,
                   zone_summary(best_by_k[k], data), best_same)


def _ranks(totals: np.ndarray) -> np.ndarray:
    """`rank_of` for every zone at once: 1 + number of zones strictly larger."""
    order = np.sort(totals)
    return 1 + len(totals) - np.searchsorted(order, totals + 1e-9, side="right")


def stability(inp: SiteInputs, rk: Ranking, params: SiteParams,
              progress: Progress | None = None) -> Stability:
    """Step 3: bootstrap resamples of the records (top-set share, rank intervals of every zone)
    and calendar-year windows, all by reach."""
    p = params
    rng = np.random.default_rng(p.seed)
    n = len(inp.points)
    pz, top_n = rk.pilot_index, rk.top_n
    ranks = np.empty((p.replicates, len(rk.zones)), dtype=np.int64)
    for i in range(p.replicates):
        mult = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        ranks[i] = _ranks(inp.counts(mult) @ rk.membership)
        if progress is not None:
            progress.update()
    if p.replicates:
        low = np.quantile(ranks, RANK_QUANTILES[0], axis=0, method="lower").astype(int)
        high = np.quantile(ranks, RANK_QUANTILES[1], axis=0, method="higher").astype(int)
        top_share = float(np.mean(ranks[:, pz] <= top_n))
    else:
        low = high = _ranks(inp.data.all @ rk.membership)
        top_share = float("nan")
    years = pd.to_datetime(inp.points["occurred_at"], errors="coerce", format="ISO8601").dt.year
    windows = []
    for year in sorted(years.dropna().unique()):
        mask = (years == year).to_numpy()
        tot = inp.counts(mask) @ rk.membership
        r = rank_of(tot[pz], tot)
        n_rec = inp.records(mask)
        windows.append({"window": str(int(year)), "records": round(n_rec, 1), "pilot_rank": r,
                        "in_top": bool(r <= top_n), "sufficient": bool(n_rec >= p.min_window_records - 1e-9)})
    return Stability(top_n, p.replicates, p.seed, top_share, windows, p.min_window_records,
                     low, high, _ranks(inp.data.all @ rk.membership))


def holdout(inp: SiteInputs, rk: Ranking) -> Holdout:
    """Step 4: the pilot's PAI rank among every zone of its size, training and held-out months."""
    data, mem = inp.data, rk.membership
    area = data.area_sqft @ mem
    total_area = float(data.area_sqft.sum())

    def pais(counts: np.ndarray) -> np.ndarray:
        n_total = float(counts.sum())
        if n_total <= 0:
            return np.full(mem.shape[1], np.nan)
        return ((counts @ mem) / n_total) / (area / total_area)

    tr, te = pais(data.train), pais(data.test)
    pz = rk.pilot_index
    reach_te = data.test @ mem
    bt, bte = int(np.nanargmax(tr)), int(np.nanargmax(te))
    return Holdout(len(rk.zones), round(inp.records(inp.periods.test), 1), rank_of(tr[pz], tr), rank_of(te[pz], te),
                   float(tr[pz]), float(te[pz]), list(rk.zones[bt]), float(tr[bt]), list(rk.zones[bte]),
                   float(te[bte]), rank_of(reach_te[pz], reach_te))


def _zone_name(names: Sequence[str]) -> str:
    return " + ".join(n.title() for n in names)


def run_checks(inp: SiteInputs, rk: Ranking, st: Stability, ho: Holdout, params: SiteParams) -> list[Check]:
    """Step 5: every check with its status, value, threshold and a one-line reason."""
    p, minw = params, params.min_window_records
    pilot = _zone_name(inp.pilot)
    n_z, obj = len(rk.zones), "reach" if rk.objective == "records" else "rate"
    n_train, n_all = round(inp.records(inp.periods.train), 1), round(inp.records(), 1)
    checks = []

    status = INSUFFICIENT if n_train < minw else (PASS if rk.pilot_rank <= rk.top_n else FAIL)
    checks.append(Check(
        "top_on_train", "training rank", status, rk.pilot_rank, rk.top_n,
        (f"only {_rec(n_train)} records in the training months ({minw} needed); there {pilot} ranks "
         f"{rk.pilot_rank} of {n_z}" if status == INSUFFICIENT else
         f"{pilot} ranks {rk.pilot_rank} of {n_z} contiguous zones of its size by {obj} on the training "
         f"months (top set: the best {rk.top_n})"), obj, "at_most",
        {"n_zones": n_z, "records": n_train}))

    # separation: the pilot against the best other zone, by the bootstrap rank intervals
    pz = rk.pilot_index
    order = np.argsort(st.rank_all, kind="stable")
    alt = next(int(i) for i in order if int(i) != pz) if n_z > 1 else pz
    p_lo, p_hi = int(st.rank_low[pz]), int(st.rank_high[pz])
    a_lo, a_hi = int(st.rank_low[alt]), int(st.rank_high[alt])
    alt_name = _zone_name(rk.zones[alt])
    if n_z < 2:
        status, why = PASS, f"{pilot} is the only contiguous zone of its size"
    elif n_all < minw:
        status, why = INSUFFICIENT, f"only {_rec(n_all)} records in the candidate area ({minw} needed)"
    elif p_hi < a_lo:
        status, why = PASS, (f"{pilot}'s {_pct()} rank interval {p_lo}-{p_hi} is clear of the next "
                             f"best zone, {alt_name} ({a_lo}-{a_hi})")
    elif a_hi < p_lo:
        status, why = FAIL, (f"{alt_name}'s {_pct()} rank interval {a_lo}-{a_hi} is clear ahead of "
                             f"{pilot}'s ({p_lo}-{p_hi})")
    else:
        status, why = INSUFFICIENT, (f"{pilot}'s {_pct()} rank interval is {p_lo}-{p_hi} and {alt_name}'s "
                                     f"{a_lo}-{a_hi}: the data do not separate them")
    checks.append(Check(
        "separation", "rank separation", status, f"{p_lo}-{p_hi}",
        f"clear of {a_lo}-{a_hi}", why, "reach", "disjoint",
        {"pilot_interval": [p_lo, p_hi], "alternative": list(rk.zones[alt]), "alternative_interval": [a_lo, a_hi],
         "pilot_rank_all": int(st.rank_all[pz]), "alternative_rank_all": int(st.rank_all[alt])}))

    share = st.bootstrap_top_share
    status = INSUFFICIENT if n_all < minw or not st.replicates else (PASS if share >= p.stability_min else FAIL)
    checks.append(Check(
        "bootstrap", "bootstrap stability", status, share, p.stability_min,
        (f"only {_rec(n_all)} records in the candidate area ({minw} needed)" if n_all < minw else
         f"{pilot} is in the top {rk.top_n} in {share:.0%} of {st.replicates} bootstrap resamples of the records"),
        "reach", "at_least", {"replicates": st.replicates, "top_n": rk.top_n}))

    ok = st.sufficient_windows
    short = [w for w in st.windows if not w["sufficient"]]
    listing = ", ".join(f"{w['window']}: {_rec(w['records'])}" for w in st.windows) or "none"
    if len(ok) < 2:
        status = INSUFFICIENT
        why = (f"{len(ok)} of {len(st.windows)} calendar years hold the {minw} records a window needs "
               f"(records per year: {listing}); two are needed")
        value: Any = None
    else:
        value = st.window_top_share
        status = PASS if value >= p.stability_min else FAIL
        why = (f"{pilot} is in the top {rk.top_n} in {sum(bool(w['in_top']) for w in ok)} of {len(ok)} "
               f"calendar years with {minw}+ records" + (f" ({len(short)} more too small)" if short else ""))
    checks.append(Check("windows", "yearly windows", status, value, p.stability_min, why, "reach", "at_least",
                        {"windows": len(st.windows), "sufficient_windows": len(ok),
                         "min_window_records": minw}))

    tol = 1 - p.pai_tolerance
    ranked = (f"{pilot}'s PAI {ho.pilot_pai_test:.2f} ranks {ho.pilot_rank_test} of {ho.n_zones}; the best "
              f"is {_zone_name(ho.best_test)} at {ho.best_test_pai:.2f}")
    if ho.records_test < minw:
        status = INSUFFICIENT
        why = f"only {_rec(ho.records_test)} records in the held-out months ({minw} needed); there {ranked}"
    else:
        status = PASS if ho.ratio >= tol else FAIL
        why = f"on the held-out months {ranked}"
    checks.append(Check("holdout", "holdout", status, ho.ratio, tol, why, "concentration", "at_least",
                        {"pilot_rank_test": ho.pilot_rank_test, "pilot_rank_train": ho.pilot_rank_train,
                         "n_zones": ho.n_zones, "best_test": ho.best_test, "best_test_pai": ho.best_test_pai,
                         "pilot_pai_test": ho.pilot_pai_test, "records_test": ho.records_test}))
    return checks


def _rec(n: float) -> str:
    """A record count as text: whole numbers without decimals (split records make halves)."""
    return f"{n:,.0f}" if abs(n - round(n)) < 0.05 else f"{n:,.1f}"


def _pct() -> str:
    return f"{RANK_QUANTILES[1] - RANK_QUANTILES[0]:.0%}"


def decide(checks: Sequence[Check], params: SiteParams) -> Verdict:
    """Step 6: inconclusive when a check is insufficient, revise when one fails, else justified.

    The deciding check: the first insufficient one, else the first failing one, else the
    passing check closest to its threshold (`findings.weakest_check`).
    """
    from geo_lead import findings

    dicts = [c.to_dict() for c in checks]
    deciding: str | None
    insufficient = [c for c in checks if c.status == INSUFFICIENT]
    failed = [c for c in checks if c.status == FAIL]
    if insufficient:
        verdict, deciding = INCONCLUSIVE, insufficient[0].name
    elif failed:
        verdict, deciding = REVISE, failed[0].name
    else:
        verdict, deciding = JUSTIFIED, findings.weakest_check(dicts)  # None: no check passed
    rule = VERDICT_RULE.format(top=params.top_fraction, stab=params.stability_min, tol=1 - params.pai_tolerance,
                               minw=params.min_window_records, lo=RANK_QUANTILES[0], hi=RANK_QUANTILES[1])
    return Verdict(verdict, deciding, findings.verdict_sentence(verdict, deciding, dicts), rule)


def capacity(inp: SiteInputs, params: SiteParams) -> dict[str, Any]:
    """Step 7: the smallest best zone whose expected participants fill the capacity."""
    p, data = params, inp.data
    ppr = p.persons_per_record
    if ppr is None:
        pts = inp.points
        key = pts.get("incident_number", pd.Series(range(len(pts)), index=pts.index)).astype(str)
        ppr = key.nunique() / len(pts) if len(pts) else 1.0
    expected_unit = {u: expected_participants(c, inp.months_of_data, p, ppr)
                     for u, c in zip(inp.cands, data.all, strict=True)}
    out: dict[str, Any] = {"neighborhoods": [], "expected_participants": None, "reached": False}
    for kk in range(1, min(len(inp.cands), settings.SITE_CAPACITY_K_MAX) + 1):
        try:
            names, total = best_zone(expected_unit, inp.adj, kk)
        except GeoLeadError:
            continue
        out = {**zone_summary(names, data), "expected_participants": total, "reached": total >= p.capacity}
        if total >= p.capacity:
            break
    out["parameters"] = {
        "capacity": p.capacity, "months": p.months, "take_up_rate": p.take_up_rate,
        "persons_per_record": ppr, "months_of_data": inp.months_of_data,
        "sample_scaling": "each record weighs its frame weight (1 / the declared sample fraction of its "
                          "source and year, geo_lead.frames) x its boundary share (geo_lead.allocation)",
        "sources": settings.SITE_PARAMETER_SOURCES}
    return out


def comparison(inp: SiteInputs, records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame,
               params: SiteParams, population: pd.Series | None = None) -> dict[str, Any]:
    """Step 8: the comparison area, on every named unit city-wide, training-period features."""
    p = params
    all_named = neighborhoods[neighborhoods["is_named"].astype(bool)]["NH_NAME"].tolist()
    if inp.window_points is not None:
        points, m = inp.window_points.points, inp.window_points.shares.matrix(all_named)
    else:
        if p.window is not None:
            records = records[in_window(records["occurred_at"], p.window).to_numpy()]
        points, _ = record_points(records, inp.indicator)
        m = unit_weights(points, all_named, p.boundary)
    tr, _te, _ = split_periods(points["occurred_at"], p.train, p.test)
    cnt = pd.Series(np.asarray(m.T @ tr.to_numpy(float)).ravel(), index=all_named)
    area_sqmi = inp.proj.loc[all_named].geometry.area / settings.SQFT_PER_SQMI
    feats = pd.DataFrame({"density_per_sqmi": cnt / area_sqmi}, index=all_named)
    pilot = inp.pilot
    if population is not None:
        pop = population.reindex(all_named).fillna(0.0)
        feats["eb_rate_per_1000"] = empirical_bayes_rate(cnt.to_numpy(), pop.to_numpy()) * 1000
        feats["population"] = pop
        feats = feats[pop > 0] if (pop.loc[pilot] > 0).all() else feats
    names, balance = comparison_area(feats, pilot, inp.adj_all)
    max_smd = max(abs(b["std_mean_diff"]) for b in balance)
    return {"neighborhoods": names, "balance": balance, "max_abs_std_mean_diff": max_smd,
            "balanced": bool(max_smd <= settings.SITE_BALANCE_MAX_SMD),
            "balance_rule": f"every |SMD| <= {settings.SITE_BALANCE_MAX_SMD:g}",
            "rule": "outside the pilot, not queen-adjacent to it; nearest neighbour on "
                    "z-scored train-period features, without replacement"}


def zone_table(res: SiteResult) -> list[dict[str, Any]]:
    """Every zone of the pilot's size (at most `ZONE_TABLE_MAX`, best first, the pilot always)
    with both measures: reach per year and PAI, and its ranks."""
    rk, st, data = res.ranking, res.stability, res.inputs.data
    order = np.argsort(-rk.objective_train, kind="stable")
    keep = list(order[:ZONE_TABLE_MAX])
    if rk.pilot_index not in keep:
        keep.append(rk.pilot_index)
    rows = []
    for z in keep:
        s = zone_summary(list(rk.zones[z]), data)
        rows.append({"neighborhoods": s["neighborhoods"], "pilot": int(z) == rk.pilot_index,
                     "reach_per_year": s["reach_per_year"], "records": s["records"], "pai": s["pai"],
                     "pai_train": s["pai_train"], "pai_test": s["pai_test"],
                     "rank_train": rank_of(rk.objective_train[z], rk.objective_train),
                     "rank_low": int(st.rank_low[z]), "rank_high": int(st.rank_high[z])})
    return rows


# --- the whole answer ------------------------------------------------------------------------
def evaluate_site(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, candidates: Sequence[str],  # noqa: PLR0913  public keyword API (pipeline, commands, tests); its split belongs to the verdict issue
                  pilot: Sequence[str] = settings.PILOT_NEIGHBORHOODS, indicator: str = "lead_eligible",
                  params: SiteParams | None = None, population: pd.Series | None = None,
                  progress: Progress | None = None, adjacency: Adjacency | None = None,
                  sampling: frames.Frames | None = None) -> SiteResult:
    """Answer the siting question from records and neighborhoods (pure), as a `SiteResult`.

    Records count by their frame ``weight`` x their share of each unit (`unit_weights` with
    ``params.boundary``); `sampling` (the store's
    declarations, `geo_lead.frames.load_frames`) gives the months of data, else the records'
    own files.

    Parameters
    ----------
    records
        EPSG:4326 points with ``occurred_at``, the `indicator` flag, ``neighborhood`` (and
        ``boundary_units``, ``weight`` when known: `unit_weights`).
    neighborhoods
        All units (EPSG:4326) with NH_NAME, is_named.
    candidates
        Names of the units a zone may use (the pilot's units are added if missing).
    pilot
        The official zone's unit names.
    params
        `SiteParams`; ``params.window`` (START:END) restricts every step to records that
        occurred in it (e.g. one calendar year).
    population
        Residents per unit (index NH_NAME), for the rate objective and the comparison
        area; without it those use density only.
    progress
        A `geo_lead.progress.Progress` counting bootstrap resamples (optional).
    adjacency
        `geo_lead.zones_milp.queen_adjacency(neighborhoods)` computed earlier (e.g. kept in
        the store: `stored_queen_adjacency`); default: computed here.
    """
    p = params or SiteParams()
    inp = prepare(records, neighborhoods, candidates, pilot, indicator, p, adjacency, sampling)
    rk = ranking(inp, p, population)
    st = stability(inp, rk, p, progress)
    ho = holdout(inp, rk)
    checks = run_checks(inp, rk, st, ho, p)
    verdict = decide(checks, p)
    cap = capacity(inp, p)
    comp = comparison(inp, records, neighborhoods, p, population)
    layer = zones_layer(inp.proj, [("pilot", rk.pilot), ("best", rk.best), ("capacity", cap),
                                   ("comparison", {"neighborhoods": comp["neighborhoods"],
                                                   "k": len(comp["neighborhoods"])})])
    return SiteResult(inp, p, rk, st, ho, checks, verdict, cap, comp, layer)


def site(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, candidates: Sequence[str],  # noqa: PLR0913  public keyword API (pipeline, commands, tests); its split belongs to the verdict issue
         pilot: Sequence[str] = settings.PILOT_NEIGHBORHOODS, indicator: str = "lead_eligible",
         params: SiteParams | None = None, population: pd.Series | None = None,
         progress: Progress | None = None, adjacency: Adjacency | None = None,
         sampling: frames.Frames | None = None) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """`evaluate_site` as ``(site_zones layer (EPSG:2246), the site --json object)``.

    Reused across runs (`geo_lead.result_cache`, kind ``site``) when every input hashes as
    before (`site_key`); evaluated on the records' `SITE_MEMO_COLUMNS` only, so the key covers
    all it reads. A reused answer equals the evaluated one; `progress` is not advanced then.
    """
    from geo_lead import result_cache

    p = params or SiteParams()
    cols = [c for c in dict.fromkeys([*SITE_MEMO_COLUMNS, indicator]) if c in records.columns]
    records = records[[*cols, records.geometry.name]] if hasattr(records, "geometry") else records[cols]
    key = site_key(SiteMemoInputs(records, neighborhoods, candidates, pilot, indicator, p, population,
                                  adjacency, sampling))
    hit = result_cache.read_object(SITE_CACHE, key)
    if hit is not None:
        return hit
    res = evaluate_site(records, neighborhoods, candidates, pilot, indicator, p, population,
                        progress, adjacency, sampling)
    answer = res.zones, res.to_dict()
    result_cache.write_object(SITE_CACHE, key, answer)
    return answer


#: `geo_lead.result_cache` kind of `site`'s answers.
SITE_CACHE = "site"
#: The record columns `site` evaluates (with the indicator flag and the geometry): `SITE_COLUMNS`
#: and those its steps read when present (frame weight, division, beat).
SITE_MEMO_COLUMNS: tuple[str, ...] = ("incident_number", "occurred_at", "reported_at", "source", "source_file",
                                      "neighborhood", "boundary_units", "weight", "division", "beat")


@dataclass(frozen=True)
class SiteMemoInputs:
    """Everything `site`'s answer depends on (`site_key` hashes it)."""

    records: pd.DataFrame
    neighborhoods: gpd.GeoDataFrame
    candidates: Sequence[str]
    pilot: Sequence[str]
    indicator: str
    params: SiteParams
    population: pd.Series | None
    adjacency: Adjacency | None  #: None: the neighborhoods' queen adjacency (computed on a miss only)
    sampling: frames.Frames | None


def site_key(inp: SiteMemoInputs) -> str:
    """sha256 of `inp`: the records' columns and index, the neighborhoods (every column, WKB),
    candidates, pilot, indicator, every `SiteParams` field, population, adjacency, what the
    answer reads of the sampling declarations (`sampling_part`: their coverage of the window, so
    a file that adds no covered time, e.g. a one-record file, leaves the key as it was), the
    package's code and the libraries' versions."""
    from geo_lead import result_cache

    records = inp.records
    cols = [*records.columns]
    pop = ("none" if inp.population is None else
           result_cache.frame_digest(inp.population.rename("population").to_frame(), ["population"]))
    adjacency = "queen" if inp.adjacency is None else json.dumps(
        {str(k): sorted(map(str, v)) for k, v in inp.adjacency.items()}, sort_keys=True)
    return result_cache.digest([
        SITE_CACHE, result_cache.code_version(), result_cache.settings_version(), _memo_libraries(),
        result_cache.frame_digest(records, cols),
        result_cache.frame_digest(inp.neighborhoods, list(inp.neighborhoods.columns)),
        json.dumps([list(map(str, inp.candidates)), list(map(str, inp.pilot)), inp.indicator]),
        repr(inp.params), pop, adjacency, sampling_part(inp.sampling, inp.params.window)])


def _memo_libraries() -> str:
    from geo_lead import result_cache

    return result_cache.library_versions("numpy", "pandas", "geopandas", "shapely", "pyproj", "scipy",
                                         "PuLP", "libpysal")


def zones_layer(proj: gpd.GeoDataFrame, roles: list[tuple[str, Mapping[str, Any]]]) -> gpd.GeoDataFrame:
    """The ``site_zones`` layer: one dissolved polygon per role (EPSG:2246)."""
    rows, geoms = [], []
    for role, z in roles:
        names = list(z.get("neighborhoods") or [])
        if not names:
            continue
        rows.append({"role": role, "neighborhoods": ";".join(names), "k": len(names),
                     "share": z.get("share"), "pai_train": z.get("pai_train"), "pai_test": z.get("pai_test")})
        geoms.append(proj.loc[names].geometry.union_all())
    return gpd.GeoDataFrame(pd.DataFrame(rows, columns=["role", "neighborhoods", "k", "share", "pai_train", "pai_test"]),
                            geometry=geoms, crs=settings.CRS_PROJECTED)


#: Record columns `site` reads (plus the indicator flag): periods (occurred_at), months of
#: data (reported_at, source_file), persons per record (incident_number), units and shares
#: (neighborhood, boundary_units); the frame ``weight`` is attached by the readers.
SITE_COLUMNS: tuple[str, ...] = ("incident_number", "occurred_at", "reported_at", "source", "source_file",
                                 "neighborhood", "boundary_units", "lon", "lat")


def compute_site(store: Store | str, k: int | None = None, capacity: int = settings.PILOT_CAPACITY_PARTICIPANTS,  # noqa: PLR0913  public keyword API (pipeline, commands, tests)
                 months: int = settings.PILOT_MONTHS, indicator: str = "lead_eligible",
                 area: str = "first-division", candidates: Sequence[str] | None = None,
                 records: pd.DataFrame | None = None, adjacency: Adjacency | None = None,
                 **params: Any) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """`site_store`'s computation without its writes: ``(site_zones layer, result)``.

    `store` is an open store, or its path when nothing needs reading: `records` (with their
    ``weight``), `adjacency` (`stored_queen_adjacency`) and ``sampling``
    (`frames.load_frames`) given; the path then only names the store in errors. That is how
    `geo-lead run` computes this in a forked child (`geo_lead.parallel.Deferred`), which never
    gets an open store. A path without those inputs raises `TypeError`.
    """
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.hotspots import located_records, records_from_store, resolve_area, store_columns

    if isinstance(store, str) and (records is None or adjacency is None or params.get("sampling") is None):
        msg = "compute_site(store=path) needs records, adjacency and sampling: with a path nothing is read"
        raise TypeError(msg)
    neighborhoods = load_neighborhoods()
    given = records
    if isinstance(store, str):
        records = located_records(records, neighborhoods, store)
    else:
        records = records_from_store(store, neighborhoods, store_columns(store, SITE_COLUMNS, indicator),
                                     records=records)
    if given is None and "weight" not in records and not isinstance(store, str):
        from geo_lead.frames import attach_weights

        attach_weights(store, records)  # read here; a shared read carries its weights already
    names = resolve_area(neighborhoods, records, area, candidates)
    population = None
    if settings.POPULATION_TRACTS.exists():
        from geo_lead.population import population_of

        interp = population_of(neighborhoods)
        population = interp.population.set_axis(neighborhoods["NH_NAME"].to_numpy())
    progress = params.pop("progress", None)
    # the store's declarations: read here unless given (a forked child must not read the store)
    sampling = params.pop("sampling", None)
    if sampling is None and given is None and not isinstance(store, str):
        sampling = frames.load_frames(store)
    if params.get("boundary") is None:
        params.pop("boundary", None)
    sp = SiteParams(k=k, capacity=capacity, months=months, **params)
    if adjacency is None and not isinstance(store, str):
        adjacency = stored_queen_adjacency(store, neighborhoods)
    layer, result = site(records, neighborhoods, names, indicator=indicator, params=sp,
                         population=population, progress=progress, adjacency=adjacency, sampling=sampling)
    result["area"] = "candidates" if candidates else area
    return layer, result


def site_store(store: Store, k: int | None = None, capacity: int = settings.PILOT_CAPACITY_PARTICIPANTS,  # noqa: PLR0913  public keyword API (pipeline, commands, tests); its split belongs to the verdict issue
               months: int = settings.PILOT_MONTHS, indicator: str = "lead_eligible",
               area: str = "first-division", candidates: Sequence[str] | None = None,
               records: pd.DataFrame | None = None, computed: tuple[gpd.GeoDataFrame, dict[str, Any]] | None = None,
               **params: Any) -> dict[str, Any]:
    """Run `site` on the store's records; write the ``site_zones`` layer and ``site_result``.

    Parameters
    ----------
    store
        An open `geo_lead.store.Store`.
    k, capacity, months
        Best-zone size (default: the pilot's), participants, program months.
    area, candidates
        ``first-division`` (default), ``city``, or explicit candidate names.
    records
        The store's records as `geo_lead.spatial_join.records_gdf` points with at least
        `SITE_COLUMNS` and `indicator` (default: read them from the store).
    computed
        ``(layer, result)`` of `compute_site` with these arguments, computed elsewhere (e.g.
        in a child process); only written here.
    **params
        Further `SiteParams` fields (objective, take_up_rate, train, test, ...), and
        ``progress`` (a `geo_lead.progress.Progress` for the bootstrap).

    Returns
    -------
    dict
        The ``geo-lead site --json`` object.
    """
    layer, result = compute_site(store, k, capacity, months, indicator, area, candidates, records, **params) \
        if computed is None else computed
    from geo_lead.parameters import result_parameters, store_frames_fingerprint

    best_k = (result.get("best_zone") or {}).get("k", k)
    since, _, until = str(result.get("window") or "").partition(":")  # "YYYY-MM-DD:YYYY-MM-DD" or None
    result = {**result, "parameters": result_parameters(
        indicator=indicator, area=area, candidates=candidates, k=best_k, since=since or None,
        until=until or None, boundary_rule=params.get("boundary"), frames=store_frames_fingerprint(store))}
    store.replace_features("site_zones", layer, "GEOMETRY", description="geo_lead site selection")
    store.put_json("site_result", result)
    return result


def _fmt_zone(label: str, z: dict[str, Any]) -> str:
    reach = z.get("reach_per_year")
    reach_text = f"reach {reach:7.1f}/yr  " if isinstance(reach, (int, float)) and math.isfinite(reach) else ""
    return (f"  {label:<22} {' + '.join(z['neighborhoods']):<48} {reach_text}share {z['share']:6.1%}  "
            f"PAI train {z['pai_train']:5.2f}  test {z['pai_test']:5.2f}  PEI test {z['pei_test']:4.2f}")


def _fmt_value(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}" if math.isfinite(v) else "n/a"
    return str(v)


def format_site(result: dict[str, Any]) -> str:
    """The `geo-lead site` verdict, every check with its status, and the numbers behind them."""
    lines: list[str] = []
    st = result["stability"]
    lines.append(f"Verdict: {str(result['verdict']).upper()}" + (
        f" (deciding check: {result['deciding_check']})" if result.get("deciding_check") else ""))
    if result.get("verdict_sentence"):
        lines.append(f"  {result['verdict_sentence']}")
    measures = result.get("measures") or {}
    if measures:
        lines.append(f"  objective: {measures.get('objective')}; reach = "
                     f"{measures.get('definitions', {}).get('reach', '')}; concentration = PAI")
    for c in result.get("checks", []):
        op = {"at_most": "<=", "at_least": ">=", "disjoint": ""}.get(c.get("direction", ""), "")
        lines.append(f"  [{c['status']:<12}] {c['name']:<13} ({c.get('measure', '')}) value "
                     f"{_fmt_value(c['value'])} {op} {_fmt_value(c['threshold'])}: {c['detail']}")
    lines.append(_fmt_zone("pilot zone", result["pilot_zone"]))
    lines.append(_fmt_zone(f"best zone (k={result['best_zone']['k']})", result["best_zone"]))
    ho = result.get("holdout")
    if ho:
        lines.append(f"  holdout (PAI): pilot {ho['pilot_pai_test']:.2f} ranks {ho['pilot_rank_test']} of "
                     f"{ho['n_zones']} on the held-out months ({ho['pilot_rank_train']} on training); best "
                     f"{' + '.join(ho['best_test'])} {ho['best_test_pai']:.2f}")
    lines.append(f"  pilot rank {result['pilot_rank']} of {result['n_candidate_zones']} contiguous zones of "
                 f"{result['zone_size']}; in the top {st['top_n']} in {st['bootstrap_top_share']:.0%} of "
                 f"{st['replicates']} bootstrap resamples" + (
                     f", {st['window_top_share']:.0%} of {len(st['windows'])} yearly windows"
                     if st.get("window_top_share") is not None else ""))
    lines.append(f"  periods: {result['periods']['rule']} (train {result['periods']['train']}, "
                 f"test {result['periods']['test']})")
    lines.append("  best zone by size:")
    for z in result["zones_by_k"]:
        lines.append("  " + _fmt_zone(f"k={z['k']}", z))
    cz = result["capacity_zone"]
    if cz["neighborhoods"]:
        word = "fills" if cz["reached"] else "does NOT fill"
        lines.append(f"  capacity: {' + '.join(cz['neighborhoods'])} {word} {cz['parameters']['capacity']} places "
                     f"({cz['expected_participants']:.1f} expected participants in {cz['parameters']['months']} months)")
    comp = result["comparison_area"]
    lines.append(f"  comparison area: {' + '.join(comp['neighborhoods'])} "
                 f"({'balanced' if comp['balanced'] else 'NOT balanced'}: max |SMD| "
                 f"{comp['max_abs_std_mean_diff']:.2f}, rule {comp['balance_rule']})")
    for b in comp["balance"]:
        lines.append(f"    {b['feature']:<18} pilot {b['pilot_mean']:10.2f}  comparison {b['comparison_mean']:10.2f}  "
                     f"pool {b['pool_mean']:10.2f}  SMD {b['std_mean_diff']:+.2f}")
    return "\n".join(lines)
