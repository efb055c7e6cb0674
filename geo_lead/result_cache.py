"""Results kept across runs as small JSON files, each keyed by the sha256 of its inputs.

A result cached here is a pure function of what its key hashes: the input arrays or
geometries, the settings, the source file of the module that computes it and the versions
of the libraries it calls. A run whose inputs hash to a key seen before reads the result
instead of computing it, and reads exactly what the computation gave (floats are written
with ``repr``, which round-trips every float64). Any change of input, setting, code or
library gives another key, so an entry is never stale, only unused.

Users: `geo_lead.population.interpolate_population` (kind ``population``),
`geo_lead.hotspots.kde_surface` (kinds ``kde_bandwidth`` and ``kde_surface``),
`geo_lead.hotspots.gistar` (kind ``gistar``), `geo_lead.hotspots.queen_weights` (kind
``queen_weights``), `geo_lead.siting.comparison_area` (kind
``comparison_area``) and `geo_lead.scoring.bootstrap_rank_interval` (kind ``rank_interval``),
as JSON; `geo_lead.siting.site` (kind ``site``)
and `geo_lead.scoring.score_neighborhoods` (kind ``scores``), whose results are frames, and
`geo_lead.gistar_crand.cached_permuted_ids` (kind ``gistar_permutations``, an integer array) and
`geo_lead.geocode.cache.known_keys` (kind ``address_keys``, address text -> geocode cache key) and
`geo_lead.allocation`'s settling geometry (kind ``settle_geometry``, shrunk beats and units), as
pickles (`read_object` / `write_object`): the user's own cache folder, written only by
geo_lead, each file holding its key and `OBJECT_FORMAT`; a file that cannot be read, or holds
another key or format, is computed again (with a log line). Files are renamed into place
without fsync; each is sealed by the sha256 of what it holds, so one a crash left short or
with zeroed or stale blocks is computed again too (`read`, `read_object`).

Keys: `digest` of the parts, with `code_version` (every ``.py`` and ``.toml`` file of the
package, one digest per process), `library_versions` and, for frames, `frame_digest` (the
columns named, in a fixed order, with their dtypes, values and index).

Where: `cache_dir` -- ``$GEO_LEAD_RESULT_CACHE_DIR`` when set (benchmarks start cold with
it), else ``$GEO_LEAD_CACHE_DIR/results`` when that variable is set, else
``$XDG_CACHE_HOME/geo_lead/results`` (``~/.cache/geo_lead/results``), beside the geocoder's
reference index and the zone page's street index. Files, not the store's meta, because the
hotspots and the site of `geo-lead run` are computed in forked children, which never write
the store, and because a result keyed by its inputs serves every store. Deleting the folder
is always safe. ``GEO_LEAD_RESULT_CACHE=0`` turns reading and writing off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from geo_lead import settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """Nothing read from or written to the cache inside (``geo-lead run --force``); restored after.

    Through the environment variable, so children forked inside compute everything too.
    """
    before = os.environ.get(ENV_SWITCH)
    os.environ[ENV_SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_SWITCH, None)
        else:
            os.environ[ENV_SWITCH] = before


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


@functools.cache
def library_versions(*names: str) -> str:
    """``name=version`` of each installed distribution (``name=?`` when not installed); looked up
    once per process per `names`."""
    return ";".join(f"{name}={_installed_version(name)}" for name in names)


@functools.cache
def _installed_version(name: str) -> str:
    """The installed version of distribution `name` (``?`` when not installed), looked up once
    per process: each lookup scans the installed distributions (~10 ms), and the keys of one
    run ask for the same few libraries in many combinations."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


#: The distributions the keys of a run name (`library_versions`), looked up by `warm_keys`.
KEY_LIBRARIES: tuple[str, ...] = ("numpy", "pandas", "pyarrow", "geopandas", "shapely", "pyproj", "pyogrio",
                                  "fiona", "scipy", "libpysal", "esda", "numba", "matplotlib", "folium",
                                  "branca", "jinja2", "markupsafe")


def warm_keys() -> None:
    """Compute once here what every key of a run hashes (`code_version`, `KEY_LIBRARIES`'
    versions) before forking: each forked child then inherits them instead of reading the
    package's sources and scanning the installed distributions again (~0.05-0.1 s of CPU each,
    on a machine whose cores the parent and its children share)."""
    code_version()
    for name in KEY_LIBRARIES:
        _installed_version(name)


@functools.cache
def code_version() -> str:
    """sha256 over every ``.py`` and ``.toml`` file of the installed package (path and bytes),
    computed once per process: the code version of every cached computation."""
    root = Path(__file__).resolve().parent
    files = sorted(p for pat in ("**/*.py", "**/*.toml") for p in root.glob(pat)
                   if p.is_file() and "__pycache__" not in p.parts)
    return digest(part for p in files for part in (p.relative_to(root).as_posix(), p.read_bytes()))


