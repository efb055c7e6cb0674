"""Neighborhoods, the pilot zone and the First Division, with CRS checks.

The shipped `boundaries/neighborhoods.geojson` is built from the LOJIC urban neighborhoods
shapefile (`boundaries/source/`) by `build_neighborhoods`:

* same-named parts (PRESTONIA, IROQUOIS each have two polygons) are dissolved into one
  multi-part neighborhood, so every named neighborhood is one unit;
* the 13 "REMAINDER OF CITY" and 8 unnamed (NH_CODE 0) polygons are not neighborhoods but
  leftover pieces of the pre-merger city; each is kept as its own unit, named
  ``REMAINDER OF CITY #<OBJECTID>`` / ``UNNAMED #<OBJECTID>`` with ``is_named = False``, so
  records falling in them are counted, and rankings can leave them out deliberately.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geo_lead import settings
from geo_lead.errors import CRSMismatchError, GeoLeadError

log = logging.getLogger(__name__)

LOJIC_SHAPEFILE = settings.BOUNDARIES_DIR / "source" / "lojic_urban_neighborhoods" / "louisville.shp"


def build_neighborhoods(shapefile: Path = LOJIC_SHAPEFILE) -> gpd.GeoDataFrame:
    """LOJIC polygons -> one row per neighborhood unit (EPSG:4326), see the module docstring."""
    raw = gpd.read_file(shapefile)
    if raw.crs is None:
        raise CRSMismatchError(f"{shapefile}: no CRS (.prj missing); expected EPSG:4326.")
    raw = raw.to_crs(settings.CRS_STORE)
    name = raw["NH_NAME"].fillna("").str.strip().str.upper()
    is_named = (name != "") & (name != "REMAINDER OF CITY")
    unit = name.where(is_named, "")
    unit = unit.mask(name == "REMAINDER OF CITY", "REMAINDER OF CITY #" + raw["OBJECTID"].astype(str))
    unit = unit.mask(name == "", "UNNAMED #" + raw["OBJECTID"].astype(str))
    raw = raw.assign(NH_NAME=unit, is_named=is_named, NH_CODE=raw["NH_CODE"].astype(int))
    dissolved = raw.dissolve(by="NH_NAME", aggfunc={"NH_CODE": "first", "is_named": "first",
                                                     "OBJECTID": "min"}).reset_index()
    dissolved["geometry"] = dissolved.geometry.make_valid()
    dissolved = dissolved.sort_values("OBJECTID").reset_index(drop=True)
    return dissolved[["NH_CODE", "NH_NAME", "is_named", "geometry"]]


def build_pilot_zone(neighborhoods: gpd.GeoDataFrame,
                     members: tuple[str, ...] = settings.PILOT_NEIGHBORHOODS) -> gpd.GeoDataFrame:
    """The union of the pilot neighborhoods, one feature with its member names."""
    missing = [m for m in members if m not in set(neighborhoods["NH_NAME"])]
    if missing:
        raise GeoLeadError(f"pilot neighborhoods not found in the neighborhoods file: {missing}")
    parts = neighborhoods[neighborhoods["NH_NAME"].isin(members)]
    geom = parts.to_crs(settings.CRS_PROJECTED).union_all().buffer(0)
    zone = gpd.GeoDataFrame({"name": ["LEAD pilot zone"], "members": [";".join(members)]},
                            geometry=[geom], crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    return zone


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """Write EPSG:4326 GeoJSON with 7-decimal coordinates (about 1 cm)."""
    if gdf.crs is None or gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(settings.CRS_STORE)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(gdf.to_json(drop_id=True))
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    _round_coords_file(path)


def _round_coords_file(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))

    def rnd(x: object) -> object:
        if isinstance(x, list):
            return [rnd(v) for v in x]
        return round(x, 7) if isinstance(x, float) else x

    for feat in data["features"]:
        feat["geometry"]["coordinates"] = rnd(feat["geometry"]["coordinates"])
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def load_neighborhoods(path: Path = settings.NEIGHBORHOODS_FILE) -> gpd.GeoDataFrame:
    """The neighborhood units (EPSG:4326) with NH_CODE, NH_NAME, is_named."""
    return _read(path)


def load_pilot_zone(path: Path = settings.PILOT_ZONE_FILE) -> gpd.GeoDataFrame:
    return _read(path)


def _read(path: Path) -> gpd.GeoDataFrame:
    if not Path(path).exists():
        raise GeoLeadError(f"{path}: boundary file missing; run `geo-lead boundaries rebuild`.")
    gdf = gpd.read_file(path)
    if gdf.crs is None:
        raise CRSMismatchError(f"{path}: no CRS; GeoJSON must be EPSG:4326.")
    return gdf


def check_same_crs(**frames: gpd.GeoDataFrame | gpd.GeoSeries) -> None:
    """Raise `CRSMismatchError` naming the inputs whose CRS differ."""
    crs = {name: (f.crs.to_string() if f.crs is not None else None) for name, f in frames.items()}
    if len(set(crs.values())) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in crs.items())
        raise CRSMismatchError(f"inputs are in different coordinate reference systems: {listing}; "
                               "reproject them to one CRS first.")


def neighborhood_table(neighborhoods: gpd.GeoDataFrame) -> pd.DataFrame:
    """NH_NAME, NH_CODE, is_named, area_sqmi (EPSG:2246)."""
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED)
    return pd.DataFrame({"NH_NAME": neighborhoods["NH_NAME"], "NH_CODE": neighborhoods["NH_CODE"],
                         "is_named": neighborhoods["is_named"],
                         "area_sqmi": proj.area / settings.SQFT_PER_SQMI})
