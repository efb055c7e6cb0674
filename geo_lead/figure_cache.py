"""Figure PNGs kept across runs, keyed by the sha256 of the data they plot and of the code.

`cached_png(name, data, build)` returns the PNG bytes of ``png_bytes(build())`` and keeps them
in the result cache (`geo_lead.result_cache`, kind ``figure_png``, the PNG as base64 in
JSON). The key hashes `name`, every part of `data` (`data_digest`: frames column by column,
geometries as WKB with their CRS, arrays with their dtype, JSON-able values), the source of
the modules that draw (`FIGURE_SOURCES`), the versions of the libraries that draw and write
PNGs (`FIGURE_LIBRARIES`) and the resolution. A caller passes as `data` every value its
`build` reads, so a cached PNG equals the one drawn now byte for byte (matplotlib writes no
time into a PNG); any change of data, code or library draws it again.

``GEO_LEAD_RESULT_CACHE=0`` turns the reuse off (every figure is drawn).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo_lead import result_cache, settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Result-cache kind of the figures.
KIND = "figure_png"
_PACKAGE = Path(__file__).resolve().parent
#: The modules whose source is in every figure's key: what draws, colours and projects.
FIGURE_SOURCES: tuple[Path, ...] = tuple(_PACKAGE / f for f in (
    "figures.py", "pilot_figures.py", "figure_data.py", "cartography.py", "figure_cache.py", "settings.py"))
#: Distributions whose versions are in every figure's key (drawing, projection, PNG writing).
FIGURE_LIBRARIES: tuple[str, ...] = ("matplotlib", "numpy", "pandas", "geopandas", "shapely", "pyproj",
                                     "pillow", "contourpy", "kiwisolver", "fonttools")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp | pd.Period):
        return f"{type(value).__name__}:{value}"
    raise TypeError(f"figure data of type {type(value).__name__} has no JSON form for the figure cache")


def _column_parts(name: str, column: pd.Series) -> list[bytes | str]:
    """A column as hashable parts: name, dtype and values (WKB for geometry, raw bytes for numbers)."""
    import geopandas as gpd
    import shapely

    if isinstance(column.dtype, gpd.array.GeometryDtype):
        crs = getattr(column, "crs", None)
        wkb = shapely.to_wkb(np.asarray(column.values), hex=False)
        return [name, "geometry", crs.to_wkt() if crs is not None else "no crs",
                *(b"\x00" if w is None else w for w in wkb)]
    values = column.to_numpy()
    if values.dtype.kind in "biuf":
        return [name, values.dtype.str, np.ascontiguousarray(values).tobytes()]
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        # text (any string dtype): a 64-bit hash per value (pandas' siphash, fixed key) + where NA is
        hashed = pd.util.hash_pandas_object(column.fillna(""), index=False).to_numpy()
        return [name, "text", hashed.tobytes(), column.isna().to_numpy(bool).tobytes()]
    # other objects, nullable and Arrow-backed columns: each value with its type
    return [name, str(column.dtype), json.dumps([[type(v).__name__, v] for v in column.tolist()],
                                                 default=_json_default, allow_nan=True)]


def _parts(value: Any) -> list[bytes | str]:
    """`value` as length-prefixable parts with a type tag (see `data_digest`)."""
    if isinstance(value, pd.DataFrame):
        out: list[bytes | str] = ["frame", str(len(value)), *map(str, value.columns)]
        for col in value.columns:
            out += _column_parts(str(col), value[col])
        return out
    if isinstance(value, pd.Series):
        return ["series", str(value.name), *_column_parts(str(value.name), value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return ["objects", json.dumps(value.tolist(), default=_json_default)]
        return ["array", value.dtype.str, repr(value.shape), np.ascontiguousarray(value).tobytes()]
    if isinstance(value, bytes):
        return ["bytes", value]
    return ["json", json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True)]


def data_digest(*data: Any) -> str:
    """sha256 (hex) of `data`: frames (columns, dtypes, values; geometry as WKB + CRS), arrays,
    bytes and JSON-able values (dicts, lists, numbers, text, None; numpy scalars as numbers).

    Raises
    ------
    TypeError
        For a value with none of these forms (a programming error: pass what the figure plots).
    """
    parts: list[bytes | str] = []
    for value in data:
        parts += ["item", *_parts(value)]
    return result_cache.digest(parts)


def figure_key(name: str, *data: Any, dpi: int = settings.FIGURE_DPI) -> str:
    """The cache key of figure `name` drawn from `data` at `dpi` (see the module docstring)."""
    from geo_lead import cartography

    return result_cache.digest([KIND, name, str(dpi), data_digest(*data),
                                result_cache.constants_version(settings, cartography), _code_version()])


@functools.cache
def _code_version() -> str:
    """`FIGURE_SOURCES`' sha256 and `FIGURE_LIBRARIES`' versions (read once per process)."""
    return result_cache.digest([result_cache.source_version(*FIGURE_SOURCES),
                                result_cache.library_versions(*FIGURE_LIBRARIES)])


class NotDrawn(LookupError):
    """A figure `cached_png` would have to draw, inside `only_cached`."""


_draw_allowed = True


@contextlib.contextmanager
def only_cached() -> Iterator[None]:
    """Within: `cached_png` returns kept PNGs only, and raises `NotDrawn` for a figure it would
    draw (a page put together while another process draws its figures)."""
    global _draw_allowed
    before, _draw_allowed = _draw_allowed, False
    try:
        yield
    finally:
        _draw_allowed = before


def cached_png(name: str, data: tuple[Any, ...], build: Callable[[], Figure],
               dpi: int = settings.FIGURE_DPI) -> bytes:
    """PNG bytes of ``build()`` (`geo_lead.figures.png_bytes` at `dpi`), reused when the same
    figure was drawn from the same `data` with the same code and libraries.

    Parameters
    ----------
    name
        The figure's name (one per builder and use).
    data
        Every value `build` reads (see `data_digest`); the key is only as good as this.
    build
        Draws the figure (called only when no PNG is cached under the key).
    """
    key = figure_key(name, *data, dpi=dpi)
    cached = result_cache.read(KIND, key)
    if cached is not None and isinstance(cached.get("png"), str):
        try:
            return base64.b64decode(cached["png"], validate=True)
        except (binascii.Error, ValueError) as exc:
            log.warning("ignoring a cached %s figure that is not base64 (%s); drawing it again", name, exc)
    if not _draw_allowed:
        raise NotDrawn(name)
    from geo_lead.figures import png_bytes  # matplotlib: only when drawing

    png = png_bytes(build(), dpi=dpi)
    result_cache.write(KIND, key, {"name": name, "png": base64.b64encode(png).decode("ascii")})
    return png
