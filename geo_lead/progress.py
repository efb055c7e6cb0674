"""A small progress reporter for long work, written to stderr only when it is a terminal.

The CLI passes one to long-running library functions; library code calls it and never
prints. Kept dependency-free so the fast zone-check path does not pay for it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count work done towards a total and redraw one status line at most 10 times a second."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._started = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._started, 1e-9)
        if self.total:
            pct = 100.0 * self.done / self.total
            bar = "#" * int(pct / 5)
            text = f"\r{self.label}: [{bar:<20}] {pct:5.1f}% {self.done:,}/{self.total:,} ({rate:,.0f}/s)"
        else:
            text = f"\r{self.label}: {self.done:,} ({rate:,.0f}/s)"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def null_progress(label: str = "", total: int | None = None) -> Progress:
    """A reporter that draws nothing (for library callers and tests)."""
    return Progress(label, total, enabled=False)
