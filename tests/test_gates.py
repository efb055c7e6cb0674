"""The lint gates (scripts/gates.py, run by scripts/lint.sh and CI) and the layer diagram.

* the exceptions file is well formed, and the gates' comparison logic fails on a new finding
  and on a listed finding that is gone (so the lists only shrink) — checked on made-up
  findings, independent of today's code;
* ruff and mypy on today's code pass the gates (mypy is the slow part: ~1 min cold, seconds
  with its cache in .mypy_cache);
* docs/ARCHITECTURE.md's layer diagram matches the import graph read from the source: every
  module is in one layer and no module imports a module of a higher layer; the zone path
  stands beside the layers (imports geocode and below, imported only by pipeline and above).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from import_graph import imports_of, sources

from geo_lead import settings

ROOT = settings.PROJECT_ROOT
PACKAGE = ROOT / "geo_lead"


def _load_gates() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gates", ROOT / "scripts" / "gates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gates"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


gates = _load_gates()


def _finding(file: str, line: int, rule: str, scope: str) -> object:
    return gates.Finding(file, line, rule, scope, "message")


# --- the exceptions file and the comparison logic -------------------------------------------
def test_exceptions_file_is_well_formed() -> None:
    exc = gates.load_exceptions()
    assert exc.problems == []
    for file, _scope, _rule in [*exc.ruff, *exc.noqa]:
        assert (ROOT / file).is_file(), f"{file} is listed in gate_exceptions.toml but is gone"
    for module in exc.mypy:
        assert module.startswith("geo_lead")


def test_entries_without_a_reason_or_twice_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "exc.toml"
    path.write_text(textwrap.dedent("""
        [[ruff]]
        file = "a.py"
        scope = "f"
        rule = "C901"

        [[ruff]]
        file = "a.py"
        scope = "f"
        rule = "C901"
        reason = "x"

        [[noqa]]
        file = "a.py"
        scope = "g"
        rule = "E501"
        reason = "not a size rule"

        [[mypy]]
        module = "geo_lead.x"
        reason = ""
    """), encoding="utf-8")
    problems = gates.load_exceptions(path).problems
    assert any("give the reason" in p and "[[ruff]]" in p for p in problems)
    assert any("listed twice" in p for p in problems)
    assert any("only C901, PLR0913" in p for p in problems)
    assert any("give the reason" in p and "geo_lead.x" in p for p in problems)


def test_a_new_finding_fails_and_a_listed_one_passes() -> None:
    listed = {("geo_lead/a.py", "f", "C901"): 1}
    assert gates.compare_ruff([_finding("geo_lead/a.py", 3, "C901", "f")], listed) == []
    new = gates.compare_ruff([_finding("geo_lead/a.py", 3, "C901", "f"),
                              _finding("geo_lead/a.py", 9, "C901", "g")], listed)
    assert len(new) == 1 and "geo_lead/a.py:9" in new[0] and "new finding" in new[0]
    # one more of a listed kind in the same scope is new too
    more = gates.compare_ruff([_finding("geo_lead/a.py", 3, "RUF005", "f"),
                               _finding("geo_lead/a.py", 4, "RUF005", "f")],
                              {("geo_lead/a.py", "f", "RUF005"): 1})
    assert more and all("listed 1, found 2" in p for p in more)


def test_a_listed_finding_that_is_gone_fails_so_the_list_shrinks() -> None:
    listed = {("geo_lead/a.py", "f", "C901"): 1, ("tests/t.py", "<module>", "RUF001"): 5}
    problems = gates.compare_ruff([_finding("tests/t.py", 1, "RUF001", "<module>")] * 3, listed)
    assert any("C901 in f" in p and "remove it from the list" in p for p in problems)
    assert any("RUF001" in p and "lower its count to 3" in p for p in problems)


def test_a_noqa_on_a_size_rule_must_be_listed() -> None:
    exc = gates.Exceptions(ruff={("geo_lead/m.py", "big", "C901"): 1},
                           noqa={("geo_lead/s.py", "api", "PLR0913"): 1}, mypy={}, problems=[])
    seen_through_noqa = [_finding("geo_lead/m.py", 1, "C901", "big"),
                         _finding("geo_lead/s.py", 5, "PLR0913", "api")]
    assert gates.compare_noqa(seen_through_noqa, exc) == []
    sneaked = gates.compare_noqa([*seen_through_noqa,
                                  _finding("geo_lead/s.py", 40, "C901", "other")], exc)
    assert len(sneaked) == 1 and "[[noqa]]" in sneaked[0] and "s.py:40" in sneaked[0]
    gone = gates.compare_noqa(seen_through_noqa[:1], exc)
    assert len(gone) == 1 and "api" in gone[0] and "remove it from the list" in gone[0]


def test_scope_is_the_innermost_function_or_class() -> None:
    tree = ast.parse(textwrap.dedent("""\
        import os

        class A:
            x = 1

            def m(self):
                def inner():
                    return 1
                return inner

        def f():
            pass
    """))
    spans = gates.scopes(tree)
    assert gates.scope_of(1, spans) == "<module>"
    assert gates.scope_of(4, spans) == "A"
    assert gates.scope_of(6, spans) == "A.m"
    assert gates.scope_of(8, spans) == "A.m.inner"
    assert gates.scope_of(9, spans) == "A.m"
    assert gates.scope_of(12, spans) == "f"


def test_mypy_comparison() -> None:
    errors = {"geo_lead.a": ["geo_lead/a.py:1: error: x  [misc]"],
              "geo_lead.b": ["geo_lead/b.py:2: error: y  [misc]"]}
    assert gates.compare_mypy(errors, {"geo_lead.a": "r", "geo_lead.b": "r"},
                              ["geo_lead.a", "geo_lead.b"]) == []
    new = gates.compare_mypy(errors, {"geo_lead.a": "r"}, ["geo_lead.a"])
    assert len(new) == 1 and "geo_lead/b.py:2" in new[0]
    gone = gates.compare_mypy({}, {"geo_lead.a": "r"}, ["geo_lead.a"])
    assert len(gone) == 1 and "remove it from the list" in gone[0]
    drift = gates.compare_mypy(errors, {"geo_lead.a": "r", "geo_lead.b": "r"}, ["geo_lead.a"])
    assert len(drift) == 1 and "missing from pyproject.toml: ['geo_lead.b']" in drift[0]


def test_module_of_a_file() -> None:
    assert gates.module_of("geo_lead/geocode/cache.py") == "geo_lead.geocode.cache"
    assert gates.module_of("geo_lead/geocode/__init__.py") == "geo_lead.geocode"


# --- the configuration -----------------------------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_ruff_selects_the_size_rules_at_the_agreed_limits() -> None:
    lint = _pyproject()["tool"]["ruff"]["lint"]
    assert {"C901", "PLR0913"} <= set(lint["select"])
    assert lint["mccabe"]["max-complexity"] == 15
    assert lint["pylint"]["max-args"] == 8


def test_mypy_is_strict_on_the_four_modules_and_ignores_only_the_listed() -> None:
    conf = _pyproject()["tool"]["mypy"]
    strict = [o for o in conf["overrides"] if o.get("disallow_untyped_defs")]
    assert len(strict) == 1
    assert set(strict[0]["module"]) == {"geo_lead.store", "geo_lead.zone", "geo_lead.sources",
                                        "geo_lead.scoring"}
    for option in ("disallow_any_generics", "warn_return_any", "disallow_untyped_calls",
                   "disallow_incomplete_defs", "check_untyped_defs", "no_implicit_reexport"):
        assert strict[0][option] is True
    text, ignored = gates.mypy_config(_pyproject())
    assert sorted(ignored) == sorted(gates.load_exceptions().mypy)
    assert "ignore_errors" not in text  # the gate's own run sees every module's errors
    # the strict modules are strict-clean: none of them is in the ignore list
    assert not set(strict[0]["module"]) & set(ignored)


def test_ci_runs_the_gates_before_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("scripts/lint.sh") < ci.index("scripts/test.sh")
    extras = " ".join(_pyproject()["project"]["optional-dependencies"]["test"])
    assert "ruff>=" in extras and "mypy>=" in extras


# --- the gates on today's code ----------------------------------------------------------------
def test_ruff_gate_passes() -> None:
    pytest.importorskip("ruff")
    exc = gates.load_exceptions()
    problems = gates.compare_ruff(gates.run_ruff(), exc.ruff)
    problems += gates.compare_noqa(
        gates.run_ruff(options=["--ignore-noqa", "--select", ",".join(gates.SIZE_RULES)]), exc)
    assert problems == []


@pytest.mark.slow
def test_mypy_gate_passes() -> None:
    pytest.importorskip("mypy")
    _, ignored = gates.mypy_config(_pyproject())
    problems = gates.compare_mypy(gates.run_mypy(), gates.load_exceptions().mypy, ignored)
    assert problems == []


# --- the layers ------------------------------------------------------------------------------
ZONE_PATH = "zone path"


def _layers() -> list[tuple[str, list[str]]]:
    """(layer, module patterns) from docs/ARCHITECTURE.md's diagram, lowest layer first."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- layers[^>]*-->\s*```text\n(.*?)```", text, re.DOTALL)
    assert m, "docs/ARCHITECTURE.md has no layer diagram (<!-- layers --> then a text block)"
    rows: list[tuple[str, list[str]]] = []
    for line in m.group(1).splitlines():
        line = re.sub(r"\(.*?\)", "", line).rstrip()
        if not line.strip() or set(line) <= set("|v^ "):
            continue  # an arrow
        row = re.match(r"^ {2}(\S.*?)\s{2,}(\S.*)$", line)
        if row:
            rows.append((row.group(1).strip(), row.group(2).split()))
        else:  # a continuation line: more modules of the row above
            assert rows and line.startswith(" " * 3), f"unreadable diagram line: {line!r}"
            rows[-1][1].extend(line.split())
    return rows[::-1]


