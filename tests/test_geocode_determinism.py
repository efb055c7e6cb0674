"""The geocoder gives the same answer whatever Python's hash seed (set/dict order)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from geo_lead import settings

SCRIPT = """
import sys
import pandas as pd
from geo_lead.geocode import Geocoder
from geo_lead.sources import read_records
frames = [read_records(p).records for p in sys.argv[1:]]
rec = pd.concat(frames).drop_duplicates(["address_raw", "zip"])
out = Geocoder().geocode(rec["address_raw"].tolist(), rec["zip"].tolist())
out[["input", "lon", "lat", "match_type", "score", "matched_address"]].to_csv(sys.stdout, index=False)
"""


def _run(seed: str, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "GEO_LEAD_CACHE_DIR": str(tmp_path / "cache")}
    files = [str(p) for p in settings.SHIPPED_LMPD_FILES]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *files], env=env, capture_output=True,
                          text=True, check=True, timeout=300)
    return done.stdout


def test_same_results_under_different_hash_seeds(tmp_path: Path) -> None:
    first, second = _run("1", tmp_path), _run("4", tmp_path)
    assert first.count("\n") > 2500
    assert first == second
