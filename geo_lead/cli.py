"""The ``geo-lead`` command: argument parsing, logging, progress and error reporting.

Each group of subcommands lives in ``geo_lead/commands/<name>.py`` with a
``register(subparsers)`` function. Those modules import only the standard library at top
level (heavy imports go inside the handlers) so that ``geo-lead zone check`` starts fast.
This is the only module that configures logging; handlers print, library code logs.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from geo_lead import __version__
# re-exported: commands and tests use these names from here as well as from console
from geo_lead.console import _SafeStream, print_json, terminal_safe, writable_output  # noqa: F401
from geo_lead.errors import GeoLeadError

#: Subcommand modules under geo_lead/commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pipeline",
    "ingest",
    "geocode",
    "boundaries",
    "score",
    "site",
    "evaluate",
    "zone",
    "maps",
    "runs",
    "export",
    "join_count",
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
geo_lead: choose and check the area of Louisville Metro's LEAD pilot (Law Enforcement
Assisted Diversion) from LMPD crime, citation and arrest records.

Planners:  geo-lead run            ingest, geocode, score, site, map and report in one go
Analysts:  geo-lead ingest NEW.csv add a new LMPD extract (only new rows are added)
           geo-lead score          rank First Division neighborhoods
Officers:  geo-lead zone check --address "2700 BLOCK W MADISON ST"

Every command that touches the embedded store takes --store PATH (default data/lead.gpkg).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geo-lead", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geo_lead {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"geo_lead.commands.{name}").register(sub)
    return parser


def entry() -> NoReturn:
    """The ``geo-lead`` console script and ``python -m geo_lead``: `main`, then `leave`."""
    leave(main())


def leave(code: int) -> NoReturn:
    """Exit with `code` without tearing the interpreter down, when nothing else is running.

    A `geo-lead run` ends holding every module and its frames; freeing them object by object
    at interpreter shutdown took 0.22-0.31 s after a one-record rerun (0.02 s this way). The
    exit handlers still run first (`atexit`: logging's flush, multiprocessing's children,
    temporary files' finalizers) and the standard streams are flushed; only the freeing is
    skipped. With another non-daemon thread alive, the ordinary exit waits for it.
    """
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`| head`) is not an error here
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``geo-lead`` command; returns the exit status (see `geo_lead.errors`)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SafeStream(out), _SafeStream(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or EXIT_OK)
    except GeoLeadError as exc:
        print(f"geo-lead: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("geo-lead: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error for the user.
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        # A file the command checked could still vanish or fill the disk mid-run: say which
        # file and why, not a traceback (-vv shows it).
        logging.getLogger(__name__).debug("OSError", exc_info=True)
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"geo-lead: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
