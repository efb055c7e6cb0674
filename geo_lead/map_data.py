"""Store reads of the maps: the layers, the records (never person fields) and the parameters
the results were made with. Everything here reads; nothing draws (`geo_lead.map_layers` builds
the layers, `geo_lead.maps` writes the pages).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd
import shapely

from geo_lead import settings
from geo_lead.map_layers import MIX_FLAGS

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

def read_layer(store: Store, table: str) -> gpd.GeoDataFrame | None:
    """A feature layer of the store as a GeoDataFrame (EPSG:4326), or None when absent/empty."""
    from geo_lead.store import wkb_from_gpkg

    if table not in store.tables() or store.count(table) == 0:
        return None
    cols = store.columns(table)
    frame = store.read_table(table, [c for c in cols if c != "fid"])
    geom = shapely.from_wkb([wkb_from_gpkg(b) for b in frame.pop("geom")]) if "geom" in frame else None
    return gpd.GeoDataFrame(frame, geometry=geom, crs=settings.CRS_STORE)


#: Record columns the maps read (never person fields); the timeline counts each record by its
#: frame weight x its share of each of its ``boundary_units`` (`geo_lead.allocation`).
RECORD_MAP_COLUMNS: tuple[str, ...] = ("record_id", "occurred_at", "offense_text", "address_raw",
                                       "lon", "lat", "match_type", "neighborhood", "boundary_units",
                                       *MIX_FLAGS)


def read_map_inputs(store: Store, flagged_only: bool = False,
                    prefetched: tuple[Any, int | None, str | None] | None = None) -> dict[str, Any]:
    """Everything the maps and the report read from the store (missing layers are None).

    `flagged_only`: when the scores name an indicator flag (`indicator_records`' rule), read
    only the records carrying it (``WHERE flag``: the text of a million records the maps would
    drop costs seconds) and give the store's total as ``records_total`` (else None).
    `prefetched`: `read_map_records`' answer for the same store and scores, read earlier
    (`geo-lead run` reads it while its hotspots child still computes).
    """
    scores = read_layer(store, "scores")
    records, total, indicator = prefetched if prefetched is not None else \
        read_map_records(store, scores, flagged_only)
    return {"scores": scores, "kde": read_layer(store, "hotspot_kde"),
            "gistar": read_layer(store, "hotspot_gistar_neighborhoods"),
            "gistar_grid": read_layer(store, "hotspot_gistar_grid"),
            "zones": read_layer(store, "site_zones"), "records": records,
            "records_total": total, "indicator": indicator}


def read_map_records(store: Store, scores: gpd.GeoDataFrame | None,
                     flagged_only: bool = False) -> tuple[pd.DataFrame | None, int | None, str | None]:
    """The records the maps read: ``(records, records_total, indicator)`` (see `read_map_inputs`).

    The records carry `RECORD_MAP_COLUMNS` that the store has and a float ``weight``
    (`geo_lead.frames.attach_weights`: 1 / the declared sample fraction of the record's frame).
    """
    from geo_lead.frames import WEIGHT_COLUMNS, attach_weights

    have = set(store.columns("records")) if "records" in store.tables() else set()
    cols = [c for c in dict.fromkeys((*RECORD_MAP_COLUMNS, *WEIGHT_COLUMNS)) if c in have]
    indicator = None
    if flagged_only and scores is not None and "indicator" in scores and scores["indicator"].notna().any():
        indicator = str(scores["indicator"].dropna().iloc[0])
    total = None
    if have and indicator and indicator in cols and indicator in MIX_FLAGS:
        records = store.flagged_records(cols, indicator)
        total = store.count("records")
    else:
        records = store.read_records(cols) if have else None
    if records is not None:
        attach_weights(store, records)
        records = records.drop(columns=[c for c in WEIGHT_COLUMNS if c not in RECORD_MAP_COLUMNS and c in records])
    return records, total, indicator


def context_layers() -> dict[str, gpd.GeoDataFrame | None]:
    """Neighborhood outlines and the First Division (None when a boundary file is missing)."""
    from geo_lead import boundaries

    out: dict[str, gpd.GeoDataFrame | None] = {"neighborhoods": None, "first_division": None}
    try:
        out["neighborhoods"] = boundaries.load_neighborhoods()
    except Exception as exc:  # a missing boundary file is a note, not a failure
        log.warning("neighborhood outlines not drawn: %s", exc)
    loader = getattr(boundaries, "load_first_division", None)
    if loader is not None:
        try:
            out["first_division"] = loader()
        except Exception as exc:
            log.warning("First Division outline not drawn: %s", exc)
    return out


def indicator_records(records: pd.DataFrame | None,
                      scores: gpd.GeoDataFrame | None) -> tuple[pd.DataFrame | None, list[str]]:
    """The records the maps show: those of the scores' indicator flag, when it names one.

    The choropleth counts one indicator (``scores.indicator``, e.g. ``lead_eligible``); the
    points and the timeline show the same records so the numbers agree. Returns the records
    and a plain-text note saying which were kept (all of them when there is no indicator).
    """
    if records is None or len(records) == 0:
        return records, []
    indicator = None
    if scores is not None and "indicator" in scores and scores["indicator"].notna().any():
        indicator = str(scores["indicator"].dropna().iloc[0])
    if indicator and indicator in records and indicator in MIX_FLAGS:
        kept = records[records[indicator].astype(bool)]
        return kept, [f"Records shown: the {len(kept):,} with the '{indicator}' flag (the scores' "
                      f"indicator) of {len(records):,} in the store."]
    return records, [f"Records shown: all {len(records):,} in the store."]


def stored_parameters(store: Store, site_result: Any = None, hotspots_result: Any = None) -> dict[str, Any]:
    """Result name -> the parameters stored with it (None when absent or not recorded).

    Reads meta ``scores_parameters`` (when the ``scores`` layer exists) and the
    ``parameters`` of ``hotspots_result`` / ``site_result`` (pass them when already read).
    """
    site = store.get_json("site_result") if site_result is None else site_result
    hot = store.get_json("hotspots_result") if hotspots_result is None else hotspots_result
    has_scores = "scores" in store.tables() and store.count("scores") > 0
    return {"scores": store.get_json("scores_parameters") if has_scores else None,
            "hotspots": hot.get("parameters") if isinstance(hot, dict) else None,
            "site": site.get("parameters") if isinstance(site, dict) else None}


#: Page name -> file stem; ``--tiles`` pages get a ``_tiles`` suffix and never replace these.
MAP_PAGES: tuple[str, ...] = ("site_selection", "timeline")
TILES_SUFFIX: str = "_tiles"