def _assign(modules: set[str], layers: list[tuple[str, list[str]]]) -> dict[str, str]:
    """module -> its layer: exact name, ``pkg.*`` for a package and everything in it, else the
    longest name it extends with ``_`` (a new ``maps_layers`` sits with ``maps``)."""
    exact: dict[str, str] = {}
    for layer, patterns in layers:
        for p in patterns:
            exact["geo_lead." + p if p != "geo_lead" else p] = layer
    out = {}
    for mod in modules:
        if mod in exact:
            out[mod] = exact[mod]
            continue
        cands = [(len(p), layer) for p, layer in exact.items()
                 if (p.endswith(".*") and (mod == p[:-2] or mod.startswith(p[:-1])))
                 or (not p.endswith(".*") and mod.startswith(p + "_"))]
        if cands:
            out[mod] = max(cands)[1]
    return out


def test_the_layer_diagram_names_only_existingsources() -> None:
    modules = set(sources())
    stale = [p for _, patterns in _layers() for p in patterns
             if ("geo_lead." + p if p != "geo_lead" else p).removesuffix(".*") not in modules]
    assert stale == [], f"docs/ARCHITECTURE.md's layer diagram names modules that are gone: {stale}"


def test_every_module_has_a_layer_and_imports_flow_downward() -> None:
    src = sources()
    modules = set(src)
    layers = _layers()
    names = [layer for layer, _ in layers]
    assert ZONE_PATH in names and "geocode" in names and "pipeline" in names
    where = _assign(modules, layers)
    missing = sorted(modules - set(where))
    assert missing == [], (f"modules in no layer of docs/ARCHITECTURE.md's diagram: {missing}; "
                           "add each to its layer")
    order = [n for n in names if n != ZONE_PATH]
    level = {n: i for i, n in enumerate(order)}
    # the zone path stands beside: it may import geocode and below; pipeline and above import it
    level[ZONE_PATH] = level["geocode"] + 0.5
    upward = []
    for mod, (path, tree) in src.items():
        for dep in imports_of(mod, path, tree, modules):
            a, b = where[mod], where[dep]
            if a == b:
                continue
            if b == ZONE_PATH and level[a] < level["pipeline"]:
                upward.append(f"{mod} ({a}) imports {dep} (the zone path)")
            elif level[b] > level[a]:
                upward.append(f"{mod} ({a}) imports {dep} ({b}, a higher layer)")
    assert upward == []
