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

from hnpipe.errors import GuardError, HnpipeError, ParameterError

# Where a run writes is decided by the process (the CI job, the scheduler, a shell), never by a
# file lying in the checkout: HNPIPE_ENV and the pull-request id, with the CI variables it is
# read from.
PROCESS_ONLY = ("HNPIPE_ENV", "HNPIPE_PR_ID", "CI_MERGE_REQUEST_IID", "GITHUB_REF")
_MARKERS = ("pyproject.toml", "params")

# Every HNPIPE_* variable hnpipe reads, with what it does: the one list (docs/environments.md's
# table is generated from it; tests/test_structure.py checks that nothing reads a variable not listed).
# Those that choose where a run writes come from the process only, never from .env.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "HNPIPE_ENV": "where this process runs: `local` (default), `staging`, `production` or `branch`; "
                  "chooses where a run may write",
    "HNPIPE_PR_ID": "a branch run's pull request (digits); else `GITHUB_REF` or `CI_MERGE_REQUEST_IID`",
    "HNPIPE_DEV_SCHEMA": "a local run's schema in LOCAL (default: the OS user, upper case)",
    "HNPIPE_WAREHOUSE": "`duckdb:<dir>` puts any environment on the embedded engine; `snowflake` "
                        "puts local on Snowflake (default: `duckdb` for local, else `snowflake`)",
    "HNPIPE_ROOT": "the project root (default: found from the working directory)",
    "HNPIPE_RUNS_DIR": "where executed notebooks and the catalog go (default: `runs/`)",
    "HNPIPE_LOCK_TIMEOUT_S": "how long to wait for a DuckDB file another process holds (default 30)",
    "HNPIPE_SNOWFLAKE_LOGIN_TIMEOUT_S": "how long a Snowflake login may take, in seconds (default 60)",
    "HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S": "Snowflake cancels a statement running longer, in seconds "
                                            "(default 3600; the session's STATEMENT_TIMEOUT_IN_SECONDS)",
    "HNPIPE_PROGRESS": "`1` shows fetch progress bars, `0` hides them (default: when interactive); "
                       "`hnpipe run` sets `stdout` for its kernels (progress on the run's own output)",
    "HNPIPE_SLACK_WEBHOOK_URL": "Slack incoming webhook for failure alerts (a secret)",
    "HNPIPE_SLACK_NOTIFY_SUCCESS": "`1` also posts successful runs to Slack",
    "HNPIPE_SLACK_TIMEOUT_S": "how long a Slack post may take (default 5)",
    "HNPIPE_GIT_FILTER": "`0` keeps `hnpipe run` from setting up the nbstripout git filter in the checkout "
                         "(the tests set it: their runs must not change the developer's git config)",
    "HNPIPE_ZYGOTE": "`0` starts each notebook kernel as its own process instead of forking it from the "
                     "pre-imported kernel zygote (default `1` on POSIX; see docs/decisions.md)",
    "HNPIPE_GITLAB_TOKEN": "GitLab CI only: a `read_api` token the nightly prune uses to list open "
                           "merge requests (a secret)",
    # Set by `hnpipe run` for the notebook kernels it starts, not by people:
    "HNPIPE_RUN_ID": "set by hnpipe run: the run id its notebooks share",
    "HNPIPE_NOTEBOOK_OUTPUT": "set by hnpipe run: where the executed notebook is kept",
}


def environment_variables_table() -> str:
    """ENVIRONMENT_VARIABLES as docs/environments.md's Markdown table."""
    rows = ["| variable | what it does |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in ENVIRONMENT_VARIABLES.items()]
    return "\n".join(rows)


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


# The run id format, defined once: <UTC start, %Y%m%dT%H%M%S>_<6 lower-case hex digits>, e.g.
# 20261121T140102_3fa9c1. Sortable by time and safe inside an identifier; table names carry it
# upper-cased (ITEMS__VERSION_20261121T140102_3FA9C1), which RUN_ID_IN_NAME reads back.
_RUN_ID_STAMP = "%Y%m%dT%H%M%S"
_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}_[0-9a-f]{6}", re.ASCII)
RUN_ID_IN_NAME = re.compile(r"([0-9]{8}T[0-9]{6})_([0-9A-Fa-f]{6})", re.ASCII)


def check_writable_directory(directory: Path) -> None:
    """`directory` exists and is writable, or could be created: nothing is created here
    (the dry run's checks of the warehouse and the outputs)."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise HnpipeError(f"cannot write {directory}: {existing} is not a writable directory")


def new_run_id() -> str:
    """A sortable, identifier-safe run id such as 20261121T140102_3fa9c1 (UTC)."""
    stamp = datetime.now(timezone.utc).strftime(_RUN_ID_STAMP)
    return f"{stamp}_{secrets.token_hex(3)}"


def fits_in_a_name(run_id: object) -> bool:
    """Whether a run id can be part of a table name (<TABLE>__VERSION_<RUN ID>): ASCII letters,
    digits and _ only. hnpipe's own ids always do; tests and restores may pass others."""
    return isinstance(run_id, str) and _NAME_SAFE_RUN_ID.fullmatch(run_id) is not None


_NAME_SAFE_RUN_ID = re.compile(r"[A-Za-z0-9_]+", re.ASCII)


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


def run_id_as_written(name_part: str) -> str:
    """A run id as it appears in a table name (upper case) back as hnpipe writes it; other
    text unchanged."""
    match = RUN_ID_IN_NAME.fullmatch(name_part)
    return f"{match.group(1)}_{match.group(2).lower()}" if match else name_part


def run_id_started(run_id: str) -> datetime | None:
    """When a run started, read from its id (either case); None for other text."""
    match = RUN_ID_IN_NAME.fullmatch(run_id)
    if not match:
        return None
    return datetime.strptime(match.group(1), _RUN_ID_STAMP).replace(tzinfo=timezone.utc)


def current_run_id() -> str:
    """The run id `hnpipe run` handed down (HNPIPE_RUN_ID), else a new one for this process."""
    global _PROCESS_RUN_ID
    given = os.environ.get("HNPIPE_RUN_ID")
    if given:
        if not is_run_id(given):
            raise ParameterError(f"HNPIPE_RUN_ID={given!r} is not a run id like 20261121T140102_3fa9c1")
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


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (someone else's counts): what a killed run
    left behind is removed only when its process is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
