"""`hnpipe run --dry-run`: everything a run needs, checked without fetching or writing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hnpipe import config, credentials, datasets, environments, params
from hnpipe.errors import HnpipeError
from hnpipe.runner.kernels import import_papermill


@dataclass
class Preflight:
    """One item of the dry run's checklist: ok True, False (failed) or None (skipped)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "ok", False: "FAIL", None: "skip"}[self.ok]
        return f"[{mark:<4}] {self.name:<12} {self.detail}"


def dry_run(env: str, overrides: Mapping[str, Any] = (), root: Path | None = None) -> list[Preflight]:
    """Everything a run of `env` needs, checked without fetching or writing anything:
    parameters, the environment guard, credentials, the warehouse and target, the notebooks
    and where their outputs go. Every check runs even when an earlier one fails."""
    papermill = import_papermill()

    checks: list[Preflight] = []

    def check(name: str, step) -> Any:
        """Run one check; a refusal becomes a failed item, never an exception."""
        try:
            detail, result = step()
        except HnpipeError as error:
            checks.append(Preflight(name, False, credentials.redact(str(error))))
            return None
        checks.append(Preflight(name, True, detail))
        return result

    def skip(name: str, why: str) -> None:
        checks.append(Preflight(name, None, f"not checked: {why}"))

    root = root or config.project_root()
    config.load_env(root)
    given = f" with -p {', '.join(sorted(overrides))}" if overrides else ""
    values = check("parameters", lambda: (f"params/{env}.yaml{given} is valid", params.params_for(env, overrides, root)))
    target = check("environment", lambda: (
        f"HNPIPE_ENV={environments.process_environment()} may write {environments.resolve(env)}",
        environments.resolve(env)))
    spec = environments.warehouse_spec(env) if check("engine", lambda: (environments.warehouse_spec(env), True)) else None

    credentials_ok = False
    if spec == "snowflake":
        if values is None:
            skip("credentials", "the parameters (which name the variables) are invalid")
        else:
            def present() -> tuple[str, Any]:
                found = credentials.snowflake_credentials(values.get("snowflake_env"))
                used = credentials.variables_used(values.get("snowflake_env"), found)
                return (f"set (values not shown): {', '.join(used)}; logs in with "
                        f"{credentials.login_method(found)}"), True
            credentials_ok = bool(check("credentials", present))
    elif spec is not None:
        checks.append(Preflight("credentials", True, "none needed: the embedded warehouse"))
        credentials_ok = True

    if spec is None or target is None or values is None or not credentials_ok:
        skip("warehouse", "an earlier check failed")
    else:
        check("warehouse", lambda: _reach_warehouse(env, values, spec, target))

    for dataset in datasets.dependency_order():
        path = config.notebooks_dir(root) / dataset.notebook

        def declares(path: Path = path) -> tuple[str, Any]:
            if not path.is_file():
                raise HnpipeError(f"{path} does not exist")
            try:
                declared = set(papermill.inspect_notebook(str(path)))
            except Exception as error:  # nbformat, JSON or papermill errors alike
                raise HnpipeError(f"cannot read {path.name}: {type(error).__name__}: {error}") from None
            # A notebook declares the parameters it uses (environment always); the others reach
            # it from the params file all the same, and keep their defaults in JupyterLab.
            missing = sorted({"environment"} - declared)
            extra = sorted(declared - set(params.PARAMETERS))
            if missing or extra:
                raise HnpipeError(f"{path.name}: its parameters cell " + "; ".join(
                    part for part in (f"lacks {', '.join(missing)}" if missing else "",
                                      f"declares unknown {', '.join(extra)}" if extra else "") if part))
            return f"{path.name} parses and declares {len(declared)} known parameters", None

        check("notebook", declares)

    outputs = config.runs_dir(root) / env
    check("outputs", lambda: (f"executed notebooks go to {outputs}/<run id>/", _writable(outputs)))
    # Informational: a run without a webhook works, it just fails silently.
    if env == "local":
        checks.append(Preflight("alerts", None, "local runs never alert"))
    elif os.environ.get("HNPIPE_SLACK_WEBHOOK_URL"):
        checks.append(Preflight("alerts", True, "failures alert Slack (HNPIPE_SLACK_WEBHOOK_URL is set)"))
    else:
        checks.append(Preflight("alerts", None, "HNPIPE_SLACK_WEBHOOK_URL is not set: failures will not alert"))
    return checks


def _reach_warehouse(env: str, values: Mapping[str, Any], spec: str,
                     target: environments.Target) -> tuple[str, Any]:
    """Connect and list the databases; say whether the target's database is there."""
    # Imported on use: history and the warehouse pull in pandas and DuckDB (~0.5 s), which
    # `hnpipe run` spends starting kernels instead; a dry run needs them only here.
    from hnpipe.warehouse import reader

    if spec == "snowflake":
        warehouse = reader(env, "hnpipe run --dry-run", values)
        try:
            databases = warehouse.list_databases()
        finally:
            warehouse.close()
        where = "Snowflake"
    else:
        directory = Path(spec.partition(":")[2])
        _writable(directory)
        # Imported on use: DuckDB is a dry run's business only here.
        from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

        databases = DuckDBWarehouse(directory).list_databases()
        where = str(directory)
    if target.database in databases:
        return f"{where} reachable; {target.database} exists", databases
    if env == "branch":
        pr = target.database.removeprefix(environments.CLONE_PREFIX)
        raise HnpipeError(f"{where} reachable, but {target.database} does not exist: run "
                          f"`hnpipe admin clone --pr {pr}` first")
    if spec == "snowflake":
        raise HnpipeError(f"Snowflake reachable, but database {target.database} does not exist (or this role "
                          "cannot see it): databases are created by an admin")
    return f"{where} usable; {target.database} will be created by the first run", databases


def _writable(directory: Path) -> None:
    """`directory` exists and is writable, or could be created: nothing is created here."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise HnpipeError(f"cannot write {directory}: {existing} is not a writable directory")
