"""Subcommands of ``geo-lead``; each module has ``register(subparsers)``.

Modules here import only the standard library at top level (heavy imports go inside the
handlers), so that ``geo-lead zone check`` starts fast.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from geo_lead import settings


def add_store_argument(p: argparse.ArgumentParser, help_text: str = "the GeoPackage store") -> None:
    """``--store PATH``, the same for every command that touches the store."""
    p.add_argument("--store", type=Path, default=settings.DEFAULT_STORE, metavar="PATH",
                   help=f"{help_text} (default: %(default)s under the current directory)")


#: Plain ASCII decimal notation: ``12``, ``-85.7930``, ``1e-3``; not ``3_8`` or ``٣٨``
#: ("nan" and "inf" pass here and are refused by the range checks that follow).
_ASCII_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                          r"|[+-]?(?i:nan|inf|infinity)", re.ASCII)
_ASCII_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def ascii_number(text: str, kind: type[int] | type[float] = float) -> int | float:
    """`text` as an int or float when it is plain ASCII decimal notation, else ValueError.

    Python's ``int``/``float`` also accept ``1_000`` and Arabic-Indic or fullwidth digits;
    a typed option should not.
    """
    pattern = _ASCII_INT if kind is int else _ASCII_FLOAT
    if not pattern.fullmatch(text.strip()):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return kind(text.strip())


def port(text: str) -> int:
    """An argparse ``type=``: a TCP port, 1-65535."""
    try:
        value = ascii_number(text, int)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give 1-65535 (e.g. 8000)")
    return int(value)


def at_least(minimum: float, kind: type[int] | type[float] = int) -> Callable[[str], int | float]:
    """An argparse ``type=``: a number (`kind`) no smaller than `minimum`, else a usage error
    that says so (``--k 0``, ``--capacity -5`` would otherwise run and print nonsense)."""

    def parse(text: str) -> int | float:
        try:
            value = ascii_number(text, kind)
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
        value = ascii_number(text, float)
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
