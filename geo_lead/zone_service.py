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

Privacy: queried locations are not logged. Uvicorn's access log (which would record every
query string) is off unless ``--log-queries``; with it, each answer is also logged by
``geo_lead.zone_service`` at INFO. Answers carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from geo_lead.errors import GeocodeError, GeoLeadError, ZoneInputError
from geo_lead.zone import ZoneChecker, check_address, default_geocoder, parse_coordinate

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


def create_app(checker: ZoneChecker | None = None, *, geocoder: Any = None,
               log_queries: bool = False) -> FastAPI:
    """Build the zone-check web app.

    Parameters
    ----------
    checker
        The zone checker (default: the pilot zone, ``ZoneChecker()``).
    geocoder
        Object with ``geocode(addresses, zips)``; default ``geo_lead.geocode.Geocoder()``,
        created on the first address query and reused.
    log_queries
        Log each queried location and its answer at INFO (off by default for privacy).

    Returns
    -------
    FastAPI
    """
    checker = checker or ZoneChecker()
    app = FastAPI(title="LEAD pilot zone check", docs_url=None, redoc_url=None,
                  openapi_url=None)
    state: dict[str, Any] = {"geocoder": geocoder, "page": None}
    lock = threading.Lock()

    def _geocoder() -> Any:
        with lock:  # build the (possibly slow to load) geocoder once
            if state["geocoder"] is None:
                state["geocoder"] = default_geocoder()
            return state["geocoder"]

    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=_NO_STORE)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "zone": checker.zone_name, "members": list(checker.members),
                "zone_version": checker.zone_version}

    @app.get("/zone")
    async def zone(lat: str | None = None, lon: str | None = None,
                   address: str | None = None, zip: str | None = None) -> JSONResponse:
        try:
            has_coord = lat is not None or lon is not None
            if has_coord and address is not None:
                raise ZoneInputError("give either lat and lon, or address, not both.")
            if has_coord:
                answer = checker.check(parse_coordinate(lat, "lat"),
                                       parse_coordinate(lon, "lon")).to_dict()
            elif address is not None:
                geo = await run_in_threadpool(_geocoder)
                answer = await run_in_threadpool(check_address, checker, address, zip, geo)
            else:
                raise ZoneInputError("missing parameters: give lat and lon "
                                     "(/zone?lat=38.2587&lon=-85.7930) or address "
                                     "(/zone?address=2700+BLOCK+W+MADISON+ST).")
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

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        if state["page"] is None:
            from geo_lead.zone_page import render_page

            state["page"] = render_page(checker, "service")
        return HTMLResponse(state["page"])

    return app


def uvicorn_log_config(log_queries: bool = False) -> dict[str, Any]:
    """Uvicorn's logging config, plus this module's logger (INFO only with ``log_queries``)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][__name__] = {"handlers": ["default"], "propagate": False,
                                   "level": "INFO" if log_queries else "WARNING"}
    return config
