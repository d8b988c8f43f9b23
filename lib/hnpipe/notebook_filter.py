"""Only code in git: nbstripout as the checkout's git filter for notebooks.

`.gitattributes` (committed) sends every `*.ipynb` through the filter named `nbstripout`; the
filter itself lives in the checkout's `.git/config`, which a clone does not carry. `hnpipe run`
(the README's install line ends with it) therefore sets it up, idempotently, with the Python
that runs hnpipe: outputs, execution counts and run-time cell metadata never reach git, so
running and saving a notebook in JupyterLab leaves `git status` clean.

The filter is not `required`: a checkout whose recorded Python is gone (a deleted venv, CI's
throwaway one) then makes git warn and pass notebooks through unfiltered instead of failing
every `git status`; the next `hnpipe run` points it at the current Python again, and
tests/test_packaging.py refuses a committed notebook with outputs, naming the fixing command.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

FILTER = "nbstripout"
# How one notebook is fixed by hand (the guard test prints it).
FIX_COMMAND = "nbstripout {path}"


def clean_command(python: str | None = None) -> str:
    """The filter's clean command: nbstripout run by `python` (default: this one), as
    `nbstripout --install` writes it."""
    return f"{shlex.quote(python or sys.executable)} -m nbstripout"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)


def ensure_installed(root: Path) -> str | None:
    """Set the nbstripout filter in `root`'s git config when it is missing or names another
    Python; returns a line saying so, or None (already set, or not a git checkout)."""
    try:
        inside = _git(root, "rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.SubprocessError):
        return None  # no git: nothing to protect
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    wanted = {f"filter.{FILTER}.clean": clean_command(), f"filter.{FILTER}.smudge": "cat",
              f"filter.{FILTER}.required": "false", "diff.ipynb.textconv": f"{clean_command()} -t"}
    current = {key: _git(root, "config", "--local", "--get", key).stdout.strip() for key in wanted}
    if current == wanted:
        return None
    for key, value in wanted.items():
        _git(root, "config", "--local", key, value)
    return (f"git: notebook outputs are stripped on commit from now on (nbstripout filter set in "
            f"this checkout's git config, for {sys.executable})")


def changed_files(root: Path) -> list[str] | None:
    """The files `git status` lists as changed or untracked (None outside git)."""
    try:
        status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    except (OSError, subprocess.SubprocessError):
        return None
    if status.returncode != 0:
        return None
    return [line[3:].strip() for line in status.stdout.splitlines() if line.strip()]
