"""The lint gates: ruff and mypy, minus the listed exceptions, and the lists only shrink.

Usage (from anywhere; scripts/lint.sh runs it with the project's venv)::

    python scripts/gates.py [ruff] [mypy]      (both when none is named)

* ruff: ``ruff check`` on ``geo_lead``, ``tests``, ``benchmarks`` and ``scripts`` with the project's
  configuration (pyproject.toml, which selects C901 at complexity 15 and PLR0913 at 8
  arguments). Each finding is keyed by (file, rule, scope): the scope is the qualified name of
  the innermost function or class around the finding (for C901/PLR0913, the function itself),
  ``<module>`` outside any. A finding passes only when ``scripts/gate_exceptions.toml`` lists
  its key (``[[ruff]]``: file, scope, rule, count, reason) with a count at least the number
  found; a listed key found fewer times than its count fails with "remove it from the list"
  (or lower the count), so the list only shrinks.
* size rules behind ``# noqa``: C901/PLR0913 are checked once more with ``--ignore-noqa``; a
  function may carry ``# noqa: C901`` / ``PLR0913`` (with its reason in the comment) only when
  ``[[noqa]]`` lists it (file, scope, rule, reason), and a listed one that no longer needs it
  fails with "remove it from the list" (ruff's RUF100 then also reports the unused noqa).
* mypy: ``mypy`` with pyproject.toml's ``[tool.mypy]`` but without the ``ignore_errors``
  override, so every module's errors are seen. A module with errors passes only when
  ``[[mypy]]`` of the exceptions file lists it (module, reason); a listed module with no error
  fails with "remove it from the list". pyproject.toml's ``ignore_errors`` modules must be
  exactly the listed ones (so plain ``mypy`` passes on the same code).

Every exception needs a non-empty reason. Exit status 0 when every gate passes, 1 otherwise;
one line per problem, naming the file and what to do.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCEPTIONS = ROOT / "scripts" / "gate_exceptions.toml"
RUFF_PATHS = ("geo_lead", "tests", "benchmarks", "scripts")
MODULE_SCOPE = "<module>"
#: The size rules a noqa comment may silence only where ``[[noqa]]`` lists it.
SIZE_RULES = ("C901", "PLR0913")
_MYPY_LINE = re.compile(r"^(?P<file>[^:\s][^:]*\.py):(?P<line>\d+): error: (?P<msg>.*)$")


@dataclass(frozen=True)
class Finding:
    """One ruff finding: where, which rule, and in which function or class."""

    file: str  #: path relative to the project root, with ``/``
    line: int
    rule: str
    scope: str  #: qualified function/class name, or ``<module>``
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.scope, self.rule)


@dataclass(frozen=True)
class Exceptions:
    """The checked lists of scripts/gate_exceptions.toml."""

    ruff: dict[tuple[str, str, str], int]  #: (file, scope, rule) -> findings allowed
    noqa: dict[tuple[str, str, str], int]  #: C901/PLR0913 findings a noqa comment may silence
    mypy: dict[str, str]  #: module -> reason
    problems: list[str]  #: malformed entries (no reason, duplicate, bad count)


def load_exceptions(path: Path = EXCEPTIONS) -> Exceptions:
    """Read the exceptions file; entries without a reason or listed twice are problems."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    ruff = _finding_entries(data.get("ruff", []), f"{path.name} [[ruff]]", problems)
    noqa = _finding_entries(data.get("noqa", []), f"{path.name} [[noqa]]", problems)
    problems += [f"{path.name} [[noqa]] {key}: only {', '.join(SIZE_RULES)} may be listed here"
                 for key in noqa if key[2] not in SIZE_RULES]
    mypy: dict[str, str] = {}
    for i, entry in enumerate(data.get("mypy", []), start=1):
        where = f"{path.name} [[mypy]] entry {i}"
        module = str(entry.get("module", ""))
        reason = str(entry.get("reason", "")).strip()
        if not module:
            problems.append(f"{where}: missing 'module'")
            continue
        if not reason:
            problems.append(f"{where} ({module}): give the reason its errors are allowed")
        if module in mypy:
            problems.append(f"{where}: {module} is listed twice")
        mypy[module] = reason
    return Exceptions(ruff, noqa, mypy, problems)


