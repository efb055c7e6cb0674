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

``GEO_LEAD_RESULT_CACHE=0`` (and so `geo-lead run --force`, `result_cache.switched_off`) turns
the reuse off: every page is written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from geo_lead import result_cache
from geo_lead.outputs import sha256_file, write_text

log = logging.getLogger(__name__)

#: Result-cache kind of the page records.
KIND = "page"


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
