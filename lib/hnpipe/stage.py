"""The stage: where fetched items go as Parquet files while they are fetched, so a run's
memory does not grow with the ids it fetches, and from where the warehouse loads them into a
staging table (then the usual gates and swap).

* DuckDB: a directory beside the database files, `<warehouse dir>/<DATABASE>.stage/<SCHEMA>/`;
  the staging table is `CREATE TABLE .. AS SELECT * FROM read_parquet([...])`, which DuckDB
  streams from the files, in fetch order (nearly by ID). The files are written in place.
* Snowflake: an internal named stage, `HNPIPE_STAGE`, in the environment's own schema. Each
  part is written to a local temporary folder and sent with PUT as soon as it is complete
  (memory stays flat: at most one part's row group); the staging table is loaded with
  `COPY INTO .. MATCH_BY_COLUMN_NAME` inside Snowflake (hnpipe.warehouse.snowflake_stage), so
  a shard's files, in Snowflake, can be merged from another CI runner.

The engine's side is hnpipe.warehouse.base.FileStage (`Warehouse.stage(target)`); this module
writes the parts, the manifests and the previews whatever the engine.

Layout under the stage root (one per database.schema, so each environment has its own):

    runs/<RUN_ID>/part-000001.parquet             a run's fetch, removed after its publish
    backfill/<BACKFILL_ID>/shard-000003/<RUN_ID>/part-*.parquet, manifest.json

Files are written as `<name>.tmp` and renamed when complete (then uploaded): a reader never sees
half a file. A backfill shard's manifest is written (uploaded) after its parts, and the ledger's
`done` row after the manifest: that row is the commit point (hnpipe.backfill.shard).
Writing to a stage is guarded like writing a table: `open_stage` asks the warehouse's write guard
(and its read-only databases), which refuse an environment writing another's database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hnpipe.environments import Target
from hnpipe.errors import HnpipeError, WarehouseError
from hnpipe.items import ITEMS_SCHEMA, FetchedItems
from hnpipe.warehouse.base import FileStage, Gate, Warehouse
from hnpipe.warehouse.frames import frame_from_arrow

# The files hold TIME as naive UTC wall time, as the warehouses store it (hnpipe.warehouse.frames):
# DuckDB's read_parquet then makes it TIMESTAMP, not TIMESTAMP WITH TIME ZONE, so ITEMS keeps its
# column types whichever way it was loaded; reading the files back labels it UTC again.
STAGE_SCHEMA = ITEMS_SCHEMA.set(ITEMS_SCHEMA.get_field_index("TIME"), pa.field("TIME", pa.timestamp("us")))
_TIME = ITEMS_SCHEMA.get_field_index("TIME")
PART_ROWS = 100_000  # rows per Parquet file: ~10 MiB each, a few row groups of the builder's batches
MANIFEST = "manifest.json"
PREVIEW_ROWS = 100  # a committed shard on a shared stage keeps this many rows for its preview cells


def schema_columns(schema: pa.Schema | None = None) -> list[list[str]]:
    """The files' columns as a manifest records them: [name, Arrow type] each (today's STAGE_SCHEMA
    by default). A merge refuses files written with other columns: Snowflake's COPY ..
    MATCH_BY_COLUMN_NAME would load a column they lack as NULLs (hnpipe.backfill.merge)."""
    return [[field.name, str(field.type)] for field in (STAGE_SCHEMA if schema is None else schema)]


class PartWriter:
    """Writes ITEMS record batches into numbered Parquet files of at most `part_rows` rows.

    Memory holds at most one open file's current row group (the batch being written)."""

    def __init__(self, directory: Path, part_rows: int = PART_ROWS,
                 on_part: Callable[[Path], None] | None = None) -> None:
        self.directory = Path(directory)
        self.on_part = on_part  # each complete file, e.g. sent to the warehouse's stage
        self.directory.mkdir(parents=True, exist_ok=True)
        self.part_rows = part_rows
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._open_rows = 0
        self._tmp: Path | None = None

    def __call__(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or self._open_rows >= self.part_rows:
            self._close_part()
            self._tmp = self.directory / f"part-{len(self.files) + 1:06d}.parquet.tmp"
            self._writer = pq.ParquetWriter(self._tmp, STAGE_SCHEMA)
        columns = list(batch.columns)
        columns[_TIME] = columns[_TIME].cast(pa.timestamp("us"))  # same instants, unlabelled: UTC wall time
        self._writer.write_batch(pa.record_batch(columns, schema=STAGE_SCHEMA))
        self._open_rows += batch.num_rows
        self.rows += batch.num_rows

    def _close_part(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = self._tmp.with_suffix("")  # drop .tmp
        os.replace(self._tmp, final)
        self._writer, self._tmp, self._open_rows = None, None, 0
        if self.on_part is not None:
            self.on_part(final)
        self.files.append(final)

    def close(self) -> list[Path]:
        """Finish the open file; the files written, in order."""
        self._close_part()
        return list(self.files)


class StagedItems(FetchedItems):
    """What `Step.fetch()` returns when the fetch went to the stage: the items as Parquet
    files, read back only when asked (`head`, `to_frame`, `table`)."""

    def __init__(self, files: Sequence[Path], rows: int, stage: "Stage", prefix: str) -> None:
        self.files = [Path(f) for f in files]
        self.rows = rows
        self.stage = stage
        self.prefix = prefix  # where in the stage: removed after the publish

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        size = sum(f.stat().st_size for f in self.files if f.exists()) / 2**20
        return (f"<{self.rows:,} fetched ITEMS rows in {len(self.files)} Parquet file(s) in the stage "
                f"({size:.1f} MiB): .head() or .to_frame() for a DataFrame>")

    @property
    def table(self) -> pa.Table:  # type: ignore[override]
        """Every row as one Arrow table (reads all the files: memory grows with the rows)."""
        if not self.files:
            return ITEMS_SCHEMA.empty_table()
        return pa.concat_tables([_read(f) for f in self._here()])

    def head(self, rows: int = 5) -> pd.DataFrame:
        """The `rows` lowest ids, reading one column at a time: only ID is held whole."""
        import pyarrow.compute as pc

        rows = max(0, min(int(rows), self.rows))
        found: list[pa.Table] = []
        for path in self._here():
            part = _read(path)
            found.append(part.take(pc.select_k_unstable(part, k=min(rows, part.num_rows),
                                                        sort_keys=[("ID", "ascending")])) if rows else part.slice(0, 0))
        if not found:
            return frame_from_arrow(ITEMS_SCHEMA.empty_table())
        lowest = pa.concat_tables(found)
        lowest = lowest.take(pc.sort_indices(lowest, sort_keys=[("ID", "ascending")])).slice(0, rows)
        return frame_from_arrow(lowest)

    def counts_by_type(self) -> pd.DataFrame:
        """Rows per TYPE, reading only the TYPE column of each file."""
        counts: dict[str, int] = {}
        for path in self._here():
            for entry in pq.read_table(path, columns=["TYPE"]).column("TYPE").value_counts().to_pylist():
                counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
        frame = pd.DataFrame(sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or "")),
                             columns=["TYPE", "ROWS"])
        return frame

    def _here(self) -> list[Path]:
        gone = next((path for path in self.files if not path.is_file()), None)
        if gone is not None:
            raise HnpipeError(f"{gone} is no longer on this machine (a shard's files leave it at its commit on "
                              "Snowflake: the stage has them); step.preview() and step.counts_by_type() show them")
        return self.files

    def discard(self) -> None:
        """Remove the files from the stage (after the publish, or a failed one)."""
        self.stage.remove(self.prefix)


