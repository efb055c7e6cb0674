"""Zone-check speed: batch points/s, service latency over loopback, cold CLI time.

Run from the checkout:  python benchmarks/bench_zone.py [--points 5000000] [--requests 1000]
(``--cli-only`` times the two cold CLI calls alone).

Prints figures only (no assertions): the targets are >= 5,000,000 points/s for the batch
inside test, <= 0.5 s for a cold ``geo-lead zone check --lat --lon`` and < 0.6 s for a cold
``geo-lead zone check --address`` (pandas-free: `geo_lead.geocode.Geocoder.locate` on the
cached reference index). Each cold call is given as wall time and as CPU time (user + system
of the child): on a busy machine the wall time waits for a core, the CPU time does not. The
service loop is
bounded (N sequential requests, each with a 5 s timeout, 120 s overall) and stops the server
it started.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from geo_lead import settings  # noqa: E402
from geo_lead.zone import ZoneChecker  # noqa: E402


ADDRESS_ARGV = ["zone", "check", "--address", "2700 BLOCK W MADISON ST", "--json"]


def bench_batch(checker: ZoneChecker, n: int) -> None:
    rng = np.random.default_rng(settings.RANDOM_SEED)
    minx, miny, maxx, maxy = checker.zone.bounds
    west, south, east, north = settings.JEFFERSON_BBOX
    cases = {
        "uniform in the zone bounding box (hardest case: 56% inside, many near the edge)": (minx, miny, maxx, maxy),
        "Jefferson County bounding box": (west, south, east, north),
    }
    t = time.perf_counter()
    state, _ = checker._cell_grid()
    print(f"cell grid {state.shape[0]}x{state.shape[1]} built once in "
          f"{time.perf_counter() - t:.3f} s; {(state == 2).mean():.1%} of cells touch the boundary")
    for label, (x0, y0, x1, y1) in cases.items():
        lon = rng.uniform(x0, x1, n)
        lat = rng.uniform(y0, y1, n)
        for name, fn in (("ZoneChecker.inside_many (cell grid + exact test near the boundary)",
                          lambda lat=lat, lon=lon: checker.inside_many(lat, lon)),
                         ("plain shapely.intersects_xy on the prepared polygon",
                          lambda lat=lat, lon=lon: shapely.intersects_xy(checker.zone, lon, lat))):
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                inside = fn()
                best = min(best, time.perf_counter() - t)
            print(f"batch inside, {n:,} points, {label}, {name}: {n / best:,.0f} points/s "
                  f"(best of 3: {best:.3f} s, {inside.mean():.1%} inside)")
    m = min(n, 200_000)
    lon = rng.uniform(minx, maxx, m)
    lat = rng.uniform(miny, maxy, m)
    t = time.perf_counter()
    checker.check_many(lat, lon)
    dt = time.perf_counter() - t
    print(f"batch full answer (inside + distance_ft + neighborhood), {m:,} points in the zone "
          f"bounding box: {m / dt:,.0f} points/s ({dt:.3f} s)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_service(checker: ZoneChecker, n_requests: int) -> None:
    import httpx

    port = _free_port()
    code = ("import uvicorn; from geo_lead.zone_service import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, access_log=False, "
            "log_level='warning')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=5.0) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    print("service: server did not start")
                    return
                time.sleep(0.05)
            rng = np.random.default_rng(1)
            minx, miny, maxx, maxy = checker.zone.bounds
            for _ in range(50):  # warm-up, not timed
                client.get(f"{base}/zone", params={"lat": 38.2587, "lon": -85.7930})
            lat_ms = []
            stop_at = time.monotonic() + 120
            for _ in range(n_requests):
                params = {"lat": f"{rng.uniform(miny, maxy):.6f}", "lon": f"{rng.uniform(minx, maxx):.6f}"}
                t = time.perf_counter()
                r = client.get(f"{base}/zone", params=params)
                lat_ms.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    print(f"service: HTTP {r.status_code}: {r.text[:200]}")
                    return
                if time.monotonic() > stop_at:
                    break
        q = np.percentile(lat_ms, [50, 99])
        print(f"service GET /zone?lat&lon, {len(lat_ms):,} sequential requests on loopback "
              f"(keep-alive, one uvicorn worker): p50 {q[0]:.2f} ms, p99 {q[1]:.2f} ms, "
              f"max {max(lat_ms):.2f} ms")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def bench_cold_cli(runs: int, argv: list[str], label: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "geo_lead", *argv]
    how = "python -m geo_lead"
    if subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True).returncode != 0:
        # Other command modules may not exist yet on this branch: register zone alone.
        cmd = [sys.executable, "-c", "import sys; from geo_lead import cli; "
               "cli.COMMAND_MODULES = ('zone',); sys.exit(cli.main(sys.argv[1:]))", *argv]
        how = "cli.main with only the zone commands registered"
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            print(f"cold CLI failed: {proc.stderr.decode()[:300]}")
            return
    print(f"cold CLI `{label}` ({how}), {runs} runs: wall median {statistics.median(times):.3f} s, "
          f"min {min(times):.3f} s, max {max(times):.3f} s; CPU (user + sys) median "
          f"{statistics.median(cpu):.3f} s, min {min(cpu):.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--cli-runs", type=int, default=10)
    ap.add_argument("--cli-only", action="store_true", help="time the cold CLI calls only")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load:.1f} "
          "at start (figures from a busy machine are slower)")
    if not args.cli_only:
        checker = ZoneChecker()
        bench_batch(checker, args.points)
        bench_service(checker, args.requests)
    # once untimed: the reference index is built and cached on first use (by its hash)
    subprocess.run([sys.executable, "-m", "geo_lead", *ADDRESS_ARGV], cwd=ROOT, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    bench_cold_cli(args.cli_runs, ["zone", "check", "--lat", "38.2587", "--lon", "-85.7930", "--json"],
                   "zone check --lat --lon --json")
    bench_cold_cli(args.cli_runs, ADDRESS_ARGV, "zone check --address --json")


if __name__ == "__main__":
    main()
