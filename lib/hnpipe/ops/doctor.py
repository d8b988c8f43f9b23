"""`hnpipe doctor [--env ENV] [--smoke]`: does this account let `ENV` do what hnpipe needs, and
nothing more? One line per check, pass or fail, with the fix. Exit 0 only when all pass.

On Snowflake it logs in with the environment's own credentials (the variables params/<env>.yaml
names) and checks, in order:

  login        how it logs in, by name (workload identity, key pair; a person's login, browser
               SSO, password + passcode or a password, fails outside local: the environment's
               job logs in as a TYPE = SERVICE user, which cannot use them) and that it can
  key file     the private key file is readable by its owner only (mode 600 or stricter)
  role         the session's role is the one the credentials name
  query tag    the session carries hnpipe's QUERY_TAG (env, command, git sha)
  timeout      the session's STATEMENT_TIMEOUT_IN_SECONDS is the one hnpipe set
  target       the database it writes exists (a branch: its clone; else run `hnpipe admin clone`)
  needs        SHOW GRANTS TO ROLE (and the roles granted to it) holds what the environment's
               steps need: snowflake/setup.sql's grants, per environment
  must not     the role holds no write privilege on another environment's database
               (branch, staging and local never on PRODUCTION)

`--smoke` then runs every statement form hnpipe sends, in a throwaway place the role owns, and
removes it afterwards, also when a step fails: production, staging and local use tables named
HNPIPE_SMOKE_<id>_* in their own schema; a branch a throwaway database HNPIPE_SMOKE_<id> (its
role may create databases, and a table clone of PRODUCTION checks it may read production). The
forms: CREATE TABLE, write_pandas of KIDS/PARTS lists into ARRAY columns and reading them back as
integer lists, TIME (TIMESTAMP_NTZ) and the DEAD/DELETED flags read back equal as UTC, the
quality-check SELECTs, RENAME (first publish), SWAP WITH (republish), RENAME to
a kept version, CTAS, COMMENT ON TABLE/COLUMN, CREATE TABLE .. CLONE, DROP TABLE, the stage
(CREATE STAGE, PUT of Parquet parts into two sub-folders and a manifest, LIST, GET, COPY INTO
with MATCH_BY_COLUMN_NAME and FILES naming sub-folders: TIME, lists and flags read back; a bad
file fails the COPY whole and leaves the table; REMOVE) (and, for a
branch, CREATE/DROP DATABASE, CREATE SCHEMA WITH MANAGED ACCESS and its future grant); then, for
production and staging, SHOW GRANTS ON the table just published: the roles snowflake/setup.sql's
schema-level future grants name (FUTURE_READERS) must hold SELECT on it. These are
the behaviours no fake can vouch for: docs/snowflake.md's statement table lists them as "checked by
`hnpipe doctor --smoke`".

On the embedded engine the same command checks the same matrix with files: which databases the
environment may write (its own) and which it may not (the others'), and `--smoke` runs every
warehouse operation in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from hnpipe import config, credentials, datasets, environments, params
from hnpipe.environments import CLONE_PREFIX, PUBLISHED_SCHEMA, Target
from hnpipe.errors import GuardError, HnpipeError
from hnpipe.items import ITEMS_SCHEMA
from hnpipe.stage import open_stage
from hnpipe.warehouse import Gate, WarehouseSpec, open_warehouse, spec_for

PASS, FAIL, SKIP = "ok", "FAIL", "skip"
DATABASES = ("LOCAL", "STAGING", "PRODUCTION")
# Privileges that let a role change what is in a database (on it, its schemas or its tables).
WRITE_PRIVILEGES = {"OWNERSHIP", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "CREATE TABLE", "CREATE SCHEMA",
                    "CREATE STAGE", "CREATE VIEW", "MODIFY", "ALL"}
SMOKE_PREFIX = "HNPIPE_SMOKE_"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status:<4}] {self.name:<11} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.status == FAIL and self.fix else text


class Report(list):
    """The checks in order; `ok` when every one passed."""

    @property
    def ok(self) -> bool:
        return bool(self) and all(check.status == PASS for check in self)

    def text(self) -> str:
        return "".join(check.line() + "\n" for check in self)


# -- what each environment needs, as SHOW GRANTS rows (privilege, granted_on, name) -----------
def needs(env: str, target: Target) -> list[tuple[str, set[tuple[str, str, str]]]]:
    """[(what, any-of grants)]: each need is met by one of its grants (OWNERSHIP always does,
    added by the caller). The same grants as snowflake/setup.sql, with the step that uses them."""
    database, schema = target.database, f"{target.database}.{target.schema}"
    if env == "branch":
        production = f"PRODUCTION.{PUBLISHED_SCHEMA}"
        return [
            ("CREATE DATABASE on the account (admin clone builds PRODUCTION_CLONE_<PR>)",
             {("CREATE DATABASE", "ACCOUNT", "")}),
            ("USAGE on database PRODUCTION (admin clone, hnpipe diff)", {("USAGE", "DATABASE", "PRODUCTION")}),
            (f"USAGE on schema {production} (admin clone lists its tables)", {("USAGE", "SCHEMA", production)}),
        ]
    schema_needs = [
        (f"USAGE on database {database} (every step: USE SCHEMA)", {("USAGE", "DATABASE", database)}),
    ]
    if env == "local":
        return schema_needs + [
            (f"CREATE SCHEMA on database {database} (the first local run creates {target})",
             {("CREATE SCHEMA", "DATABASE", database), ("OWNERSHIP", "SCHEMA", schema)}),
        ]
    return schema_needs + [
        (f"USAGE on schema {schema} (every step)", {("USAGE", "SCHEMA", schema)}),
        (f"CREATE TABLE on schema {schema} (publish: staging tables; history)", {("CREATE TABLE", "SCHEMA", schema)}),
        (f"CREATE STAGE on schema {schema} (publish: write_pandas' temporary stage; the fetch's HNPIPE_STAGE)", {("CREATE STAGE", "SCHEMA", schema)}),
    ]


def forbidden_databases(env: str) -> list[str]:
    own = {"local": "LOCAL", "staging": "STAGING", "production": "PRODUCTION"}.get(env)
    return [database for database in DATABASES if database != own]


def _inside(name: str, database: str) -> bool:
    return name == database or name.startswith(database + ".")


# -- the command -------------------------------------------------------------------------------
def run(env: str | None = None, *, smoke: bool = False, environ: Mapping[str, str] | None = None,
        connect: Callable[..., Any] | None = None) -> Report:
    """The checks for `env` (default: the process's HNPIPE_ENV)."""
    environ = os.environ if environ is None else environ
    running = environments.process_environment(environ)
    env = environments.check_environment_name(env or running, "--env")
    report = Report()
    try:
        target = environments.target_for(env, environ)
    except HnpipeError as error:
        report.append(Check("target", FAIL, str(error), "set HNPIPE_PR_ID for a branch"))
        return report
    spec = spec_for(env, environ)
    if spec.engine not in ACCOUNT_CHECKS:
        report.append(Check("engine", FAIL, f"hnpipe doctor has no checks for the {spec.engine} warehouse",
                            "add them to hnpipe.ops.doctor.ACCOUNT_CHECKS"))
        return report
    ACCOUNT_CHECKS[spec.engine](report, env, target, spec, smoke, environ, connect)
    return report


def _values(env: str) -> dict:
    try:
        config.load_env()
        path = config.params_dir() / f"{env}.yaml"
    except FileNotFoundError:
        return {}
    return params.load_params_file(path) if path.is_file() else {}


# -- Snowflake ---------------------------------------------------------------------------------
def _snowflake(report: Report, env: str, target: Target, spec: WarehouseSpec, smoke: bool,
               environ: Mapping[str, str], connect: Callable[..., Any] | None) -> None:
    names = _values(env).get("snowflake_env") or None
    try:
        settings = credentials.snowflake_credentials(names, environ)
    except HnpipeError as error:
        report.append(Check("login", FAIL, str(error), "set the variables params/" + env + ".yaml names"))
        return
    method = credentials.login_method(settings)
    key_file = settings.get("private_key_file")
    if key_file:
        mode = stat.S_IMODE(os.stat(key_file).st_mode)
        variable = {**credentials.SNOWFLAKE_SETTINGS, **(names or {})}["private_key_file"]
        report.append(Check("key file", PASS if not mode & 0o077 else FAIL,
                            f"{variable} is mode {mode:03o}" + ("" if mode & 0o077 else " (owner only)"),
                            f"chmod 600 \"${variable}\": anyone who can read the key can log in as {settings.get('user')}"))
    tag = {"env": env, "command": "doctor", "git_sha": config.git_sha()}
    guard = functools.partial(environments.check_write, env, environ=environ)
    warehouse = open_warehouse(spec, guard, env_names=names, query_tag=tag, connect=connect,
                               environ=None if environ is os.environ else environ)
    with warehouse:
        try:
            user, role = warehouse.execute("SELECT CURRENT_USER(), CURRENT_ROLE()", what="log in").fetchone()
        except HnpipeError as error:
            report.append(Check("login", FAIL, f"{method}: {error}",
                                "check the account, user and role; `hnpipe doctor` names the variables it read"))
            return
        person = method not in ("workload identity", "key pair")
        if person and env != "local":
            report.append(Check("login", FAIL, f"{user} logged in with {method}, a person's login", "use a key pair "
                                "(SNOWFLAKE_PRIVATE_KEY_FILE) or, in CI, SNOWFLAKE_AUTHENTICATOR=WORKLOAD_IDENTITY: "
                                "Snowflake blocks password sign-in for service users, "
                                f"and the {env} job logs in as one"))
        else:
            note = " (a person's own runs only)" if person else ""
            report.append(Check("login", PASS, f"{user} logged in with {method}{note}"))
        wanted = settings.get("role")
        report.append(Check("role", PASS if role == wanted else FAIL, f"the session's role is {role}",
                            f"grant role {wanted} to user {user} (snowflake/setup.sql)"))
        _session_checks(report, warehouse, tag)
        if not _target_check(report, warehouse, env, target):
            return
        rows = _grants(warehouse, role)
        _needs_check(report, warehouse, env, target, role, rows)
        _must_not_check(report, env, role, rows)
        if smoke:
            _smoke_snowflake(report, warehouse, env, target, environ)


def _session_checks(report: Report, warehouse, tag: Mapping[str, str]) -> None:
    value = warehouse.session_parameter("QUERY_TAG")
    try:
        ok = json.loads(value) == tag
    except ValueError:
        ok = False
    report.append(Check("query tag", PASS if ok else FAIL, f"QUERY_TAG is {value!r:.80}",
                        "nothing to set: hnpipe sets it at login; a failure means the session did not keep it"))
    timeout = warehouse.session_parameter("STATEMENT_TIMEOUT_IN_SECONDS")
    report.append(Check("timeout", PASS if timeout == str(warehouse.statement_timeout_s) else FAIL,
                        f"STATEMENT_TIMEOUT_IN_SECONDS is {timeout or 'unset'}",
                        "hnpipe sets it at login (HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S)"))


def _target_check(report: Report, warehouse, env: str, target: Target) -> bool:
    if warehouse.database_exists(target.database):
        report.append(Check("target", PASS, f"{target.database} exists and this role sees it"))
        return True
    if env == "branch":
        fix = f"run `hnpipe admin clone --pr {target.database.removeprefix(CLONE_PREFIX)}` first"
    else:
        fix = f"run snowflake/setup.sql (it creates {target.database} and grants this role USAGE on it)"
    report.append(Check("target", FAIL, f"{target.database} does not exist, or this role holds no privilege on it", fix))
    return False


def _grants(warehouse, role: str) -> set[tuple[str, str, str]]:
    """(privilege, granted_on, name) of `role` and every role granted to it."""
    found: set[tuple[str, str, str]] = set()
    pending, seen = [role], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for privilege, granted_on, name in warehouse.show_grants(current):
            # An account grant is named after the account (its locator): compare it by kind only.
            found.add((privilege, granted_on, "" if granted_on == "ACCOUNT" else name))
            if granted_on == "ROLE":
                pending.append(name)
    return found


def _needs_check(report: Report, warehouse, env: str, target: Target, role: str,
                 rows: set[tuple[str, str, str]]) -> None:
    missing = []
    for what, options in needs(env, target):
        owned = {("OWNERSHIP", kind, name) for _, kind, name in options}
        if not (rows & (options | owned)):
            missing.append(what)
    if env == "branch":
        # Every dataset production publishes: a table the role cannot read is one it cannot even
        # see (INFORMATION_SCHEMA and SHOW list only what a role holds a privilege on), so the
        # clone would silently lack it. Checked by name, from hnpipe's own dataset registry.
        prefix = f"PRODUCTION.{PUBLISHED_SCHEMA}."
        unreadable = [d.name for d in datasets.dependency_order()
                      if not rows & {("SELECT", "TABLE", prefix + d.name), ("OWNERSHIP", "TABLE", prefix + d.name)}]
        if unreadable:
            missing.append(f"SELECT on {', '.join(prefix + name for name in unreadable)} (admin clone: "
                           "CREATE TABLE .. CLONE; not granted, or production has not published it yet)")
    if missing:
        report.append(Check("needs", FAIL, f"{role} lacks {'; '.join(missing)}",
                            "run snowflake/setup.sql, or grant exactly these (its comments say which step uses each)"))
    else:
        report.append(Check("needs", PASS, f"{role} holds what {env} needs ({len(needs(env, target))} grants"
                            + (" and SELECT on production's tables)" if env == "branch" else ")")))


def _must_not_check(report: Report, env: str, role: str, rows: set[tuple[str, str, str]]) -> None:
    forbidden = forbidden_databases(env)
    bad = sorted(f"{privilege} on {kind.lower()} {name}" for privilege, kind, name in rows
                 if privilege in WRITE_PRIVILEGES and any(_inside(name, db) for db in forbidden))
    if bad:
        report.append(Check("must not", FAIL, f"{role} may write where {env} must not: {', '.join(bad[:3])}"
                            + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""),
                            f"revoke them: {env} writes only its own database"))
    else:
        report.append(Check("must not", PASS, f"{role} holds no write privilege on {', '.join(forbidden)}"))


