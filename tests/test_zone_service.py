"""The zone service under a real uvicorn on loopback (started and stopped by the tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead.errors import GeocodeError
from geo_lead.zone import ZoneChecker
from geo_lead.zone_service import create_app, uvicorn_log_config

RUSSELL = (38.2587, -85.7930)  # the example coordinate, in Russell


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app: Any, *, access_log: bool = False, log_queries: bool = False) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=access_log,
                            log_config=uvicorn_log_config(log_queries), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class FakeGeocoder:
    def __init__(self, lat: float, lon: float) -> None:
        self.lat, self.lon = lat, lon

    def geocode(self, addresses: list[str], zips: list[str | None]) -> pd.DataFrame:
        if "NOWHERE" in addresses[0]:
            return pd.DataFrame({"lon": [np.nan], "lat": [np.nan], "match_type": ["unmatched"],
                                 "score": [0.0], "matched_address": [None],
                                 "reason": ["street not in the reference"]})
        return pd.DataFrame({"lon": [self.lon], "lat": [self.lat], "match_type": ["interpolated"],
                             "score": [0.95], "matched_address": ["2700 W MADISON ST"],
                             "reason": [""]})


@pytest.fixture(scope="module")
def checker() -> ZoneChecker:
    return ZoneChecker()


@pytest.fixture(scope="module")
def base_url(checker: ZoneChecker) -> Iterator[str]:
    app = create_app(checker, geocoder=FakeGeocoder(*RUSSELL))
    with running(app) as url:
        yield url


def test_healthz(base_url: str, checker: ZoneChecker) -> None:
    r = httpx.get(f"{base_url}/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["zone_version"] == checker.zone_version


@pytest.mark.parametrize("lat,lon", [RUSSELL, (38.2634, -85.8179), (38.2776, -85.7372)])
def test_coordinate_answer_is_the_library_answer(base_url: str, checker: ZoneChecker,
                                                 lat: float, lon: float) -> None:
    r = httpx.get(f"{base_url}/zone", params={"lat": lat, "lon": lon})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == checker.check(lat, lon).to_dict()


def test_address_answer(base_url: str) -> None:
    r = httpx.get(f"{base_url}/zone", params={"address": "2700 BLOCK W MADISON ST"})
    assert r.status_code == 200
    body = r.json()
    assert body["inside"] is True and body["neighborhood"] == "RUSSELL"
    assert body["match_type"] == "interpolated"
    assert (body["lat"], body["lon"]) == pytest.approx(RUSSELL)


@pytest.mark.parametrize("params,match", [
    ({"lat": "abc", "lon": "-85.79"}, "not a number"),
    ({"lat": "98", "lon": "-85.79"}, "out of range"),
    ({"lat": "38.25", "lon": "-190"}, "out of range"),
    ({"lat": "38.25"}, "longitude (lon) is missing"),
    ({"lat": "", "lon": ""}, "missing"),
    ({}, "missing parameters"),
    ({"lat": "38.25", "lon": "-85.79", "address": "1 MAIN ST"}, "not both"),
    ({"address": "1 NOWHERE RD"}, "could not be located"),
    ({"address": "  "}, "empty"),
    ({"lat": "NaN", "lon": "-85.79"}, "out of range"),
])
def test_bad_parameters_are_422_with_a_message(base_url: str, params: dict, match: str) -> None:
    r = httpx.get(f"{base_url}/zone", params=params)
    assert r.status_code == 422
    assert match in r.json()["detail"]


def test_no_geocoder_is_503(checker: ZoneChecker, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise GeocodeError("address lookup needs the offline geocoder")

    monkeypatch.setattr("geo_lead.zone_service.default_geocoder", missing)
    with running(create_app(checker)) as url:
        r = httpx.get(f"{url}/zone", params={"address": "2700 BLOCK W MADISON ST"})
        assert r.status_code == 503 and "geocoder" in r.json()["detail"]
        # coordinates still answer without a geocoder
        assert httpx.get(f"{url}/zone", params={"lat": RUSSELL[0], "lon": RUSSELL[1]}).status_code == 200


def test_page_is_mobile_friendly_html(base_url: str) -> None:
    r = httpx.get(f"{base_url}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'name="viewport"' in html and "Use my location" in html and 'id="address"' in html
    assert '"service"' in html


def test_queries_are_not_logged_by_default(checker: ZoneChecker,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    """What the server writes (uvicorn's handlers go to stdout/stderr) has no location."""
    with running(create_app(checker)) as url:
        assert httpx.get(f"{url}/zone", params={"lat": "38.2587", "lon": "-85.7930"}).status_code == 200
    out = capfd.readouterr()
    assert "Uvicorn running" in out.err  # the server did log, just not the query
    assert "38.2587" not in out.out + out.err


def test_log_queries_option_logs_them(checker: ZoneChecker,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    with running(create_app(checker, log_queries=True), access_log=True, log_queries=True) as url:
        assert httpx.get(f"{url}/zone", params={"lat": "38.2587", "lon": "-85.7930"}).status_code == 200
    out = capfd.readouterr()
    assert "zone query lat=38.2587" in out.err
    assert '"GET /zone?lat=38.2587&lon=-85.7930 HTTP/1.1" 200' in out.out  # uvicorn access log


@pytest.mark.browser
def test_service_page_use_my_location_and_address(browser: Any, base_url: str) -> None:
    """Chromium on the served page with a mocked GPS fix (Playwright geolocation)."""
    context = browser.new_context(geolocation={"latitude": 38.2634, "longitude": -85.8179,
                                               "accuracy": 10})
    context.grant_permissions(["geolocation"], origin=base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The page runs under its Content-Security-Policy: any violation is logged to the console.
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{base_url}/")
        page.click("#locate")
        page.wait_for_selector("#answer.outside")  # a selector: the page's CSP forbids eval
        assert "SHAWNEE" in page.inner_text("#detail")
        page.fill("#address", "2700 BLOCK W MADISON ST")
        page.click("#address-form button")
        page.wait_for_selector("#answer.inside")  # a selector: the page's CSP forbids eval
        assert "RUSSELL" in page.inner_text("#detail")
        assert "interpolated" in page.inner_text("#how")
        page.fill("#address", "1 NOWHERE RD")
        page.click("#address-form button")
        page.wait_for_selector("#answer.error")  # a selector: the page's CSP forbids eval
        assert "could not be located" in page.inner_text("#detail")
        assert errors == []
    finally:
        context.close()


# --- never a 500: arbitrary query text (real uvicorn, real offline geocoder) ------------

@pytest.fixture(scope="module")
def real_client(checker: ZoneChecker):
    geocode = pytest.importorskip("geo_lead.geocode")
    with running(create_app(checker, geocoder=geocode.Geocoder())) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        yield client


_text = st.one_of(st.text(max_size=60), st.from_regex(r"[0-9]{1,5} (BLOCK )?[NSEW]? ?[A-Z0-9 ]{1,20}",
                                                       fullmatch=True))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=_text, zip_code=st.one_of(st.none(), st.text(max_size=8)))
def test_any_address_text_is_200_or_422(real_client, address: str, zip_code: str | None) -> None:
    params = {"address": address} | ({"zip": zip_code} if zip_code is not None else {})
    r = real_client.get("/zone", params=params)
    assert r.status_code in (200, 422), r.text
    assert isinstance(r.json(), dict)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lat=st.one_of(st.text(max_size=20), st.floats().map(repr)),
       lon=st.one_of(st.text(max_size=20), st.floats().map(repr)))
def test_any_coordinate_text_is_200_or_422(real_client, lat: str, lon: str) -> None:
    r = real_client.get("/zone", params={"lat": lat, "lon": lon})
    assert r.status_code in (200, 422), r.text


def test_cli_zone_serve_starts_answers_and_stops(tmp_path) -> None:
    """``geo-lead zone serve`` as a user runs it (own process, loopback, free port)."""
    import os
    import subprocess
    import sys

    from geo_lead import settings

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(settings.PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "geo_lead", "zone", "serve", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.json()["status"] == "ok"
        z = httpx.get(f"http://127.0.0.1:{port}/zone", params={"lat": "38.2587", "lon": "-85.7930"})
        assert z.json()["inside"] is True
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert "query logging off" in err
    assert "38.2587" not in out + err  # no query logging by default


# --- issue 17: security headers, HEAD, repeated parameters, echoed input, swapped pairs -----
def test_service_sends_security_headers(base_url: str) -> None:
    import base64
    import hashlib
    import re

    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", page.text, re.DOTALL).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for resp in (page, httpx.get(f"{base_url}/zone?lat=38.2587&lon=-85.7930"), httpx.get(f"{base_url}/healthz"),
                 httpx.get(f"{base_url}/zone?lat=x&lon=1")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_service_answers_head(base_url: str) -> None:
    for url in ("/", "/healthz", "/zone?lat=38.2587&lon=-85.7930"):
        resp = httpx.head(f"{base_url}{url}")
        assert resp.status_code == 200, url
        assert resp.content == b""


def test_service_refuses_repeated_parameters(base_url: str) -> None:
    resp = httpx.get(f"{base_url}/zone?lat=38.2587&lat=10&lon=-85.7930")
    assert resp.status_code == 422 and "'lat' given 2 times" in resp.json()["detail"]


def test_service_truncates_echoed_input(base_url: str) -> None:
    resp = httpx.get(f"{base_url}/zone", params={"lat": "9" * 10_000 + "x", "lon": "-85.79"})
    assert resp.status_code == 422
    assert len(resp.json()["detail"]) <= 300 and "not a number" in resp.json()["detail"]


def test_service_says_swapped(base_url: str) -> None:
    resp = httpx.get(f"{base_url}/zone?lat=-85.7930&lon=38.2587")
    assert resp.status_code == 422
    assert "far outside Jefferson County — swapped?" in resp.json()["detail"]
