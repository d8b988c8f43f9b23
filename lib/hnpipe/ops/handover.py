"""Handing production over to IT: the datasets as plain Snowflake SQL, and the access lockdown.

SQL (`hnpipe sql DATASET`). Every dataset but ITEMS is defined in SQL over ITEMS
(hnpipe.datasets). `build_sql` prints one Snowflake statement that builds it, with one CTE
per dataset on the way, so IT can run or schedule it in Snowflake without Python:

    CREATE OR REPLACE TABLE PRODUCTION.HACKER_NEWS.STORIES COPY GRANTS AS
    WITH ITEMS AS (SELECT ... FROM PRODUCTION.HACKER_NEWS.ITEMS), STORIES AS (...)
    SELECT ... FROM STORIES;

"Raw ITEMS" is the published ITEMS table (default PRODUCTION.HACKER_NEWS.ITEMS; `--from`
names another): ITEMS is loaded from the HN API in Python (notebooks/items.ipynb), so it is
the input of the SQL, not something SQL builds. COPY GRANTS keeps the grants of the table it
replaces. The quality gates hnpipe runs before its own swaps are not part of this statement.

Lockdown (`lockdown_statements`, `lockdown`; wired into `hnpipe admin handover`). For the
production schema: ownership of the schema goes to IT's role, keeping the current grants
(GRANT OWNERSHIP ... COPY CURRENT GRANTS). The tables stay owned by the role that runs the
production pipeline (`pipeline_role`), because every publish swaps a new table in and
ALTER TABLE .. SWAP WITH needs ownership of both tables; that role keeps USAGE, CREATE TABLE and
CREATE STAGE on the schema and is granted to IT's role, so IT controls every one of those tables
through the role hierarchy (https://docs.snowflake.com/en/user-guide/security-access-control-overview)
while production keeps publishing. HNPIPE_STAGE, the schema's named stage for fetched Parquet parts
(hnpipe.warehouse.snowflake_stage), is created and so owned by the pipeline role; the schema's new
owner does not change that, and its owner may PUT, LIST, GET, COPY from and REMOVE without grants
(https://docs.snowflake.com/en/user-guide/security-access-control-privileges). Analyst roles lose write access
(INSERT, UPDATE, DELETE, TRUNCATE on all and future tables, and CREATE TABLE on the schema);
the reader role gets read access (USAGE on the database and schema, SELECT on all and future
tables). Every role passes `environments.check_identifier`. The statements are printed for
review; with apply=True they run, in order, on a SnowflakeWarehouse, only where
HNPIPE_ENV=production, as a role allowed to manage grants (e.g. SECURITYADMIN). Each
statement is idempotent, so a lockdown stopped halfway can simply be run again.
"""

from __future__ import annotations

from typing import Sequence

from hnpipe import datasets, environments
from hnpipe.datasets import ITEMS_COLUMNS
from hnpipe.environments import PUBLISHED_SCHEMA, check_identifier
from hnpipe.errors import GuardError, HnpipeError, ParameterError
from hnpipe.warehouse.base import Warehouse

DEFAULT_DATABASE = "PRODUCTION"
WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE"


# -- the datasets as SQL ---------------------------------------------------------------------
def _qualified(name: object, parts: int, what: str, example: str) -> str:
    pieces = name.split(".") if isinstance(name, str) else []
    if len(pieces) != parts:
        raise ParameterError(f"{what} {name!r} is not allowed: use {parts} upper-case names joined by dots, "
                             f"e.g. {example}")
    return ".".join(check_identifier(piece, what) for piece in pieces)


