"""Opiate-possession indicators and LEAD eligibility, from an auditable rules file.

The rules live in ``geo_lead/rules/opiate_rules.toml`` (read it: every pattern is there with
a note); an analyst can copy it and pass ``--rules PATH``. For each record, `classify` sets
the flags ``opiate``, ``possession``, ``trafficking``, ``paraphernalia``, ``overdose``,
``other_drug`` and ``lead_eligible``, and records in ``<flag>_rule`` the id of the rule that
set each one, so any flag can be traced to the line of the rules file that caused it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd

from geo_lead import settings
from geo_lead.errors import RulesError

ELIGIBLE = "lead_eligible"


@dataclass(frozen=True)
class Rule:
    id: str
    flag: str
    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None
    unless_flags: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    version: str
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]
    eligibility_id: str
    eligibility_all: tuple[str, ...]
    eligibility_none: tuple[str, ...]
    path: Path
    #: sha256 of the rules file's text: a store remembers which rules flagged its records
    sha256: str = ""

    @property
    def all_flags(self) -> tuple[str, ...]:
        return (*self.flags, ELIGIBLE)


def load_rules(path: Path | str | None = None) -> Rules:
    """Read and validate a rules file (the shipped one by default).

    Raises
    ------
    RulesError
        The file is unreadable, a regex does not compile, or a rule names an unknown flag.
    """
    path = Path(path) if path else settings.RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file ({exc.strerror}).") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: rules file is not UTF-8 text (byte {exc.start}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None
    raw_flags = data.get("flags", ())
    if not _is_str_list(raw_flags) or not raw_flags:
        raise RulesError(f"{path}: `flags = [...]` must list the indicator flags (strings).")
    flags = tuple(raw_flags)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise RulesError(f"{path}: rules must be [[rule]] tables with id, flag and pattern.")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules, start=1):
        rules.append(_parse_rule(raw, f"{path}: rule #{i} ({raw.get('id', 'no id')})", flags, seen))
        seen.add(raw["id"])
    elig = data.get("eligibility", {})
    if not isinstance(elig, dict) or not _is_str_list(elig.get("all", [])) or not _is_str_list(
            elig.get("none", [])):
        raise RulesError(f"{path}: [eligibility] must be a table with `all = [...]` and `none = [...]` of flags.")
    e_all, e_none = tuple(elig.get("all", ())), tuple(elig.get("none", ()))
    unknown = [f for f in (*e_all, *e_none) if f not in flags]
    if not e_all or unknown:
        raise RulesError(f"{path}: [eligibility] needs `all = [...]` of known flags; unknown: {unknown}.")
    return Rules(str(data.get("version", "")), flags, tuple(rules),
                 str(elig.get("id", "lead")), e_all, e_none, path,
                 hashlib.sha256(text.encode("utf-8")).hexdigest())


def _parse_rule(raw: dict[str, object], where: str, flags: tuple[str, ...], seen: set[str]) -> Rule:
    """One ``[[rule]]`` table, validated against the file's flags and the ids before it."""
    for key in ("id", "flag", "pattern"):
        if key not in raw:
            raise RulesError(f"{where}: missing `{key}`.")
        if not isinstance(raw[key], str):
            raise RulesError(f"{where}: `{key}` must be a string, not {raw[key]!r}.")
    unless, unless_flags = raw.get("unless", ""), raw.get("unless_flags", [])
    if not isinstance(unless, str) or not _is_str_list(unless_flags):
        raise RulesError(f"{where}: `unless` must be a string and `unless_flags` a list of flags.")
    rule_id, flag, pattern = str(raw["id"]), str(raw["flag"]), str(raw["pattern"])
    if flag not in flags:
        raise RulesError(f"{where}: flag {flag!r} is not one of {list(flags)}.")
    if rule_id in seen:
        raise RulesError(f"{where}: duplicate rule id {rule_id!r}.")
    bad_flags = [f for f in unless_flags if f not in flags]
    if bad_flags:
        raise RulesError(f"{where}: unless_flags names unknown flag(s) {bad_flags}.")
    return Rule(rule_id, flag, _compile(pattern, where), _compile(unless, where) if unless else None,
                tuple(unless_flags))


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise RulesError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


