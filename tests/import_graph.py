"""The package's import graph, read from the source with ast (nothing is imported).

An edge A -> B means module A names module B in an import, at module level or inside a
function: `from hnpipe.warehouse import connect` is an edge to the package hnpipe.warehouse,
`from hnpipe.warehouse.base import Check` one to hnpipe.warehouse.base only (Python runs the
package's __init__ first, but that is how packages work, not a dependency of the code), and
`from hnpipe import pipeline` one to hnpipe.pipeline. The root package `hnpipe` is never a
target: its __init__ imports only errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hnpipe

PACKAGE_ROOT = Path(hnpipe.__file__).parent


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ("hnpipe", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
        name = ".".join(parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> dict[str, list[int]]:
    """The package modules `module` imports, each with the line numbers that import it; a
    line number is negative for an import inside a function or class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, list[int]] = {}

    def add(name: str, line: int) -> None:
        if name in known and name not in (module, "hnpipe"):
            lines = found.setdefault(name, [])
            if line not in lines:
                lines.append(line)

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, -child.lineno if local else child.lineno)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                line = -child.lineno if local else child.lineno
                add(base, line)
                for alias in child.names:  # `from hnpipe import pipeline` names a module
                    add(f"{base}.{alias.name}", line)
            visit(child, inner)

    visit(tree, False)
    return found


def import_graph() -> dict[str, dict[str, list[int]]]:
    """module -> {imported module: [lines]} for the whole package."""
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in sorted(files.items())}


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            strongconnect(node)
    return found
