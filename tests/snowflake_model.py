"""A test model of Snowflake's ownership and privilege rules (a test fake, not Snowflake).

No Snowflake account is reachable from the tests. fakesnow runs the data path but knows no
roles, and `snowflake_fakes.RecordingConnection` only records SQL. This module holds one
account's databases, schemas, tables, roles and grants, and a DB-API-like connection per role
that executes the statement forms hnpipe sends (and the ones snowflake/setup.sql and the tests
use) and refuses them the way Snowflake's documentation says Snowflake does. Each rule cites
the page it comes from:

R1  The role that creates an object owns it (OWNERSHIP); the owner has every privilege on it.
    https://docs.snowflake.com/en/user-guide/security-access-control-overview
R2  A database clone's schemas and tables keep their source's grants, and the container clone
    itself does not inherit the source container's grants; ownership of the children is not
    transferred (the field report quoted in issue 9: "all of the tables are still owned by the
    PROD role"). https://docs.snowflake.com/en/user-guide/object-clone
R3  CREATE TABLE .. CLONE copies no grants unless COPY GRANTS is given (and then never
    OWNERSHIP); the clone is a new object, owned by its creator (R1); reading the source needs
    SELECT on it. https://docs.snowflake.com/en/user-guide/object-clone
R4  ALTER TABLE .. SWAP WITH needs OWNERSHIP of both tables, and grants stay with the table
    objects, i.e. they move with the data to the other name.
    https://docs.snowflake.com/en/sql-reference/sql/alter-table (secondary: "You must have the
    ownership privilege on the tables you are swapping", https://stephenallwright.com/snowflake-swap-table/;
    "transferring all properties, including access privileges",
    https://readmedium.com/snowflake-swap-with-the-common-misconception-1cd99545fe6a).
    hnpipe doctor --smoke checks it on a real account.
R5  DROP DATABASE / DROP TABLE / RENAME / COMMENT ON need OWNERSHIP of the object.
    https://docs.snowflake.com/en/sql-reference/sql/drop-database,
    https://docs.snowflake.com/en/user-guide/security-access-control-privileges
    RENAME TO also needs CREATE TABLE on the schema ("To rename a table, you must have the
    CREATE TABLE privilege on the schema for the table"):
    https://docs.snowflake.com/en/sql-reference/sql/alter-table (access control requirements)
R6  SHOW DATABASES (any SHOW) returns only objects on which the current role holds at least one
    privilege (MANAGE GRANTS sees all). https://docs.snowflake.com/en/sql-reference/sql/show
R7  Future grants: when a schema has future grants for an object type, the database-level future
    grants for that type are ignored in that schema.
    https://docs.snowflake.com/en/sql-reference/sql/grant-privilege (usage notes),
    https://docs.snowflake.com/en/release-notes/bcr-bundles/2025_01/bcr-1870
R8  GRANT OWNERSHIP .. COPY CURRENT GRANTS moves ownership, keeping the other grants; REVOKE
    CURRENT GRANTS drops them; with neither, the statement fails when the object has grants
    ("fails if existing outbound privileges on the object are neither revoked nor copied").
    https://docs.snowflake.com/en/sql-reference/sql/grant-ownership (usage notes)
    Who may grant: the owner of the object or a role with MANAGE GRANTS; future grants need
    MANAGE GRANTS. In a managed access schema object owners lose that: only the schema's owner
    or MANAGE GRANTS may grant on its objects, future grants included, and transfer them.
    https://docs.snowflake.com/en/user-guide/security-access-control-overview#managed-access-schemas
    (quoted verbatim at https://hub.steampipe.io/mods/turbot/snowflake_compliance/controls/control.security_overview_iam_schema_managed_access)
R9  Role hierarchy: a role granted to another role passes on all its privileges (ownership
    included). https://docs.snowflake.com/en/user-guide/security-access-control-overview
R10 write_pandas loads through a temporary stage it creates in the table's schema (CREATE STAGE)
    and then COPY INTO the table (INSERT).
    https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api
R11 Objects are found by schema: USE SCHEMA needs USAGE on the database and the schema.
    https://docs.snowflake.com/en/user-guide/security-access-control-privileges
R12 Not a rule the model enforces: IDENTIFIER() takes a bound name "in some cases"
    (https://docs.snowflake.com/en/sql-reference/identifier-literal); hnpipe no longer relies on
    it for names, and tests/test_snowflake_lifecycle.py scans that none is left in DDL.
R14 Internal named stages (CREATE STAGE, PUT, LIST, GET, REMOVE, COPY INTO .. FROM @stage): the
    files and the statement forms are tests/snowflake_stages.py's (its rules S1-S8 cite their
    pages); this model adds who may: CREATE STAGE on the schema to create one, the stage's
    owner or READ (LIST, GET, COPY) / WRITE (PUT, REMOVE) grants on it, INSERT on COPY's table.
    https://docs.snowflake.com/en/user-guide/security-access-control-privileges
R13 Logins (SnowflakeModel.connector): a WORKLOAD_IDENTITY login presents an OIDC token and
    Snowflake signs in the service user whose workload identity has the token's issuer and
    subject (one literal SUBJECT, no pattern; audience snowflakecomputing.com unless
    OIDC_AUDIENCE_LIST says otherwise). A token no user trusts is refused, and so is one naming
    a user that does not trust it. Two users trusting one subject is refused too: the docs
    say nothing of which one it would pick. A named identity (ADD WORKLOAD IDENTITY) cannot be
    added twice. https://docs.snowflake.com/en/user-guide/workload-identity-federation,
    https://docs.snowflake.com/en/sql-reference/sql/alter-user,
    https://docs.snowflake.com/sql-reference/sql/alter-user-add-workload-identity
    The role the connection names must be granted to the user.

Rows are not stored, only counts; the quality checks always pass. What it does not model:
time travel, transactions (BEGIN/COMMIT are accepted), column types, secondary roles (recorded,
not applied: a session holds the role it names, as with DEFAULT_SECONDARY_ROLES = ()).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import snowflake.connector.errors
from snowflake_stages import Stages, matched_columns

# A name, double-quoted as hnpipe writes it, or bare upper case as snowflake/setup.sql does
# (the same object in Snowflake).
NAME = r'"?([A-Z][A-Z0-9_]*)"?'
_clock = itertools.count()
EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)


class InsufficientPrivileges(snowflake.connector.errors.ProgrammingError):
    """What Snowflake raises when the role lacks a privilege (error 003001)."""

    def __init__(self, message: str) -> None:
        super().__init__(msg=f"SQL access control error: Insufficient privileges to operate on {message}",
                         errno=3001)


class DoesNotExist(snowflake.connector.errors.ProgrammingError):
    def __init__(self, message: str) -> None:
        super().__init__(msg=f"SQL compilation error: {message} does not exist or not authorized.", errno=2003)


def _now() -> datetime:
    return EPOCH + timedelta(minutes=next(_clock))


@dataclass
class Grants:
    """privilege -> roles holding it on one object (OWNERSHIP is the `owner` field instead)."""

    owner: str
    granted: dict[str, set[str]] = field(default_factory=dict)

    def give(self, privilege: str, role: str) -> None:
        self.granted.setdefault(privilege, set()).add(role)

    def take(self, privilege: str, role: str) -> None:
        self.granted.get(privilege, set()).discard(role)

    def roles(self) -> set[str]:
        return {self.owner} | {role for roles in self.granted.values() for role in roles}

    def copy(self) -> Grants:
        return Grants(self.owner, {p: set(r) for p, r in self.granted.items()})


@dataclass
class Table:
    grants: Grants
    rows: int = 0
    comment: str | None = None
    created: datetime = field(default_factory=_now)
    columns: list[tuple[str, int]] = field(default_factory=list)  # (name, type code) when known
    data: list[tuple] = field(default_factory=list)  # rows loaded by write_pandas, as Snowflake returns them

    def copy_data_from(self, other: Table) -> None:
        self.columns, self.data, self.rows = list(other.columns), list(other.data), other.rows


# Column types of hnpipe's DDL -> the connector's type codes (snowflake.connector.constants).
_TYPE_CODES = {"NUMBER": 0, "FLOAT": 1, "VARCHAR": 2, "BOOLEAN": 13, "TIMESTAMP_NTZ": 8, "ARRAY": 10, "INT": 0}


def _cell(value: Any) -> Any:
    """A frame cell as the connector returns it: ARRAY as JSON text, missing as None."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, (str, bytes))
                                            and getattr(value, "ndim", 0) == 1):
        return json.dumps([int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)])
    try:
        import pandas as pd

        if value is None or pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value


