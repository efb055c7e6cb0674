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

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
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
                     members: tuple[str, ...] = settings.PILOT_NEIGHBORHOODS,
                     date: str = settings.PILOT_ZONE_DATE) -> gpd.GeoDataFrame:
    """The union of the pilot neighborhoods, one feature with its member names.

    `date` (ISO) says when this zone took effect; the officer zone check reports it in
    ``zone_version`` so every answer names the boundary that produced it.
    """
    missing = [m for m in members if m not in set(neighborhoods["NH_NAME"])]
    if missing:
        raise GeoLeadError(f"pilot neighborhoods not found in the neighborhoods file: {missing}")
    parts = neighborhoods[neighborhoods["NH_NAME"].isin(members)]
    geom = parts.to_crs(settings.CRS_PROJECTED).union_all().buffer(0)
    zone = gpd.GeoDataFrame({"name": ["LEAD pilot zone"], "members": [";".join(members)],
                             "date": [date]},
                            geometry=[geom], crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    return zone


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """Write EPSG:4326 GeoJSON with 7-decimal coordinates (about 1 cm)."""
    if gdf.crs is None or gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(settings.CRS_STORE)
    path.parent.mkdir(parents=True, exist_ok=True)
    from geo_lead.outputs import write_text

    data = json.loads(gdf.to_json(drop_id=True))
    write_text(path, json.dumps(data, separators=(",", ":")))  # atomic: boundaries are inputs
    _round_coords_file(path)


def _round_coords_file(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))

    def rnd(x: object) -> object:
        if isinstance(x, list):
            return [rnd(v) for v in x]
        return round(x, 7) if isinstance(x, float) else x

    for feat in data["features"]:
        feat["geometry"]["coordinates"] = rnd(feat["geometry"]["coordinates"])
    from geo_lead.outputs import write_text

    write_text(path, json.dumps(data, separators=(",", ":")))


def load_neighborhoods(path: Path = settings.NEIGHBORHOODS_FILE) -> gpd.GeoDataFrame:
    """The neighborhood units (EPSG:4326) with NH_CODE, NH_NAME, is_named."""
    return _read(path)


def load_pilot_zone(path: Path = settings.PILOT_ZONE_FILE) -> gpd.GeoDataFrame:
    return _read(path)


#: Boundary files parsed in this process: (resolved path, sha256 of the bytes) -> the frame.
_PARSED: dict[tuple[str, str], gpd.GeoDataFrame] = {}
#: Most boundary files `_read` keeps parsed (neighborhoods, pilot zone, First Division, ...).
PARSED_MAX = 8


def _read(path: Path) -> gpd.GeoDataFrame:
    """The boundary file at `path`, parsed once per process per content (sha256 of its bytes):
    each caller gets its own copy, so a caller that changes it changes no other's."""
    if not Path(path).exists():
        raise GeoLeadError(f"{path}: boundary file missing; run `geo-lead boundaries rebuild`.")
    key = (str(Path(path).resolve()), hashlib.sha256(Path(path).read_bytes()).hexdigest())
    gdf = _PARSED.get(key)
    if gdf is None:
        gdf = _parsed(Path(path), key[1])
        if len(_PARSED) >= PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = gdf
    return gdf.copy()


#: `geo_lead.result_cache` kind of the parsed boundary files (`_parsed`).
PARSED_CACHE = "boundary_parsed"


def _parsed(path: Path, sha256: str) -> gpd.GeoDataFrame:
    """``gpd.read_file(path)`` (a file without a CRS refused), kept across runs (kind
    ``boundary_parsed``) under the sha256 of its bytes, its suffix (which driver reads it), the
    package's code and the versions of the libraries that parse it: a hit is the frame this
    parse gives for exactly those bytes, without GDAL (each process of a run parsed the same
    files again, ~0.1 s)."""
    from geo_lead import result_cache

    key = result_cache.digest([PARSED_CACHE, result_cache.code_version(), sha256, path.suffix.lower(),
                               result_cache.library_versions("geopandas", "pyogrio", "shapely", "pyproj",
                                                             "pandas", "numpy")])

    def parse() -> gpd.GeoDataFrame:
        gdf = gpd.read_file(path)
        if gdf.crs is None:
            raise CRSMismatchError(f"{path}: no CRS; GeoJSON must be EPSG:4326.")
        return gdf

    return result_cache.kept_object(PARSED_CACHE, key, gpd.GeoDataFrame, parse)


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


# --- the First Division ---------------------------------------------------------------------
#: How a first_division.geojson was made (its ``method`` property).
METHOD_RECORDS = "records-majority"
METHOD_FALLBACK = "lmpd-description"
METHOD_OFFICIAL = "official"