def _canonical(value: Any) -> str:
    """`repr` with sets and dicts in sorted order (a set's own order changes between processes)."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_canonical(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(f"{_canonical(k)}: {_canonical(v)}" for k, v in value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "(" + ", ".join(_canonical(v) for v in value) + ")"
    return repr(value)


def constants_version(*modules: ModuleType) -> str:
    """sha256 of every constant (UPPERCASE name, canonical repr) of `modules`, read at call
    time: a value changed in the environment or at run time changes every key built on it."""
    return digest(f"{m.__name__}.{name}={_canonical(value)}" for m in modules
                  for name, value in sorted(vars(m).items()) if name.isupper())


def settings_version() -> str:
    """`constants_version` of `geo_lead.settings` (in every memo key)."""
    return constants_version(settings)


def frame_digest(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """sha256 of `frame`'s `columns` (those present, in the order given) and its index.

    Each column contributes its name, dtype and `pandas.util.hash_pandas_object` of its values
    (geometries: their WKB); the index contributes its values' hashes. Two frames with the same
    digest hold equal values in those columns, in the same rows and order (up to sha256 and
    pandas' 64-bit row hashes, whose sequence is hashed whole).
    """
    import numpy as np
    import pandas as pd

    parts: list[bytes | str] = [f"rows={len(frame)}",
                                pd.util.hash_pandas_object(frame.index.to_series(), index=False).to_numpy().tobytes()]
    for col in columns:
        if col not in frame.columns:
            parts.append(f"{col}:absent")
            continue
        values = frame[col]
        parts.append(f"{col}:{values.dtype}")
        if str(values.dtype) == "geometry":
            parts.extend([*_geometry_parts(np.asarray(values.array, dtype=object)), str(getattr(values, "crs", None))])
        elif isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
            parts.extend(_arrow_string_parts(values))
        else:
            parts.append(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    return digest(parts)


def _arrow_string_parts(values: pd.Series) -> list[bytes | str]:
    """What `frame_digest` hashes of a pyarrow-backed string column: which values are missing,
    each value's length in UTF-8 bytes (missing: 0) and their bytes end to end. Equal parts,
    equal values (missing ones are filled with "" first, so no byte of theirs is hashed). ~1/10
    of `pandas.util.hash_pandas_object` on distinct strings (~20 ms for 70,000 record ids)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    held = values.array.__arrow_array__()
    chunks = held if isinstance(held, pa.ChunkedArray) else pa.chunked_array([held])
    arr = pc.fill_null(chunks.cast(pa.large_string()), "").combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    text = b"" if data is None or not len(arr) else memoryview(data)[int(offsets[0]):int(offsets[-1])].tobytes()
    return ["arrow-str", values.isna().to_numpy(bool).tobytes(), np.diff(offsets).tobytes(), text]


def _geometry_parts(geoms: np.ndarray) -> list[bytes | str]:
    """What `frame_digest` hashes of a geometry column: when every geometry is a non-empty 2D
    point or missing, which are missing and the points' x, y (float64); else each one's WKB
    (with their lengths). Equal parts, equal geometries: a 2D point is its coordinates; the
    two forms are told apart by their first part. The coordinates cost ~1/4 of the WKB."""
    import numpy as np
    import shapely

    missing = shapely.is_missing(geoms)
    present = geoms[~missing]
    if bool((shapely.get_type_id(present) == 0).all()) and not bool(shapely.is_empty(present).any()) \
            and not bool(shapely.has_z(present).any()):
        return ["points", missing.tobytes(), np.ascontiguousarray(shapely.get_coordinates(present)).tobytes()]
    wkb = [b or b"" for b in shapely.to_wkb(geoms, hex=False)]
    empty = np.asarray([b == b"" for b in wkb])
    return ["wkb", np.asarray([len(b) for b in wkb], dtype=np.int64).tobytes(), empty.tobytes(), b"".join(wkb)]


def _path(kind: str, key: str, suffix: str = "json") -> Path:
    if not kind.isidentifier() or len(key) < 32 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"cache kind {kind!r} must be an identifier and key {key!r} a sha256 hex digest")
    return cache_dir() / f"{kind}-{key[:32]}.{suffix}"


def _sealed(body: str | bytes) -> str:
    """sha256 (hex) of a cached file's body: a file is used only when its body still has it."""
    return hashlib.sha256(body.encode("utf-8") if isinstance(body, str) else body).hexdigest()


#: How a JSON cache file ends: its seal, the sha256 of the text before it closed with ``}``.
_SEAL = re.compile(r', "sha256": "([0-9a-f]{64})"\}\Z')


def read(kind: str, key: str) -> dict[str, Any] | None:
    """The value cached as `kind` under `key`, or None (absent, unreadable, torn, other key, off).

    The file is the value's JSON object (with ``key``) followed, as its last member, by
    ``sha256``: the hash of the text before it (closed with ``}``). A file cut short or partly
    overwritten (a crash or power cut after the rename: `_write_atomic` does not fsync) is
    never read as a value; it is computed again."""
    path = _path(kind, key)
    if not enabled() or not path.is_file():
        return None
    try:
        text = path.read_text("utf-8")
        seal = _SEAL.search(text)
        sealed = text[:seal.start()] + "}" if seal else ""
        if seal is None or seal.group(1) != _sealed(sealed):
            raise ValueError("it does not end with the sha256 of what it holds (torn)")
        value = json.loads(sealed)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cached result %s (%s)", path, exc)
        return None
    if not isinstance(value, dict) or value.get("key") != key:
        return None
    _touch(path)
    return value


