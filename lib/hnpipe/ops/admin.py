"""Branch clones: make, drop, list and prune the PRODUCTION_CLONE_<PR> databases.

Every pull request gets its own copy of production, `PRODUCTION_CLONE_<PR>`, which its branch
runs write into (HNPIPE_ENV=branch). CI makes it when the pull request opens or is pushed to,
and drops it when it closes; a nightly prune removes what those steps missed. The same
function, `run`, serves `hnpipe admin clone|drop|list|prune` and notebooks/admin.ipynb.

Who may do what. The acting environment is the process's HNPIPE_ENV, never a parameter, and
the rules are the same on both engines (a rehearsal on the embedded engine sets HNPIPE_ENV and
HNPIPE_PR_ID as CI would):

    action   production    branch (HNPIPE_PR_ID=N)    local, staging
    list     yes           yes                        yes
    clone    any PR        PR N only                  no
    drop     any PR        PR N only                  no
    prune    yes           no                         no

`list` is allowed everywhere because it only reads names, creation times and sizes (and the
admin notebook's default, `list`, must run on a laptop). Everything else is refused in one
line before the warehouse is opened. Only `PRODUCTION_CLONE_<digits>` is ever dropped: the
name is built from a checked pull-request number here, and both engines refuse any other.
Admin never writes PRODUCTION, so the embedded engine opens it read-only.

Prune. A clone is stale when

* it is older than `older_than_days` (by creation time). Every push re-clones, so an old clone
  belongs to a pull request nobody pushed to for that long and has drifted from production;
  dropping it loses nothing, the next push clones it afresh. Or when
* `keep_prs` is given and its pull request is not among them. CI passes the open pull
  requests: any other one was merged or closed, and its drop failed or never ran.

Whatever `keep_prs` says, a clone younger than `min_age_hours` (default 24) is kept: its pull
request may have been opened after CI listed the open ones, and a clone made seconds ago is
always in use (issue 19). `min_age_hours=0` (`--min-age-hours 0`) turns that off; a clone
whose age the engine does not report is judged by `keep_prs` alone.

An open pull request's clone is thus kept only while it is younger than the limit. Without
`keep_prs` only age counts, since an empty list cannot tell "no pull request is open" from
"not told"; when none is open, CI passes `--older-than 1`: every clone older than a day is
stale, and one made minutes ago (its pull request opened after the listing) is kept.
A clone whose creation time the engine does not report is never stale by age. Prune only
lists the stale clones unless `apply` is true.

Every action, done or refused, is logged by `_record`; once it reached the warehouse it is
also a row in the acting environment's PIPELINE_RUNS (`hnpipe history`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from hnpipe import config, environments, history, params
from hnpipe.environments import CLONE_NAME, CLONE_PREFIX
from hnpipe.errors import GuardError, HnpipeError, ParameterError, WarehouseError
from hnpipe.ops import handover
from hnpipe.ops.handover import DEFAULT_PIPELINE_ROLE
from hnpipe.params import params_for
from hnpipe.warehouse import engine_class, open_environment, spec_for
from hnpipe.warehouse.base import Warehouse

log = logging.getLogger("hnpipe.ops.admin")

PRODUCTION = "PRODUCTION"
# What admin.ipynb and `run` accept: the pipeline parameters plus the admin ones.
DECLARED = {**params.PARAMETERS, **params.ADMIN_PARAMETERS}
# Admin options that only mean something to some actions; setting them for another is a mistake.
_OPTION_ACTIONS = {"pr_id": ("clone", "drop"), "keep_prs": ("prune",), "apply": ("prune",),
                   "min_age_hours": ("prune",)}


@dataclass(frozen=True)
class Clone:
    """One PRODUCTION_CLONE_<PR> database, as the warehouse describes it."""

    database: str
    pr_id: int
    created: datetime | None  # UTC
    size_bytes: int | None  # None where the engine does not tell (Snowflake)
    age: timedelta | None


@dataclass(frozen=True)
class AdminResult:
    """What an admin action did: `clones` are the ones it concerns (list: all; clone: the new
    one; drop: the dropped one; prune: the stale ones), `changed` the databases it replaced or
    dropped, `reasons` why each pruned clone is stale."""

    action: str
    environment: str
    message: str
    ok: bool = True
    engine: str | None = None
    clones: tuple[Clone, ...] = ()
    changed: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per clone, for the notebook."""
        frame = pd.DataFrame({
            "PR": pd.array([c.pr_id for c in self.clones], dtype="Int64"),
            "DATABASE": pd.array([c.database for c in self.clones], dtype="string"),
            "CREATED": pd.to_datetime([c.created for c in self.clones], utc=True),
            "AGE_DAYS": pd.array([None if c.age is None else round(c.age / timedelta(days=1), 2)
                                  for c in self.clones], dtype="Float64"),
            "SIZE_BYTES": pd.array([c.size_bytes for c in self.clones], dtype="Int64"),
        })
        if self.action == "prune":
            frame["STALE_BECAUSE"] = pd.array([self.reasons.get(c.database) for c in self.clones], dtype="string")
            frame["DROPPED"] = [c.database in self.changed for c in self.clones]
        return frame

    def to_text(self) -> str:
        """The message, then one line per clone, for the command line."""
        if not self.clones:
            return self.message
        rows = [("PR", "DATABASE", "CREATED (UTC)", "AGE", "SIZE", *(("STALE BECAUSE",) if self.reasons else ()))]
        for c in self.clones:
            rows.append((
                str(c.pr_id), c.database,
                c.created.strftime("%Y-%m-%d %H:%M") if c.created else "?",
                _age_text(c.age), _size_text(c.size_bytes),
                *((self.reasons.get(c.database, ""),) if self.reasons else ()),
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return "\n".join([self.message, *lines])


# -- parameters --------------------------------------------------------------------------
def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """admin.ipynb's parameters from its globals(), validated (unknown injected names refused)."""
    config.load_env()
    return params.from_namespace(namespace, DECLARED)


def parameters(action: str, environ: Mapping[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Parameters for `run` outside a notebook: params/<HNPIPE_ENV>.yaml plus the admin options
    (so Snowflake credentials and branch_role come from the acting environment's file)."""
    config.load_env()
    env = environments.process_environment(environ)
    return {**params_for(env), "action": action, **options}


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    values = params.validate(values, declared=DECLARED)
    defaults = params.ADMIN_PARAMETERS
    for option, actions in _OPTION_ACTIONS.items():
        if values["action"] not in actions and values[option] != defaults[option].default:
            raise ParameterError(
                f"parameter {option}={values[option]!r} does not apply to {values['action']}: "
                f"it is for {' and '.join(actions)} only"
            )
    return values


# -- the guard ---------------------------------------------------------------------------
def authorize(action: str, env: str, pr: str | None, environ: Mapping[str, str] | None = None) -> None:
    """Refuse, in one line, an action the acting environment may not take (see the table above)."""
    if action == "list" or env == "production":
        return
    what = f"admin {action}" + (f" of {CLONE_PREFIX}{pr}" if pr else "")
    if action == "prune":
        raise GuardError(
            f"refused {what}: only HNPIPE_ENV=production may prune clones (this process runs as "
            f"HNPIPE_ENV={env}); run it in the production workflow"
        )
    if env == "branch":
        own = environments.pr_id(environ)
        if own is None:
            raise GuardError(
                f"refused {what}: HNPIPE_ENV=branch without HNPIPE_PR_ID; set HNPIPE_PR_ID={pr} "
                "(CI sets it from the pull request)"
            )
        if own != pr:
            raise GuardError(
                f"refused {what}: HNPIPE_ENV=branch for pull request {own} may {action} only "
                f"{CLONE_PREFIX}{own}; use --pr {own}, or run where HNPIPE_ENV=production"
            )
        return
    raise GuardError(
        f"refused {what}: HNPIPE_ENV={env} may only list clones; clone and drop run in CI "
        f"(HNPIPE_ENV=branch with HNPIPE_PR_ID=<PR>, or HNPIPE_ENV=production)"
    )


def pr_number(value: object, source: str = "--pr") -> int:
    """A pull-request number typed by a person: plain ASCII digits, no sign, no padding."""
    checked = environments.check_pr_id(value, source)
    if isinstance(value, str) and checked != value:  # check_pr_id forgives surrounding spaces
        raise GuardError(f"refused pull-request id {value!r} from {source}: digits only, e.g. 123")
    return int(checked)


def _pull_request(values: Mapping[str, Any], environ: Mapping[str, str] | None) -> str | None:
    """The pull request clone/drop act on: pr_id, else HNPIPE_PR_ID (or the CI's variables)."""
    if values["action"] not in ("clone", "drop"):
        return None
    if values["pr_id"] is not None:
        return environments.check_pr_id(values["pr_id"], "pr_id")
    pr = environments.pr_id(environ)
    if pr is None:
        raise ParameterError(
            f"admin {values['action']} needs a pull request: pass --pr N (pr_id=N in the "
            "notebook) or set HNPIPE_PR_ID"
        )
    return pr


def _clone_name(pr: str) -> str:
    name = environments.clone_database(pr)
    if not CLONE_NAME.fullmatch(name):  # cannot happen for a checked pr; never trust it anyway
        raise GuardError(f"refused {name!r}: only {CLONE_PREFIX}<digits> may be cloned or dropped")
    return name


# -- running an action -------------------------------------------------------------------
def run(values: Mapping[str, Any], *, environ: Mapping[str, str] | None = None,
        warehouse: Warehouse | None = None, now: datetime | None = None) -> AdminResult:
    """Do what values["action"] says, after validating the parameters and the guard.

    `values` are admin.ipynb's parameters (`notebook_parameters`) or `parameters(...)`;
    `warehouse` replaces the environment's own (tests), `now` the clock (ages).
    Raises HnpipeError with a one-line reason; records the action either way.
    """
    action = str(values.get("action"))
    env = "?"
    started = datetime.now(timezone.utc)
    connected = False
    try:
        values = _validated(values)
        action = values["action"]
        env = environments.process_environment(environ)
        if values["environment"] != env:
            raise GuardError(
                f"refused admin {action}: the parameters ask for environment "
                f"'{values['environment']}' but this process runs as HNPIPE_ENV={env}; use "
                f"environment='{env}' here, or run where HNPIPE_ENV={values['environment']} is set"
            )
        pr = _pull_request(values, environ)
        authorize(action, env, pr, environ)
        database = _clone_name(pr) if pr else None
        # Everything above is checked before the warehouse is opened; one given is the caller's to close.
        opened = contextlib.nullcontext(warehouse) if warehouse is not None else _connect(env, values, environ)
        with opened as warehouse:
            connected = True
            now = now or datetime.now(timezone.utc)
            if action == "clone":
                result = _clone(warehouse, env, database, values["branch_role"], now)
            elif action == "drop":
                result = _drop(warehouse, env, database, now)
            elif action == "list":
                clones = list_clones(warehouse, now)
                result = AdminResult(action, env, _count(clones, "clone") + " of PRODUCTION",
                                     engine=warehouse.engine, clones=tuple(clones))
            else:
                result = _prune(warehouse, env, values["older_than_days"], values["keep_prs"],
                                values["apply"], now, values["min_age_hours"])
    except HnpipeError as error:
        notes = _record(AdminResult(action, env, str(error), ok=False), values, started, connected)
        if notes:  # what recording or alerting had to say joins the one error line
            raise type(error)(f"{error} ({'; '.join(notes)})") from None
        raise
    _record(result, values, started, connected)
    return result


# The clones belong to the branch role, which builds them (ops/admin's clone on Snowflake: a
# database, then one table clone per table, all owned by their creator). SHOW DATABASES lists only
# databases the role holds a privilege on (https://docs.snowflake.com/en/sql-reference/sql/show)
# and DROP DATABASE needs ownership (https://docs.snowflake.com/en/sql-reference/sql/drop-database),
# so on Snowflake every admin action logs in with the branch environment's credentials
# (params/branch.yaml's names), whichever HNPIPE_ENV allowed it: as production's role the nightly
# prune would see no clone at all.
CLONE_OWNER = "branch"


def _connect(env: str, values: Mapping[str, Any], environ: Mapping[str, str] | None) -> Warehouse:
    if engine_class(spec_for(env, environ)).LOGS_IN:
        owner = values if env == CLONE_OWNER else params.params_for(CLONE_OWNER)
        values = {**values, "snowflake_env": owner.get("snowflake_env") or {}}
    # Admin never writes PRODUCTION (clone reads it, drop refuses it): open it read-only.
    return open_environment(env, values, notebook="admin", environ=environ, read_only_databases=(PRODUCTION,))


def list_clones(warehouse: Warehouse, now: datetime | None = None) -> list[Clone]:
    """Every PRODUCTION_CLONE_<PR> in the warehouse, by pull-request number."""
    now = now or datetime.now(timezone.utc)
    clones = [
        Clone(info.name, int(info.name.removeprefix(CLONE_PREFIX)), info.created, info.size_bytes,
              None if info.created is None else now - info.created)
        for info in warehouse.describe_databases() if CLONE_NAME.fullmatch(info.name)
    ]
    return sorted(clones, key=lambda clone: clone.pr_id)


def stale_clones(clones: Iterable[Clone], older_than_days: int, keep_prs: Sequence[int] = (),
                 min_age_hours: int = 24) -> dict[str, str]:
    """The clones prune would drop, each with why (the rules are in the module docstring)."""
    limit = timedelta(days=older_than_days)
    young = timedelta(hours=min_age_hours)
    keep = set(keep_prs)
    stale = {}
    for clone in clones:
        if min_age_hours and clone.age is not None and clone.age < young:
            continue  # too young: its pull request may have opened after the listing
        reasons = []
        if keep and clone.pr_id not in keep:
            reasons.append("pull request not open")
        if clone.age is not None and clone.age > limit:
            reasons.append(f"older than {older_than_days} days")
        if reasons:
            stale[clone.database] = "; ".join(reasons)
    return stale


def _clone(warehouse: Warehouse, env: str, database: str, branch_role: str, now: datetime) -> AdminResult:
    replaced = warehouse.database_exists(database)
    warehouse.clone_database(PRODUCTION, database)
    message = f"{'replaced' if replaced else 'created'} {database} as a fresh copy of {PRODUCTION}"
    if branch_role and warehouse.SUPPORTS_GRANTS:
        try:
            warehouse.grant_usage(database, branch_role)  # a clone does not keep database grants
        except HnpipeError as error:
            # A clone the branch cannot read is no use: drop it, so the branch run stops
            # with "run hnpipe admin clone first" rather than failing on permissions.
            try:
                warehouse.drop_database(database)
                undone = "dropped it again"
            except HnpipeError:
                undone = f"could not drop it again, drop it with `hnpipe admin drop --pr {database.removeprefix(CLONE_PREFIX)}`"
            raise WarehouseError(f"cloned {database} but could not grant usage to {branch_role} ({undone}): {error}") from None
        message += f"; usage granted to role {branch_role}"
    clone = [c for c in list_clones(warehouse, now) if c.database == database]
    return AdminResult("clone", env, message, engine=warehouse.engine, clones=tuple(clone), changed=(database,))


def _drop(warehouse: Warehouse, env: str, database: str, now: datetime) -> AdminResult:
    before = [c for c in list_clones(warehouse, now) if c.database == database]
    if warehouse.drop_database(database):
        return AdminResult("drop", env, f"dropped {database}", engine=warehouse.engine,
                           clones=tuple(before), changed=(database,))
    return AdminResult("drop", env, f"{database} does not exist; nothing to drop", engine=warehouse.engine)


def _prune(warehouse: Warehouse, env: str, older_than_days: int, keep_prs: Sequence[int], apply: bool,
           now: datetime, min_age_hours: int = 24) -> AdminResult:
    clones = list_clones(warehouse, now)
    reasons = stale_clones(clones, older_than_days, keep_prs, min_age_hours)
    stale = tuple(c for c in clones if c.database in reasons)
    if not apply:
        message = f"{_count(stale, 'stale clone')} of {len(clones)}; nothing dropped (apply to drop them)"
        return AdminResult("prune", env, message, engine=warehouse.engine, clones=stale, reasons=reasons)
    dropped, failures = [], []
    for clone in stale:
        # Each drop stands alone: one that fails does not keep the others.
        try:
            if warehouse.drop_database(clone.database):
                dropped.append(clone.database)
        except HnpipeError as error:
            failures.append(f"{clone.database}: {error}")
    if failures:
        raise WarehouseError(f"pruned {len(dropped)} of {len(stale)} stale clones ({', '.join(dropped) or 'none'}); "
                             f"could not drop {'; '.join(failures)}")
    message = f"dropped {_count(dropped, 'stale clone')} of {len(clones)}"
    return AdminResult("prune", env, message, engine=warehouse.engine, clones=stale,
                       changed=tuple(dropped), reasons=reasons)


def _record(result: AdminResult, values: Mapping[str, Any], started: datetime, connected: bool) -> list[str]:
    """The one place an admin action is recorded: a log line always, and a PIPELINE_RUNS row
    in the acting environment's own schema once the action reached the warehouse (a refusal
    before that promised to write nothing; `list` only reads). Returns the warnings recording
    raised, for the caller's one error line."""
    # INFO, refusals too: the command line already prints them once, on stderr.
    outcome = f"on {result.engine}" if result.ok else "refused or failed"
    log.info("admin %s by %s %s: %s", result.action, result.environment, outcome, result.message)
    if not connected or result.action == "list":
        return []
    with history.warnings_held(*history.SIDE_NOTE_LOGGERS) as notes:
        history.record_action(f"admin {result.action}", result.environment, ok=result.ok,
                              message=result.message, parameters=values, started=started,
                              notebook="admin")
    return notes


# -- formatting --------------------------------------------------------------------------
def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items) or 'no'} {noun}{'' if len(items) == 1 else 's'}"


def _age_text(age: timedelta | None) -> str:
    if age is None:
        return "?"
    hours = max(age, timedelta(0)) // timedelta(hours=1)
    return f"{hours // 24}d {hours % 24}h"


def _size_text(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# -- `hnpipe admin` ----------------------------------------------------------------------
_DAYS = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{clone,drop,list,prune,handover}")
    for name, help_text in (
        ("clone", "make PRODUCTION_CLONE_<PR> a fresh copy of PRODUCTION (replacing an earlier one)"),
        ("drop", "drop PRODUCTION_CLONE_<PR> (succeeds when it does not exist)"),
    ):
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--pr", metavar="N", help="the pull request's number (default: HNPIPE_PR_ID)")
    text = "list the clones with their pull request, creation time, age and size"
    actions.add_parser("list", help=text, description=text)
    text = "list (or with --apply, drop) stale clones: older than DAYS, or of pull requests not kept"
    prune = actions.add_parser("prune", help=text, description=text)
    prune.add_argument("--older-than", metavar="DAYS", default=str(params.ADMIN_PARAMETERS["older_than_days"].default),
                       help="clones older than this many days are stale (default: %(default)s)")
    prune.add_argument("--keep-pr", metavar="N", action="append", default=[],
                       help="an open pull request whose clone stays unless too old (repeat for each)")
    prune.add_argument("--min-age-hours", metavar="HOURS", default=str(params.ADMIN_PARAMETERS["min_age_hours"].default),
                       help="clones younger than this stay, whatever --keep-pr says; 0 turns it off (default: %(default)s)")
    prune.add_argument("--apply", action="store_true", help="drop the stale clones (default: only list them)")
    text = ("print (with --apply, run on Snowflake from production) the statements that hand "
            "PRODUCTION.HACKER_NEWS to IT: ownership, analysts' write access revoked, readers granted")
    handover = actions.add_parser("handover", help=text, description=text)
    handover.add_argument("--owner-role", required=True, metavar="ROLE", help="IT's role, the new owner")
    handover.add_argument("--reader-role", required=True, metavar="ROLE", help="the role granted read access")
    handover.add_argument("--analyst-role", action="append", default=[], metavar="ROLE",
                          help="a role whose write access is revoked (repeat for each)")
    handover.add_argument("--pipeline-role", default=DEFAULT_PIPELINE_ROLE, metavar="ROLE",
                          help="the role the production pipeline runs as; it keeps what a publish needs "
                               "(default: %(default)s, as snowflake/setup.sql makes it)")
    handover.add_argument("--apply", action="store_true", help="run the statements (default: only print them)")


def _handover(args) -> int:
    warehouse = None
    if args.apply:  # the production warehouse, with the credentials params/production.yaml names
        running = environments.process_environment()
        if running != "production":  # before asking for credentials or connecting
            raise GuardError(
                f"refused admin handover --apply: only HNPIPE_ENV=production may change production's "
                f"grants (this process runs as HNPIPE_ENV={running}); without --apply it only prints them"
            )
        warehouse = open_environment("production", params.params_for("production"))
    with contextlib.nullcontext() if warehouse is None else warehouse:
        statements = handover.lockdown(warehouse, it_role=args.owner_role, reader_role=args.reader_role,
                                       analyst_roles=args.analyst_role, pipeline_role=args.pipeline_role,
                                       apply=args.apply)
    print(handover.to_text(statements), end="")
    print(handover.follow_up(it_role=args.owner_role, pipeline_role=args.pipeline_role), end="")
    return 0


def main(args) -> int:
    if args.action == "handover":
        return _handover(args)
    # Options arrive as text and are checked here, so a bad one is a one-line HnpipeError.
    options: dict[str, Any] = {}
    if getattr(args, "pr", None) is not None:
        options["pr_id"] = pr_number(args.pr, "--pr")
    if args.action == "prune":
        if not _DAYS.fullmatch(args.older_than):
            raise ParameterError(f"refused --older-than {args.older_than!r}: use a whole number of days, e.g. 14")
        if not _DAYS.fullmatch(args.min_age_hours):
            raise ParameterError(f"refused --min-age-hours {args.min_age_hours!r}: use a whole number of hours, e.g. 24")
        options.update(older_than_days=int(args.older_than), apply=args.apply, min_age_hours=int(args.min_age_hours),
                       keep_prs=[pr_number(pr, "--keep-pr") for pr in args.keep_pr])
    print(run(parameters(args.action, **options)).to_text())
    return 0
