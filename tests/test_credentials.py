"""Credentials come from the environment or .env, and secrets never reach errors or logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hnpipe import credentials
from hnpipe.credentials import (
    CredentialsError,
    RedactingFilter,
    install_log_redaction,
    looks_like_secret_key,
    redact,
    secret_values,
    snowflake_credentials,
)
from hnpipe.errors import HnpipeError

PASSWORD = "s3cret-Pa55word!"
FULL = {
    "SNOWFLAKE_ACCOUNT": "xy12345.eu-west-1",
    "SNOWFLAKE_USER": "ALICE",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "DEVELOPER",
    "SNOWFLAKE_WAREHOUSE": "DEV_WH",
}
ALL_VARIABLES = (*credentials.SNOWFLAKE_SETTINGS.values(), *credentials.OPTIONAL_SETTINGS.values())


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Snowflake variable in os.environ (restored afterwards, even those .env loads), and
    HNPIPE_ROOT at an empty project in tmp_path, whose .env the test may write."""
    for name in ALL_VARIABLES:
        # setenv first so the undo removes whatever load_dotenv adds later
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path))
    return tmp_path


def test_dotenv_fills_gaps_but_the_process_environment_wins(bare_env: Path, monkeypatch) -> None:
    (bare_env / ".env").write_text(
        "SNOWFLAKE_ACCOUNT=from-dotenv\nSNOWFLAKE_USER=DOTENV_USER\nSNOWFLAKE_PASSWORD=dotenv-password\n"
        "SNOWFLAKE_ROLE=DOTENV_ROLE\nSNOWFLAKE_WAREHOUSE=DOTENV_WH\n"
    )
    monkeypatch.setenv("SNOWFLAKE_USER", "SHELL_USER")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "shell-password")

    got = snowflake_credentials()

    assert got == {
        "account": "from-dotenv", "user": "SHELL_USER", "role": "DOTENV_ROLE",
        "warehouse": "DOTENV_WH", "password": "shell-password",
    }


def test_without_dotenv_or_variables_every_missing_variable_is_named(bare_env: Path) -> None:
    with pytest.raises(CredentialsError) as caught:
        snowflake_credentials()
    message = str(caught.value)
    assert message == (
        "missing Snowflake credentials: set SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, SNOWFLAKE_ROLE, "
        "SNOWFLAKE_WAREHOUSE, SNOWFLAKE_PRIVATE_KEY_FILE (key pair; in CI SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY; "
        "for your own runs SNOWFLAKE_PASSWORD) (in the environment or .env)"
    )
    assert isinstance(caught.value, HnpipeError)


def test_missing_variable_error_names_it_and_shows_no_value() -> None:
    environ = {**FULL, "SNOWFLAKE_USER": "   "}  # blank counts as missing
    with pytest.raises(CredentialsError) as caught:
        snowflake_credentials(environ=environ)
    message = str(caught.value)
    assert message == (
        "missing Snowflake credential: set SNOWFLAKE_USER (in the environment or .env)"
    )
    assert "\n" not in message
    for value in FULL.values():
        assert value not in message


def test_missing_password_and_key_names_both_variables() -> None:
    environ = {k: v for k, v in FULL.items() if k != "SNOWFLAKE_PASSWORD"}
    with pytest.raises(CredentialsError, match=r"set SNOWFLAKE_PRIVATE_KEY_FILE \(key pair; in CI SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY; for your own runs SNOWFLAKE_PASSWORD\)"):
        snowflake_credentials(environ=environ)


def test_env_names_remap_variables_per_environment() -> None:
    environ = {
        **FULL,  # the developer's own, which production must not use
        "SNOWFLAKE_PROD_USER": "SVC_HNPIPE",
        "SNOWFLAKE_PROD_PASSWORD": "prod-pa55word",
    }
    got = snowflake_credentials(
        {"user": "SNOWFLAKE_PROD_USER", "password": "SNOWFLAKE_PROD_PASSWORD"}, environ=environ
    )
    assert got["user"] == "SVC_HNPIPE"
    assert got["password"] == "prod-pa55word"
    assert got["account"] == FULL["SNOWFLAKE_ACCOUNT"]


def test_missing_remapped_variable_is_named_by_its_remapped_name() -> None:
    with pytest.raises(CredentialsError, match=r"set SNOWFLAKE_PROD_USER \(in the environment"):
        snowflake_credentials({"user": "SNOWFLAKE_PROD_USER"}, environ=FULL)


