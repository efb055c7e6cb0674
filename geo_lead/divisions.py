"""The First Division: LMPD's official polygon, and the records' own division as a cross-check.

* **Official** -- LMPD's 1st Division (`geo_lead.beats.load_divisions`, the beats dissolved on
  DISTRICT). A neighborhood is in when at least `settings.AREA_MEMBER_MIN_SHARE` (half) of its
  area lies inside the polygon (EPSG:2246). `official_first_division` is the feature written to
  ``boundaries/first_division.geojson`` (method ``official:lmpd_divisions.geojson``), which
  scoring, hotspots and siting read: they apply the same half-area rule to it.
* **Records** -- each neighborhood takes the division most of its geocoded records name
  (`geo_lead.boundaries.first_division_members`); kept as a check on the geocoder, the join and
  the beat plan (the polygons are the 2014-2016 plan).
* `compare_divisions` puts both side by side: members of each, their overlap, the units that
  differ, and per unit the share of its area inside the official polygon and its records'
  leading division.

This module sits above the join (it reads the store's joined records); `geo_lead.boundaries`
stays the loader of the neighborhood files.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

log = logging.getLogger(__name__)

#: The ``division`` value of LMPD's First Division in ``lmpd_divisions.geojson`` (DISTRICT).
OFFICIAL_DIVISION_CODE: str = "1"
METHOD_OFFICIAL_DIVISIONS: str = f"official:{settings.DIVISIONS_FILE.name}"
#: `compare_divisions` lists a non-member unit when at least this share of it lies inside the
#: official polygon (smaller overlaps are slivers of boundaries drawn from different sources).
STRADDLE_MIN_SHARE: float = 0.01


def first_division_polygon(divisions: gpd.GeoDataFrame, code: str = OFFICIAL_DIVISION_CODE) -> Any:
    """The union (EPSG:2246) of the division polygons whose ``division`` is `code`."""
    hit = divisions[divisions["division"].astype(str) == code]
    if hit.empty:
        raise GeoLeadError(f"no division {code!r} among the LMPD divisions "
                           f"({sorted(divisions['division'].astype(str))}); run `geo-lead boundaries rebuild`")
    return hit.to_crs(settings.CRS_PROJECTED).geometry.union_all()


def area_inside(neighborhoods: gpd.GeoDataFrame, polygon: Any) -> pd.Series:
    """Share (0..1) of each unit's area (EPSG:2246) inside `polygon` (EPSG:2246), aligned to
    `neighborhoods`' index."""
    proj = neighborhoods.to_crs(settings.CRS_PROJECTED).geometry
    area = proj.area
    return (proj.intersection(polygon).area / area.where(area > 0)).fillna(0.0).clip(0.0, 1.0)


def official_members(neighborhoods: gpd.GeoDataFrame, divisions: gpd.GeoDataFrame,
                     min_share: float = settings.AREA_MEMBER_MIN_SHARE) -> pd.DataFrame:
    """Which units are in LMPD's official First Division.

    Returns
    -------
    pandas.DataFrame
        Indexed like `neighborhoods`: NH_NAME, is_named, share_inside, member
        (``share_inside >= min_share``).
    """
    share = area_inside(neighborhoods, first_division_polygon(divisions))
    return pd.DataFrame({"NH_NAME": neighborhoods["NH_NAME"], "is_named": neighborhoods["is_named"].astype(bool),
                         "share_inside": share, "member": share >= min_share}, index=neighborhoods.index)


