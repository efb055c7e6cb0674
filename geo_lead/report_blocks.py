"""The report's content as plain data: paragraphs, headings, lists, tables, images.

Section builders (`geo_lead.report`) return tuples of these blocks holding plain text; the
template ``templates/report.html.j2`` renders them with autoescaping on, so no HTML is built
in Python and no data string can inject markup. The one exception is `RawHtml`, for sections
another module renders itself (`geo_lead.pilot_report`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from markupsafe import Markup

#: Inline styles a `Span` may take (the template maps each to an element).
SPAN_STYLES: tuple[str, ...] = ("", "b", "code", "warn")


@dataclass(frozen=True)
class Span:
    """A run of plain text, optionally bold (``b``), code (``code``) or a warning (``warn``)."""

    text: str
    style: str = ""

    def __post_init__(self) -> None:
        if self.style not in SPAN_STYLES:
            raise ValueError(f"span style {self.style!r} is not one of {SPAN_STYLES}")


Inline = tuple[Span, ...]


def inline(*parts: str | Span) -> Inline:
    """Plain strings and spans as one inline run (strings become unstyled spans)."""
    return tuple(p if isinstance(p, Span) else Span(str(p)) for p in parts)


def bold(text: object) -> Span:
    return Span(str(text), "b")


def code(text: object) -> Span:
    return Span(str(text), "code")


def warn(text: object) -> Span:
    return Span(str(text), "warn")


@dataclass(frozen=True)
class Para:
    """A paragraph; `css` is its class (``muted``, ``warn`` or none)."""

    parts: Inline
    css: str = ""
    kind: ClassVar[str] = "p"


@dataclass(frozen=True)
class Heading:
    """A heading inside a section (``h3`` or ``h4``)."""

    text: str
    level: int = 3
    kind: ClassVar[str] = "h"


@dataclass(frozen=True)
class Bullets:
    """An unordered list of inline runs."""

    items: tuple[Inline, ...]
    kind: ClassVar[str] = "ul"


@dataclass(frozen=True)
class Cell:
    """A table cell's text; `numeric` right-aligns it."""

    text: str
    numeric: bool = False


@dataclass(frozen=True)
class Table:
    """A table with a heading row (`head`) and body rows; `row_css[i]` classes row i.

    With `keyed`, there is no heading row and each row's first cell is a row heading.
    """

    head: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]
    row_css: tuple[str, ...] = ()
    keyed: bool = False
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Image:
    """A PNG inlined as a data URL."""

    alt: str
    png: bytes
    kind: ClassVar[str] = "img"

    @property
    def src(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Glossary:
    """A definition list of (term, definition)."""

    items: tuple[tuple[str, str], ...]
    kind: ClassVar[str] = "dl"


@dataclass(frozen=True)
class Details:
    """A collapsed block: `summary` shown, `blocks` on opening."""

    summary: str
    blocks: tuple[Block, ...]
    kind: ClassVar[str] = "details"


@dataclass(frozen=True)
class RawHtml:
    """HTML another module built and escaped itself (`geo_lead.pilot_report`'s sections)."""

    html: Markup
    kind: ClassVar[str] = "raw"


Block = Para | Heading | Bullets | Table | Image | Glossary | Details | RawHtml


def blocks(*items: Block | Sequence[Block] | None) -> tuple[Block, ...]:
    """Blocks and sequences of blocks flattened into one tuple (None left out)."""
    out: list[Block] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)  # type: ignore[arg-type]
    return tuple(out)