def division_majority(records: pd.DataFrame, neighborhoods: gpd.GeoDataFrame) -> pd.DataFrame:
    """Per unit: geocoded records with a division, the leading division and its share.

    Parameters
    ----------
    records
        Records with ``neighborhood`` (joined) and ``division`` (``1ST DIVISION`` ...).
    neighborhoods
        The units (NH_NAME).

    Returns
    -------
    pandas.DataFrame
        Indexed like `neighborhoods`: NH_NAME, n_records, division ("" when none), share.
        Ties go to the alphabetically first division (deterministic).
    """
    r = records[(records["neighborhood"].fillna("") != "") & (records["division"].fillna("") != "")]
    return majority_of_counts(r.groupby(["neighborhood", "division"]).size().rename("n").reset_index(),
                              neighborhoods)


def majority_of_counts(counts: pd.DataFrame, neighborhoods: gpd.GeoDataFrame) -> pd.DataFrame:
    """`division_majority` from its counts already made: ``neighborhood``, ``division``, ``n``
    (records per non-empty pair, e.g. `geo_lead.store.Store.division_counts`)."""
    table = counts.sort_values(["neighborhood", "n", "division"], ascending=[True, False, True])
    top = table.drop_duplicates("neighborhood").set_index("neighborhood")
    totals = table.groupby("neighborhood")["n"].sum()
    names = neighborhoods["NH_NAME"]
    n_records = names.map(totals).fillna(0).astype(int)
    division = names.map(top["division"]).astype(object).fillna("")  # object: empty records map to float NaN
    share = (names.map(top["n"]) / n_records.where(n_records > 0)).astype(float)
    return pd.DataFrame({"NH_NAME": names, "n_records": n_records, "division": division,
                         "share": share}, index=neighborhoods.index)


