"""The result cache writes its files without fsync (`result_cache._write_atomic`), so after a
crash or power cut a renamed file may be cut short or hold zeroed or stale blocks. Each file
seals its value with the sha256 of its body: every such damaged file is read as a miss (and
logged), never as a value, and the value computed again is then read back whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from geo_lead import result_cache

KEY = "c" * 64


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEO_LEAD_RESULT_CACHE_DIR", str(tmp_path / "results"))
    monkeypatch.delenv(result_cache.ENV_SWITCH, raising=False)
    return tmp_path / "results"


def _json_value() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {"density": rng.random(3000).tolist(), "label": "a \"quoted\" name", "nan": float("nan")}


def _object_value() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    return pd.DataFrame({"x": rng.random(4000), "y": rng.integers(0, 9, 4000)})


def _damaged(data: bytes, other: bytes) -> dict[str, bytes]:
    """What a crash may leave of `data` after the rename: short, zeroed blocks, stale blocks
    (here: bytes of another cached file), empty."""
    n = len(data)
    out = {f"first {k} bytes": data[:k] for k in (0, 1, n // 3, n // 2, n - 1)}
    for start in (0, n // 4, n // 2, n - 4096):
        block = slice(max(start, 0), max(start, 0) + 4096)
        zeroed = bytearray(data)
        zeroed[block] = bytes(len(zeroed[block]))
        out[f"zeroed 4 KiB at {block.start}"] = bytes(zeroed)
        stale = bytearray(data)
        stale[block] = (other * (n // len(other) + 1))[block][:len(stale[block])]
        out[f"stale 4 KiB at {block.start}"] = bytes(stale)
    flipped = bytearray(data)
    flipped[n // 2] ^= 0x01
    out["one bit flipped"] = bytes(flipped)
    return out


@pytest.mark.parametrize("kind", ["json", "object"])
def test_a_torn_cache_file_is_a_miss_and_the_value_written_again_reads_back(
        kind: str, cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    write: Callable[[str, str, Any], None]
    read: Callable[[str, str], Any]
    if kind == "json":
        value: Any = _json_value()
        write, read, suffix = result_cache.write, result_cache.read, "json"
    else:
        value = _object_value()
        write, read, suffix = result_cache.write_object, result_cache.read_object, "pkl"

    def same(got: Any) -> None:
        if kind == "json":
            assert got["density"] == value["density"] and got["label"] == value["label"] and got["key"] == KEY
            assert np.isnan(got["nan"])
        else:
            pd.testing.assert_frame_equal(got, value, check_exact=True)

    write("kde_surface", KEY, value)
    path = cache_dir / f"kde_surface-{KEY[:32]}.{suffix}"
    whole = path.read_bytes()
    same(read("kde_surface", KEY))
    write("kde_surface", "d" * 64, {"other": list(range(2000))} if kind == "json" else _object_value() * 2)
    other = (cache_dir / f"kde_surface-{'d' * 32}.{suffix}").read_bytes()
    for what, data in _damaged(whole, other).items():
        path.write_bytes(data)
        with caplog.at_level("INFO", logger="geo_lead.result_cache"):
            assert read("kde_surface", KEY) is None, what
        write("kde_surface", KEY, value)  # computed again: the new file is whole
        same(read("kde_surface", KEY))


def test_cache_files_are_written_without_fsync_and_leave_no_temporary_file(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    result_cache.write("kde_surface", KEY, {"a": 1})
    result_cache.write_object("scores", KEY, [1, 2])
    assert not synced
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"kde_surface-{KEY[:32]}.json", f"scores-{KEY[:32]}.pkl"]
    assert result_cache.read("kde_surface", KEY) == {"a": 1, "key": KEY}
    assert result_cache.read_object("scores", KEY) == [1, 2]