def official_first_division(neighborhoods: gpd.GeoDataFrame, divisions: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The ``first_division.geojson`` feature (EPSG:4326): LMPD's 1st Division polygon with
    ``name``, ``members`` (named units at least half inside, ``;``-joined) and ``method``."""
    members = official_members(neighborhoods, divisions)
    names = ";".join(sorted(members.loc[members["member"] & members["is_named"], "NH_NAME"]))
    return gpd.GeoDataFrame({"name": [settings.FIRST_DIVISION], "members": [names],
                             "method": [METHOD_OFFICIAL_DIVISIONS]},
                            geometry=[first_division_polygon(divisions)],
                            crs=settings.CRS_PROJECTED).to_crs(settings.CRS_STORE)


def write_official_first_division(out_dir: Path = settings.BOUNDARIES_DIR,
                                  neighborhoods: gpd.GeoDataFrame | None = None,
                                  divisions: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Write ``first_division.geojson`` in `out_dir` from the official divisions (default: the
    ``neighborhoods.geojson`` and ``lmpd_divisions.geojson`` already in `out_dir`)."""
    from geo_lead.beats import load_divisions
    from geo_lead.boundaries import load_neighborhoods, write_geojson

    out_dir = Path(out_dir)
    nh = neighborhoods if neighborhoods is not None else load_neighborhoods(out_dir / settings.NEIGHBORHOODS_FILE.name)
    div = divisions if divisions is not None else load_divisions(out_dir / settings.DIVISIONS_FILE.name)
    fd = official_first_division(nh, div)
    write_geojson(fd, out_dir / settings.FIRST_DIVISION_FILE.name)
    return fd


# --- the cross-check -------------------------------------------------------------------------
@dataclass
class DivisionComparison:
    """Official vs record-derived First Division (named neighborhoods)."""

    official: list[str]
    records: list[str]
    both: list[str]
    only_official: list[str]
    only_records: list[str]
    units: list[dict[str, Any]] = field(default_factory=list)  #: one row per unit either puts in, or that straddles
    rule: str = ""
    records_basis: str = ""  #: how the record-derived one was decided (records / description)

    @property
    def agree(self) -> bool:
        return not self.only_official and not self.only_records

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agree": self.agree}


def compare_divisions(official: pd.DataFrame, derived: pd.DataFrame) -> DivisionComparison:
    """Side by side: `official_members` and `geo_lead.boundaries.first_division_members` of
    the same neighborhoods (same index). Only named units are listed as members."""
    o = official.set_index("NH_NAME")
    d = derived.set_index("NH_NAME").reindex(o.index)
    named = o["is_named"].astype(bool)
    off = set(o.index[o["member"].astype(bool) & named])
    rec = set(d.index[d["member"].fillna(False).astype(bool) & named])
    rows = []
    for name in o.index[named]:
        share = float(o.at[name, "share_inside"])
        if name in off or name in rec or share >= STRADDLE_MIN_SHARE:
            rows.append({"neighborhood": name, "share_inside_official": share,
                         "official": name in off, "records": name in rec,
                         "n_records": int(d.at[name, "n_records"]) if pd.notna(d.at[name, "n_records"]) else 0,
                         "records_division": str(d.at[name, "division"] or ""),
                         "records_division_share": (float(d.at[name, "share"])
                                                    if pd.notna(d.at[name, "share"]) else None)})
    rows.sort(key=lambda r: (-r["share_inside_official"], r["neighborhood"]))
    basis = derived["basis"].value_counts().to_dict() if "basis" in derived else {}
    return DivisionComparison(
        official=sorted(off), records=sorted(rec), both=sorted(off & rec),
        only_official=sorted(off - rec), only_records=sorted(rec - off), units=rows,
        rule=(f"official: at least {settings.AREA_MEMBER_MIN_SHARE:.0%} of the neighborhood's area inside "
              "LMPD's 1st Division polygon (2014-2016 beat plan); records: the division most of its "
              f"geocoded records name (at least {settings.DIVISION_MIN_RECORDS}, else LMPD's description)"),
        records_basis=", ".join(f"{k}: {v}" for k, v in sorted(basis.items())))


def divisions_for_store(store: Store, neighborhoods: gpd.GeoDataFrame | None = None,
                        divisions: gpd.GeoDataFrame | None = None,
                        records: pd.DataFrame | None = None) -> DivisionComparison:
    """`compare_divisions` of the official divisions and the store's records.

    `records`: the store's records (``neighborhood``, ``division``) already read (see
    `geo_lead.division_records.derive_first_division`).
    """
    from geo_lead.beats import load_divisions
    from geo_lead.boundaries import load_neighborhoods
    from geo_lead.division_records import derive_first_division

    nh = load_neighborhoods() if neighborhoods is None else neighborhoods
    div = load_divisions() if divisions is None else divisions
    _fd, derived = derive_first_division(store, nh, records)
    return compare_divisions(official_members(nh, div), derived)


def format_comparison(c: DivisionComparison) -> str:
    """Two lines and the differing units, for the CLI."""
    lines = [f"First Division (official, LMPD polygon): {', '.join(c.official) or '(none)'}",
             f"First Division (from the records' division): {', '.join(c.records) or '(none)'}",
             f"  overlap {len(c.both)} of {len(set(c.official) | set(c.records))}"
             + ("; they agree" if c.agree else "")]
    for name in c.only_official:
        lines.append(f"  only official: {name}")
    for name in c.only_records:
        lines.append(f"  only from records: {name}")
    return "\n".join(lines)