def _smoke_frame(rows: int = 3) -> pd.DataFrame:
    """ITEMS' kinds of columns (hnpipe.items): lists, and TIME and the flags, whose load path
    (a Parquet timestamp into TIMESTAMP_NTZ, nullable booleans) no fake can vouch for: the
    connector has loaded timestamps wrong before (snowflake-connector-python issues 1677, 1820).
    TIME has microseconds, so a unit mistake (ms, ns) shows, and a missing value."""
    lists = pd.ArrowDtype(__import__("pyarrow").list_(__import__("pyarrow").int64()))
    micros = [1_700_000_000_123_456 + i * 86_400_000_000 for i in range(rows)]
    flags = [True, False, None] * rows
    return pd.DataFrame({
        "ID": pd.array(range(1, rows + 1), dtype="Int64"),
        "TITLE": pd.array([f"smoke {i}" for i in range(rows)], dtype="string"),
        "KIDS": pd.Series([[i, i + 1] for i in range(rows)], dtype=lists),
        "PARTS": pd.Series([None] + [[7]] * (rows - 1), dtype=lists),
        "TIME": pd.Series(pd.to_datetime(micros[:-1] + [None], unit="us", utc=True)).astype("datetime64[us, UTC]"),
        "DEAD": pd.array(flags[:rows], dtype="boolean"),
        "DELETED": pd.array(flags[1:rows + 1], dtype="boolean"),
    })