@dataclass
class Schema:
    grants: Grants
    tables: dict[str, Table] = field(default_factory=dict)
    future: dict[str, set[str]] = field(default_factory=dict)  # TABLES privilege -> roles
    managed: bool = False


@dataclass
class Database:
    grants: Grants
    schemas: dict[str, Schema] = field(default_factory=dict)
    future: dict[str, set[str]] = field(default_factory=dict)  # db-level future TABLES grants
    created: datetime = field(default_factory=_now)


class SnowflakeModel:
    """One account: databases, the roles' account privileges and the role hierarchy."""

    def __init__(self) -> None:
        self.databases: dict[str, Database] = {}
        self.account: dict[str, set[str]] = {}  # role -> account privileges (CREATE DATABASE, MANAGE GRANTS)
        self.parents: dict[str, set[str]] = {}  # role -> roles granted to it (R9)
        self.roles: set[str] = {"ACCOUNTADMIN", "SECURITYADMIN", "SYSADMIN", "PUBLIC"}
        self.log: list[tuple[str, str]] = []  # (role, sql) of every statement that succeeded
        self.stage_rules = Stages()  # R14: the account's named stages and their files
        self.users: dict[str, set[str]] = {}  # user -> roles granted to it
        # R13: user -> workload identity name (DEFAULT for the WORKLOAD_IDENTITY property) -> (issuer, subject)
        self.identities: dict[str, dict[str, tuple[str, str]]] = {}
        self.public_keys: dict[str, str] = {}  # user -> RSA_PUBLIC_KEY
        self.secondary_roles: dict[str, str] = {}  # user -> DEFAULT_SECONDARY_ROLES as set ("()" = none)
        for admin in ("ACCOUNTADMIN", "SECURITYADMIN"):
            self.account[admin] = {"MANAGE GRANTS", "CREATE DATABASE", "CREATE ROLE"}
        self.account["SYSADMIN"] = {"CREATE DATABASE"}

    def connect(self, as_role: str, **kwargs: Any) -> ModelConnection:
        return ModelConnection(self, as_role, kwargs)

    def connector(self, role: str | None = None):
        """A `connect` for SnowflakeWarehouse. With `role`, every connection logs in as it;
        without, as the `role` the credentials name, which must be granted to their `user`
        (so a test shows which identity hnpipe logged in with)."""
        calls: list[dict] = []
        connections: list[ModelConnection] = []

        def connect(**kwargs: Any) -> ModelConnection:
            calls.append(kwargs)
            if role is not None:
                connection = self.connect(role, **{**kwargs, "role": role})
            else:
                user, wanted = kwargs.get("user"), kwargs.get("role")
                if str(kwargs.get("authenticator") or "").upper() == "WORKLOAD_IDENTITY":
                    user = self.workload_user(kwargs)
                if wanted not in self.users.get(user, set()):
                    raise snowflake.connector.errors.DatabaseError(
                        msg=f"Role '{wanted}' specified in the connect string is not granted to this user.")
                connection = self.connect(wanted, **kwargs)
            connections.append(connection)
            return connection

        connect.calls = calls  # type: ignore[attr-defined]
        connect.connections = connections  # type: ignore[attr-defined]
        return connect

    def workload_user(self, kwargs: dict) -> str:
        """R13: the user a workload identity login signs in as, from its token's issuer and subject."""
        token = kwargs.get("token")
        if token is None and kwargs.get("token_file_path"):
            token = Path(kwargs["token_file_path"]).read_text(encoding="utf-8").strip()
        claims = oidc_claims(token or "")
        if claims is None:
            raise snowflake.connector.errors.DatabaseError(msg="Failed to authenticate: invalid OIDC token")
        audience = claims.get("aud")
        if OIDC_AUDIENCE not in (audience if isinstance(audience, list) else [audience]):
            raise snowflake.connector.errors.DatabaseError(msg=f"Failed to authenticate: audience {audience!r}")
        key = (claims.get("iss"), claims.get("sub"))
        trusting = sorted(user for user, named in self.identities.items() if key in named.values())
        if len(trusting) != 1:
            raise snowflake.connector.errors.DatabaseError(
                msg=f"Failed to authenticate: {len(trusting)} users trust issuer {key[0]} subject {key[1]}")
        named = kwargs.get("user")
        if named and named.upper() != trusting[0]:
            raise snowflake.connector.errors.DatabaseError(
                msg=f"Failed to authenticate: user {named} does not trust subject {key[1]}")
        return trusting[0]

    # -- privileges --------------------------------------------------------------------
    def effective(self, role: str) -> set[str]:
        """The role and every role granted to it, transitively (R9)."""
        found, pending = set(), [role]
        while pending:
            current = pending.pop()
            if current not in found:
                found.add(current)
                pending.extend(self.parents.get(current, ()))
        return found

    def has(self, role: str, grants: Grants, *privileges: str) -> bool:
        roles = self.effective(role)
        if grants.owner in roles:  # R1: the owner holds every privilege
            return True
        return any(roles & grants.granted.get(p, set()) for p in privileges)

    def account_has(self, role: str, privilege: str) -> bool:
        return any(privilege in self.account.get(r, set()) for r in self.effective(role))

    def sees(self, role: str, grants: Grants) -> bool:
        """R6: any privilege at all (MANAGE GRANTS sees everything)."""
        return self.account_has(role, "MANAGE GRANTS") or bool(self.effective(role) & grants.roles())

    def table(self, database: str, schema: str, table: str) -> Table:
        try:
            return self.databases[database].schemas[schema].tables[table]
        except KeyError:
            raise DoesNotExist(f"Table '{database}.{schema}.{table}'") from None

    # -- conveniences for tests ----------------------------------------------------------
    def run(self, role: str, script: str) -> None:
        """Run ';'-separated statements (comments stripped) as `role`."""
        connection = self.connect(role)
        for statement in split_sql(script):
            connection.cursor().execute(statement)

    def owner(self, path: str) -> str:
        parts = path.split(".")
        database = self.databases[parts[0]]
        if len(parts) == 1:
            return database.grants.owner
        schema = database.schemas[parts[1]]
        return schema.grants.owner if len(parts) == 2 else schema.tables[parts[2]].grants.owner


