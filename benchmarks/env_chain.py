"""Follow the environment through `hnpipe run`: the calls that receive it, from the CLI through
the runner to a notebook's `pipeline.start`.

    python benchmarks/env_chain.py            # prints the chain, writes benchmarks/env-chain-results.md

It traces (sys.setprofile, every thread) `hnpipe run --env local -p n_items=10` in this process,
then `pipeline.start("ITEMS", ...)` as the ITEMS notebook calls it in its kernel, and keeps every
call into hnpipe that receives the environment: the env name itself, a RunContext, or the
command's parsed arguments. Consecutive calls inside one module are one stop there. Per chain:

* stops      those visits, module by module;
* modules    the modules they are in (functions: the distinct functions);
* climbs     stops in a module that is already on the call stack below another module
             (A -> B -> A): the environment climbing back up to a module it left;
* returns    stops in a module the chain visited before (a caller calling on, or a climb).

Issue 16 counted 24 stops in 12 modules, 6 climbs and 12 returns before the RunContext, by
its own reading; this script's figures are comparable only with each other. Not part of `pytest`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "local"


def receives_environment(frame) -> bool:
    """Whether this call receives the environment: its name, a RunContext (not in RunContext's
    own dunders and properties: that is the value itself), or `hnpipe run`'s parsed arguments."""
    code = frame.f_code
    if code.co_name.startswith("__") or code.co_name in ("parameters", "replace"):
        return False
    for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]:
        value = frame.f_locals.get(name)
        if type(value).__name__ == "RunContext" and name != "self":
            return True
        if isinstance(value, str) and value == ENV:
            return True
        if isinstance(value, argparse.Namespace) and getattr(value, "env", None) == ENV:
            return True
    return False


def module_of(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name == "hnpipe" or name.startswith("hnpipe.") else None


def trace(action) -> list[tuple[str, str, bool]]:
    """(module, function, climbed back) of each call that receives the environment; it climbed
    back when its module is already on the call stack below another module (A -> B -> A)."""
    stops: list[tuple[str, str, bool]] = []
    lock = threading.Lock()

    def profile(frame, event, arg):
        if event != "call":
            return
        module = module_of(frame)
        if module is None or not receives_environment(frame):
            return
        stack, back = [], frame.f_back
        while back is not None:
            if module_of(back) is not None and (not stack or stack[-1] != module_of(back)):
                stack.append(module_of(back))
            back = back.f_back
        climbed = module in stack[1:] and stack[0] != module if stack else False
        with lock:
            stops.append((module, frame.f_code.co_name, climbed))

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return stops


def visits(stops: list[tuple[str, str, bool]]) -> list[tuple[str, list[str], bool]]:
    """The stops as visits: consecutive calls inside one module are one stop there."""
    found: list[tuple[str, list[str], bool]] = []
    for module, function, climbed in stops:
        if found and found[-1][0] == module and not climbed:
            if function not in found[-1][1]:
                found[-1][1].append(function)
        else:
            found.append((module, [function], climbed))
    return found


def counts(chain: list[tuple[str, list[str], bool]]) -> dict[str, int]:
    seen: list[str] = []
    returns = 0
    for module, _, _ in chain:
        returns += module in seen
        seen.append(module)
    return {"stops": len(chain), "modules": len(set(seen)), "returns": returns,
            "climbs": sum(climbed for _, _, climbed in chain),
            "functions": len({(module, function) for module, functions, _ in chain for function in functions})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "env-chain-results.md")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="hnpipe-env-chain-"))
    os.environ.update(HNPIPE_WAREHOUSE=f"duckdb:{scratch / 'warehouse'}", HNPIPE_RUNS_DIR=str(scratch / "runs"),
                      HNPIPE_DEV_SCHEMA="BENCH", HNPIPE_PROGRESS="0")
    for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "HNPIPE_RUN_ID", "HNPIPE_NOTEBOOK_OUTPUT"):
        os.environ.pop(key, None)
    os.chdir(ROOT)
    from hnpipe import cli, params, pipeline

    chain = trace(lambda: cli.main(["run", "--env", ENV, "-p", "n_items=10"]))
    # The ITEMS notebook's start, as its kernel runs it under `hnpipe run`.
    namespace = dict(params.params_for(ENV, {"n_items": 10}))
    os.environ.update(HNPIPE_RUN_ID="20261121T140102_3fa9c1",
                      HNPIPE_NOTEBOOK_OUTPUT=str(scratch / "runs" / "items.ipynb"))
    chain += trace(lambda: pipeline.start("ITEMS", namespace))
    chain = visits(chain)
    found = counts(chain)
    lines = ["# The environment through `hnpipe run`", "",
             f"Written by `python benchmarks/env_chain.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: "
             f"**{found['stops']} stops in {found['modules']} modules ({found['functions']} functions), "
             f"{found['climbs']} climbing back up to a module on the call stack, {found['returns']} in a "
             "module visited before** (from the CLI through the runner, then the ITEMS notebook's "
             "`pipeline.start`).", "",
             "| stop | module | functions there that receive the environment | climbs back |", "|---:|---|---|---|"]
    lines += [f"| {number} | {module} | {', '.join(functions)} | {'yes' if climbed else ''} |"
              for number, (module, functions, climbed) in enumerate(chain, 1)]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
