"""A test model of Snowflake's internal named stages (a test fake, not Snowflake).

fakesnow 0.12.1 runs CREATE STAGE and PUT, but not COPY from a stage path, LIST of a path, GET
or REMOVE (tried: "invalid URL prefix", "syntax error at or near GET"). This module holds one
account's named stages and executes the statement forms hnpipe.warehouse.snowflake_stage sends,
the way these pages say Snowflake does. Both stand-ins use it: the privileges model
(tests/snowflake_model.py, which adds who may) and fakesnow (tests/snowflake_fakes.py, which
then holds the loaded rows and runs the gates for real).

S1 CREATE STAGE [IF NOT EXISTS] <name> FILE_FORMAT = (TYPE = PARQUET): an object of the current
   schema, owned by its creator; creating it needs CREATE STAGE on the schema.
   https://docs.snowflake.com/en/sql-reference/sql/create-stage
S2 PUT 'file://<path>' @<stage>/<folder>/ [AUTO_COMPRESS = ..] [OVERWRITE = ..]: the file keeps its
   name under the folder; AUTO_COMPRESS defaults to TRUE (gzip, name + .gz); OVERWRITE defaults to
   FALSE (a file of that name stays, status SKIPPED). Needs WRITE on the stage.
   https://docs.snowflake.com/en/sql-reference/sql/put
S3 LIST @<stage>/<path>: every file whose path starts with <path>; columns name (the stage's
   name in lower case, then the path), size, md5, last_modified. Needs READ.
   https://docs.snowflake.com/en/sql-reference/sql/list
S4 GET @<stage>/<path> 'file://<dir>/': the files under <path> downloaded into <dir>. Needs READ.
   https://docs.snowflake.com/en/sql-reference/sql/get
S5 REMOVE @<stage>/<path>: every file whose path starts with <path>. Needs WRITE.
   https://docs.snowflake.com/en/sql-reference/sql/remove
S6 COPY INTO <table> FROM @<stage>/<folder>/ FILES = ('a', ..) FILE_FORMAT = (TYPE = PARQUET ..)
   MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT PURGE = FALSE: FILES are
   relative to the folder, at most 1,000; a file missing or not Parquet fails the statement and
   nothing is loaded (ABORT_STATEMENT); file columns go to the table's columns of the same name,
   case aside; a table column no file has is NULL; one result row per file (file, status LOADED,
   rows_parsed, rows_loaded). Needs READ on the stage and INSERT on the table.
   https://docs.snowflake.com/en/sql-reference/sql/copy-into-table,
   https://docs.snowflake.com/en/user-guide/data-load-considerations-load (the 1,000 files)
S7 Stage privileges: READ for GET, LIST and COPY from it; WRITE for PUT and REMOVE; the owner
   holds both. https://docs.snowflake.com/en/user-guide/security-access-control-privileges
S8 Stages belong to their schema: a table-by-table clone (hnpipe's) has none, the branch role
   creates its own; the model's CREATE DATABASE .. CLONE copies tables only (internal named
   stages are not cloned: https://docs.snowflake.com/en/user-guide/object-clone as summarised at
   https://velog.io/@pinggu95/Snowflake-Cloning-Zero-Copy-Cloning; hnpipe does not rely on it).

Not modelled: encryption, load metadata (a file loaded into the same table before is skipped;
hnpipe loads each staging table once), time travel.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector.errors

_clock = itertools.count()
EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)
_NAME = r'"?([A-Z][A-Z0-9_]*)"?'
_PATH = r"((?:/[A-Za-z0-9_.-]+)*/?)"
_STATUS = ([("status", 2, None, None, None, None, True)], [("Statement executed successfully.",)])

# Whether a statement is one of the stage forms (then `Stages.execute` answers it).
STAGE_STATEMENT = re.compile(r"\s*(CREATE STAGE|PUT\s|LIST\s+@|GET\s+@|REMOVE\s+@|COPY INTO .* FROM @)",
                             re.IGNORECASE | re.DOTALL)


def _meta(name: str, code: int = 2) -> tuple:
    return (name, code, None, None, None, None, True)


@dataclass
class StageData:
    owner: str
    granted: dict[str, set[str]] = field(default_factory=dict)  # READ / WRITE -> roles
    files: dict[str, tuple[bytes, datetime]] = field(default_factory=dict)  # path -> (content, modified)


class Stages:
    """One account's internal named stages, by (database, schema, name)."""

    def __init__(self) -> None:
        self.stages: dict[tuple[str, str, str], StageData] = {}
        self.log: list[str] = []  # every stage statement that succeeded
        self.now: Callable[[], datetime] = lambda: EPOCH + timedelta(minutes=next(_clock))

    def files(self, database: str, schema: str, name: str = "HNPIPE_STAGE") -> dict[str, int]:
        """A test's question: the files of a stage with their sizes."""
        found = self.stages.get((database, schema, name))
        return {} if found is None else {path: len(data) for path, (data, _) in sorted(found.files.items())}

    def execute(self, sql: str, current: tuple[str | None, str | None], role: str,
                may: Callable[[str, Any], bool], insert: Callable[[str, pa.Table], None]) -> tuple:
        """(description, rows) of a stage statement. `may(privilege, on)` tells whether `role`
        holds a privilege: on is "schema" (CREATE STAGE) or a StageData; `insert(table, rows)`
        appends COPY's rows to a table (after the caller's own INSERT check)."""
        statement = " ".join(sql.split())
        for pattern, handler in _FORMS:
            match = re.fullmatch(pattern, statement, re.IGNORECASE)
            if match:
                result = handler(self, match, current, role, may, insert)
                self.log.append(statement)
                return result
        raise snowflake.connector.errors.ProgrammingError(msg=f"stage model: statement form not modelled: {statement}")

    def _stage(self, name: str, current: tuple[str | None, str | None], role: str, may, need: str) -> StageData:
        database, schema = current
        found = self.stages.get((database, schema, name))
        if found is None:
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"SQL compilation error: Stage '{database}.{schema}.{name}' does not exist or not authorized.",
                errno=2003)
        if found.owner != role and not may(need, found):  # S7
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"SQL access control error: Insufficient privileges to operate on stage '{name}' ({need})",
                errno=3001)
        return found


