"""Optional online provider: the US Census Bureau batch geocoder (off by default).

Only used when asked for explicitly (``geo-lead geocode --online-census``). Sends up to
10,000 addresses per request to
``https://geocoding.geo.census.gov/geocoder/locations/addressbatch`` and returns the same
result columns as `geo_lead.geocode.Geocoder`. Hundred-blocks are sent as their middle
number (``2700 BLOCK X`` -> ``2750 X``); intersections and place names are not sent (the
Census geocoder does not match them). The HTTP call is injectable so tests never touch the
network.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import GeocodeError
from geo_lead.geocode.normalize import parse_address

log = logging.getLogger(__name__)

CENSUS_BATCH_URL = "https://geocoding.geo.census.gov/geocoder/locations/addressbatch"
CENSUS_BATCH_MAX = 10_000
CENSUS_BENCHMARK = "Public_AR_Current"

#: (url, body bytes, content type) -> response text
Poster = Callable[[str, bytes, str], str]


def _urllib_post(url: str, body: bytes, content_type: str, timeout_s: float = 300.0) -> str:
    import urllib.request

    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read().decode("utf-8", "replace")
    except OSError as exc:
        raise GeocodeError(f"US Census geocoder request failed ({exc}); run without --online-census "
                           "to stay offline.") from None


class CensusBatchGeocoder:
    """The Census batch geocoder behind the same interface as `Geocoder.geocode`.

    Parameters
    ----------
    post
        The HTTP POST function (injected by tests); default uses urllib.
    city, state
        Sent with every address (LMPD block addresses carry no city).
    """

    name = "census-batch"

    def __init__(self, post: Poster | None = None, city: str = "LOUISVILLE", state: str = "KY") -> None:
        self.post = post or _urllib_post
        self.city, self.state = city, state

    def _body(self, rows: list[tuple[int, str, str]]) -> tuple[bytes, str]:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for i, street, zip5 in rows:
            w.writerow([i, street, self.city, self.state, zip5])
        boundary = uuid.uuid4().hex
        parts = [
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"benchmark\"\r\n\r\n{CENSUS_BENCHMARK}\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"addressFile\"; filename=\"addresses.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n{buf.getvalue()}\r\n",
            f"--{boundary}--\r\n",
        ]
        return "".join(parts).encode("utf-8"), f"multipart/form-data; boundary={boundary}"

    def geocode(self, addresses: Sequence[str], zips: Sequence[str] | None = None) -> pd.DataFrame:
        """Geocode with the Census batch service; unsendable forms come back unmatched."""
        n = len(addresses)
        zips = list(zips) if zips is not None else [""] * n
        out = pd.DataFrame({"input": list(addresses), "lon": np.nan, "lat": np.nan,
                            "match_type": "unmatched", "score": 0.0, "matched_address": "",
                            "reason": "not sent to the Census geocoder (not a street address)"})
        rows: list[tuple[int, str, str]] = []
        for i, (a, z) in enumerate(zip(addresses, zips, strict=True)):
            p = parse_address(a if isinstance(a, str) else "", z if isinstance(z, str) else "")
            if p.kind == "address":
                rows.append((i, p.normalized, p.zip))
            elif p.kind == "block":
                rows.append((i, f"{(p.number or 0) // 100 * 100 + 50} {p.street.key}", p.zip))  # type: ignore[union-attr]
        for start in range(0, len(rows), CENSUS_BATCH_MAX):
            chunk = rows[start:start + CENSUS_BATCH_MAX]
            body, ctype = self._body(chunk)
            text = self.post(CENSUS_BATCH_URL, body, ctype)
            self._apply(out, text, {i for i, _, _ in chunk})
        return out

    @staticmethod
    def _apply(out: pd.DataFrame, text: str, sent: set[int]) -> None:
        w, s, e, n = settings.JEFFERSON_BBOX
        for row in csv.reader(io.StringIO(text)):
            if len(row) < 3 or not row[0].strip().isdigit():
                continue
            i = int(row[0])
            if i not in sent:
                continue
            status = row[2].strip()
            if status != "Match" or len(row) < 6:
                out.loc[i, "reason"] = f"Census geocoder: {status or 'no answer'}"
                continue
            try:
                lon, lat = (float(v) for v in row[5].split(","))
            except ValueError:
                out.loc[i, "reason"] = "Census geocoder: unreadable coordinates"
                continue
            if not (w <= lon <= e and s <= lat <= n):
                out.loc[i, "reason"] = "Census geocoder: placed outside Jefferson County"
                continue
            exact = row[3].strip() == "Exact"
            out.loc[i, ["lon", "lat"]] = [lon, lat]
            out.loc[i, "match_type"] = "interpolated"
            out.loc[i, "score"] = 0.8 if exact else 0.6
            out.loc[i, "matched_address"] = row[4].strip()
            out.loc[i, "reason"] = f"US Census geocoder (online, {'exact' if exact else 'non-exact'})"
