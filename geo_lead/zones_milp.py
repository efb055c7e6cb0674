"""The exact best contiguous zone of k neighborhoods: a MILP with flow-based contiguity.

Maximise sum_i w_i x_i over binary x_i (unit i chosen) subject to (DOMAIN.md):

* sum_i x_i = k;
* one root: binary r_i, sum_i r_i = 1, r_i <= x_i;
* flows f_ij >= 0 on both arcs of every adjacency edge, with
  inflow_i - outflow_i >= x_i - k r_i  (each chosen non-root unit absorbs one unit of flow,
  the root can emit up to k - 1), f_ij <= (k-1) x_i and f_ij <= (k-1) x_j (flow only
  between chosen units).

Flow reaches every chosen unit from the root through chosen units only, so the zone is
connected. A unit without neighbours (an island) can only be a zone of its own (k = 1);
multi-part units are single nodes, adjacent to whatever any of their parts touches.
Solved by CBC through PuLP (``pulp.PULP_CBC_CMD(msg=False)``), unless enumerating the few
connected zones of k units finds one clearly best (`unique_best_zone`): the same zone, without
a solver process.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import geopandas as gpd

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    import pulp

    from geo_lead.store import Store

log = logging.getLogger(__name__)

Adjacency = dict[str, set[str]]


def queen_adjacency(neighborhoods: gpd.GeoDataFrame, names: Sequence[str] | None = None) -> Adjacency:
    """Queen contiguity (libpysal) among the units named `names` (all units when None).

    Returns
    -------
    dict
        NH_NAME -> set of adjacent NH_NAMEs (empty set for an island).
    """
    from libpysal.weights import Queen

    units = neighborhoods if names is None else neighborhoods[neighborhoods["NH_NAME"].isin(list(names))]
    units = units.to_crs(settings.CRS_PROJECTED).reset_index(drop=True)
    if units.empty:
        return {}
    if len(units) == 1:
        return {str(units["NH_NAME"].iloc[0]): set()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # libpysal warns about islands
        w = Queen.from_dataframe(units, use_index=False)
    label = units["NH_NAME"].astype(str).tolist()
    return {label[i]: {label[j] for j in w.neighbors[i]} for i in range(len(label))}


#: meta key of the stored queen adjacency of every unit (`stored_queen_adjacency`).
META_QUEEN_ADJACENCY = "queen_adjacency"


def adjacency_key(neighborhoods: gpd.GeoDataFrame) -> str:
    """What `queen_adjacency` of all units depends on: names, order and EPSG:2246 vertices
    (sha256 of names + WKB), and the libpysal version that computes it."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    import shapely

    units = neighborhoods.to_crs(settings.CRS_PROJECTED)
    h = hashlib.sha256()
    with contextlib.suppress(PackageNotFoundError):
        h.update(f"libpysal {version('libpysal')}\0".encode())
    for name, wkb in zip(units["NH_NAME"].astype(str), shapely.to_wkb(np.asarray(units.geometry.values)),
                         strict=True):
        h.update(name.encode() + b"\0" + (wkb or b"") + b"\0")
    return h.hexdigest()


def stored_queen_adjacency(store: Store, neighborhoods: gpd.GeoDataFrame) -> Adjacency:
    """`queen_adjacency` of all units, kept in the store's meta under `adjacency_key`.

    The adjacency depends only on the neighborhoods; computing it imports libpysal (~1.3 s),
    which an incremental `geo-lead run` otherwise need not pay in its main process. Stored
    as sorted lists, returned as the same sets.
    """
    key = adjacency_key(neighborhoods)
    hit = store.get_json(META_QUEEN_ADJACENCY)
    if isinstance(hit, dict) and hit.get("key") == key and isinstance(hit.get("adjacency"), dict):
        return {str(k): set(v) for k, v in hit["adjacency"].items()}
    adjacency = queen_adjacency(neighborhoods)
    store.put_json(META_QUEEN_ADJACENCY, {"key": key, "adjacency": {k: sorted(v) for k, v in adjacency.items()}})
    return adjacency


