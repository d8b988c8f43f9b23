"""Snowflake's stage: an internal named stage, `HNPIPE_STAGE`, in the environment's own
database.schema, so that files written on one machine (a CI runner's shard) are loaded on
another (the merge). Each statement is Snowflake's documented form:

* `CREATE STAGE IF NOT EXISTS HNPIPE_STAGE FILE_FORMAT = (TYPE = PARQUET)`, once per session,
  after `USE SCHEMA` and the write guard (the stage is guarded like a table: only an
  environment's own schema). Needs CREATE STAGE on the schema; the creating role owns the
  stage and so may read and write it (READ: GET, LIST, COPY from it; WRITE: PUT, REMOVE):
  https://docs.snowflake.com/en/sql-reference/sql/create-stage,
  https://docs.snowflake.com/en/user-guide/security-access-control-privileges
* `PUT 'file://<part>' @HNPIPE_STAGE/<folder>/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE` per
  part as it is complete (Parquet compresses its own pages: gzipping it again is refused by
  the Parquet reader, so AUTO_COMPRESS is off; OVERWRITE makes a retried upload of the same
  name replace it): https://docs.snowflake.com/en/sql-reference/sql/put. The connector runs
  PUT and GET itself, from a path
  (https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api).
* `LIST @HNPIPE_STAGE/<folder>/` (name, size, md5, last_modified; the name starts with the
  stage's name in lower case): https://docs.snowflake.com/en/sql-reference/sql/list
* `GET @HNPIPE_STAGE/<file> 'file://<dir>/'` for a manifest:
  https://docs.snowflake.com/en/sql-reference/sql/get
* `REMOVE @HNPIPE_STAGE/<folder>/`: https://docs.snowflake.com/en/sql-reference/sql/remove
* `COPY INTO <staging> FROM @HNPIPE_STAGE/<folder>/ FILES = (...) FILE_FORMAT = (TYPE = PARQUET
  USE_LOGICAL_TYPE = TRUE) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT
  PURGE = FALSE`, at most 1,000 files per statement
  (https://docs.snowflake.com/en/sql-reference/sql/copy-into-table,
  https://docs.snowflake.com/en/user-guide/data-load-considerations-load): the staging table
  is created first with ITEMS' column types (TIME as TIMESTAMP_NTZ, the files hold UTC wall
  time without a zone; USE_LOGICAL_TYPE reads the Parquet timestamp as a timestamp, as
  write_pandas' own `use_logical_type` does:
  https://docs.snowflake.com/en/sql-reference/sql/create-file-format; USE_VECTORIZED_SCANNER is
  left at its default). ON_ERROR = ABORT_STATEMENT: a bad file fails the
  whole load, and the publish then drops the staging table, so the published table stays.
  PURGE = FALSE: the files stay until the publish succeeded (a refused merge can be retried);
  hnpipe removes them afterwards. Each COPY's result must say LOADED for every file named
  (a file Snowflake skipped as loaded before would otherwise go unnoticed).

What only a real account can settle (TIME's type and value through COPY, lists into ARRAY,
FILES with a sub-folder) is checked by `hnpipe doctor --smoke`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Sequence

from hnpipe.environments import Target
from hnpipe.environments import quote_identifier as _q
from hnpipe.errors import HnpipeError, WarehouseError
from hnpipe.warehouse.base import STAGE_NAME, FileStage, Gate, checked_gates, keep_plan, staging_table_name

# hnpipe.stage's names: plain parts, no quote (FILES = ('..') takes them as they are), no `.`/`..` part
_FILE_NAME = re.compile(r"(?!(.*/)?\.{1,2}(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
MAX_FILES_PER_COPY = 1000  # COPY's FILES list takes at most 1,000 names
STAGE = f"@{STAGE_NAME}"  # a plain upper-case name: the same object as "HNPIPE_STAGE"
COPY_OPTIONS = ("FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
                "ON_ERROR = ABORT_STATEMENT PURGE = FALSE")
# ITEMS' Parquet columns (hnpipe.stage.STAGE_SCHEMA) as Snowflake columns, by Arrow type name.
_TYPES = {"int64": "NUMBER(38,0)", "bool": "BOOLEAN", "string": "VARCHAR", "large_string": "VARCHAR",
          "double": "FLOAT", "timestamp[us]": "TIMESTAMP_NTZ", "list<item: int64>": "ARRAY"}


def column_ddl(schema: Any) -> str:
    """The staging table's columns for an Arrow schema (the files' own)."""
    columns = []
    for field in schema:
        kind = _TYPES.get(str(field.type))
        if kind is None:
            raise WarehouseError(f"cannot stage column {field.name} of type {field.type} on Snowflake")
        columns.append(f"{_q(field.name, 'column')} {kind}")
    return ", ".join(columns)


def private_folder() -> Path:
    """`<temp dir>/hnpipe-stage-<uid>`, where this user's parts wait for their PUT: made 0700, and
    refused when it is a symlink, not this user's, or group/world-writable (another local user
    could otherwise swap a part between its rename and its PUT, or block the folder)."""
    root = Path(tempfile.gettempdir()) / f"hnpipe-stage-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    found = os.lstat(root)
    wrong = ("a symlink" if stat.S_ISLNK(found.st_mode) else "not a directory" if not stat.S_ISDIR(found.st_mode)
             else f"owned by uid {found.st_uid}" if found.st_uid != os.getuid()
             else f"group/world-writable ({stat.S_IMODE(found.st_mode):o})" if found.st_mode & 0o022 else None)
    if wrong:
        raise WarehouseError(f"refused the stage's local folder {root}: it is {wrong}; it must be a directory "
                             "of your own that only you may write (remove it, hnpipe makes it again)")
    return root


def _file_url(path: Path) -> str:
    text = str(Path(path).resolve())
    if "'" in text or "\\" in text:
        raise WarehouseError(f"cannot PUT {text}: a quote or backslash in the local path")
    return f"'file://{text}'"


class SnowflakeStage(FileStage):
    """HNPIPE_STAGE in target, through `warehouse`'s session (its guard and statements)."""

    shared = True

    def __init__(self, warehouse: Any, target: Target, local: Path | None = None) -> None:
        self.warehouse, self.target = warehouse, target
        self.local = Path(local) if local else private_folder() / target.database / target.schema
        self._ready = False

    def _here(self) -> None:
        """USE the target and ask the write guard, every time: the session may have moved."""
        self.warehouse._use_for_write(self.target)
        if not self._ready:
            self.warehouse._execute(f"CREATE STAGE IF NOT EXISTS {STAGE_NAME} FILE_FORMAT = (TYPE = PARQUET)",
                                    what=f"create the stage {self.target}.{STAGE_NAME}")
            self._ready = True

    def _run(self, sql: str, what: str) -> list[dict[str, Any]]:
        cursor = self.warehouse._execute(sql, what=what)
        names = [column[0].lower() for column in cursor.description or []]
        return [dict(zip(names, row)) for row in cursor.fetchall()] if names else []

    def upload(self, path: str, local_file: Path) -> None:
        folder, _, name = path.rpartition("/")
        if name != Path(local_file).name:
            raise WarehouseError(f"cannot PUT {local_file} as {path}: PUT keeps the file's own name")
        self._here()
        rows = self._run(f"PUT {_file_url(local_file)} {STAGE}/{folder}/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE",
                         what=f"upload {name} to {self.target}.{STAGE_NAME}/{folder}")
        if not rows or str(rows[0].get("status", "")).upper() != "UPLOADED":
            raise WarehouseError(f"upload of {path} to {self.target}.{STAGE_NAME} said {rows!r:.200}")

    def read_text(self, path: str) -> str | None:
        self._here()
        folder = tempfile.mkdtemp(prefix="hnpipe-get-")
        try:
            self._run(f"GET {STAGE}/{path} {_file_url(Path(folder))[:-1]}/'", what=f"download {path} from {STAGE_NAME}")
            found = Path(folder) / path.rpartition("/")[2]
            return found.read_text(encoding="utf-8") if found.is_file() else None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        self._here()
        rows = self._run(f"LIST {STAGE}/{prefix.strip('/')}/", what=f"list {STAGE_NAME}/{prefix}")
        for row in rows:  # names come as <stage name in lower case>/<path>
            row["path"] = str(row["name"]).partition("/")[2]
        return rows

    def listing(self, prefix: str) -> dict[str, int]:
        start = prefix.strip("/") + "/"
        return {row["path"][len(start):]: int(row["size"]) for row in self._list(prefix)
                if row["path"].startswith(start)}

    def remove(self, prefix: str) -> None:
        shutil.rmtree(self.local.joinpath(*prefix.split("/")), ignore_errors=True)
        self._here()
        self._run(f"REMOVE {STAGE}/{prefix.strip('/')}/", what=f"remove {STAGE_NAME}/{prefix}")

    def prune(self, prefix: str, older_than_s: float) -> None:
        local = self.local.joinpath(*prefix.split("/"))
        if local.is_dir():
            for entry in local.iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_dir() and time.time() - entry.stat().st_mtime > older_than_s:
                        shutil.rmtree(entry, ignore_errors=True)
        newest: dict[str, float] = {}
        start = prefix.strip("/") + "/"
        for row in self._list(prefix):
            folder = row["path"][len(start):].partition("/")[0]
            with contextlib.suppress(TypeError, ValueError):
                at = parsedate_to_datetime(str(row["last_modified"])).timestamp()
                newest[folder] = max(newest.get(folder, 0.0), at)
        for folder, at in newest.items():
            if folder and time.time() - at > older_than_s:
                with contextlib.suppress(HnpipeError):  # best effort: the next prune tries again
                    self._run(f"REMOVE {STAGE}/{start}{folder}/", what=f"prune {STAGE_NAME}/{start}{folder}")

    def publish(self, table: str, prefix: str, names: Sequence[str], schema: Any, run_id: str,
                gates: Sequence[Gate], keep_versions: int | None) -> int:
        staging = staging_table_name(table, run_id)
        ddl = column_ddl(schema)
        gates = checked_gates(gates)
        keep = keep_plan(table, run_id, keep_versions)
        names = list(names)
        bad = next((name for name in names if not _FILE_NAME.fullmatch(name)), None)
        if bad is not None:  # the names go into FILES = ('..') as they are
            raise WarehouseError(f"refused to load {bad!r} from {STAGE_NAME}: a staged file is named with "
                                 "letters, digits, _ . - and /, no . or .. part")
        self._here()
        where = f"{STAGE}/{prefix.strip('/')}/"

        def load() -> None:
            self.warehouse._execute(f"CREATE TABLE {_q(staging)} ({ddl})", what=f"create {staging}")
            for start in range(0, len(names), MAX_FILES_PER_COPY):
                batch = names[start:start + MAX_FILES_PER_COPY]
                listed = ", ".join(f"'{name}'" for name in batch)
                rows = self._run(f"COPY INTO {_q(staging)} FROM {where} FILES = ({listed}) {COPY_OPTIONS}",
                                 what=f"load {len(batch)} staged file(s) into {self.target}.{table}")
                # Every shard has a part-000001.parquet: a file is matched by its whole path.
                loaded = ["/" + str(row.get("file", "")) for row in rows if str(row.get("status", "")).upper() == "LOADED"]
                missing = [name for name in batch if not any(path.endswith("/" + name) for path in loaded)]
                if missing:
                    raise WarehouseError(f"refused to publish {self.target}.{table}: COPY did not load "
                                         f"{len(missing)} of {len(batch)} files, e.g. {missing[0]} ({rows[:1]!r:.200})")

        return self.warehouse._publish(self.target, table, staging, load, None, gates, keep)

