"""The `hnpipe` command. Exit 0 on success; otherwise one line on stderr and exit 1.

Each subcommand lives beside the code it drives: a module listed in COMMANDS provides
`add_arguments(parser)` and `main(args) -> int` (or, for "module:prefix", `<prefix>_add_arguments`
and `<prefix>_main`, where one module drives two commands).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import signal
import sys
import threading

from hnpipe import environments, kernel_zygote
from hnpipe.credentials import install_log_redaction, redact
from hnpipe.errors import HnpipeError, printable

# Commands that act on an environment's warehouse: each resolves it first, the same way
# (environments.process_environment: .env loaded, and refused if it sets HNPIPE_ENV or the PR id).
# `run` resolves its environment itself, first thing (hnpipe.run_context.RunContext.for_run).
ENVIRONMENT_COMMANDS = {"backfill", "admin", "diff", "history", "versions", "restore", "docs", "doctor",
                        "freshness"}

# (command, module, help)
COMMANDS = [
    ("run", "hnpipe.runner", "run the pipeline notebooks for an environment"),
    ("backfill", "hnpipe.backfill.cli", "fetch an id range of the HN history in resumable shards, merge into ITEMS"),
    ("serve-sample", "hnpipe.sample.cli", "serve the bundled HN sample over HTTP"),
    ("admin", "hnpipe.ops.admin", "clone, drop, list and prune the per-pull-request copies of PRODUCTION"),
    ("changes", "hnpipe.ops.changes", "which datasets changed against a git ref, and why"),
    ("comment", "hnpipe.ops.review", "post or update the branch run's one pull-request comment (GitLab: merge-request note)"),
    ("diff", "hnpipe.ops.diff", "compare the tables of two databases, e.g. PRODUCTION and a branch clone"),
    ("history", "hnpipe.history", "the run history of an environment, newest first"),
    ("versions", "hnpipe.ops.versions", "the kept earlier versions of a table, to restore"),
    ("restore", "hnpipe.ops.versions:restore", "put back a table as it was before a run replaced it"),
    ("docs", "hnpipe.ops.catalog", "write the data catalog: datasets, columns, lineage, freshness (HTML)"),
    ("sql", "hnpipe.ops.handover", "the Snowflake SQL that builds a dataset from the published ITEMS"),
    ("freshness", "hnpipe.ops.freshness", "exit 1 and alert when a dataset's last successful run is older than --max-age"),
    ("doctor", "hnpipe.ops.doctor", "check an environment's warehouse account against what hnpipe needs (--smoke: try it)"),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only`) one whose other subcommands are names without arguments:
    importing every command module (nbformat, papermill, ...) costs seconds per call."""
    parser = argparse.ArgumentParser(prog="hnpipe", description="Hacker News datasets, promoted safely.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module_name, help_text in COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module_path, _, prefix = module_name.partition(":")
            module = importlib.import_module(module_path)
            prefix = f"{prefix}_" if prefix else ""
            getattr(module, f"{prefix}add_arguments")(sub)
            sub.set_defaults(handler=getattr(module, f"{prefix}main"))
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `hnpipe` process itself, not a test calling in
        # At exit the interpreter garbage-collects every module it imported (papermill,
        # jupyter_client, duckdb: ~0.2 s of a small `hnpipe run`); frozen objects are skipped,
        # and their memory goes back with the process. atexit runs this after the handlers
        # registered later (the zygote's close) and before earlier ones (logging's flush).
        # Objects still freed by reference count (the DuckDB host, module globals) are; only a
        # finalizer inside a reference cycle would not run, and hnpipe closes what it writes
        # with `with` blocks instead of leaving it to one.
        atexit.register(gc.freeze)
    argv = sys.argv[1:] if argv is None else argv
    named = [word for word in argv if word in {name for name, _, _ in COMMANDS}]
    if named[:1] == ["run"] and not {"--dry-run", "-h", "--help"} & set(argv):
        kernel_zygote.shared()  # the kernels' imports start now, beside this process's start-up
    args = build_parser(only=named[0] if named else "").parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM (CI, `timeout`, a container stop) unwinds like Ctrl-C, so every command's cleanup
    # runs (a clone's temporary file, a kernel); `hnpipe run` handles both itself while it runs.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return _handle(args)
    finally:
        if previous is not None:  # cli.main called in a longer process (tests) leaves it as it was
            signal.signal(signal.SIGTERM, previous)


def _handle(args) -> int:
    try:
        install_log_redaction()
        if args.command in ENVIRONMENT_COMMANDS:
            environments.process_environment()
        return args.handler(args)
    except HnpipeError as error:
        return _error(str(error), getattr(error, "exit_code", 1))  # a terminated run: 130, 143
    except OSError as error:  # a directory that cannot be written, a file that is gone, ...
        where = f" {error.filename}" if error.filename else ""
        logging.getLogger("hnpipe.cli").debug("details", exc_info=True)
        return _error(f"cannot create, write or read{where}: {error.strerror or type(error).__name__}"
                      if error.strerror else f"{type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - one line was promised, whatever went wrong
        logging.getLogger("hnpipe.cli").info("unexpected error", exc_info=True)  # -v shows the traceback
        return _error(f"unexpected {type(error).__name__}: {error} (run with -v for the traceback)")
    except KeyboardInterrupt as stop:
        if isinstance(stop, _Terminated):
            print("hnpipe: terminated by SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("hnpipe: interrupted", file=sys.stderr)
        return 130


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so its cleanup runs as for Ctrl-C."""


def _terminate(_signum: int, _frame: object) -> None:
    raise _Terminated()


def _error(message: str, code: int = 1) -> int:
    """The one line a failing command prints: redacted, and with control characters shown
    escaped (an API or a file may have put them in the message)."""
    print(f"hnpipe: error: {printable(redact(message))}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
