"""One run as one value: its environment, parameters, target and run id, resolved once.

`hnpipe run` resolves it at the edge (`RunContext.for_run`); a notebook's `pipeline.start`
resolves its own from the parameters cell (`RunContext.for_notebook`). Everything after that
receives the one frozen value instead of `env, values, target, run_id` side by side, so the
environment is never re-derived halfway down a call chain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from hnpipe import config, environments, params
from hnpipe.environments import Target


@dataclass(frozen=True)
class RunContext:
    """Where a run writes and with what: `env` (the process's environment), its validated
    parameters `values` (read-only), the one database.schema it may write, and its run id."""

    env: str
    values: Mapping[str, Any]
    target: Target
    run_id: str

    def __post_init__(self) -> None:
        # A read-only view of a private copy: a caller's later edit cannot move the run.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def for_run(cls, env: str, overrides: Mapping[str, Any] = (), root: Path | None = None) -> RunContext:
        """`hnpipe run --env ENV -p ...`: the environment guarded against the process first
        (HNPIPE_ENV), then params/<env>.yaml plus the overrides, validated (both refused before
        any notebook starts), with a new run id."""
        target = environments.resolve(env, source="--env")
        return cls(env, params.params_for(env, overrides, root), target, config.new_run_id())

    @classmethod
    def for_notebook(cls, values: Mapping[str, Any]) -> RunContext:
        """A notebook's run from its validated parameters cell: each start is a run, with
        `hnpipe run`'s id when it runs the notebook (HNPIPE_RUN_ID)."""
        run_id = config.start_run()
        target = environments.resolve(values["environment"])
        return cls(values["environment"], values, target, run_id)

    @classmethod
    def for_command(cls, env: str, values: Mapping[str, Any] | None = None,
                    run_id: str | None = None) -> RunContext:
        """A command acting on `env`'s own target (restore, a recorded admin action):
        params/<env>.yaml unless `values` are given, and the process's run id unless the
        command has its own."""
        values = params.params_for(env) if values is None else values
        return cls(env, values, environments.target_for(env), run_id or config.current_run_id())

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters as a plain dict (papermill, JSON)."""
        return dict(self.values)

    def check_write(self, actual: Target) -> None:
        """The run's write guard, called right before each write: `actual` (the connection's
        database.schema) must be the target resolved once, here, and in the run's own database."""
        if actual != self.target or environments.owner_of(actual.database) != self.env:
            raise environments.foreign_write(self.env, self.target, actual)

    def replace(self, **changes: Any) -> RunContext:
        """The same run with some fields changed (a notebook's next run id, edited parameters)."""
        return dataclasses.replace(self, **changes)
