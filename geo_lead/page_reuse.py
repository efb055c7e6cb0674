"""Pages written for people, kept when what they show has not changed.

A map page is written with `write_if_changed(path, key, render)`: `key` is
the sha256 of everything the page shows and of the code that draws it (the caller's
digest, see `geo_lead.maps.page_key`); the result cache (`geo_lead.result_cache`, kind
``page``) records, for that key and the page's resolved path, the sha256 of the file written.
The next call with the same key finds the record, hashes the file on disk and, when both
agree, leaves the file as it is and does not render it; a changed key, a missing record, or a
file that was edited, replaced or removed since, is rendered and written again (atomically,
`geo_lead.outputs.write_text`). So a kept page is the very file an earlier build wrote from
the same inputs. A page whose text costs little to make (the zone page) is compared with
its text instead (`write_if_different`).

A page whose inputs changed only in its texts (a map page's layer data, legends, notes and
parameters line, `geo_lead.map_plans`: what a rerun that adds records changes) is made by
`filled_page` from a rendering kept with a slot token in place of each text (kind
``page_template``, keyed by everything else the page shows: its shape), each token replaced by
the text as the page writes it: the page a fresh rendering gives, but for the renderer's random
element ids.

``GEO_LEAD_RESULT_CACHE=0`` (and so `geo-lead run --force`, `result_cache.switched_off`) turns
the reuse off: every page is written.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from geo_lead import result_cache
from geo_lead.outputs import sha256_file, write_text

log = logging.getLogger(__name__)

#: Result-cache kind of the page records.
KIND = "page"
#: Result-cache kind of the renderings with slot tokens (`filled_page`).
TEMPLATE_KIND = "page_template"
#: Renderings with slots kept (the most recently used): each holds the inlined Leaflet (a few
#: hundred kB), and only the latest of each page's shape is likely to serve again.
TEMPLATES_KEPT = 8


def file_sha256(path: Path) -> str | None:
    """sha256 (hex) of the file's bytes (`outputs.sha256_file`), None when it cannot be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def _record_key(path: Path, key: str) -> str:
    return result_cache.digest([KIND, key, str(Path(path).resolve())])


def is_current(path: Path, key: str) -> bool:
    """True when `path` holds the page recorded for `key` (same sha256 as when written)."""
    record = result_cache.read(KIND, _record_key(path, key))
    if record is None or not isinstance(record.get("sha256"), str):
        return False
    return file_sha256(Path(path)) == record["sha256"]


def record(path: Path, key: str) -> None:
    """Record that `path` now holds the page of `key` (its sha256)."""
    digest = file_sha256(Path(path))
    if digest is not None:
        result_cache.write(KIND, _record_key(path, key), {"sha256": digest, "path": str(Path(path).resolve())})


def write_if_changed(path: Path, key: str, render: Callable[[], str]) -> bool:
    """Write ``render()`` to `path` unless it already holds the page of `key`.

    Returns
    -------
    bool
        True when the page was rendered and written, False when the file was kept.
    """
    path = Path(path)
    if is_current(path, key):
        log.info("%s unchanged (same inputs, file intact): kept", path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render())  # atomic: never a half-written page
    record(path, key)
    return True


def write_if_different(path: Path, text: str) -> bool:
    """Write `text` to `path` (atomically) unless the file already holds exactly it (UTF-8).

    For a page whose text costs little to make (the zone page): no record is needed, the
    file is compared with the text itself. Returns True when written.
    """
    path = Path(path)
    if result_cache.enabled() and file_sha256(path) == hashlib.sha256(text.encode("utf-8")).hexdigest():
        log.info("%s unchanged (same text): kept", path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return True


def slot_tokens(n: int, key: str) -> list[str]:
    """`n` distinct slot tokens for the page of `key` (see `filled_page`): letters and digits
    only, so no escaping (HTML, JSON) changes them; their tail is taken from `key`, the hash of
    the page's other inputs, so that page's data cannot hold one."""
    return [f"geoLeadSlot{i}x{key[:24]}" for i in range(n)]


def _template_key(key: str, tokens: Sequence[str]) -> str:
    return result_cache.digest([TEMPLATE_KIND, key, *tokens])


def can_fill(key: str, texts: Sequence[str]) -> bool:
    """True when `filled_page` with `key` and `texts` would likely fill a kept rendering (its
    file is there) rather than render; a guess for scheduling only (a file that turns out
    unreadable is rendered, as `filled_page` always does)."""
    if not result_cache.enabled() or not all(texts):
        return False
    tkey = _template_key(key, slot_tokens(len(texts), key))
    return (result_cache.cache_dir() / f"{TEMPLATE_KIND}-{tkey[:32]}.json").is_file()


def filled_page(key: str, texts: Sequence[str], written: Sequence[str],
                render: Callable[[Sequence[str]], str]) -> str:
    """``render(texts)``, made from a kept rendering with slot tokens when there is one.

    Parameters
    ----------
    key
        sha256 of every input of `render` other than `texts` (and of the code that renders).
    texts
        What changes more often than the rest of the page (data, counts, notes).
    written
        Each text as ``render`` writes it into the page (e.g. as JSON string content): the
        caller's contract; tests/test_outputs_reuse.py checks the map pages against fresh
        renderings.
    render
        Renders the page with the given texts.

    ``render(slot_tokens(len(texts), key))`` is rendered once per `key` and kept (kind
    ``page_template``); the page is that rendering with each token replaced, in one pass, by
    its `written` text. Rendered directly instead: with the result cache off, when a text
    is empty (a page may say something else then) or when a token does not appear in the
    rendering (a text not written verbatim: nothing to fill).
    """
    if not result_cache.enabled() or not all(texts):
        return render(texts)
    tokens = slot_tokens(len(texts), key)
    tkey = _template_key(key, tokens)
    held = result_cache.read(TEMPLATE_KIND, tkey)
    page = held.get("page") if held is not None else None
    if not isinstance(page, str):
        page = render(tokens)
        if not all(t in page for t in tokens):
            log.info("a slot is not written verbatim in the page: rendered with its texts")
            return render(texts)
        result_cache.write(TEMPLATE_KIND, tkey, {"page": page})
        result_cache.prune(TEMPLATE_KIND, TEMPLATES_KEPT)
    slot = re.compile(rf"geoLeadSlot(\d+)x{re.escape(key[:24])}")
    return slot.sub(lambda m: written[int(m.group(1))] if int(m.group(1)) < len(written) else m.group(0), page)
