"""Snowflake credentials, and keeping secrets out of errors, logs and reprs.

Secrets come only from the process environment or the git-ignored `.env` (loaded by
`config.load_env`, which never overrides a variable already set). A params file may say
*which* variables hold each setting (`env_names`), never the values: papermill writes every
parameter into every executed notebook.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Mapping

from hnpipe import config
from hnpipe.errors import HnpipeError

# setting -> the variable that holds it unless env_names says otherwise
SNOWFLAKE_SETTINGS: dict[str, str] = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "password": "SNOWFLAKE_PASSWORD",
    "private_key_file": "SNOWFLAKE_PRIVATE_KEY_FILE",
    "role": "SNOWFLAKE_ROLE",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
}
# Optional: the passphrase of an encrypted private key file (the connector's own name), and
# workload identity federation (CI logs in with its own short-lived OIDC token, no stored secret:
# https://docs.snowflake.com/en/user-guide/workload-identity-federation). The connector takes
# authenticator="WORKLOAD_IDENTITY", workload_identity_provider and the token (or a file holding it).
OPTIONAL_SETTINGS: dict[str, str] = {
    "private_key_file_pwd": "SNOWFLAKE_PRIVATE_KEY_FILE_PWD",
    "authenticator": "SNOWFLAKE_AUTHENTICATOR",
    "workload_identity_provider": "SNOWFLAKE_WORKLOAD_IDENTITY_PROVIDER",
    "token_file": "SNOWFLAKE_TOKEN_FILE",
    "token": "SNOWFLAKE_TOKEN",
    # A person's authenticator-app (TOTP) passcode, sent with the password
    # (authenticator=USERNAME_PASSWORD_MFA, the connector's `passcode`:
    # https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-connect, MFA).
    "passcode": "SNOWFLAKE_PASSCODE",
}
_ALL_SETTINGS = {**SNOWFLAKE_SETTINGS, **OPTIONAL_SETTINGS}
_REQUIRED = ("account", "user", "role", "warehouse")
# Settings whose values are secrets, whatever their variable is called.
_SECRET_SETTINGS = ("password", "private_key_file_pwd", "token", "passcode")
WORKLOAD_IDENTITY = "WORKLOAD_IDENTITY"
# People's logins, for their own runs and the handover only, never in CI (issue 19): browser SSO
# through the identity provider, or a password with an authenticator app's passcode. Values are
# the connector's authenticator names (snowflake.connector.network: EXTERNALBROWSER,
# USERNAME_PASSWORD_MFA); https://docs.snowflake.com/en/user-guide/admin-security-fed-auth-use
# (browser SSO) and the connector page above (MFA passcode).
EXTERNAL_BROWSER, PASSWORD_MFA = "EXTERNALBROWSER", "USERNAME_PASSWORD_MFA"
PERSON_AUTHENTICATORS = {EXTERNAL_BROWSER: "browser SSO", PASSWORD_MFA: "password + passcode"}
CI_LOGINS = "CI logs in with workload identity (SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY) or a key pair"
_PROVIDERS = ("OIDC", "AWS", "AZURE", "GCP")  # the connector's AttestationProvider values
# How a login proves who it is, in the order hnpipe prefers them.
LOGIN_METHODS = ("workload identity", "key pair", "browser SSO", "password + passcode", "password")

ENV_VAR_NAME = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words and digits
REDACTED = "***"

# Variables remapped through env_names that hold a secret or a key file, so redaction finds
# them even when their names do not look secret (e.g. {"password": "SF_PW"}).
_registered_secret_vars: set[str] = set()
_registered_key_file_vars: set[str] = {"SNOWFLAKE_PRIVATE_KEY_FILE"}


class CredentialsError(HnpipeError):
    """A credential is missing or misconfigured; the message names variables, never values."""


def check_env_names(env_names: Mapping[str, str] | None) -> dict[str, str]:
    """Validate an env_names mapping (setting -> variable name); returns it as a dict."""
    if env_names is None:
        return {}
    if not isinstance(env_names, Mapping):
        raise CredentialsError(
            f"env_names must map Snowflake settings to variable names, got {type(env_names).__name__}"
        )
    checked: dict[str, str] = {}
    for setting, variable in env_names.items():
        if setting not in _ALL_SETTINGS:
            raise CredentialsError(
                f"unknown Snowflake setting {setting!r} in env_names: choose from {', '.join(_ALL_SETTINGS)}"
            )
        # The value is not echoed: a mistaken value here may well be the secret itself.
        if not isinstance(variable, str) or not ENV_VAR_NAME.fullmatch(variable):
            raise CredentialsError(
                f"env_names[{setting!r}] must name an environment variable ([A-Z_][A-Z0-9_]*, "
                f"e.g. {_ALL_SETTINGS[setting]}), never hold a value"
            )
        checked[setting] = variable
    return checked


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    if environ is not None:
        return environ
    try:
        config.load_env()
    except FileNotFoundError:
        pass  # installed outside a checkout: no .env to read
    return os.environ


# GitHub Actions hands a job that has `permissions: id-token: write` these two variables; a GET
# of the URL with the bearer token returns {"value": <OIDC ID token>}. Snowflake expects the
# audience snowflakecomputing.com unless the user's OIDC_AUDIENCE_LIST says otherwise
# (https://docs.snowflake.com/en/user-guide/workload-identity-federation). The token lives
# minutes, so hnpipe asks for a fresh one right before every login, never stores it.
GITHUB_TOKEN_URL, GITHUB_TOKEN_BEARER = "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
OIDC_AUDIENCE = "snowflakecomputing.com"
_fetched_secrets: set[str] = set()  # tokens fetched at login: redacted like the variables' secrets


def github_oidc_token(environ: Mapping[str, str], audience: str = OIDC_AUDIENCE) -> str:
    """A fresh OIDC ID token from GitHub Actions' token endpoint (never logged, never kept)."""
    import requests  # a dependency of hnpipe already (the HN client)

    url, bearer = environ.get(GITHUB_TOKEN_URL), environ.get(GITHUB_TOKEN_BEARER)
    if not url or not bearer:
        raise CredentialsError(f"no GitHub OIDC token: {GITHUB_TOKEN_URL} is not set; give the job "
                               "`permissions: id-token: write`")
    separator = "&" if "?" in url else "?"
    try:
        response = requests.get(f"{url}{separator}audience={audience}",
                                headers={"Authorization": f"bearer {bearer}"}, timeout=30)
        response.raise_for_status()
        token = response.json()["value"]
    except Exception as exc:  # network, HTTP, JSON alike; the message names no secret
        raise CredentialsError(f"could not get GitHub's OIDC token for Snowflake: {type(exc).__name__}") from None
    if not isinstance(token, str) or not token:
        raise CredentialsError("could not get GitHub's OIDC token for Snowflake: empty answer")
    _fetched_secrets.add(token)
    return token


