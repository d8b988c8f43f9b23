"""`hnpipe freshness`: say when the pipeline went quiet.

Alerts fire when a run fails; a scheduled run that never started fails nothing. This command
reads the run history (hnpipe.history, read-only) and exits 1, sending the failure alert
(hnpipe.alerts), when the last successful run of any dataset is older than --max-age, or
there is none; the production workflows run it on their own schedule, apart from the run.

    hnpipe freshness --env production --max-age 26h
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hnpipe import alerts, datasets, environments, history
from hnpipe.errors import HnpipeError, ParameterError
from hnpipe.warehouse import reader

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> timedelta:
    """'26h', '1d12h', '90m', '45s' as a timedelta; anything else refused in one line."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ParameterError(f"--max-age {text!r} is not a duration: use e.g. 26h, 1d12h, 90m or 45s")
    parts = {unit: int(value) for unit, value in zip(_UNITS.values(), match.groups()) if value}
    duration = timedelta(**parts)
    if duration <= timedelta(0):
        raise ParameterError(f"--max-age {text!r} must be longer than zero")
    return duration


def _age(delta: timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def stale(env: str, max_age: timedelta, now: datetime | None = None) -> tuple[list[str], list[str]]:
    """(lines for every dataset, the stale ones' lines) for `env`'s history."""
    now = now or datetime.now(timezone.utc)
    target = environments.target_for(env)
    with reader(env, "hnpipe freshness") as warehouse:
        latest = history.last_successes(warehouse, target)
    lines, late = [], []
    for dataset in datasets.dependency_order():
        row = latest.get(dataset.name)
        if row is None:
            line = f"{dataset.name}: no successful run recorded in {target}"
            late.append(line)
        else:
            finished = row["FINISHED_AT"].to_pydatetime()
            age = now - finished
            line = (f"{dataset.name}: last succeeded {finished:%Y-%m-%d %H:%M} UTC "
                    f"(run {row['RUN_ID']}), {_age(age)} ago")
            if age > max_age:
                late.append(line)
        lines.append(line)
    return lines, late


def add_arguments(parser) -> None:
    parser.add_argument("--env", choices=environments.ENVIRONMENTS,
                        help="whose history to check (default: HNPIPE_ENV, else local)")
    parser.add_argument("--max-age", required=True, metavar="DURATION",
                        help="the oldest a dataset's last successful run may be, e.g. 26h or 1d12h")


def main(args) -> int:
    max_age = parse_duration(args.max_age)  # before anything is opened
    env = args.env or environments.process_environment()
    lines, late = stale(env, max_age)
    for line in lines:
        print(line)
    if late:
        names = ", ".join(line.split(":")[0] for line in late)
        reason = f"no successful run within {args.max_age}: {'; '.join(late)}"
        alerts.notify_failure(env, f"freshness check ({names})", reason,
                              f"freshness {datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
        raise HnpipeError(f"stale in {env}: {names} (no successful run within {args.max_age}); see above")
    print(f"fresh: every dataset of {env} succeeded within {args.max_age}")
    return 0
