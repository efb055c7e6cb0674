"""Geocoder accuracy (seeded 20% hold-out) and throughput. Prints figures; asserts nothing.

Run: ``python benchmarks/bench_geocode.py`` from the project root (about a minute);
``--beats`` for the hold-out and the beat agreement of the 2016-2019 records only.

Accuracy: 20% of the shipped address points and of the Census matches are removed from the
reference, and the removed addresses are geocoded with the rest; intersections are measured
by dropping the signalized-intersection table and estimating those crossings from the street
reference alone. Error = distance from the true point, in metres.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geo_lead import settings
from geo_lead.geocode import Geocoder, Street, parse_address
from geo_lead.geocode.reference import build_reference, load_reference, to_projected

REF = settings.REFERENCE_DIR
OA = REF / "openaddresses_jefferson_sample.csv"
CENSUS = REF / "census_geocoder_block_addresses.csv"
SIGNALS = REF / "signalized_intersections.csv"


def _errors_m(res: pd.DataFrame, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    ok = res["lon"].notna().to_numpy()
    x1, y1 = to_projected(res["lon"].to_numpy()[ok], res["lat"].to_numpy()[ok])
    x2, y2 = to_projected(lon[ok], lat[ok])
    return np.hypot(x1 - x2, y1 - y2) * settings.M_PER_FT


def _report(label: str, res: pd.DataFrame, lon: np.ndarray, lat: np.ndarray) -> None:
    err = _errors_m(res, lon, lat)
    rate = 100.0 * res["lon"].notna().mean()
    types = res["match_type"].value_counts().to_dict()
    print(f"{label}: n={len(res):,}  matched={rate:.1f}%  median error={np.median(err):.0f} m  "
          f"p90 error={np.percentile(err, 90):.0f} m  by type={types}")


def _density(label: str, g: Geocoder, addresses: pd.Series, lon: np.ndarray, lat: np.ndarray) -> None:
    """How sparse the reference is around the held-out addresses (independent of the matcher).

    For each held-out address whose street (same key) is still in the reference: the distance
    from its true point to the nearest remaining point of that street, any number. Interpolation
    can beat this figure, but it says how far apart the known points are.
    """
    ref = g.ref
    x, y = to_projected(lon, lat)
    dist: list[float] = []
    for i, text in enumerate(addresses):
        p = parse_address(text)
        sid = ref.key_to_id.get(p.street.key) if p.street is not None else None
        if sid is None:
            continue
        sl = slice(int(ref.offsets[sid]), int(ref.offsets[sid + 1]))
        dist.append(float(np.hypot(ref.pt_x[sl] - x[i], ref.pt_y[sl] - y[i]).min()))
    d = np.asarray(dist) * settings.M_PER_FT
    print(f"  reference density ({label}): {d.size:,} held-out addresses whose street is still known; "
          f"nearest known point of the same street: median {np.median(d):.0f} m, p90 {np.percentile(d, 90):.0f} m")


def _street_of(text: str) -> Street | None:
    """The street an address text names (None for intersections, places, junk)."""
    p = parse_address(text)
    return p.street if p.kind in ("address", "block") and p.street is not None and p.street.name else None


def _compatible(q: Street, s: Street) -> bool:
    """Same name, and no stated direction or type that disagrees (what the matcher accepts)."""
    return q.name == s.name and all(not a or not b or a == b for a, b in (
        (q.predir, s.predir), (q.stype, s.stype), (q.postdir, s.postdir)))


def _known_levels(q: Street | None, count: Any, by_name: dict[str, list[Street]],
                  own: set[Street] = frozenset()) -> tuple[bool, bool, bool]:
    """Is `q` in the reference: same key / compatible parts / same name, not counting `own`."""
    if q is None:
        return False, False, False
    others = [(s, count(s) - (s in own)) for s in by_name.get(q.name, [])]
    return (any(n >= 1 for s, n in others if s == q),
            any(n >= 1 for s, n in others if _compatible(q, s)),
            any(n >= 1 for _, n in others))


def _ceiling(label: str, g: Geocoder, res: pd.DataFrame, addresses: pd.Series,
             lon: np.ndarray, lat: np.ndarray) -> None:
    """What the hold-out could reach at best: addresses whose street is still in the reference.

    A held-out address whose street has no point left can only be guessed: the match rate is
    put next to the share whose street is still there (same key; or compatible: same name
    with no stated direction/type that disagrees, which the matcher accepts; or any type and
    direction), and the median error is also given over the compatible-street addresses.
    Fuzzy names and the same-named-street fallback can match a little above that share.
    """
    ref = g.ref
    by_name = {nm: [ref.street_parts[i] for i in ids] for nm, ids in ref.name_to_ids.items()}
    levels = np.array([_known_levels(_street_of(t), lambda s: 1, by_name) for t in addresses], bool)
    ok = res["lon"].notna().to_numpy()
    err = np.full(len(res), np.nan)
    err[ok] = _errors_m(res, lon, lat)
    known = levels[:, 1]
    kerr = err[known & ok]
    print(f"  ceiling ({label}): matched {100 * ok.mean():.1f}% of a possible {100 * known.mean():.1f}% "
          f"(street still in the reference; same key {100 * levels[:, 0].mean():.1f}%, any type or "
          f"direction {100 * levels[:, 2].mean():.1f}%); of the known-street addresses "
          f"{100 * ok[known].mean():.1f}% matched, median error {np.nanmedian(kerr):.0f} m, "
          f"p90 {np.nanpercentile(kerr, 90):.0f} m")


def _leave_one_out(oa: pd.DataFrame, cen: pd.DataFrame) -> None:
    """Over the whole shipped reference: the share of addresses whose street occurs in another row.

    Independent of the seed: the hold-out match-rate ceiling in expectation (an address is
    only placeable when some other reference row names its street). Census rows contribute
    their matched street and, like the index, the input's spelling when it differs.
    """
    from collections import Counter

    from geo_lead.geocode.reference import _input_aliases, _parse_unique

    match = cen[cen["status"] == "Match"]
    oa_q = [_street_of(t) for t in oa["street"]]
    contrib: list[set[Street]] = [{q} if q is not None else set() for q in oa_q]
    codes, parsed = _parse_unique(match["m_address"].astype(str))
    aliases = _input_aliases(match["o_address"].astype(str), codes, parsed)
    for c, alias in zip(codes, aliases, strict=True):
        st = parsed[c].street if parsed[c].kind == "address" else None
        contrib.append({s for s in (st, alias) if s is not None and s.name})
    counts = Counter(s for row in contrib for s in row)
    by_name: dict[str, list[Street]] = {}
    for s in counts:
        by_name.setdefault(s.name, []).append(s)
    queries = oa_q + [_street_of(t) for t in match["o_address"]]
    for label, lo, hi in (("address points", 0, len(oa_q)), ("Census matches", len(oa_q), len(queries))):
        lv = np.array([_known_levels(queries[i], counts.__getitem__, by_name, contrib[i])
                       for i in range(lo, hi)], bool)
        print(f"  leave-one-out over the whole shipped reference ({label}, n={hi - lo:,}): street in "
              f"another row {100 * lv[:, 1].mean():.1f}% (same key {100 * lv[:, 0].mean():.1f}%, any type "
              f"or direction {100 * lv[:, 2].mean():.1f}%)")


def _intersection_ceiling(res: pd.DataFrame) -> None:
    reason = res["reason"].where(res["match_type"] == "unmatched", "")
    interstate = reason.str.startswith("interstate").sum()
    no_street = reason.str.startswith("no such street").sum()
    apart = reason.str.startswith("the two streets do not meet").sum()
    n = len(res)
    possible = n - interstate - no_street
    print(f"  ceiling (intersections): {interstate:,} interstate/ramp crossings without geometry, "
          f"{no_street:,} naming a street absent from the reference, {apart:,} whose streets do not meet "
          f"in the reference; matched {100 * res['lon'].notna().mean():.1f}% of a possible "
          f"{100 * possible / n:.1f}% (those with both streets' geometry)")


def _by_reason(res: pd.DataFrame, lon: np.ndarray, lat: np.ndarray) -> None:
    ok = res["lon"].notna().to_numpy()
    err = _errors_m(res, lon, lat)
    reason = res.loc[ok, "reason"]
    how = reason.str.replace(r"\d+", "N", regex=True).str.replace(r"(;| \().*", "", regex=True)
    how = how.mask(reason.str.contains("same-named"), "same-named street of another type")
    frame = pd.DataFrame({"how": how.to_numpy(), "err": err})
    parts = [f"{k} n={len(v):,} median {v.median():.0f} m" for k, v in
             sorted(frame.groupby("how")["err"], key=lambda kv: -len(kv[1]))[:6]]
    print("  by method:", "; ".join(parts))


def holdout(seed: int) -> None:
    rng = np.random.default_rng(seed)
    oa = pd.read_csv(OA, dtype=str, keep_default_na=False)
    cen = pd.read_csv(CENSUS, dtype=str, keep_default_na=False)
    sig = pd.read_csv(SIGNALS, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    oa_out = rng.random(len(oa)) < 0.2
    match = (cen["status"] == "Match").to_numpy()
    cen_out = match & (rng.random(len(cen)) < 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        oa[~oa_out].to_csv(t / "oa.csv", index=False)
        cen[~cen_out].to_csv(t / "census.csv", index=False)
        sig.to_csv(t / "signals.csv", index=False)
        g = Geocoder(build_reference([t / "oa.csv", t / "census.csv", t / "signals.csv"]))
        held = oa[oa_out]
        res = g.geocode(held["street"].tolist(), held["postcode"].str[:5].tolist())
        lon, lat = held["longitude"].astype(float).to_numpy(), held["latitude"].astype(float).to_numpy()
        _report("held-out address points (target >=95% matched, median <=50 m)", res, lon, lat)
        _by_reason(res, lon, lat)
        _ceiling("address points", g, res, held["street"], lon, lat)
        _density("address points", g, held["street"], lon, lat)
        held = cen[cen_out]
        res = g.geocode(held["o_address"].tolist(), held["o_zip"].tolist())
        lon, lat = held["long"].astype(float).to_numpy(), held["lat"].astype(float).to_numpy()
        _report("held-out Census matches (target >=92% matched, median <=60 m)", res, lon, lat)
        _by_reason(res, lon, lat)
        _ceiling("Census matches", g, res, held["o_address"], lon, lat)
        _density("Census matches", g, held["o_address"], lon, lat)
    _leave_one_out(oa, cen)
    g = Geocoder(build_reference([OA, CENSUS]))  # no intersection table
    queries = (sig["MAINSTREET"] + " / " + sig["CROSSSTREET"]).tolist()
    res = g.geocode(queries)
    _report("signalized intersections from streets alone (target >=90%, median <=60 m)", res,
            pd.to_numeric(sig["X"]).to_numpy(), pd.to_numeric(sig["Y"]).to_numpy())
    ramp = sig["CROSSSTREET"].str.contains(r"\bI \d|RAMP", regex=True) | sig["MAINSTREET"].str.contains(
        r"\bI \d|RAMP", regex=True)
    res2 = res[~ramp.to_numpy()]
    _report("  ... of which not interstate ramps", res2,
            pd.to_numeric(sig["X"]).to_numpy()[~ramp.to_numpy()],
            pd.to_numeric(sig["Y"]).to_numpy()[~ramp.to_numpy()])
    _intersection_ceiling(res)
    print("  unmatched reasons:", res.loc[res["match_type"] == "unmatched", "reason"].str[:45]
          .value_counts().head(4).to_dict())


def records_rate() -> None:
    g = Geocoder()
    for name in ("crime_data_2017_drug_sample.csv", "crime_data_2016_drug_sample.csv"):
        d = pd.read_csv(settings.SHIPPED_DATA_DIR / "lmpd" / name, dtype=str, keep_default_na=False)
        res = g.geocode(d["BLOCK_ADDRESS"].tolist(), d["ZIP_CODE"].tolist())
        rate = 100.0 * res["lon"].notna().mean()
        print(f"shipped {name}: {len(d):,} records, geocoded {rate:.1f}% (target >=93% for 2017); "
              f"by type {res['match_type'].value_counts().to_dict()}")
        um = res[res["match_type"] == "unmatched"]["reason"].str.replace(r":.*", "", regex=True)
        print("  unmatched by reason:", um.value_counts().to_dict())


def division_agreement() -> None:
    """Independent check: LMPD's own division on each record vs where the geocode puts it."""
    import geopandas as gpd

    if not settings.NEIGHBORHOODS_FILE.exists():
        print("first-division check skipped: no", settings.NEIGHBORHOODS_FILE)
        return
    # LMPD's published description (not the records-derived polygon, which used geocodes)
    nh = gpd.read_file(settings.NEIGHBORHOODS_FILE).to_crs(settings.CRS_PROJECTED)
    described = nh[nh["NH_NAME"].isin(settings.FIRST_DIVISION_DESCRIBED)]
    zone = described.union_all().buffer(500)  # 500 ft: boundary streets (Broadway) count
    g = Geocoder()
    for name in ("crime_data_2016_drug_sample.csv", "crime_data_2017_drug_sample.csv"):
        d = pd.read_csv(settings.SHIPPED_DATA_DIR / "lmpd" / name, dtype=str, keep_default_na=False)
        first = d[d["LMPD_DIVISION"].str.upper().str.startswith("1ST")]
        res = g.geocode(first["BLOCK_ADDRESS"].tolist(), first["ZIP_CODE"].tolist())
        ok = res["lon"].notna().to_numpy()
        x, y = to_projected(res["lon"].to_numpy()[ok], res["lat"].to_numpy()[ok])
        inside = gpd.GeoSeries(gpd.points_from_xy(x, y), crs=settings.CRS_PROJECTED).within(zone)
        print(f"{name}: {len(first):,} records LMPD files under 1ST DIVISION, {ok.sum():,} geocoded, "
              f"{100.0 * inside.mean():.1f}% of those inside LMPD's described First Division "
              f"({', '.join(settings.FIRST_DIVISION_DESCRIBED)}; +500 ft)")


