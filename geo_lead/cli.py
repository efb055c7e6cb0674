"""The ``geo-lead`` command: argument parsing, logging, progress and error reporting.

Each group of subcommands lives in ``geo_lead/commands/<name>.py`` with a
``register(subparsers)`` function. Those modules import only the standard library at top
level (heavy imports go inside the handlers) so that ``geo-lead zone check`` starts fast.
This is the only module that configures logging; handlers print, library code logs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geo_lead import __version__
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


def writable_output(path: Path, *, directory: bool = False, option: str = "--out") -> Path:
    """Check, before any work, that `path` (a file, or a folder with `directory`) can be
    written: its folder is created if missing and a scratch file written and removed there.

    A run that fails at its last stage because the output folder is read-only has wasted
    minutes; this fails in a moment instead, naming the path and the option to change.
    """
    import tempfile

    path = Path(path)
    folder = path if directory else path.parent
    if not directory and path.is_dir():
        raise GeoLeadError(f"{option} {path}: is a folder; give a file name.")
    if directory and path.exists() and not path.is_dir():
        raise GeoLeadError(f"{option} {path}: is a file; give a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise GeoLeadError(f"{option} {path}: cannot write there ({exc.strerror or exc}); "
                           f"choose another {option}.") from None
    return path


#: Escape sequences (CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ST``, two-byte ``ESC x``),
#: then any other C0/C1 control but newline, tab and carriage return (progress lines), and
#: the bidirectional overrides that reorder what a terminal shows.
_TERMINAL_UNSAFE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` without terminal control characters: data printed by geo-lead (an offence text,
    an address, a file name) cannot clear the screen, set the title or move the cursor."""
    return _TERMINAL_UNSAFE.sub("", text)


class _SafeStream:
    """Wraps stdout/stderr so everything written passes through `terminal_safe`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, buffer...
        return getattr(self._stream, name)


def print_json(obj: Any) -> None:
    """Print one JSON document on stdout (NaN becomes null)."""
    print(json.dumps(_jsonable(obj), indent=2, ensure_ascii=False))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if obj != obj or obj in (float("inf"), float("-inf")) else obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


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