def _same(back: pd.Series, written: pd.Series) -> bool:
    """Equal values, missing where missing (timestamps compared as UTC instants)."""
    return back.astype(object).where(back.notna(), None).tolist() == \
        written.astype(object).where(written.notna(), None).tolist()


# Who reads what a publish creates, through snowflake/setup.sql's schema-level future grants
# (GRANT SELECT ON FUTURE TABLES IN SCHEMA ...). SHOW GRANTS TO ROLE does not list future grants,
# so the smoke checks a table it has just published instead.
FUTURE_READERS = {"production": ("HNPIPE_BRANCH", "HNPIPE_READER"), "staging": ("HNPIPE_READER",)}


def _smoke_snowflake(report: Report, warehouse, env: str, target: Target, environ: Mapping[str, str]) -> None:
    suffix = secrets.token_hex(3).upper()
    if env == "branch":
        place = Target(f"{SMOKE_PREFIX}{suffix}", PUBLISHED_SCHEMA)
        warehouse = warehouse.with_guard(functools.partial(_only, place))
    else:
        place = target
    prefix = f"{SMOKE_PREFIX}{suffix}"
    steps: list[str] = []
    try:
        if env == "branch":
            warehouse.execute(f'CREATE DATABASE "{place.database}"', what="create a throwaway database")
            steps.append("CREATE DATABASE")
            warehouse.execute(f'CREATE SCHEMA "{place.database}"."{place.schema}" WITH MANAGED ACCESS',
                              what="create its schema")
            steps.append("CREATE SCHEMA WITH MANAGED ACCESS")
            production = warehouse.list_tables(Target("PRODUCTION", PUBLISHED_SCHEMA))
            if production:
                first = sorted(production)[0]
                warehouse.clone_table(Target("PRODUCTION", PUBLISHED_SCHEMA), first, place, f"{prefix}_CLONED")
                steps.append(f"table clone of PRODUCTION.{PUBLISHED_SCHEMA}.{first}")
        else:
            warehouse.ensure_schema(place)
        _smoke_forms(warehouse, place, prefix, steps)
        _smoke_stage(warehouse, place, prefix, steps)
        _future_readers(warehouse, env, place, prefix, steps)
    except HnpipeError as error:
        report.append(Check("smoke", FAIL, f"failed after {len(steps)} statement forms "
                            f"({', '.join(steps) or 'none'}): {error}",
                            "grant what the failing statement needs (snowflake/setup.sql), then run again"))
    else:
        report.append(Check("smoke", PASS, f"{len(steps)} statement forms ran: {', '.join(steps)}"))
    finally:
        leftovers = _clean_up(warehouse, env, place, prefix)
        report.append(Check("clean up", PASS if not leftovers else FAIL,
                            "the throwaway objects are gone" if not leftovers else f"left behind: {', '.join(leftovers)}",
                            "drop them by hand"))


