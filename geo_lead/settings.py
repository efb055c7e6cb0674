"""Typed, documented defaults for geo_lead: CRS, paths and thresholds.

Every number a user might question lives here, with its unit in the name.
Nothing else in the package hard-codes a path, a CRS or a threshold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: The project checkout (``geo_lead/..``): home of ``data/``, ``boundaries/`` and ``maps/``
#: when the package runs from a checkout (an installed wheel has no checkout around it).
PROJECT_ROOT: Final[Path] = Path(__file__).resolve().parent.parent
PACKAGE_DIR: Final[Path] = Path(__file__).resolve().parent
#: Environment variable naming a folder laid out like the checkout (``data/``, ``boundaries/``)
#: whose files replace the shipped ones.
DATA_DIR_ENV: Final[str] = "GEO_LEAD_DATA_DIR"


def _data_root() -> Path:
    """Where the shipped data lives: ``$GEO_LEAD_DATA_DIR``; else the checkout, when the
    package runs from one; else the copy a wheel carries in ``geo_lead/_shipped`` (in a
    checkout, links to ``data/`` and ``boundaries/``: the same files, so caches keyed by the
    files' contents agree)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    if (PROJECT_ROOT / "boundaries" / "pilot_zone.geojson").is_file():
        return PROJECT_ROOT
    return PACKAGE_DIR / "_shipped"


#: The folder holding ``data/`` and ``boundaries/`` (see `_data_root`).
DATA_ROOT: Final[Path] = _data_root()

#: Overrides the folder of geo_lead's caches (the geocoder's index is kept in it directly,
#: results in ``results/`` below it).
CACHE_DIR_ENV: Final[str] = "GEO_LEAD_CACHE_DIR"


def user_cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/geo_lead/<kind>`` (default ``~/.cache``): where a cache of `kind`
    lives when ``$GEO_LEAD_CACHE_DIR`` is not set (read at call time)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "geo_lead" / kind


# --- coordinate reference systems -------------------------------------------------------
#: Storage and exchange: lon/lat on WGS 84.
CRS_STORE: Final[str] = "EPSG:4326"
#: Distances, areas, KDE and buffers: NAD83 / Kentucky North, US survey feet (LOJIC's CRS).
CRS_PROJECTED: Final[str] = "EPSG:2246"
SQFT_PER_SQMI: Final[float] = 5280.0**2
M_PER_FT: Final[float] = 1200.0 / 3937.0  # US survey foot

#: Jefferson County, KY bounding box (lon/lat) with a small margin; geocodes outside are rejected.
JEFFERSON_BBOX: Final[tuple[float, float, float, float]] = (-86.0, 37.99, -85.40, 38.39)

# --- paths ------------------------------------------------------------------------------
#: The embedded store, relative to the current directory (every command takes --store).
DEFAULT_STORE: Final[Path] = Path("data/lead.gpkg")
SHIPPED_DATA_DIR: Final[Path] = DATA_ROOT / "data"
#: The default inputs of `geo-lead run`: the 2016-2019 drug samples (the years that chose the
#: pilot and the years it ran). The shipped 2023 sample is left out on purpose: another period
#: (Dec 2023 - Jan 2024), every offence type, no known sampling fraction (data/lmpd/SOURCE.md);
#: ingest it by name to use it.
SHIPPED_LMPD_FILES: Final[tuple[Path, ...]] = (
    SHIPPED_DATA_DIR / "lmpd" / "crime_data_2016_drug_sample.csv",
    SHIPPED_DATA_DIR / "lmpd" / "crime_data_2017_drug_sample.csv",
    SHIPPED_DATA_DIR / "lmpd" / "crime_data_2018_drug_sample.csv",
    SHIPPED_DATA_DIR / "lmpd" / "crime_data_2019_drug_sample.csv",
)
REFERENCE_DIR: Final[Path] = SHIPPED_DATA_DIR / "reference"
POPULATION_TRACTS: Final[Path] = SHIPPED_DATA_DIR / "population" / "tracts_2020_population.geojson"
BOUNDARIES_DIR: Final[Path] = DATA_ROOT / "boundaries"
NEIGHBORHOODS_FILE: Final[Path] = BOUNDARIES_DIR / "neighborhoods.geojson"
PILOT_ZONE_FILE: Final[Path] = BOUNDARIES_DIR / "pilot_zone.geojson"
FIRST_DIVISION_FILE: Final[Path] = BOUNDARIES_DIR / "first_division.geojson"
#: LMPD beats and divisions (geo_lead.beats; built from boundaries/source/lmpd_beats/).
BEATS_FILE: Final[Path] = BOUNDARIES_DIR / "lmpd_beats.geojson"
DIVISIONS_FILE: Final[Path] = BOUNDARIES_DIR / "lmpd_divisions.geojson"
#: Two beats closer than this are adjacent (the shapefile's shared edges do not always meet).
BEAT_ADJACENT_FT: Final[float] = 50.0
MAPS_DIR: Final[Path] = Path("maps")
RULES_FILE: Final[Path] = PACKAGE_DIR / "rules" / "opiate_rules.toml"

# --- the pilot ----------------------------------------------------------------------------
PILOT_NEIGHBORHOODS: Final[tuple[str, ...]] = ("RUSSELL", "PORTLAND")
#: When the Russell + Portland zone took effect (the city's LEAD FAQ, August 2018).
PILOT_ZONE_DATE: Final[str] = "2018-08-01"
#: The city's announcement of the Russell + Portland pilot (22 August 2018): the report's
#: before/after split (`geo-lead evaluate --pilot-start` sets the real start).
PILOT_ANNOUNCEMENT_DATE: Final[str] = "2018-08-22"
PILOT_CAPACITY_PARTICIPANTS: Final[int] = 50
PILOT_MONTHS: Final[int] = 18
FIRST_DIVISION: Final[str] = "1ST DIVISION"

#: The shipped LMPD files' declared sampling fractions (file, sha256, year, sample_fraction):
#: `geo_lead.frames` takes a shipped file's fraction from here by its sha256, never by name.
#: A user's file declares its own (`geo-lead ingest FILE --sample-fraction F`, default 1).
SHIPPED_SAMPLING_FILE: Final[Path] = SHIPPED_DATA_DIR / "lmpd" / "sampling.csv"

# --- reading ------------------------------------------------------------------------------
#: Strings that mean "no value" in LMPD exports.
NULL_STRINGS: Final[frozenset[str]] = frozenset({"", "NULL", "null", "NaN", "N/A", "NONE"})
READ_CHUNK_ROWS: Final[int] = 50_000
#: Longest physical line (bytes) and longest field (characters) a reader accepts. A longer
#: row is rejected with a reason, read in pieces of this size, never held whole, so one
#: corrupt line cannot take the machine's memory. LMPD rows are under 1 KB.
MAX_LINE_BYTES: Final[int] = int(os.environ.get("GEO_LEAD_MAX_LINE_BYTES", str(1 << 20)))
MAX_FIELD_CHARS: Final[int] = int(os.environ.get("GEO_LEAD_MAX_FIELD_CHARS", str(1 << 20)))
#: Longest value of any field a record may have (after whitespace is collapsed): a row with
#: a longer one is rejected with the field named. LMPD's longest offence text is 83
#: characters; a 70,000-character one took the indicator rules 27 s to classify.
MAX_TEXT_CHARS: Final[int] = int(os.environ.get("GEO_LEAD_MAX_TEXT_CHARS", "1000"))
#: Free text shown in an HTML page (offence descriptions, addresses) is cut to this many
#: characters with an ellipsis; the store keeps the text as published.
PAGE_TEXT_MAX_CHARS: Final[int] = 200

# --- zone check ---------------------------------------------------------------------------
NEAR_BOUNDARY_FT: Final[float] = 300.0
#: The offline zone page's street index (`geo_lead.zone_streets`) covers the streets with
#: reference points within this distance of the zone (about a mile) ...
ZONE_PAGE_STREETS_RADIUS_FT: Final[float] = 5280.0
#: ... exporting the geocoder's own points for known house numbers, hundred-blocks and
#: intersections, and for other house numbers points that interpolation reproduces within
#: this distance of the geocoder's ...
ZONE_PAGE_STREETS_TOLERANCE_FT: Final[float] = 50.0
#: ... or this share of that point's distance from the zone boundary, when larger, at every
#: number tested (bisection; untested numbers can be farther off where the geocoder's
#: placement jumps between known numbers) ...
ZONE_PAGE_STREETS_RELATIVE_TOLERANCE: Final[float] = 0.2
#: ... so the page answers such a house number only when it lands farther than this from the
#: zone boundary (closer, it asks for the block or a coordinate). Measured on 3,603 random
#: covered numbers: between known numbers the page's point was off by median 49 ft, p99 389 ft,
#: max 597 ft ...
ZONE_PAGE_STREETS_HEDGE_FT: Final[float] = 1000.0
#: ... and past a street's known numbers (extrapolated) median 29 ft, p99 497 ft, max 1,055 ft.
ZONE_PAGE_STREETS_HEDGE_BEYOND_FT: Final[float] = 2000.0
#: ... and the crossings of covered streets whose reference points come this close.
ZONE_PAGE_CROSSING_NEAR_FT: Final[float] = 600.0

# --- statistics ---------------------------------------------------------------------------
RANDOM_SEED: Final[int] = 20180801  # the city's LEAD FAQ date; any fixed seed would do
PERMUTATIONS: Final[int] = 999
BOOTSTRAP_REPLICATES: Final[int] = 500

# --- boundaries, spatial join and scoring (issue #4) -------------------------------------
#: LMPD's own description of the First Division: downtown plus these neighborhoods (LOJIC
#: NH_NAME), Ohio River to the north, Broadway to the south. Used as the deterministic
#: fallback membership before records are geocoded, and as the check on the derived one.
FIRST_DIVISION_DESCRIBED: Final[tuple[str, ...]] = (
    "CENTRAL BUSINESS DISTRICT", "PORTLAND", "RUSSELL", "PHOENIX HILL",
)
#: A neighborhood takes its division from its records only when it has at least this many
#: geocoded records with a division; below that it keeps the fallback membership.
DIVISION_MIN_RECORDS: Final[int] = 5
#: Broadway, west to east (lon, lat): signalised intersections along it (Louisville Metro
#: Open Data, ../shared/data/geocoding/signalized_intersections.csv: Southwestern, 38th, 28th,
#: 22nd, 18th, 13th, 9th, 4th, Brook, Jackson, Clay, Barret, Baxter). Only for the check.
BROADWAY_LONLAT: Final[tuple[tuple[float, float], ...]] = (
    (-85.82697, 38.25054), (-85.81512, 38.25014), (-85.79828, 38.24957), (-85.78821, 38.24922),
    (-85.78151, 38.24894), (-85.77325, 38.24779), (-85.76651, 38.24687), (-85.75838, 38.24609),
    (-85.75172, 38.24560), (-85.74560, 38.24514), (-85.74154, 38.24484), (-85.73396, 38.24427),
    (-85.72701, 38.24374),
)
#: A unit belongs to an area polygon (First Division) when at least this share of it is inside.
AREA_MEMBER_MIN_SHARE: Final[float] = 0.5

# --- siting (geo_lead.siting, geo_lead.hotspots) -------------------------------------------
#: Largest zone size (neighborhoods) for which the best contiguous zone is reported.
SITE_K_MAX: Final[int] = 6
#: Capacity sizing tries zones of up to this many neighborhoods.
SITE_CAPACITY_K_MAX: Final[int] = 12
#: Share of eligible stops that become enrolled participants (officer offers diversion, the
#: person accepts and completes the 72-hour assessment). An assumption: no Louisville figure
#: is published; change it with `geo-lead site --take-up`.
SITE_TAKE_UP_RATE: Final[float] = 0.5
#: The verdict's "top set": the best ceil(fraction x n) contiguous zones of the pilot's size.
SITE_TOP_FRACTION: Final[float] = 0.10
#: The pilot must stay in the top set in at least this share of bootstrap resamples.
SITE_STABILITY_MIN: Final[float] = 0.50
#: The pilot's holdout PAI may fall short of the best train-chosen zone's by at most this share.
SITE_PAI_TOLERANCE: Final[float] = 0.20
#: A calendar-year window counts for stability only with at least this many eligible records.
SITE_MIN_WINDOW_RECORDS: Final[int] = 30
#: Comparison area balance: every standardised mean difference within this (Stuart 2010's
#: rule of thumb for matched designs); the answer reports balance either way.
SITE_BALANCE_MAX_SMD: Final[float] = 0.25
#: Where each capacity parameter comes from (printed with the answer).
SITE_PARAMETER_SOURCES: Final[dict[str, str]] = {
    "capacity": "Louisville Metro LEAD FAQ (Aug 2018): 50 participants",
    "months": "Louisville Metro LEAD FAQ (Aug 2018): 18-month pilot",
    "take_up_rate": "assumption (settings.SITE_TAKE_UP_RATE); no published Louisville figure",
    "persons_per_record": "data: distinct incident numbers / eligible records (an upper bound on "
                          "distinct persons: LMPD crime data has no person id)",
    "sample_scaling": "data/lmpd/sampling.csv (declared per file by sha256; a user's file: --sample-fraction)",
}

# --- before / after the pilot (geo_lead.evaluation) ----------------------------------------
#: Months resampled together by the block bootstrap (3: a quarter keeps short-run correlation
#: between neighbouring months; a whole year would leave the after period a single block).
EVALUATION_BLOCK_MONTHS: Final[int] = 3
EVALUATION_REPLICATES: Final[int] = 2000
EVALUATION_INTERVAL_LEVEL: Final[float] = 0.95
#: Each period (before, after) needs at least this many months with data.
EVALUATION_MIN_MONTHS: Final[int] = 3

# --- reading: dates (fdtests) -----------------------------------------------------------
#: LMPD publishes local wall-clock times; ISO values carrying an offset or Z are converted here.
LOCAL_TIMEZONE: Final[str] = "America/Kentucky/Louisville"
#: Parsed dates outside [DATE_MIN, DATE_MAX) are typos (year 1500, 2500): the row is rejected
#: as an unparseable date instead of crashing the read or polluting time series.
DATE_MIN: Final[str] = "1900-01-01"
DATE_MAX: Final[str] = "2100-01-01"
#: Records dated before this floor, or after the day they are ingested, are rejected with
#: that reason (a 2099 typo would otherwise stretch the data's time span and every rate).
DATE_FLOOR: Final[str] = "2000-01-01"

# --- boundary-aware allocation (geo_lead.allocation) ---------------------------------------
#: A placed record this close to the edge shared by two or more neighborhood units is shared
#: among them: about half a street width plus the geocoder's typical error on a centreline
#: (Louisville's unit boundaries are streets, and block points lie on the street).
BOUNDARY_TOLERANCE_FT: Final[float] = 50.0
#: How records near a shared edge count: "split" (equal shares among the units) or "first"
#: (whole to the first unit in file order: the behaviour before boundary sharing).
BOUNDARY_RULE: Final[str] = "split"
BOUNDARY_RULES: Final[tuple[str, ...]] = ("split", "first")
#: Beat settling (`allocation.settle_by_beat`) looks at the record's own beat polygon within
#: this radius of the point, shrunk by the tolerance so a beat edge on the street does not count.
BEAT_SETTLE_RADIUS_FT: Final[float] = 500.0

# --- geocoding (geo_lead/geocode) -------------------------------------------------------
#: A house number this far beyond a street's known numbers is not placed (unmatched).
GEOCODE_MAX_EXTRAPOLATION_NUMBERS: Final[int] = 1000
#: Longest distance a number is extrapolated past the last known point of its street.
GEOCODE_MAX_EXTRAPOLATION_FT: Final[float] = 3000.0
#: Extrapolation past a street's last known number stops at this many numbers and this many
#: feet; a number farther out is a ``street`` match at that last known number, with the reason
#: (hold-out, seed 20180801: extrapolated errors median 57-90 m up to 100 numbers, 230-260 m at
#: 200-300, 370-850 m beyond).
GEOCODE_EXTRAPOLATION_CAP_NUMBERS: Final[int] = 300
GEOCODE_EXTRAPOLATION_CAP_FT: Final[float] = 1500.0
#: A candidate place within this distance of the record's beat polygon counts as inside it
#: (boundary streets: their centre line is the beat's edge).
GEOCODE_BEAT_TOLERANCE_FT: Final[float] = 100.0
#: Feet per house number assumed when extrapolating (Louisville: ~100 numbers per block).
GEOCODE_FT_PER_NUMBER: Final[float] = 5.0
#: Street ends are prolonged this far when looking for a crossing the reference does not reach.
GEOCODE_INTERSECTION_EXTEND_FT: Final[float] = 4000.0
#: Two streets whose reference geometry comes no closer than this do not meet.
GEOCODE_INTERSECTION_MAX_GAP_FT: Final[float] = 1500.0
#: Consecutive points (in number order) farther apart than this are separate pieces of a name.
GEOCODE_STREET_BREAK_FT: Final[float] = 6000.0
#: Score multiplier for a street found only by fuzzy name matching (edit distance 1, or 2 for
#: names of 7+ letters).
GEOCODE_FUZZY_PENALTY: Final[float] = 0.85
#: Louisville's numbered-street grid (west of downtown, 1st-45th St cross the W streets at
#: house number N x 100): used for "NTH ST / W X ST" intersections. False turns it off (for
#: a reference elsewhere).
GEOCODE_NUMBERED_STREET_GRID: Final[bool] = True
#: A grid placement on a street without a W prefix must lie this close to the numbered
#: street's own reference points.
GEOCODE_GRID_CHECK_FT: Final[float] = 750.0
# --- maps and report (geo_lead.maps, geo_lead.figures, geo_lead.report) ---------------------
#: Display-only simplification of polygons before they go on a web map (feet, EPSG:2246):
#: 10 ft is invisible at street zoom and halves the page size. Analysis never uses it.
MAP_SIMPLIFY_FT: Final[float] = 10.0
#: Decimal places of lon/lat on a web map (6 -> about 0.1 m).
MAP_COORD_DECIMALS: Final[int] = 6
#: Above this many grid cells, the KDE / Gi* grid layers are merged by class for display
#: (same picture, a fraction of the size; the per-cell values stay in the store).
MAP_MAX_CELL_FEATURES: Final[int] = 2000
#: Budget for the default run's HTML files together (issue #6), checked by tests.
MAP_MAX_TOTAL_MB: Final[float] = 5.0
#: Resolution of the report's PNG figures.
FIGURE_DPI: Final[int] = 110
# --- geocoding, sibling-street fallback (geo_lead/geocode, issue #3 follow-up) ----------------
#: A house number on a street absent from the reference ("AUTUMN BENT WAY") is placed by its
#: number on a same-named street of another type ("AUTUMN BENT CT") in the same ZIP, never one
#: of the opposite direction (E/W), as match type ``street`` with a low score (subdivision
#: courts branch off their way).
#: False: unmatched instead.
GEOCODE_SIBLING_STREET_FALLBACK: Final[bool] = True
#: Score multiplier for such a placement (an interpolated 0.9 becomes 0.27).
GEOCODE_SIBLING_STREET_SCORE: Final[float] = 0.3
#: Only when the number is within the sibling's known numbers or this close to them (then at
#: its nearest known number: extrapolating along another street erred by 350-900 m).
GEOCODE_SIBLING_MAX_GAP_NUMBERS: Final[int] = 100

# --- reruns: store concurrency, child processes (issue #7) --------------------------------
#: How long a command waits for another geo-lead process to finish writing the store before
#: failing with StoreBusyError. Override with the environment variable GEO_LEAD_BUSY_TIMEOUT_S.
STORE_BUSY_TIMEOUT_S: Final[float] = float(os.environ.get("GEO_LEAD_BUSY_TIMEOUT_S", "30"))
#: A forked child of `geo-lead run` (`geo_lead.parallel`) that has used no CPU time for this many
#: seconds (a deadlock: Linux, from /proc) is killed and its work is done in the parent, with a
#: warning (more than STORE_BUSY_TIMEOUT_S: a child waiting on the store is not hung). Override
#: with the environment variable GEO_LEAD_CHILD_IDLE_S.
CHILD_IDLE_S: Final[float] = float(os.environ.get("GEO_LEAD_CHILD_IDLE_S", "60"))
#: ... and so is one that has not answered after this many seconds (everywhere; its jobs take
#: seconds at a million records). Override with the environment variable GEO_LEAD_CHILD_TIMEOUT_S.
CHILD_TIMEOUT_S: Final[float] = float(os.environ.get("GEO_LEAD_CHILD_TIMEOUT_S", "600"))
#: `geo-lead run`'s figures child reads the report's pilot-section data itself (its own read of
#: the flagged records and count of every record's dates, in parallel with the parent) only in
#: a store of at most this many records; in a bigger one the parent reads it from the run's
#: shared read and the child only draws. Timing only: both give the same report. Measured at
#: 1,000,000 records (+10,000 rerun): the child's second read (~2.5 s) and date count (~2 s)
#: made the run ~1.5-2.5 s slower; on the shipped ~6,000 they cost ~0.1 s and take ~0.6 s of
#: pilot data off the parent.
PILOT_CHILD_MAX_RECORDS: Final[int] = 100_000

# --- geocoding: house numbers along a hundred-block (geo_lead/geocode, geocode3) -------------
#: The rooftop-vs-block curve (`geo_lead.geocode.reference.learn_block_curve`) is learned only
#: from address points lying between two Census points H00 and H00+100 of their street that
#: are this far apart (a block, not a jump between pieces of a same-named street) ...
GEOCODE_BLOCK_CURVE_MIN_FT: Final[float] = 100.0
GEOCODE_BLOCK_CURVE_MAX_FT: Final[float] = 3000.0
#: ... and only when at least this many such points exist (else numbers are used as they are);
GEOCODE_BLOCK_CURVE_MIN_PAIRS: Final[int] = 200
#: a 10-number bin of the offset needs this many points to set a knot of the curve.
GEOCODE_BLOCK_CURVE_MIN_BIN: Final[int] = 10
#: A street whose own points cannot tell which way its numbers run (one known number, or all
#: within 40) is extrapolated the way they run on nearby parallel streets (Louisville's county
#: grid); False: placed at its nearest known number instead.
GEOCODE_LOCAL_NUMBERING: Final[bool] = True
#: Nearby: the other street's point pair lies this close.
GEOCODE_LOCAL_NUMBERING_RADIUS_FT: Final[float] = 2000.0
#: Parallel: its numbering, carried across, gives the street's own number within this many.
GEOCODE_LOCAL_NUMBERING_TOLERANCE: Final[float] = 100.0
#: At least this many nearby streets must agree (hold-out: 1 lowers the medians on every seed,
#: 2 keeps the p90 a few metres lower).
GEOCODE_LOCAL_NUMBERING_MIN_STREETS: Final[int] = 1
#: The agreeing streets' directions must agree: length of their weighted mean unit vector.
GEOCODE_LOCAL_NUMBERING_MIN_AGREEMENT: Final[float] = 0.7
#: The extrapolated step is multiplied by that agreement (the expected cosine between the mean
#: direction and the true one), so a doubtful direction lands nearer the known end.
GEOCODE_LOCAL_NUMBERING_SHRINK: Final[bool] = True
#: Such an extrapolation is then moved to where parallel streets within this distance of it
#: carry the number itself ...
GEOCODE_ALIGN_RADIUS_FT: Final[float] = 1500.0
#: ... streets whose numbers run within this cosine of the same way (0.9: ~25 degrees) ...
GEOCODE_ALIGN_MIN_COS: Final[float] = 0.9
#: ... when that lies between these multiples of the feet-per-number step (else the step stays).
GEOCODE_ALIGN_STEP_RANGE: Final[tuple[float, float]] = (0.4, 1.5)
#: An interpolation between two known numbers at least this far apart (range scale) ...
GEOCODE_ALIGN_MIN_SPAN: Final[float] = 50.0
#: ... is moved along its bracket this share of the way to where parallel streets carry the
#: number (0: plain linear interpolation; 0.5: both estimates count the same).
GEOCODE_ALIGN_INTERPOLATION_WEIGHT: Final[float] = 0.5
#: An interpolated or extrapolated house number is moved across the street to its side, as
#: learned from the reference's rooftops (`geo_lead.geocode.reference.learn_side_model`),
#: allowing for how far the points it came from stand off the range line (Census points and
#: hundreds: on it); hundreds and hundred-blocks go to the range line. False: left as
#: interpolated between the known points.
GEOCODE_SIDE_OFFSET: Final[bool] = True
