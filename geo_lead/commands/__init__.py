"""Subcommands of ``geo-lead``; each module has ``register(subparsers)``.

Modules here import only the standard library at top level (heavy imports go inside the
handlers), so that ``geo-lead zone check`` starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geo_lead import settings


def add_store_argument(p: argparse.ArgumentParser, help_text: str = "the GeoPackage store") -> None:
    """``--store PATH``, the same for every command that touches the store."""
    p.add_argument("--store", type=Path, default=settings.DEFAULT_STORE, metavar="PATH",
                   help=f"{help_text} (default: %(default)s under the current directory)")