def _only(place: Target, actual: Target) -> None:
    if actual != place:
        raise GuardError(f"refused write to {actual}: hnpipe doctor --smoke writes only {place}")


def _smoke_forms(warehouse, place: Target, prefix: str, steps: list[str]) -> None:
    table = f"{prefix}_ITEMS"
    frame = _smoke_frame()
    unique = Gate("id_unique", "SELECT ID FROM {table} GROUP BY ID HAVING COUNT(*) > 1")
    warehouse.publish_frame(place, table, frame, f"{prefix}R1", gates=[unique], keep_versions=1)
    steps.append("CREATE TABLE + write_pandas (ARRAY) + checks + RENAME")
    back = warehouse.read_table(place, table)
    if [list(v) for v in back["KIDS"]] != [list(v) for v in frame["KIDS"]] or back["PARTS"].iloc[0] is not pd.NA:
        raise HnpipeError(f"KIDS/PARTS read back as {back['KIDS'].tolist()!r:.80}, not the integer lists written")
    steps.append("read ARRAY back as integer lists")
    # TIMESTAMP_NTZ holds UTC wall time and reads back labelled UTC: the instants must match.
    if str(back["TIME"].dtype) != "datetime64[us, UTC]" or not _same(back["TIME"], frame["TIME"]):
        raise HnpipeError(f"TIME read back as {back['TIME'].tolist()!r:.120}, not the UTC times written "
                          f"{frame['TIME'].tolist()!r:.120}")
    for flag in ("DEAD", "DELETED"):
        if not _same(back[flag], frame[flag]):
            raise HnpipeError(f"{flag} read back as {back[flag].tolist()!r}, not {frame[flag].tolist()!r}")
    steps.append("read TIME (UTC) and the flags back")
    warehouse.publish_frame(place, table, frame.iloc[:2], f"{prefix}R2", gates=[unique], keep_versions=1)
    steps.append("SWAP WITH + RENAME to a kept version")
    warehouse.publish_query(place, f"{prefix}_COPY", f'SELECT * FROM "{table}"', f"{prefix}R3")
    steps.append("CTAS")
    warehouse.comment_table(place, table, "hnpipe doctor smoke test", {"ID": "an id"})
    steps.append("COMMENT ON TABLE/COLUMN")
    warehouse.clone_table(place, table, place, f"{prefix}_CLONE")
    steps.append("CREATE TABLE .. CLONE")
    warehouse.drop_table(place, f"{prefix}_CLONE")
    steps.append("DROP TABLE")