def snowflake_credentials(
    env_names: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
    *, fetch_token: bool = False,
) -> dict[str, str]:
    """Connection settings for snowflake.connector.connect, read from the environment/.env.

    Returns account, user, role, warehouse and one way to log in, the first that is set:
    workload identity (SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY: authenticator,
    workload_identity_provider, and for OIDC token_file_path or token; in GitHub Actions the
    token is fetched from GitHub when `fetch_token`, i.e. right before a login); a person's
    browser SSO (EXTERNALBROWSER) or password + passcode (USERNAME_PASSWORD_MFA, or
    SNOWFLAKE_PASSCODE set), refused when CI is set; a key pair (private_key_file, plus
    private_key_file_pwd if set); or a password. Missing settings raise one CredentialsError
    naming every missing variable, never a value.
    """
    names = {**_ALL_SETTINGS, **check_env_names(env_names)}
    env = _environ(environ)
    for setting in _SECRET_SETTINGS:
        _registered_secret_vars.add(names[setting])
    _registered_key_file_vars.add(names["private_key_file"])

    def value(setting: str) -> str | None:
        raw = env.get(names[setting])
        return raw.strip() if isinstance(raw, str) and raw.strip() else None

    authenticator = value("authenticator")
    authenticator = authenticator.upper() if authenticator is not None else None
    if authenticator is not None and authenticator not in (WORKLOAD_IDENTITY, *PERSON_AUTHENTICATORS):
        raise CredentialsError(
            f"{names['authenticator']} must be {WORKLOAD_IDENTITY} (workload identity federation, CI), "
            f"{EXTERNAL_BROWSER} (browser SSO) or {PASSWORD_MFA} (password + authenticator-app passcode), "
            "or unset (key pair, or a password for a person's own runs)"
        )
    if authenticator is None and value("passcode") is not None:
        authenticator = PASSWORD_MFA  # a passcode goes with the password
    if authenticator in PERSON_AUTHENTICATORS and env.get("CI"):
        raise CredentialsError(
            f"{PERSON_AUTHENTICATORS[authenticator]} ({names['authenticator']}={authenticator}"
            f"{' or ' + names['passcode'] if authenticator == PASSWORD_MFA else ''}) is a person's login, "
            f"and CI is set: {CI_LOGINS} ({names['private_key_file']})"
        )
    federated = authenticator == WORKLOAD_IDENTITY
    required = [setting for setting in _REQUIRED if not (federated and setting == "user")]
    missing = [names[setting] for setting in required if value(setting) is None]
    if authenticator == PASSWORD_MFA:
        missing += [names[setting] for setting in ("password", "passcode") if value(setting) is None]
    provider = (value("workload_identity_provider") or "OIDC").upper()
    if federated:
        if provider not in _PROVIDERS:
            raise CredentialsError(f"{names['workload_identity_provider']} must be one of {', '.join(_PROVIDERS)}")
        github = bool(env.get(GITHUB_TOKEN_URL) and env.get(GITHUB_TOKEN_BEARER))
        if provider == "OIDC" and value("token_file") is None and value("token") is None and not github:
            missing.append(f"{names['token_file']} or {names['token']} (the CI's OIDC token; in GitHub "
                           "Actions give the job `permissions: id-token: write`)")
    elif authenticator in PERSON_AUTHENTICATORS:
        pass  # browser SSO needs no secret here; password + passcode were checked above
    elif value("password") is None and value("private_key_file") is None:
        missing.append(f"{names['private_key_file']} (key pair; in CI {names['authenticator']}=WORKLOAD_IDENTITY; "
                       f"for your own runs {names['password']})")
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise CredentialsError(
            f"missing Snowflake credential{plural}: set {', '.join(missing)} (in the environment or .env)"
        )
    credentials = {setting: value(setting) for setting in _REQUIRED if setting in required or value(setting)}
    key_file = value("private_key_file")
    if federated:
        credentials["authenticator"] = WORKLOAD_IDENTITY
        credentials["workload_identity_provider"] = provider
        if provider == "OIDC":
            token_file = value("token_file")
            if token_file is not None:
                if not Path(token_file).expanduser().is_file():
                    raise CredentialsError(f"{names['token_file']} does not name a readable file; set it to "
                                           "the file the CI job wrote its OIDC token to")
                credentials["token_file_path"] = str(Path(token_file).expanduser())
            elif value("token") is not None:
                credentials["token"] = value("token")
            elif fetch_token:
                credentials["token"] = github_oidc_token(env)
    elif authenticator == EXTERNAL_BROWSER:
        # The identity provider's page opens in a browser; a run opens a session per notebook, so
        # the connector may keep the ID token between them (if the account allows ALLOW_ID_TOKEN).
        credentials.update(authenticator=EXTERNAL_BROWSER, client_store_temporary_credential=True)  # type: ignore[arg-type]
    elif authenticator == PASSWORD_MFA:
        # A passcode is good for one login: the connector may cache the MFA token for the run's
        # later sessions (if the account allows ALLOW_CLIENT_MFA_CACHING).
        credentials.update(authenticator=PASSWORD_MFA, password=value("password"), passcode=value("passcode"),
                           client_request_mfa_token=True)  # type: ignore[arg-type]
    elif key_file is not None:
        if not Path(key_file).expanduser().is_file():
            raise CredentialsError(
                f"{names['private_key_file']} does not name a readable file; set it to the path "
                "of your Snowflake private key (PEM)"
            )
        credentials["private_key_file"] = str(Path(key_file).expanduser())
        if value("private_key_file_pwd") is not None:
            credentials["private_key_file_pwd"] = value("private_key_file_pwd")
    else:
        credentials["password"] = value("password")
    return credentials  # type: ignore[return-value]


