"""Failure alerts: a Slack message when a run fails in staging, production or a branch.

Messages go to the Slack incoming webhook in HNPIPE_SLACK_WEBHOOK_URL (the environment or
.env). The URL is a secret: it is never logged, shown or stored, and every message passes
`credentials.redact`. Set HNPIPE_SLACK_NOTIFY_SUCCESS=1 to hear about successful runs too.
Local runs never alert; without the variable nothing is sent.

Who sends: `hnpipe run` sends one message per failed run (it stops at the first failing
notebook); a notebook run any other way (plain papermill, JupyterLab) sends one per failed
dataset from its kernel; restores and admin actions through `history.recording`.

Sending is best effort and quick (HNPIPE_SLACK_TIMEOUT_S, default 5 s): a webhook that
refuses, fails or times out is logged as one warning without the URL, and the run's own
error and exit status stay exactly what they were.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

from hnpipe import config, credentials
from hnpipe.errors import HnpipeError

log = logging.getLogger("hnpipe.alerts")

WEBHOOK_VARIABLE = "HNPIPE_SLACK_WEBHOOK_URL"
SUCCESS_VARIABLE = "HNPIPE_SLACK_NOTIFY_SUCCESS"
TIMEOUT_VARIABLE = "HNPIPE_SLACK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 5.0
ALERTING_ENVIRONMENTS = ("staging", "production", "branch")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    if environ is not None:
        return environ
    try:
        config.load_project_env()  # the webhook may live in .env
    except HnpipeError:
        pass  # a refused .env: the command has said so already; alerting must not fail on it
    return os.environ


def _slack_text(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions); show them as typed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def failure_message(env: str, what: str, error: str, run_id: str, notebook: str | None) -> str:
    lines = [
        f":rotating_light: hnpipe {what} failed in {env}",
        f"error: {error}",
        f"run: {run_id}",
        f"executed notebook: {notebook or 'not kept'}",
    ]
    return "\n".join(lines)


def success_message(env: str, what: str, run_id: str, detail: str = "") -> str:
    return "\n".join([f":white_check_mark: hnpipe {what} succeeded in {env}", f"run: {run_id}",
                      *([detail] if detail else [])])


def notify_failure(env: str, what: str, error: str, run_id: str, notebook: str | None = None,
                   environ: Mapping[str, str] | None = None) -> bool:
    """Alert that `what` (a dataset, or e.g. 'restore ITEMS') failed; True if Slack took it."""
    if env not in ALERTING_ENVIRONMENTS:
        return False
    return post(failure_message(env, what, error, run_id, notebook), environ)


def notify_success(env: str, what: str, run_id: str, detail: str = "",
                   environ: Mapping[str, str] | None = None) -> bool:
    """Announce a success, only where HNPIPE_SLACK_NOTIFY_SUCCESS=1; True if Slack took it."""
    if env not in ALERTING_ENVIRONMENTS or _environ(environ).get(SUCCESS_VARIABLE, "").strip() != "1":
        return False
    return post(success_message(env, what, run_id, detail), environ)


def post(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `text` (redacted) to the webhook; never raises, logs why it could not."""
    import requests

    env = _environ(environ)
    url = (env.get(WEBHOOK_VARIABLE) or "").strip()
    if not url:
        log.debug("no %s set: alert not sent", WEBHOOK_VARIABLE)
        return False
    # Redact with the process's secrets and the caller's (tests pass their own environ).
    text = credentials.redact(credentials.redact(text), env)
    try:
        response = requests.post(url, json={"text": _slack_text(text)}, timeout=_timeout(env))
    except requests.RequestException as exc:
        # The exception's text names the URL: log its kind only.
        log.warning("Slack alert not delivered (%s from the %s webhook)", type(exc).__name__, WEBHOOK_VARIABLE)
        return False
    except Exception as exc:  # e.g. a malformed URL: never let an alert break a run
        log.warning("Slack alert not delivered (%s; check %s)", type(exc).__name__, WEBHOOK_VARIABLE)
        return False
    if response.status_code != 200:
        log.warning("Slack alert not delivered: the %s webhook answered HTTP %s", WEBHOOK_VARIABLE,
                    response.status_code)
        return False
    return True


def _timeout(env: Mapping[str, str]) -> float:
    raw = env.get(TIMEOUT_VARIABLE)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 60:
        log.warning("ignored %s=%r: use seconds from 0 to 60; using %g", TIMEOUT_VARIABLE, raw, DEFAULT_TIMEOUT_S)
        return DEFAULT_TIMEOUT_S
    return seconds
