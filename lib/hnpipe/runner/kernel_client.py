"""The kernel client papermill gets from the runner's kernels: jupyter_client's, minus two fixed waits.

jupyter_client's `wait_for_ready` ends by reading IOPub until it has been quiet for 0.2 s, and
its kernel shutdown polls for the killed process every 0.1 s: about 0.3 s per notebook that a
small `hnpipe run` spends waiting on an idle machine (docs/performance.md). Here the client is
ready once the kernel's answer to `kernel_info` has arrived on the shell channel and the idle
status that closes it on IOPub (which proves IOPub is subscribed, as jupyter_client's check
does); what IOPub carried before is not for any cell, and nbclient reads only the messages
whose parent is the cell it runs.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import Type

# How often a shutdown looks whether the killed kernel is gone (jupyter_client: every 0.1 s).
SHUTDOWN_POLL_S = 0.005


class ReadyClient(AsyncKernelClient):
    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        asked: set[str] = set()
        while True:
            asked.add(self.kernel_info())
            if await self._kernel_info_answered(asked):
                return
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _kernel_info_answered(self, requests: set[str]) -> bool:
        """A reply to one of `requests` came on the shell channel (within 1 s, as jupyter_client
        waits) and the idle status of one on IOPub (within 0.2 s of it); else False: ask again.
        Any of them: a late answer to an earlier attempt counts (a busy machine)."""
        try:
            reply = await self._next(self.get_shell_msg, requests, 1, "kernel_info_reply")
            await self._next(self.get_iopub_msg, requests, 0.2, "status", "idle")
        except Empty:
            return False
        self._handle_kernel_info_reply(reply)
        return True

    @staticmethod
    async def _next(get, requests: set[str], timeout: float, msg_type: str, state: str | None = None) -> dict:
        """The next message answering one of `requests` with this type (others, from the
        kernel's start, are skipped); Empty when none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            message = await get(timeout=max(deadline - time.monotonic(), 0))
            if (message["parent_header"].get("msg_id") in requests and message["msg_type"] == msg_type
                    and (state is None or message["content"].get("execution_state") == state)):
                return message


class QuickManager(AsyncKernelManager):
    """jupyter_client's manager, handing out ReadyClients and noticing a killed kernel's exit
    within SHUTDOWN_POLL_S."""

    client_factory = Type(ReadyClient, klass=ReadyClient)

    async def _async_wait(self, pollinterval: float = SHUTDOWN_POLL_S) -> None:
        await super()._async_wait(pollinterval=min(pollinterval, SHUTDOWN_POLL_S))
