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


def add_boundary_arguments(p: argparse.ArgumentParser) -> None:
    """``--boundary split|first`` and ``--boundary-tolerance-ft FT`` (`geo_lead.allocation`)."""
    p.add_argument("--boundary", choices=settings.BOUNDARY_RULES, default=None,
                   help="records within the tolerance of an edge shared by two or more neighborhoods: "
                        "split = shared equally among them (default), first = whole to the first unit "
                        "in file order (the behaviour before boundary sharing, for comparison)")
    p.add_argument("--boundary-tolerance-ft", type=at_least(0, float), default=None, metavar="FT",
                   help=f"distance to a shared edge, in feet, within which a record is shared (default "
                        f"{settings.BOUNDARY_TOLERANCE_FT:g}); a change re-joins every record")


def add_sample_fraction_argument(p: argparse.ArgumentParser) -> None:
    """``--sample-fraction F`` (`geo_lead.frames`)."""
    p.add_argument("--sample-fraction", type=fraction, default=None, metavar="F",
                   help="share of its year's rows each FILE holds, 0 < F <= 1 (default 1: a complete "
                        "extract); disjoint samples of one year add up. Shipped files take theirs from "
                        "data/lmpd/sampling.csv (by sha256)")