def variables_used(env_names: Mapping[str, str] | None, settings: Mapping[str, str]) -> list[str]:
    """The variables behind `snowflake_credentials`' result (names only, for preflight output)."""
    names = {**_ALL_SETTINGS, **check_env_names(env_names)}
    kwarg_setting = {"token_file_path": "token_file"}
    used = [names[kwarg_setting.get(key, key)] for key in settings if kwarg_setting.get(key, key) in names]
    if settings.get("authenticator") == WORKLOAD_IDENTITY and "workload_identity_provider" in settings:
        used.remove(names["workload_identity_provider"])  # a default when unset; not worth naming
    return used


def login_method(settings: Mapping[str, str]) -> str:
    """How `snowflake_credentials`' result logs in: one of LOGIN_METHODS."""
    if settings.get("authenticator") == WORKLOAD_IDENTITY:
        return "workload identity"
    if settings.get("authenticator") in PERSON_AUTHENTICATORS:
        return PERSON_AUTHENTICATORS[settings["authenticator"]]
    return "key pair" if "private_key_file" in settings else "password"


PASSWORD_WARNING = (
    "logging in to Snowflake with a password: fine for a person's own runs, but Snowflake blocks "
    "password sign-in for service users (TYPE = SERVICE); use a key pair (SNOWFLAKE_PRIVATE_KEY_FILE) "
    "or, in CI, workload identity (SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY)"
)


