"""Notebook kernels forked from the kernel zygote (hnpipe.kernel_zygote), for `hnpipe run`.

ZygoteProvisioner is a jupyter_client LocalProvisioner whose launch asks the zygote instead of
Popen, and whose `process` is a Popen-like handle on the forked pid, so interrupts, shutdown
and hnpipe's signal handling (process groups) work as before. When the zygote is off
(HNPIPE_ZYGOTE=0, not POSIX) or anything goes wrong, the kernel starts the plain way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from hnpipe.kernel_zygote import shared

LAUNCHER = ["-m", "ipykernel_launcher"]


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
