"""Where things are: the project root, .env, params/, notebooks/, runs/ and .warehouse/.

Loading `.env` never overrides variables already set in the process, so CI secrets and a
developer's shell always win over the file. `.env` holds secrets and conveniences, never the
variables that choose where a run writes (PROCESS_ONLY): a `.env` that sets one is refused,
before anything of it is loaded.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from dotenv import dotenv_values, load_dotenv

from hnpipe.errors import GuardError

# Where a run writes is decided by the process (the CI job, the scheduler, a shell), never by a
# file lying in the checkout: HNPIPE_ENV and the pull-request id, with the CI variables it is
# read from.
PROCESS_ONLY = ("HNPIPE_ENV", "HNPIPE_PR_ID", "CI_MERGE_REQUEST_IID", "GITHUB_REF")
_MARKERS = ("pyproject.toml", "params")


def project_root(start: Path | None = None) -> Path:
    """The directory holding pyproject.toml and params/ (HNPIPE_ROOT overrides the search)."""
    if os.environ.get("HNPIPE_ROOT"):
        return Path(os.environ["HNPIPE_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if all((candidate / marker).exists() for marker in _MARKERS):
            return candidate
    # Installed in editable mode from lib/: fall back to the source checkout.
    source_root = Path(__file__).resolve().parents[2]
    if all((source_root / marker).exists() for marker in _MARKERS):
        return source_root
    raise FileNotFoundError(f"no hnpipe project (pyproject.toml + params/) above {here}")


def load_env(root: Path | None = None) -> None:
    """Load `<root>/.env` into os.environ without overriding what is already set; refuse a
    `.env` that sets a PROCESS_ONLY variable (nothing of it is loaded then)."""
    env_file = (root or project_root()) / ".env"
    if env_file.is_file():
        try:
            found = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as error:
            raise GuardError(f"cannot read {env_file}: {type(error).__name__}; fix or remove it") from None
        chosen = [name for name in PROCESS_ONLY if name in found]
        if chosen:
            raise GuardError(
                f"refused {env_file}: it sets {', '.join(chosen)}, which chooses where a run writes and "
                "comes from the process only; remove it from .env and set it in the shell or CI job"
            )
        load_dotenv(env_file, override=False)


def load_project_env() -> None:
    """load_env for the project this process runs in; nothing to load outside a checkout."""
    try:
        root = project_root()
    except FileNotFoundError:
        return  # installed outside a checkout: no .env
    load_env(root)


def params_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "params"


def notebooks_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "notebooks"


def runs_dir(root: Path | None = None) -> Path:
    """Executed notebooks go here: runs/<env>/<run id>/ (HNPIPE_RUNS_DIR overrides)."""
    if os.environ.get("HNPIPE_RUNS_DIR"):
        return Path(os.environ["HNPIPE_RUNS_DIR"])
    return (root or project_root()) / "runs"


def default_warehouse_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / ".warehouse"


_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}_[0-9a-f]{6}", re.ASCII)


def new_run_id() -> str:
    """A sortable, identifier-safe run id such as 20261121T140102_3fa9c1 (UTC)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}_{secrets.token_hex(3)}"


def current_run_id() -> str:
    """The run id `hnpipe run` handed down (HNPIPE_RUN_ID), else a new one for this process."""
    global _PROCESS_RUN_ID
    given = os.environ.get("HNPIPE_RUN_ID")
    if given:
        if not _RUN_ID.fullmatch(given):
            raise ValueError(f"HNPIPE_RUN_ID={given!r} is not a run id like 20261121T140102_3fa9c1")
        return given
    if _PROCESS_RUN_ID is None:
        _PROCESS_RUN_ID = new_run_id()
    return _PROCESS_RUN_ID


_PROCESS_RUN_ID: str | None = None


def run_id_is_given() -> bool:
    """Whether `hnpipe run` (or the caller) fixed the run id for this process."""
    return bool(os.environ.get("HNPIPE_RUN_ID"))


def start_run() -> str:
    """A new run in this process: HNPIPE_RUN_ID when given, else a fresh id, which becomes
    `current_run_id()` from now on. Every `pipeline.start` in a notebook kernel is a run."""
    global _PROCESS_RUN_ID
    if run_id_is_given():
        return current_run_id()
    _PROCESS_RUN_ID = new_run_id()
    return _PROCESS_RUN_ID


def git_sha(root: Path | None = None) -> str:
    """The checked-out commit, or 'unknown' outside a git checkout."""
    import subprocess

    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or project_root(), capture_output=True,
            text=True, timeout=5, check=True,
        )
        return result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