def _stage_batch(frame: pd.DataFrame):
    """The smoke frame as one ITEMS record batch (the columns it lacks empty), as a fetch writes it."""
    import pyarrow as pa

    full = pd.DataFrame({name: frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
                         for name in ITEMS_SCHEMA.names})
    return pa.RecordBatch.from_pandas(full, schema=ITEMS_SCHEMA, preserve_index=False)


def _smoke_stage(warehouse, place: Target, prefix: str, steps: list[str]) -> None:
    """The stage as a run and a merge use it (hnpipe.warehouse.snowflake_stage): CREATE STAGE,
    PUT parts into two sub-folders and a manifest, LIST, GET, COPY INTO a staging table with
    MATCH_BY_COLUMN_NAME and FILES naming sub-folders, TIME (a Parquet timestamp into
    TIMESTAMP_NTZ), lists and flags read back; a bad file fails the COPY whole; REMOVE."""
    frame = _smoke_frame()
    stage = open_stage(warehouse, place)
    folder = f"doctor/{prefix}"
    files = []
    for sub, rows in (("a", frame.iloc[:2]), ("b", frame.iloc[2:])):
        writer = stage.writer(f"{folder}/{sub}")
        writer(_stage_batch(rows.reset_index(drop=True)))
        files += writer.close()
    stage.write_manifest(folder, {"smoke": prefix})
    steps.append("CREATE STAGE + PUT (AUTO_COMPRESS = FALSE)")
    listed = stage.listing(folder)
    if listed.get("a/part-000001.parquet") != files[0].stat().st_size or "b/part-000001.parquet" not in listed:
        raise HnpipeError(f"LIST of the stage gave {listed!r:.200}, not the two parts just sent")
    if stage.read_manifest(folder) != {"smoke": prefix}:
        raise HnpipeError("GET of the manifest just sent did not give it back")
    steps.append("LIST + GET")
    table = f"{prefix}_STAGED"
    stage.publish(warehouse, table, files, f"{prefix}R5", gates=(), keep_versions=None)
    back = warehouse.read_table(place, table)
    if str(back["TIME"].dtype) != "datetime64[us, UTC]" or not _same(back["TIME"], frame["TIME"]):
        raise HnpipeError(f"TIME loaded by COPY read back as {back['TIME'].tolist()!r:.120}, not the UTC times "
                          f"written {frame['TIME'].tolist()!r:.120} (check USE_LOGICAL_TYPE)")
    if [list(v) for v in back["KIDS"]] != [list(v) for v in frame["KIDS"]] or not _same(back["DEAD"], frame["DEAD"]):
        raise HnpipeError(f"KIDS/DEAD loaded by COPY read back as {back['KIDS'].tolist()!r:.80}, {back['DEAD'].tolist()!r}")
    steps.append("COPY INTO .. MATCH_BY_COLUMN_NAME (FILES in sub-folders; TIME, lists, flags)")
    bad = stage.path(f"{folder}/c") / "part-000001.parquet"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"PAR1 not a parquet file PAR1")
    stage.files.upload(f"{folder}/c/part-000001.parquet", bad)
    try:
        stage.publish(warehouse, table, [*files, bad], f"{prefix}R6", gates=(), keep_versions=None)
    except HnpipeError:
        pass
    else:
        raise HnpipeError("COPY loaded a stage with a bad file: ON_ERROR = ABORT_STATEMENT did not hold")
    if len(warehouse.read_table(place, table)) != len(frame):
        raise HnpipeError("a failed COPY changed the table it was to replace")
    steps.append("a bad file fails the COPY whole")
    stage.remove(folder)
    if stage.listing(folder):
        raise HnpipeError("REMOVE left files in the stage")
    steps.append("REMOVE")
    for empty in (stage.path("doctor"), stage.root, stage.root.parent):  # the local folders, when nothing else is there
        with contextlib.suppress(OSError):
            empty.rmdir()