def _create(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    if_not_exists, name = m.group(1), m.group(2)
    database, schema = current
    if database is None or schema is None:
        raise snowflake.connector.errors.ProgrammingError(msg="Cannot perform CREATE STAGE: no current schema")
    if (database, schema, name) in stages.stages:
        if if_not_exists:
            return _STATUS
        raise snowflake.connector.errors.ProgrammingError(msg=f"Object '{name}' already exists.")
    if not may("CREATE STAGE", "schema"):  # S1
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL access control error: Insufficient privileges to operate on schema '{schema}' (CREATE STAGE)",
            errno=3001)
    stages.stages[(database, schema, name)] = StageData(role)
    return _STATUS


def _options(text: str) -> dict[str, str]:
    return {key.upper(): value.upper() for key, value in re.findall(r"(\w+) = (\w+)", text or "")}


def _put(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    local, name, folder, options = Path(unquote(m.group(1))), m.group(2), m.group(3), _options(m.group(4))
    stage = stages._stage(name, current, role, may, "WRITE")  # S2
    data = local.read_bytes()
    target = local.name
    if options.get("AUTO_COMPRESS", "TRUE") == "TRUE":
        data, target = gzip.compress(data), target + ".gz"
    path = folder.strip("/") + "/" + target if folder.strip("/") else target
    status = "UPLOADED"
    if path in stage.files and options.get("OVERWRITE", "FALSE") != "TRUE":
        status = "SKIPPED"
    else:
        stage.files[path] = (data, stages.now())
    columns = ("source", "target", "source_size", "target_size", "source_compression", "target_compression",
               "status", "message")
    return [_meta(c) for c in columns], [(local.name, target, local.stat().st_size, len(data), "NONE",
                                          "GZIP" if target.endswith(".gz") else "NONE", status, "")]


def _under(stage: StageData, path: str) -> list[str]:
    start = path.strip("/")
    return sorted(p for p in stage.files if p.startswith(start)) if start else sorted(stage.files)


def _list(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    name, path = m.group(1), m.group(2)
    stage = stages._stage(name, current, role, may, "READ")  # S3
    rows = [(f"{name.lower()}/{p}", len(stage.files[p][0]), hashlib.md5(stage.files[p][0]).hexdigest(),
             stage.files[p][1].strftime("%a, %d %b %Y %H:%M:%S GMT")) for p in _under(stage, path)]
    return [_meta("name"), _meta("size", 0), _meta("md5"), _meta("last_modified")], rows


def _get(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    name, path, folder = m.group(1), m.group(2), Path(unquote(m.group(3)))
    stage = stages._stage(name, current, role, may, "READ")  # S4
    rows = []
    for found in _under(stage, path):
        (folder / Path(found).name).write_bytes(stage.files[found][0])
        rows.append((Path(found).name, len(stage.files[found][0]), "DOWNLOADED", ""))
    return [_meta("file"), _meta("size", 0), _meta("status"), _meta("message")], rows


def _remove(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    name, path = m.group(1), m.group(2)
    stage = stages._stage(name, current, role, may, "WRITE")  # S5
    gone = _under(stage, path)
    for found in gone:
        del stage.files[found]
    return [_meta("name"), _meta("result")], [(f"{name.lower()}/{p}", "removed") for p in gone]


def _copy(stages: Stages, m: re.Match, current, role, may, insert) -> tuple:
    table, name, folder, listed, rest = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5)
    stage = stages._stage(name, current, role, may, "READ")  # S6
    if "TYPE = PARQUET" not in rest.upper() or "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE" not in rest.upper():
        raise snowflake.connector.errors.ProgrammingError(
            msg="SQL compilation error: PARQUET file format can produce one and only one column of type variant, "
                "object, or array. Use MATCH_BY_COLUMN_NAME or a transformation.")
    names = re.findall(r"'([^']+)'", listed)
    if len(names) > 1000:
        raise snowflake.connector.errors.ProgrammingError(msg="FILES takes at most 1,000 files")
    tables, rows = [], []
    for file in names:  # S6: all read first; one bad file and nothing is loaded
        path = folder.strip("/") + "/" + file if folder.strip("/") else file
        if path not in stage.files:
            raise snowflake.connector.errors.ProgrammingError(msg=f"Remote file '{path}' was not found.")
        try:
            loaded = pq.read_table(io.BytesIO(stage.files[path][0]))
        except Exception as exc:  # noqa: BLE001 - any unreadable file aborts the statement
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"Error parsing the parquet file: {path}: {exc}") from None
        tables.append(loaded)
        rows.append((f"{name.lower()}/{path}", "LOADED", loaded.num_rows, loaded.num_rows, 1, 0, None))
    for loaded in tables:
        insert(table, loaded)
    columns = ("file", "status", "rows_parsed", "rows_loaded", "error_limit", "errors_seen", "first_error")
    return [_meta(c) for c in columns], rows


_FORMS: list[tuple[str, Any]] = [
    (rf"CREATE STAGE (IF NOT EXISTS )?{_NAME} FILE_FORMAT = \(TYPE = PARQUET\)", _create),
    (rf"PUT 'file://([^']+)' @{_NAME}{_PATH}((?: \w+ = \w+)*)", _put),
    (rf"LIST @{_NAME}{_PATH}", _list),
    (rf"GET @{_NAME}{_PATH} 'file://([^']+)'", _get),
    (rf"REMOVE @{_NAME}{_PATH}", _remove),
    (rf"COPY INTO ((?:\"?[A-Z0-9_]+\"?\.){{0,2}}\"?[A-Z0-9_]+\"?) FROM @{_NAME}{_PATH} FILES = \(([^)]*)\) (.*)", _copy),
]


def matched_columns(loaded: pa.Table, columns: list[str]) -> dict[str, pa.ChunkedArray | None]:
    """S6: each table column with the file column of its name, case aside (None: NULLs)."""
    by_name = {column.upper(): loaded.column(column) for column in loaded.column_names}
    return {column: by_name.get(column.upper()) for column in columns}
