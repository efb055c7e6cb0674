"""geo_lead.maps and geo_lead.offline: aggregation, escaping, missing layers, offline pages.

Inputs are built in code from the real LOJIC neighborhoods (`boundaries/neighborhoods.geojson`)
and real Jefferson County address-point coordinates (OpenAddresses / LOJIC, a few rows copied
below with their source); every count, score, date and offence assignment in `map_inputs` is a
TEST FIXTURE, made up for these tests, not LMPD data.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo_lead import boundaries, maps, offline, settings

XSS_ADDRESSES = (
    '<script>window.__xss = 1</script>2700 BLOCK W MADISON ST',
    '<img src=x onerror="window.__xss = 2">N 26TH ST / BANK ST',
)
#: Offence texts in the formats LMPD publishes (docs: DOMAIN.md).
OFFENCES = (
    "POSS CONT SUB-1ST DEGREE-1ST OFFENSE-HEROIN",
    "DRUG PARAPHERNALIA - BUY/POSSESS",
    "TRAFF IN CONT SUB, 1ST OFFENSE(CARFENTANIL OR FENTANIL)",
    "OVERDOSE",
)
FIRST_DIVISION_NAMES = ("RUSSELL", "PORTLAND", "PHOENIX HILL", "CENTRAL BUSINESS DISTRICT",
                        "SHAWNEE", "CALIFORNIA", "LIMERICK", "OLD LOUISVILLE", "BUTCHERTOWN")
#: Real LOJIC address points (OpenAddresses us/ky/jefferson sample): the repository copy the
#: geocoder ships, else the shared data folder; without either, points sampled in the polygons.
ADDRESSES_CSVS = (settings.REFERENCE_DIR / "openaddresses_jefferson_sample.csv",
                  Path("/work/shared/data/geocoding/openaddresses_jefferson_sample.csv"))


def _address_points(neighborhoods: gpd.GeoDataFrame, n_max: int = 400) -> pd.DataFrame:
    """Real address points inside a few First Division-area neighborhoods."""
    csv = next((p for p in ADDRESSES_CSVS if p.exists()), None)
    if csv is not None:
        pts = pd.read_csv(csv, usecols=["street", "longitude", "latitude"])
    else:  # CI may not mount /work/shared: fall back to points inside the real polygons
        poly = neighborhoods[neighborhoods["NH_NAME"].isin(FIRST_DIVISION_NAMES)]
        sample = poly.to_crs(settings.CRS_PROJECTED).sample_points(40, rng=1).explode().to_crs(4326)
        pts = pd.DataFrame({"street": [f"{100 * (i % 30) + 100} BLOCK TEST ST" for i in range(len(sample))],
                            "longitude": sample.x.to_numpy(), "latitude": sample.y.to_numpy()})
    gdf = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(pts.longitude, pts.latitude), crs=4326)
    area = neighborhoods[neighborhoods["NH_NAME"].isin(FIRST_DIVISION_NAMES)]
    inside = gpd.sjoin(gdf, area[["NH_NAME", "geometry"]], predicate="within")
    inside = inside[~inside.index.duplicated()].sort_values(["street", "longitude"])
    return inside.head(n_max).reset_index(drop=True)


def map_inputs(n_records: int = 600, seed: int = 7) -> dict[str, object]:
    """TEST FIXTURE: store-shaped layers over the real neighborhoods, made-up numbers."""
    rng = np.random.default_rng(seed)
    nb = boundaries.load_neighborhoods()
    pts = _address_points(nb)
    pick = rng.integers(0, len(pts), n_records)
    recs = pd.DataFrame({
        "record_id": [f"fixture-{i}" for i in range(n_records)],
        "address_raw": pts["street"].to_numpy()[pick],
        "lon": pts["longitude"].to_numpy()[pick], "lat": pts["latitude"].to_numpy()[pick],
        "neighborhood": pts["NH_NAME"].to_numpy()[pick],
        "match_type": rng.choice(["exact", "interpolated", "block"], n_records),
        "offense_text": rng.choice(OFFENCES, n_records),
        "occurred_at": [f"2017-{m:02d}-{d:02d}T12:00:00" for m, d in
                        zip(rng.integers(1, 13, n_records), rng.integers(1, 28, n_records), strict=True)],
    })
    recs["opiate"] = recs["offense_text"].str.contains("HEROIN|FENTANIL").astype(int)
    recs["possession"] = recs["offense_text"].str.startswith("POSS").astype(int)
    recs["trafficking"] = recs["offense_text"].str.startswith("TRAFF").astype(int)
    recs["overdose"] = (recs["offense_text"] == "OVERDOSE").astype(int)
    # two hostile addresses and one record that was not geocoded
    recs.loc[0, "address_raw"], recs.loc[1, "address_raw"] = XSS_ADDRESSES
    recs.loc[[0, 1], "lon"] += 0.0002  # their own points, so each is the address shown there
    recs.loc[1, "offense_text"] = '<img src=y onerror="window.__xss = 3">'
    recs.loc[2, ["lon", "lat", "match_type", "neighborhood"]] = [np.nan, np.nan, "unmatched", ""]

    counts = recs.groupby("neighborhood").size()
    proj = nb.to_crs(settings.CRS_PROJECTED)
    scores = nb.rename(columns={"NH_NAME": "neighborhood"}).copy()
    scores["in_area"] = scores["neighborhood"].isin(FIRST_DIVISION_NAMES)
    scores["area_sqmi"] = proj.area.to_numpy() / settings.SQFT_PER_SQMI
    scores["count"] = scores["neighborhood"].map(counts).fillna(0).astype(int)
    scores["density_per_sqmi"] = scores["count"] / scores["area_sqmi"]
    scores["rate_per_1000"] = scores["count"] / 4.0
    scores["eb_rate_per_1000"] = scores["rate_per_1000"] * 0.9
    scores["score"] = scores["density_per_sqmi"] / scores["density_per_sqmi"].max()
    order = scores["score"].where(scores["in_area"]).rank(ascending=False)
    scores["rank"] = order
    scores["rank_low"], scores["rank_high"] = (order - 1).clip(lower=1), order + 2
    # a hostile neighborhood name (names come from a data file too)
    scores.loc[scores["neighborhood"] == "SHAWNEE", "neighborhood"] = '<img src=z onerror="window.__xss = 4">SHAWNEE'

    area = proj[proj["NH_NAME"].isin(FIRST_DIVISION_NAMES)]
    xmin, ymin, xmax, ymax = area.total_bounds
    cell_ft = 1500.0
    xs, ys = np.meshgrid(np.arange(xmin, xmax, cell_ft), np.arange(ymin, ymax, cell_ft))
    cells = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + cell_ft, ys.ravel() + cell_ft)
    rec_xy = gpd.GeoSeries(gpd.points_from_xy(recs.lon, recs.lat), crs=4326).to_crs(settings.CRS_PROJECTED)
    centers = shapely.centroid(cells)
    d2 = ((shapely.get_x(centers)[:, None] - rec_xy.x.to_numpy()[None, :]) ** 2
          + (shapely.get_y(centers)[:, None] - rec_xy.y.to_numpy()[None, :]) ** 2)
    dens = np.nansum(np.exp(-d2 / (2 * 1500.0**2)), axis=1)
    dens[dens < 0.5] = 0.0
    kde = gpd.GeoDataFrame({"density_per_sqmi": dens, "is_hotspot": dens > np.quantile(dens, 0.9),
                            "bandwidth_ft": 1500.0}, geometry=cells, crs=settings.CRS_PROJECTED)

    gistar_grid = kde[["geometry"]].copy()
    gistar_grid["cell_id"] = np.arange(len(gistar_grid))
    gistar_grid["count"] = dens.round(1)
    gistar_grid["gi_z"] = (dens - dens.mean()) / dens.std()
    gistar_grid["p_sim"] = 0.5
    gistar_grid["label"] = np.where(gistar_grid["gi_z"] > 2.5, "hot 99%",
                                    np.where(gistar_grid["gi_z"] > 1.5, "hot 95%", "not significant"))
    gistar = scores[scores["in_area"]][["neighborhood", "geometry"]].copy()
    gistar["gi_z"] = np.linspace(3.1, -2.2, len(gistar))
    gistar["p_sim"] = np.linspace(0.001, 0.04, len(gistar))
    gistar["label"] = ["hot 99%", "hot 95%", "hot 90%"] + ["not significant"] * (len(gistar) - 5) + ["cold 95%", "cold 99%"]

    def union(names: tuple[str, ...]) -> shapely.Geometry:
        return proj[proj["NH_NAME"].isin(names)].union_all()

    zones = gpd.GeoDataFrame({
        "role": ["pilot", "best", "comparison"],
        "neighborhoods": ["RUSSELL;PORTLAND", "RUSSELL;CALIFORNIA", "SHAWNEE;LIMERICK"],
        "k": [2, 2, 2], "share": [0.4, 0.45, 0.2], "pai_train": [3.1, 3.4, 1.2], "pai_test": [2.9, 3.0, 1.1],
    }, geometry=[union(("RUSSELL", "PORTLAND")), union(("RUSSELL", "CALIFORNIA")),
                 union(("SHAWNEE", "LIMERICK"))], crs=settings.CRS_PROJECTED)
    first_division = gpd.GeoDataFrame({"name": ["1ST DIVISION (fixture)"]},
                                      geometry=[union(("RUSSELL", "PORTLAND", "PHOENIX HILL",
                                                       "CENTRAL BUSINESS DISTRICT"))],
                                      crs=settings.CRS_PROJECTED)
    return {"scores": scores, "kde": kde, "gistar": gistar, "gistar_grid": gistar_grid, "zones": zones, "records": recs,
            "neighborhoods": nb, "first_division": first_division}


@pytest.fixture(scope="module")
def inputs() -> dict[str, object]:
    return map_inputs()


def _site_html(inputs: dict[str, object], **kw: object) -> str:
    m = maps.build_site_map(maps.SiteMapInputs(inputs["scores"], inputs["kde"], inputs["gistar"], inputs["zones"],
                                               inputs["records"], gistar_grid=inputs["gistar_grid"],
                                               neighborhoods=inputs["neighborhoods"],
                                               first_division=inputs["first_division"]), **kw)
    return offline.render_map(m)


# --- aggregation ----------------------------------------------------------------------------
def test_aggregate_points_hand_computed() -> None:
    recs = pd.DataFrame({
        "lon": [-85.8, -85.8, -85.8, -85.7, np.nan],
        "lat": [38.25, 38.25, 38.25, 38.26, np.nan],
        "address_raw": ["2700 BLOCK W MADISON ST", "2700 BLOCK W MADISON ST", "2700 W MADISON", "N 26TH ST / BANK ST", "X"],
        "offense_text": ["OVERDOSE", "OVERDOSE", "HEROIN", "", "OVERDOSE"],
        "opiate": [1, 0, 1, 0, 1], "overdose": [1, 1, 0, 0, 1],
        "sex": ["M", "F", "M", "F", "M"],  # person fields must never be carried along
    })
    pts = maps.aggregate_points(recs)
    assert list(pts["n"]) == [3, 1]
    assert pts["n"].sum() == 4  # 5 records = 4 on the map + 1 not geocoded
    top = pts.iloc[0]
    assert top["address"] == "2700 BLOCK W MADISON ST"
    assert (top["opiate"], top["overdose"]) == (2, 2)
    assert top["offences"] == [("OVERDOSE", 2), ("HEROIN", 1)]
    assert "sex" not in pts.columns
    assert pts.iloc[1]["offences"] == []


def test_class_breaks_and_colours_hand_computed() -> None:
    assert maps.class_breaks([1, 2, 3, 4, 5], k=5) == pytest.approx([1.8, 2.6, 3.4, 4.2, 5.0])
    assert maps.class_breaks([]) == []
    # counts: quantiles of [1,1,1,2,5] are 1, 1, 1.4, 2.6, 5 -> whole numbers 1, 2, 3, 5
    assert maps.class_breaks([1, 1, 1, 2, 5], integer=True) == [1.0, 2.0, 3.0, 5.0]
    labels = [lab for _, lab in maps._range_labels([1.0, 2.0, 3.0, 5.0], maps.SCORE_COLORS, 0, integer=True)]
    assert labels == ["1", "2", "3", "4 &ndash; 5"]
    assert maps.class_breaks([2.0, 2.0, np.nan]) == [2.0]
    cols = maps.SCORE_COLORS
    assert maps.color_for(1.0, [1.8, 2.6, 3.4, 4.2, 5.0], cols) == cols[0]
    assert maps.color_for(5.0, [1.8, 2.6, 3.4, 4.2, 5.0], cols) == cols[4]
    assert maps.color_for(2.0, [2.0], cols) == cols[-1]  # one class -> darkest
    assert maps.color_for(np.nan, [1.0], cols) == maps.NO_DATA_COLOR


def test_monthly_counts_hand_computed(inputs: dict[str, object]) -> None:
    recs = pd.DataFrame({"occurred_at": ["2017-01-05T10:00:00", "2017-01-20T10:00:00", "2017-03-01T00:00:00", "bad", None],
                         "lon": [-85.8, -85.8, -85.7, -85.7, -85.7], "lat": [38.25, 38.25, 38.26, 38.26, 38.26],
                         "neighborhood": ["RUSSELL", "RUSSELL", "PORTLAND", "PORTLAND", "PORTLAND"]})
    months, by_area, by_point = maps.monthly_counts(recs, inputs["neighborhoods"])
    assert months == ["2017-01", "2017-03"]  # months without records are not slider steps
    assert by_area.set_index(["month", "area"])["n"].to_dict() == {("2017-01", "RUSSELL"): 2, ("2017-03", "PORTLAND"): 1}
    assert by_point["n"].sum() == 3


def test_monthly_counts_weight_times_boundary_share(inputs: dict[str, object]) -> None:
    # hand-computed: record 1 (weight 4) is listed on the RUSSELL/PORTLAND edge, so under
    # "split" it adds 4/2 = 2 to each; record 2 (weight 2) and record 3 (weight 1.5) count whole.
    recs = pd.DataFrame({"occurred_at": ["2017-01-05T10:00:00", "2017-01-06T10:00:00", "2017-02-01T00:00:00"],
                         "lon": [-85.8, -85.8, -85.7], "lat": [38.25, 38.25, 38.26],
                         "neighborhood": ["RUSSELL", "RUSSELL", "PORTLAND"],
                         "boundary_units": ["RUSSELL;PORTLAND", "", ""], "weight": [4.0, 2.0, 1.5]})
    _, by_area, by_point = maps.monthly_counts(recs, inputs["neighborhoods"], rule="split")
    assert by_area.set_index(["month", "area"])["n"].to_dict() == {
        ("2017-01", "PORTLAND"): 2.0, ("2017-01", "RUSSELL"): 4.0, ("2017-02", "PORTLAND"): 1.5}
    assert by_area["n"].sum() == pytest.approx(recs["weight"].sum())  # weight conserved
    assert by_point["n"].sum() == 3  # block points count records, unweighted
    _, first, _ = maps.monthly_counts(recs, inputs["neighborhoods"], rule="first")
    assert first.set_index(["month", "area"])["n"].to_dict() == {
        ("2017-01", "RUSSELL"): 6.0, ("2017-02", "PORTLAND"): 1.5}


def test_timeline_page_shows_weighted_counts(inputs: dict[str, object]) -> None:
    recs = pd.DataFrame({"occurred_at": ["2017-01-05T10:00:00"], "lon": [-85.8], "lat": [38.25],
                         "neighborhood": ["RUSSELL"], "boundary_units": ["RUSSELL;PORTLAND"], "weight": [3.0]})
    page = offline.render_map(maps.build_timeline_map(recs, inputs["neighborhoods"], rule="split"))
    assert '"counts":[{' in page and ":1.5" in page  # 3 / 2 in each of the two units
    assert "counts in equal parts" in page


def test_monthly_counts_joins_points_when_no_neighborhood_column(inputs: dict[str, object]) -> None:
    recs = inputs["records"].drop(columns=["neighborhood"])
    _, by_area, _ = maps.monthly_counts(recs, inputs["neighborhoods"])
    expected = inputs["records"].dropna(subset=["lon"]).groupby("neighborhood").size()
    assert by_area.groupby("area")["n"].sum().to_dict() == expected.to_dict()


def test_timeline_notes_skipped_months(inputs: dict[str, object]) -> None:
    recs = pd.DataFrame({"occurred_at": ["2016-01-05T10:00:00", "2017-01-20T10:00:00"],
                         "lon": [-85.8, -85.8], "lat": [38.25, 38.25], "neighborhood": ["RUSSELL", "RUSSELL"]})
    page = offline.render_map(maps.build_timeline_map(recs, inputs["neighborhoods"]))
    assert "11 months in that span have no records" in page


def test_indicator_records_follow_the_scores(inputs: dict[str, object]) -> None:
    recs = inputs["records"].assign(lead_eligible=[i % 3 == 0 for i in range(len(inputs["records"]))])
    kept, notes = maps.indicator_records(recs, inputs["scores"].assign(indicator="lead_eligible"))
    assert len(kept) == 200 and "200 with the 'lead_eligible' flag" in notes[0]
    kept, notes = maps.indicator_records(recs, inputs["scores"])  # no indicator column
    assert len(kept) == 600 and "all 600" in notes[0]


def test_records_not_yet_geocoded(inputs: dict[str, object]) -> None:
    recs = inputs["records"].drop(columns=["lon", "lat", "neighborhood"])
    site = offline.render_map(maps.build_site_map(maps.SiteMapInputs(record_points=recs)))
    assert "600 of 600 records are not geocoded" in site and "No record is geocoded yet" in site
    assert "Records by block point" not in site
    timeline = offline.render_map(maps.build_timeline_map(recs, inputs["neighborhoods"]))
    assert "None of the 600 records has both a date and a geocode yet" in timeline
    assert "geo-lead-range" not in timeline


# --- escaping -------------------------------------------------------------------------------
def test_script_json_cannot_close_the_script() -> None:
    text = maps.script_json({"a": "</script><script>alert(1)</script>", "b": "<!--"})
    assert "<" not in text and ">" not in text
    assert "\\u003c/script\\u003e" in text


def test_hostile_strings_are_escaped_in_the_page(inputs: dict[str, object]) -> None:
    page = _site_html(inputs)
    for needle in ("window.__xss = 1</script>", "<script>window.__xss", "<img src=x", "<img src=y", "<img src=z"):
        assert needle not in page
    # the text is still there, HTML-escaped, for people to read (inside JSON-escaped script data)
    decoded = page.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
    for text in (*XSS_ADDRESSES, '<img src=y onerror="window.__xss = 3">', '<img src=z onerror="window.__xss = 4">SHAWNEE'):
        assert html.escape(text) in decoded, text


def test_no_person_fields_on_the_map(inputs: dict[str, object]) -> None:
    recs = inputs["records"].assign(sex="FEMALE_FIXTURE_SEX", race="RACE_FIXTURE", age="AGE_FIXTURE_77")
    page = offline.render_map(maps.build_site_map(maps.SiteMapInputs(record_points=recs)))
    for secret in ("FEMALE_FIXTURE_SEX", "RACE_FIXTURE", "AGE_FIXTURE_77"):
        assert secret not in page
    assert "persons" not in maps.RECORD_MAP_COLUMNS and not set(maps.RECORD_MAP_COLUMNS) & {"sex", "race", "age", "ethnicity"}


# --- layers, notes, offline -----------------------------------------------------------------
def test_every_layer_and_the_legend_are_on_the_page(inputs: dict[str, object]) -> None:
    page = _site_html(inputs)
    # short layer names (the layer list must fit a phone); the legend names each zone's members
    for name in ("Neighborhood scores (click one)", "Kernel density surface", "Gi* hot/cold spots (neighborhoods)",
                 "Gi* hot/cold spots (grid)", "Records by block point (599)", "First Division", "Pilot zone",
                 "Best zone of the same size", "Comparison area", "Neighborhood names"):
        assert f'"{name}"' in page, name
    assert "Russell, Portland" in page or "Portland, Russell" in page
    assert "geo-lead-legend" in page and "geo-lead-notes" in page
    assert "L.control.layers" in page
    assert "1 of 600 records are not geocoded" in page


def test_fine_grids_are_merged_by_class(inputs: dict[str, object]) -> None:
    """Above MAP_MAX_CELL_FEATURES cells, one feature per colour class / label (same picture)."""
    kde = inputs["kde"]
    proj = kde.total_bounds
    xs, ys = np.meshgrid(np.arange(proj[0], proj[2], 250.0), np.arange(proj[1], proj[3], 250.0))
    cells = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 250.0, ys.ravel() + 250.0)
    assert len(cells) > settings.MAP_MAX_CELL_FEATURES
    dens = np.arange(len(cells), dtype=float) + 1.0
    fine = gpd.GeoDataFrame({"density_per_sqmi": dens, "is_hotspot": dens > dens.max() - 100,
                             "bandwidth_ft": 1000.0}, geometry=cells, crs=settings.CRS_PROJECTED)
    grid = gpd.GeoDataFrame({"cell_id": np.arange(len(cells)), "gi_z": dens / dens.max() * 4,
                             "label": np.where(dens > dens.max() * 0.9, "hot 99%", "not significant")},
                            geometry=cells, crs=settings.CRS_PROJECTED)
    page = offline.render_map(maps.build_site_map(maps.SiteMapInputs(kde=fine, gistar_grid=grid)))
    assert f"Density grid cells merged by class for display ({len(cells):,} cells)" in page
    decoded = page.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
    assert decoded.count("records per sq mi (") == 5  # 5 quantile classes, each with its range
    assert "hotspot (100 cells)" in decoded
    n_hot = int((dens > dens.max() * 0.9).sum())
    assert f"<b>hot 99%</b> ({n_hot:,} cells)" in decoded
    assert f"<b>not significant</b> ({len(cells) - n_hot:,} cells)" in decoded


def test_missing_layers_are_noted_not_fatal() -> None:
    page = offline.render_map(maps.build_site_map())
    assert "No neighborhood scores in the store" in page
    assert "No kernel-density surface" in page and "No Gi* results" in page
    assert "No geocoded records" in page and "No site-selection zones" in page
    assert offline.external_references(page) == []


def test_offline_page_has_no_external_reference(inputs: dict[str, object]) -> None:
    page = _site_html(inputs)
    assert offline.external_references(page) == []
    assert not re.search(r"""<(script|link|img)[^>]*(src|href)=["']https?://""", page)
    assert "cdn.jsdelivr" not in page and "cdnjs" not in page and "code.jquery" not in page
    assert "vendored" in page and "markerClusterGroup" in page
    assert "data:image/png;base64" in page  # leaflet's layer-control icon, inlined


