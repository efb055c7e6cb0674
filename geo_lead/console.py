"""What the ``geo-lead`` commands print and write: JSON on stdout, terminal-safe text, and
the early check that an output path is writable.

Standard library only, so every command (``zone check`` too) can import it at no cost; the
commands take these from here, never from `geo_lead.cli` (which imports the commands).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from geo_lead.errors import GeoLeadError


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