@pytest.mark.parametrize(
    ("env_names", "expected"),
    [
        ({"passwd": "SNOWFLAKE_PASSWORD"}, r"unknown Snowflake setting 'passwd' in env_names: choose from account, user"),
        ({"password": "snowflake_password"}, r"env_names\['password'\] must name an environment variable"),
        ({"password": "SNOWFLAKE-PASSWORD"}, r"env_names\['password'\] must name an environment variable"),
        ({"user": ""}, r"env_names\['user'\] must name an environment variable"),
        ({"user": 42}, r"env_names\['user'\] must name an environment variable"),
        (["user"], r"env_names must map Snowflake settings to variable names, got list"),
    ],
)
def test_bad_env_names_are_refused(env_names, expected) -> None:
    with pytest.raises(CredentialsError, match=expected):
        snowflake_credentials(env_names, environ=FULL)


def test_a_value_put_in_env_names_by_mistake_is_not_echoed() -> None:
    with pytest.raises(CredentialsError) as caught:
        snowflake_credentials({"password": PASSWORD}, environ=FULL)
    assert PASSWORD not in str(caught.value)
    assert "never hold a value" in str(caught.value)


def test_private_key_file_is_preferred_over_password(tmp_path: Path) -> None:
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n")
    environ = {**FULL, "SNOWFLAKE_PRIVATE_KEY_FILE": str(key), "SNOWFLAKE_PRIVATE_KEY_FILE_PWD": "key-passphrase"}
    got = snowflake_credentials(environ=environ)
    assert got["private_key_file"] == str(key)
    assert got["private_key_file_pwd"] == "key-passphrase"
    assert "password" not in got


def test_a_missing_private_key_file_is_named_by_variable(tmp_path: Path) -> None:
    environ = {**FULL, "SNOWFLAKE_PRIVATE_KEY_FILE": str(tmp_path / "nope.p8")}
    with pytest.raises(CredentialsError, match=r"^SNOWFLAKE_PRIVATE_KEY_FILE does not name a readable file"):
        snowflake_credentials(environ=environ)


# -- secrets -----------------------------------------------------------------------------
def test_secret_values_pick_secret_looking_names_only() -> None:
    environ = {
        **FULL,
        "GITHUB_TOKEN": "ghp_abcdef123456",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T000/B000/XXXX",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "OPENAI_API_KEY": "sk-123456789",
        "DB_PASSWD": "pw12",
        "SHORT_TOKEN": "abc",  # too short to redact safely
        "PWD": "/work/main",  # the shell's working directory, not a password
        "OLDPWD": "/tmp",
        "HOME": "/home/alice",
        "KEYBOARD_LAYOUT": "dvorak",
        "SNOWFLAKE_PRIVATE_KEY_FILE": "/nonexistent/key.p8",  # a path, not a secret
    }
    found = secret_values(environ)
    assert {PASSWORD, "ghp_abcdef123456", "https://hooks.slack.example/T000/B000/XXXX",
            "wJalrXUtnFEMI/K7MDENG", "sk-123456789", "pw12"} <= found
    for harmless in ("abc", "/work/main", "/tmp", "/home/alice", "dvorak", "/nonexistent/key.p8",
                     "ALICE", "DEV_WH"):
        assert harmless not in found


def test_private_key_contents_are_secret(tmp_path: Path) -> None:
    body = "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7"
    key = tmp_path / "rsa_key.p8"
    key.write_text(f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    environ = {"SNOWFLAKE_PRIVATE_KEY_FILE": str(key)}
    assert body in secret_values(environ)
    assert redact(f"bad key line {body} here", environ) == "bad key line *** here"


def test_redact_replaces_every_occurrence_and_longest_first() -> None:
    environ = {"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh"}
    assert redact("x abcdefgh y abcd z abcd", environ) == "x *** y *** z ***"
    assert redact("nothing here", environ) == "nothing here"


def test_remapped_password_variable_is_redacted_even_with_a_plain_name() -> None:
    environ = {**FULL, "SF_PW_FOR_CI": "plain-named-secret"}
    assert "plain-named-secret" not in secret_values(environ)  # not secret-looking by name
    snowflake_credentials({"password": "SF_PW_FOR_CI"}, environ=environ)
    assert redact("login with plain-named-secret failed", environ) == "login with *** failed"


@pytest.mark.parametrize(
    "key",
    ["password", "Password", "snowflake_password", "passwd", "pwd", "db-pwd", "token", "api_token",
     "secret", "client_secret", "private_key", "private key", "privateKey", "api_key", "API-KEY",
     "apikey", "access_key", "credential", "credentials", "passphrase", "webhook_url"],
)
def test_secret_looking_keys(key: str) -> None:
    assert looks_like_secret_key(key)


@pytest.mark.parametrize(
    "key", ["environment", "n_items", "hn_api_url", "action", "pr_id", "snowflake_env", "keyword", "monkey",
            "sort_key_order", "passes", "compass"],
)
def test_ordinary_keys(key: str) -> None:
    assert not looks_like_secret_key(key)


# -- logs --------------------------------------------------------------------------------
def test_redacting_filter_on_a_handler_cleans_message_args_and_traceback(monkeypatch) -> None:
    monkeypatch.setenv("HNPIPE_TEST_TOKEN", "tok-9f8e7d6c")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            self.format(record)

    handler = Keep()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test_credentials.handler_only")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s", "tok-9f8e7d6c")
        try:
            raise RuntimeError("server said tok-9f8e7d6c is wrong")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)

    assert records[0].getMessage() == "connecting with ***"
    text = handler.format(records[1])
    assert "tok-9f8e7d6c" not in text
    assert "RuntimeError: server said *** is wrong" in text