def contiguous_pairs(adjacency: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """Every unordered pair of adjacent units, each once, sorted."""
    pairs = {tuple(sorted((a, b))) for a, nbrs in adjacency.items() for b in nbrs if a != b}
    return sorted(pairs)  # type: ignore[arg-type]


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


#: Most connected zones `best_zone` enumerates to find the best one before it solves the MILP.
ENUMERATE_MAX_ZONES = 20_000
#: Relative margin by which an enumerated best zone must beat every other zone for `best_zone`
#: to take it without the solver (closer: a tie, which the solver's own choice settles).
UNIQUE_MARGIN = 1e-6


def best_zone(weights: Mapping[str, float], adjacency: Mapping[str, Iterable[str]], k: int,
              time_limit_s: float | None = None) -> tuple[list[str], float]:
    """The connected set of `k` units with the largest total weight, solved exactly.

    When the connected sets of `k` units are few (at most `ENUMERATE_MAX_ZONES`:
    `connected_subsets`) and one of them beats every other by more than `UNIQUE_MARGIN`, that
    one is the MILP's optimum too and is returned without running the solver (~10-20 ms and a
    CBC process each; `geo-lead run` asks for about 30 zones); otherwise the MILP decides.

    Parameters
    ----------
    weights
        Unit name -> weight (records, expected encounters ...); units missing from
        `adjacency` are ignored, units of `adjacency` missing here weigh 0.
    adjacency
        Unit name -> adjacent unit names (see `queen_adjacency`).
    k
        Zone size (number of units), 1 <= k <= number of units.

    Returns
    -------
    names, total
        Sorted unit names of the optimal zone and its total weight.

    Raises
    ------
    ValueError
        k is out of range (a caller's error: callers choose k among the units).
    GeoLeadError
        No connected zone of k units exists.
    """
    nodes = sorted(adjacency)
    if not 1 <= k <= len(nodes):
        raise ValueError(f"zone size k={k} must be between 1 and the {len(nodes)} candidate units")
    unique = unique_best_zone(weights, adjacency, k)
    if unique is not None:
        return unique
    return _solved_best_zone(weights, adjacency, k, time_limit_s)


def unique_best_zone(weights: Mapping[str, float], adjacency: Mapping[str, Iterable[str]],
                     k: int) -> tuple[list[str], float] | None:
    """`best_zone`'s answer found by enumerating every connected set of `k` units, when there
    are at most `ENUMERATE_MAX_ZONES` and the best beats every other by more than
    `UNIQUE_MARGIN` x max(1, |its total|); else None (none, too many, or a tie)."""
    try:
        zones = connected_subsets(adjacency, k, limit=ENUMERATE_MAX_ZONES)
    except GeoLeadError:
        return None
    if not zones:
        return None
    totals = [float(sum(float(weights.get(n, 0.0)) for n in zone)) for zone in zones]
    best = max(range(len(zones)), key=totals.__getitem__)
    margin = UNIQUE_MARGIN * max(1.0, abs(totals[best]))
    if any(t >= totals[best] - margin for i, t in enumerate(totals) if i != best):
        return None
    chosen = sorted(zones[best])
    log.debug("best zone k=%d (of %d enumerated): %s (%.2f)", k, len(zones), chosen, totals[best])
    return chosen, float(sum(float(weights.get(n, 0.0)) for n in chosen))


def _solved_best_zone(weights: Mapping[str, float], adjacency: Mapping[str, Iterable[str]], k: int,
                      time_limit_s: float | None = None) -> tuple[list[str], float]:
    """`best_zone` by the MILP (CBC)."""
    import pulp

    nodes = sorted(adjacency)
    arcs = sorted({(a, b) for a in nodes for b in adjacency[a] if b in adjacency and a != b}
                  | {(b, a) for a in nodes for b in adjacency[a] if b in adjacency and a != b})
    idx = {n: i for i, n in enumerate(nodes)}
    prob = pulp.LpProblem("contiguous_zone", pulp.LpMaximize)
    new_var = _variable_factory(prob)
    x = {n: new_var(f"x_{idx[n]}", cat="Binary") for n in nodes}
    r = {n: new_var(f"r_{idx[n]}", cat="Binary") for n in nodes}
    f = {(a, b): new_var(f"f_{idx[a]}_{idx[b]}", lowBound=0) for a, b in arcs}
    prob += pulp.lpSum(float(weights.get(n, 0.0)) * x[n] for n in nodes)
    prob += pulp.lpSum(x.values()) == k
    prob += pulp.lpSum(r.values()) == 1
    inflow: dict[str, list[pulp.LpVariable]] = {n: [] for n in nodes}
    outflow: dict[str, list[pulp.LpVariable]] = {n: [] for n in nodes}
    for (a, b), var in f.items():
        outflow[a].append(var)
        inflow[b].append(var)
        prob += var <= (k - 1) * x[a]
        prob += var <= (k - 1) * x[b]
    for n in nodes:
        prob += r[n] <= x[n]
        prob += pulp.lpSum(inflow[n]) - pulp.lpSum(outflow[n]) >= x[n] - k * r[n]
    with warnings.catch_warnings():
        # PuLP 3.x announces PULP_CBC_CMD's removal in 4.0; it is still the bundled CBC.
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)
        status = prob.solve(solver)
    if pulp.LpStatus[status] != "Optimal":
        raise GeoLeadError(f"no connected zone of {k} neighborhoods among the {len(nodes)} candidates "
                           f"(solver status {pulp.LpStatus[status]})")
    chosen = sorted(n for n in nodes if (x[n].value() or 0) > 0.5)
    total = float(sum(float(weights.get(n, 0.0)) for n in chosen))
    log.debug("best zone k=%d: %s (%.2f)", k, chosen, total)
    return chosen, total


def _variable_factory(prob: pulp.LpProblem) -> Callable[..., pulp.LpVariable]:
    """``prob.add_variable`` on PuLP >= 3.3 (no deprecation warning), ``LpVariable`` before."""
    import pulp

    add = getattr(prob, "add_variable", None)
    if add is not None:
        return lambda name, lowBound=None, cat="Continuous": add(name, lowBound=lowBound, cat=cat)
    return lambda name, lowBound=None, cat="Continuous": pulp.LpVariable(name, lowBound=lowBound, cat=cat)


def is_connected(names: Iterable[str], adjacency: Mapping[str, Iterable[str]]) -> bool:
    """True when `names` form one connected piece of the adjacency graph."""
    todo = set(names)
    if not todo:
        return False
    start = next(iter(todo))
    seen, stack = {start}, [start]
    while stack:
        for nb in adjacency.get(stack.pop(), ()):
            if nb in todo and nb not in seen:
                seen.add(nb)
                stack.append(nb)
    return seen == todo
