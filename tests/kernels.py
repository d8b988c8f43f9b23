"""A real notebook kernel for tests: started with jupyter_client as JupyterLab starts one,
fed cells one at a time (the analyst's order, not the notebook's), its messages collected.

    with Kernel(env) as kernel:
        kernel.run(cell_source(ITEMS, "parameters"))
        cell = kernel.run("items = step.fetch()")
        cell.error, cell.stdout, cell.displays
"""

from __future__ import annotations

import json
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def notebook_cells(name: str) -> list[dict]:
    return [cell for cell in json.loads((NOTEBOOKS / name).read_text())["cells"] if cell["cell_type"] == "code"]


def cell_source(name: str, marker: str) -> str:
    """The source of the code cell tagged `marker`, or else the first one containing it."""
    cells = notebook_cells(name)
    for cell in cells:
        if marker in cell.get("metadata", {}).get("tags", []):
            return "".join(cell["source"])
    for cell in cells:
        if marker in "".join(cell["source"]):
            return "".join(cell["source"])
    raise LookupError(f"no cell with {marker!r} in {name}")


def kernel_env(warehouse: Path, runs: Path, **extra: str) -> dict[str, str]:
    """The environment JupyterLab would give a kernel: no CI, no HNPIPE_PROGRESS=0 (so the
    notebook progress bar draws), a private warehouse and runs directory."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "HNPIPE_PROGRESS", "HNPIPE_RUN_ID", "HNPIPE_ENV", "HNPIPE_NOTEBOOK_OUTPUT")}
    env.update(HNPIPE_WAREHOUSE=f"duckdb:{warehouse}", HNPIPE_RUNS_DIR=str(runs),
               HNPIPE_DEV_SCHEMA="TESTER", **extra)
    return env


@dataclass
class Cell:
    """What one executed cell sent back."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    error: dict | None = None  # ename, evalue, traceback (list of lines)
    results: list[dict] = field(default_factory=list)  # execute_result data bundles
    displays: dict[str, list[dict]] = field(default_factory=dict)  # display id -> every state shown

    @property
    def traceback(self) -> str:
        return "\n".join(self.error["traceback"]) if self.error else ""

    def last_display(self) -> dict:
        """The final state of the (only) display this cell drew, e.g. the progress bar."""
        assert len(self.displays) == 1, f"expected one display, got {list(self.displays)}"
        return next(iter(self.displays.values()))[-1]


class Kernel:
    def __init__(self, env: dict[str, str], cwd: Path = NOTEBOOKS) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env, cwd=str(cwd),
                                  extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def run(self, code: str, timeout: float = 180,
            interrupt_when: Callable[[Cell], bool] | None = None) -> Cell:
        """Execute `code` as one cell; interrupt the kernel (the stop button) once
        `interrupt_when(cell so far)` is true."""
        msg_id = self.client.execute(code, store_history=True)
        cell, interrupted = Cell(), False
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "stream":
                setattr(cell, content["name"], getattr(cell, content["name"]) + content["text"])
            elif kind == "error":
                cell.error = content
            elif kind == "execute_result":
                cell.results.append(content["data"])
            elif kind in ("display_data", "update_display_data"):
                key = content.get("transient", {}).get("display_id") or f"anonymous-{len(cell.displays)}"
                cell.displays.setdefault(key, []).append(content["data"])
            if interrupt_when and not interrupted and interrupt_when(cell):
                self.manager.interrupt_kernel()
                interrupted = True
        while True:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                cell.status = reply["content"]["status"]
                return cell

    def value(self, expression: str) -> object:
        """A JSON-able value computed in the kernel."""
        cell = self.run(f"import json as _json; print(_json.dumps({expression}, default=str))")
        assert cell.status == "ok", cell.traceback
        return json.loads(cell.stdout.strip().splitlines()[-1])


def kernel_processes(parent: int | None = None) -> list[int]:
    """The notebook kernels `parent` (default: this process) started: its ipykernel children,
    and the children of its kernel zygote (hnpipe.kernel_zygote), which forks them. Linux only
    (/proc). A forked kernel's /proc environ is the zygote's: find kernels by ancestry."""
    found = []
    for pid in _children(os.getpid() if parent is None else parent):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if b"ipykernel" in command:
            found.append(pid)
        elif b"kernel_zygote" in command:
            found += _children(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has yet to collect it


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found
