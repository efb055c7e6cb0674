"""Make folium pages self-contained: inline the vendored JS/CSS so the page sends no request.

folium writes ``<script src="https://cdn...">`` and ``<link href="https://cdn...">`` tags.
`inline_assets` replaces each one by the matching file in ``geo_lead/static`` (matched by
file name, e.g. ``leaflet.js``), with the images a stylesheet refers to turned into
``data:`` URIs. A CDN reference with no local copy is an error, not a silent CDN load:
a map that goes blank on a locked-down laptop is the failure this module exists to prevent.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

from geo_lead import settings
from geo_lead.errors import GeoLeadError
from geo_lead.outputs import write_text

log = logging.getLogger(__name__)

STATIC_DIR: Path = settings.PACKAGE_DIR / "static"

#: File name in a CDN URL -> vendored copy (see geo_lead/static/README.md for versions).
VENDORED: dict[str, Path] = {
    "leaflet.js": STATIC_DIR / "leaflet" / "leaflet.js",
    "leaflet.css": STATIC_DIR / "leaflet" / "leaflet.css",
    "leaflet.markercluster.js": STATIC_DIR / "leaflet.markercluster" / "leaflet.markercluster.js",
    "MarkerCluster.css": STATIC_DIR / "leaflet.markercluster" / "MarkerCluster.css",
    "MarkerCluster.Default.css": STATIC_DIR / "leaflet.markercluster" / "MarkerCluster.Default.css",
}

_SCRIPT_RE = re.compile(r'<script\s+src="(?P<url>[^"]+)"\s*>\s*</script>', re.IGNORECASE)
_LINK_RE = re.compile(r'<link\s+rel="stylesheet"\s+href="(?P<url>[^"]+)"\s*/?>', re.IGNORECASE)
_CSS_URL_RE = re.compile(r"url\((?P<q>['\"]?)(?P<path>[^)'\"]+)(?P=q)\)")
#: Any remaining reference that would make the browser fetch something over the network.
_EXTERNAL_RE = re.compile(
    r"""<(?:script|img|link|iframe|source|embed)\b[^>]*?\b(?:src|href)\s*=\s*["'](?P<url>(?:https?:)?//[^"']*)""",
    re.IGNORECASE)


class OfflineAssetError(GeoLeadError):
    """A page needs a script or stylesheet that has no vendored copy."""


def _local_copy(url: str) -> Path:
    name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    path = VENDORED.get(name)
    if path is None or not path.exists():
        raise OfflineAssetError(
            f"the page needs {url!r}, which has no local copy in {STATIC_DIR}; vendor it "
            "(npm pack, see geo_lead/static/README.md) or build the map with --no-offline.")
    return path


def _css_with_data_uris(css_path: Path) -> str:
    css = css_path.read_text(encoding="utf-8")

    def repl(match: re.Match[str]) -> str:
        ref = match.group("path")
        if ref.startswith(("data:", "#")):
            return match.group(0)
        target = (css_path.parent / ref).resolve()
        if not target.exists():
            raise OfflineAssetError(f"{css_path}: refers to {ref!r}, which is missing.")
        mime = "image/png" if target.suffix == ".png" else "image/svg+xml" if target.suffix == ".svg" else "application/octet-stream"
        return f"url(data:{mime};base64,{base64.b64encode(target.read_bytes()).decode('ascii')})"

    return _CSS_URL_RE.sub(repl, css)


_SOURCE_MAP_RE = re.compile(r"^\s*(//|/\*)# sourceMappingURL=.*$", re.MULTILINE)


def _safe_inline_js(js: str) -> str:
    # A literal "</script" inside inlined code would end the element early; a source-map
    # comment would make developer tools fetch a file that is not there.
    return _SOURCE_MAP_RE.sub("", js).replace("</script", "<\\/script")


def inline_assets(page_html: str) -> str:
    """Replace CDN ``<script>``/``<link>`` tags by inline copies of the vendored files.

    Raises
    ------
    OfflineAssetError
        When a referenced file has no local copy, or an external reference remains.
    """
    def script(match: re.Match[str]) -> str:
        path = _local_copy(match.group("url"))
        return f"<script>/* {path.parent.name}/{path.name} (vendored) */\n{_safe_inline_js(path.read_text(encoding='utf-8'))}\n</script>"

    def link(match: re.Match[str]) -> str:
        path = _local_copy(match.group("url"))
        return f"<style>/* {path.parent.name}/{path.name} (vendored) */\n{_css_with_data_uris(path)}\n</style>"

    out = _SCRIPT_RE.sub(script, page_html)
    out = _LINK_RE.sub(link, out)
    leftover = external_references(out)
    if leftover:
        raise OfflineAssetError(f"the page still refers to the network after inlining: {leftover[:5]}")
    return out


def external_references(page_html: str) -> list[str]:
    """URLs that a ``<script>``, ``<link>``, ``<img>``... tag would fetch over the network."""
    return [m.group("url") for m in _EXTERNAL_RE.finditer(page_html)]


def render_map(m: object, offline: bool = True) -> str:
    """The page HTML of a folium map, self-contained when `offline`."""
    page = m.get_root().render()  # type: ignore[attr-defined]
    return inline_assets(page) if offline else page


def save_map(m: object, path: Path, offline: bool = True) -> Path:
    """Render and write a folium map (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render_map(m, offline=offline))  # atomic: never a half-written page
    log.info("wrote %s (%.0f KB)", path, path.stat().st_size / 1024)
    return path