def split_sql(script: str) -> list[str]:
    """Statements of a script: '--' comments removed, split on ';' outside quotes."""
    lines = [re.sub(r"--.*$", "", line) for line in script.splitlines()]
    statements, current, quote = [], [], None
    for char in "\n".join(lines):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";":
            statements.append("".join(current))
            current = []
            continue
        current.append(char)
    statements.append("".join(current))
    return [" ".join(s.split()) for s in statements if s.strip()]


def _bind_identifiers(statement: str, params: list) -> tuple[str, list]:
    """Replace each IDENTIFIER(?) by its bound name, double-quoted; the other ? keep their values."""
    out, kept, values = [], [], iter(params)
    for piece in re.split(r"(IDENTIFIER\(\?\)|\?)", statement):
        if piece == "IDENTIFIER(?)":
            out.append(f'"{next(values)}"')
        elif piece == "?":
            out.append(piece)
            kept.append(next(values))
        else:
            out.append(piece)
    return "".join(out), kept


def _meta(name: str, type_code: int = 2, scale: int | None = None) -> tuple:
    return (name, type_code, None, None, None, scale, True)


_STATUS = ([_meta("status")], [("Statement executed successfully.",)])


class ModelConnection:
    """DB-API-like connection logged in as one role; `closed` tells whether close() ran."""

    def __init__(self, model: SnowflakeModel, role: str, kwargs: dict) -> None:
        self.model, self.role, self.kwargs = model, role, kwargs
        self.current: tuple[str | None, str | None] = (None, None)
        self.closed = False
        self.session = dict(kwargs.get("session_parameters") or {})
        self.loaded = 0

    def cursor(self) -> ModelCursor:
        if self.closed:
            raise snowflake.connector.errors.DatabaseError(msg="Connection is closed")
        return ModelCursor(self)

    def close(self) -> None:
        self.closed = True

    # -- write_pandas (R10) ---------------------------------------------------------------
    def write_pandas(self, frame, table: str, database: str, schema: str) -> None:
        model = self.model
        target = model.databases.get(database)
        where = target.schemas.get(schema) if target else None
        if where is None:
            raise DoesNotExist(f"Schema '{database}.{schema}'")
        if not model.has(self.role, where.grants, "CREATE STAGE"):
            raise InsufficientPrivileges(f"schema '{schema}' (write_pandas needs CREATE STAGE for its temporary stage)")
        found = model.table(database, schema, table)
        if not model.has(self.role, found.grants, "INSERT"):
            raise InsufficientPrivileges(f"table '{table}'")
        found.rows += len(frame)
        if found.columns:
            names = [name for name, _ in found.columns]
            found.data += [tuple(_cell(row.get(name)) for name in names) for row in frame.to_dict("records")]
        self.loaded = len(frame)
        model.log.append((self.role, f"<write_pandas {database}.{schema}.{table}>"))


