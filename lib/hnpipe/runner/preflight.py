"""`hnpipe run --dry-run`: everything a run needs, checked without fetching or writing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hnpipe import config, credentials, datasets, environments, params
from hnpipe.errors import HnpipeError
from hnpipe.runner.kernels import import_papermill
from hnpipe.warehouse import reader
from hnpipe.warehouse import engine_class, spec_for


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
    spec = check("engine", lambda: (str(spec_for(env)), spec_for(env)))

    credentials_ok = False
    if spec is not None:
        engine = engine_class(spec)
        if values is None and engine.LOGS_IN:
            skip("credentials", "the parameters (which name the variables) are invalid")
        else:
            credentials_ok = bool(check("credentials", lambda: (engine.login_detail((values or {}).get("snowflake_env")), True)))

    if spec is None or target is None or values is None or not credentials_ok:
        skip("warehouse", "an earlier check failed")
    else:
        check("warehouse", lambda: _reach_warehouse(env, values, target))

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
    check("outputs", lambda: (f"executed notebooks go to {outputs}/<run id>/", config.check_writable_directory(outputs)))
    # Informational: a run without a webhook works, it just fails silently.
    if env == "local":
        checks.append(Preflight("alerts", None, "local runs never alert"))
    elif os.environ.get("HNPIPE_SLACK_WEBHOOK_URL"):
        checks.append(Preflight("alerts", True, "failures alert Slack (HNPIPE_SLACK_WEBHOOK_URL is set)"))
    else:
        checks.append(Preflight("alerts", None, "HNPIPE_SLACK_WEBHOOK_URL is not set: failures will not alert"))
    return checks


def _reach_warehouse(env: str, values: Mapping[str, Any], target: environments.Target) -> tuple[str, Any]:
    """Connect (read-only) and list the databases; say whether the target's database is there."""
    with reader(env, "hnpipe run --dry-run", values) as warehouse:
        databases = warehouse.probe()
        where, creates = warehouse.where, warehouse.CREATES_DATABASES
    if target.database in databases:
        return f"{where} reachable; {target.database} exists", databases
    if env == "branch":
        pr = target.database.removeprefix(environments.CLONE_PREFIX)
        raise HnpipeError(f"{where} reachable, but {target.database} does not exist: run "
                          f"`hnpipe admin clone --pr {pr}` first")
    if not creates:
        raise HnpipeError(f"{where} reachable, but database {target.database} does not exist (or this role "
                          "cannot see it): databases are created by an admin")
    return f"{where} usable; {target.database} will be created by the first run", databases