def select_sql(name: str, source: str = f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}.ITEMS") -> str:
    """The SELECT (WITH ... SELECT) computing dataset `name` from the ITEMS table `source`."""
    dataset = datasets.get(name)
    if dataset.sql is None:
        raise HnpipeError(f"{dataset.name} is loaded from the HN API in Python (notebooks/{dataset.notebook}), "
                          f"not built in SQL: it is the raw input of the others ({', '.join(datasets.downstream(dataset.name))})")
    source = _qualified(source, 3, "--from table", f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}.ITEMS")
    columns = ", ".join(dataset.columns)
    # The chain from ITEMS to the dataset, each as a CTE named like the dataset, so every
    # definition's unqualified upstream names resolve to the CTE before it.
    chain = [d for d in datasets.dependency_order() if d.name in _upstream_closure(dataset.name) and d.sql]
    ctes = [f"ITEMS AS (\n    SELECT {', '.join(ITEMS_COLUMNS)}\n    FROM {source}\n)"]
    ctes += [f"{d.name} AS (\n    {d.sql}\n)" for d in [*chain, dataset]]
    return "WITH\n" + ",\n".join(ctes) + f"\nSELECT {columns}\nFROM {dataset.name}"


def _upstream_closure(name: str) -> set[str]:
    found: set[str] = set()
    pending = list(datasets.get(name).upstream)
    while pending:
        upstream = pending.pop()
        if upstream not in found:
            found.add(upstream)
            pending.extend(datasets.get(upstream).upstream)
    return found


def build_sql(name: str, source: str = f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}.ITEMS",
              into: str = f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}") -> str:
    """One Snowflake statement that (re)builds dataset `name` in schema `into` from `source`."""
    dataset = datasets.get(name)
    into = _qualified(into, 2, "--into schema", f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}")
    select = select_sql(dataset.name, source)  # checks source
    header = [
        f"-- {dataset.name}: {dataset.description}",
        f"-- Generated by `hnpipe sql {dataset.name}` from hnpipe's dataset definitions (Snowflake SQL).",
        f"-- Reads the published ITEMS table {source}, which hnpipe loads from the HN API.",
    ]
    return "\n".join([*header, f"CREATE OR REPLACE TABLE {into}.{dataset.name} COPY GRANTS AS", select]) + ";\n"


# -- ownership and access ----------------------------------------------------------------------
DEFAULT_PIPELINE_ROLE = "HNPIPE_PROD"  # snowflake/setup.sql's production role


def lockdown_statements(*, it_role: str, reader_role: str, analyst_roles: Sequence[str] = (),
                        pipeline_role: str = DEFAULT_PIPELINE_ROLE,
                        database: str = DEFAULT_DATABASE, schema: str = PUBLISHED_SCHEMA) -> list[str]:
    """The Snowflake statements handing database.schema to IT, in the order they must run."""
    it_role = check_identifier(it_role, "IT role")
    reader_role = check_identifier(reader_role, "reader role")
    pipeline_role = check_identifier(pipeline_role, "pipeline role")
    if isinstance(analyst_roles, str):
        analyst_roles = [analyst_roles]
    analysts = list(dict.fromkeys(check_identifier(role, "analyst role") for role in analyst_roles))
    if it_role in analysts:
        raise ParameterError(f"analyst role {it_role} is also the IT role: the owner keeps every privilege; "
                             "name the analysts' roles only")
    if pipeline_role in analysts:
        raise ParameterError(f"analyst role {pipeline_role} is also the pipeline role: revoking its writes "
                             "would stop production; name the analysts' roles only")
    where = f'"{check_identifier(database, "database")}"."{check_identifier(schema, "schema")}"'
    statements = [f'GRANT OWNERSHIP ON SCHEMA {where} TO ROLE "{it_role}" COPY CURRENT GRANTS']
    if pipeline_role != it_role:  # else IT runs the pipeline and, as owner, has all it needs
        statements += [
            # What a publish needs: ownership of the tables it swaps (an earlier lockdown may have
            # given them to IT), and creating its staging tables and write_pandas' stage.
            f'GRANT OWNERSHIP ON ALL TABLES IN SCHEMA {where} TO ROLE "{pipeline_role}" COPY CURRENT GRANTS',
            f'GRANT USAGE ON DATABASE "{database}" TO ROLE "{pipeline_role}"',
            f'GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA {where} TO ROLE "{pipeline_role}"',
            f'GRANT ROLE "{pipeline_role}" TO ROLE "{it_role}"',  # IT controls what the pipeline owns
        ]
    for role in analysts:
        statements += [
            f'REVOKE {WRITE_PRIVILEGES} ON ALL TABLES IN SCHEMA {where} FROM ROLE "{role}"',
            f'REVOKE {WRITE_PRIVILEGES} ON FUTURE TABLES IN SCHEMA {where} FROM ROLE "{role}"',
            f'REVOKE CREATE TABLE ON SCHEMA {where} FROM ROLE "{role}"',
        ]
    statements += [
        f'GRANT USAGE ON DATABASE "{database}" TO ROLE "{reader_role}"',
        f'GRANT USAGE ON SCHEMA {where} TO ROLE "{reader_role}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO ROLE "{reader_role}"',
        f'GRANT SELECT ON FUTURE TABLES IN SCHEMA {where} TO ROLE "{reader_role}"',
    ]
    return statements