def _future_readers(warehouse, env: str, place: Target, prefix: str, steps: list[str]) -> None:
    """The table the smoke published (created by the publish's swap) is readable by the roles
    the schema's future grants name: branch clones and readers keep working after a publish."""
    readers = FUTURE_READERS.get(env, ())
    if not readers:
        return
    table = f"{prefix}_ITEMS"
    cursor = warehouse.execute(f'SHOW GRANTS ON TABLE "{place.database}"."{place.schema}"."{table}"',
                               what=f"list the grants on {table}")
    columns = [column[0].lower() for column in cursor.description]
    privilege, grantee = columns.index("privilege"), columns.index("grantee_name")
    selecting = {str(row[grantee]).replace('"', "") for row in cursor.fetchall() if row[privilege] == "SELECT"}
    missing = [role for role in readers if role not in selecting]
    if missing:
        raise HnpipeError(f"{', '.join(missing)} cannot SELECT the newly published {table}: the future "
                          f"grants on {place} are missing (run snowflake/setup.sql)")
    steps.append(f"future grants: {' and '.join(readers)} may SELECT the new table")


def _clean_up(warehouse, env: str, place: Target, prefix: str) -> list[str]:
    """Drop everything the smoke made; returns what could not be dropped."""
    with contextlib.suppress(HnpipeError):
        if env == "branch":
            warehouse.execute(f'DROP DATABASE IF EXISTS "{place.database}"', what="drop the throwaway database")
            return [place.database] if warehouse.database_exists(place.database) else []
        with contextlib.suppress(HnpipeError):  # the stage files, if a step failed before REMOVE
            open_stage(warehouse, place).remove(f"doctor/{prefix}")
        for name in warehouse.list_tables(place, bookkeeping=True):
            if name.startswith(prefix):
                warehouse.drop_table(place, name)
        return [name for name in warehouse.list_tables(place, bookkeeping=True) if name.startswith(prefix)]
    return [place.database if env == "branch" else f"{place}.{prefix}_*"]