def _finding_entries(entries: Iterable[Mapping[str, object]], where: str,
                     problems: list[str]) -> dict[tuple[str, str, str], int]:
    """(file, scope, rule) -> count of well-formed entries; malformed ones go to `problems`."""
    out: dict[tuple[str, str, str], int] = {}
    for i, entry in enumerate(entries, start=1):
        try:
            key = (str(entry["file"]), str(entry["scope"]), str(entry["rule"]))
        except KeyError as exc:
            problems.append(f"{where} entry {i}: missing {exc.args[0]!r} (file, scope, rule, reason)")
            continue
        count = entry.get("count", 1)
        if not isinstance(count, int) or count < 1:
            problems.append(f"{where} entry {i} ({key}): count must be a whole number >= 1, "
                            f"got {count!r}")
            continue
        if not str(entry.get("reason", "")).strip():
            problems.append(f"{where} entry {i} ({key}): give the reason it is allowed")
        if key in out:
            problems.append(f"{where} entry {i}: {key} is listed twice; merge the entries")
        out[key] = count
    return out


# ---------------------------------------------------------------------------- ruff


def scopes(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function and class, outermost first."""
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def scope_of(line: int, spans: Sequence[tuple[int, int, str]]) -> str:
    """The innermost function or class whose ``def``/``class`` line .. end holds ``line``."""
    inner = [(first, name) for first, last, name in spans if first <= line <= last]
    return max(inner)[1] if inner else MODULE_SCOPE


def run_ruff(paths: Sequence[str] = RUFF_PATHS, options: Sequence[str] = ()) -> list[Finding]:
    """Every ruff finding under ``paths`` (the project's configuration and `options`), with
    its scope."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "json", "--exit-zero",
         "--no-cache", *options, *paths],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ruff failed to run (exit {proc.returncode}):\n{proc.stderr}")
    findings: list[Finding] = []
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for item in json.loads(proc.stdout or "[]"):
        path = Path(item["filename"])
        rel = path.resolve().relative_to(ROOT).as_posix()
        if rel not in spans:
            try:
                spans[rel] = scopes(ast.parse(path.read_text(encoding="utf-8")))
            except SyntaxError:
                spans[rel] = []
        line = int(item["location"]["row"])
        findings.append(Finding(rel, line, str(item["code"] or "syntax"),
                                scope_of(line, spans[rel]), str(item["message"])))
    return findings


def compare_ruff(findings: Iterable[Finding], allowed: Mapping[tuple[str, str, str], int],
                 listing: str = "[[ruff]]") -> list[str]:
    """Problems: findings beyond what the list allows, and listed keys found fewer times."""
    findings = sorted(findings, key=lambda f: (f.file, f.line, f.rule))
    counts = Counter(f.key for f in findings)
    problems: list[str] = []
    for f in findings:
        if counts[f.key] > allowed.get(f.key, 0):
            listed = allowed.get(f.key, 0)
            extra = f" (listed {listed}, found {counts[f.key]})" if listed else ""
            hint = (" (a `# noqa` for it needs a [[noqa]] entry)" if listing == "[[noqa]]"
                    else "")
            problems.append(f"{f.file}:{f.line}: {f.rule} {f.message} [in {f.scope}]: new "
                            f"finding{extra}{hint}; fix it (the exceptions list only shrinks)")
    for key, listed in sorted(allowed.items()):
        found = counts.get(key, 0)
        if found < listed:
            file, scope, rule = key
            what = "remove it from the list" if found == 0 else f"lower its count to {found}"
            problems.append(f"{file}: {rule} in {scope} is listed {listed} time(s) in "
                            f"scripts/gate_exceptions.toml {listing} but found {found}: {what}")
    return problems


def compare_noqa(size_findings: Iterable[Finding], exc: Exceptions) -> list[str]:
    """Problems of the C901/PLR0913 findings seen through every ``# noqa``: those neither
    listed in ``[[ruff]]`` nor in ``[[noqa]]``, and ``[[noqa]]`` entries no longer found."""
    size = [f for f in size_findings if f.rule in SIZE_RULES]
    allowed = {**{k: n for k, n in exc.ruff.items() if k[2] in SIZE_RULES}, **exc.noqa}
    problems = compare_ruff(size, allowed, "[[noqa]]")
    listed_ruff = {k for k in exc.ruff if k[2] in SIZE_RULES}
    # stale [[ruff]] entries are reported by the plain ruff run already
    return [p for p in problems
            if not any(p.startswith(f"{k[0]}: {k[2]} in {k[1]} is listed") for k in listed_ruff)]


# ---------------------------------------------------------------------------- mypy


def _ini_value(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def mypy_config(pyproject: Mapping[str, object]) -> tuple[str, list[str]]:
    """pyproject's ``[tool.mypy]`` as mypy.ini text without the ``ignore_errors`` overrides,
    and the modules those overrides name."""
    tool = pyproject.get("tool", {})
    conf = dict(tool.get("mypy", {})) if isinstance(tool, dict) else {}
    overrides = conf.pop("overrides", [])
    lines = ["[mypy]", *(f"{k} = {_ini_value(v)}" for k, v in conf.items())]
    ignored: list[str] = []
    for override in overrides:
        override = dict(override)
        modules = override.pop("module")
        modules = [modules] if isinstance(modules, str) else list(modules)
        if override.pop("ignore_errors", False):
            ignored.extend(modules)
        if override and modules:
            lines.append(f"[mypy-{','.join(modules)}]")
            lines.extend(f"{k} = {_ini_value(v)}" for k, v in override.items())
    return "\n".join(lines) + "\n", ignored


def module_of(file: str) -> str:
    """``geo_lead/geocode/cache.py`` -> ``geo_lead.geocode.cache`` (``__init__`` dropped)."""
    return ".".join(Path(file).with_suffix("").parts).removesuffix(".__init__")


def run_mypy() -> dict[str, list[str]]:
    """Module -> its mypy error lines, with no module's errors ignored."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    text, _ = mypy_config(pyproject)
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as fh:
        fh.write(text)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", fh.name, "--no-error-summary",
             "--no-pretty", "--no-color-output"],
            cwd=ROOT, capture_output=True, text=True, check=False,
            env={**os.environ, "MYPY_FORCE_COLOR": "0"})
    finally:
        os.unlink(fh.name)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"mypy failed to run (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    errors: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        m = _MYPY_LINE.match(line)
        if m:
            errors.setdefault(module_of(m["file"]), []).append(line)
    return errors


def compare_mypy(errors: Mapping[str, Sequence[str]], allowed: Mapping[str, str],
                 ignored: Sequence[str]) -> list[str]:
    """Problems: errors in unlisted modules, listed modules without errors, and a pyproject
    ignore list that differs from the exceptions file's."""
    problems: list[str] = []
    for module in sorted(errors):
        if module not in allowed:
            problems.extend(f"{line}  <- new mypy error in {module}; fix it (the list only "
                            "shrinks)" for line in errors[module])
    for module in sorted(allowed):
        if not errors.get(module):
            problems.append(f"{module}: listed in scripts/gate_exceptions.toml [[mypy]] but has "
                            "no mypy error: remove it from the list and from pyproject.toml's "
                            "ignore_errors override")
    if sorted(set(ignored)) != sorted(allowed):
        extra = sorted(set(ignored) - set(allowed))
        missing = sorted(set(allowed) - set(ignored))
        problems.append("pyproject.toml's ignore_errors override must name exactly the "
                        f"[[mypy]] modules of scripts/gate_exceptions.toml (not listed there: "
                        f"{extra or 'none'}; missing from pyproject.toml: {missing or 'none'})")
    return problems


def main(argv: Sequence[str]) -> int:
    which = set(argv) or {"ruff", "mypy"}
    unknown = which - {"ruff", "mypy"}
    if unknown:
        print(f"usage: gates.py [ruff] [mypy] (unknown: {', '.join(sorted(unknown))})",
              file=sys.stderr)
        return 2
    exc = load_exceptions()
    problems = list(exc.problems)
    if "ruff" in which:
        findings = run_ruff()
        ruff_problems = compare_ruff(findings, exc.ruff)
        ruff_problems += compare_noqa(
            run_ruff(options=["--ignore-noqa", "--select", ",".join(SIZE_RULES)]), exc)
        print(f"[gates] ruff: {len(findings)} finding(s), {sum(exc.ruff.values())} listed, "
              f"{len(ruff_problems)} problem(s)")
        problems += ruff_problems
    if "mypy" in which:
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        _, ignored = mypy_config(pyproject)
        errors = run_mypy()
        mypy_problems = compare_mypy(errors, exc.mypy, ignored)
        print(f"[gates] mypy: {sum(map(len, errors.values()))} error(s) in {len(errors)} "
              f"module(s), {len(exc.mypy)} listed, {len(mypy_problems)} problem(s)")
        problems += mypy_problems
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