class StagedPreview:
    """What a committed shard's preview cells show once its local files are gone (a shared
    stage removes them at the commit): the rows per TYPE and the `rows` lowest ids, read before."""

    def __init__(self, items: StagedItems, rows: int = PREVIEW_ROWS) -> None:
        self.rows = len(items)
        self._head = items.head(rows)
        self._counts = items.counts_by_type()

    def head(self, rows: int = 5) -> pd.DataFrame:
        if rows > len(self._head) and self.rows > len(self._head):
            print(f"(the {len(self._head):,} lowest ids of {self.rows:,}: the shard's files are in the stage now)")
        return self._head.head(max(0, int(rows))).copy()

    def counts_by_type(self) -> pd.DataFrame:
        return self._counts.copy()


@dataclass
class Stage:
    """A database.schema's stage (see the module doc): the local folder the parts are written
    in, and the engine's stage (`files`, hnpipe.warehouse.base.FileStage) they go to."""

    files: FileStage
    target: Target

    @property
    def root(self) -> Path:
        return self.files.local

    @property
    def shared(self) -> bool:
        """The files are in the warehouse: shards written on other machines can be merged."""
        return self.files.shared

    def path(self, prefix: str) -> Path:
        """Where `prefix` is on the local disk (checked: plain names, no `..`)."""
        return self.root.joinpath(*_parts(prefix))

    def writer(self, prefix: str) -> PartWriter:
        directory = self.path(prefix)
        if directory.exists():  # an earlier attempt under the same name: start clean
            shutil.rmtree(directory)
        prefix = "/".join(_parts(prefix))
        return PartWriter(directory, on_part=lambda part: self.files.upload(f"{prefix}/{part.name}", part))

    def prune(self, prefix: str, older_than_s: float) -> None:
        """Remove the folders under `prefix` not written to for `older_than_s` seconds."""
        self.files.prune("/".join(_parts(prefix)), older_than_s)

    def remove(self, prefix: str) -> None:
        self.files.remove("/".join(_parts(prefix)))

    def drop_local(self, prefix: str) -> None:
        """Remove `prefix`'s local copies when the warehouse holds the files (a shared stage):
        the stage's own files otherwise."""
        if self.shared:
            shutil.rmtree(self.path(prefix), ignore_errors=True)

    def write_manifest(self, prefix: str, manifest: dict) -> Path:
        """The manifest beside the files, sent to the stage last: the shard's upload is then complete."""
        path = self.path(prefix) / MANIFEST
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        self.files.upload("/".join(_parts(prefix)) + "/" + MANIFEST, path)
        return path

    def read_manifest(self, prefix: str) -> dict | None:
        text = self.files.read_text("/".join(_parts(prefix)) + "/" + MANIFEST)
        return None if text is None else json.loads(text)

    def listing(self, prefix: str) -> dict[str, int]:
        """Every file in the stage under `prefix`, with its bytes."""
        return self.files.listing("/".join(_parts(prefix)))

    def local_copy(self, prefix: str, name: str) -> Path | None:
        """The file when it is readable on this machine (its sha256 can be checked), else None."""
        return self.files.local_copy("/".join([*_parts(prefix), *_parts(name)]))

    def publish(self, warehouse: Warehouse, table: str, files: Sequence[Path], run_id: str,
                gates: Sequence[Gate], keep_versions: int | None) -> int:
        """Load the files (paths under `root`) into `table`'s staging table inside the
        warehouse, gate, swap."""
        if not files:
            return warehouse.publish_arrow(self.target, table, STAGE_SCHEMA.empty_table(), run_id,
                                           gates=gates, keep_versions=keep_versions)
        # relative_to is lexical: `_parts` refuses a `..` (or a quote) before it reaches a load
        names = ["/".join(_parts(Path(f).relative_to(self.root).as_posix())) for f in files]
        prefix = os.path.commonpath([name.rpartition("/")[0] for name in names])
        return self.files.publish(table, prefix, [name[len(prefix) + 1:] for name in names], STAGE_SCHEMA,
                                  run_id, gates, keep_versions)


def _parts(prefix: str) -> list[str]:
    parts = [part for part in prefix.split("/") if part]
    if not parts or any(part in (".", "..") or not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", part) for part in parts):
        raise HnpipeError(f"invalid stage path {prefix!r}")
    return parts


def _read(path: Path) -> pa.Table:
    """A stage file with the ITEMS schema (TIME labelled UTC again)."""
    table = pq.read_table(path, schema=STAGE_SCHEMA)
    return table.set_column(_TIME, ITEMS_SCHEMA.field("TIME"), table.column(_TIME).cast(ITEMS_SCHEMA.field("TIME").type))


def open_stage(warehouse: Warehouse, target: Target) -> Stage:
    """The stage of `target` on `warehouse`, after the warehouse's own guard allowed writing
    there (the stage is guarded like the tables). The guard is asked without opening the
    database: a fetch must not wait for a file another notebook holds (only the publish does).
    The engine's stage asks its guard again before each statement it sends (Snowflake)."""
    if target.database in getattr(warehouse, "read_only_databases", ()):
        raise WarehouseError(f"refused write to {target}: this warehouse opens {target.database} read-only")
    if warehouse.write_guard is not None:
        warehouse.write_guard(target)
    return Stage(warehouse.stage(target), target)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
