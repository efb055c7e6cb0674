"""Pilot-zone selection: is Russell + Portland justified, and if not, which zone is?

Pure functions take GeoDataFrames (records as in `geo_lead.hotspots`); `site_store` is the
store edge. The steps, each computed from the data:

1. **Periods** -- train (choose) and test (evaluate) masks on ``occurred_at``; default
   calendar months 1-8 (train) vs 9-12 (test) of every year in the data.
2. **Zones** -- candidate units (First Division by default), queen contiguity, the exact best
   contiguous zone of k units for k = 1..k_max (`geo_lead.zones_milp.best_zone`) on train.
3. **Pilot vs every zone of its size** -- share captured, PAI/PEI on train and test, the
   pilot's rank among all contiguous zones of its size (2 -> every adjacent pair).
4. **Stability** -- how often the pilot stays in the top set across bootstrap resamples
   of the records and across calendar-year windows.
5. **Verdict** -- ``justified`` when all three checks of `VERDICT_RULE` hold, else ``revise``.
6. **Capacity** -- the smallest contiguous zone whose expected participants over the
   program period reach the capacity.
7. **Comparison area** -- units outside the pilot zone and not adjacent to it, most similar
   in the train period on rate, density and population (nearest neighbours on z-scores).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_lead import frames, settings
from geo_lead.errors import GeoLeadError
from geo_lead.hotspots import grid_counts, indicator_points, make_grid, max_capture, pai, study_area
from geo_lead.zones_milp import Adjacency, best_zone, queen_adjacency, stored_queen_adjacency

log = logging.getLogger(__name__)

VERDICT_RULE = (
    "justified when (1) the pilot zone is in the top set (the best max(1, ceil({top:.0%} x n)) "
    "of the n contiguous zones of its size) on the training period, (2) it stays in that top "
    "set in at least {stab:.0%} of bootstrap resamples and (when there are two or more calendar "
    "years with enough records) of yearly windows, and (3) its holdout PAI is at least {tol:.0%} "
    "of the holdout PAI of the best zone chosen on the training period; otherwise revise"
)


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
    when = pd.to_datetime(occurred_at, errors="coerce", format="ISO8601")
    if getattr(when.dt, "tz", None) is not None:
        when = when.dt.tz_localize(None)
    dated = when.notna()
    if train is None and test is None:
        tr = dated & (when.dt.month <= 8)
        te = dated & (when.dt.month >= 9)
        rule = "calendar months 1-8 (train) vs 9-12 (test) of every year"
    else:
        def mask(text: str, what: str) -> pd.Series:
            start, end = _parse_range(text, what)
            m = dated.copy()
            if start is not None:
                m &= when >= start
            if end is not None:
                m &= when < end
            return m

        # one period given: the other is every dated record outside it
        tr = mask(train, "train") if train is not None else None
        te = mask(test, "test") if test is not None else dated & ~tr
        if tr is None:
            tr = dated & ~te
        rule = f"train {train or 'every date outside test'}, test {test or 'every date outside train'}"
    info = {"rule": rule, "train": int(tr.sum()), "test": int(te.sum()),
            "neither": int((dated & ~tr & ~te).sum()), "undated": int((~dated).sum())}
    return tr, te, info


# --- zones --------------------------------------------------------------------------------
def connected_subsets(adjacency: Mapping[str, Iterable[str]], size: int,
                      limit: int = 200_000) -> list[tuple[str, ...]]:
    """Every connected set of `size` units (sorted tuples), each once.

    Wernicke's ESU enumeration: grow from each root v only through units ordered after v
    and through the exclusive neighbourhood of the unit just added.
    """
    nodes = sorted(adjacency)
    order = {n: i for i, n in enumerate(nodes)}
    nbrs = {n: {m for m in adjacency[n] if m in order and m != n} for n in nodes}
    found: list[tuple[str, ...]] = []

    def extend(sub: set[str], ext: set[str], root: str) -> None:
        if len(sub) == size:
            found.append(tuple(sorted(sub)))
            if len(found) > limit:
                raise GeoLeadError(f"more than {limit} connected zones of size {size}; use fewer candidates")
            return
        ext = set(ext)
        closed = set(sub).union(*(nbrs[s] for s in sub))
        while ext:
            w = min(ext, key=order.__getitem__)
            ext.discard(w)
            exclusive = {u for u in nbrs[w] if order[u] > order[root] and u not in closed}
            extend(sub | {w}, ext | exclusive, root)

    for root in nodes:
        extend({root}, {u for u in nbrs[root] if order[u] > order[root]}, root)
    return sorted(found)


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

    def zone(self, members: Sequence[str]) -> np.ndarray:
        return np.isin(self.names, list(members))


def zone_summary(members: Sequence[str], data: UnitData) -> dict[str, Any]:
    """Share of records captured (all periods), PAI and PEI on train and test, area."""
    m = data.zone(members)
    a, big_a = float(data.area_sqft[m].sum()), float(data.area_sqft.sum())
    out: dict[str, Any] = {"neighborhoods": sorted(members), "k": len(members),
                           "area_sqmi": a / settings.SQFT_PER_SQMI,
                           "records": float(data.all[m].sum()),
                           "share": float(data.all[m].sum() / data.all.sum()) if data.all.sum() else float("nan")}
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
        standardised mean difference (pilot - comparison) / pooled sd.
    """
    from sklearn.neighbors import NearestNeighbors

    pilot = list(pilot)
    touching = set().union(*(adjacency.get(p, set()) for p in pilot)) if pilot else set()
    pool = [u for u in features.index if u not in pilot and u not in touching]
    if not pool:
        raise GeoLeadError("no neighborhood is outside the pilot zone and not adjacent to it")
    sd = features.std(ddof=0).replace(0, 1.0)
    z = (features - features.mean()) / sd
    nn = NearestNeighbors(n_neighbors=min(len(pool), len(pilot) + 5)).fit(z.loc[pool].to_numpy())
    dist, idx = nn.kneighbors(z.loc[pilot].to_numpy())
    chosen: list[str] = []
    want = n or len(pilot)
    # Greedy matching without replacement: the closest (pilot, candidate) pairs first.
    pairs = sorted((d, p_i, pool[j]) for p_i, (drow, irow) in enumerate(zip(dist, idx, strict=True))
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


# --- the whole answer ------------------------------------------------------------------------
def site(records: gpd.GeoDataFrame, neighborhoods: gpd.GeoDataFrame, candidates: Sequence[str],
         pilot: Sequence[str] = settings.PILOT_NEIGHBORHOODS, indicator: str = "lead_eligible",
         params: SiteParams | None = None, population: pd.Series | None = None,
         progress: Any = None, adjacency: Adjacency | None = None,
         sampling: frames.Frames | None = None) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Answer the siting question from records and neighborhoods (pure).

    Records count by their frame ``weight`` x their share of each unit
    (`geo_lead.hotspots.indicator_points` with ``params.boundary``); `sampling` (the store's
    declarations, `geo_lead.frames.load_frames`) gives the months of data, else the records'
    own files.

    Parameters
    ----------
    records
        EPSG:4326 points with ``occurred_at``, the `indicator` flag, ``neighborhood``.
    neighborhoods
        All units (EPSG:4326) with NH_NAME, is_named.
    candidates
        Names of the units a zone may use (the pilot's units are added if missing).
    pilot
        The official zone's unit names.
    population
        Residents per unit (index NH_NAME), for the rate objective and the comparison
        area; without it those use density only.
    progress
        A `geo_lead.progress.Progress` counting bootstrap resamples (optional).
    adjacency
        `geo_lead.zones_milp.queen_adjacency(neighborhoods)` computed earlier (e.g. kept in
        the store: `stored_queen_adjacency`); default: computed here.

    Returns
    -------
    zones, result
        ``zones``: the ``site_zones`` layer (EPSG:2246); ``result``: the ``site --json`` object.
    """
    p = params or SiteParams()
    pilot = sorted({s.upper() for s in pilot})
    missing = [u for u in pilot if u not in set(neighborhoods["NH_NAME"])]
    if missing:
        raise GeoLeadError(f"pilot neighborhoods {missing} are not in the neighborhoods file")
    cands = sorted(set(candidates) | set(pilot))
    points, accounting = indicator_points(records, indicator, p.boundary)
    unit_of = points["neighborhood"].fillna("").astype(str)
    in_cands = unit_of.isin(cands)
    # records (one shared with a candidate counts in the candidates)
    accounting["in_candidates"] = int(points.loc[in_cands.to_numpy(), "record_row"].nunique())
    accounting["outside_candidates"] = int(accounting["kept"] - accounting["in_candidates"])
    pts = points[in_cands]
    tr, te, period_info = split_periods(pts["occurred_at"], p.train, p.test)
    if tr.sum() == 0 or te.sum() == 0:
        raise GeoLeadError(f"the train or test period holds no {indicator} record in the candidate area "
                           f"({period_info['rule']}: train {period_info['train']}, test {period_info['test']}, "
                           f"in neither {period_info['neither']}, undated {period_info['undated']}); "
                           "choose --train/--test ranges that hold data")

    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).set_index("NH_NAME")
    area = study_area(neighborhoods, cands)
    grid = make_grid(area, p.grid_cell_ft)
    w = pts["weight"].to_numpy(float)

    def per_unit(mask: np.ndarray) -> np.ndarray:
        s = pd.Series(w[mask]).groupby(unit_of[in_cands].to_numpy()[mask]).sum()
        return s.reindex(cands).fillna(0.0).to_numpy()

    everything = np.ones(len(pts), bool)
    data = UnitData(cands, proj.loc[cands].geometry.area.to_numpy(), per_unit(everything),
                    per_unit(tr.to_numpy()), per_unit(te.to_numpy()), grid["area_sqft"].to_numpy(),
                    grid_counts(pts[tr.to_numpy()], grid, p.grid_cell_ft),
                    grid_counts(pts[te.to_numpy()], grid, p.grid_cell_ft))

    adj_all = queen_adjacency(neighborhoods) if adjacency is None else adjacency
    adj = {u: {v for v in adj_all.get(u, set()) if v in cands} for u in cands}

    # Objective weights on the training period.
    if p.objective == "records":
        objective = dict(zip(cands, data.train, strict=True))
    elif p.objective == "rate":
        if population is None:
            raise GeoLeadError("--objective rate needs population per neighborhood (tracts file missing?)")
        pop = population.reindex(cands).fillna(0.0).to_numpy()
        eb = empirical_bayes_rate(data.train, pop)
        objective = dict(zip(cands, eb * pop, strict=True))
    else:
        raise GeoLeadError(f"unknown --objective {p.objective!r}; use records or rate")

    size = len(pilot)
    k = p.k or size
    k_max = min(max(p.k_max, k), len(cands))
    zones_by_k = []
    best_by_k: dict[int, list[str]] = {}
    for kk in range(1, k_max + 1):
        try:
            names, _total = best_zone(objective, adj, kk)
        except GeoLeadError as exc:
            log.info("k=%d: %s", kk, exc)
            continue
        best_by_k[kk] = names
        zones_by_k.append(zone_summary(names, data))
    if k not in best_by_k:
        raise GeoLeadError(f"no contiguous zone of {k} candidate neighborhoods exists")

    # The pilot among every contiguous zone of its own size.
    zones = connected_subsets(adj, size)
    membership = np.array([[u in z for z in zones] for u in cands], dtype=float)  # units x zones
    pilot_key = tuple(pilot)
    if pilot_key not in zones:
        raise GeoLeadError(f"the pilot zone {pilot} is not contiguous under queen contiguity")
    pz = zones.index(pilot_key)
    obj_vec = np.array([objective[u] for u in cands])
    totals_train = obj_vec @ membership
    top_n = max(1, math.ceil(p.top_fraction * len(zones)))
    pilot_rank = rank_of(totals_train[pz], totals_train)
    # For information: the rank by PAI (records per unit area) among the same zones.
    zone_area = data.area_sqft @ membership
    pai_train_all = (data.train @ membership) / zone_area
    pilot_rank_pai = rank_of(pai_train_all[pz], pai_train_all)

    # Stability: bootstrap resamples of the records, and calendar-year windows.
    rng = np.random.default_rng(p.seed)
    unit_idx = pd.Index(cands).get_indexer(unit_of[in_cands].to_numpy())
    # resample records, each with all its shares: rows grouped by record
    rec_codes, rec_first = pd.factorize(pts["record_row"])
    rows_of = np.argsort(rec_codes, kind="stable")
    starts = np.searchsorted(rec_codes[rows_of], np.arange(len(rec_first) + 1))
    n_rec = len(rec_first)
    n_rows_of = np.diff(starts)
    in_top = 0
    for _ in range(p.replicates):
        pick = rng.integers(0, n_rec, n_rec)
        if len(rows_of) == n_rec:  # no shared record: one row per record, as before
            draw = rows_of[pick]
        else:
            c = n_rows_of[pick]
            draw = rows_of[np.repeat(starts[pick], c) + np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)]
        counts = np.bincount(unit_idx[draw], weights=w[draw], minlength=len(cands))
        tot = counts @ membership
        in_top += rank_of(tot[pz], tot) <= top_n
        if progress is not None:
            progress.update()
    years = pd.to_datetime(pts["occurred_at"], errors="coerce", format="ISO8601").dt.year
    windows = []
    for year, grp in pd.Series(np.arange(len(pts))).groupby(years.to_numpy()):
        # records in the candidates (a shared record counts by its shares there)
        n_records = float(pts["share"].iloc[grp.to_numpy()].sum()) if "share" in pts else len(grp)
        if n_records < p.min_window_records:
            continue
        counts = np.bincount(unit_idx[grp.to_numpy()], weights=w[grp.to_numpy()], minlength=len(cands))
        tot = counts @ membership
        r = rank_of(tot[pz], tot)
        windows.append({"window": str(int(year)),
                        "records": int(n_records) if float(n_records).is_integer() else round(n_records, 1),
                        "pilot_rank": r,
                        "in_top": r <= top_n})
    stability = {"top_n": top_n, "replicates": p.replicates, "seed": p.seed,
                 "bootstrap_top_share": in_top / p.replicates if p.replicates else float("nan"),
                 "windows": windows,
                 "window_top_share": (sum(wd["in_top"] for wd in windows) / len(windows)) if windows else None}

    pilot_sum = zone_summary(pilot, data)
    best_same = zone_summary(best_by_k[size], data) if size in best_by_k else pilot_sum
    best_k = zone_summary(best_by_k[k], data)
    checks = {
        "top_on_train": pilot_rank <= top_n,
        "stable": stability["bootstrap_top_share"] >= p.stability_min,
        # Yearly windows count only when there are at least two of them to compare.
        "stable_in_windows": len(windows) < 2 or stability["window_top_share"] >= p.stability_min,
        "holdout_pai_ok": bool(pilot_sum["pai_test"] >= (1 - p.pai_tolerance) * best_same["pai_test"]),
    }
    verdict = "justified" if all(checks.values()) else "revise"

    # Capacity: smallest k whose best zone (by expected participants, all data) fills it.
    months_data = months_covered(records, sampling)
    elig = pts.drop_duplicates("record_row")  # records, not their shares
    ppr = p.persons_per_record
    if ppr is None:
        key = elig.get("incident_number", pd.Series(range(len(elig)), index=elig.index)).astype(str)
        ppr = key.nunique() / len(elig) if len(elig) else 1.0
    expected_unit = {u: expected_participants(c, months_data, p, ppr) for u, c in zip(cands, data.all, strict=True)}
    capacity_zone: dict[str, Any] = {"neighborhoods": [], "expected_participants": None, "reached": False}
    for kk in range(1, min(len(cands), settings.SITE_CAPACITY_K_MAX) + 1):
        try:
            names, total = best_zone(expected_unit, adj, kk)
        except GeoLeadError:
            continue
        capacity_zone = {**zone_summary(names, data), "expected_participants": total,
                         "reached": total >= p.capacity}
        if total >= p.capacity:
            break
    capacity_zone["parameters"] = {
        "capacity": p.capacity, "months": p.months, "take_up_rate": p.take_up_rate,
        "persons_per_record": ppr, "months_of_data": months_data,
        "sample_scaling": "each record weighs 1 / the declared sample fraction of its source and year "
                          "(geo_lead.frames; data/lmpd/sampling.csv, --sample-fraction) x its share of the unit",
        "sources": settings.SITE_PARAMETER_SOURCES}

    # Comparison area: every named unit citywide, features from the training period.
    all_named = neighborhoods[neighborhoods["is_named"].astype(bool)]["NH_NAME"].tolist()
    all_pts = points[points["neighborhood"].isin(all_named)]
    tr_all, _te_all, _ = split_periods(all_pts["occurred_at"], p.train, p.test)
    cnt = all_pts[tr_all.to_numpy()].groupby("neighborhood")["weight"].sum().reindex(all_named).fillna(0.0)
    area_sqmi = proj.loc[all_named].geometry.area / settings.SQFT_PER_SQMI
    feats = pd.DataFrame({"density_per_sqmi": cnt / area_sqmi}, index=all_named)
    if population is not None:
        pop = population.reindex(all_named).fillna(0.0)
        feats["eb_rate_per_1000"] = empirical_bayes_rate(cnt.to_numpy(), pop.to_numpy()) * 1000
        feats["population"] = pop
        feats = feats[pop > 0] if (pop.loc[pilot] > 0).all() else feats
    comp_names, balance = comparison_area(feats, pilot, adj_all)
    max_smd = max(abs(b["std_mean_diff"]) for b in balance)

    result = {
        "indicator": indicator, "candidates": cands, "n_candidates": len(cands),
        "records": accounting, "periods": period_info, "objective": p.objective,
        "pilot_zone": {**pilot_sum, "rank_train": pilot_rank, "rank_train_by_pai": pilot_rank_pai},
        "best_zone": best_k, "best_zone_same_size": best_same,
        "pilot_rank": pilot_rank, "n_candidate_zones": len(zones),
        "zone_size": size, "stability": stability,
        "verdict": verdict, "verdict_checks": checks,
        "verdict_rule": VERDICT_RULE.format(top=p.top_fraction, stab=p.stability_min, tol=1 - p.pai_tolerance),
        "zones_by_k": zones_by_k, "capacity_zone": capacity_zone,
        "comparison_area": {"neighborhoods": comp_names, "balance": balance,
                            "max_abs_std_mean_diff": max_smd,
                            "balanced": bool(max_smd <= settings.SITE_BALANCE_MAX_SMD),
                            "balance_rule": f"every |SMD| <= {settings.SITE_BALANCE_MAX_SMD:g}",
                            "rule": "outside the pilot, not queen-adjacent to it; nearest neighbour on "
                                    "z-scored train-period features, without replacement"},
        "parameters": asdict(p),
    }
    layer = zones_layer(proj, [("pilot", pilot_sum), ("best", best_k), ("capacity", capacity_zone),
                               ("comparison", {"neighborhoods": comp_names, "k": len(comp_names)})])
    return layer, result


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


#: Record columns `site` reads (plus the indicator flag): weights (source_file), periods
#: (occurred_at), months of data (reported_at), persons per record (incident_number).
SITE_COLUMNS: tuple[str, ...] = ("incident_number", "occurred_at", "reported_at", "source", "source_file",
                                 "neighborhood", "boundary_units", "lon", "lat")


def compute_site(store: Any, k: int | None = None, capacity: int = settings.PILOT_CAPACITY_PARTICIPANTS,
                 months: int = settings.PILOT_MONTHS, indicator: str = "lead_eligible",
                 area: str = "first-division", candidates: Sequence[str] | None = None,
                 records: Any = None, adjacency: Adjacency | None = None,
                 **params: Any) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """`site_store`'s computation without its writes: ``(site_zones layer, result)``.

    With `records` and `adjacency` (`stored_queen_adjacency`) given the store is not
    touched (only its path names it in errors), so `geo-lead run` can compute this in a
    child process (`geo_lead.parallel.Deferred`).
    """
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.hotspots import records_from_store, resolve_area, store_columns

    neighborhoods = load_neighborhoods()
    given = records
    records = records_from_store(store, neighborhoods, store_columns(store, SITE_COLUMNS, indicator),
                                 records=records)
    names = resolve_area(neighborhoods, records, area, candidates)
    population = None
    if settings.POPULATION_TRACTS.exists():
        from geo_lead.population import interpolate_population, load_tracts

        interp = interpolate_population(load_tracts(), neighborhoods)
        population = interp.population.set_axis(neighborhoods["NH_NAME"].to_numpy())
    progress = params.pop("progress", None)
    # the store's declarations: read here unless given (a forked child must not read the store)
    sampling = params.pop("sampling", None)
    if sampling is None and given is None:
        sampling = frames.load_frames(store)
    if params.get("boundary") is None:
        params.pop("boundary", None)
    sp = SiteParams(k=k, capacity=capacity, months=months, **params)
    layer, result = site(records, neighborhoods, names, indicator=indicator, params=sp,
                         population=population, progress=progress,
                         adjacency=stored_queen_adjacency(store, neighborhoods) if adjacency is None else adjacency,
                         sampling=sampling)
    result["area"] = "candidates" if candidates else area
    return layer, result


def site_store(store: Any, k: int | None = None, capacity: int = settings.PILOT_CAPACITY_PARTICIPANTS,
               months: int = settings.PILOT_MONTHS, indicator: str = "lead_eligible",
               area: str = "first-division", candidates: Sequence[str] | None = None,
               records: Any = None, computed: tuple[gpd.GeoDataFrame, dict[str, Any]] | None = None,
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
    store.replace_features("site_zones", layer, "GEOMETRY", description="geo_lead site selection")
    store.put_json("site_result", result)
    return result


def _fmt_zone(label: str, z: dict[str, Any]) -> str:
    return (f"  {label:<22} {' + '.join(z['neighborhoods']):<48} share {z['share']:6.1%}  "
            f"PAI train {z['pai_train']:5.2f}  test {z['pai_test']:5.2f}  PEI test {z['pei_test']:4.2f}")


def format_site(result: dict[str, Any]) -> str:
    """The `geo-lead site` verdict and its numbers, as a planner reads them."""
    lines: list[str] = []
    st = result["stability"]
    lines.append(f"Verdict: {result['verdict'].upper()}  ({result['verdict_rule']})")
    lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in result["verdict_checks"].items()))
    lines.append(_fmt_zone("pilot zone", result["pilot_zone"]))
    lines.append(_fmt_zone(f"best zone (k={result['best_zone']['k']})", result["best_zone"]))
    lines.append(f"  pilot rank {result['pilot_rank']} of {result['n_candidate_zones']} contiguous zones of "
          f"{result['zone_size']}; in the top {st['top_n']} in {st['bootstrap_top_share']:.0%} of "
          f"{st['replicates']} bootstrap resamples" + (
              f", {st['window_top_share']:.0%} of {len(st['windows'])} yearly windows" if st["windows"] else ""))
    lines.append(f"  periods: {result['periods']['rule']} (train {result['periods']['train']}, test {result['periods']['test']})")
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
