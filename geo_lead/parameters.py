"""The parameters that made a stored result, and the check that stored results agree.

Every stage that stores a result (``scores``, ``hotspots_result``, ``site_result``) stores
with it the dict `result_parameters` returns: indicator, window (``since``/``until``), study
area, best-zone size ``k`` (site only), boundary rule and a fingerprint of the sampling
frames. The maps and the report read them back with `consistent_parameters`, which refuses
results made with different values of the shared keys (`SHARED_KEYS`), so one page never
mixes two runs. Pure: no store, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from geo_lead import settings
from geo_lead.errors import GeoLeadError

if TYPE_CHECKING:
    from geo_lead.store import Store

#: Keys every stored result must agree on before a page shows them side by side.
SHARED_KEYS: tuple[str, ...] = ("indicator", "since", "until", "area", "boundary_rule", "frames")
#: Result name -> the command that remakes it (used in the error's advice).
REMAKE: dict[str, str] = {"scores": "geo-lead score", "hotspots": "geo-lead hotspots",
                          "site": "geo-lead site"}
AREA_WORDS: dict[str, str] = {"first-division": "First Division", "city": "whole city",
                              "candidates": "listed neighborhoods"}


class MixedResultsError(GeoLeadError):
    """Stored results were made with different parameters; a page would mix runs."""


def frames_fingerprint(frames: Mapping[str, Any] | None = None) -> str | None:
    """A short fingerprint of the declared sampling frames (None when none are declared).

    `frames`: ``geo_lead.frames.Frames.to_dict()`` of the store (`store_frames_fingerprint`);
    without it, ``settings.SAMPLE_FRACTION_BY_FILE`` when that setting exists.
    """
    if frames is None:
        fractions = getattr(settings, "SAMPLE_FRACTION_BY_FILE", None)
        if not fractions:
            return None
        frames = {str(k): float(v) for k, v in dict(fractions).items()}
    text = json.dumps(frames, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def store_frames_fingerprint(store: Store) -> str | None:
    """`frames_fingerprint` of the store's declared frames (`geo_lead.frames.load_frames`)."""
    try:
        from geo_lead.frames import load_frames
    except ImportError:  # a version without declared frames
        return frames_fingerprint()
    return frames_fingerprint(load_frames(store).to_dict())


def _day(value: str | date | None) -> str | None:
    if value is None or value == "":
        return None
    text = value.isoformat() if isinstance(value, date) else str(value)
    return text[:10]


def result_parameters(*, indicator: str, area: str, since: str | date | None = None,
                      until: str | date | None = None, candidates: Iterable[str] | None = None, k: int | None = None, boundary_rule: str | None = None,
                      frames: str | None = None) -> dict[str, Any]:
    """The parameters stored with a result (JSON-ready).

    Parameters
    ----------
    indicator, area
        The indicator flag and the study area (``first-division``, ``city``; ``candidates``
        when explicit names were given, listed in `candidates`).
    since, until
        The occurrence-date window (any date-like or ISO text; None = all dates).
    k
        Best-zone size (site results only).
    boundary_rule, frames
        Default: ``settings.BOUNDARY_RULE`` (``first`` while it does not exist) and
        `frames_fingerprint`.

    Returns
    -------
    dict
        ``indicator``, ``since``, ``until`` (``YYYY-MM-DD`` or None), ``area``,
        ``candidates`` (sorted list or None), ``k`` (int or None), ``boundary_rule``,
        ``frames``.
    """
    names = sorted(str(c) for c in candidates) if candidates else None
    return {"indicator": str(indicator), "since": _day(since), "until": _day(until),
            "area": "candidates" if names else str(area), "candidates": names,
            "k": int(k) if k is not None else None,
            "boundary_rule": boundary_rule or str(getattr(settings, "BOUNDARY_RULE", "first")),
            "frames": frames if frames is not None else frames_fingerprint()}


def window_words(params: Mapping[str, Any]) -> str:
    """``2017-01-01 to 2017-12-31``, ``from 2017-01-01``, ``until ...`` or ``all dates``."""
    since, until = params.get("since"), params.get("until")
    if since and until:
        return f"{since} to {until}"
    if since:
        return f"from {since}"
    if until:
        return f"until {until}"
    return "all dates"


