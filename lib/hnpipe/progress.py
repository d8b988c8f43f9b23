"""Progress of a long step (the HN fetch), shown where the person waiting looks.

* In a Jupyter kernel: an HTML bar updated in place through a display handle (not an
  ipywidget): total, percentage, rate and time left; green when done, red when interrupted
  or failed. Its last state is plain HTML and text, so a saved notebook reopened later shows
  how the fetch ended, where a widget would show "Error displaying widget: model not found".
* In a terminal: tqdm on stderr with total, percentage and ETA; red when it stops early.
* In a log (`hnpipe run` in CI, or with its output redirected): a plain line every
  `LINE_EVERY_S` seconds and one at the end, never redrawn bars.
* Off: HNPIPE_PROGRESS=0, `progress=False`, CI outside `hnpipe run`, or nobody watching.

`hnpipe run` sets HNPIPE_PROGRESS=stdout for its kernels: their progress goes to the stdout
the kernel inherited from `hnpipe run` (the terminal or CI log), not into executed notebooks;
stderr stays for the run's one-line error.
"""

from __future__ import annotations

import html
import os
import sys
import time
from typing import IO, Any

NOTEBOOK, TERMINAL, LINES, OFF = "notebook", "terminal", "lines", "off"
LINE_EVERY_S = 10.0  # plain-line mode: how often a long step says where it is
_NOTEBOOK_EVERY_S = 0.2  # redraws of the notebook bar (each is a message to the browser)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _tty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def in_kernel() -> bool:
    """Whether this process is a Jupyter (IPython) kernel."""
    if "IPython" not in sys.modules:  # don't import IPython just to find out it isn't running
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


_OUTPUT: IO[str] | None = None
under_run = False  # set by `hnpipe run` in its own process: stderr is for its one-line error


def _run_output() -> IO[str]:
    """The stdout this process inherited. In a kernel, ipykernel points file descriptor 1 at a
    pipe into the notebook and keeps the original as `sys.stdout.fileno()`."""
    global _OUTPUT
    if _OUTPUT is None:
        try:
            _OUTPUT = open(sys.stdout.fileno(), "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        except (AttributeError, OSError, ValueError):
            _OUTPUT = sys.__stdout__
    return _OUTPUT


def choose(progress: bool | None = None) -> tuple[str, IO[str] | None]:
    """How to show progress, and on which stream: explicit True/False wins, then
    HNPIPE_PROGRESS (0, 1, or stdout from `hnpipe run`), then where this runs."""
    setting = os.environ.get("HNPIPE_PROGRESS", "")
    if progress is False:
        return OFF, None
    if setting == "stdout":  # a kernel of `hnpipe run`: the run's own output, not the notebook
        stream = _run_output()
        return (TERMINAL if _tty(stream) and not _ci() else LINES), stream
    if progress is None and (setting == "0" or _ci()):
        return OFF, None
    if in_kernel():
        return NOTEBOOK, None
    if progress or setting == "1" or _tty(sys.stderr):
        return TERMINAL, sys.stderr
    return OFF, None


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """One step's progress: `update()` per unit done, then `close(error)` once."""

    def __init__(self, total: int | None, desc: str, unit: str, progress: bool | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.mode, self.stream = choose(progress)
        self.n = 0
        self.started = self._drawn = time.monotonic()
        self._bar: Any = None
        self._handle: Any = None
        if self.mode == TERMINAL:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True,
                             unit_scale=False)
        elif self.mode == NOTEBOOK:
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
        elif self.mode == LINES:
            what = f"{total:,} {unit}s" if total is not None else f"{unit}s"
            self._line(f"{desc}: fetching {what}")

    # -- what it says ---------------------------------------------------------------------
    def text(self, error: str | None = None, done: bool = False) -> str:
        """The bar as one plain line, e.g. 'HN items: 412/1,000 (41%), 1,230 item/s, 0:01 left'."""
        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        count = f"{self.n:,}/{self.total:,}" if self.total is not None else f"{self.n:,}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if error:
            return f"{self.desc}: {error} at {count}{percent} after {elapsed:.1f} s"
        if done:
            return f"{self.desc}: {count}{percent} in {elapsed:.1f} s, {rate:,.0f} {self.unit}/s"
        left = ""
        if self.total and rate > 0:
            left = f", {_duration((self.total - self.n) / rate)} left"
        return f"{self.desc}: {count}{percent}, {rate:,.0f} {self.unit}/s{left}"

    def _bundle(self, error: str | None = None, done: bool = False) -> dict[str, str]:
        line = self.text(error, done)
        fraction = min(1.0, self.n / self.total) if self.total else (1.0 if done else 0.0)
        colour = "#d9534f" if error else ("#5cb85c" if done else "#337ab7")
        bar = (f'<div style="display:inline-block;width:240px;height:12px;background-color:#e6e6e6;'
               f'vertical-align:middle;margin-right:8px"><div style="width:{100 * fraction:.1f}%;'
               f'height:12px;background-color:{colour}"></div></div>')
        return {"text/plain": line,
                "text/html": f'<div class="hnpipe-progress" data-state="{"failed" if error else "done" if done else "running"}">'
                             f'{bar}<span style="font-family:monospace">{html.escape(line)}</span></div>'}

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    # -- updates ----------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += n
        if self.mode == TERMINAL:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.mode == NOTEBOOK and now - self._drawn >= _NOTEBOOK_EVERY_S:
            self._drawn = now
            self._handle.update(self._bundle(), raw=True)
        elif self.mode == LINES and now - self._drawn >= LINE_EVERY_S:
            self._drawn = now
            self._line(self.text())

    def close(self, error: str | None = None) -> str:
        """End the bar: complete, or red with `error` ('interrupted', 'failed'). Returns its
        last line."""
        line = self.text(error, done=error is None)
        if self.mode == TERMINAL:
            if error:
                self._bar.colour = "red"
                self._bar.set_postfix_str(error, refresh=False)
            self._bar.close()
        elif self.mode == NOTEBOOK:
            self._handle.update(self._bundle(error, done=error is None), raw=True)
        elif self.mode == LINES:
            self._line(line)
        return line


def say(line: str) -> None:
    """A line the person waiting must see now (a lock wait): in the cell in a notebook, on
    stderr in a terminal, and under `hnpipe run` on the run's own output."""
    if under_run or (os.environ.get("HNPIPE_NOTEBOOK_OUTPUT") and in_kernel()):  # `hnpipe run`, or its kernel
        print(line, file=_run_output(), flush=True)
    else:
        print(line, file=sys.stderr, flush=True)
