"""HTTP zone check: FastAPI app factory (``geo-lead zone serve`` runs it under uvicorn).

Endpoints
---------
``GET /zone?lat=38.2587&lon=-85.7930`` or ``GET /zone?address=...&zip=...``
    The same JSON as ``geo-lead zone check --json``. Bad or missing parameters -> 422 with
    ``{"detail": "<message>"}``; no geocoder in this build -> 503.
``GET /healthz``
    ``{"status": "ok", "zone_version": ...}``.
``GET /``
    The mobile page (``geo_lead.zone_page`` in ``service`` mode): "use my location", an
    address box and a coordinate box.

Every answer carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy`` that allows no framing
(``frame-ancestors 'none'``) and, on the page, only its own inline script and style (by
their SHA-256 hashes) and requests to this service. HEAD is answered like GET without a
body. A parameter given twice (``?lat=1&lat=2``) is refused (422), not silently resolved;
messages quote at most `ECHO_MAX_CHARS` characters of what was sent.

Privacy: queried locations are not logged. Uvicorn's access log (which would record every
query string) is off unless ``--log-queries``; with it, each answer is also logged by
``geo_lead.zone_service`` at INFO. Answers carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from geo_lead.errors import GeocodeError, GeoLeadError, ZoneInputError
from geo_lead.zone import (
    BatchGeocoder,
    Locator,
    ZoneChecker,
    check_address,
    default_geocoder,
    parse_coordinate,
)

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}
#: Longest error message returned (the user's input is quoted in it, at most this long).
ECHO_MAX_CHARS = 300
#: Headers every answer carries (the page's own CSP is built from its content).
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def page_csp(html: str) -> str:
    """The Content-Security-Policy for the page: its inline scripts and styles by hash."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    return ("default-src 'none'; "
            f"script-src {' '.join(hashes['script']) or chr(39) + 'none' + chr(39)}; "
            f"style-src {' '.join(hashes['style']) or chr(39) + 'none' + chr(39)}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def _cap(message: str) -> str:
    return message if len(message) <= ECHO_MAX_CHARS else message[:ECHO_MAX_CHARS - 1] + "…"


@dataclass
class _Service:
    """What the app builds once and reuses: the geocoder (on the first address query) and the
    page with its Content-Security-Policy (on the first page request)."""

    checker: ZoneChecker
    geocoder: Locator | BatchGeocoder | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    page: tuple[str, str] | None = None  #: (html, csp)

    def get_geocoder(self) -> Locator | BatchGeocoder:
        with self.lock:  # build the (possibly slow to load) geocoder once
            if self.geocoder is None:
                self.geocoder = default_geocoder()
            return self.geocoder

    def get_page(self) -> tuple[str, str]:
        if self.page is None:
            from geo_lead.zone_page import render_page

            html = render_page(self.checker, "service")
            self.page = (html, page_csp(html))
        return self.page


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": _cap(message)}, status_code=status, headers=_NO_STORE)


def _repeated(request: Request) -> JSONResponse | None:
    """422 for a parameter given more than once (``?lat=1&lat=2``), else None."""
    keys = [k for k, _ in request.query_params.multi_items()]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if not repeated:
        return None
    return _error(422, f"parameter {_cap(repeated[0])[:40]!r} given {keys.count(repeated[0])} "
                       "times; give each parameter once.")


async def _answer(service: _Service, lat: str | None, lon: str | None, address: str | None,
                  zip_code: str | None) -> dict[str, Any]:
    """The zone answer for a coordinate pair or an address; ZoneInputError for a bad query."""
    has_coord = lat is not None or lon is not None
    if has_coord and address is not None:
        raise ZoneInputError("give either lat and lon, or address, not both.")
    if has_coord:
        return service.checker.check(parse_coordinate(lat, "lat"),
                                     parse_coordinate(lon, "lon")).to_dict()
    if address is not None:
        geo = await run_in_threadpool(service.get_geocoder)
        return await run_in_threadpool(check_address, service.checker, address, zip_code, geo)
    raise ZoneInputError("missing parameters: give lat and lon "
                         "(/zone?lat=38.2587&lon=-85.7930) or address "
                         "(/zone?address=2700+BLOCK+W+MADISON+ST).")


def create_app(checker: ZoneChecker | None = None, *,
               geocoder: Locator | BatchGeocoder | None = None,
               log_queries: bool = False) -> FastAPI:
    """Build the zone-check web app.

    Parameters
    ----------
    checker
        The zone checker (default: the pilot zone, ``ZoneChecker()``).
    geocoder
        A `geo_lead.geocode.Geocoder` or anything with ``geocode(addresses, zips)`` (see
        `geo_lead.zone.check_address`); default ``geo_lead.geocode.Geocoder()``, created on
        the first address query and reused.
    log_queries
        Log each queried location and its answer at INFO (off by default for privacy).

    Returns
    -------
    FastAPI
    """
    service = _Service(checker or ZoneChecker(), geocoder)
    checker = service.checker
    app = FastAPI(title="LEAD pilot zone check", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.middleware("http")
    async def _security_headers(request: Request,
                                call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "zone": checker.zone_name, "members": list(checker.members),
                "zone_version": checker.zone_version}

    @app.api_route("/zone", methods=["GET", "HEAD"])
    async def zone(request: Request, lat: str | None = None, lon: str | None = None,
                   address: str | None = None, zip: str | None = None) -> JSONResponse:
        refused = _repeated(request)
        if refused is not None:
            return refused
        try:
            answer = await _answer(service, lat, lon, address, zip)
        except ZoneInputError as exc:
            return _error(422, str(exc))
        except GeocodeError as exc:
            return _error(503, str(exc))
        except GeoLeadError as exc:
            return _error(422, str(exc))
        if log_queries:
            log.info("zone query lat=%s lon=%s address=%r -> inside=%s neighborhood=%s "
                     "distance_ft=%s", lat, lon, address, answer["inside"],
                     answer["neighborhood"], answer["distance_to_boundary_ft"])
        return JSONResponse(answer, headers=_NO_STORE)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        html, csp = service.get_page()
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    return app


def uvicorn_log_config(log_queries: bool = False) -> dict[str, Any]:
    """Uvicorn's logging config, plus this module's logger (INFO only with ``log_queries``)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][__name__] = {"handlers": ["default"], "propagate": False,
                                   "level": "INFO" if log_queries else "WARNING"}
    return config
