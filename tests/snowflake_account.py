"""The test model's account (tests/snowflake_model.py) as hnpipe's code meets it: set up by
snowflake/setup.sql, reached by every Snowflake connection hnpipe opens (logged in as the role
its credentials name), with the helpers the lifecycle, session and doctor tests share.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
import snowflake.connector
import snowflake.connector.pandas_tools

from hnpipe import params, pipeline
from registered import DATASET_TABLES, built_in_sql
from snowflake_model import SnowflakeModel, oidc_token, write_pandas_fake

ROOT = Path(__file__).resolve().parents[1]
SETUP = (ROOT / "snowflake" / "setup.sql").read_text(encoding="utf-8")
REPO, PROJECT = "acme/hn", "acme/hn"  # stand-ins for setup.sql's OWNER/REPO and GROUP/PROJECT
GITHUB_ISSUER, GITLAB_ISSUER = "https://token.actions.githubusercontent.com", "https://gitlab.com"


def setup_lines(ci: str) -> str:
    """setup.sql's commented identity lines for one CI ("github" or "gitlab"), uncommented and
    filled in as an admin would: workload identities, and the key pairs that CI uses."""
    issuer = GITHUB_ISSUER if ci == "github" else GITLAB_ISSUER
    chosen = []
    for line in SETUP.splitlines():
        statement = line.removeprefix("-- ")
        if statement.startswith("ALTER USER") and (f"ISSUER = '{issuer}'" in statement or "RSA_PUBLIC_KEY" in statement):
            chosen.append(statement.replace("OWNER/REPO", REPO).replace("GROUP/PROJECT", PROJECT))
    return "\n".join(chosen)


def ci_token(env: str) -> str:
    """The OIDC token a GitHub Actions job of `env` presents (production.yml's jobs name the
    deployment environment `production`; pull request jobs name none)."""
    subject = {"production": f"repo:{REPO}:environment:production", "branch": f"repo:{REPO}:pull_request"}[env]
    return oidc_token(GITHUB_ISSUER, subject)
IDENTITIES = {  # what each CI job's variables hold (the names params/<env>.yaml reads)
    "production": {"SNOWFLAKE_PROD_USER": "HNPIPE_PROD_SVC", "SNOWFLAKE_PROD_ROLE": "HNPIPE_PROD"},
    "branch": {"SNOWFLAKE_BRANCH_USER": "HNPIPE_BRANCH_SVC", "SNOWFLAKE_BRANCH_ROLE": "HNPIPE_BRANCH"},
    "staging": {"SNOWFLAKE_STAGING_USER": "HNPIPE_STAGING_SVC", "SNOWFLAKE_STAGING_ROLE": "HNPIPE_STAGING"},
}
PRODUCTION = '"PRODUCTION"."HACKER_NEWS"'


@pytest.fixture
def account(clean_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SnowflakeModel:
    """A model account after snowflake/setup.sql, which every Snowflake connection of hnpipe's
    reaches, logged in as the role its credentials name (workload identity, as in CI)."""
    model = SnowflakeModel()
    model.run("ACCOUNTADMIN", SETUP + setup_lines("github"))
    model.users["IT_JANE"] = {"SECURITYADMIN"}  # the person who applies the handover
    monkeypatch.setattr(snowflake.connector, "connect", model.connector())
    monkeypatch.setattr(snowflake.connector.pandas_tools, "write_pandas", write_pandas_fake)
    monkeypatch.setenv("HNPIPE_WAREHOUSE", "snowflake")
    for name, value in {"SNOWFLAKE_ACCOUNT": "xy12345", "SNOWFLAKE_WAREHOUSE": "HNPIPE_WH",
                        "SNOWFLAKE_AUTHENTICATOR": "WORKLOAD_IDENTITY", "SNOWFLAKE_TOKEN": ci_token("production")}.items():
        monkeypatch.setenv(name, value)
    key = tmp_path / "staging_key.p8"  # staging logs in with a key pair (params/staging.yaml)
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIstaging\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)
    monkeypatch.setenv("SNOWFLAKE_STAGING_PRIVATE_KEY_FILE", str(key))
    for identity in IDENTITIES.values():
        for name, value in identity.items():
            monkeypatch.setenv(name, value)
    return model


def as_prune_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log in as production.yml's prune job does: its env block over the production run's."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "production.yml").read_text(encoding="utf-8"))
    as_env(monkeypatch, "production")
    for variable, value in workflow["jobs"]["prune-clones"]["env"].items():
        secret = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
        monkeypatch.setenv(variable, os.environ[secret.group(1)] if secret else str(value))


def as_env(monkeypatch: pytest.MonkeyPatch, env: str, pr: int | None = None, run_id: str | None = None) -> None:
    """Run as the CI job of `env` would: its HNPIPE_ENV, pull request and its job's OIDC token."""
    monkeypatch.setenv("HNPIPE_ENV", env)
    if env in ("production", "branch"):
        monkeypatch.setenv("SNOWFLAKE_AUTHENTICATOR", "WORKLOAD_IDENTITY")
        monkeypatch.setenv("SNOWFLAKE_TOKEN", ci_token(env))
    elif env == "staging":  # its key pair (the fixture's SNOWFLAKE_STAGING_PRIVATE_KEY_FILE)
        monkeypatch.delenv("SNOWFLAKE_AUTHENTICATOR", raising=False)
        monkeypatch.delenv("SNOWFLAKE_TOKEN", raising=False)
    if pr is None:
        monkeypatch.delenv("HNPIPE_PR_ID", raising=False)
    else:
        monkeypatch.setenv("HNPIPE_PR_ID", str(pr))
    if run_id:
        monkeypatch.setenv("HNPIPE_RUN_ID", run_id)


def publish_all(monkeypatch: pytest.MonkeyPatch, env: str, run_id: str, pr: int | None = None,
                n_items: int = 60) -> None:
    """What `hnpipe run --env ENV` does, notebook by notebook: ITEMS, then the datasets built from it."""
    as_env(monkeypatch, env, pr, run_id)
    values = params.params_for(env, {"hn_api_url": "sample", "n_items": n_items})
    step = pipeline.start("ITEMS", values)
    try:
        items = step.fetch()  # as items.ipynb does: through the stage (PUT, COPY INTO), R14
        step.publish(items)
        items.discard()  # as `hnpipe run` does after the publish (REMOVE)
    finally:
        step.warehouse.close()
    for dataset in built_in_sql():
        step = pipeline.start(dataset.name, values)
        try:
            step.build()
        finally:
            step.warehouse.close()


def reader_counts(model: SnowflakeModel, where: str = PRODUCTION) -> dict[str, int]:
    """A reader's SELECT COUNT(*) of each dataset (raises if SELECT is missing on any)."""
    cursor = model.connect("HNPIPE_READER").cursor()
    return {table: cursor.execute(f'SELECT COUNT(*) FROM {where}."{table}"').fetchone()[0]
            for table in DATASET_TABLES}
