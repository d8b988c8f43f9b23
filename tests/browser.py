"""JupyterLab in a real browser for tests: `jupyter lab` on a free loopback port, headless
Chromium (Debian's `chromium`) driven by Playwright with `executable_path` (Playwright's own
browser download is not used). JupyterLab serves a copy of the project (notebooks/ and runs/,
a git checkout of its own with the nbstripout filter) and loads the project's
jupyter_server_config.py as the README says, so the browser's autosave can never write into
the committed notebooks.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HNPIPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).is_file():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def jupyter_lab(workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """`jupyter lab` serving `workdir`; yields its base URL with the token query."""
    port, token = free_port(), secrets.token_hex(16)
    log = (workdir.parent / "jupyter.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
         # nothing outside loopback: no news, no update checks, no extension index
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--allow-root",  # CI runs as root
         f"--config={ROOT / 'jupyter_server_config.py'}"],  # as the README starts it
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start: see {workdir.parent / 'jupyter.log'}") from None
                time.sleep(0.2)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def lab_settings(settings_dir: Path) -> None:
    """A fresh JupyterLab's settings: start the notebook's kernel without asking, and never
    fetch news or check for updates (no traffic beyond loopback)."""
    import json

    for plugin, values in {"notebook-extension/tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False,
                                                               "doNotDisturbMode": True}}.items():
        path = settings_dir / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def notebook_dir(tmp: Path) -> Path:
    """A project for JupyterLab: notebooks/ copied, runs/ beside it, committed in a git
    checkout of its own with the filter `hnpipe run` sets up."""
    from hnpipe import notebook_filter

    workdir = tmp / "lab"
    shutil.copytree(ROOT / "notebooks", workdir / "notebooks")
    shutil.copy2(ROOT / ".gitattributes", workdir / ".gitattributes")
    (workdir / ".gitignore").write_text("runs/\n.ipynb_checkpoints/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=workdir, check=True)
    notebook_filter.ensure_installed(workdir)
    subprocess.run([*git, "add", "-A"], cwd=workdir, check=True)
    subprocess.run([*git, "commit", "-qm", "the project's notebooks"], cwd=workdir, check=True)
    return workdir


class Notebook:
    """One open notebook in JupyterLab, driven as a person would: menus, cells, keys."""

    def __init__(self, page, base: str, token: str, name: str, idle: bool = True) -> None:
        path = name if "/" in name else f"notebooks/{name}"  # a kept record: runs/<env>/<id>/x.ipynb
        self.page, self.name = page, Path(name).name
        name = self.name
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)
        record = path.startswith("runs/")  # named like its notebook: always opened by its path
        if tab.count() and not record:  # open already: switch to its tab (a reload would restore the others)
            tab.first.click()
        else:
            page.goto(f"{base}/lab/tree/{path}?token={token}")
        # A record's tab is told from its notebook's by the path in the tab's title (its tooltip).
        tab = (page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab[title*="{path}"]') if record
               else page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)).first
        tab.wait_for(timeout=60_000)
        # This notebook's panel: the one its tab labels (other open notebooks stay in the DOM).
        self.tab_id = tab.get_attribute("id")
        self.css = f'.jp-NotebookPanel[aria-labelledby="{self.tab_id}"]'
        page.locator(f"{self.css} .jp-CodeCell").first.wait_for(timeout=60_000)
        deadline = time.monotonic() + 60
        while idle and not self.is_idle():  # a fresh JupyterLab may still ask which kernel
            accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel": the notebook's own
            if accept.count():
                accept.first.click()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the kernel did not become idle in 60 s")
            time.sleep(0.2)
        # Commands act on the notebook last focused: after a reload JupyterLab may restore and
        # focus another one, so focus this one (its first cell, a markdown title).
        self.panel.locator(".jp-Cell").first.click()

    @property
    def panel(self):
        return self.page.locator(self.css)

    @property
    def tab(self):
        return self.page.locator(f'[id="{self.tab_id}"]')

    def dirty(self) -> bool:
        """Whether JupyterLab marks the notebook modified (its tab's dirty dot)."""
        return "jp-mod-dirty" in (self.tab.get_attribute("class") or "")

    def save(self) -> None:
        """Ctrl+S on this notebook (its tab made current first)."""
        self.tab.click()
        self.panel.locator(".jp-Notebook").first.focus()
        self.page.keyboard.press("Control+s")

    def cell(self, index: int):
        return self.panel.locator(".jp-CodeCell").nth(index)

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputPrompt").inner_text().strip()

    def is_idle(self) -> bool:
        indicator = self.panel.locator(".jp-Notebook-ExecutionIndicator")
        return (indicator.count() > 0 and indicator.first.get_attribute("data-status") == "idle"
                and "No Kernel" not in self.panel.locator(".jp-Toolbar").first.inner_text())

    def idle(self, timeout: float = 120) -> None:
        self.page.wait_for_function(
            """(css) => { const s = document.querySelector(css + ' '
                       + '.jp-Notebook-ExecutionIndicator'); return s && s.getAttribute('data-status') === 'idle'; }""",
            arg=self.css, timeout=timeout * 1000)

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).first.click()

    def run_all(self, timeout: float = 180) -> None:
        """Run > Run All Cells. After a reload JupyterLab may apply it to another open notebook;
        then this one's cells are run top to bottom with Shift+Enter instead (same effect)."""
        self.menu("Run", "Run All Cells")
        started = """(css) => [...document.querySelectorAll(css + ' '
                     + '.jp-CodeCell .jp-InputPrompt')].some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))"""
        try:
            self.page.wait_for_function(started, arg=self.css, timeout=10_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: run cell by cell
            self.page.keyboard.press("Escape")
            for index in range(self.panel.locator(".jp-CodeCell").count()):
                self.run(index, timeout=timeout)
                if self.errors():
                    break
        # Done: every cell ran, or a cell failed (Run All stops there) and none is running.
        self.page.wait_for_function(
            """(css) => { const panel = css + ' ';
                       const p = [...document.querySelectorAll(panel + '.jp-CodeCell .jp-InputPrompt')]
                                 .map(e => e.textContent.trim());
                       const failed = document.querySelector(panel + '.jp-OutputArea-output'
                                 + '[data-mime-type="application/vnd.jupyter.stderr"]');
                       return p.length > 0 && !p.some(t => t.includes('*'))
                              && (failed || p.every(t => /^\\[\\d+\\]:$/.test(t))); }""",
            arg=self.css, timeout=timeout * 1000)
        self.idle()

    def edit(self, index: int, source: str) -> None:
        """Replace a cell's text (inserted as a paste: no auto-closed quotes or indents)."""
        self.cell(index).locator(".cm-content").click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(source)

    def run(self, index: int, wait: bool = True, timeout: float = 120, key: str = "Shift+Enter") -> None:
        """Run one cell (click into it, Shift+Enter), as out of order as the test likes.
        Shift+Enter on the last cell adds an empty one below it: Control+Enter does not."""
        before = self.prompt(index)
        self.cell(index).locator(".cm-content").click()
        self.page.keyboard.press(key)
        if wait:
            self.wait_cell(index, before, timeout)

    def wait_cell(self, index: int, before: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            now = self.prompt(index)
            if re.fullmatch(r"\[\d+\]:", now) and now != before:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} cell {index} still shows {now!r} after {timeout} s")
            time.sleep(0.1)

    def interrupt(self) -> None:
        self.menu("Kernel", "Interrupt Kernel")

    def output(self, index: int) -> str:
        return self.cell(index).locator(".jp-OutputArea").inner_text()

    def errors(self) -> list[str]:
        """Every error output in the notebook (tracebacks and short hnpipe errors)."""
        return [e.inner_text() for e in self.panel.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all()
            if e.locator("xpath=ancestor::*[contains(@class,'jp-OutputArea-child')]").count()
            and ("Error" in e.inner_text() or "Traceback" in e.inner_text())]