def test_tiles_option_adds_a_basemap(inputs: dict[str, object]) -> None:
    page = _site_html(inputs, tiles=True)
    assert "tile.openstreetmap.org" in page
    assert "OpenStreetMap basemap" in page
    assert offline.external_references(page) == []  # scripts still inlined


def test_online_render_keeps_cdn_links_and_unknown_cdn_is_an_error() -> None:
    m = maps.build_site_map()
    assert "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js" in offline.render_map(m, offline=False)
    with pytest.raises(offline.OfflineAssetError, match="no local copy"):
        offline.inline_assets('<script src="https://cdn.example.org/unknown.js"></script>')


def test_vendored_files_and_licences_exist() -> None:
    for path in offline.VENDORED.values():
        assert path.exists() and path.stat().st_size > 500
    assert (offline.STATIC_DIR / "leaflet" / "LICENSE").exists()
    assert (offline.STATIC_DIR / "leaflet.markercluster" / "LICENSE").exists()
    assert "1.9.3" in (offline.STATIC_DIR / "README.md").read_text()
    assert "L.version=\"1.9.3\"" in (offline.STATIC_DIR / "leaflet" / "leaflet.js").read_text().replace(" ", "") or \
        "1.9.3" in (offline.STATIC_DIR / "leaflet" / "leaflet.js").read_text()[:300]


