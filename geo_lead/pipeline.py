"""`geo-lead run`: every stage in order on one store, with counts per stage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geo_lead.ingest import ingest_files
from geo_lead.progress import Progress
from geo_lead.store import opened

log = logging.getLogger(__name__)


def run_pipeline(store_path: Path, files: Sequence[Path], out_dir: Path,
                 echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Ingest `files`, then run the later stages on the store; return a summary."""
    say = echo or (lambda _msg: None)
    summary: dict[str, Any] = {"store": str(store_path)}
    with opened(store_path) as store:
        say(f"[1/1] ingest {len(files)} file(s) into {store_path}")
        progress = Progress("  rows", enabled=None if echo else False)
        reports = ingest_files(store, files, progress=progress)
        progress.close()
        for r in reports:
            say(f"  {r.file}: {r.rows_read:,} read = {r.accepted:,} accepted + {r.rejected:,} rejected;"
                f" added {r.added:,}")
        summary["ingest"] = [r.as_dict() for r in reports]
        summary["records_in_store"] = store.count("records")
    say(f"store now holds {summary['records_in_store']:,} records")
    return summary