def test_install_log_redaction_covers_child_loggers(monkeypatch, caplog) -> None:
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", PASSWORD)
    install_log_redaction()
    install_log_redaction()  # idempotent
    # a child logger created after installation, as modules do
    child = logging.getLogger("hnpipe.some_new_module.deeper")
    with caplog.at_level(logging.DEBUG, logger="hnpipe"):
        child.info("password is %s", PASSWORD)
        logging.getLogger("hnpipe").info({"password": PASSWORD})
    assert PASSWORD not in caplog.text
    assert caplog.records[0].getMessage() == "password is ***"
    assert caplog.records[1].getMessage() == "{'password': '***'}"
    # other loggers are left alone (redaction applies under hnpipe only)
    with caplog.at_level(logging.INFO, logger="elsewhere"):
        logging.getLogger("elsewhere").info("x %s", "plain")
    assert caplog.records[-1].getMessage() == "x plain"


# -- logging in without a stored password (issue 9) -------------------------------------------
WIF = {key: value for key, value in FULL.items() if key != "SNOWFLAKE_PASSWORD"}
WIF["SNOWFLAKE_AUTHENTICATOR"] = "WORKLOAD_IDENTITY"


def test_workload_identity_reads_the_ci_token_from_a_file_and_needs_no_password(tmp_path: Path) -> None:
    token = tmp_path / "oidc.jwt"
    token.write_text("header.payload.signature")
    got = snowflake_credentials(environ={**WIF, "SNOWFLAKE_TOKEN_FILE": str(token)})
    # The connector's own names: authenticator="WORKLOAD_IDENTITY" with an OIDC token
    # (https://docs.snowflake.com/en/user-guide/workload-identity-federation).
    assert got == {"account": "xy12345.eu-west-1", "user": "ALICE", "role": "DEVELOPER", "warehouse": "DEV_WH",
                   "authenticator": "WORKLOAD_IDENTITY", "workload_identity_provider": "OIDC",
                   "token_file_path": str(token)}
    assert credentials.login_method(got) == "workload identity"


def test_workload_identity_takes_gitlabs_id_token_from_its_variable_and_redacts_it() -> None:
    got = snowflake_credentials(environ={**WIF, "SNOWFLAKE_TOKEN": "gitlab.id.token-77"})
    assert got["token"] == "gitlab.id.token-77" and "password" not in got
    assert redact("login failed with gitlab.id.token-77", {"SNOWFLAKE_TOKEN": "gitlab.id.token-77"}) == "login failed with ***"


def test_workload_identity_without_a_token_says_where_one_comes_from() -> None:
    with pytest.raises(CredentialsError, match=r"set SNOWFLAKE_TOKEN_FILE or SNOWFLAKE_TOKEN \(the CI's OIDC token; "
                                               r"in GitHub Actions give the job `permissions: id-token: write`\)"):
        snowflake_credentials(environ=WIF)


def test_an_unknown_authenticator_is_refused_naming_the_variable_not_the_value() -> None:
    with pytest.raises(CredentialsError) as caught:
        snowflake_credentials(environ={**FULL, "SNOWFLAKE_AUTHENTICATOR": "snowflake_secret_mode"})
    assert str(caught.value).startswith("SNOWFLAKE_AUTHENTICATOR must be WORKLOAD_IDENTITY")
    assert "snowflake_secret_mode" not in str(caught.value)