def first_division_members(neighborhoods: gpd.GeoDataFrame, records: pd.DataFrame | None = None,
                           min_records: int = settings.DIVISION_MIN_RECORDS,
                           counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Decide which units form the First Division.

    A unit with at least `min_records` geocoded records carrying a division belongs when
    ``1ST DIVISION`` holds the most of them; any other unit (and every unit when `records`
    is None, i.e. before geocoding) belongs when LMPD's description names it
    (``settings.FIRST_DIVISION_DESCRIBED``). `counts`: the records' (neighborhood, division)
    pairs already counted (`majority_of_counts`), used instead of `records`.

    Returns
    -------
    pandas.DataFrame
        `division_majority` columns plus ``member`` (bool) and ``basis``
        (``records`` / ``description``).
    """
    described = neighborhoods["NH_NAME"].isin(settings.FIRST_DIVISION_DESCRIBED)
    if counts is not None and not counts.empty:  # the records' pairs counted already
        maj = majority_of_counts(counts, neighborhoods)
    elif counts is not None or records is None or records.empty:
        maj = pd.DataFrame({"NH_NAME": neighborhoods["NH_NAME"], "n_records": 0, "division": "",
                            "share": float("nan")}, index=neighborhoods.index)
    else:
        maj = division_majority(records, neighborhoods)
    by_records = maj["n_records"] >= min_records
    member = (by_records & (maj["division"] == settings.FIRST_DIVISION)) | (~by_records & described)
    return maj.assign(member=member, basis=by_records.map({True: "records", False: "description"}))


def check_against_description(members: pd.DataFrame, neighborhoods: gpd.GeoDataFrame) -> list[str]:
    """Disagreements between a derived First Division and LMPD's description.

    Flags described neighborhoods left out, members south of Broadway (a representative
    point of the unit south of the Broadway line in ``settings.BROADWAY_LONLAT``), and,
    for information, members north of Broadway that the description does not name.
    """
    import shapely

    notes = []
    chosen = set(members.loc[members["member"], "NH_NAME"])
    for name in settings.FIRST_DIVISION_DESCRIBED:
        if name not in chosen:
            row = members[members["NH_NAME"] == name]
            detail = (f"{int(row['n_records'].iloc[0])} records, mostly {row['division'].iloc[0] or 'none'}"
                      if len(row) else "not in the neighborhoods file")
            notes.append(f"{name} is named by LMPD's description but not derived as First Division ({detail})")
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED)
    broadway = gpd.GeoSeries([shapely.LineString(settings.BROADWAY_LONLAT)],
                             crs=settings.CRS_STORE).to_crs(settings.CRS_PROJECTED).iloc[0]
    xs = [c[0] for c in broadway.coords]
    for i in np.flatnonzero(members["member"].to_numpy()):
        pt = proj.geometry.iloc[i].representative_point()
        if not (min(xs) <= pt.x <= max(xs)):
            continue
        y_broadway = np.interp(pt.x, xs, [c[1] for c in broadway.coords])
        name = members["NH_NAME"].iloc[i]
        if pt.y < y_broadway:
            notes.append(f"{name} is derived as First Division but lies south of Broadway")
        elif name not in settings.FIRST_DIVISION_DESCRIBED:
            notes.append(f"{name} is derived as First Division (north of Broadway, so within the "
                         "description's bounds) but is not one of the neighborhoods it names")
    return notes


def build_first_division(neighborhoods: gpd.GeoDataFrame, members: pd.DataFrame,
                         method: str) -> gpd.GeoDataFrame:
    """One feature: the union of the member units, with their names and the method."""
    parts = neighborhoods[members["member"].to_numpy()]
    if parts.empty:
        raise GeoLeadError("no neighborhood qualifies as First Division; check the records' division column.")
    geom = parts.to_crs(settings.CRS_PROJECTED).union_all().buffer(0)
    names = ";".join(sorted(parts["NH_NAME"]))
    return gpd.GeoDataFrame({"name": [settings.FIRST_DIVISION], "members": [names], "method": [method]},
                            geometry=[geom], crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)


def official_first_division(path: Path) -> gpd.GeoDataFrame:
    """A user's official LMPD division polygons -> the First Division feature.

    The division column is found by its values: the first column in which some value
    normalises to ``1ST DIVISION`` (``1st Division``, ``1``, ``FIRST`` ...).
    """
    from geo_lead.errors import InputFileError
    from geo_lead.sources import normalize_division

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: division file not found.")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise InputFileError(f"{path}: cannot read as a vector file ({exc}).") from None
    if gdf.crs is None:
        raise CRSMismatchError(f"{path}: no CRS; give the file a .prj or use GeoJSON (EPSG:4326).")
    for col in gdf.columns:
        if col == gdf.geometry.name or gdf[col].dtype.kind not in "OUiu":
            continue
        norm = gdf[col].astype(str).map(normalize_division)
        hit = norm == settings.FIRST_DIVISION
        if hit.any():
            geom = gdf[hit.to_numpy()].to_crs(settings.CRS_PROJECTED).union_all().buffer(0)
            return gpd.GeoDataFrame({"name": [settings.FIRST_DIVISION], "members": [""],
                                     "method": [f"{METHOD_OFFICIAL}:{path.name}"]},
                                    geometry=[geom], crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)
    samples = {c: gdf[c].astype(str).head(3).tolist() for c in gdf.columns if c != gdf.geometry.name}
    raise InputFileError(f"{path}: no column has a value meaning {settings.FIRST_DIVISION!r} "
                         f"(e.g. '1st Division' or 1); columns and first values: {samples}.")


def load_first_division(path: Path | None = None) -> gpd.GeoDataFrame:
    """The First Division feature (EPSG:4326) with name, members, method (default file:
    `settings.FIRST_DIVISION_FILE`, read at call time)."""
    return _read(settings.FIRST_DIVISION_FILE if path is None else path)


def rebuild(out_dir: Path = settings.BOUNDARIES_DIR,
            derive: Callable[[gpd.GeoDataFrame], tuple[gpd.GeoDataFrame, pd.DataFrame]] | None = None,
            divisions: Path | None = None, shapefile: Path = LOJIC_SHAPEFILE,
            beats_shapefile: Path | None = None) -> dict[str, object]:
    """Regenerate neighborhoods, pilot zone, First Division and LMPD beat/division GeoJSON
    in `out_dir`.

    The First Division comes from `divisions` (official polygons) when given, else from
    `derive` (the new neighborhoods -> the feature and its membership table, e.g.
    `geo_lead.division_records.deriver` of a store), else from LMPD's description.

    Returns a summary: files written, First Division method, members and disagreements
    with LMPD's description, numbers of beats and divisions.
    """
    out_dir = Path(out_dir)
    nh = build_neighborhoods(shapefile)
    write_geojson(nh, out_dir / settings.NEIGHBORHOODS_FILE.name)
    write_geojson(build_pilot_zone(nh), out_dir / settings.PILOT_ZONE_FILE.name)
    notes: list[str] = []
    if divisions is not None:
        fd = official_first_division(divisions)
    elif derive is not None:
        fd, members = derive(nh)
        notes = check_against_description(members, nh)
    else:
        members = first_division_members(nh, None)
        fd = build_first_division(nh, members, METHOD_FALLBACK)
    write_geojson(fd, out_dir / settings.FIRST_DIVISION_FILE.name)
    for note in notes:
        log.info("First Division check: %s", note)
    n_beats, n_divisions = rebuild_beats(out_dir, beats_shapefile)
    return {"out_dir": str(out_dir), "neighborhoods": len(nh), "first_division_method": fd["method"].iloc[0],
            "first_division_members": [m for m in fd["members"].iloc[0].split(";") if m],
            "disagreements": notes, "beats": n_beats, "divisions": n_divisions}


def rebuild_beats(out_dir: Path = settings.BOUNDARIES_DIR,
                  shapefile: Path | None = None) -> tuple[int, int]:
    """Write ``lmpd_beats.geojson`` and ``lmpd_divisions.geojson`` (EPSG:4326) in `out_dir`
    from the LMPD beats shapefile (`geo_lead.beats.build_beats`); returns (beats, divisions)."""
    from geo_lead.beats import BEATS_SHAPEFILE, build_beats, build_divisions

    beats = build_beats(shapefile or BEATS_SHAPEFILE)
    divisions = build_divisions(beats)
    write_geojson(beats, Path(out_dir) / settings.BEATS_FILE.name)
    write_geojson(divisions, Path(out_dir) / settings.DIVISIONS_FILE.name)
    return len(beats), len(divisions)