def _lmpd_files() -> list[Path]:
    """The shipped 2016-2019 LMPD samples: the project's data/lmpd, else ../shared/data/lmpd."""
    names = [f"crime_data_{y}_drug_sample.csv" for y in (2016, 2017, 2018, 2019)]
    dirs = [settings.SHIPPED_DATA_DIR / "lmpd"] + [p / "shared" / "data" / "lmpd" for p in settings.PROJECT_ROOT.parents]
    out = []
    for name in names:
        found = next((d / name for d in dirs if (d / name).exists()), None)
        if found is None:
            print(f"  (no {name} in data/lmpd or ../shared/data/lmpd: left out)")
        else:
            out.append(found)
    return out


def beat_agreement() -> None:
    """Beat agreement by match type on the 2016-2019 records, without and with their beats.

    Each record names its LMPD beat; the share of placed records whose point lies in it
    (``same``), in a beat touching it (``adjacent``) or elsewhere (``other``), by match type,
    over the records whose beat has a polygon. "without" geocodes address + ZIP only (the
    matcher before the beat chose among candidates); "with" passes the beat too.
    """
    from geo_lead.geocode.beat_check import checks_for, rates_table, shipped_index

    index = shipped_index()
    if index is None:
        print("beat agreement skipped: no boundaries/lmpd_beats.geojson")
        return
    frames = []
    for path in _lmpd_files():
        d = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames.append(d[["BLOCK_ADDRESS", "ZIP_CODE", "LMPD_BEAT"]].assign(file=path.name))
    if not frames:
        return
    d = pd.concat(frames, ignore_index=True)
    print(f"beat agreement on {len(d):,} shipped 2016-2019 records ({', '.join(f.name for f in _lmpd_files())}):")
    results = {}
    for label, beats in (("without beats", None), ("with beats", d["LMPD_BEAT"].tolist())):
        g = Geocoder()
        res = g.geocode(d["BLOCK_ADDRESS"].tolist(), d["ZIP_CODE"].tolist(), beats=beats)
        checks = checks_for(res["lon"].to_numpy(float), res["lat"].to_numpy(float), d["LMPD_BEAT"], index)
        tally = pd.DataFrame({"match_type": res["match_type"], "beat_check": checks}).dropna()
        table = rates_table(tally.groupby(["match_type", "beat_check"]).size().rename("records").reset_index())
        results[label] = (res, table)
        print(f"  {label}: placed {100 * res['lon'].notna().mean():.1f}%")
        for row in table.itertuples(index=False):
            share = "n/a" if not row.checked else f"{100 * row.same_share:.2f}%"
            print(f"    {row.match_type:>13}: same {share} of {row.checked:,} (adjacent {row.adjacent:,}, "
                  f"other {row.other:,}; no beat polygon {row.no_beat:,})")
    a, b = results["without beats"][0], results["with beats"][0]
    moved = (a["match_type"] != b["match_type"]) | ~np.isclose(a["lon"].fillna(0), b["lon"].fillna(0), atol=1e-7, rtol=0) \
        | ~np.isclose(a["lat"].fillna(0), b["lat"].fillna(0), atol=1e-7, rtol=0)
    print(f"  the beat changed the answer of {int(moved.sum()):,} records "
          f"({b.loc[moved, 'input'].nunique():,} distinct addresses)")


