"""hnpipe inside a Jupyter kernel: short errors instead of tracebacks through the library.

An hnpipe error (HnpipeError: a refusal or failure whose message says what to do) shows in
the notebook as two lines, the message and where the full traceback is; the traceback
itself is one command away (`%tb`) and written to the log file `runs/notebooks.log`. A
NameError for a name the pipeline notebooks define (`step`, `items`) says which cell to run
first. Every other error shows as IPython shows it.

Installed when hnpipe is imported in a kernel (hnpipe/__init__.py), so the start cell's own
refusals are short too. Papermill and `hnpipe run` see the same error (ename, evalue) as
before: only the traceback lines differ.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from hnpipe import config
from hnpipe.credentials import redact
from hnpipe.errors import HnpipeError, one_line
from hnpipe.progress import in_kernel

log = logging.getLogger("hnpipe.notebook")

# Names the pipeline notebooks define, and the cell that defines each.
DEFINED_BY = {
    "step": "the start cell (`step = pipeline.start(...)`)",
    "items": "the fetch cell (`items = step.fetch()`)",
    "pipeline": "the start cell (`from hnpipe import pipeline`)",
}
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"
_installed = False


def log_file() -> Path | None:
    """Where notebook errors are logged in full: runs/notebooks.log (HNPIPE_RUNS_DIR)."""
    try:
        return config.runs_dir() / "notebooks.log"
    except FileNotFoundError:  # installed outside a project: no runs/ to write to
        return None


def _log_to_file() -> None:
    path = log_file()
    if path is None or any(isinstance(h, logging.FileHandler) for h in logging.getLogger("hnpipe").handlers):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Warnings still show in the cell, as they did before this logger had a handler; the
    # full tracebacks of short errors go to the file only.
    cell = logging.StreamHandler(sys.stderr)
    cell.setLevel(logging.WARNING)
    cell.addFilter(lambda record: record.name != log.name)
    logger = logging.getLogger("hnpipe")
    logger.addHandler(handler)
    logger.addHandler(cell)


def short_error(etype: type[BaseException], value: BaseException) -> list[str] | None:
    """The lines to show for this error, or None to show the usual traceback."""
    if isinstance(value, HnpipeError):
        message = redact(one_line(value))
        where = log_file()
        also = f", and in {where}" if where else ""
        return [f"{_RED}{etype.__name__}{_RESET}: {message}",
                f"(an hnpipe error; the full traceback: run %tb in a cell{also})"]
    if isinstance(value, NameError) and getattr(value, "name", None) in DEFINED_BY:
        return [f"{_RED}NameError{_RESET}: {value}: run {DEFINED_BY[value.name]} first",
                "(the full traceback: %tb)"]
    return None


def _handler(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001 - IPython's signature
    # What %tb and post-mortem debugging read (IPython sets them only for its own display).
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    lines = short_error(etype, value)
    if lines is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None

    log.error("%s", redact("".join(traceback.format_exception(etype, value, tb)).rstrip()))
    shell._showtraceback(etype, value, lines)  # the kernel's error message: ename, evalue, lines
    return None


def install() -> bool:
    """Show hnpipe errors short in this kernel; a no-op outside one. Returns whether active."""
    global _installed

    if not in_kernel():
        return False
    if not _installed:
        from IPython import get_ipython

        shell = get_ipython()
        if shell.custom_exceptions:  # someone else's handler: leave it alone
            return False
        shell.set_custom_exc((HnpipeError, NameError), _handler)
        _log_to_file()
        _installed = True
    return True
