"""The analyst's JupyterLab, in a real browser: Run All on items.ipynb and explore.ipynb, then
the habits of interactive work (edit a parameter and rerun, interrupt then publish, a typo in
the parameters cell). Kernel-level detail is in test_notebook_kernel.py; this checks what
the person sees. Skipped, saying why, without Chromium or Playwright.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import browser
from browser import ROOT, Notebook, jupyter_lab, notebook_dir
from hnpipe.sample import SampleServer
from kernels import notebook_cells

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))]

ITEMS_CELLS = ["".join(cell["source"]) for cell in notebook_cells("items.ipynb")]
PARAMETERS, START, FETCH, PUBLISH = (
    next(i for i, source in enumerate(ITEMS_CELLS) if marker in source)
    for marker in ('environment = "local"', "pipeline.start", "step.fetch()", "step.publish(items)"))
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over a copy of the notebooks, a private warehouse, and one browser page."""
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "HNPIPE_PROGRESS", "HNPIPE_RUN_ID", "HNPIPE_ENV", "HNPIPE_NOTEBOOK_OUTPUT")}
    env.update(HNPIPE_WAREHOUSE=f"duckdb:{tmp / 'warehouse'}", HNPIPE_RUNS_DIR=str(tmp / "lab" / "runs"),
               HNPIPE_DEV_SCHEMA="TESTER", HNPIPE_ROOT=str(ROOT), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), HNPIPE_LOCK_TIMEOUT_S="3")
    browser.lab_settings(tmp / "settings")
    began = time.monotonic()
    with jupyter_lab(notebook_dir(tmp), env) as (base, token), sync_playwright() as playwright:
        chromium = playwright.chromium.launch_persistent_context(  # a fresh profile directory
            str(tmp / "chromium"), executable_path=browser.CHROMIUM, headless=True,
            args=browser.CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        page = chromium.pages[0] if chromium.pages else chromium.new_page()
        page.set_default_timeout(60_000)
        yield page, base, token, began, tmp
        chromium.close()


@contextmanager
def screenshots_on_failure(page, name: str):
    try:
        yield
    except BaseException as error:
        where = Path(tempfile.mkdtemp(prefix=f"hnpipe-browser-{name}-"))
        try:
            page.screenshot(path=str(where / "page.png"), full_page=True)
            (where / "page.html").write_text(page.content())
        except Exception as shot_error:  # noqa: BLE001 - the test's own failure comes first
            (where / "screenshot-failed.txt").write_text(repr(shot_error))
        raise AssertionError(f"{error}\n(screenshots of the failing page: {where})") from error


def test_items_and_explore_run_all_cleanly_with_a_progress_bar_a_preview_and_charts(lab) -> None:
    page, base, token, began, _ = lab
    with screenshots_on_failure(page, "run-all"):
        items = Notebook(page, base, token, "items.ipynb")
        items.run_all()
        TIMINGS["jupyter lab to items.ipynb finished"] = time.monotonic() - began
        assert items.errors() == []
        bar = items.cell(FETCH).locator(".hnpipe-progress")
        assert bar.get_attribute("data-state") == "done"
        assert re.match(r"HN items: [\d,]+/1,000 \(100%\) in [\d.]+ s", bar.inner_text())
        assert items.cell(len(ITEMS_CELLS) - 1).locator("table").count() == 1  # the preview
        from hnpipe import pipeline  # explore charts STORIES too: build it as stories.ipynb would

        os.environ["HNPIPE_WAREHOUSE"], saved = f"duckdb:{lab[4] / 'warehouse'}", os.environ["HNPIPE_WAREHOUSE"]
        try:
            pipeline.start("STORIES", {"environment": "local"}).build()
        finally:
            os.environ["HNPIPE_WAREHOUSE"] = saved
        explore = Notebook(page, base, token, "explore.ipynb")
        explore.run_all()
        assert explore.errors() == []
        assert explore.panel.locator(".jp-OutputArea-output img").count() == 2
    print(f"\njupyter lab start to items.ipynb finished: {TIMINGS['jupyter lab to items.ipynb finished']:.1f} s")


def test_the_analysts_habits_edit_rerun_interrupt_publish_and_typo(lab) -> None:
    page, base, token, _, _ = lab
    with screenshots_on_failure(page, "habits"), SampleServer(latency_ms=40) as slow:
        items = Notebook(page, base, token, "items.ipynb")
        params = ITEMS_CELLS[PARAMETERS]
        items.run(PARAMETERS)
        items.run(START)
        # Edit a parameter and rerun only the fetch cell: the new value is what runs.
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 300"))
        items.run(PARAMETERS)
        items.run(FETCH)
        assert "using the parameters as they are now: n_items=300" in items.output(FETCH)
        assert "HN items: 300/300 (100%)" in items.output(FETCH)

        # Interrupt a slow fetch, then run the publish cell: refused in two lines, bar red.
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 2000")
                   .replace('hn_api_url = "sample"', f'hn_api_url = "{slow.base_url}"')
                   .replace("concurrency = 32", "concurrency = 4"))
        items.run(PARAMETERS)
        before = items.prompt(FETCH)
        items.run(FETCH, wait=False)
        items.cell(FETCH).locator(".hnpipe-progress[data-state='running']").wait_for()
        page.wait_for_function("""() => /HN items: [1-9][\\d,]*\\/2,000 \\(\\d+%\\), [\\d,]+ item\\/s, \\d+:\\d\\d left/
                                  .test(document.body.innerText)""")
        items.interrupt()
        items.wait_cell(FETCH, before)
        bar = items.cell(FETCH).locator(".hnpipe-progress")
        assert bar.get_attribute("data-state") == "failed"
        assert "interrupted at" in bar.inner_text()
        assert "KeyboardInterrupt" in items.output(FETCH)
        items.run(PUBLISH)
        refused = items.output(PUBLISH)
        assert "refused to publish: the last fetch did not complete; rerun the fetch cell" in refused
        assert "%tb" in refused and "site-packages" not in refused and len(refused.strip().splitlines()) <= 3

        # A typo in the parameters cell stops the start cell, naming it.
        items.edit(PARAMETERS, params + "\nn_item = 50")
        items.run(PARAMETERS)
        items.run(START)
        assert "unknown parameter 'n_item' (did you mean n_items?)" in items.output(START)

        # Another process holds the warehouse file: the publish cell says at once what it waits
        # for and who holds it, then fails once, in two lines (HNPIPE_LOCK_TIMEOUT_S=3 here).
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 200"))
        items.run(PARAMETERS)
        items.run(START)
        items.run(FETCH)
        database = lab[4] / "warehouse" / "LOCAL.duckdb"
        holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(database)!r}); "
                                   "print('holding', flush=True); sys.stdin.read()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "holding"
            items.run(PUBLISH)
            locked = items.output(PUBLISH)
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
        assert locked.count(f"waiting for {database}: PID {holder.pid} (") == 1
        assert f"WarehouseLockedError: {database} is locked by PID {holder.pid} (" in locked
        assert "waited 3 s" in locked and "%tb" in locked and "site-packages" not in locked


