"""Results kept across runs as small JSON files, each keyed by the sha256 of its inputs.

A result cached here is a pure function of what its key hashes: the input arrays or
geometries, the settings, the source file of the module that computes it and the versions
of the libraries it calls. A run whose inputs hash to a key seen before reads the result
instead of computing it, and reads exactly what the computation gave (floats are written
with ``repr``, which round-trips every float64). Any change of input, setting, code or
library gives another key, so an entry is never stale, only unused.

Users: `geo_lead.population.interpolate_population` (kind ``population``) and
`geo_lead.hotspots.kde_surface` (kinds ``kde_bandwidth`` and ``kde_surface``).

Where: `cache_dir` -- ``$GEO_LEAD_RESULT_CACHE_DIR`` when set (benchmarks start cold with
it), else ``$GEO_LEAD_CACHE_DIR/results`` when that variable is set, else
``$XDG_CACHE_HOME/geo_lead/results`` (``~/.cache/geo_lead/results``), beside the geocoder's
reference index and the zone page's street index. Files, not the store's meta, because the
hotspots and the site of `geo-lead run` are computed in forked children, which never write
the store, and because a result keyed by its inputs serves every store. Deleting the folder
is always safe. ``GEO_LEAD_RESULT_CACHE=0`` turns reading and writing off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from geo_lead import settings
from geo_lead.outputs import write_text

log = logging.getLogger(__name__)

#: Environment variable that turns the cache off when set to ``0``.
ENV_SWITCH = "GEO_LEAD_RESULT_CACHE"


def cache_dir() -> Path:
    """The folder cached results live in (created on first write)."""
    own = os.environ.get("GEO_LEAD_RESULT_CACHE_DIR")
    if own:
        return Path(own)
    env = os.environ.get(settings.CACHE_DIR_ENV)
    return Path(env) / "results" if env else settings.user_cache_dir("results")


def enabled() -> bool:
    """False when ``GEO_LEAD_RESULT_CACHE=0``."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def digest(parts: Iterable[bytes | str]) -> str:
    """sha256 (hex) of `parts`, each length-prefixed so that no two sequences collide."""
    h = hashlib.sha256()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.hexdigest()


def source_version(*files: Path | str) -> str:
    """sha256 of the source files named (the code version of a cached method)."""
    return digest(Path(f).read_bytes() for f in files)


def library_versions(*names: str) -> str:
    """``name=version`` of each installed distribution (``name=?`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        try:
            out.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}=?")
    return ";".join(out)


def _path(kind: str, key: str) -> Path:
    if not kind.isidentifier() or len(key) < 32 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"cache kind {kind!r} must be an identifier and key {key!r} a sha256 hex digest")
    return cache_dir() / f"{kind}-{key[:32]}.json"


def read(kind: str, key: str) -> dict[str, Any] | None:
    """The value cached as `kind` under `key`, or None (absent, unreadable, other key, off)."""
    path = _path(kind, key)
    if not enabled() or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cached result %s (%s)", path, exc)
        return None
    if not isinstance(value, dict) or value.get("key") != key:
        return None
    return value


def write(kind: str, key: str, value: dict[str, Any]) -> None:
    """Keep `value` (JSON-able, floats included) as `kind` under `key`; atomic.

    A folder that cannot be written only costs the reuse: logged, never raised.
    """
    path = _path(kind, key)
    if not enabled():
        return
    text = json.dumps({**value, "key": key})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    except OSError as exc:
        log.warning("could not cache %s result in %s (%s); it is computed again next time", kind,
                    path.parent, exc)
