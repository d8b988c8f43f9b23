"""`hnpipe changes --base <git ref>`: which datasets a change touches, and why.

The branch workflow rebuilds and diffs only these datasets. The comparison is the base
commit against the *working tree*: commits since the base and uncommitted edits (staged or
not, and new files git does not ignore) all count, so a developer sees before committing
what CI will see after.

What a dataset depends on:

* its notebook (`Dataset.notebook`): code cells only, read with nbformat and compared as
  parsed Python, so outputs, execution counts, metadata, markdown, comments and blank
  lines do not count. The cell tagged `parameters` is compared name by name.
* its definition in lib/hnpipe/datasets.py: its `Dataset(...)` entry (sql, checks,
  upstream, ...) and every module-level name the entry uses, followed transitively (e.g.
  COMMENTS' sql calls `_items_of_type`, which uses ITEMS_COLUMNS). Both versions are read
  with `ast`, never executed; comments and docstrings do not count.
* library code, classified by where it lives (`code_class`, one class per path):
  - code only ITEMS' build uses: the HN client (hn*.py), the ITEMS frame builder (items.py)
    and the bundled sample (sample/);
  - tooling that builds no data: the commands around the pipeline (ops/, cli.py). The
    package's import graph proves it: no module that builds data imports them
    (tests/test_changes.py);
  - shared code, which every dataset depends on: everything else under lib/hnpipe/
    (pipeline, warehouse/, environments, params, ...), so a new module counts as shared
    until it is placed (rebuilding too much is cheaper than missing a change); plus the
    rest of datasets.py and the dependency pins in DEPENDENCY_FILES.
* parameters: params/*.yaml keys added, removed or changed (every notebook reads the same
  params file, so they mark every dataset).
* upstream: a dataset built from a changed dataset is changed too ("upstream ITEMS changed").
* new: a dataset that datasets.py did not define at the base.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import nbformat

from hnpipe import config, params
from hnpipe.errors import HnpipeError, one_line

DATASETS_FILE = "lib/hnpipe/datasets.py"
LIBRARY_DIR = "lib/hnpipe/"
NOTEBOOKS_DIR = "notebooks/"
PARAMS_DIR = "params/"
# Library code by what it builds, by where it lives (a trailing / is a whole folder).
# Everything else under LIBRARY_DIR is SHARED.
TOOLING, SHARED = "tooling", "shared"
CODE_CLASSES: dict[str, tuple[str, ...]] = {
    "ITEMS": ("lib/hnpipe/sample/", "lib/hnpipe/hn.py", "lib/hnpipe/hn_api.py", "lib/hnpipe/hn_http.py",
              "lib/hnpipe/hn_limits.py", "lib/hnpipe/hn_loop.py", "lib/hnpipe/hn_processes.py", "lib/hnpipe/items.py",
              # the stage of fetched ITEMS batches and the backfill that fills and merges it
              "lib/hnpipe/stage.py", "lib/hnpipe/budget.py", "lib/hnpipe/backfill/__init__.py",
              "lib/hnpipe/backfill/ledger.py", "lib/hnpipe/backfill/plan.py", "lib/hnpipe/backfill/shard.py",
              "lib/hnpipe/backfill/run.py", "lib/hnpipe/backfill/merge.py"),
    TOOLING: ("lib/hnpipe/ops/", "lib/hnpipe/cli.py", "lib/hnpipe/backfill/cli.py"),
}
DEPENDENCY_FILES = ("pyproject.toml", "environment.yml")


class ChangesError(HnpipeError):
    """The comparison could not be made (bad ref, not a git checkout, unreadable file)."""


@dataclass
class Changes:
    """Datasets changed against `base`, in dependency order, each with its reasons."""

    base: str
    base_commit: str
    reasons: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # defined at base, gone now

    @property
    def datasets(self) -> list[str]:
        return list(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "base_commit": self.base_commit,
                "datasets": self.datasets, "reasons": self.reasons, "removed": self.removed}

    def to_text(self) -> str:
        against = f"against {self.base} ({self.base_commit[:12]}), working tree included"
        lines = [f"{len(self.reasons)} dataset(s) changed {against}:" if self.reasons
                 else f"no dataset changed {against}"]
        for name, reasons in self.reasons.items():
            lines.append(name)
            lines.extend(f"  - {reason}" for reason in reasons)
        if self.removed:
            lines.append(f"removed since {self.base}: {', '.join(self.removed)}")
        return "\n".join(lines)


# -- git ---------------------------------------------------------------------------------
def _git(root: Path, *args: str) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ChangesError(f"cannot run git in {root}: {exc}") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise ChangesError(f"git {args[0]} failed in {root}: {message[0] if message else result.returncode}")
    return result.stdout


def resolve_ref(root: Path, ref: str) -> str:
    """The commit `ref` names; a one-line error naming it otherwise."""
    if not isinstance(ref, str) or not ref or ref.startswith("-"):
        raise ChangesError(f"bad git ref {ref!r}: give a branch, tag or commit, e.g. origin/main")
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options",
                    f"{ref}^{{commit}}").decode().strip()
    except ChangesError:
        raise ChangesError(
            f"unknown git ref {ref!r} in {root}: give a branch, tag or commit, e.g. origin/main "
            "(in a shallow CI checkout, fetch it first: git fetch origin main)"
        ) from None


class _Versions:
    """Reads a project file as it was at the base commit and as it is in the working tree."""

    def __init__(self, root: Path, commit: str) -> None:
        self.root, self.commit = root, commit

    def base(self, path: str) -> bytes | None:
        try:
            return _git(self.root, "show", f"{self.commit}:./{path}")
        except ChangesError:
            return None  # not in the base commit

    def head(self, path: str) -> bytes | None:
        file = self.root / path
        return file.read_bytes() if file.is_file() else None

    def changed_paths(self) -> list[str]:
        """Tracked files (those datasets depend on) whose content differs from the base."""
        tracked = [LIBRARY_DIR, NOTEBOOKS_DIR, PARAMS_DIR, *DEPENDENCY_FILES]
        listed = _git(self.root, "diff", "--no-renames", "--name-only", "--relative", "-z",
                      self.commit, "--", *tracked).decode().split("\0")
        untracked = _git(self.root, "ls-files", "--others", "--exclude-standard", "-z",
                         "--", *tracked).decode().split("\0")
        # git diff also lists mode-only changes, and an untracked file may match the base.
        return sorted(path for path in set(listed + untracked)
                      if path and self.base(path) != self.head(path))


# -- datasets.py, read with ast ----------------------------------------------------------
@dataclass
class _Definitions:
    """The datasets a version of datasets.py defines, and the fingerprints of its names."""

    datasets: dict[str, dict[str, str]]  # name -> Dataset field -> ast dump of its value
    upstream: dict[str, tuple[str, ...]]
    notebooks: dict[str, str]
    uses: dict[str, set[str]]  # dataset -> module-level names its entry uses, transitively
    fingerprints: dict[str, str]  # module-level name -> ast dump of its definition
    references: dict[str, set[str]]  # module-level name -> module-level names it uses


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _is_dataset_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Dataset") or \
        (isinstance(func, ast.Attribute) and func.attr == "Dataset")


class _HideDatasetEntries(ast.NodeTransformer):
    """Takes the Dataset(...) entries out of the code around them (the DATASETS container),
    so adding or editing one entry marks that dataset only, not every dataset."""

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        node.elts = [element for element in node.elts if not _is_dataset_call(element)]
        return self.generic_visit(node)

    visit_List = visit_Tuple  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if _is_dataset_call(node):  # an entry outside a tuple or list, e.g. ITEMS = Dataset(...)
            return ast.Constant("<a Dataset entry>")
        return self.generic_visit(node)


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _field_order(tree: ast.Module) -> list[str]:
    """The Dataset class's fields in order, for entries written with positional arguments."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Dataset":
            return [s.target.id for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    return []


def _literal(node: ast.AST, what: str, source: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ChangesError(f"{source}: {what} is not a literal; change tracking reads it without "
                           "running the code, so write it as a plain string/tuple") from None


def read_definitions(text: bytes | None, source: str) -> _Definitions:
    """The datasets a datasets.py defines, without executing it."""
    if text is None:
        return _Definitions({}, {}, {}, {}, {}, {})
    try:
        tree = _strip_docstrings(ast.parse(text, filename=source))
    except SyntaxError as exc:
        raise ChangesError(f"{source} is not valid Python (line {exc.lineno}): {exc.msg}") from None
    assert isinstance(tree, ast.Module)
    definitions: dict[str, list[ast.AST]] = {}
    for statement in tree.body:
        for name in _defined_names(statement):
            definitions.setdefault(name, []).append(statement)
    fingerprints, references = {}, {}
    for name, statements in definitions.items():
        hidden = [_HideDatasetEntries().visit(copy.deepcopy(s)) for s in statements]
        fingerprints[name] = "\n".join(_dump_definition(name, s) for s in hidden)
        references[name] = set().union(*(_names_used(s) for s in hidden)) & definitions.keys()
    # Statements that define nothing (asserts, bare calls) still run on import: shared.
    loose = [s for s in tree.body if not _defined_names(s)]
    fingerprints["(module-level statements)"] = "\n".join(ast.dump(s) for s in loose)
    references["(module-level statements)"] = set()

    order = _field_order(tree)
    datasets, upstream, notebooks, uses = {}, {}, {}, {}
    for node in ast.walk(tree):
        if not _is_dataset_call(node):
            continue
        assert isinstance(node, ast.Call)
        values = {order[i]: arg for i, arg in enumerate(node.args) if i < len(order)}
        values.update({kw.arg: kw.value for kw in node.keywords if kw.arg})
        if "name" not in values:
            raise ChangesError(f"{source}: a Dataset(...) entry has no name")
        name = _literal(values["name"], "a Dataset name", source)
        datasets[name] = {key: ast.dump(value) for key, value in values.items()}
        upstream[name] = tuple(_literal(values["upstream"], f"{name}'s upstream", source)) \
            if "upstream" in values else ()
        notebooks[name] = _literal(values["notebook"], f"{name}'s notebook", source) \
            if "notebook" in values else ""
        uses[name] = _closure(_names_used(node) & definitions.keys(), references)
    return _Definitions(datasets, upstream, notebooks, uses, fingerprints, references)


def _defined_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [(alias.asname or alias.name).split(".")[0] for alias in statement.names]
    return []


def _dump_definition(name: str, statement: ast.AST) -> str:
    # An import line defining several names: only this name's part counts for it.
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        module = getattr(statement, "module", None) or ""
        return "; ".join(f"{module}:{alias.name} as {alias.asname}" for alias in statement.names
                         if (alias.asname or alias.name).split(".")[0] == name)
    return ast.dump(statement)


def _closure(names: Iterable[str], references: dict[str, set[str]]) -> set[str]:
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(references.get(name, ()))
    return found


# -- notebooks and params files ------------------------------------------------------------
def _normalized(source: str) -> str:
    """A code cell as parsed Python (comments and layout dropped), else its stripped text."""
    try:
        return ast.dump(ast.parse(source))
    except SyntaxError:  # IPython magics and the like: compare the text
        return source.strip()


def _notebook_code(text: bytes | None, source: str) -> tuple[dict[str, str], list[str]]:
    """(parameter name -> its default, as parsed) and the other code cells, normalized."""
    if text is None:
        return {}, []
    try:
        notebook = nbformat.reads(text.decode("utf-8"), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for unreadable JSON
        raise ChangesError(f"{source} is not a readable notebook: {one_line(exc)}") from None
    parameters: dict[str, str] = {}
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            parameters.update(_parameter_defaults(cell.source))
        else:
            cells.append(_normalized(cell.source))
    return parameters, cells


def _parameter_defaults(source: str) -> dict[str, str]:
    """Each name the parameters cell assigns -> its value, as parsed; other code as one entry."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {"(parameters cell)": source.strip()}
    defaults, other = {}, []
    for statement in tree.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            for name in _defined_names(statement):
                defaults[name] = ast.dump(statement.value)
        else:
            other.append(ast.dump(statement))
    if other:
        defaults["(other code in the parameters cell)"] = "\n".join(other)
    return defaults


_MISSING = object()


def _changed_keys(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    return sorted(key for key in base.keys() | head.keys() if base.get(key, _MISSING) != head.get(key, _MISSING))


def _params_file(text: bytes | None, source: str) -> dict[str, Any] | None:
    if text is None:
        return {}
    try:
        values = params.parse_yaml(text.decode("utf-8"), source)
    except (HnpipeError, UnicodeDecodeError):
        return None  # unreadable: counts as changed as a whole
    return values if isinstance(values, dict) else None


def _describe_keys(base: dict[str, Any], head: dict[str, Any], keys: list[str]) -> str:
    parts = []
    for key in keys:
        state = "added" if key not in base else "removed" if key not in head else "changed"
        parts.append(f"{key} {state}")
    return ", ".join(parts)


# -- the comparison ----------------------------------------------------------------------
def _under(path: str, entries: Iterable[str]) -> bool:
    return any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in entries)


def code_class(path: str) -> str | None:
    """What a library file builds: a dataset's name (code only it uses), TOOLING or SHARED;
    None outside the library."""
    if not path.startswith(LIBRARY_DIR):
        return None
    for name, entries in CODE_CLASSES.items():
        if _under(path, entries):
            return name
    return SHARED


def find_changes(base: str, root: Path | None = None) -> Changes:
    """Which datasets changed between git ref `base` and the working tree at `root`."""
    try:
        root = (root or config.project_root()).resolve()
    except FileNotFoundError as exc:
        raise ChangesError(str(exc)) from None
    _git(root, "rev-parse", "--show-toplevel")  # not a checkout: git says so in one line
    commit = resolve_ref(root, base)
    versions = _Versions(root, commit)
    changed = versions.changed_paths()
    new_text = versions.head(DATASETS_FILE)
    if new_text is None:
        raise ChangesError(f"no {DATASETS_FILE} under {root}: is this the hnpipe project?")
    old = read_definitions(versions.base(DATASETS_FILE), f"{DATASETS_FILE} at {base}")
    new = read_definitions(new_text, DATASETS_FILE)

    everyone = _shared_reasons(versions, base, changed, old, new)
    reasons: dict[str, list[str]] = {}
    for name in new.datasets:
        if name not in old.datasets:
            reasons[name] = [f"new dataset (not defined at {base})", *everyone]
        else:
            reasons[name] = [*everyone, *_own_reasons(name, versions, base, changed, old, new)]
    # Upstream last, in dependency order, so a change travels down the whole graph.
    ordered = _dependency_order(new.upstream)
    for name in ordered:
        for upstream in new.upstream[name]:
            if reasons.get(upstream):
                reasons[name].append(f"upstream {upstream} changed")
    removed = [name for name in old.datasets if name not in new.datasets]
    return Changes(base, commit, {name: reasons[name] for name in ordered if reasons[name]}, removed)


def _changed_names(old: _Definitions, new: _Definitions) -> list[str]:
    """Module-level names of datasets.py whose definition differs."""
    return sorted(name for name in old.fingerprints.keys() | new.fingerprints.keys()
                  if old.fingerprints.get(name) != new.fingerprints.get(name))


def _dataset_names(name: str, old: _Definitions, new: _Definitions) -> set[str]:
    """The names in datasets.py one dataset's entry uses."""
    return old.uses.get(name, set()) | new.uses.get(name, set())


def _shared_reasons(versions: _Versions, base: str, changed: list[str],
                    old: _Definitions, new: _Definitions) -> list[str]:
    """Reasons that mark every dataset: shared code, dependency pins, params files."""
    found = []
    shared_files = [path for path in changed if path != DATASETS_FILE and code_class(path) == SHARED]
    if shared_files:
        found.append(f"shared code changed: {', '.join(shared_files)}")
    owned = set().union(*(_dataset_names(name, old, new) for name in old.datasets.keys() | new.datasets.keys()))
    shared_names = [name for name in _changed_names(old, new) if name not in owned]
    if shared_names:
        found.append(f"shared code in {DATASETS_FILE} changed: {', '.join(shared_names)}")
    found.extend(f"dependencies changed: {path}" for path in changed if path in DEPENDENCY_FILES)
    for path in changed:
        if path.startswith(PARAMS_DIR) and path.count("/") == 1 and path.endswith((".yaml", ".yml")):
            before = _params_file(versions.base(path), f"{path} at {base}")
            after = _params_file(versions.head(path), path)
            if before is None or after is None:
                found.append(f"{path} changed")
            elif keys := _changed_keys(before, after):
                found.append(f"{path}: {_describe_keys(before, after, keys)}")
    return found


def _own_reasons(name: str, versions: _Versions, base: str, changed: list[str],
                 old: _Definitions, new: _Definitions) -> list[str]:
    """Reasons that mark one dataset defined at both ends: its entry, its code, its notebook."""
    found = []
    fields = sorted(key for key in old.datasets[name].keys() | new.datasets[name].keys()
                    if old.datasets[name].get(key) != new.datasets[name].get(key))
    if fields:
        found.append(f"its definition in {DATASETS_FILE} changed: {', '.join(fields)}")
    own_names = _dataset_names(name, old, new)
    used = [changed_name for changed_name in _changed_names(old, new) if changed_name in own_names]
    if used:
        found.append(f"code it uses in {DATASETS_FILE} changed: {', '.join(used)}")
    own_files = [path for path in changed if code_class(path) == name]
    if own_files:
        found.append(f"code it uses changed: {', '.join(own_files)}")
    old_notebook, new_notebook = NOTEBOOKS_DIR + old.notebooks[name], NOTEBOOKS_DIR + new.notebooks[name]
    if old_notebook != new_notebook or new_notebook in changed:
        found.extend(_notebook_reasons(versions, base, old_notebook, new_notebook))
    return found


def _notebook_reasons(versions: _Versions, base: str, old_path: str, new_path: str) -> list[str]:
    new_text = versions.head(new_path)
    if new_text is None:
        return [f"{new_path}: missing in the working tree"]
    old_params, old_cells = _notebook_code(versions.base(old_path), f"{old_path} at {base}")
    new_params, new_cells = _notebook_code(new_text, new_path)
    found = []
    if keys := _changed_keys(old_params, new_params):
        found.append(f"{new_path}: parameters cell changed: {_describe_keys(old_params, new_params, keys)}")
    if old_cells != new_cells:
        found.append(f"{new_path}: code changed")
    return found


def _dependency_order(upstream: dict[str, tuple[str, ...]]) -> list[str]:
    """Names with each after its upstream, ties in definition order.

    datasets.dependency_order works on the installed DATASETS; this graph is read from the
    working tree, which may define datasets the installed package does not know yet.
    """
    done: list[str] = []
    remaining = list(upstream)
    while remaining:
        ready = next((name for name in remaining
                      if all(up in done or up not in upstream for up in upstream[name])), None)
        if ready is None:
            raise ChangesError(f"{DATASETS_FILE}: the upstream of {', '.join(remaining)} form a cycle")
        done.append(ready)
        remaining.remove(ready)
    return done


# -- `hnpipe changes` --------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--base", required=True, metavar="REF",
                        help="git ref to compare against, e.g. origin/main; the working tree "
                             "(uncommitted edits included) is the other side")
    parser.add_argument("--json", action="store_true",
                        help='print {"base", "datasets", "reasons"} for workflows')


def main(args) -> int:
    changes = find_changes(args.base)
    print(json.dumps(changes.to_json(), indent=2) if args.json else changes.to_text())
    return 0
