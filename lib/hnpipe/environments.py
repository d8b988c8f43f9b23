"""Environments and the guards that keep each one writing only where it may.

Two inputs decide where a run writes, and both must agree:

* the process environment, `HNPIPE_ENV` (default `local`): where the code is running;
* the run's parameters, `environment` (from params/<env>.yaml): what the run wants.

A laptop therefore cannot write production by passing `-f params/production.yaml`: its
process says `local`. The environment is chosen once, here, at the edge; everything else
receives a `Target` and re-checks it against the connection right before each write.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from typing import Mapping

from hnpipe import config
from hnpipe.errors import GuardError

ENVIRONMENTS = ("local", "staging", "production", "branch")
DEFAULT_ENV = "local"
PUBLISHED_SCHEMA = "HACKER_NEWS"
CLONE_PREFIX = "PRODUCTION_CLONE_"

# Upper-case ASCII identifiers only: nothing that needs quoting can reach SQL.
_IDENTIFIER = re.compile(r"[A-Z][A-Z0-9_]{0,127}", re.ASCII)
_PR_ID = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)
CLONE_NAME = re.compile(r"PRODUCTION_CLONE_[1-9][0-9]{0,9}", re.ASCII)


def check_identifier(value: object, what: str = "identifier") -> str:
    """Return `value` if it is a safe upper-case identifier, else refuse it in one line."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise GuardError(
            f"refused {what} {value!r}: identifiers must match [A-Z][A-Z0-9_]* "
            "(upper-case ASCII letters, digits, underscore; at most 128 characters)"
        )
    return value


def quote_identifier(value: object, what: str = "identifier") -> str:
    """A checked identifier, double-quoted: how every name is written into SQL on both engines
    (an upper-case quoted name is the same object as the unquoted one in Snowflake and DuckDB)."""
    return f'"{check_identifier(value, what)}"'


def is_identifier(value: object) -> bool:
    """Whether `value` would pass check_identifier (for filtering names read from a catalog)."""
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def unknown_environment(value: object, source: str = "environment") -> GuardError:
    return GuardError(f"unknown {source} {value!r}: choose one of {', '.join(ENVIRONMENTS)}")


def check_environment_name(value: object, source: str = "environment") -> str:
    if value not in ENVIRONMENTS:
        raise unknown_environment(value, source)
    return value  # type: ignore[return-value]


def check_pr_id(value: object, source: str = "HNPIPE_PR_ID") -> str:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _PR_ID.fullmatch(text):
        raise GuardError(
            f"refused pull-request id {value!r} from {source}: it must be 1 to 10 digits, "
            "without leading zeros (e.g. HNPIPE_PR_ID=123)"
        )
    return text


@dataclass(frozen=True)
class Target:
    """A database.schema an environment writes to."""

    database: str
    schema: str

    def __post_init__(self) -> None:
        check_identifier(self.database, "database")
        check_identifier(self.schema, "schema")

    def __str__(self) -> str:
        return f"{self.database}.{self.schema}"


def process_environment(environ: Mapping[str, str] | None = None) -> str:
    """Where the code runs: HNPIPE_ENV, default local. The one place every command and notebook
    learns it: `.env` is loaded first (and refused if it tries to set HNPIPE_ENV or the PR id),
    so what it does provide (HNPIPE_WAREHOUSE, HNPIPE_DEV_SCHEMA, credentials) is seen the same
    way by `hnpipe run`, `history`, `versions`, `docs` and the rest."""
    if environ is None:
        config.load_project_env()
        environ = os.environ
    return check_environment_name(environ.get("HNPIPE_ENV") or DEFAULT_ENV, "HNPIPE_ENV")


def pr_id(environ: Mapping[str, str] | None = None) -> str | None:
    """The pull request a branch run belongs to: HNPIPE_PR_ID, else the CI's own variables."""
    environ = os.environ if environ is None else environ
    if environ.get("HNPIPE_PR_ID"):
        return check_pr_id(environ["HNPIPE_PR_ID"])
    if environ.get("CI_MERGE_REQUEST_IID"):  # GitLab merge request pipelines
        return check_pr_id(environ["CI_MERGE_REQUEST_IID"], "CI_MERGE_REQUEST_IID")
    github_ref = environ.get("GITHUB_REF", "")
    match = re.fullmatch(r"refs/pull/([^/]+)/(merge|head)", github_ref)
    if match:  # GitHub pull_request events
        return check_pr_id(match.group(1), "GITHUB_REF")
    return None