def shell(command: list[str], lab_tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HNPIPE_WAREHOUSE": f"duckdb:{lab_tmp / 'warehouse'}",
           "HNPIPE_RUNS_DIR": str(lab_tmp / "lab" / "runs"), "HNPIPE_GIT_FILTER": "0", **extra}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_what_a_team_meets_next_two_notebooks_records_previews_and_quick_words(lab) -> None:
    """Issue 20 in the browser: opening changes nothing and saving leaves git clean; a build
    while ITEMS is being replaced says so; explore names its tables' runs; an unreachable API
    is named within seconds; error paths open the file, not the debugger; refusals speak of the
    parameters cell; previews fit a laptop; a kept record refuses to be saved over or rerun."""
    page, base, token, _, tmp = lab
    project = tmp / "lab"
    page.set_viewport_size({"width": 1366, "height": 768})  # a laptop
    params = ITEMS_CELLS[PARAMETERS]
    with screenshots_on_failure(page, "issue20"), SampleServer(latency_ms=40) as slow:
        # Opening a committed notebook does not mark it modified (its metadata is the kernel's).
        comments = Notebook(page, base, token, "comments.ipynb")
        time.sleep(1.5)
        assert not comments.dirty()

        # Two notebooks at once: items.ipynb fetches a new ITEMS while comments.ipynb builds.
        items = Notebook(page, base, token, "items.ipynb")
        items.edit(PARAMETERS, params.replace("n_items = 1000", "n_items = 6000")
                   .replace('hn_api_url = "sample"', f'hn_api_url = "{slow.base_url}"')
                   .replace("concurrency = 32", "concurrency = 2"))
        items.run(PARAMETERS)
        items.run(START)
        before = items.prompt(FETCH)
        items.run(FETCH, wait=False)
        items.cell(FETCH).locator(".hnpipe-progress[data-state='running']").wait_for()
        comments = Notebook(page, base, token, "comments.ipynb")
        comments.run_all()
        built = "\n".join(comments.output(i) for i in range(comments.panel.locator(".jp-CodeCell").count()))
        assert re.search(r"from ITEMS: published by run \S+ at ", built), built
        assert re.search(r"warning: run \S+ \(started [\d:]+ UTC\) is replacing ITEMS right now; this used "
                         r"ITEMS of run \S+ \(published [\d:]+ UTC\)", built), built
        items = Notebook(page, base, token, "items.ipynb", idle=False)  # still fetching
        items.interrupt()
        items.wait_cell(FETCH, before)

        # Explore says which run published each table, and warns that they are different runs.
        explore = Notebook(page, base, token, "explore.ipynb")
        explore.run_all()
        read = explore.output(1)
        assert re.search(r"ITEMS: [\d,]+ rows, published by run \S+ at [\d-]+ [\d:]+ UTC", read), read
        assert re.search(r"STORIES: [\d,]+ rows, published by run \S+ at ", read), read
        assert "warning: these tables come from different runs: ITEMS from run" in read, read
        top = explore.cell(explore.panel.locator(".jp-CodeCell").count() - 1)
        assert "&#x27;" not in top.inner_text() and "<p>" not in top.inner_text()

        # An unreachable API is named within seconds, while the client still retries.
        items = Notebook(page, base, token, "items.ipynb")
        items.edit(PARAMETERS, params.replace('hn_api_url = "sample"', 'hn_api_url = "http://127.0.0.1:9/v0"'))
        items.run(PARAMETERS)
        before = items.prompt(FETCH)
        items.run(FETCH, wait=False)
        pressed = time.monotonic()
        page.wait_for_function("""(css) => [...document.querySelectorAll(css + ' .jp-OutputArea')]
                                  .some(e => e.innerText.includes('cannot reach the HN API'))""",
                               arg=items.css, timeout=20_000)
        waited = time.monotonic() - pressed
        TIMINGS["unreachable API named after"] = waited
        assert waited <= 4.0, waited  # 3 s, and the browser's own round trips
        assert "refused (nothing listens there)" in items.output(FETCH)
        items.interrupt()
        items.wait_cell(FETCH, before)

        # A refusal speaks of the parameters cell; the log path in an error opens the log file.
        items.edit(PARAMETERS, params.replace('environment = "local"', 'environment = "production"'))
        items.run(PARAMETERS)
        items.run(START)
        refused = items.output(START)
        assert 'set environment = "local" in the parameters cell and run it again' in refused, refused
        assert "params/" not in refused
        # JupyterLab resolves the path on the server: the link opens the file (href runs/...),
        # where a path outside the opened project would ask to start the debugger.
        link = items.cell(START).locator(".jp-OutputArea a", has_text="notebooks.log")
        assert link.first.get_attribute("href") == "runs/notebooks.log"
        link.first.click()
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="notebooks.log").first.wait_for(timeout=15_000)
        assert page.locator(".jp-Dialog", has_text="Start debugger").count() == 0

        # A readable preview that fits a laptop: entities and tags as text, lists as lists.
        items = Notebook(page, base, token, "items.ipynb")
        items.edit(PARAMETERS, params)
        for index in (PARAMETERS, START, FETCH, PUBLISH):
            items.run(index)
        last = len(ITEMS_CELLS) - 1
        items.run(last, key="Control+Enter")  # no new empty cell: the notebook's code stays as committed
        preview = items.cell(last).locator(".jp-OutputArea-output").last
        shown = preview.inner_text()
        assert "&#x27;" not in shown and "<p>" not in shown and "TIME (UTC)" in shown
        assert re.search(r"\[\d+(, \d+)*(, … \+\d+)?\]", shown), shown
        fits = preview.evaluate("e => [e.scrollWidth, e.clientWidth, e.querySelector('table').getBoundingClientRect().right]")
        shot = tmp / "items-preview.png"
        preview.screenshot(path=str(shot))
        TIMINGS["preview width (px)"] = fits[0]
        assert fits[0] <= fits[1] + 1 and fits[2] <= 1366, (fits, shot)
        print(f"\npreview screenshot: {shot} ({fits[0]} px wide in a {fits[1]} px output area)")

        # Saving after all this leaves git clean: notebooks/ is saved as git keeps it.
        for notebook in ("comments.ipynb", "explore.ipynb", "items.ipynb"):
            Notebook(page, base, token, notebook).save()
        time.sleep(2)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
        diff = subprocess.run(["git", "diff", "--no-textconv", "--no-ext-diff"], cwd=project, capture_output=True,
                              text=True).stdout
        assert status.stdout == "", (status.stdout, diff[:3000])
        assert not items.dirty()

    # A kept record: read-only, says what it is, refuses to run again or to be saved over.
    done = shell([sys.executable, "-m", "hnpipe.cli", "run", "--env", "local", "--only", "ITEMS"], tmp)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [d for d in (project / "runs" / "local").iterdir() if d.is_dir()]
    kept = run_dir / "items.ipynb"
    original = kept.read_bytes()
    with screenshots_on_failure(page, "record"):
        record = Notebook(page, base, token, f"runs/local/{run_dir.name}/items.ipynb", idle=False)
        assert f"Record of run {run_dir.name}" in record.panel.locator(".jp-MarkdownCell").first.inner_text()
        start = next(i for i in range(record.panel.locator(".jp-CodeCell").count())
                     if "pipeline.start" in record.cell(i).locator(".cm-content").inner_text())
        record.run(start)
        assert f"refused: this is the kept record of run {run_dir.name}" in record.output(start)
        record.save()
        dialog = page.locator(".jp-Dialog")
        dialog.first.wait_for(timeout=15_000)
        assert "kept record" in dialog.first.inner_text(), dialog.first.inner_text()
        page.keyboard.press("Escape")
    assert kept.read_bytes() == original
