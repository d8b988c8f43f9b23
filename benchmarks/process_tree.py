"""Peak RSS of a whole process tree (a command and every process it starts), sampled from /proc.

Linux only. The tree's RSS is summed at each sample (every `interval` s) and the largest sum
kept; per process, the largest RSS seen. Sampling can miss a peak shorter than the interval,
so the figures are lower bounds of the true peaks (to within one interval's growth).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(child) for child in text.split()]
    except OSError:
        pass
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class TreePeak:
    peak_kb: int = 0
    per_process_kb: dict[int, int] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    samples: int = 0


def run_measured(command: list[str], interval: float = 0.05, kill_when=None,
                 **popen) -> tuple[subprocess.CompletedProcess, TreePeak]:
    """Run `command` to the end while sampling its tree's RSS; `kill_when()` true: SIGKILL it."""
    peak = TreePeak()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            tree, todo = [], [process.pid]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                children = _children(pid)
                peak.parents.update((child, pid) for child in children)
                todo += children
            total = 0
            for pid in tree:
                rss = _rss_kb(pid)
                total += rss
                if rss > peak.per_process_kb.get(pid, 0):
                    peak.per_process_kb[pid] = rss
                # The latest command line: a kernel just forked still shows its parent's until exec.
                peak.commands[pid] = _cmdline(pid) or peak.commands.get(pid, "")
            peak.peak_kb = max(peak.peak_kb, total)
            peak.samples += 1
            if kill_when is not None and kill_when():
                process.kill()
                return
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = process.communicate()
    stop.set()
    thread.join()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), peak


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())
