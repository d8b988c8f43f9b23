"""Notebook kernels forked from one pre-imported process (a "zygote"), for `hnpipe run`.

Each kernel used to be its own `python -m ipykernel_launcher`, paying ~1.2 CPU-s of imports
(ipykernel, IPython, zmq, pandas, pyarrow, duckdb, hnpipe) three times per run on a 2-core
machine. The zygote (`python -m hnpipe.runner.zygote`, started once per runner process) does
those imports once and forks one kernel per request: the child becomes a session leader
(as jupyter_client's launcher makes it), takes the request's cwd, environment and kernel
arguments, and runs IPKernelApp as `ipykernel_launcher` would. The zygote starts no thread and
no zmq context before forking, so the child starts as clean as a fresh interpreter; see
docs/decisions.md for the fork-safety reasoning. ZygoteProvisioner is the jupyter_client side:
a LocalProvisioner whose launch asks the zygote instead of Popen, and whose `process` is a
Popen-like handle on the forked pid, so interrupts, shutdown and hnpipe's signal handling
(process groups) work as before. Any failure falls back to the plain launch; HNPIPE_ZYGOTE=0
turns the zygote off.

Protocol, one JSON line each way on the zygote's stdin/stdout: {"argv", "cwd", "env"} ->
{"pid"} or {"error"}. The zygote exits when its stdin closes (the runner ended).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

# Imported in the zygote before any fork: what every kernel imports anyway (ipykernel's app)
# and what the pipeline notebooks import first (hnpipe.runner.kernels' warm modules).
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.debugger",
           "IPython.core.oinspect", "IPython.core.completerlib", "IPython.extensions.storemagic",
           "tornado.platform.asyncio", "tornado.queues",
           "hnpipe.pipeline", "hnpipe.hn", "hnpipe.warehouse.duckdb_engine", "duckdb")
# Variables read once at interpreter start-up: a kernel asking for other values than the
# zygote started with cannot be forked from it (it gets the plain launch).
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONSAFEPATH", "PYTHONNOUSERSITE",
                     "PYTHONWARNINGS", "PYTHONUTF8", "PYTHONIOENCODING", "VIRTUAL_ENV")
LAUNCHER = ["-m", "ipykernel_launcher"]
# The zygote runs this file as a script: importing it as hnpipe.runner.zygote would import
# hnpipe.runner first (the runner's own modules: ~0.1 s more before the first fork).
RUN_THIS_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def enabled() -> bool:
    return os.name == "posix" and hasattr(os, "fork") and os.environ.get("HNPIPE_ZYGOTE", "1") != "0"


class Zygote:
    """The runner's handle on its zygote process; requests are answered in order."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUN_THIS_FILE, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops the kernels itself
            text=True, bufsize=1)
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
            assert self.process.stdout
            while number not in self._answers:
                line = self.process.stdout.readline()
                self._answers[len(self._answers)] = json.loads(line) if line else {"error": "it exited"}
            answer = self._answers[number]
        if "pid" not in answer:
            raise RuntimeError(f"the kernel zygote could not fork: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        with self._lock:
            if self.process.stdin:
                self.process.stdin.close()
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


class ForkedProcess:
    """Popen's interface (what jupyter_client and hnpipe use) for a kernel the zygote forks:
    not our child, so its exit is seen by the pid going away (the zygote reaps it at once).
    The pid is waited for on first use; if the zygote failed, `fallback` launches the kernel
    the plain way and this object stands for that Popen instead."""

    def __init__(self, answer, fallback) -> None:
        self._answer, self._fallback = answer, fallback
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._popen: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None

    def _resolve(self) -> None:
        with self._lock:
            if self._pid is None and self._popen is None:
                try:
                    self._pid = self._answer()
                except Exception:  # noqa: BLE001 - the zygote failed: the usual launch
                    self._popen = self._fallback()

    @property
    def pid(self) -> int:
        self._resolve()
        return self._popen.pid if self._popen else self._pid  # type: ignore[return-value]

    def poll(self) -> int | None:
        self._resolve()
        if self._popen:
            self.returncode = self._popen.poll()
        elif self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (its status went to the zygote)
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time  # here: only waiting needs a clock

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            time.sleep(0.02)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ZygoteProvisioner(LocalProvisioner):
    """LocalProvisioner that forks the kernel from the zygote; the plain launch when it cannot.
    Its pid (and process group: the kernel is a session leader) is known once the zygote
    answered; they are read only to signal the kernel or to save the provisioner's state."""

    _process_group = None

    @property  # type: ignore[override]
    def pid(self):
        return self.process.pid if self.process is not None else None

    @pid.setter
    def pid(self, _value) -> None:  # LocalProvisioner's launch and cleanup set it; process says it
        pass

    @property  # type: ignore[override]
    def pgid(self):
        if self._process_group is not None:
            return self._process_group
        return self.process.pid if isinstance(self.process, ForkedProcess) else None

    @pgid.setter
    def pgid(self, value) -> None:
        self._process_group = value

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        zygote = shared()
        if zygote is None or cmd[1:3] != LAUNCHER:
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            answer = zygote.fork(cmd[3:], cwd, env)
        except Exception:  # noqa: BLE001 - any trouble: the kernel starts the usual way
            return await super().launch_kernel(cmd, **kwargs)
        from jupyter_client.launcher import launch_kernel  # here: only a failed fork needs it

        scrubbed = LocalProvisioner._scrub_kwargs(kwargs)
        self.process = ForkedProcess(answer, lambda: launch_kernel(cmd, **scrubbed))
        self.cwd = cwd
        return self.connection_info


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
        from ipykernel import kernelapp
        kernelapp.launch_new_instance(argv=argv)
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


def main() -> None:
    # The request and answer pipes move off fds 0 and 1: a kernel's stdout is the runner's
    # stderr (as with the plain launch), its stdin nothing.
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    if sys.path and sys.path[0] == "":  # `-c` put the cwd first; ipykernel_launcher removes it
        del sys.path[0]
    # pydevd (under ipykernel.debugger) warns about frozen modules on import; a kernel's
    # warning goes to its captured stderr, the zygote's would reach the runner's terminal
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for module in PRELOAD:
        __import__(module)
    gc.freeze()  # the imported objects stay out of the children's collections: fewer pages copied
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner stops kernels; the zygote ends on EOF
    signal.signal(signal.SIGCHLD, _reap)
    keep = (requests.fileno(), answers.fileno())
    for line in requests:
        try:
            request = json.loads(line)
            read, ready = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                _child(request, ready, keep)
            os.close(ready)
            os.read(read, 1)  # EOF once the child is a session leader (or died)
            os.close(read)
            answers.write(json.dumps({"pid": pid}) + "\n")
        except Exception as error:  # noqa: BLE001 - the runner falls back to the plain launch
            answers.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")


if __name__ == "__main__":
    main()
