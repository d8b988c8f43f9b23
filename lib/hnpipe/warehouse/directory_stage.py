"""The embedded engine's stage: a directory beside the database file,
`<warehouse>/<DATABASE>.stage/<SCHEMA>/`, read by DuckDB's `read_parquet` (hnpipe.stage)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from hnpipe.environments import Target
from hnpipe.warehouse.base import FileStage, Gate


class DirectoryStage(FileStage):
    """The files are written where they stay: `upload` has nothing to do."""

    shared = False

    def __init__(self, warehouse: Any, target: Target, local: Path) -> None:
        self.warehouse, self.target, self.local = warehouse, target, Path(local)

    def _at(self, path: str) -> Path:
        return self.local.joinpath(*[part for part in path.split("/") if part])

    def upload(self, path: str, local_file: Path) -> None:
        if Path(local_file).resolve() != self._at(path).resolve():  # written elsewhere: move it in
            self._at(path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local_file, self._at(path))

    def read_text(self, path: str) -> str | None:
        found = self._at(path)
        return found.read_text(encoding="utf-8") if found.is_file() else None

    def listing(self, prefix: str) -> dict[str, int]:
        folder = self._at(prefix)
        if not folder.is_dir():
            return {}
        return {found.relative_to(folder).as_posix(): found.stat().st_size
                for found in folder.rglob("*") if found.is_file() and not found.name.endswith(".tmp")}

    def remove(self, prefix: str) -> None:
        shutil.rmtree(self._at(prefix), ignore_errors=True)

    def prune(self, prefix: str, older_than_s: float) -> None:
        folder = self._at(prefix)
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            try:
                if entry.is_dir() and time.time() - entry.stat().st_mtime > older_than_s:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                pass

    def publish(self, table: str, prefix: str, names: Sequence[str], schema: Any, run_id: str,
                gates: Sequence[Gate], keep_versions: int | None) -> int:
        listed = ", ".join("'" + str(self._at(f"{prefix}/{name}").resolve()).replace("'", "''") + "'"
                           for name in names)
        # No ORDER BY: the files are in fetch order, nearly by ID already, and sorting a
        # million rows held the publishing process at about 400 MiB (benchmarks/flat_memory.py).
        return self.warehouse.publish_query(self.target, table, f"SELECT * FROM read_parquet([{listed}])",
                                            run_id, gates=gates, keep_versions=keep_versions)
