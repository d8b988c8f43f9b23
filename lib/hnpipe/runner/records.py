"""Run records that stay records: what `hnpipe run` keeps of each executed notebook.

Each executed notebook under runs/<env>/<run id>/ gets, once papermill is done with it
(succeeded or failed):

* a first cell saying it is the record of run <id> and how to rerun properly (`hnpipe run`,
  or the notebook in notebooks/), and `metadata.hnpipe.record` naming the run;
* an HTML rendering beside it (nbconvert), for a browser, a CI artifact or a pull request;
* both files read-only (0444).

Read-only is not enough for root (CI) or an editor that forces a save, so JupyterLab started
with the project's jupyter_server_config.py refuses any save over a record (`refuse_save`),
and a record's cells refuse to run again (`refuse_rerun`, called by pipeline.start): a rerun
would describe a run `hnpipe history` does not know, with papermill's injected cell silently
overriding the visible parameters.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from functools import lru_cache
from pathlib import Path

from hnpipe.errors import GuardError
from hnpipe.runner.notebook_files import write_whole

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
BANNER_TAG = "hnpipe-record"


def html_path(notebook: Path | str) -> Path:
    return Path(notebook).with_suffix(".html")


def rerun_advice(record: dict) -> str:
    """How to run a recorded notebook again, from its `metadata.hnpipe.record`."""
    return (f"to run again, use `hnpipe run --env {record.get('environment', 'local')}` (a new record), or "
            f"open notebooks/{record.get('notebook', 'it')} and run it there")


def banner(record: dict) -> str:
    """The first cell of a record, from its `metadata.hnpipe.record`."""
    return (f"**Record of run `{record['run_id']}` ({record['environment']})**: the notebook exactly as "
            f"`hnpipe run` executed it, kept read-only with its HTML rendering "
            f"`{html_path(record['notebook']).name}` beside it. Saving over it is refused and its cells "
            f"refuse to run again (the injected-parameters cell below would override any edit to the "
            f"parameters cell); {rerun_advice(record)}.")


def keep(output: Path, run_id: str) -> Path | None:
    """Mark `output` as the record of run `run_id`, render it as HTML beside it, and make both
    read-only; returns the HTML path (None when there is no executed notebook to keep). The
    environment is the one the notebook ran with (papermill's record of its parameters)."""
    import nbformat

    if not output.is_file():
        return None
    notebook = nbformat.read(output, as_version=4)
    env = notebook.metadata.get("papermill", {}).get("parameters", {}).get("environment", "<environment>")
    record = {"run_id": run_id, "environment": env, "notebook": output.name}
    notebook.metadata["hnpipe"] = {"record": record}
    cell = nbformat.v4.new_markdown_cell(banner(record), metadata={"tags": [BANNER_TAG]})
    notebook.cells.insert(0, cell)
    with _rendering:
        body, _ = _exporter().from_notebook_node(notebook)
    # Each file whole or as it was: a full disk or a kill mid-write must not damage the
    # executed notebook papermill saved whole.
    write_whole(nbformat.writes(notebook), output)
    html = html_path(output)
    write_whole(body, html)
    for path in (output, html):
        os.chmod(path, READ_ONLY)
    return html


# One exporter for all records: its templates are compiled once (a new one per record cost
# ~0.1 s each); a lock, as one exporter is not meant to render two notebooks at once.
_rendering = threading.Lock()


@lru_cache(maxsize=1)
def _exporter():
    from nbconvert import HTMLExporter  # here: ~0.5 s of imports, paid only where records are kept

    return HTMLExporter()


def warm_up() -> None:
    """Import nbconvert and compile its templates (the first record's ~0.5 s) now: `hnpipe run`
    calls it while its first kernel starts, when a core is idle, not beside the notebooks."""
    import nbformat

    with _rendering:
        _exporter().from_notebook_node(nbformat.v4.new_notebook())


def record_of(notebook: Path | str) -> dict | None:
    """The `metadata.hnpipe.record` of a notebook file, or None (not a record, unreadable)."""
    try:
        with open(notebook, encoding="utf-8") as handle:
            return json.load(handle).get("metadata", {}).get("hnpipe", {}).get("record")
    except (OSError, ValueError, AttributeError):
        return None


def refusal(record: dict) -> str:
    return (f"this is the kept record of run {record.get('run_id')} and is never changed; "
            f"{rerun_advice(record)}")


def refuse_rerun(session_path: str | None) -> None:
    """Called when a notebook starts in JupyterLab (JPY_SESSION_NAME is its path): refuse when
    that notebook is a kept record."""
    if not session_path or os.environ.get("HNPIPE_NOTEBOOK_OUTPUT"):
        return  # not JupyterLab, or `hnpipe run` executing it
    path = Path(session_path)
    if not path.is_absolute():
        path = Path.cwd() / path
    record = record_of(path)
    if record is not None:
        raise GuardError(f"refused: {refusal(record)}")


def refuse_save(model, path, contents_manager, **kwargs) -> None:
    """Jupyter server pre-save hook (jupyter_server_config.py): a kept record is never saved
    over; a notebook under notebooks/ is saved as git keeps it (outputs stripped), so running
    and saving it leaves `git status` clean."""
    from tornado.web import HTTPError

    if model.get("type") != "notebook":
        return
    on_disk = Path(contents_manager.root_dir) / path.lstrip("/")
    record = record_of(on_disk)
    if record is not None:
        raise HTTPError(403, f"refused: {refusal(record)}")
    if Path(path).parent.name == "notebooks":
        from nbformat import from_dict
        from nbstripout import strip_output

        model["content"] = strip_output(from_dict(model["content"]), keep_output=False, keep_count=False,
                                        keep_id=False)
