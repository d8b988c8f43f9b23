"""Notebook kernels started ahead of need, for `hnpipe run`.

A kernel takes about a second to start, most of it the kernel importing what the notebooks
need (pandas, pyarrow, duckdb, hnpipe.pipeline: measured by benchmarks/peer.py --phases). The
runner starts every notebook's kernel before the first notebook runs, with those imports as
the kernel's start-up lines, so the downstream kernels are ready while ITEMS fetches. papermill
then executes each notebook in its own started kernel (`km=`), exactly as it would in a kernel
it started itself: the import runs outside the cell history (IPython's exec_lines run with
store_history=False), so `In` holds only the notebook's cells and the parameter check reads
the same history.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Mapping

from hnpipe import kernel_zygote
from hnpipe.runner.kernel_client import QuickManager
from hnpipe.runner.zygote import ZygoteProvisioner
from hnpipe.runner.signals import socket_dir

# What every pipeline notebook imports first; run at kernel start-up, bound to no name the
# notebook could see. A notebook that reads the HN API (a dataset with no upstream: ITEMS)
# also gets the HN client, which the others never import (aiohttp, requests: ~0.2 s of CPU).
WARM_MODULES = ("hnpipe.pipeline",)
SOURCE_WARM_MODULES = (*WARM_MODULES, "hnpipe.hn")


def warm_import(modules: tuple[str, ...]) -> str:
    return "; ".join(f"import {module} as _hnpipe_warm_import" for module in modules) + "; del _hnpipe_warm_import"

KERNEL_ARGUMENTS = [
    # ipykernel logs an unencrypted-loopback warning at start and a KeyboardInterrupt at
    # shutdown on every run: noise here (notebook errors surface through papermill)
    "--IPKernelApp.log_level=CRITICAL",
    # what nbclient passes to the kernels it starts itself: no history file on disk
    "--HistoryManager.hist_file=:memory:",
]


# Optional modules papermill (or jsonschema under it) imports when installed, for what
# `hnpipe run` never does: s3:// and hdfs:// notebook paths (boto3, pyarrow.fs: numpy and
# pyarrow), and jsonschema's IRI format checker (rfc3987_syntax, which JupyterLab's
# jupyter-events pulls in and which builds a grammar for about a second). Together about
# 1.5 s and 30 MiB in the `hnpipe run` process.
PAPERMILL_SKIPS = ("boto3", "pyarrow.fs", "rfc3987_syntax")


def import_papermill():
    """papermill, imported without the optional modules above: each is marked missing while
    papermill imports, so papermill (and jsonschema) take the path they take when it is not
    installed; the marks are removed afterwards, so anything else can still import them."""
    marked = [name for name in PAPERMILL_SKIPS if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import papermill
    finally:
        for name in marked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return papermill


class Kernel:
    """One started (not yet necessarily ready) python3 kernel for one notebook."""

    def __init__(self, cwd: Path, env: Mapping[str, str], warm: tuple[str, ...] = WARM_MODULES):
        from jupyter_core.utils import run_sync

        class Manager(QuickManager):
            """Keeps the clients papermill opens, to close them with the kernel."""

            async def _async_pre_start_kernel(self, **kwargs):
                if self.provisioner is None and kernel_zygote.enabled():  # forked from the warm zygote
                    self.kernel_id = self.kernel_id or str(uuid.uuid4())
                    self.provisioner = ZygoteProvisioner(
                        kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
                return await super()._async_pre_start_kernel(**kwargs)

            def client(self, **kwargs):
                client = super().client(**kwargs)
                clients.append(client)
                return client

        clients: list = []
        self._clients = clients
        self._run_sync = run_sync
        self._stopped = False
        # Unix sockets where there are any: with TCP, jupyter_client picks free ports and the
        # kernel binds them later, so kernels starting at once (two runs side by side) can
        # race for a port and one dies with "Address already in use".
        self._socket_dir = socket_dir() if os.name == "posix" else None
        transport = {"transport": "ipc", "ip": os.path.join(self._socket_dir, "k")} if self._socket_dir else {}
        self.manager = Manager(kernel_name="python3", **transport)
        arguments = list(KERNEL_ARGUMENTS)
        if warm:
            arguments.append(f"--IPKernelApp.exec_lines={warm_import(warm)}")
        # Returns once the process is launched; the kernel boots (and imports) on its own,
        # and papermill waits for it to answer.
        run_sync(self.manager.start_kernel)(extra_arguments=arguments, cwd=str(cwd), env=dict(env))

    @property
    def process(self):
        """The kernel's process (a Popen), or None before it started."""
        return getattr(self.manager.provisioner, "process", None)

    def shutdown(self) -> None:
        """Stop the kernel at once: its notebook has finished (and committed), or the run
        is failing. Never raises: a kernel that is already gone is fine. Call it from the
        thread that ran the notebook: the client's channels belong to its event loop."""
        if self._stopped:
            return
        self._stopped = True
        for client in self._clients:
            try:
                client.stop_channels()
            except Exception:  # closing what is already closed
                pass
        try:
            self._run_sync(self.manager.shutdown_kernel)(now=True)
        except Exception:  # already dead, or never started
            pass
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
