"""geo_lead's import graph read from the source (AST): every ``import``, at top level, inside
a function or under TYPE_CHECKING, is an edge. Shared by the walls and the gates tests."""

from __future__ import annotations

import ast
from pathlib import Path

from geo_lead import settings

PACKAGE = settings.PROJECT_ROOT / "geo_lead"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def sources() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(f): (f, ast.parse(f.read_text(encoding="utf-8"), filename=str(f)))
            for f in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, tree: ast.Module, modules: set[str]) -> set[str]:
    """geo_lead modules `name` imports anywhere in its source (``from x import y`` counts x,
    and x.y when that is a module)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Each geo_lead module -> the geo_lead modules it imports."""
    src = sources()
    modules = set(src)
    return {name: imports_of(name, path, tree, modules) for name, (path, tree) in src.items()}
