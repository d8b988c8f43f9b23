"""The kernel zygote: one process that imports what every notebook kernel imports, then
forks one kernel per request (`hnpipe run`; see hnpipe.runner.zygote for the jupyter_client
side and docs/decisions.md for why and why forking is safe here).

Each kernel used to be its own `python -m ipykernel_launcher`, paying ~1.2 CPU-s of imports
(ipykernel, IPython, zmq, pandas, pyarrow, duckdb, hnpipe) three times per run on a 2-core
machine. The zygote does those imports once; a forked child becomes a session leader (as
jupyter_client's launcher makes a kernel), takes the request's cwd, environment and kernel
arguments, and runs IPKernelApp as `ipykernel_launcher` would. The zygote starts no zmq
context before forking. This module imports only the standard library, so `hnpipe run` can
start the zygote first thing; the zygote runs this file as a script (not as hnpipe.kernel_zygote
under hnpipe: nothing of the runner is imported into it). HNPIPE_ZYGOTE=0 turns it off.

Protocol, one JSON line each way on the zygote's stdin/stdout: {"argv", "cwd", "env"} ->
{"pid"} or {"error"}. The zygote exits when its stdin closes (the runner ended).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

# Imported in the zygote before any fork: what every kernel imports anyway (ipykernel's app)
# and what the pipeline notebooks import first (hnpipe.runner.kernels' warm modules).
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.debugger",
           "IPython.core.oinspect", "IPython.core.completerlib", "IPython.extensions.storemagic",
           "tornado.platform.asyncio", "tornado.queues",
           "IPython.core.logger", "sqlite3", "faulthandler",
           "hnpipe.pipeline", "hnpipe.hn",
           "pyarrow.dataset", "pyarrow.pandas_compat", "pandas.io.formats.html", "pandas.io.formats.string")
# Variables read once at interpreter start-up: a kernel asking for other values than the
# zygote started with cannot be forked from it (it gets the plain launch).
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONSAFEPATH", "PYTHONNOUSERSITE",
                     "PYTHONWARNINGS", "PYTHONUTF8", "PYTHONIOENCODING", "VIRTUAL_ENV")
# The zygote runs this file as a script: importing it as a module of hnpipe.runner would
# import the runner's own modules first (~0.1 s more before the first fork).
RUN_THIS_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
# How long the runner waits for a kernel's pid: the zygote's imports take about a second, a fork
# milliseconds; papermill gives a kernel 60 s to start (its start_timeout default) as well.
ANSWER_WAIT_S = 60.0


def enabled() -> bool:
    return os.name == "posix" and hasattr(os, "fork") and os.environ.get("HNPIPE_ZYGOTE", "1") != "0"


class Zygote:
    """The runner's handle on its zygote process; requests are answered in order."""

    def __init__(self) -> None:
        # Answers come back on a pipe of their own: the zygote's (and so the kernels') stdout
        # and stderr are the runner's, as a launched kernel's are.
        read, write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", RUN_THIS_FILE, __file__, str(write)], stdin=subprocess.PIPE,
                pass_fds=(write,), text=True, bufsize=1,
                start_new_session=True)  # Ctrl-C reaches the runner, which stops the kernels itself
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self._answer_fd = read
        self._unread = b""
        self._failed: str | None = None
        self.startup = {name: os.environ.get(name) for name in STARTUP_VARIABLES}
        self._lock = threading.Lock()
        self._asked = 0
        self._answers: dict[int, dict] = {}

    def fork(self, argv: list[str], cwd: str, env: dict[str, str]):
        """Asks for a new kernel run as `ipykernel_launcher argv` and returns at once, with a
        function that waits for its pid (raising when the zygote could not fork it): the
        zygote may still be importing, and the runner has its own start-up to get on with."""
        if any(env.get(name) != value for name, value in self.startup.items()):
            raise RuntimeError("the kernel's start-up environment differs from the zygote's")
        with self._lock:
            assert self.process.stdin
            self.process.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env}) + "\n")
            self.process.stdin.flush()
            number = self._asked
            self._asked += 1
        return lambda: self._answer(number)

    def _answer(self, number: int) -> int:
        with self._lock:
            deadline = time.monotonic() + ANSWER_WAIT_S
            while number not in self._answers and self._failed is None:
                line = self._read_line(deadline)
                if line:
                    self._answers[len(self._answers)] = json.loads(line)
            answer = self._answers.get(number, {"error": self._failed})
        if "pid" not in answer:
            raise RuntimeError(f"the kernel zygote could not fork: {answer.get('error')}")
        return int(answer["pid"])

    def _read_line(self, deadline: float) -> str:
        """The next answer, or "" once the zygote has exited or failed to answer in time; then
        it is killed, so that it cannot fork, later, a kernel the runner has launched itself."""
        while b"\n" not in self._unread:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._answer_fd], [], [], remaining)[0]:
                self._failed = f"it did not answer within {ANSWER_WAIT_S:g} s"
                self.process.kill()
                return ""
            chunk = os.read(self._answer_fd, 65536)
            if not chunk:
                self._failed = "it exited"
                return ""
            self._unread += chunk
        line, _, self._unread = self._unread.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        with self._lock:
            if not self._asked:  # no kernel of its own: no need to wait for its imports to end
                self.process.kill()
            try:
                if self.process.stdin:
                    self.process.stdin.close()
            except OSError:  # it is gone, with a request still in the buffer
                pass
            if self._answer_fd >= 0:
                os.close(self._answer_fd)
                self._answer_fd = -1
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_shared: Zygote | None = None
_shared_lock = threading.Lock()


