"""Subcommands of ``geo-lead``; each module has ``register(subparsers)``.

Modules here import only the standard library at top level (heavy imports go inside the
handlers), so that ``geo-lead zone check`` starts fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geo_lead import settings


def add_store_argument(p: argparse.ArgumentParser, help_text: str = "the GeoPackage store") -> None:
    """``--store PATH``, the same for every command that touches the store."""
    p.add_argument("--store", type=Path, default=settings.DEFAULT_STORE, metavar="PATH",
                   help=f"{help_text} (default: %(default)s under the current directory)")


def at_least(minimum: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type=``: a number (`kind`) no smaller than `minimum`, else a usage error
    that says so (``--k 0``, ``--capacity -5`` would otherwise run and print nonsense)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if not value >= minimum:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def fraction(text: str) -> float:
    """An argparse ``type=``: a share between 0 (exclusive) and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a share above 0 and at most 1 (e.g. 0.5)")
    return value
