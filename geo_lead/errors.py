"""Errors with actionable messages.

Library code builds the message (what was wrong, where, how to fix it) and raises one of
these; the CLI prints it without a traceback and exits with the error's `exit_code`: 2 for
a problem with the input or the options, 1 for a disk that is full, read-only or failing
(`StoreStorageError`, and the CLI's own handling of OSError on outputs).
"""

from __future__ import annotations


class GeoLeadError(Exception):
    """Base class for every error geo_lead raises on purpose."""

    #: Process exit status the CLI uses for it.
    exit_code: int = 2


class InputFileError(GeoLeadError):
    """A file cannot be read as the format it claims to be (names file, row, column, value)."""


class MissingColumnError(InputFileError):
    """A required column is absent from a file's header."""

    def __init__(self, path: str, column: str, found: list[str], hint: str = "") -> None:
        self.path, self.column, self.found = path, column, found
        msg = (
            f"{path}: required column {column!r} not found. "
            f"Columns found: {', '.join(repr(c) for c in found) or '(none)'}."
        )
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class RulesError(GeoLeadError):
    """The indicator rules file is malformed."""


class StoreError(GeoLeadError):
    """The embedded store cannot be opened or written."""


class StoreStorageError(StoreError):
    """The store's disk refused: read-only, full, an I/O error, or a journal to recover."""

    exit_code = 1


class StoreBusyError(StoreError):
    """Another geo_lead process holds the store's write lock."""


class CRSMismatchError(GeoLeadError):
    """Two inputs to a spatial operation are in different coordinate reference systems."""


class GeocodeError(GeoLeadError):
    """The geocoder's reference data is missing or malformed."""


class ZoneInputError(GeoLeadError):
    """A zone-check query is invalid (latitude out of range, not a number, unmatched address)."""