def shared() -> Zygote | None:
    """This process's zygote, started on first use; None when off or it cannot start."""
    global _shared
    if not enabled():
        return None
    with _shared_lock:
        if _shared is None or _shared.process.poll() is not None:
            try:
                _shared = Zygote()
            except OSError:
                return None
            import atexit  # here: only a process that started a zygote registers its close
            atexit.register(_shared.close)
        return _shared


# ---- the zygote process itself -------------------------------------------------------------

def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict[str, Any], ready: int, keep: tuple[int, ...]) -> None:
    """In the forked child: become what `ipykernel_launcher argv` would be, run, exit."""
    code = 1
    try:
        os.setsid()  # as jupyter_client's launcher: the kernel's process group is signalled
        os.close(ready)  # the zygote answers once the session exists
        for fd in keep:
            os.close(fd)
        for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # what the interpreter sets at start-up
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # The kernel exits when the zygote does (which ends with the runner). Given as an
        # argument: IPKernelApp read JPY_PARENT_PID into its default when the zygote imported it.
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        sys.argv = ["ipykernel_launcher", *argv]
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()  # IPKernelApp.launch_instance, with one step between
        app.initialize(argv)
        # What importing hnpipe does in a kernel (short errors, the notebooks' log file) needs
        # the kernel's shell, which did not exist when the zygote imported hnpipe.
        import hnpipe  # here: imported already, by the preloads

        hnpipe._in_a_kernel()
        app.start()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - said on stderr, as a crashed kernel would
        import traceback  # here: only a crash needs it

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - closed
                pass
        os._exit(code)


def _import_engine() -> None:
    """The warehouse engine this environment's runs use (HNPIPE_WAREHOUSE, HNPIPE_ENV), as the
    notebooks will import it; a bad setting is the run's to report, not the zygote's."""
    try:
        # here: this module imports nothing of hnpipe where the runner imports it
        from hnpipe.warehouse import engine_class, spec_for

        engine_class(spec_for(os.environ.get("HNPIPE_ENV") or "local"))
    except Exception:  # noqa: BLE001 - the kernel imports it itself then
        pass


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import what the kernels will; returns what failed. A module that fails (say, hnpipe
    itself mid-edit) is left to the kernels, whose notebooks report it where the analyst looks,
    instead of ending the zygote with a traceback on the runner's terminal."""
    failed = []
    for module in modules:
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - see above
            failed.append(module)
    return failed


def main() -> None:
    # Requests move off fd 0: a kernel's stdin is nothing, as with the plain launch (whose
    # stdin is a pipe no one writes to). Its stdout and stderr are the runner's, inherited.
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if sys.path and sys.path[0] == "":  # `-c` put the cwd first; ipykernel_launcher removes it
        del sys.path[0]
    # pydevd (under ipykernel.debugger) warns about frozen modules on import; a kernel's
    # warning goes to its captured stderr, the zygote's would reach the runner's terminal
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    preload(PRELOAD)
    _import_engine()
    gc.freeze()  # the imported objects stay out of the children's collections: fewer pages copied
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner stops kernels; the zygote ends on EOF
    signal.signal(signal.SIGCHLD, _reap)
    keep = (requests.fileno(), answers.fileno())
    for line in requests:
        pipe: tuple[int, ...] = ()
        try:
            request = json.loads(line)
            pipe = read, ready = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                _child(request, ready, keep)
            os.close(ready)
            pipe = (read,)
            os.read(read, 1)  # EOF once the child is a session leader (or died)
            answers.write(json.dumps({"pid": pid}) + "\n")
        except Exception as error:  # noqa: BLE001 - the runner falls back to the plain launch
            answers.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        finally:  # a failed fork leaves no descriptor for the next kernels to inherit
            for fd in pipe:
                os.close(fd)
    # The runner is done with it (stdin closed) and waits for it to exit: nothing here needs
    # the interpreter's teardown of everything the zygote imported (~0.06 s of that wait).
    for stream in (answers, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the runner closed its end first
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