# -- embedded ----------------------------------------------------------------------------------
def _embedded(report: Report, env: str, target: Target, spec: WarehouseSpec, smoke: bool,
              environ: Mapping[str, str], connect: Callable[..., Any] | None) -> None:
    folder = Path(spec.location)
    report.append(Check("engine", PASS, f"embedded DuckDB in {folder}"))
    parent = folder if folder.exists() else next((p for p in folder.parents if p.exists()), folder)
    writable = parent.is_dir() and os.access(parent, os.W_OK)
    report.append(Check("files", PASS if writable else FAIL, f"{target.database}.duckdb can be written in {parent}",
                        f"make {parent} a writable directory, or set HNPIPE_WAREHOUSE=duckdb:<a writable directory>"))
    others = [Target(database, PUBLISHED_SCHEMA) for database in forbidden_databases(env)]
    if env != "branch":
        others.append(Target(f"{CLONE_PREFIX}1", PUBLISHED_SCHEMA))
    allowed = _may_write(env, target, environ)
    refused = [other.database for other in others if not _may_write(env, other, environ)]
    report.append(Check("needs", PASS if allowed else FAIL, f"{env} may write {target}", "see environments.check_write"))
    report.append(Check("must not", PASS if len(refused) == len(others) else FAIL,
                        f"{env} is refused writes to {', '.join(refused)}" if refused
                        else f"{env} may write others' databases",
                        "see environments.check_write"))
    if smoke:
        scratch = Path(tempfile.mkdtemp(prefix="hnpipe-doctor-"))
        steps: list[str] = []
        try:
            if env == "branch":
                seed = open_warehouse(WarehouseSpec(spec.engine, str(scratch)))
                seed.publish_frame(Target("PRODUCTION", PUBLISHED_SCHEMA), "ITEMS", _smoke_frame(), "SEED")
                seed.clone_database("PRODUCTION", target.database)
                steps.append("clone")
            guard = functools.partial(environments.check_write, env, environ=environ)
            warehouse = open_warehouse(WarehouseSpec(spec.engine, str(scratch)), write_guard=guard)
            _smoke_embedded(warehouse, target, steps)
        except HnpipeError as error:
            report.append(Check("smoke", FAIL, f"failed after {', '.join(steps) or 'nothing'}: {error}"))
        else:
            report.append(Check("smoke", PASS, f"{len(steps)} operations ran in a scratch copy: {', '.join(steps)}"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            report.append(Check("clean up", PASS if not scratch.exists() else FAIL, "the scratch directory is gone"))


def _may_write(env: str, target: Target, environ: Mapping[str, str]) -> bool:
    try:
        environments.check_write(env, target, environ)
    except GuardError:
        return False
    return True


def _smoke_embedded(warehouse, target: Target, steps: list[str]) -> None:
    table = f"{SMOKE_PREFIX}ITEMS"
    frame = _smoke_frame()
    warehouse.publish_frame(target, table, frame, "R1", keep_versions=1)
    steps.append("publish (first)")
    back = warehouse.read_table(target, table)
    if [list(v) for v in back["KIDS"]] != [list(v) for v in frame["KIDS"]]:
        raise HnpipeError("KIDS read back differently from what was written")
    steps.append("read lists back")
    warehouse.publish_frame(target, table, frame.iloc[:2], "R2", keep_versions=1)
    steps.append("publish (swap, version kept)")
    warehouse.publish_query(target, f"{table}_COPY", f"SELECT * FROM {table}", "R3")
    steps.append("publish from SQL")
    warehouse.comment_table(target, table, "hnpipe doctor smoke test", {"ID": "an id"})
    steps.append("comments")


# -- command line ------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--env", choices=environments.ENVIRONMENTS, default=None,
                        help="the environment to check (default: HNPIPE_ENV, else local)")
    parser.add_argument("--smoke", action="store_true",
                        help="also run every statement form hnpipe sends in a throwaway place, removed afterwards")


def main(args) -> int:
    report = run(args.env, smoke=args.smoke)
    print(f"hnpipe doctor --env {args.env or environments.process_environment()}"
          + (" --smoke" if args.smoke else ""))
    print(report.text(), end="")
    if not report.ok:
        failed = [check.name for check in report if check.status == FAIL]
        raise HnpipeError(f"doctor: {len(failed)} of {len(report)} checks failed ({', '.join(failed)})")
    return 0


# The account checks are the engine's own by nature (roles and grants on Snowflake, files on the
# embedded engine): this table is the one place doctor looks an engine up by name.
ACCOUNT_CHECKS: dict[str, Callable[..., None]] = {"snowflake": _snowflake, "duckdb": _embedded}
