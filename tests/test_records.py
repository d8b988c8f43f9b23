"""Run records that stay records (hnpipe.runner.records): what `hnpipe run` keeps is read-only,
rendered as HTML beside it, named by `hnpipe history`, refused as a save target by the
project's JupyterLab and refused as a notebook to run again."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from tornado.web import HTTPError

from hnpipe.errors import GuardError
from hnpipe.runner import records

ROOT = Path(__file__).resolve().parents[1]


def hnpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hnpipe.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ), timeout=600)


class Contents:  # the part of Jupyter's FileContentsManager the hook reads
    def __init__(self, root_dir: Path) -> None:
        self.root_dir = str(root_dir)


@pytest.mark.slow
def test_a_kept_run_is_a_read_only_record_with_its_html_named_by_history(clean_env: Path, tmp_path: Path) -> None:
    result = hnpipe("run", "--env", "local", "-p", "n_items=60", "--only", "ITEMS")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs" / "local").iterdir()
    notebook, html = run / "items.ipynb", run / "items.html"
    for path in (notebook, html):
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    kept = nbformat.read(notebook, as_version=4)
    assert kept.metadata.hnpipe.record == {"run_id": run.name, "environment": "local", "notebook": "items.ipynb"}
    assert kept.cells[0].source.startswith(f"**Record of run `{run.name}` (local)**")
    assert "hnpipe run --env local" in kept.cells[0].source
    page = html.read_text()
    assert "<html" in page and f"Record of run" in page and "published" in page  # the outputs too
    shown = hnpipe("history", "--env", "local")
    assert f"{notebook} (+ items.html)" in shown.stdout, shown.stdout

    # JupyterLab started with the project's config: saving over the record is refused, saying why.
    with pytest.raises(HTTPError) as refused:
        records.refuse_save({"type": "notebook", "content": json.loads(notebook.read_text())},
                            f"local/{run.name}/items.ipynb", Contents(tmp_path / "runs"))
    assert refused.value.status_code == 403
    assert f"the kept record of run {run.name}" in refused.value.log_message
    assert "use `hnpipe run --env local`" in refused.value.log_message
    # Running its cells again in JupyterLab (JPY_SESSION_NAME names the notebook): refused.
    with pytest.raises(GuardError, match=f"refused: this is the kept record of run {run.name}"):
        records.refuse_rerun(str(notebook))
    records.refuse_rerun(str(ROOT / "notebooks" / "items.ipynb"))  # the notebook itself runs


def test_saving_a_notebook_under_notebooks_writes_what_git_keeps(tmp_path: Path) -> None:
    committed = (ROOT / "notebooks" / "items.ipynb").read_text()
    executed = nbformat.reads(committed, as_version=4)
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.execution_count = 3
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="PID 4242 /home/me\n")]
    model = {"type": "notebook", "content": json.loads(nbformat.writes(executed))}
    records.refuse_save(model, "notebooks/items.ipynb", Contents(ROOT))
    assert nbformat.writes(nbformat.from_dict(model["content"])) + "\n" == committed
    # Elsewhere (a scratch notebook of the analyst's) outputs are kept.
    other = {"type": "notebook", "content": json.loads(nbformat.writes(executed))}
    records.refuse_save(other, "scratch/mine.ipynb", Contents(tmp_path))
    assert other["content"]["cells"][1]["outputs"]


def test_the_readme_opens_the_project_with_the_config_that_installs_the_hook() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "jupyter lab --config=jupyter_server_config.py" in readme
    assert 'pre_save_hook = "hnpipe.runner.records.refuse_save"' in (ROOT / "jupyter_server_config.py").read_text()


def executed_notebook(path: Path, environment: str) -> Path:
    """A small executed notebook as papermill leaves it: its parameters in metadata.papermill."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    notebook.metadata["papermill"] = {"parameters": {"environment": environment, "n_items": 10}}
    nbformat.write(notebook, path)
    return path


def test_a_record_names_the_environment_its_notebook_ran_with(tmp_path: Path) -> None:
    output = executed_notebook(tmp_path / "items.ipynb", "staging")
    records.keep(output, "20261207T000000_abcdef")
    kept = nbformat.read(output, as_version=4)
    assert kept.metadata.hnpipe.record == {"run_id": "20261207T000000_abcdef", "environment": "staging",
                                           "notebook": "items.ipynb"}
    assert kept.cells[0].source.startswith("**Record of run `20261207T000000_abcdef` (staging)**")
    assert "use `hnpipe run --env staging`" in kept.cells[0].source


@pytest.mark.slow  # a subprocess with a file-size limit
def test_a_record_that_cannot_be_written_leaves_the_executed_notebook_whole(tmp_path: Path) -> None:
    """The file-size limit makes the record's write fail part way (EFBIG), as a full disk would:
    the executed notebook papermill saved is still the same, whole file."""
    output = executed_notebook(tmp_path / "items.ipynb", "local")
    before = output.read_bytes()
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from hnpipe.runner import records\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 200}, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    records.keep(Path({str(output)!r}), '20261207T000000_abcdef')\n"
        "except OSError as error:\n"
        "    sys.exit(f'refused: {error.errno}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "refused: 27" in done.stderr, done.stderr  # EFBIG
    assert output.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
