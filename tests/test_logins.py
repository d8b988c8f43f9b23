"""Who logs in to Snowflake how (issue 19): one Snowflake user per OIDC subject, checked by
reading snowflake/setup.sql, and its table of logins, kept the same in docs/snowflake.md, matching
what the CI files and the params files really do.

A workload identity matches one literal issuer and subject
(https://docs.snowflake.com/en/sql-reference/sql/alter-user,
https://docs.snowflake.com/sql-reference/sql/alter-user-add-workload-identity); GitHub's subject
for a job naming a deployment environment is repo:OWNER/REPO:environment:NAME, for a
pull_request job without one repo:OWNER/REPO:pull_request
(https://docs.github.com/en/actions/reference/security/oidc); GitLab's default is
project_path:GROUP/PROJECT:ref_type:branch:ref:BRANCH
(https://docs.gitlab.com/ci/secrets/id_token_authentication).
"""

from __future__ import annotations

import re

import pytest
from hnpipe import credentials, params

from snowflake_account import IDENTITIES, SETUP
from workflow_files import ROOT, github, gitlab_jobs, triggers

GITHUB_ISSUER, GITLAB_ISSUER = "https://token.actions.githubusercontent.com", "https://gitlab.com"
COLUMNS = ["environment", "who", "where", "user", "role", "login"]
# The variable (or secret) holding each service user's name, and each pipeline role's
# (snowflake_account.IDENTITIES: what the CI variables hold).
HOLDS = {name: value for identity in IDENTITIES.values() for name, value in identity.items()}


# -- setup.sql ---------------------------------------------------------------------------------
def identity_lines(script: str = SETUP) -> list[tuple[str, str, str]]:
    """(user, issuer, subject) of every workload identity line, commented or not."""
    return re.findall(r"ALTER USER (\w+) SET WORKLOAD_IDENTITY = \(TYPE = OIDC ISSUER = '([^']+)' "
                      r"SUBJECT = '([^']+)'\);", script)


def key_pair_users(script: str = SETUP) -> set[str]:
    return set(re.findall(r"ALTER USER (\w+) SET RSA_PUBLIC_KEY = ", script))


def trusting(issuer: str, subject: str) -> list[str]:
    return [user for user, i, s in identity_lines() if (i, s) == (issuer, subject)]


def test_one_user_per_oidc_subject_and_one_subject_per_user_and_ci() -> None:
    lines = identity_lines()
    assert len(lines) >= 3
    subjects = [(issuer, subject) for _, issuer, subject in lines]
    assert len(subjects) == len(set(subjects)), "two users trust one OIDC subject"
    per_user = [(user, issuer) for user, issuer, _ in lines]
    assert len(per_user) == len(set(per_user)), "SET WORKLOAD_IDENTITY replaces: one subject per user and issuer"
    # A named second identity is what let two users share production's subject (and could not run twice).
    assert not re.search(r"ALTER USER \w+ ADD WORKLOAD IDENTITY", SETUP)


def test_the_old_setup_shared_productions_subject_between_two_users() -> None:
    """What the test above refuses, as setup.sql had it before issue 19."""
    old = SETUP + ("\n-- ALTER USER HNPIPE_BRANCH_SVC ADD WORKLOAD IDENTITY PRUNE TYPE = OIDC ISSUER = "
                   "'https://token.actions.githubusercontent.com' SUBJECT = 'repo:OWNER/REPO:environment:production';")
    named = re.findall(r"ALTER USER (\w+) ADD WORKLOAD IDENTITY \w+ TYPE = OIDC ISSUER = '([^']+)' SUBJECT = '([^']+)'", old)
    subjects = [(i, s) for _, i, s in identity_lines(old) + named]
    assert len(subjects) != len(set(subjects))


def test_service_sessions_hold_only_the_role_they_name() -> None:
    for user in ("HNPIPE_PROD_SVC", "HNPIPE_STAGING_SVC", "HNPIPE_BRANCH_SVC"):
        assert re.search(rf"^ALTER USER {user} SET DEFAULT_SECONDARY_ROLES = \(\);", SETUP, re.MULTILINE), user
    assert re.search(r"^GRANT ROLE HNPIPE_BRANCH TO USER HNPIPE_PROD_SVC;", SETUP, re.MULTILINE)


