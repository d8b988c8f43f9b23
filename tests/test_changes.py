"""`hnpipe changes`: real commits in a throwaway git repository holding a copy of the project.

Each test starts from a commit of the project's notebooks/, params/ and lib/hnpipe/, changes
one thing (committed, or left in the working tree), and checks that exactly the datasets
that thing feeds are marked, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from hnpipe import cli
from registered import built_in_sql, dataset_tables
from hnpipe.ops.changes import ChangesError, find_changes

ROOT = Path(__file__).resolve().parents[1]
DATASETS_PY = "lib/hnpipe/datasets.py"
ALL = list(dataset_tables())  # the registry's, in dependency order
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                            capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    return result.stdout


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("template")
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    for folder in ("notebooks", "params", "lib/hnpipe"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=ignore)
    (repo / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "base")
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(template, copy)
    return copy


def edit(repo: Path, path: str, old: str, new: str) -> None:
    file = repo / path
    text = file.read_text()
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    file.write_text(text.replace(old, new))


def edit_notebook(repo: Path, name: str, change) -> None:
    path = repo / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    change(notebook)
    nbformat.write(notebook, path)


def code_cell(notebook, containing: str):
    return next(cell for cell in notebook.cells if cell.cell_type == "code" and containing in cell.source)


def reasons(repo: Path, base: str = "HEAD~1") -> dict[str, list[str]]:
    return find_changes(base, root=repo).reasons


# -- nothing changed ---------------------------------------------------------------------
def test_no_change_marks_nothing(repo: Path) -> None:
    commit(repo, "empty")
    changes = find_changes("HEAD~1", root=repo)
    assert changes.reasons == {} and changes.datasets == []
    assert changes.to_text().startswith("no dataset changed against HEAD~1")


def test_markdown_outputs_metadata_and_comments_in_a_notebook_mark_nothing(repo: Path) -> None:
    def cosmetic(notebook) -> None:
        markdown = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
        markdown.source += "\n\nMore words for people."
        cell = code_cell(notebook, "step.publish")
        cell.execution_count = 7
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="published 3 rows\n")]
        cell.metadata["collapsed"] = True
        cell.source = "# publish what was fetched\n" + cell.source + "\n"
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}

    edit_notebook(repo, "items.ipynb", cosmetic)
    commit(repo)
    assert git(repo, "diff", "--name-only", "HEAD~1").split() == ["notebooks/items.ipynb"]
    assert reasons(repo) == {}


def test_comments_and_docstrings_in_datasets_py_mark_nothing(repo: Path) -> None:
    edit(repo, DATASETS_PY, "def _items_of_type(item_type: str) -> str:\n",
         'def _items_of_type(item_type: str) -> str:\n    """The rows of one type."""\n    # a comment\n')
    commit(repo)
    assert reasons(repo) == {}


def test_tooling_files_mark_nothing(repo: Path) -> None:
    (repo / "lib/hnpipe/cli.py").write_text((repo / "lib/hnpipe/cli.py").read_text() + "\nX = 1\n")
    (repo / "README.md").write_text("docs\n")
    commit(repo)
    assert reasons(repo) == {}


# -- a dataset's own SQL and definition --------------------------------------------------
def test_changing_comments_sql_marks_only_comments(repo: Path) -> None:
    edit(repo, DATASETS_PY, 'sql=_items_of_type("comment"),',
         'sql=_items_of_type("comment") + " AND NOT DEAD",')
    commit(repo)
    assert reasons(repo) == {"COMMENTS": [f"its definition in {DATASETS_PY} changed: sql"]}


def test_changing_a_check_marks_only_its_dataset(repo: Path) -> None:
    edit(repo, DATASETS_PY, '_only_type("story", "only_stories")', '_only_type("story", "stories_only")')
    commit(repo)
    assert list(reasons(repo)) == ["STORIES"]


def test_a_helper_both_sql_datasets_use_marks_both_not_items(repo: Path) -> None:
    edit(repo, DATASETS_PY, "WHERE TYPE = '{item_type}'\"", "WHERE TYPE = '{item_type}' AND ID > 0\"")
    commit(repo)
    found = reasons(repo)
    assert list(found) == [dataset.name for dataset in built_in_sql()]  # every dataset of one TYPE
    assert found["COMMENTS"] == [f"code it uses in {DATASETS_PY} changed: _items_of_type"]


def test_the_items_builder_marks_items_and_its_downstream(repo: Path) -> None:
    edit(repo, "lib/hnpipe/items.py", "CHUNK_ROWS = 10_000", "CHUNK_ROWS = 5_000")
    commit(repo)
    assert reasons(repo) == {
        "ITEMS": ["code it uses changed: lib/hnpipe/items.py"],
        "COMMENTS": ["upstream ITEMS changed"],
        "STORIES": ["upstream ITEMS changed"],
    }


def test_shared_parts_of_datasets_py_mark_every_dataset(repo: Path) -> None:
    edit(repo, DATASETS_PY, "    found.discard(name)\n", "    found.discard(name)\n    found.discard(None)\n")
    commit(repo)
    found = reasons(repo)
    assert list(found) == ALL
    assert all(f"shared code in {DATASETS_PY} changed: downstream" in found[name] for name in ALL)


# -- library files -----------------------------------------------------------------------
def test_a_core_module_marks_every_dataset(repo: Path) -> None:
    edit(repo, "lib/hnpipe/warehouse/base.py", 'STAGING_MARKER = "__STAGING_"', 'STAGING_MARKER = "__STAGE_"')
    commit(repo)
    found = reasons(repo)
    assert list(found) == ALL
    assert found["ITEMS"] == ["shared code changed: lib/hnpipe/warehouse/base.py"]
    assert found["STORIES"] == ["shared code changed: lib/hnpipe/warehouse/base.py", "upstream ITEMS changed"]


def test_the_hn_client_marks_items_then_downstream(repo: Path) -> None:
    (repo / "lib/hnpipe/hn.py").write_text((repo / "lib/hnpipe/hn.py").read_text() + "\nRETRIES = 9\n")
    commit(repo)
    assert reasons(repo) == {
        "ITEMS": ["code it uses changed: lib/hnpipe/hn.py"],
        "COMMENTS": ["upstream ITEMS changed"],
        "STORIES": ["upstream ITEMS changed"],
    }


def _package_modules() -> dict[str, str]:
    """Every module of the installed package: dotted name -> path relative to the project."""
    import hnpipe

    root = Path(hnpipe.__file__).parent
    return {".".join(("hnpipe", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"):
            str(path.relative_to(ROOT)) for path in root.rglob("*.py")}


def test_every_library_module_falls_in_exactly_one_class() -> None:
    from hnpipe.ops.changes import CODE_CLASSES, SHARED, code_class

    classes = {}
    for module, path in _package_modules().items():
        matching = [name for name, entries in CODE_CLASSES.items()
                    if any(path == e or (e.endswith("/") and path.startswith(e)) for e in entries)]
        assert len(matching) <= 1, f"{path} is in {matching}"
        classes[module] = code_class(path)
        assert classes[module] == (matching[0] if matching else SHARED)
    # Each class is a real part of the package, not a list gone stale.
    assert {"ITEMS", "tooling", "shared"} <= set(classes.values())
    for entries in CODE_CLASSES.values():
        for entry in entries:
            assert (ROOT / entry).exists(), f"{entry} is classified but does not exist"


def test_no_module_that_builds_data_imports_tooling() -> None:
    """What makes "tooling marks nothing" true: editing ops/ or cli.py cannot change how a
    notebook builds a dataset, because nothing a notebook runs imports them."""
    from hnpipe.ops.changes import TOOLING, code_class
    from import_graph import import_graph

    modules = _package_modules()
    graph = import_graph()
    for module, imported in graph.items():
        if code_class(modules[module]) == TOOLING:
            continue
        tooling = sorted(name for name in imported if code_class(modules[name]) == TOOLING)
        assert not tooling, f"{module} builds data but imports tooling {tooling}"


def test_items_only_code_is_imported_only_where_items_is_built() -> None:
    from hnpipe.ops.changes import code_class

    modules = _package_modules()
    graph = import_graph_or_skip()
    builders_of_items = {"hnpipe.pipeline", "hnpipe.refresh"}  # fetch_items and the incremental plan
    for module, imported in graph.items():
        cls = code_class(modules[module])
        if cls in ("ITEMS", "tooling") or module in builders_of_items:
            continue
        items_only = sorted(name for name in imported if code_class(modules[name]) == "ITEMS")
        assert not items_only, f"{module} is shared code but imports ITEMS-only {items_only}"


def import_graph_or_skip():
    from import_graph import import_graph

    return import_graph()


# -- notebooks and parameters ------------------------------------------------------------
def test_a_code_cell_marks_only_that_notebooks_dataset(repo: Path) -> None:
    edit_notebook(repo, "comments.ipynb",
                  lambda nb: setattr(code_cell(nb, "step.build()"), "source", "step.build()\nprint('done')"))
    commit(repo)
    assert reasons(repo) == {"COMMENTS": ["notebooks/comments.ipynb: code changed"]}


def test_a_parameters_cell_default_names_the_parameter(repo: Path) -> None:
    def more_versions(notebook) -> None:  # stories.ipynb declares only what it uses
        cell = code_cell(notebook, "keep_versions = 5")
        cell.source = cell.source.replace("keep_versions = 5", "keep_versions = 6")

    edit_notebook(repo, "stories.ipynb", more_versions)
    commit(repo)
    assert reasons(repo) == {"STORIES": ["notebooks/stories.ipynb: parameters cell changed: keep_versions changed"]}


def test_a_params_file_key_marks_every_dataset_and_comments_do_not(repo: Path) -> None:
    edit(repo, "params/production.yaml", "n_items: 50000", "n_items: 60000")
    edit(repo, "params/staging.yaml", "environment: staging", "# reviewed\nenvironment: staging")
    commit(repo)
    found = reasons(repo)
    assert list(found) == ALL
    assert found["ITEMS"] == ["params/production.yaml: n_items changed"]
    assert not any("staging" in reason for reason in sum(found.values(), []))


# -- new and removed datasets, the graph -------------------------------------------------
NEW_DATASET = '''        Dataset(
            name="JOBS",
            description="STORIES about jobs.",
            upstream=("STORIES",),
            notebook="jobs.ipynb",
            sql="SELECT * FROM STORIES WHERE TITLE LIKE '%hiring%'",
            gates=(),
        ),
    )
}
'''


def add_jobs(repo: Path) -> None:
    edit(repo, DATASETS_PY, "    )\n}\n", NEW_DATASET)
    shutil.copy(repo / "notebooks/stories.ipynb", repo / "notebooks/jobs.ipynb")


def test_a_new_dataset_is_marked_alone(repo: Path) -> None:
    add_jobs(repo)
    commit(repo)
    changes = find_changes("HEAD~1", root=repo)
    assert changes.reasons == {"JOBS": ["new dataset (not defined at HEAD~1)"]}


def test_a_change_travels_down_the_graph_in_dependency_order(repo: Path) -> None:
    add_jobs(repo)
    commit(repo, "add JOBS")
    edit(repo, DATASETS_PY, 'sql=_items_of_type("story"),', 'sql=_items_of_type("story") + " AND SCORE > 0",')
    commit(repo)
    found = reasons(repo)
    assert list(found) == ["STORIES", "JOBS"]
    assert found["JOBS"] == ["upstream STORIES changed"]


def test_a_removed_dataset_is_listed_apart(repo: Path) -> None:
    add_jobs(repo)
    commit(repo, "add JOBS")
    edit(repo, DATASETS_PY, NEW_DATASET, "    )\n}\n")
    commit(repo)
    changes = find_changes("HEAD~1", root=repo)
    assert changes.reasons == {} and changes.removed == ["JOBS"]


# -- the working tree --------------------------------------------------------------------
def test_uncommitted_and_untracked_changes_count(repo: Path) -> None:
    edit(repo, DATASETS_PY, 'sql=_items_of_type("comment"),', 'sql=_items_of_type("comment") + " AND 1 = 1",')
    assert list(reasons(repo, "HEAD")) == ["COMMENTS"]
    (repo / "lib/hnpipe/quality.py").write_text("THRESHOLD = 1\n")  # untracked, not ignored
    (repo / "lib/hnpipe/__pycache__").mkdir(exist_ok=True)
    (repo / ".gitignore").write_text("__pycache__/\n")
    (repo / "lib/hnpipe/__pycache__/x.pyc").write_bytes(b"\0")
    found = reasons(repo, "HEAD")
    assert list(found) == ALL
    assert found["ITEMS"] == ["shared code changed: lib/hnpipe/quality.py"]


# -- errors and the command --------------------------------------------------------------
def test_a_bad_ref_is_one_line_naming_it(repo: Path) -> None:
    with pytest.raises(ChangesError, match="unknown git ref 'no-such-branch'") as raised:
        find_changes("no-such-branch", root=repo)
    assert "\n" not in str(raised.value)
    with pytest.raises(ChangesError, match="bad git ref '--output=x'"):
        find_changes("--output=x", root=repo)


def test_outside_a_git_checkout_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "lib/hnpipe").mkdir(parents=True)
    with pytest.raises(ChangesError, match="git rev-parse failed") as raised:
        find_changes("HEAD", root=tmp_path)
    assert "\n" not in str(raised.value)


def test_cli_json_and_text(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HNPIPE_ROOT", str(repo))
    edit(repo, DATASETS_PY, 'sql=_items_of_type("comment"),', 'sql=_items_of_type("comment") + " AND 2 = 2",')
    commit(repo)
    assert cli.main(["changes", "--base", "HEAD~1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["base"] == "HEAD~1" and payload["datasets"] == ["COMMENTS"]
    assert payload["reasons"] == {"COMMENTS": [f"its definition in {DATASETS_PY} changed: sql"]}
    assert payload["base_commit"] == git(repo, "rev-parse", "HEAD~1").strip()
    assert cli.main(["changes", "--base", "HEAD~1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "COMMENTS", f"  - its definition in {DATASETS_PY} changed: sql"]
    assert cli.main(["changes", "--base", "v9.9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "'v9.9'" in captured.err