class ModelCursor:
    def __init__(self, connection: ModelConnection) -> None:
        self.connection = connection
        self.description: list | None = None
        self._rows: list = []

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list:
        return list(self._rows)

    def execute(self, sql: str, params: Any = None) -> ModelCursor:
        statement = raw = " ".join(sql.split())
        # IDENTIFIER(?) with a bound name reads as that name, so a test shows what the rules say
        # of older statement forms (tests/test_snowflake_lifecycle.py runs today's code through
        # the model); whether Snowflake accepts it in each place is another matter, see R12 above.
        statement, params = _bind_identifiers(statement, list(params or []))
        for pattern, handler in _HANDLERS:
            match = re.fullmatch(pattern, statement, re.IGNORECASE)
            if match:
                self.description, self._rows = handler(self, match, params)
                self.connection.model.log.append((self.connection.role, raw))
                return self
        raise snowflake.connector.errors.ProgrammingError(msg=f"model: statement form not modelled: {statement}")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def model(self) -> SnowflakeModel:
        return self.connection.model

    @property
    def role(self) -> str:
        return self.connection.role

    def _database(self, name: str) -> Database:
        found = self.model.databases.get(name)
        if found is None or not self.model.sees(self.role, found.grants):
            raise DoesNotExist(f"Database '{name}'")
        return found

    def _schema(self, database: str | None, schema: str | None) -> Schema:
        if database is None or schema is None:
            raise snowflake.connector.errors.ProgrammingError(msg="Cannot perform operation: no current schema")
        db = self._database(database)
        found = db.schemas.get(schema)
        if found is None or not self.model.sees(self.role, found.grants):
            raise DoesNotExist(f"Schema '{database}.{schema}'")
        return found

    def _where(self, qualified: str | None) -> tuple[str, str, str]:
        """'"D"."S"."T"' or '"T"' (in the current schema) -> (D, S, T)."""
        names = re.findall(NAME, qualified or "")
        if len(names) == 3:
            return names[0], names[1], names[2]
        if len(names) == 1:
            database, schema = self.connection.current
            if database is None or schema is None:
                raise snowflake.connector.errors.ProgrammingError(msg="no current schema")
            return database, schema, names[0]
        raise snowflake.connector.errors.ProgrammingError(msg=f"model: bad table name {qualified}")

    def _new_table_grants(self, db: Database, schema: Schema) -> Grants:
        """R1 owner = creator; R7 future grants, schema level replacing database level."""
        grants = Grants(self.role)
        future = schema.future if schema.future else db.future
        for privilege, roles in future.items():
            for role in roles:
                grants.give(privilege, role)
        return grants

    def _require_table_priv(self, database: str, schema: str, table: str, *privileges: str) -> Table:
        self._schema(database, schema)
        found = self.model.table(database, schema, table)
        if not self.model.has(self.role, found.grants, *privileges):
            raise InsufficientPrivileges(f"table '{table}'")
        return found