def test_timeline_map(inputs: dict[str, object]) -> None:
    m = maps.build_timeline_map(inputs["records"], inputs["scores"], name_col="neighborhood")
    page = offline.render_map(m)
    assert 'type="range"' in page and "geo-lead-range" in page
    assert "2017-01" in page and "2017-12" in page
    assert "599 of 600 records" in page
    assert offline.external_references(page) == []
    assert "<img src=x" not in page and "<script>window" not in page


# --- store -> files -------------------------------------------------------------------------
def fill_store(store_path: Path, inputs: dict[str, object]) -> None:
    """Write the fixture layers into a store the way the other stages will."""
    from geo_lead.sources import RECORD_COLUMNS
    from geo_lead.store import FLAG_COLUMNS, opened

    recs = inputs["records"]
    with opened(store_path) as store:
        frame = pd.DataFrame({c: None for c in RECORD_COLUMNS}, index=recs.index)
        for c in ("record_id", "occurred_at", "offense_text", "address_raw"):
            frame[c] = recs[c]
        frame["source"], frame["source_file"] = "crime_pre2023", "fixture.csv"
        frame["content_hash"] = recs["record_id"]
        for f in FLAG_COLUMNS:
            frame[f] = recs.get(f, 0)
        with store.write():
            store.upsert_records(frame, "2026-01-01T00:00:00Z")
            store.update_records(recs[["record_id", "lon", "lat", "match_type", "neighborhood"]])
        for table in ("scores", "hotspot_kde", "site_zones"):
            key = {"scores": "scores", "hotspot_kde": "kde", "site_zones": "zones"}[table]
            store.replace_features(table, inputs[key])
        store.replace_features("hotspot_gistar_neighborhoods", inputs["gistar"])
        store.replace_features("hotspot_gistar_grid", inputs["gistar_grid"])
        store.put_json("site_result", {"verdict": "FIXTURE: the pilot zone is within the rank interval of the best zone",
                                       "k": 2, "pilot": {"share": 0.4, "pai_test": 2.9},
                                       "best": {"share": 0.45, "pai_test": 3.0}})


def test_write_maps_from_store_and_size_budget(tmp_path: Path, store_path: Path,
                                               inputs: dict[str, object]) -> None:
    from geo_lead.store import opened

    fill_store(store_path, inputs)
    with opened(store_path) as store:
        got = maps.read_map_inputs(store)
        paths = maps.write_maps(store, tmp_path / "maps")
    assert len(got["records"]) == 600 and not set(got["records"].columns) & {"sex", "race", "age"}
    assert len(got["scores"]) == len(inputs["scores"])
    assert set(paths) == {"site_selection", "timeline"}
    total_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
    assert total_mb <= settings.MAP_MAX_TOTAL_MB
    page = paths["site_selection"].read_text(encoding="utf-8")
    assert offline.external_references(page) == []
    assert "Records by block point (599)" in page


def test_inlined_code_cannot_end_the_script_or_ask_for_source_maps() -> None:
    page = offline.render_map(maps.build_site_map())
    assert "sourceMappingURL" not in page
    js = offline._safe_inline_js('var a = "</script>";\n//# sourceMappingURL=x.js.map\n')
    assert "</script" not in js and "sourceMappingURL" not in js