def throughput() -> None:
    import os

    print(f"machine load average (other processes share the 2 cores): {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    load_reference()
    print(f"reference index load (cached pickle): {time.perf_counter() - t0:.3f} s")
    frames = [pd.read_csv(settings.SHIPPED_DATA_DIR / "lmpd" / n, dtype=str, keep_default_na=False)
              for n in ("crime_data_2016_drug_sample.csv", "crime_data_2017_drug_sample.csv")]
    blocks = pd.read_csv(settings.SHIPPED_DATA_DIR / "lmpd" / "block_address_crime_counts_2009_2017.csv",
                         dtype=str, keep_default_na=False)
    oa = pd.read_csv(OA, dtype=str, keep_default_na=False)
    uniq = pd.unique(pd.concat([f["BLOCK_ADDRESS"] for f in frames] + [blocks["BLOCK_ADDRESS"], oa["street"]]))
    g = Geocoder()
    parse_address.cache_clear()
    t0, c0 = time.perf_counter(), time.process_time()
    g.geocode(list(uniq))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(f"cold: {len(uniq):,} unique addresses in {dt:.2f} s wall / {dc:.2f} s CPU = "
          f"{len(uniq) / dt:,.0f} addresses/s wall, {len(uniq) / dc:,.0f} per CPU-second (target >=5,000/s)")
    rec = pd.concat(frames)["BLOCK_ADDRESS"].tolist() * 250
    zips = pd.concat(frames)["ZIP_CODE"].tolist() * 250
    t0, c0 = time.perf_counter(), time.process_time()
    g.geocode(rec, zips)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(f"warm (in-memory memo): {len(rec):,} records in {dt:.2f} s wall / {dc:.2f} s CPU = "
          f"{len(rec) / dt:,.0f} records/s wall, {len(rec) / dc:,.0f} per CPU-second (target >=200,000/s)")
    _store_throughput(g, frames)


def _store_throughput(g: Geocoder, frames: list[pd.DataFrame]) -> None:
    from geo_lead.geocode import geocode_store
    from geo_lead.geocode.cache import cache_keys
    from geo_lead.store import opened

    base = pd.concat(frames, ignore_index=True)
    reps = 50
    n = len(base) * reps
    recs = pd.DataFrame({
        "record_id": [f"bench-{i}" for i in range(n)],
        "address_raw": np.tile(base["BLOCK_ADDRESS"].to_numpy(), reps),
        "zip": np.tile(base["ZIP_CODE"].to_numpy(), reps),
        "content_hash": "x",
    })
    with tempfile.TemporaryDirectory() as tmp, opened(Path(tmp) / "bench.gpkg") as store:
        with store.write():
            store.upsert_records(recs, "2024-01-01T00:00:00Z")
        t0 = time.perf_counter()
        c1 = geocode_store(store, g)
        t1, p1 = time.perf_counter(), time.process_time()
        c2 = geocode_store(store, g, only_missing=False)
        t2, p2 = time.perf_counter(), time.process_time()
        print(f"geocode_store first run: {c1['records']:,} records, {c1['addresses_new']:,} distinct "
              f"addresses geocoded, in {t1 - t0:.2f} s")
        print(f"geocode_store rerun, nothing changed: {c2['records']:,} records "
              f"({c2['geocoded_from_cache']:,} from cache, {c2['records_written']:,} written) in {t2 - t1:.2f} s = "
              f"{c2['records'] / (t2 - t1):,.0f} records/s wall, {c2['records'] / (p2 - p1):,.0f} per CPU-second")
        with store.write():  # records without points again, the cache kept: every record is written
            store.conn.execute("UPDATE records SET lon=NULL, lat=NULL, match_type=NULL, score=NULL, "
                               "matched_address=NULL, geocode_reason=NULL, geom=NULL")
        t3, p3 = time.perf_counter(), time.process_time()
        c3 = geocode_store(store, g)
        t4, p4 = time.perf_counter(), time.process_time()
        print(f"geocode_store through the warm store cache, every record written: {c3['records']:,} records "
              f"({c3['geocoded_from_cache']:,} from cache, {c3['records_written']:,} written) in {t4 - t3:.2f} s = "
              f"{c3['records'] / (t4 - t3):,.0f} records/s wall, {c3['records'] / (p4 - p3):,.0f} per CPU-second "
              "(Store.update_records dominates)")
        t0 = time.perf_counter()
        keys = cache_keys(recs["address_raw"], recs["zip"])
        cached = store.read_table("geocode_cache", ["key", "lon", "lat"]).set_index("key")
        looked = cached.reindex(keys)
        dt = time.perf_counter() - t0
        print(f"warm cache lookup alone (keys + cache table read + join): {len(looked):,} records in "
              f"{dt:.2f} s = {len(looked) / dt:,.0f} records/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=settings.RANDOM_SEED)
    ap.add_argument("--holdout-only", action="store_true", help="only the accuracy hold-out (a few seconds)")
    ap.add_argument("--beats", action="store_true",
                    help="only the hold-out and the beat agreement of the 2016-2019 records")
    args = ap.parse_args()
    print(f"seed {args.seed}")
    holdout(args.seed)
    if args.holdout_only:
        return
    beat_agreement()
    if args.beats:
        return
    records_rate()
    division_agreement()
    throughput()


if __name__ == "__main__":
    main()