# -- secrets -----------------------------------------------------------------------------
_SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|TOKEN|SECRET|PRIVATE_?KEY|WEBHOOK|CREDENTIAL")
# KEY only as a whole word (API_KEY, ACCESS_KEY), so KEYBOARD or MONKEY are not secrets.
_KEY_WORD = re.compile(r"(^|_)(API)?KEYS?(_|$)")
# Variables naming a file or directory hold a path, not a secret (key contents are read apart).
_PATH_SUFFIX = re.compile(r"_(FILE|PATH|DIR)$")


def secret_variable(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    upper = name.upper()
    if _PATH_SUFFIX.search(upper):
        return False
    # _PWD only as a suffix: PWD and OLDPWD are the shell's working directories.
    return bool(_SECRET_WORDS.search(upper) or _KEY_WORD.search(upper) or upper.endswith("_PWD"))


def _key_file_secrets(path: str) -> set[str]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return set()
    # The whole key, and each line of its body, in case a fragment ends up in a message.
    lines = {line.strip() for line in text.splitlines() if line.strip() and "-----" not in line}
    return {text, text.strip(), *lines}


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values worth redacting: secret-looking variables, Snowflake password and key contents."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, val in env.items():
        if isinstance(val, str) and (secret_variable(name) or name in _registered_secret_vars):
            found.add(val)
            found.add(val.strip())
    for name in _registered_key_file_vars:
        if env.get(name):
            found |= _key_file_secrets(env[name])
    found |= _fetched_secrets
    return {v for v in found if len(v) >= _MIN_SECRET_LENGTH}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value replaced by ***."""
    text = str(text)
    # Longest first, so a secret containing another is replaced whole.
    for secret in sorted(secret_values(environ), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (with its args merged in) and traceback without secrets."""

    def __init__(self, name: str = "", environ: Mapping[str, str] | None = None) -> None:
        super().__init__(name)
        self.environ = environ

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record, self.environ)
        return True


def _redact_record(record: logging.LogRecord, environ: Mapping[str, str] | None = None) -> None:
    if getattr(record, "_hnpipe_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: log it as given rather than lose it
        message = f"{record.msg} {record.args}"
    record.msg, record.args = redact(message, environ), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text, environ)
    if record.stack_info:
        record.stack_info = redact(record.stack_info, environ)
    record._hnpipe_redacted = True


_installed: set[str] = set()


def install_log_redaction(logger_name: str = "hnpipe") -> None:
    """Redact every record logged under `logger_name` (the logger and all its children).

    A filter on a logger only sees records logged on that very logger, not its children's,
    so records are also redacted as they are created (the log record factory); idempotent.
    """
    if logger_name in _installed:
        return
    logging.getLogger(logger_name).addFilter(RedactingFilter())
    previous = logging.getLogRecordFactory()
    prefix = logger_name + "."

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name == logger_name or record.name.startswith(prefix):
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed.add(logger_name)


# -- params ------------------------------------------------------------------------------
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|secret|token|private_?key|(api|access|secret|signing|ssh)_?keys?(?![a-z0-9])"
    r"|credentials?|webhook",
)


def looks_like_secret_key(key: str) -> bool:
    """Whether a params-file key names a secret (such keys are refused: parameters are
    written into every executed notebook). `snowflake_env`-style maps of variable *names*
    must be exempted by the caller: their keys are settings such as 'password'."""
    normal = re.sub(r"[\s\-.]+", "_", str(key).strip().lower())
    return bool(_SECRET_KEY.search(normal) or normal in {"pwd", "passwd", "pass"} or normal.endswith("_pwd"))