def test_in_github_actions_a_fresh_oidc_token_is_fetched_at_login_for_snowflakes_audience() -> None:
    import http.server
    import json
    import threading

    seen: list[tuple[str, str]] = []

    class Issuer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append((self.path, self.headers["Authorization"]))
            body = json.dumps({"value": f"github.jwt.{len(seen)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        environ = {**WIF, "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{server.server_port}/token?api=1",
                   "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-bearer-123"}
        checked = snowflake_credentials(environ=environ)  # validation only: nothing fetched
        assert "token" not in checked and seen == []
        first = snowflake_credentials(environ=environ, fetch_token=True)
        second = snowflake_credentials(environ=environ, fetch_token=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (first["token"], second["token"]) == ("github.jwt.1", "github.jwt.2")  # one per login
    assert seen[0] == ("/token?api=1&audience=snowflakecomputing.com", "bearer runner-bearer-123")
    assert redact("bad token github.jwt.2") == "bad token ***"


def test_variables_used_names_what_the_login_reads_never_values(tmp_path: Path) -> None:
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    names = {"user": "SNOWFLAKE_PROD_USER", "private_key_file": "SNOWFLAKE_PROD_PRIVATE_KEY_FILE"}
    environ = {**FULL, "SNOWFLAKE_PROD_USER": "SVC", "SNOWFLAKE_PROD_PRIVATE_KEY_FILE": str(key)}
    got = snowflake_credentials(names, environ=environ)
    assert credentials.variables_used(names, got) == ["SNOWFLAKE_ACCOUNT", "SNOWFLAKE_PROD_USER", "SNOWFLAKE_ROLE",
                                                      "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_PROD_PRIVATE_KEY_FILE"]
    assert credentials.login_method(got) == "key pair"


# -- people: browser SSO and an authenticator app's passcode (issue 19) ------------------------
PERSON = {key: value for key, value in FULL.items() if key != "SNOWFLAKE_PASSWORD"}


def test_browser_sso_needs_no_secret_and_names_its_method() -> None:
    got = snowflake_credentials(environ={**PERSON, "SNOWFLAKE_AUTHENTICATOR": "externalbrowser"})
    # The connector's name (snowflake.connector.network.EXTERNAL_BROWSER_AUTHENTICATOR).
    assert got == {"account": "xy12345.eu-west-1", "user": "ALICE", "role": "DEVELOPER", "warehouse": "DEV_WH",
                   "authenticator": "EXTERNALBROWSER", "client_store_temporary_credential": True}
    assert credentials.login_method(got) == "browser SSO"
    with pytest.raises(CredentialsError, match="SNOWFLAKE_USER"):  # SSO signs in a named person
        snowflake_credentials(environ={**PERSON, "SNOWFLAKE_USER": "", "SNOWFLAKE_AUTHENTICATOR": "EXTERNALBROWSER"})


@pytest.mark.parametrize("authenticator", ["USERNAME_PASSWORD_MFA", None])
def test_password_with_an_authenticator_apps_passcode(authenticator: str | None) -> None:
    environ = {**FULL, "SNOWFLAKE_PASSCODE": "123456"}
    if authenticator:
        environ["SNOWFLAKE_AUTHENTICATOR"] = authenticator
    got = snowflake_credentials(environ=environ)
    assert got["authenticator"] == "USERNAME_PASSWORD_MFA" and got["passcode"] == "123456"
    assert got["password"] == PASSWORD and credentials.login_method(got) == "password + passcode"
    assert got["client_request_mfa_token"] is True  # one passcode, one login: later sessions use the cached token
    assert "123456" in secret_values({"SNOWFLAKE_PASSCODE": "123456"})  # redacted like the password


def test_password_mfa_without_its_passcode_names_the_variable() -> None:
    with pytest.raises(CredentialsError, match="set SNOWFLAKE_PASSCODE"):
        snowflake_credentials(environ={**FULL, "SNOWFLAKE_AUTHENTICATOR": "USERNAME_PASSWORD_MFA"})


@pytest.mark.parametrize("extra", [{"SNOWFLAKE_AUTHENTICATOR": "EXTERNALBROWSER"},
                                   {"SNOWFLAKE_AUTHENTICATOR": "USERNAME_PASSWORD_MFA", "SNOWFLAKE_PASSCODE": "123456"},
                                   {"SNOWFLAKE_PASSCODE": "123456"}])
def test_a_persons_login_is_refused_in_ci_naming_the_login_ci_uses(extra: dict[str, str]) -> None:
    with pytest.raises(CredentialsError) as caught:
        snowflake_credentials(environ={**FULL, **extra, "CI": "true"})
    message = str(caught.value)
    assert "a person's login, and CI is set" in message
    assert "CI logs in with workload identity (SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY) or a key pair" in message
    assert "123456" not in message and PASSWORD not in message
