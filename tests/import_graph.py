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


def engine_name_uses(root: Path = PACKAGE_ROOT, engines: dict[str, str] | None = None) -> list[str]:
    """Where code outside warehouse/ knows an engine by name: a string that is an engine's name
    or starts a spec (`"duckdb:"`, also in an f-string) compared, tested or built, `.engine`
    compared, an isinstance check on an engine class, an engine module imported. Docstrings
    and comments do not count. `engines` maps engine names to class names (default: the
    registry's); `root` is a package directory (another checkout's, to count before a change)."""
    if engines is None:
        from hnpipe.warehouse.registry import ENGINES  # the registry under test, read at call time

        engines = {engine.name: engine.class_name for engine in ENGINES.values()}
    classes = set(engines.values())
    modules = {f"hnpipe.warehouse.{name}_engine" for name in engines}

    def names_engine(text: object) -> bool:
        return isinstance(text, str) and (text in engines or text.split(":")[0] in engines and ":" in text)

    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("warehouse/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(node.body[0].value) for node in ast.walk(tree)  # docstrings
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        skip |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            what = None
            if isinstance(node, ast.Constant) and id(node) not in skip and names_engine(node.value):
                what = f"the string {node.value!r}"
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                    and names_engine(str(node.values[0].value)):
                what = f"an f-string starting {node.values[0].value!r}"
            elif isinstance(node, ast.Compare) and any(isinstance(side, ast.Attribute) and side.attr == "engine"
                                                       for side in [node.left, *node.comparators]):
                what = "a comparison of .engine"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                    and any(getattr(n, "id", getattr(n, "attr", None)) in classes for n in ast.walk(node.args[1])):
                what = "an isinstance check on an engine class"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                named = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(name in modules for name in named):
                    what = f"an import of {named[0]}"
            if what and f"{relative}:{node.lineno}" not in {line.split(": ")[0] for line in found}:
                found.append(f"{relative}:{node.lineno}: {what}")  # one per line
    return found