def write(kind: str, key: str, value: dict[str, Any]) -> None:
    """Keep `value` (JSON-able, floats included) as `kind` under `key`; atomic, sealed (`read`).

    A folder that cannot be written only costs the reuse: logged, never raised.
    """
    path = _path(kind, key)  # a bad kind or key is an error even with the cache off
    if enabled():
        text = json.dumps({**value, "key": key})  # an object with a member: ends with "}"
        _keep(kind, path, f'{text[:-1]}, "sha256": "{_sealed(text)}"}}'.encode())


def _keep(kind: str, path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and prune `kind`; a folder that cannot be written is
    logged, never raised (it only costs the reuse)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        prune(kind)
    except OSError as exc:
        log.warning("could not cache %s result in %s (%s); it is computed again next time", kind,
                    path.parent, exc)


def _write_atomic(path: Path, data: bytes) -> None:
    """`data` to a temporary file beside `path`, renamed over it: a reader sees the old file or
    the new one. Not fsynced (one fsync per result cost ~4 ms): after a crash or power cut the
    renamed file may be short or hold zeroed or stale blocks, which its sha256 seal shows
    (`read`, `read_object`), so it is computed again; the cache is never the only copy."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


#: Format of the pickled files (`write_object`); another format is computed again. 2: the
#: value's pickle sealed by its sha256 (a torn file is computed again).
OBJECT_FORMAT = 2


def read_object(kind: str, key: str) -> Any | None:
    """The object cached as `kind` under `key` (a fresh copy: unpickled per call), or None
    (absent, unreadable, torn, another key or `OBJECT_FORMAT`, cache off); a bad file is logged.

    The file holds ``{"format", "key", "sha256", "payload"}``: the value's pickle (`payload`)
    is unpickled only when it still has the sha256 written with it (see `read`)."""
    path = _path(kind, key, "pkl")
    if not enabled() or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            held = pickle.load(fh)  # the user's own cache folder, written by write_object
        if not isinstance(held, dict) or held.get("key") != key or held.get("format") != OBJECT_FORMAT:
            log.info("cached result %s holds another key or format; computing it again", path)
            return None
        payload = held.get("payload")
        if not isinstance(payload, bytes) or held.get("sha256") != _sealed(payload):
            raise ValueError("its payload does not have the sha256 written with it (torn)")
        value = pickle.loads(payload)
    except Exception as exc:  # any unreadable pickle only costs the reuse
        log.warning("ignoring unreadable cached result %s (%s); computing it again", path, exc)
        return None
    _touch(path)
    return value


def write_object(kind: str, key: str, value: Any) -> None:
    """Keep `value` (picklable) as `kind` under `key`, with the key and `OBJECT_FORMAT`; atomic,
    sealed (`read_object`).

    A folder that cannot be written only costs the reuse: logged, never raised.
    """
    path = _path(kind, key, "pkl")
    if enabled():
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        _keep(kind, path, pickle.dumps({"format": OBJECT_FORMAT, "key": key, "sha256": _sealed(payload),
                                        "payload": payload}, protocol=pickle.HIGHEST_PROTOCOL))


T = TypeVar("T")


def kept_object(kind: str, key: str, of: type[T], compute: Callable[[], T]) -> T:
    """The object cached as `kind` under `key` when it is an `of` (`read_object`); else
    ``compute()``, kept under `key` (`write_object`) and returned."""
    hit = read_object(kind, key)
    if isinstance(hit, of):
        return hit
    value = compute()
    write_object(kind, key, value)
    return value


#: Files of one kind kept (`prune`): the most recently used; each rerun with new data adds one
#: per memoised computation whose inputs changed, and every code change starts new keys.
MAX_FILES_PER_KIND = 200


def _touch(path: Path) -> None:
    """Mark `path` as used now (its mtime orders `prune`); a read-only folder only costs the order."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune(kind: str, keep: int | None = None) -> int:
    """Delete all but the `keep` (default `MAX_FILES_PER_KIND`) most recently used files of
    `kind`; returns how many were deleted (a file that cannot be deleted is left)."""
    keep = MAX_FILES_PER_KIND if keep is None else keep
    try:
        files = [p for p in cache_dir().glob(f"{kind}-*.*") if p.suffix in (".json", ".pkl")]
    except OSError:
        return 0
    if len(files) <= keep:
        return 0

    def used(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    deleted = 0
    for old in sorted(files, key=used)[: len(files) - keep]:
        with contextlib.suppress(OSError):
            old.unlink()
            deleted += 1
    return deleted
