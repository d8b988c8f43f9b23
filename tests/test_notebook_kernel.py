"""items.ipynb as an analyst runs it in JupyterLab: a real kernel (jupyter_client), cells run
one at a time, parameters edited between them, a fetch interrupted, cells out of order.

What the notebook holds when a cell runs is what runs; only the frame the latest complete
fetch returned is published; each start is its own run; hnpipe errors are two lines; the
progress bar has a total and ends green or red, as text that survives a saved notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hnpipe.sample import SampleServer
from kernels import Kernel, cell_source, kernel_env

ITEMS = "items.ipynb"
PARAMETERS = cell_source(ITEMS, "parameters")
START = cell_source(ITEMS, "pipeline.start")
FETCH = cell_source(ITEMS, "step.fetch()")
PUBLISH = cell_source(ITEMS, "step.publish(items)")
HISTORY = ("[dict(run_id=r.RUN_ID, status=r.STATUS, rows=None if r.ROWS_WRITTEN is pd.NA else int(r.ROWS_WRITTEN), "
           "error=r.ERROR, detail=r.DETAIL, seconds=r.DURATION_S, n_items=_json.loads(r.PARAMETERS)['n_items']) "
           "for r in history.read(step.warehouse, step.target).itertuples()][::-1]")  # oldest first


@pytest.fixture
def kernel(tmp_path: Path):
    with Kernel(kernel_env(tmp_path / "warehouse", tmp_path / "runs")) as kernel:
        yield kernel


def ok(cell) -> None:
    assert cell.status == "ok", cell.traceback or cell.stderr


def started(kernel: Kernel, **parameters: object) -> None:
    """Run the parameters cell (with edits) and the start cell."""
    ok(kernel.run(PARAMETERS + "".join(f"\n{name} = {value!r}" for name, value in parameters.items())))
    ok(kernel.run(START))
    ok(kernel.run("import pandas as pd\nfrom hnpipe import history"))


def history_rows(kernel: Kernel) -> list[dict]:
    return kernel.value(HISTORY)


@pytest.mark.slow
def test_an_edited_parameter_is_used_by_the_next_step_and_validated_again(kernel) -> None:
    started(kernel, n_items=40)
    ok(kernel.run("n_items = 25"))
    fetch = kernel.run(FETCH)
    ok(fetch)
    assert "using the parameters as they are now: n_items=25" in fetch.stdout
    assert kernel.value("int(items.to_frame().ID.max() - items.to_frame().ID.min() + 1)") == 25

    ok(kernel.run("n_items = -5"))
    refused = kernel.run(FETCH)
    assert refused.error["ename"] == "ParameterError"
    assert "parameter n_items=-5 is not allowed" in refused.error["evalue"]

    ok(kernel.run('n_items = 25\nenvironment = "production"'))
    moved = kernel.run("step.preview()")
    assert moved.error["ename"] == "GuardError"
    assert "parameters changed since start (environment 'local' -> 'production'): rerun the start cell" in moved.error["evalue"]


@pytest.mark.slow
def test_a_typo_in_the_parameters_cell_is_refused_naming_the_parameter(kernel) -> None:
    ok(kernel.run(PARAMETERS + "\nn_item = 50"))
    refused = kernel.run(START)
    assert refused.error["ename"] == "ParameterError"
    assert refused.error["evalue"].startswith("unknown parameter 'n_item' (did you mean n_items?): allowed are")
    # Fixed and run again, the parameters cell is accepted: the old typo no longer counts.
    ok(kernel.run(PARAMETERS))
    ok(kernel.run(START))
    # A typo in a cell of its own after the parameters cell is refused at the next step.
    ok(kernel.run("refresh_windw = 10"))
    assert "unknown parameter 'refresh_windw'" in kernel.run("step.preview()").error["evalue"]


@pytest.mark.slow
def test_an_interrupted_fetch_is_never_published_and_its_bar_ends_red(kernel) -> None:
    with SampleServer(latency_ms=40) as server:
        started(kernel, n_items=20, hn_api_url=server.base_url, concurrency=4)
        ok(kernel.run(FETCH))  # 20 items: the frame the publish would have taken before
        ok(kernel.run("n_items = 400"))

        def bar_moving(cell) -> bool:
            return any(re.search(r"HN items: [1-9]\d*/400 \(\d+%\)", state.get("text/plain", ""))
                       for states in cell.displays.values() for state in states)

        interrupted = kernel.run(FETCH, interrupt_when=bar_moving)
    assert interrupted.error["ename"] == "KeyboardInterrupt"
    bar = interrupted.last_display()
    assert 'data-state="failed"' in bar["text/html"]
    assert re.fullmatch(r"HN items: interrupted at \d+/400 \(\d+%\) after [\d.]+ s", bar["text/plain"])
    midway = [state["text/plain"] for states in interrupted.displays.values() for state in states[:-1]]
    assert any(re.search(r"/400 \(\d+%\), [\d,]+ item/s, \d+:\d\d left", text) for text in midway)

    refused = kernel.run(PUBLISH)
    assert refused.error["ename"] == "HnpipeError"
    assert refused.error["evalue"] == ("refused to publish: the last fetch did not complete; rerun the fetch "
                                       "cell (`items = step.fetch()`), then this cell")
    rows = history_rows(kernel)
    assert [row["status"] for row in rows] == ["failed"]  # the interrupt; nothing published
    assert rows[0]["error"] == "KeyboardInterrupt" and rows[0]["n_items"] == 400
    assert kernel.value("step.warehouse.list_tables(step.target).get('ITEMS')") is None


@pytest.mark.slow
def test_a_frame_from_before_a_parameter_change_or_edited_by_hand_is_refused(kernel) -> None:
    started(kernel, n_items=30)
    ok(kernel.run(FETCH))
    ok(kernel.run("n_items = 20"))
    stale = kernel.run(PUBLISH)
    assert stale.error["evalue"] == ("refused to publish: parameters changed since the fetch (n_items 30 -> 20); "
                                     "rerun the fetch cell (`items = step.fetch()`), then this cell")
    ok(kernel.run("n_items = 30"))
    ok(kernel.run("items = items.to_frame(); items.loc[0, 'SCORE'] = 10_000"))
    edited = kernel.run(PUBLISH)
    assert "is not what the last fetch returned" in edited.error["evalue"]
    assert "step.publish(frame, edited=True)" in edited.error["evalue"]
    assert history_rows(kernel) == []  # refusals write nothing, not even a history row

    ok(kernel.run("step.publish(items, edited=True)"))
    [row] = history_rows(kernel)
    assert row["status"] == "succeeded" and row["n_items"] == 30
    assert row["detail"].startswith("published a frame edited by hand")


@pytest.mark.slow
def test_each_start_is_its_own_run_with_its_own_version_and_working_time(kernel) -> None:
    started(kernel, n_items=30)
    ok(kernel.run(FETCH))
    ok(kernel.run("import time; time.sleep(4)"))  # the analyst reads the frame
    ok(kernel.run(PUBLISH))
    again = kernel.run(PUBLISH)  # the same fetch published once more: a run of its own
    ok(again)
    assert "ITEMS: new run " in again.stdout
    ok(kernel.run(START))  # Run All starts here
    ok(kernel.run(FETCH))
    ok(kernel.run(PUBLISH))
    rows = history_rows(kernel)
    assert [row["status"] for row in rows] == ["succeeded"] * 3
    assert len({row["run_id"] for row in rows}) == 3
    assert rows[0]["seconds"] < 4, "the idle 4 s between fetch and publish counted as work"
    versions = kernel.value("[v.run_id for v in step.warehouse.list_versions(step.target, 'ITEMS')]")
    assert sorted(versions) == sorted(row["run_id"] for row in rows[1:])  # each replaced the last


@pytest.mark.slow
def test_hnpipe_errors_are_two_lines_with_the_traceback_one_command_away(kernel, tmp_path) -> None:
    started(kernel)
    early = kernel.run(PUBLISH)  # run before the fetch cell
    assert early.error["ename"] == "NameError"
    assert "run the fetch cell (`items = step.fetch()`) first" in early.traceback
    refused = kernel.run("step.build()")
    assert refused.error["ename"] == "HnpipeError"
    assert len(refused.error["traceback"]) == 2, refused.traceback
    assert refused.error["traceback"][0].endswith("HnpipeError\x1b[0m: ITEMS is not defined in SQL; use fetch_items()")
    assert "%tb" in refused.error["traceback"][1] and "notebooks.log" in refused.error["traceback"][1]
    assert "pipeline.py" not in refused.traceback
    full = kernel.run("%tb")
    assert "pipeline.py" in full.traceback + full.stdout  # the whole traceback, on request
    assert "in build" in (tmp_path / "runs" / "notebooks.log").read_text()
    plain = kernel.run("1 / 0")  # not hnpipe's: shown as IPython shows it
    assert plain.error["ename"] == "ZeroDivisionError" and len(plain.error["traceback"]) > 2


@pytest.mark.slow
def test_the_fetch_progress_bar_has_a_total_and_ends_as_plain_text(kernel) -> None:
    started(kernel, n_items=50)
    fetch = kernel.run(FETCH)
    ok(fetch)
    bar = fetch.last_display()
    assert re.fullmatch(r"HN items: 50/50 \(100%\) in [\d.]+ s, [\d,]+ item/s", bar["text/plain"])
    assert 'data-state="done"' in bar["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in bar  # nothing a saved notebook loses


@pytest.mark.slow
def test_a_file_held_by_another_notebook_is_announced_once_and_fails_once(tmp_path) -> None:
    env = kernel_env(tmp_path / "warehouse", tmp_path / "runs", HNPIPE_LOCK_TIMEOUT_S="2")
    with Kernel(env) as analyst, Kernel(env) as other:
        started(analyst, n_items=30)
        ok(analyst.run(FETCH))
        ok(analyst.run(PUBLISH))  # the file exists; now another notebook holds it open
        ok(other.run(f"import duckdb; held = duckdb.connect({str(tmp_path / 'warehouse' / 'LOCAL.duckdb')!r})"))
        holder = other.value("__import__('os').getpid()")
        ok(analyst.run(FETCH))
        failed = analyst.run(PUBLISH)
    path = tmp_path / "warehouse" / "LOCAL.duckdb"
    announced = [line for line in failed.stderr.splitlines() if line.startswith("waiting for")]
    assert announced == [f"waiting for {path}: a notebook kernel (PID {holder}) holds it; this run waits up to "
                         "2 s in all (HNPIPE_LOCK_TIMEOUT_S)"]
    assert failed.error["ename"] == "WarehouseLockedError" and len(failed.error["traceback"]) == 2
    assert failed.error["evalue"] == (f"{path} is locked by a notebook kernel (PID {holder}); waited 2 s: close it "
                                      "there (a notebook: Kernel > Shut Down Kernel) and retry, or raise "
                                      "HNPIPE_LOCK_TIMEOUT_S")
    # Recording the failure did not wait a second time: it failed at once, saying so.
    assert "this run already waited 2 s" in failed.stderr
    assert "could not be recorded" in failed.stdout


@pytest.mark.slow
def test_explore_on_an_empty_warehouse_says_what_to_run_and_can_never_write(kernel, clean_env) -> None:
    ok(kernel.run(cell_source("explore.ipynb", "parameters")))
    empty = kernel.run(cell_source("explore.ipynb", "pipeline.explore"))
    assert empty.error["ename"] == "HnpipeError" and len(empty.error["traceback"]) == 2
    assert empty.error["evalue"] == ("no ITEMS in LOCAL.TESTER yet: run notebooks/items.ipynb first, or "
                                     "`hnpipe run --env local`")
    from hnpipe import pipeline
    from hnpipe.errors import GuardError

    published = pipeline.explore({"environment": "local"})  # what the cell opened: a reader
    with pytest.raises(GuardError, match="explore.ipynb only reads"):
        published.warehouse.ensure_schema(published.target)


@pytest.mark.parametrize("notebook,uses", [
    ("items.ipynb", None),  # every fetch and publish parameter
    ("comments.ipynb", {"environment", "snowflake_env", "keep_versions"}),
    ("stories.ipynb", {"environment", "snowflake_env", "keep_versions"}),
    ("explore.ipynb", {"environment", "snowflake_env"}),
])
def test_each_parameters_cell_holds_what_its_notebook_uses(notebook, uses) -> None:
    import papermill

    declared = set(papermill.inspect_notebook(str(Path(__file__).parents[1] / "notebooks" / notebook)))
    if uses is None:
        assert {"n_items", "hn_api_url", "concurrency", "refresh", "refresh_window", "keep_versions"} <= declared
    else:
        assert declared == uses