# -- the table ---------------------------------------------------------------------------------
def table_rows(text: str, prefix: str = "") -> list[dict[str, str]]:
    lines = [line.removeprefix(prefix) for line in text.splitlines()]
    start = lines.index("| " + " | ".join(COLUMNS) + " |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(COLUMNS, (cell.strip() for cell in line.strip("|").split(" | ")))))
    return rows


SQL_ROWS = table_rows(SETUP, "-- ")
DOC_ROWS = table_rows((ROOT / "docs" / "snowflake.md").read_text(encoding="utf-8"))


def test_the_docs_table_is_setup_sqls() -> None:
    assert DOC_ROWS == SQL_ROWS and len(SQL_ROWS) >= 9


def where(row: dict[str, str]) -> tuple[str, str, list[str]] | None:
    """(CI, file, jobs) of a CI row, None for a person's or a runner's."""
    found = re.fullmatch(r"(GitHub|GitLab) `([^`]+)` (.+)", row["where"])
    return None if found is None else (found.group(1), found.group(2), found.group(3).split(", "))


CI_ROWS = [row for row in SQL_ROWS if where(row)]


def test_every_ci_job_that_logs_in_to_snowflake_has_a_row() -> None:
    listed = {(ci, name, job) for ci, name, jobs in map(where, CI_ROWS) for job in jobs}
    github_jobs = {("GitHub", name, job) for name in ("production.yml", "branch-deployment.yml", "backfill.yml")
                   for job in github(name)["jobs"]}
    gitlab = {("GitLab", file, job) for file, jobs in
              ((".gitlab-ci.yml", ("production-run", "prune-clones", "freshness", "backfill-plan", "backfill-merge")),
               (".gitlab/branch-deployment.yml", ("branch-clone", "branch-deploy", "branch-stop")))
              for job in jobs}
    assert listed == github_jobs | gitlab
    assert {job for job, body in gitlab_jobs().items() if "script" in body and job != "test"} == {job for _, _, job in gitlab}


def github_login(name: str, job: str) -> dict[str, str]:
    """What a GitHub job logs in with: its env over the workflow's, secrets by name."""
    workflow = github(name)
    env = {**workflow.get("env", {}), **workflow["jobs"][job].get("env", {})}
    resolved = {}
    for variable, value in env.items():
        secret = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
        resolved[variable] = HOLDS.get(secret.group(1), "") if secret else str(value)
    return resolved


def gitlab_login(job: str) -> dict[str, str]:
    """What a GitLab job logs in with: the project's CI/CD variables (the header lists them),
    then the job's YAML variables, a $NAME reading the CI/CD variable."""
    login = dict(HOLDS)
    for name, value in gitlab_jobs()[job].get("variables", {}).items():
        login[name] = login.get(value[1:], "") if str(value).startswith("$SNOWFLAKE_") else str(value)
    return login


def env_names(environment: str) -> dict[str, str]:
    return {**credentials.SNOWFLAKE_SETTINGS, **credentials.OPTIONAL_SETTINGS,
            **params.load_params_file(ROOT / "params" / f"{environment}.yaml").get("snowflake_env", {})}


def github_subject(name: str, job: str) -> str:
    """The sub claim of a GitHub job's OIDC token (repo:OWNER/REPO as setup.sql writes it)."""
    body = github(name)["jobs"][job]
    if "environment" in body:
        return f"repo:OWNER/REPO:environment:{body['environment']}"
    assert list(triggers(github(name))) == ["pull_request"], (name, job)
    return "repo:OWNER/REPO:pull_request"


@pytest.mark.parametrize("row", CI_ROWS, ids=lambda row: row["where"])
def test_each_ci_row_is_what_the_ci_file_does_and_setup_sql_trusts(row: dict[str, str]) -> None:
    ci, name, jobs = where(row)
    for job in jobs:
        if ci == "GitHub":
            login = github_login(name, job)
            environment = login["HNPIPE_ENV"]
        else:
            login = gitlab_login(job)
            environment = login["HNPIPE_ENV"]
        assert environment == row["environment"], job
        # Admin actions log in with the branch variables whatever HNPIPE_ENV allowed them
        # (ops/admin.CLONE_OWNER); the prune is the one such job here.
        names = env_names("branch" if "prune" in job else environment)
        assert login[names["user"]] == row["user"], job
        assert login[names["role"]] == row["role"], job
        federated = login.get("SNOWFLAKE_AUTHENTICATOR") == "WORKLOAD_IDENTITY"
        if row["login"] == "key pair":
            assert not federated, job
            assert row["user"] in key_pair_users(), f"setup.sql sets no RSA_PUBLIC_KEY for {row['user']}"
            assert "id_tokens" not in gitlab_jobs().get(job, {}), job
            continue
        subject = re.fullmatch(r"workload identity, subject `([^`]+)`", row["login"]).group(1)
        assert federated, job
        if ci == "GitHub":
            assert github_subject(name, job) == subject, job
            assert trusting(GITHUB_ISSUER, subject) == [row["user"]], job
        else:
            body = gitlab_jobs()[job]
            # Scheduled or run by hand on the default branch only: the subject names main.
            assert all("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in rule["if"] for rule in body["rules"]), job
            assert subject.endswith(":ref_type:branch:ref:main"), job
            assert trusting(GITLAB_ISSUER, subject) == [row["user"]], job


def test_gitlab_merge_request_subjects_differ_per_branch_so_no_identity_matches_them() -> None:
    subjects = {subject for _, issuer, subject in identity_lines() if issuer == GITLAB_ISSUER}
    assert not any(":ref:main" not in subject for subject in subjects)  # only main is trusted


def test_the_person_rows_name_the_logins_credentials_offers_people() -> None:
    people = [row for row in SQL_ROWS if row["user"].startswith("the person")]
    assert {row["environment"] for row in people} == {"local", "production"}
    for row in people:
        for method in credentials.PERSON_AUTHENTICATORS.values():
            assert method in row["login"], row
        assert set(re.split(r", | or ", row["login"])) <= set(credentials.LOGIN_METHODS), row
    staging = next(row for row in SQL_ROWS if row["environment"] == "staging")
    assert staging["login"] == "key pair" and staging["user"] in key_pair_users()
    assert env_names("staging")["private_key_file"] == "SNOWFLAKE_STAGING_PRIVATE_KEY_FILE"
