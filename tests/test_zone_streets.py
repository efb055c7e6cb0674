"""The offline zone page's address lookup (geo_lead.zone_streets + the page's JavaScript).

Oracle: the Python geocoder itself (`geo-lead zone check --address`, i.e.
`geo_lead.zone.check_address`). The page's answers for a list of real addresses near the
pilot zone (house numbers, hundred-blocks, intersections, other spellings) must equal the
CLI's: same inside/outside and near-boundary flag, the same point within the index's
tolerance; where the page says it cannot be sure (`hedge`) the CLI's point must indeed lie
that close to the boundary. The JavaScript normaliser is checked against `parse_address`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from geo_lead import settings
from geo_lead.errors import ZoneInputError
from geo_lead.geocode import Geocoder, parse_address
from geo_lead.zone import ZoneChecker, check_address
from geo_lead.zone_page import write_page
from geo_lead.zone_streets import street_index

FT_PER_DEG_LAT = 364_000.0

#: Real LMPD block addresses and intersections around Russell and Portland (shipped data), plus
#: house numbers and spellings an officer might type.
ADDRESSES = [
    "2700 BLOCK W MADISON ST", "N 26TH ST / BANK ST", "2714 W MADISON ST", "2715 W MADISON ST",
    "1800 BLOCK W MAIN ST", "W MARKET ST / N 22ND ST", "3300 BLOCK BANK ST", "600 BLOCK N 25TH ST",
    "2000 BLOCK PORTLAND AVE", "1300 BLOCK W BROADWAY", "400 BLOCK S 13TH ST", "2600 BLOCK DUMESNIL ST",
    "1500 BLOCK W JEFFERSON ST", "3400 BLOCK W MAIN ST", "900 BLOCK N 35TH ST", "1700 W CHESTNUT ST",
    "2723 w madison street", "2700 blk west madison st", "twenty sixth st / bank st", "1234 W MARKET ST",
    "2401 PORTLAND AVE", "3001 W BROADWAY", "N 33RD ST & BANK ST", "1900 BLOCK W MUHAMMAD ALI BLVD",
    "520 N 26TH ST", "2800 BLOCK W MAIN ST", "1000 BLOCK W MAIN ST", "S 18TH ST / W BROADWAY",
    "2700 W MADISON ST, Louisville, KY 40211", "123-125 N 20TH ST",
]

PARSE_SAMPLES = ADDRESSES + [
    "N 26TH ST/BANK ST", "2700 BLOCK W MADISON", "@FERN CREEK PARK", "COMMUNITY / LARGE", "I65S AT DIXIE HWY",
    "4800 OUTER LOOP", "3RD STREET RD", "100 SAINT CATHERINE ST", "2722 ELLIOTT AVE #2", "1500 BLK S 3RD ST",
    "W MADISON ST", "", "12 1/2 MAIN ST", "2700A W MADISON ST", "ROCKFORD LN LN", "500 E MAIN ST APT 4",
]


@pytest.fixture(scope="module")
def checker() -> ZoneChecker:
    return ZoneChecker()


@pytest.fixture(scope="module")
def geocoder() -> Geocoder:
    return Geocoder()


@pytest.fixture(scope="module")
def index(checker: ZoneChecker, geocoder: Geocoder) -> dict[str, Any]:
    return street_index(checker.zone_ft, geocoder)


@pytest.fixture(scope="module")
def page_file(checker: ZoneChecker, index: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_page(tmp_path_factory.mktemp("streets") / "zone_check.html", checker, index)


def _cli(checker: ZoneChecker, geocoder: Geocoder, address: str) -> dict[str, Any] | None:
    try:
        return check_address(checker, address, geocoder=geocoder)
    except ZoneInputError:
        return None


def test_index_covers_the_streets_around_the_zone(index: dict[str, Any]) -> None:
    assert index["radius_ft"] == settings.ZONE_PAGE_STREETS_RADIUS_FT
    for key in ("W MADISON ST", "N 26TH ST", "BANK ST", "PORTLAND AVE", "W MARKET ST"):
        assert key in index["streets"] and key in index["spellings"]
    # another reading of a street maps to it, with the geocoder's penalty for what is missing
    i = index["streets"].index("W MADISON ST")
    assert index["spellings"]["W MADISON"][0] == i and index["spellings"]["W MADISON"][1] < 1
    assert len(index["crossings"]) > 500


@pytest.mark.browser
def test_javascript_reads_addresses_as_parse_address(offline_page: Any, page_file: Path) -> None:
    offline_page.goto(page_file.as_uri())
    js = offline_page.evaluate("xs => xs.map((x) => Addr.parse(x))", PARSE_SAMPLES)
    for text, got in zip(PARSE_SAMPLES, js, strict=True):
        want = parse_address(text)
        assert got["kind"] == want.kind, text
        if want.kind in ("address", "block", "intersection", "street"):
            assert got["normalized"] == want.normalized, text
            if want.number is not None:
                assert got["number"] == want.number, text


@pytest.mark.browser
def test_offline_page_answers_as_the_cli(offline_page: Any, page_file: Path, checker: ZoneChecker,
                                         geocoder: Geocoder, index: dict[str, Any]) -> None:
    offline_page.goto(page_file.as_uri())
    js = offline_page.evaluate("""xs => xs.map((x) => {
        try { return checkAddressOffline(x); } catch (e) { return {error: e.message}; } })""", ADDRESSES)
    edges = shapely.union_all([g.boundary for g in checker.member_geoms.values()])
    answered, hedged = 0, 0
    uncovered: list[str] = []
    for address, page in zip(ADDRESSES, js, strict=True):
        cli = _cli(checker, geocoder, address)
        assert cli is not None, address  # every listed address is placed by the geocoder
        if "error" in page:  # not covered: the page says so and sends the officer to coordinates
            assert "coordinate" in page["error"], (address, page)
            uncovered.append(address)
            continue
        assert page["match_type"] == cli["match_type"], address
        if page.get("hedge"):  # an interpolated house number near the boundary: no answer
            assert page["approx"] and cli["distance_to_boundary_ft"] <= 2 * page["hedge_ft"], address
            hedged += 1
            continue
        assert page["inside"] == cli["inside"], address
        assert page["near_boundary"] == cli["near_boundary"], address
        if not page.get("approx"):  # the geocoder's own point
            assert (page["lon"], page["lat"]) == (cli["lon"], cli["lat"]), address
            assert abs(page["distance_to_boundary_ft"] - cli["distance_to_boundary_ft"]) <= 0.1, address
        # on the edge Russell and Portland share (a street), either name is right
        if cli["inside"] and not shapely.dwithin(edges, shapely.Point(cli["lon"], cli["lat"]), 1e-4):
            assert page["neighborhood"] == cli["neighborhood"], address
        answered += 1
    assert not uncovered, uncovered
    assert answered >= len(ADDRESSES) - 6 and hedged <= 6
    assert offline_page.external_requests == [] and offline_page.console_errors == []


@pytest.mark.browser
def test_address_box_offline_and_outside_the_index(offline_page: Any, page_file: Path) -> None:
    offline_page.goto(page_file.as_uri())
    assert offline_page.is_visible("#address-form")
    assert "within about 1 mile" in offline_page.inner_text("#coverage")
    offline_page.fill("#address", "2700 BLOCK W MADISON ST")
    offline_page.click("#address-form button")
    offline_page.wait_for_function("document.getElementById('answer').className !== ''")
    assert offline_page.eval_on_selector("#answer", "e => e.className") == "inside"
    assert "W MADISON ST" in offline_page.inner_text("#how")
    offline_page.fill("#address", "4800 BLOCK OUTER LOOP")  # far away: use coordinates
    offline_page.click("#address-form button")
    offline_page.wait_for_function("document.getElementById('answer').className === 'error'")
    assert "coordinate" in offline_page.inner_text("#detail")
    assert offline_page.external_requests == []


def test_interpolated_numbers_never_flip_where_the_page_answers(index: dict[str, Any], geocoder: Geocoder,
                                                                checker: ZoneChecker) -> None:
    """Independent of the browser: on random covered house numbers, decoded and interpolated
    as the page does, wherever the page would answer (farther from the boundary than its
    hedge distance) the geocoder's own point is on the same side of the boundary."""
    rng = np.random.default_rng(7)
    curve = index["curve"]
    lon0, lat0 = index["origin"]
    types = index["match_types"]

    def q(n: int) -> float:
        if curve is None:
            return float(n)
        h = n // 100 * 100
        return h + 100 * curve[n - h]

    texts, pts, hedge = [], [], []
    for s in rng.choice(len(index["streets"]), 60, replace=False):
        e = index["numbers"][s]
        exact = {int(r[0]) for r in np.cumsum(np.asarray(e["exact"], dtype=np.int64).reshape(-1, 4), axis=0)}
        for n in rng.integers(e["cover"][0], e["cover"][-1] + 1, 10):
            n = int(n)
            if n in exact:
                continue
            for run in e["odd"] if n % 2 else e["even"]:
                flat = np.cumsum(np.asarray(run[4], dtype=np.int64).reshape(-1, 3), axis=0)
                if not flat[0, 0] <= n <= flat[-1, 0]:
                    continue
                k = max(int(np.searchsorted(flat[:, 0], n)) - 1, 0)
                a, b = flat[k], flat[min(k + 1, len(flat) - 1)]
                qa, qb = q(int(a[0])), q(int(b[0]))
                t = 0.0 if qb == qa else (q(n) - qa) / (qb - qa)
                texts.append(f"{n} {index['streets'][s]}")
                pts.append((lat0 + (a[2] + t * (b[2] - a[2])) * 1e-7, lon0 + (a[1] + t * (b[1] - a[1])) * 1e-7))
                hedge.append(index["hedge_beyond_ft"] if types[run[1]] == "extrapolated" else index["hedge_ft"])
                break
    assert len(texts) > 300
    want = geocoder.geocode(texts)
    page = checker.check_many(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    cli = checker.check_many(want["lat"].to_numpy(), want["lon"].to_numpy())
    answers = page.distance_to_boundary_ft > np.array(hedge)
    assert answers.sum() > 100
    assert (page.inside[answers] == cli.inside[answers]).all()
    assert not cli.near_boundary[answers].any()