def lockdown(warehouse: Warehouse | None, *, it_role: str, reader_role: str, analyst_roles: Sequence[str] = (),
             pipeline_role: str = DEFAULT_PIPELINE_ROLE, apply: bool = False, database: str = DEFAULT_DATABASE,
             schema: str = PUBLISHED_SCHEMA) -> list[str]:
    """The lockdown statements; with apply=True also run them (Snowflake, HNPIPE_ENV=production)."""
    statements = lockdown_statements(it_role=it_role, reader_role=reader_role, analyst_roles=analyst_roles,
                                     pipeline_role=pipeline_role, database=database, schema=schema)
    if not apply:
        return statements
    if warehouse is None or not warehouse.SUPPORTS_GRANTS:
        raise GuardError(f"refused to apply the lockdown on {type(warehouse).__name__}: ownership and grants "
                         "exist on Snowflake only; print the statements instead (apply=False)")
    running = environments.process_environment()
    if running != "production":
        raise GuardError(f"refused to apply the lockdown of {database}.{schema} from HNPIPE_ENV={running}: "
                         "only production may change production")
    warehouse.run_grants(statements)
    return statements


def to_text(statements: Sequence[str]) -> str:
    return "".join(f"{statement};\n" for statement in statements)


def follow_up(*, it_role: str, pipeline_role: str = DEFAULT_PIPELINE_ROLE, database: str = DEFAULT_DATABASE,
              schema: str = PUBLISHED_SCHEMA) -> str:
    """What happens to the production job after the lockdown, as SQL comments."""
    if check_identifier(pipeline_role, "pipeline role") == check_identifier(it_role, "IT role"):
        lines = [f"Follow-up: production now runs as IT's role {it_role}, the owner of {database}.{schema}:",
                 f"set SNOWFLAKE_PROD_ROLE={it_role} for the production job and grant {it_role} to its user."]
    else:
        lines = [f"Follow-up: production keeps publishing as the pipeline role {pipeline_role}, unchanged: it keeps",
                 f"USAGE, CREATE TABLE and CREATE STAGE on {database}.{schema} and owns the tables it publishes",
                 f"(ALTER TABLE .. SWAP WITH needs that); {it_role} controls them through {pipeline_role}, granted to it.",
                 "Check it: HNPIPE_ENV=production hnpipe doctor --env production"]
    return "".join(f"-- {line}\n" for line in lines)


# -- `hnpipe sql` ----------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="the dataset to build, e.g. STORIES")
    parser.add_argument("--from", dest="source", default=f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}.ITEMS",
                        metavar="DATABASE.SCHEMA.TABLE", help="the published ITEMS table to read "
                        f"(default {DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}.ITEMS)")
    parser.add_argument("--into", default=f"{DEFAULT_DATABASE}.{PUBLISHED_SCHEMA}", metavar="DATABASE.SCHEMA",
                        help=f"where the table is created (default {DEFAULT_DATABASE}.{PUBLISHED_SCHEMA})")


def main(args) -> int:
    print(build_sql(args.dataset, args.source, args.into), end="")
    return 0
