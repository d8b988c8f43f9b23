"""The backfill ledger: BACKFILL_LEDGER in the environment's schema, append-only.

Every change of a shard is a new row (planned, running, done, failed), and the shard's state
is its latest row, so the ledger is also the shard's history (attempts, errors, who ran it).
Row SHARD 0 of a backfill is the plan itself: the whole range, the shard size and the
parameters frozen at plan time (PARAMETERS, JSON); a second SHARD 0 row `merged` closes it.

Appending is the warehouse's own guarded `append_rows` (one transaction), so the ledger is
written only where the environment may write, like any table. A shard is done when its
`done` row is in: that row names the stage files and their checksums, which the shard wrote
(with its manifest) before. It is the commit point: a shard killed before it is fetched
again; a done shard is never fetched again.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd

from hnpipe.environments import Target
from hnpipe.errors import HnpipeError
from hnpipe.warehouse.base import BACKFILL_LEDGER, Warehouse

TABLE = BACKFILL_LEDGER
PLANNED, RUNNING, DONE, FAILED, MERGED = "planned", "running", "done", "failed", "merged"

COLUMNS: dict[str, str] = {
    "BACKFILL_ID": "string",
    "SHARD": "Int64",  # 1..n; 0 is the plan
    "ID_MIN": "Int64",
    "ID_MAX": "Int64",
    "STATUS": "string",
    "ATTEMPT": "Int64",  # the how-manieth run of this shard (running, done, failed rows)
    "ROWS": "Int64",
    "NULL_IDS": "Int64",
    "FILES": "string",  # JSON list of the stage files, relative to the backfill's folder
    "BYTES": "Int64",
    "CHECKSUM": "string",  # sha256 of the files' sha256s, in order
    "RUN_ID": "string",
    "GIT_SHA": "string",
    "HOST": "string",
    "PID": "Int64",
    "RECORDED_AT": "datetime64[us, UTC]",
    "ERROR": "string",
    "PARAMETERS": "string",  # plan rows: JSON of the frozen parameters
}


@dataclass
class Shard:
    """A shard as its latest ledger row says, plus its attempts so far."""

    backfill_id: str
    shard: int
    id_min: int
    id_max: int
    status: str
    attempts: int = 0
    rows: int | None = None
    null_ids: int | None = None
    files: list[str] = field(default_factory=list)
    bytes: int | None = None
    checksum: str | None = None
    run_id: str | None = None
    host: str | None = None
    pid: int | None = None
    at: datetime | None = None
    started: datetime | None = None  # of the latest attempt
    error: str | None = None

    @property
    def ids(self) -> int:
        return self.id_max - self.id_min + 1

    def matrix_entry(self) -> dict[str, int]:
        return {"shard": self.shard, "id_min": self.id_min, "id_max": self.id_max}

    def process_alive(self) -> bool | None:
        """For a running shard: whether its process lives (None: it runs on another host)."""
        if self.host != socket.gethostname() or self.pid is None:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class BackfillPlan:
    backfill_id: str
    id_min: int
    id_max: int
    shard_size: int
    parameters: dict[str, Any]
    created: datetime
    merged: bool
    shards: dict[int, Shard]

    def pending(self) -> list[Shard]:
        return [shard for shard in self.shards.values() if shard.status != DONE]


def now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    def __init__(self, warehouse: Warehouse, target: Target) -> None:
        self.warehouse, self.target = warehouse, target

    def exists(self) -> bool:
        return TABLE in self.warehouse.list_tables(self.target, bookkeeping=True)

    def append(self, *rows: Mapping[str, Any]) -> None:
        frame = pd.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows])
        for name, dtype in COLUMNS.items():
            frame[name] = frame[name].astype(dtype)
        self.warehouse.append_rows(self.target, TABLE, frame)

    def rows(self, backfill_id: str) -> pd.DataFrame:
        if not self.exists():
            return pd.DataFrame(columns=list(COLUMNS))
        return self.warehouse.query(
            self.target, f"SELECT * FROM {TABLE} WHERE BACKFILL_ID = ? ORDER BY RECORDED_AT, SHARD", [backfill_id])

    def latest_id(self) -> str | None:
        """The newest plan's id, merged or not."""
        if not self.exists():
            return None
        found = self.warehouse.query(
            self.target, f"SELECT BACKFILL_ID FROM {TABLE} WHERE SHARD = 0 AND STATUS = ? "
                         "ORDER BY RECORDED_AT DESC LIMIT 1", [PLANNED])
        return None if found.empty else str(found.iloc[0, 0])

    def load(self, backfill_id: str | None = None) -> BackfillPlan:
        """A plan with every shard's state; the newest plan when no id is given."""
        backfill_id = backfill_id or self.latest_id()
        if backfill_id is None:
            raise HnpipeError(f"no backfill planned in {self.target}: run `hnpipe backfill plan` first")
        rows = self.rows(backfill_id)
        if rows.empty:
            raise HnpipeError(f"no backfill {backfill_id} in {self.target}.{TABLE}")
        plan_rows = rows[rows["SHARD"] == 0]
        head = plan_rows[plan_rows["STATUS"] == PLANNED].iloc[0]
        parameters = json.loads(head["PARAMETERS"])
        shards: dict[int, Shard] = {}
        for row in rows[rows["SHARD"] > 0].itertuples(index=False):
            number = int(row.SHARD)
            shard = shards.get(number)
            if shard is None:
                shard = shards[number] = Shard(backfill_id, number, int(row.ID_MIN), int(row.ID_MAX), PLANNED)
            shard.status = row.STATUS
            shard.at = row.RECORDED_AT
            if row.STATUS == RUNNING:
                shard.attempts += 1
                shard.started = row.RECORDED_AT
                shard.error = None
            for name in ("rows", "null_ids", "bytes", "pid"):
                value = getattr(row, name.upper())
                setattr(shard, name, None if pd.isna(value) else int(value))
            for name in ("checksum", "run_id", "host", "error"):
                value = getattr(row, name.upper())
                if not pd.isna(value) or name != "error":
                    setattr(shard, name, None if pd.isna(value) else str(value))
            shard.files = json.loads(row.FILES) if not pd.isna(row.FILES) else []
        return BackfillPlan(backfill_id, int(head["ID_MIN"]), int(head["ID_MAX"]), int(parameters["shard_size"]),
                            parameters, head["RECORDED_AT"], bool((plan_rows["STATUS"] == MERGED).any()), shards)

    def shard(self, backfill_id: str, number: int) -> Shard:
        plan = self.load(backfill_id)
        if number not in plan.shards:
            raise HnpipeError(f"backfill {backfill_id} has no shard {number}: it has 1..{len(plan.shards)}")
        return plan.shards[number]

    def event(self, shard: Shard, status: str, **values: Any) -> None:
        self.append({"BACKFILL_ID": shard.backfill_id, "SHARD": shard.shard, "ID_MIN": shard.id_min,
                     "ID_MAX": shard.id_max, "STATUS": status, "RECORDED_AT": now(), **values})