# -- statement handlers --------------------------------------------------------------------
def _use_schema(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema = m.group(1), m.group(2)
    db = cur._database(database)
    found = cur._schema(database, schema)
    if not (cur.model.has(cur.role, db.grants, "USAGE") and cur.model.has(cur.role, found.grants, "USAGE")):
        raise InsufficientPrivileges(f"schema '{schema}'")  # R11
    cur.connection.current = (database, schema)
    return _STATUS


def _use_database(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    db = cur._database(m.group(1))
    if not cur.model.has(cur.role, db.grants, "USAGE"):
        raise InsufficientPrivileges(f"database '{m.group(1)}'")
    cur.connection.current = (m.group(1), "PUBLIC" if "PUBLIC" in db.schemas else None)
    return _STATUS


def _current(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    names = [part.strip().upper() for part in m.group(1).split(",")]
    values = {"CURRENT_DATABASE()": cur.connection.current[0], "CURRENT_SCHEMA()": cur.connection.current[1],
              "CURRENT_ROLE()": cur.role, "CURRENT_USER()": cur.connection.kwargs.get("user", "MODEL_USER")}
    return [_meta(name) for name in names], [tuple(values[name] for name in names)]


def _show_databases(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    rows = [(db.created, name, db.grants.owner) for name, db in sorted(cur.model.databases.items())
            if cur.model.sees(cur.role, db.grants)]  # R6
    return [_meta("created_on", 6), _meta("name"), _meta("owner")], rows


def _show_parameters(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    key = m.group(1).upper()
    value = cur.connection.session.get(key, "")
    return [_meta("key"), _meta("value"), _meta("level")], [(key, str(value), "SESSION" if value != "" else "")]


def _show_grants_to_role(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    """SHOW GRANTS TO ROLE: the privileges granted directly to the role (and roles granted to it,
    as USAGE on ROLE), like Snowflake's output columns privilege, granted_on, name."""
    role, model, rows = m.group(1), cur.model, []
    if role not in model.effective(cur.role) and not model.account_has(cur.role, "MANAGE GRANTS"):
        raise InsufficientPrivileges(f"role '{role}'")
    for privilege in sorted(model.account.get(role, ())):
        rows.append((privilege, "ACCOUNT", "XY12345"))  # named after the account, as Snowflake shows it
    for parent in sorted(model.parents.get(role, ())):
        rows.append(("USAGE", "ROLE", parent))
    for dname, db in sorted(model.databases.items()):
        rows += [(p, "DATABASE", dname) for p in _privileges(db.grants, role)]
        for sname, schema in sorted(db.schemas.items()):
            rows += [(p, "SCHEMA", f"{dname}.{sname}") for p in _privileges(schema.grants, role)]
            for tname, table in sorted(schema.tables.items()):
                rows += [(p, "TABLE", f"{dname}.{sname}.{tname}") for p in _privileges(table.grants, role)]
    return [_meta("privilege"), _meta("granted_on"), _meta("name")], rows


def _show_grants_on_table(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    """SHOW GRANTS ON TABLE: (privilege, granted_on, name, granted_to, grantee_name) per grant,
    OWNERSHIP included; R6: the role must hold some privilege on it (MANAGE GRANTS sees all).
    https://docs.snowflake.com/en/sql-reference/sql/show-grants"""
    database, schema, name = cur._where(m.group(1))
    table = cur.model.table(database, schema, name)
    if not cur.model.sees(cur.role, table.grants):
        raise DoesNotExist(f"Table '{name}'")
    where = f"{database}.{schema}.{name}"
    rows = [("OWNERSHIP", "TABLE", where, "ROLE", table.grants.owner)]
    rows += [(privilege, "TABLE", where, "ROLE", role)
             for privilege, roles in sorted(table.grants.granted.items()) for role in sorted(roles)]
    columns = ("privilege", "granted_on", "name", "granted_to", "grantee_name")
    return [_meta(column) for column in columns], rows


def _privileges(grants: Grants, role: str) -> list[str]:
    found = ["OWNERSHIP"] if grants.owner == role else []
    return found + sorted(p for p, roles in grants.granted.items() if role in roles)


def _show_future_grants(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema = m.group(1), m.group(2)
    where = cur._schema(database, schema)
    rows = [(privilege, "TABLE", f"{database}.{schema}.<TABLE>", role)
            for privilege, roles in sorted(where.future.items()) for role in sorted(roles)]
    return [_meta("privilege"), _meta("grant_on"), _meta("name"), _meta("grantee_name")], rows


def _create_database(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    replace, if_not_exists, name, source = m.group(1), m.group(2), m.group(3), m.group(4)
    model = cur.model
    existing = model.databases.get(name)
    if existing is not None and if_not_exists:
        return _STATUS
    if not model.account_has(cur.role, "CREATE DATABASE"):
        raise InsufficientPrivileges("account (CREATE DATABASE)")
    if existing is not None:
        if not replace:
            raise snowflake.connector.errors.ProgrammingError(msg=f"Object '{name}' already exists.")
        if not model.has(cur.role, existing.grants):  # replacing drops it: R5
            raise InsufficientPrivileges(f"database '{name}'")
    if source is None:
        new = Database(Grants(cur.role))
        new.schemas["PUBLIC"] = Schema(Grants(cur.role))
    else:
        src = cur._database(source)
        if not model.has(cur.role, src.grants, "USAGE"):
            raise InsufficientPrivileges(f"database '{source}'")
        # R2: the container clone is the creator's and has none of the source's grants; every
        # schema and table keeps its source's owner and grants.
        new = Database(Grants(cur.role))
        for sname, schema in src.schemas.items():
            copy = Schema(schema.grants.copy(), future={p: set(r) for p, r in schema.future.items()},
                          managed=schema.managed)
            for tname, table in schema.tables.items():
                copy.tables[tname] = Table(table.grants.copy(), table.rows, table.comment)
                copy.tables[tname].copy_data_from(table)
            new.schemas[sname] = copy
    model.databases[name] = new
    return _STATUS


def _create_schema(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    if_not_exists, database, schema, managed = m.group(1), m.group(2), m.group(3), m.group(4)
    db = cur._database(database)
    if schema in db.schemas:
        if if_not_exists and cur.model.sees(cur.role, db.schemas[schema].grants):
            return _STATUS
        raise snowflake.connector.errors.ProgrammingError(msg=f"Object '{schema}' already exists.")
    if not cur.model.has(cur.role, db.grants, "CREATE SCHEMA"):
        raise InsufficientPrivileges(f"database '{database}'")
    db.schemas[schema] = Schema(Grants(cur.role), managed=bool(managed))
    return _STATUS


def _create_table(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    replace, if_not_exists, name, rest = m.group(1), m.group(2), m.group(3), m.group(4)
    database, schema, table = cur._where(name)
    db = cur._database(database)
    where = cur._schema(database, schema)
    model = cur.model
    existing = where.tables.get(table)
    if existing is not None and if_not_exists:
        return _STATUS
    if not model.has(cur.role, where.grants, "CREATE TABLE"):
        raise InsufficientPrivileges(f"schema '{schema}'")
    if existing is not None:
        if not replace:
            raise snowflake.connector.errors.ProgrammingError(msg=f"Object '{table}' already exists.")
        if not model.has(cur.role, existing.grants):
            raise InsufficientPrivileges(f"table '{table}'")
    rows = 0
    grants = cur._new_table_grants(db, where)
    new = Table(grants)
    if rest.strip().startswith("("):
        new.columns = [(name, _TYPE_CODES.get(kind.upper(), 2))
                       for name, kind in re.findall(r'"([A-Z][A-Z0-9_]*)" ([A-Z_]+)', rest)]
    clone = re.fullmatch(rf"CLONE {_T}( COPY GRANTS)?", rest.strip(), re.IGNORECASE)
    if clone:
        source = cur._require_table_priv(*cur._where(clone.group(1)), "SELECT")  # R3
        new.copy_data_from(source)
        rows = source.rows
        if clone.group(2):  # R3: COPY GRANTS copies every grant but OWNERSHIP
            for privilege, roles in source.grants.granted.items():
                for role in roles:
                    grants.give(privilege, role)
    elif re.match(r"AS\b", rest.strip(), re.IGNORECASE):
        # CTAS: every quoted table the SELECT names must be readable; rows are those of the
        # first source (the model keeps counts only).
        sources = re.findall(rf"FROM {_T}", rest)
        for number, source_name in enumerate(sources):
            found = cur._require_table_priv(*cur._where(source_name), "SELECT")
            if number == 0:
                new.copy_data_from(found)
            rows = max(rows, found.rows)
    new.rows = rows
    where.tables[table] = new
    return _STATUS


def _alter_swap(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema, first = cur._where(m.group(1))
    _, _, second = cur._where(m.group(2))
    where = cur._schema(database, schema)
    a, b = cur.model.table(database, schema, first), cur.model.table(database, schema, second)
    for name, found in ((first, a), (second, b)):
        if not cur.model.has(cur.role, found.grants):  # R4: OWNERSHIP of both
            raise InsufficientPrivileges(f"table '{name}'")
    # R4: the table objects (data, grants, owner) trade names.
    where.tables[first], where.tables[second] = b, a
    return _STATUS


def _alter_rename(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema, old = cur._where(m.group(1))
    _, _, new = cur._where(m.group(2))
    where = cur._schema(database, schema)
    found = cur.model.table(database, schema, old)
    if not cur.model.has(cur.role, found.grants):  # R5
        raise InsufficientPrivileges(f"table '{old}'")
    if not cur.model.has(cur.role, where.grants, "CREATE TABLE"):  # R5: RENAME creates a name in the schema
        raise InsufficientPrivileges(f"schema '{schema}' (RENAME needs CREATE TABLE)")
    if new in where.tables:
        raise snowflake.connector.errors.ProgrammingError(msg=f"Object '{new}' already exists.")
    where.tables[new] = where.tables.pop(old)
    return _STATUS


def _drop_table(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema, table = cur._where(m.group(2))
    where = cur._schema(database, schema)
    found = where.tables.get(table)
    if found is None:
        if m.group(1):
            return _STATUS
        raise DoesNotExist(f"Table '{table}'")
    if not cur.model.has(cur.role, found.grants):  # R5
        raise InsufficientPrivileges(f"table '{table}'")
    del where.tables[table]
    return _STATUS


def _drop_database(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    name = m.group(2)
    found = cur.model.databases.get(name)
    if found is None or not cur.model.sees(cur.role, found.grants):
        if m.group(1):
            return _STATUS
        raise DoesNotExist(f"Database '{name}'")
    if not cur.model.has(cur.role, found.grants):  # R5
        raise InsufficientPrivileges(f"database '{name}'")
    del cur.model.databases[name]
    return _STATUS


def _drop_schema(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    database, schema = m.group(2), m.group(3)
    db = cur._database(database)
    found = db.schemas.get(schema)
    if found is None:
        if m.group(1):
            return _STATUS
        raise DoesNotExist(f"Schema '{schema}'")
    if not cur.model.has(cur.role, found.grants):
        raise InsufficientPrivileges(f"schema '{schema}'")
    del db.schemas[schema]
    return _STATUS


def _comment(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    kind, name = m.group(1).upper(), m.group(2)
    if kind == "COLUMN":
        name = name.rsplit(".", 1)[0]
    found = cur.model.table(*cur._where(name))
    if not cur.model.has(cur.role, found.grants):  # R5: COMMENT needs OWNERSHIP
        raise InsufficientPrivileges(f"table '{name}'")
    if kind == "TABLE":
        found.comment = m.group(3)
    return _STATUS


def _count(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    found = cur._require_table_priv(*cur._where(m.group(1)), "SELECT")
    return [_meta("COUNT(*)", 0, 0)], [(found.rows,)]


def _select_star(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    found = cur._require_table_priv(*cur._where(m.group(1)), "SELECT")
    if found.columns and len(found.data) == found.rows:
        return [_meta(name, code, 0 if code == 0 else None) for name, code in found.columns], list(found.data)
    return [_meta("ID", 0, 0)], [(i,) for i in range(found.rows)]


def _checks(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    # Quality checks read the staging table; none fail in the model.
    for name in re.findall(r"((?:\"[A-Z0-9_]+\"\.){2}\"[A-Z0-9_]+\")", m.group(0)):
        cur._require_table_priv(*cur._where(name), "SELECT")
    return [_meta("COUNT(*)", 0, 0)], [(0,)]


def _insert(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    found = cur._require_table_priv(*cur._where(m.group(1)), "INSERT")
    found.rows += max(1, m.group(0).count("), (") + 1)
    return _STATUS


def _schemata(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    db = cur._database(m.group(1))
    rows = [(name,) for name, schema in sorted(db.schemas.items()) if cur.model.sees(cur.role, schema.grants)]
    return [_meta("SCHEMA_NAME")], rows


def _tables(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    db = cur._database(m.group(1))
    schema = db.schemas.get(params[0]) if params else None
    if schema is None or not cur.model.sees(cur.role, schema.grants):
        return [_meta("TABLE_NAME"), _meta("ROW_COUNT", 0, 0)], []
    rows = [(name, t.rows) for name, t in sorted(schema.tables.items()) if cur.model.sees(cur.role, t.grants)]
    return [_meta("TABLE_NAME"), _meta("ROW_COUNT", 0, 0)], rows


def _table_comment(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    db = cur._database(m.group(1))
    table = db.schemas[params[0]].tables.get(params[1]) if params[0] in db.schemas else None
    return [_meta("COMMENT")], [(table.comment if table else None,)]


def _columns(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    db = cur._database(m.group(1))
    table = db.schemas[params[0]].tables.get(params[1]) if params and params[0] in db.schemas else None
    names = {code: kind for kind, code in _TYPE_CODES.items()}
    rows = [(name, names.get(code, "TEXT"), None) for name, code in (table.columns if table else [])]
    return [_meta("COLUMN_NAME"), _meta("DATA_TYPE"), _meta("COMMENT")], rows or [("ID", "NUMBER", None)]


def _stage_statement(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    """R14: a stage statement, run by the stage model with this role's privileges."""
    model = cur.model
    database, schema = cur.connection.current

    def may(privilege: str, on) -> bool:
        if on == "schema":
            return model.has(cur.role, cur._schema(database, schema).grants, "CREATE STAGE")
        roles = model.effective(cur.role)
        return on.owner in roles or bool(roles & on.granted.get(privilege, set()))

    def insert(table: str, loaded) -> None:
        found = cur._require_table_priv(*cur._where(table), "INSERT")
        matched = matched_columns(loaded, [name for name, _ in found.columns])
        values = [column.to_pylist() if column is not None else [None] * loaded.num_rows
                  for column in matched.values()]
        found.data += [tuple(_cell(value) for value in row) for row in zip(*values)]
        found.rows += loaded.num_rows

    return model.stage_rules.execute(m.group(0), cur.connection.current, cur.role, may, insert)


def _grant(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    privileges = [p.strip().upper() for p in m.group(1).split(",")]
    on, role = m.group(2), m.group(3)
    model = cur.model
    manage = model.account_has(cur.role, "MANAGE GRANTS")
    if re.fullmatch(r"ACCOUNT", on, re.IGNORECASE):
        if not manage:
            raise InsufficientPrivileges("account")
        model.account.setdefault(role, set()).update(privileges)
        return _STATUS
    for grants in _grant_targets(cur, on, manage, privileges, role):
        for privilege in privileges:
            grants.give(privilege, role)
    return _STATUS


def _grant_targets(cur: ModelCursor, on: str, manage: bool, privileges: list[str], role: str) -> list:
    """The Grants a GRANT/REVOKE .. ON `on` applies to, after R8's check of the grantor."""
    model = cur.model
    if m := re.fullmatch(rf"(DATABASE|WAREHOUSE) {NAME}", on, re.IGNORECASE):
        if m.group(1).upper() == "WAREHOUSE":
            return []  # warehouses are not modelled
        db = cur._database(m.group(2))
        if not (manage or model.has(cur.role, db.grants, "OWNERSHIP")):
            raise InsufficientPrivileges(f"database '{m.group(2)}'")
        return [db.grants]
    if m := re.fullmatch(rf"SCHEMA {NAME}\.{NAME}", on, re.IGNORECASE):
        schema = cur._schema(m.group(1), m.group(2))
        if not (manage or model.has(cur.role, schema.grants, "OWNERSHIP")):
            raise InsufficientPrivileges(f"schema '{m.group(2)}'")
        return [schema.grants]
    if m := re.fullmatch(rf"TABLE ((?:{NAME}\.){{0,2}}{NAME})", on, re.IGNORECASE):
        database, schema_name, _ = cur._where(m.group(1))
        schema = cur._schema(database, schema_name)
        found = model.table(*cur._where(m.group(1)))
        if not (manage or _grantor(model, cur.role, schema, found)):
            raise InsufficientPrivileges(f"table '{m.group(1)}'")
        return [found.grants]
    if m := re.fullmatch(rf"ALL TABLES IN SCHEMA {NAME}\.{NAME}", on, re.IGNORECASE):
        schema = cur._schema(m.group(1), m.group(2))
        tables = list(schema.tables.values())
        if not manage and any(not _grantor(model, cur.role, schema, t) for t in tables):
            raise InsufficientPrivileges(f"tables in schema '{m.group(2)}'")
        return [t.grants for t in tables]
    if m := re.fullmatch(rf"FUTURE TABLES IN (SCHEMA {NAME}\.{NAME}|DATABASE {NAME})", on, re.IGNORECASE):
        if m.group(4):
            db = cur._database(m.group(4))
            holder = db.future
            allowed = manage
        else:
            schema = cur._schema(m.group(2), m.group(3))
            holder = schema.future
            # R8: future grants need MANAGE GRANTS; in a managed access schema its owner may.
            allowed = manage or (schema.managed and model.has(cur.role, schema.grants, "OWNERSHIP"))
        if not allowed:
            raise InsufficientPrivileges("future grants (MANAGE GRANTS)")
        return [_FutureHolder(holder)]
    raise snowflake.connector.errors.ProgrammingError(msg=f"model: GRANT ON {on} not modelled")


def _grantor(model: SnowflakeModel, role: str, schema: Schema, table: Table) -> bool:
    """R8: who may grant on a table (MANAGE GRANTS aside): in a managed access schema its
    owner, whoever owns the table; elsewhere the table's owner."""
    if schema.managed:
        return schema.grants.owner in model.effective(role)
    return table.grants.owner in model.effective(role)


class _FutureHolder:
    """Adapts a future-grants dict to Grants.give/take."""

    def __init__(self, holder: dict[str, set[str]]) -> None:
        self.holder = holder

    def give(self, privilege: str, role: str) -> None:
        self.holder.setdefault(privilege, set()).add(role)

    def take(self, privilege: str, role: str) -> None:
        self.holder.get(privilege, set()).discard(role)


def _revoke(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    privileges = [p.strip().upper() for p in m.group(1).split(",")]
    on, role = m.group(2), m.group(3)
    for grants in _grant_targets(cur, on, cur.model.account_has(cur.role, "MANAGE GRANTS"), privileges, role):
        for privilege in privileges:
            grants.take(privilege, role)
    return _STATUS


def _grant_ownership(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    on, role, keep = m.group(1), m.group(2), m.group(3)
    model = cur.model
    manage = model.account_has(cur.role, "MANAGE GRANTS")
    targets = _grant_targets(cur, on, manage, ["OWNERSHIP"], role)
    for grants in targets:  # R8: checked for every object before any changes hands
        if not keep and not isinstance(grants, _FutureHolder) and any(grants.granted.values()):
            raise snowflake.connector.errors.ProgrammingError(
                msg="Grant not executed: the object has grants; add COPY CURRENT GRANTS or REVOKE CURRENT GRANTS")
    for grants in targets:
        if isinstance(grants, _FutureHolder):
            grants.give("OWNERSHIP", role)
            continue
        grants.owner = role  # R8
        if keep and keep.upper().strip().startswith("REVOKE"):
            grants.granted.clear()
    return _STATUS


def _grant_role(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    granted, to, kind = m.group(1), m.group(3), m.group(2).upper()
    if not cur.model.account_has(cur.role, "MANAGE GRANTS"):
        raise InsufficientPrivileges(f"role '{granted}'")
    if kind == "ROLE":
        cur.model.parents.setdefault(to, set()).add(granted)
    else:
        cur.model.users.setdefault(to, set()).add(granted)
    return _STATUS


def _create_role(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    if not cur.model.account_has(cur.role, "CREATE ROLE"):
        raise InsufficientPrivileges("account (CREATE ROLE)")
    cur.model.roles.add(m.group(1))
    return _STATUS


def _use_role(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    cur.connection.role = m.group(1)  # the model trusts the test to use roles the user has
    return _STATUS


def _accepted(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    return _STATUS


def _user_admin(cur: ModelCursor, user: str) -> None:
    # Users are account objects: the model lets the admin roles alone create and alter them.
    if not cur.model.account_has(cur.role, "MANAGE GRANTS"):
        raise InsufficientPrivileges(f"user '{user}'")


def _create_user(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    _user_admin(cur, m.group(1))
    cur.model.users.setdefault(m.group(1), set())
    return _STATUS


def _set_workload_identity(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    _user_admin(cur, m.group(1))
    cur.model.identities.setdefault(m.group(1), {})["DEFAULT"] = (m.group(2), m.group(3))  # R13: replaces
    return _STATUS


def _add_workload_identity(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    user, name = m.group(1), m.group(2)
    _user_admin(cur, user)
    named = cur.model.identities.setdefault(user, {})
    if name in named:  # R13: no IF NOT EXISTS form
        raise snowflake.connector.errors.ProgrammingError(msg=f"Workload identity '{name}' already exists.")
    named[name] = (m.group(3), m.group(4))
    return _STATUS


def _set_public_key(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    _user_admin(cur, m.group(1))
    cur.model.public_keys[m.group(1)] = m.group(2)
    return _STATUS


def _set_secondary_roles(cur: ModelCursor, m: re.Match, params: list) -> tuple:
    _user_admin(cur, m.group(1))
    cur.model.secondary_roles[m.group(1)] = m.group(2).replace(" ", "")
    return _STATUS


_T = r'((?:"?[A-Z0-9_]+"?\.){0,2}"?[A-Z0-9_]+"?)'
_HANDLERS: list[tuple[str, Any]] = [
    (r"(?:CREATE STAGE |PUT |LIST @|GET @|REMOVE @|COPY INTO .* FROM @).*", _stage_statement),
    (rf"USE SCHEMA {NAME}\.{NAME}", _use_schema),
    (rf"USE DATABASE {NAME}", _use_database),
    (r"SELECT ((?:CURRENT_[A-Z]+\(\)(?:, )?)+)", _current),
    (r"SHOW DATABASES", _show_databases),
    (r"SHOW PARAMETERS LIKE '([A-Z_]+)' IN SESSION", _show_parameters),
    (rf"SHOW GRANTS TO ROLE {NAME}", _show_grants_to_role),
    (rf"SHOW GRANTS ON TABLE {_T}", _show_grants_on_table),
    (rf"SHOW FUTURE GRANTS IN SCHEMA {NAME}\.{NAME}", _show_future_grants),
    (rf"CREATE (OR REPLACE )?DATABASE (IF NOT EXISTS )?{NAME}(?: CLONE {NAME})?", _create_database),
    (rf"CREATE SCHEMA (IF NOT EXISTS )?{NAME}\.{NAME}( WITH MANAGED ACCESS)?", _create_schema),
    (rf"CREATE (OR REPLACE )?TABLE (IF NOT EXISTS )?{_T} ?(.*)", _create_table),
    (rf"ALTER TABLE {_T} SWAP WITH {_T}", _alter_swap),
    (rf"ALTER TABLE {_T} RENAME TO {_T}", _alter_rename),
    (rf"DROP TABLE (IF EXISTS )?{_T}", _drop_table),
    (rf"DROP DATABASE (IF EXISTS )?{NAME}", _drop_database),
    (rf"DROP SCHEMA (IF EXISTS )?{NAME}\.{NAME}", _drop_schema),
    (rf"COMMENT ON (TABLE|COLUMN) ((?:\"[A-Z0-9_]+\"\.){{0,3}}\"[A-Z0-9_]+\") IS '((?:[^'\\]|\\.)*)'", _comment),
    (rf"SELECT COUNT\(\*\) FROM {_T}", _count),
    (rf"SELECT \* FROM {_T}.*", _select_star),
    (r"SELECT (?:COUNT\(\*\)|\*) FROM \(.*\) AS offending.*", _checks),
    (rf"INSERT INTO {_T} .*", _insert),
    (rf"SELECT SCHEMA_NAME FROM {NAME}\.INFORMATION_SCHEMA\.SCHEMATA", _schemata),
    (rf"SELECT TABLE_NAME, ROW_COUNT FROM {NAME}\.INFORMATION_SCHEMA\.TABLES .*", _tables),
    (rf"SELECT COMMENT FROM {NAME}\.INFORMATION_SCHEMA\.TABLES .*", _table_comment),
    (rf"SELECT COLUMN_NAME, DATA_TYPE, COMMENT FROM {NAME}\.INFORMATION_SCHEMA\.COLUMNS .*", _columns),
    (rf"GRANT OWNERSHIP ON (.+?) TO ROLE {NAME}( (?:COPY|REVOKE) CURRENT GRANTS)?", _grant_ownership),
    (rf"GRANT ROLE {NAME} TO (ROLE|USER) {NAME}", _grant_role),
    (rf"GRANT ([A-Z ,]+?) ON (.+?) TO ROLE {NAME}", _grant),
    (rf"REVOKE ([A-Z ,]+?) ON (.+?) FROM ROLE {NAME}", _revoke),
    (rf"CREATE ROLE IF NOT EXISTS {NAME}", _create_role),
    # Account objects the model does not track: warehouses and users (setup.sql creates them).
    (rf"CREATE WAREHOUSE IF NOT EXISTS {NAME}.*", _accepted),
    (rf"CREATE USER IF NOT EXISTS {NAME}.*", _create_user),
    (rf"ALTER USER (?:IF EXISTS )?{NAME} SET WORKLOAD_IDENTITY = \( ?TYPE = OIDC ISSUER = '([^']*)' "
     r"SUBJECT = '([^']*)' ?\)", _set_workload_identity),
    (rf"ALTER USER (?:IF EXISTS )?{NAME} ADD WORKLOAD IDENTITY {NAME} TYPE = OIDC ISSUER = '([^']*)' "
     r"SUBJECT = '([^']*)'", _add_workload_identity),
    (rf"ALTER USER (?:IF EXISTS )?{NAME} SET RSA_PUBLIC_KEY = '([^']*)'", _set_public_key),
    (rf"ALTER USER (?:IF EXISTS )?{NAME} SET DEFAULT_SECONDARY_ROLES = (\( ?\)|\('ALL'\))", _set_secondary_roles),
    (r"BEGIN TRANSACTION|COMMIT|ROLLBACK", _accepted),
    (rf"USE WAREHOUSE {NAME}", _accepted),
    (rf"USE ROLE {NAME}", _use_role),
]


OIDC_AUDIENCE = "snowflakecomputing.com"


def oidc_token(issuer: str, subject: str, audience: str = OIDC_AUDIENCE) -> str:
    """An unsigned JWT with the claims R13 reads (the model checks no signature)."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f'{part({"alg": "none"})}.{part({"iss": issuer, "sub": subject, "aud": audience})}.'


def oidc_claims(token: str) -> dict | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def write_pandas_fake(conn, df, table_name, database=None, schema=None, **kwargs):
    """Test fake for snowflake.connector.pandas_tools.write_pandas on a ModelConnection (R10)."""
    conn.write_pandas(df, table_name, database, schema)
    return True, 1, len(df), []


def session_tag(connection: ModelConnection) -> dict | None:
    text = connection.session.get("QUERY_TAG")
    return None if text is None else json.loads(text)
