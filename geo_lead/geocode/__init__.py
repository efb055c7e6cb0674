"""Offline geocoder for LMPD block addresses, intersections and street addresses.

Public API: `Geocoder` (``Geocoder().geocode(addresses, zips)``), `geocode_store` (geocode the
store's records through the ``geocode_cache`` table), `parse_address` / `normalize_address`,
`load_reference`. The optional online provider is `geo_lead.geocode.census`.
"""

from __future__ import annotations

from typing import Any

from geo_lead.geocode.geocoder import MATCH_TYPES, RESULT_COLUMNS, GeocodeResult, Geocoder
from geo_lead.geocode.normalize import ParsedAddress, Street, normalize_address, parse_address
from geo_lead.geocode.reference import Reference, load_reference

__all__ = [
    "MATCH_TYPES", "RESULT_COLUMNS", "GeocodeResult", "Geocoder", "ParsedAddress", "Reference", "Street",
    "geocode_store", "load_reference", "normalize_address", "parse_address",
]


def __getattr__(name: str) -> Any:
    # The store's geocoding (`geo_lead.geocode.cache`, pandas) loads on first use, so one
    # address (the zone check) imports only the matcher and its index.
    if name == "geocode_store":
        from geo_lead.geocode.cache import geocode_store

        return geocode_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
