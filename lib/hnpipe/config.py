"""Where things are: the project root, .env, params/, notebooks/, runs/ and .warehouse/.

Loading `.env` never overrides variables already set in the process, so CI secrets and a
developer's shell always win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import load_dotenv

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
    """Load `<root>/.env` into os.environ without overriding what is already set."""
    env_file = (root or project_root()) / ".env"
    if env_file.is_file():
        load_dotenv(env_file, override=False)


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
