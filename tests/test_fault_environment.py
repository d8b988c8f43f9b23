"""Every command, run with a broken environment: unwritable or misplaced directories, missing
files, bad variables. Each either succeeds (the breakage does not concern it) or fails with
exactly one `hnpipe: error:` line and exit 1: never a traceback, never the catch-all's
"unexpected" line (that one is a safety net, and a finding here).

In process (cli.main), so a failure shows where it came from. Nothing reaches Snowflake: the
connector's connect is replaced by one that fails as an unreachable account would, and the
Snowflake cases never start notebook kernels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from hnpipe import cli

ROOT = Path(__file__).resolve().parents[1]
READ_ONLY = Path("/sys/hnpipe-cannot-create-this")  # sysfs refuses new entries, even to root

COMMANDS: list[list[str]] = [
    ["run", "--env", "local", "-p", "n_items=5"],
    ["run", "--env", "local", "--dry-run"],
    ["run", "--env", "production", "--dry-run"],
    ["admin", "list"], ["admin", "clone", "--pr", "1"], ["admin", "drop", "--pr", "1"], ["admin", "prune"],
    ["changes", "--base", "HEAD"],
    ["diff", "--base", "PRODUCTION", "--head", "LOCAL"],
    ["history"], ["versions", "ITEMS"], ["restore", "ITEMS", "--run", "20261121T021500_3fa9c1"],
    ["docs"], ["sql", "STORIES"],
]


def snowflake_key(tmp: Path) -> dict[str, str]:
    key = tmp / "key.p8"
    key.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nnot a key\n-----END ENCRYPTED PRIVATE KEY-----\n")
    return {"HNPIPE_WAREHOUSE": "snowflake", "SNOWFLAKE_ACCOUNT": "xy12345", "SNOWFLAKE_USER": "JANE",
            "SNOWFLAKE_ROLE": "R", "SNOWFLAKE_WAREHOUSE": "W", "SNOWFLAKE_PRIVATE_KEY_FILE": str(key),
            "SNOWFLAKE_PRIVATE_KEY_FILE_PWD": "passphrase-canary"}


def a_file(tmp: Path) -> Path:
    path = tmp / "plain-file"
    path.write_text("not a directory\n")
    return path


# name -> variables to set (given a scratch directory)
BROKEN: dict[str, Callable[[Path], dict[str, str]]] = {
    "warehouse dir is a file": lambda tmp: {"HNPIPE_WAREHOUSE": f"duckdb:{a_file(tmp)}"},
    "warehouse dir below a file": lambda tmp: {"HNPIPE_WAREHOUSE": f"duckdb:{a_file(tmp)}/warehouse"},
    "warehouse dir cannot be created": lambda tmp: {"HNPIPE_WAREHOUSE": f"duckdb:{READ_ONLY}"},
    "runs dir below a file": lambda tmp: {"HNPIPE_RUNS_DIR": f"{a_file(tmp)}/runs"},
    "runs dir cannot be created": lambda tmp: {"HNPIPE_RUNS_DIR": str(READ_ONLY)},
    "project root missing": lambda tmp: {"HNPIPE_ROOT": str(tmp / "nowhere")},
    "project root is a file": lambda tmp: {"HNPIPE_ROOT": str(a_file(tmp))},
    "lock timeout not a number": lambda tmp: {"HNPIPE_LOCK_TIMEOUT_S": "soon"},
    "run id malformed": lambda tmp: {"HNPIPE_RUN_ID": "yesterday"},
    "environment unknown": lambda tmp: {"HNPIPE_ENV": "prod"},
    "branch without a PR id": lambda tmp: {"HNPIPE_ENV": "branch"},
    "PR id too long": lambda tmp: {"HNPIPE_ENV": "branch", "HNPIPE_PR_ID": "12345678901"},
    "developer schema invalid": lambda tmp: {"HNPIPE_DEV_SCHEMA": "jane doe"},
    "snowflake key file missing": lambda tmp: {**snowflake_key(tmp), "SNOWFLAKE_PRIVATE_KEY_FILE": str(tmp / "gone.p8")},
    "snowflake key with passphrase, account unreachable": snowflake_key,
}


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Set the broken variables over a private warehouse and runs directory; Snowflake unreachable."""
    import snowflake.connector

    def unreachable(*args, **kwargs):
        raise snowflake.connector.errors.OperationalError("250001: Could not connect to Snowflake backend")

    monkeypatch.setattr(snowflake.connector, "connect", unreachable)
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{tmp_path / 'warehouse'}")
    monkeypatch.setenv("HNPIPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # belt and braces: nothing leaves loopback
    for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "HNPIPE_ROOT", "HNPIPE_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    saved = dict(os.environ)

    def apply(variables: dict[str, str]) -> None:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)

    yield apply
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.slow  # where the environment lets it, `hnpipe run` starts its notebooks' kernels
@pytest.mark.parametrize("case", list(BROKEN))
def test_every_command_with_a_broken_environment_fails_in_one_line_or_succeeds(
        case: str, broken, tmp_path: Path, capsys) -> None:
    broken(BROKEN[case](tmp_path))
    snowflake = os.environ.get("HNPIPE_WAREHOUSE") == "snowflake"
    for argv in COMMANDS:
        if snowflake and argv[0] == "run" and "--dry-run" not in argv:
            continue  # its notebook kernels would reach for the real Snowflake
        status = cli.main(list(argv))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, (case, argv, captured.err)
        if status != 0:
            lines = captured.err.splitlines()
            assert status == 1 and len(lines) == 1 and lines[0].startswith("hnpipe: error: "), (case, argv, captured.err)
            assert "unexpected" not in lines[0], (case, argv, lines[0])
            assert "passphrase-canary" not in captured.err + captured.out