def classify_text(text: str, rules: Rules) -> dict[str, str]:
    """Flag -> id of the rule that set it (absent when the flag is not set), for one text."""
    text = " ".join(text.split())
    hits: dict[str, str] = {}
    for flag in rules.flags:
        for rule in rules.rules:
            if rule.flag != flag or not rule.pattern.search(text):
                continue
            if rule.unless is not None and rule.unless.search(text):
                continue
            if any(f in hits for f in rule.unless_flags):
                continue
            hits[flag] = rule.id
            break
    if all(f in hits for f in rules.eligibility_all) and not any(f in hits for f in rules.eligibility_none):
        hits[ELIGIBLE] = rules.eligibility_id
    return hits


def classify(records: pd.DataFrame, rules: Rules | None = None) -> pd.DataFrame:
    """Flags and rule ids for each record, aligned with ``records.index``.

    A record's text is its ``offense_text``, then a space and its ``statute`` when that
    column exists, stripped (missing values count as ""). The rules run once per distinct
    (offense text, statute) pair (`classify_text`); the records' columns are gathered from
    those answers by position.

    Parameters
    ----------
    records
        Needs ``offense_text``; ``statute`` is used when present.

    Returns
    -------
    pandas.DataFrame
        One bool column per flag (plus ``lead_eligible``) and one ``<flag>_rule`` text column.
    """
    rules = rules or load_rules()
    codes, texts = _record_texts(records)
    answers = [classify_text(t, rules) for t in texts]
    out = pd.DataFrame(index=records.index)
    for flag in rules.all_flags:
        out[flag] = np.array([flag in a for a in answers], dtype=bool)[codes]
        out[f"{flag}_rule"] = _text_column([a.get(flag, "") for a in answers], codes, records.index)
    return out


def _record_texts(records: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per record the position of its text among the distinct texts, and those texts."""
    off_codes, off_texts = _factorized_text(records["offense_text"])
    if "statute" not in records:
        return off_codes, off_texts
    st_codes, st_texts = _factorized_text(records["statute"])
    codes, pairs = pd.factorize(off_codes * len(st_texts) + st_codes)
    texts = [(off_texts[p // len(st_texts)] + " " + st_texts[p % len(st_texts)]).strip() for p in pairs]
    return np.asarray(codes, dtype=np.int64), texts


def _factorized_text(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into the column's distinct values as text (``astype(str)``); missing -> ""."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = [*pd.Series(uniques, dtype=object).astype(str).tolist(), ""]
    return np.where(codes < 0, len(texts) - 1, codes).astype(np.int64), texts


def _text_column(labels: list[str], codes: np.ndarray, index: pd.Index) -> pd.Series:
    """``labels[code]`` per row, gathered in Arrow (a million Python strings converted to a
    text column cost several times more)."""
    import pyarrow as pa

    text = pa.array(labels, type=pa.large_string()).take(pa.array(codes)).to_pandas()
    text.index = index
    return text


def offense_class(flags: pd.Series | dict[str, bool]) -> str:
    """One review label per record, for the `indicators` table and the reviewed test table."""
    f = dict(flags)
    if f.get("overdose"):
        return "overdose"
    if f.get("opiate"):
        if f.get("trafficking"):
            return "opiate_trafficking"
        return "opiate_possession" if f.get("possession") else "opiate_other"
    if f.get("paraphernalia"):
        return "paraphernalia"
    if f.get("trafficking"):
        return "drug_trafficking"
    if f.get("possession"):
        return "drug_possession"
    if f.get("other_drug"):
        return "other_drug"
    return "not_drug"


def review_table(records: pd.DataFrame, rules: Rules | None = None) -> pd.DataFrame:
    """Offence text -> class, flags, rule ids and record count: what an analyst reviews."""
    rules = rules or load_rules()
    flags = classify(records, rules)
    flags["offense_text"] = records["offense_text"]
    # Plain comprehensions, not DataFrame.apply: apply returns a frame on an empty input.
    flag_rows = flags[list(rules.all_flags)].to_dict("records")
    flags["class"] = [offense_class(r) for r in flag_rows]
    rule_cols = [f"{f}_rule" for f in rules.all_flags]
    flags["rules"] = [";".join(v for v in r if v) for r in flags[rule_cols].itertuples(index=False)]
    grouped = (flags.groupby(["offense_text", "class", "rules", ELIGIBLE], dropna=False)
               .size().rename("records").reset_index()
               .sort_values(["records", "offense_text"], ascending=[False, True]))
    return grouped.reset_index(drop=True)