def describe(params: Mapping[str, Any] | None) -> str:
    """One plain-text line: ``indicator lead_eligible · all dates · First Division · ...``."""
    if not params:
        return "parameters not recorded (made by an older version; rerun to record them)"
    area = AREA_WORDS.get(str(params.get("area")), str(params.get("area")))
    if params.get("candidates"):
        area += " (" + ", ".join(str(c).title() for c in params["candidates"]) + ")"
    parts = [f"indicator {params.get('indicator')}", window_words(params), f"area: {area}"]
    if params.get("k") is not None:
        parts.append(f"best zone of {params['k']}")
    if params.get("boundary_rule"):
        parts.append(f"boundary rule: {params['boundary_rule']}")
    if params.get("frames"):
        parts.append(f"sampling frames #{str(params['frames'])[:8]}")
    return " \u00b7 ".join(parts)


def _value_words(key: str, params: Mapping[str, Any]) -> str:
    if key in ("since", "until"):
        return f"window {window_words(params)}"
    if key == "area":
        return f"area {params.get('area')}" + (f" ({', '.join(params['candidates'])})"
                                             if params.get("candidates") else "")
    return f"{key.replace('_', ' ')} {params.get(key)}"


def differences(stored: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """The shared keys on which the recorded results disagree (results without parameters skipped)."""
    known = {name: p for name, p in stored.items() if p}
    out = []
    for key in SHARED_KEYS:
        if key == "frames" and any(p.get("frames") is None for p in known.values()):
            continue
        values = {json.dumps(p.get(key)) for p in known.values()}
        if key == "area":
            values = {json.dumps([p.get("area"), p.get("candidates")]) for p in known.values()}
        if len(values) > 1 and not (key == "until" and "since" in out):
            out.append(key)
    return out


def consistent_parameters(stored: Mapping[str, Mapping[str, Any] | None], page: str) -> dict[str, Any]:
    """The one parameter set the stored results share, or an error saying what to rerun.

    Parameters
    ----------
    stored
        Result name (``scores``, ``hotspots``, ``site``) -> its stored parameters (None when
        the result is absent or predates recorded parameters).
    page
        What is being built (``report``, ``maps``), for the message.

    Returns
    -------
    dict
        The shared parameters (the site's ``k`` included when there is a site result);
        empty when no result recorded any.

    Raises
    ------
    MixedResultsError
        When two recorded results differ on a key of `SHARED_KEYS`: the message names each
        result's parameters and the commands that remake the others to match.
    """
    known = {name: dict(p) for name, p in stored.items() if p}
    diff = differences(known)
    if not diff:
        merged: dict[str, Any] = {}
        for p in known.values():
            merged.update({k: v for k, v in p.items() if v is not None or k not in merged})
        return merged
    lines = [f"  {name}: {describe(p)}" for name, p in known.items()]
    # the site verdict is the answer the page leads with: align the others to it
    anchor = "site" if "site" in known else next(iter(known))
    ref = known[anchor]
    fixes = [_remake(name, ref) for name in known if name != anchor]
    msg = (f"the stored results come from different parameter sets ({', '.join(_value_words(k, ref) for k in diff)} "
           f"differ), so the {page} would mix runs:\n" + "\n".join(lines)
           + f"\nRemake them with one set, e.g. to match the {anchor} result: "
           + "; ".join(fixes) + " (or `geo-lead run` for the defaults); then rerun "
           + f"`geo-lead {page}`.")
    raise MixedResultsError(msg)


def _remake(name: str, ref: Mapping[str, Any]) -> str:
    """The command that remakes result `name` with `ref`'s shared parameters."""
    cmd = [REMAKE.get(name, f"geo-lead {name}"), f"--indicator {ref.get('indicator')}"]
    if ref.get("candidates"):
        cmd.append(f"--candidates {','.join(ref['candidates'])}" if name != "scores" else "--area city")
    else:
        cmd.append(f"--area {ref.get('area')}")
    if name == "scores":
        if ref.get("since"):
            cmd.append(f"--since {ref['since']}")
        if ref.get("until"):
            cmd.append(f"--until {ref['until']}")
    if name == "site" and (ref.get("since") or ref.get("until")):
        cmd.append(f"--window {ref.get('since') or ''}:{ref.get('until') or ''}")
    if name == "site" and ref.get("k") is not None:
        cmd.append(f"--k {ref['k']}")
    return "`" + " ".join(cmd) + "`"
