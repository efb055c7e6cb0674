"""The package's walls, read from the source (AST) and from a cold process.

* no import cycle among geo_lead's modules (every ``import``, at top level or inside a
  function, is an edge);
* library modules never import the CLI (`geo_lead.cli`, `geo_lead.commands`);
* scoring, hotspots and siting never import maps, report or figures; figures never imports maps;
* sources never imports the geocoder;
* no SQL outside `geo_lead.store`: no ``execute``/``executemany`` call, no ``.conn`` and no
  hand-built ``where=`` passed to the store's readers;
* the officer's zone check, by coordinates and by address, never loads pandas, geopandas,
  pyarrow, scipy or folium (checked in ``sys.modules`` of a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import import_graph, sources

from geo_lead import settings

PACKAGE = settings.PROJECT_ROOT / "geo_lead"
HEAVY = ("pandas", "geopandas", "pyarrow", "scipy", "folium")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_imports_inside_functions(graph: dict[str, set[str]]) -> None:
    # zone.py imports the geocoder only inside default_geocoder: still an edge
    assert "geo_lead.geocode" in graph["geo_lead.zone"]
    assert "geo_lead.store" in graph["geo_lead.geocode.cache"]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    # the package __init__ re-exports from its modules; an edge back to it is not a layer
    g = {m: {d for d in deps if d != "geo_lead"} for m, deps in graph.items()}
    assert _cycle(g) is None, " -> ".join(_cycle(g) or [])


def test_library_modules_never_import_the_cli(graph: dict[str, set[str]]) -> None:
    cli = ("geo_lead.cli", "geo_lead.commands", "geo_lead.__main__")
    bad = {m: sorted(d for d in deps if d.startswith(cli))
           for m, deps in graph.items() if not m.startswith(cli)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_commands_take_output_helpers_from_console(graph: dict[str, set[str]]) -> None:
    # cli imports the commands; they take print_json / writable_output from geo_lead.console
    bad = {m: "geo_lead.cli" for m, deps in graph.items()
           if m.startswith("geo_lead.commands") and "geo_lead.cli" in deps}
    assert bad == {}


@pytest.mark.parametrize("analysis", ["geo_lead.scoring", "geo_lead.hotspots", "geo_lead.siting"])
def test_analysis_never_imports_presentation(graph: dict[str, set[str]], analysis: str) -> None:
    presentation = ("geo_lead.maps", "geo_lead.report", "geo_lead.figures")
    assert sorted(d for d in graph[analysis] if d.startswith(presentation)) == []


def test_figures_never_import_the_web_maps(graph: dict[str, set[str]]) -> None:
    # both take palettes, classes and the display reprojection from geo_lead.cartography
    assert sorted(d for d in graph["geo_lead.figures"] if d.startswith("geo_lead.maps")) == []


def test_sources_never_import_the_geocoder(graph: dict[str, set[str]]) -> None:
    assert sorted(d for d in graph["geo_lead.sources"] if d.startswith("geo_lead.geocode")) == []


def _sql_uses(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript", "conn"):
            found.append(f"line {node.lineno}: .{node.attr}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("read_records", "read_table")
                and any(k.arg in ("where", "params") for k in node.keywords)):
            found.append(f"line {node.lineno}: {node.func.attr}(where=...)")
    return found


def test_sql_finder_finds_planted_sql() -> None:
    tree = ast.parse("def f(store):\n    store.conn.execute('SELECT 1')\n"
                     "    return store.read_records(['a'], where='a = 1')\n")
    assert len(_sql_uses(tree)) == 3


def test_no_sql_outside_the_store() -> None:
    found = {name: uses for name, (_path, tree) in sources().items()
             if name != "geo_lead.store" and (uses := _sql_uses(tree))}
    assert found == {}


def test_zone_path_loads_no_heavy_module(tmp_path: Path) -> None:
    """A fresh interpreter runs ``zone check`` by coordinates, then by address (every command
    module registered, the geocoder's shipped reference index already cached, as after any
    first use), and lists what it loaded."""
    from geo_lead.geocode.reference import load_reference

    load_reference()  # builds and caches the index once (reading the files needs pandas)
    code = (
        "import io, json, sys, contextlib\n"
        "from geo_lead.cli import main\n"
        "out = []\n"
        "for argv in (['zone', 'check', '--lat', '38.2587', '--lon', '-85.7930', '--json'],\n"
        "             ['zone', 'check', '--address', '2700 BLOCK W MADISON ST', '--json']):\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        rc = main(argv)\n"
        "    out.append({'rc': rc, 'answer': json.loads(buf.getvalue())})\n"
        f"out.append(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(settings.PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    coords, address, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert coords["rc"] == 0 and coords["answer"]["inside"] is True
    assert address["rc"] == 0 and address["answer"]["inside"] is True
    assert address["answer"]["match_type"] == "block"
    assert heavy == []