def developer_schema(environ: Mapping[str, str] | None = None) -> str:
    """A developer's own schema in LOCAL: HNPIPE_DEV_SCHEMA, else the OS user in upper case."""
    environ = os.environ if environ is None else environ
    if environ.get("HNPIPE_DEV_SCHEMA"):
        return check_identifier(environ["HNPIPE_DEV_SCHEMA"], "HNPIPE_DEV_SCHEMA")
    user = environ.get("USER") or environ.get("USERNAME") or getpass.getuser()
    # OS user names may hold dots or dashes; fold them to underscores, then check.
    schema = re.sub(r"[^A-Z0-9_]", "_", user.upper())
    if not schema[:1].isalpha():
        schema = "DEV_" + schema
    return check_identifier(schema, "developer schema (from the OS user; set HNPIPE_DEV_SCHEMA)")


def clone_database(pr: str) -> str:
    return CLONE_PREFIX + check_pr_id(pr)


def target_for(env: str, environ: Mapping[str, str] | None = None) -> Target:
    """The one database.schema environment `env` may write to."""
    environ = os.environ if environ is None else environ
    check_environment_name(env)
    if env == "local":
        return Target("LOCAL", developer_schema(environ))
    if env == "staging":
        return Target("STAGING", PUBLISHED_SCHEMA)
    if env == "production":
        return Target("PRODUCTION", PUBLISHED_SCHEMA)
    pr = pr_id(environ)
    if pr is None:
        raise GuardError(
            "refused branch run: no pull-request id; set HNPIPE_PR_ID=<digits> "
            "(CI sets it from its pull-request variables)"
        )
    return Target(clone_database(pr), PUBLISHED_SCHEMA)


def resolve(requested_env: object, environ: Mapping[str, str] | None = None,
            source: str = "environment parameter") -> Target:
    """Check the run's parameters (or `--env`: `source`) against the process, before anything
    is fetched or written.

    Returns the target the run may write to; refuses any disagreement in one line.
    """
    environ = os.environ if environ is None else environ
    requested = check_environment_name(requested_env, source)
    running = process_environment(environ)
    if requested != running:
        # In JupyterLab (its kernels get JPY_SESSION_NAME; `hnpipe run` and papermill's do not)
        # the parameters are the notebook's cell, not a params file.
        interactive = environ.get("JPY_SESSION_NAME") and not environ.get("HNPIPE_NOTEBOOK_OUTPUT")
        if source == "--env":  # `hnpipe run --env X`: the command line asked, not a params file
            asked, fix = f"--env {requested} asks for environment '{requested}'", f"use --env {running} here"
        else:
            asked = f"the parameters ask for environment '{requested}'"
            fix = (f'set environment = "{running}" in the parameters cell and run it again' if interactive
                   else f"use params/{running}.yaml here")
        raise GuardError(
            f"refused: {asked} but this process runs as HNPIPE_ENV={running}; {fix}, or run where "
            f"HNPIPE_ENV={requested} is set"
        )
    return target_for(running, environ)


def owner_of(database: str) -> str | None:
    """The environment whose database this is (None: nobody's)."""
    if CLONE_NAME.fullmatch(database):
        return "branch"
    return {"PRODUCTION": "production", "STAGING": "staging", "LOCAL": "local"}.get(database)


def foreign_write(env: str, allowed: Target, actual: Target) -> GuardError:
    return GuardError(f"refused write to {actual}: environment '{env}' may write only to {allowed}")


def check_write(env: str, actual: Target, environ: Mapping[str, str] | None = None) -> None:
    """Right before a write: the connection's actual database.schema must be env's own target,
    in a database env owns. (A run checks the target it resolved once: RunContext.check_write.)"""
    allowed = target_for(env, os.environ if environ is None else environ)
    if actual != allowed or owner_of(actual.database) != env:
        raise foreign_write(env, allowed, actual)
