"""`hnpipe run` starts the kernels ahead of need and runs independent notebooks at once.

Small stand-in notebooks in a scratch project (the real params files, notebooks that only
record what they see) make each behaviour observable without timing anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from queue import Empty

import nbformat
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_core.utils import run_sync

from hnpipe import datasets, history, kernel_zygote, runner
from hnpipe.environments import Target
from hnpipe.runner import kernels
from hnpipe.runner.kernel_client import ReadyClient
from hnpipe.runner.zygote import ForkedProcess
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

from kernels import kernel_processes

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path, cells: dict[str, str]) -> Path:
    """A project root with the real params/ and one code cell per dataset's notebook (`pass`
    unless `cells` gives one, by the notebook's name without .ipynb)."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").mkdir()
    for name in (Path(dataset.notebook).stem for dataset in datasets.dependency_order()):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(cells.get(name, "pass"))]
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, root / "notebooks" / f"{name}.ipynb")
    return root


# A rendezvous: each notebook leaves its mark and waits (bounded) for the other's. Run one
# after the other, the first would wait in vain and fail.
RENDEZVOUS = """
import os, time
from pathlib import Path
here = Path(os.environ["HNPIPE_NOTEBOOK_OUTPUT"]).parent
(here / "{mine}.mark").touch()
deadline = time.monotonic() + 60
while not (here / "{theirs}.mark").exists():
    assert time.monotonic() < deadline, "{theirs} never ran beside {mine}"
    time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="lists kernels through /proc")
def test_comments_and_stories_run_at_once_after_items(clean_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, {
        "items": "from pathlib import Path; import os\n"
                 "Path(os.environ['HNPIPE_NOTEBOOK_OUTPUT']).with_name('items.mark').touch()",
        "comments": "from pathlib import Path; import os\n"
                    "assert Path(os.environ['HNPIPE_NOTEBOOK_OUTPUT']).with_name('items.mark').exists()\n"
                    + RENDEZVOUS.format(mine="comments", theirs="stories"),
        "stories": RENDEZVOUS.format(mine="stories", theirs="comments"),
    })
    result = runner.run("local", {"n_items": 10}, root=root)
    assert [nb.dataset for nb in result.notebooks][0] == "ITEMS"
    assert sorted(nb.dataset for nb in result.notebooks) == sorted(datasets.DATASETS)
    assert sorted(p.name for p in result.directory.glob("*.ipynb")) == sorted(
        dataset.notebook for dataset in datasets.dependency_order())
    assert kernel_processes() == []


@pytest.mark.slow
def test_a_notebook_starts_in_a_kernel_that_has_imported_hnpipe_outside_its_history(
        clean_env: Path, tmp_path: Path) -> None:
    check = ("import sys\n"
             "assert 'hnpipe.pipeline' in sys.modules and 'pandas' in sys.modules\n"
             "assert not [name for name in globals() if 'warm' in name], 'the warm-up left a name'\n"
             # the history: papermill's parameters cell and this one, nothing run before them
             "assert len(In) == 3 and In[1].startswith('# Parameters'), In\n")
    root = project(tmp_path, {"items": check})
    result = runner.run("local", {"n_items": 10}, root=root, only=["ITEMS"])
    executed = nbformat.read(result.directory / "items.ipynb", as_version=4)
    assert not [out for cell in executed.cells for out in cell.get("outputs", []) if out.output_type == "error"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="lists kernels through /proc")
def test_a_failing_notebook_lets_its_wave_finish_and_stops_the_run_with_no_kernel_left(
        clean_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, {"comments": "raise ValueError('comments broke')",
                              "stories": "import time; time.sleep(1)"})
    with pytest.raises(runner.RunFailed, match=r"^comments.ipynb failed: ValueError: comments broke"):
        runner.run("local", {"n_items": 10}, root=root)
    run_dir = next((tmp_path / "runs" / "local").iterdir())
    stories = nbformat.read(run_dir / "stories.ipynb", as_version=4)
    assert stories.cells[-1].execution_count  # ran to its end beside the failing one
    assert kernel_processes() == []


@pytest.mark.slow
def test_a_failing_first_notebook_never_runs_the_later_ones(clean_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, {"items": "raise ValueError('items broke')"})
    with pytest.raises(runner.RunFailed, match=r"^items.ipynb failed: ValueError: items broke"):
        runner.run("local", {"n_items": 10}, root=root)
    run_dir = next((tmp_path / "runs" / "local").iterdir())
    assert sorted(p.name for p in run_dir.iterdir()) == ["items.html", "items.ipynb"]  # the failed record, rendered too
    assert kernel_processes() == []


def test_waves_put_each_dataset_after_its_upstream_ones() -> None:
    waves = runner._waves(datasets.dependency_order())
    wave_of = {d.name: number for number, wave in enumerate(waves) for d in wave}
    assert sorted(wave_of) == sorted(datasets.DATASETS)  # every dataset once
    # Each in the first wave after all its upstream ones: as early as it can run.
    assert all(wave_of[d.name] == max((wave_of[up] + 1 for up in d.upstream), default=0)
               for d in datasets.dependency_order())
    assert len(waves) >= 2 and [d.name for d in waves[0]] == ["ITEMS"]
    assert [[d.name for d in wave] for wave in runner._waves(datasets.dependency_order(["STORIES"]))] == [["STORIES"]]


@pytest.mark.slow
def test_hnpipe_run_reaches_its_kernels_without_importing_pandas_or_duckdb() -> None:
    # What `hnpipe run` imports before the kernels start, and papermill as it imports it: the
    # libraries the notebooks need load in the kernels, not (also) in the run's own process.
    code = ("import sys; import hnpipe.cli, hnpipe.runner; from hnpipe.runner import kernels; kernels.import_papermill(); "
            "print(sorted(m for m in ('pandas', 'duckdb', 'pyarrow', 'numpy', 'boto3', 'rfc3987_syntax') "
            "if m in sys.modules)); import boto3, pyarrow.fs")  # still importable afterwards
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Two runs in a fresh process (this one has pandas already): one that succeeds, one whose
# COMMENTS fails. The process counts the warehouses the runner opens and closes.
ONE_WAREHOUSE = """
import sys
from pathlib import Path
from hnpipe import runner
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

events = []
DuckDBWarehouse.__init__ = lambda self, *a, __init__=DuckDBWarehouse.__init__, **k: (events.append("open"), __init__(self, *a, **k))[1]
DuckDBWarehouse.close = lambda self: events.append("close")
print(runner.run("local", {{"n_items": 10}}, root=Path({good!r})).summary())
try:
    runner.run("local", {{"n_items": 10}}, root=Path({bad!r}))
except runner.RunFailed as failed:
    print(failed)
print(events, sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
"""


@pytest.mark.slow
def test_a_run_opens_one_warehouse_closes_it_and_records_without_pandas(clean_env: Path, tmp_path: Path) -> None:
    # The stand-in ITEMS publishes nothing: the summary counts no rows ("?").
    good = project(tmp_path / "good", {})
    bad = project(tmp_path / "bad", {"comments": "raise ValueError('comments broke')"})
    code = ONE_WAREHOUSE.format(good=str(good), bad=str(bad))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "['open', 'close', 'open', 'close'] []", result.stdout  # one per run, closed
    assert lines[-2].startswith("comments.ipynb failed: ValueError: comments broke")
    assert [line.split()[:2] for line in lines if line.startswith(("ITEMS", "COMMENTS"))] == [
        ["ITEMS", "?"], ["COMMENTS", "?"]]
    recorded = history.read(DuckDBWarehouse(clean_env), Target("LOCAL", "TESTER"), limit=10)
    # The failure the runner recorded; the good run's stand-ins recorded no success, so once
    # its process is gone its marker reads as abandoned (markers themselves are bookkeeping).
    assert sorted(recorded.STATUS) == ["abandoned", "failed"]
    assert recorded[recorded.STATUS == "failed"].DATASET.tolist() == ["COMMENTS"]
    runs = DuckDBWarehouse(clean_env).query_rows(
        Target("LOCAL", "TESTER"), "SELECT COUNT(*) AS N FROM PIPELINE_RUNS WHERE STATUS = 'running'")
    assert runs == [{"N": 2}]  # each run's marker, written without pandas


# Each notebook writes its kernel's parent pid, own pid and process group beside the run.
WHO_AM_I = ("import os; from pathlib import Path\n"
            "Path(os.environ['HNPIPE_NOTEBOOK_OUTPUT']).with_suffix('.who').write_text("
            "f'{os.getppid()} {os.getpid()} {os.getpgid(0)}')")


def kernels_of(result: runner.RunResult) -> list[tuple[int, ...]]:
    """(parent pid, pid, process group) of each notebook's kernel, in run order (WHO_AM_I)."""
    files = [(result.directory / dataset.notebook).with_suffix(".who") for dataset in datasets.dependency_order()]
    return [tuple(int(number) for number in file.read_text().split()) for file in files]


@pytest.mark.slow
@pytest.mark.skipif(not kernel_zygote.enabled(), reason="kernels are forked on POSIX only")
def test_a_runs_kernels_are_forked_from_one_zygote_each_leading_its_process_group(
        clean_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, {"items": WHO_AM_I, "comments": WHO_AM_I, "stories": WHO_AM_I})
    who = kernels_of(runner.run("local", {"n_items": 10}, root=root))
    zygote = kernel_zygote.shared()
    assert zygote is not None and zygote.process.pid != os.getpid()
    assert {parent for parent, _, _ in who} == {zygote.process.pid}  # not this process: the zygote
    assert len({pid for _, pid, _ in who}) == len(who)  # one kernel per notebook
    assert all(pid == group for _, pid, group in who)  # as jupyter_client's launcher makes them: signalled as a group
    assert kernel_processes() == []


def started_client(kernel: kernels.Kernel) -> BlockingKernelClient:
    client = BlockingKernelClient()
    client.load_connection_info(kernel.manager.get_connection_info())
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return client


@pytest.mark.slow
@pytest.mark.skipif(not kernel_zygote.enabled(), reason="kernels are forked on POSIX only")
def test_a_forked_kernel_is_interrupted_and_shut_down_as_a_launched_one(tmp_path: Path) -> None:
    kernel = kernels.Kernel(tmp_path, dict(os.environ), warm=())
    assert isinstance(kernel.process, ForkedProcess)
    client = started_client(kernel)
    assert kernel_processes() == [kernel.process.pid]  # the helper above sees forked kernels
    try:
        running = client.execute("import time; print('asleep', flush=True); time.sleep(60)")
        # Interrupted once the cell runs: a SIGINT right after execute_input can be lost by
        # ipykernel 7 (launched kernels too: 1 of 20 tries, with the kernel left asleep).
        while client.get_iopub_msg(timeout=30)["content"].get("text") != "asleep\n":
            pass
        run_sync(kernel.manager.interrupt_kernel)()  # SIGINT to its process group, as for any kernel
        reply = client.get_shell_msg(timeout=15)
        assert reply["parent_header"]["msg_id"] == running
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert client.execute_interactive("x = 1", timeout=15)["content"]["status"] == "ok"  # still up
    finally:
        client.stop_channels()
        kernel.shutdown()
    assert kernel_processes() == []


# What the zygote imported started native threads (OpenBLAS's pool, jemalloc's background
# thread): a forked kernel must still use each library's threads without hanging.
THREADED_WORK = """
import duckdb, numpy, pyarrow, pyarrow.compute
assert (numpy.ones((600, 600)) @ numpy.ones((600, 600)))[0, 0] == 600
assert pyarrow.compute.sum(pyarrow.array(range(2_000_000))).as_py() == 1_999_999_000_000
assert duckdb.sql("SELECT count(*) FROM range(5000000)").fetchall() == [(5_000_000,)]
"""


@pytest.mark.slow
@pytest.mark.skipif(not kernel_zygote.enabled(), reason="kernels are forked on POSIX only")
def test_a_forked_kernel_uses_numpy_pyarrow_and_duckdb_threads(tmp_path: Path) -> None:
    kernel = kernels.Kernel(tmp_path, dict(os.environ))
    assert isinstance(kernel.process, ForkedProcess)
    client = started_client(kernel)
    try:
        reply = client.execute_interactive(THREADED_WORK, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        kernel.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not kernel_zygote.enabled(), reason="kernels are forked on POSIX only")
def test_a_kernel_the_zygote_cannot_serve_is_launched_the_plain_way(tmp_path: Path) -> None:
    # PYTHONPATH is read at interpreter start: a kernel asking for another one is not forked
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    kernel = kernels.Kernel(tmp_path, env, warm=())
    assert isinstance(kernel.process, subprocess.Popen)
    client = started_client(kernel)
    try:
        assert client.execute_interactive("import sys; assert sys.path[0] == %r" % str(tmp_path),
                                          timeout=15)["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        kernel.shutdown()


@pytest.mark.skipif(not kernel_zygote.enabled(), reason="kernels are forked on POSIX only")
def test_a_zygote_that_does_not_answer_is_killed_and_the_wait_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_zygote, "ANSWER_WAIT_S", 1.0)
    zygote = kernel_zygote.Zygote()
    try:
        os.kill(zygote.process.pid, signal.SIGSTOP)  # wedged: it reads nothing, answers nothing
        answer = zygote.fork(["-f", str(tmp_path / "kernel.json")], str(tmp_path), dict(os.environ))
        with pytest.raises(RuntimeError, match="did not answer within 1 s"):
            answer()  # the caller (ForkedProcess) then launches the kernel the plain way
        # killed: it cannot fork that kernel later, beside the one launched instead
        assert zygote.process.wait(10) == -signal.SIGKILL
    finally:
        zygote.close()


def test_a_zygote_asked_for_nothing_is_stopped_without_waiting_for_its_imports() -> None:
    zygote = kernel_zygote.Zygote()  # as `hnpipe run --no-such-option` starts one, then fails
    zygote.close()
    assert zygote.process.returncode == -signal.SIGKILL


def test_closing_a_zygote_that_died_with_a_request_unsent_raises_nothing(tmp_path: Path) -> None:
    zygote = kernel_zygote.Zygote()
    zygote.process.kill()
    zygote.process.wait()
    with pytest.raises(OSError):  # the provisioner launches that kernel the plain way
        zygote.fork(["-f", str(tmp_path / "kernel.json")], str(tmp_path), dict(os.environ))
    zygote.close()  # flushing the request left in the buffer raised BrokenPipeError at exit


def test_a_module_the_zygote_cannot_preload_is_left_to_the_kernels() -> None:
    assert kernel_zygote.preload(("hnpipe_no_such_module", "json")) == ["hnpipe_no_such_module"]


def zygote_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HNPIPE_ZYGOTE", "0")


def zygote_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_start() -> None:
        raise OSError("no zygote here")
    monkeypatch.setattr(kernel_zygote, "_shared", None)
    monkeypatch.setattr(kernel_zygote, "Zygote", cannot_start)


def zygote_cannot_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    def fork(self, argv, cwd, env):
        def answer() -> int:  # what Zygote._answer raises when the zygote answers an error
            raise RuntimeError("the kernel zygote could not fork: OSError: [Errno 11] EAGAIN")
        return answer
    monkeypatch.setattr(kernel_zygote.Zygote, "fork", fork)


@pytest.mark.slow
@pytest.mark.parametrize("trouble", [zygote_switched_off, zygote_cannot_start, zygote_cannot_fork],
                         ids=["HNPIPE_ZYGOTE=0", "zygote cannot start", "zygote cannot fork"])
def test_without_a_working_zygote_a_runs_kernels_are_launched_the_plain_way(
        trouble, clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trouble(monkeypatch)
    root = project(tmp_path, {"items": WHO_AM_I, "comments": WHO_AM_I, "stories": WHO_AM_I})
    who = kernels_of(runner.run("local", {"n_items": 10}, root=root))
    # launched by this process (jupyter_client's Popen), one per notebook, each its own group
    assert {parent for parent, _, _ in who} == {os.getpid()}
    assert len({pid for _, pid, _ in who}) == len(who)
    assert all(pid == group for _, pid, group in who)
    assert kernel_processes() == []


# The client papermill gets is ready on the kernel's answer to kernel_info, with no fixed
# wait (hnpipe.runner.kernel_client); these pin what "answer" means.
def message(parent: str, msg_type: str, state: str | None = None) -> dict:
    return {"parent_header": {"msg_id": parent}, "msg_type": msg_type,
            "content": {"execution_state": state} if state else {}}


def queue_of(*messages: dict):
    pending = list(messages)

    async def get(timeout: float) -> dict:
        if not pending:
            raise Empty
        return pending.pop(0)
    return get


def test_readiness_skips_what_answers_another_request_and_waits_for_the_idle_status() -> None:
    get = queue_of(message("earlier", "status", "idle"), message("ours", "status", "busy"),
                   message("ours", "status", "idle"), message("ours", "stream"))
    found = run_sync(ReadyClient._next)(get, {"ours"}, 1, "status", "idle")
    assert found == message("ours", "status", "idle")
    with pytest.raises(Empty):  # nothing else answers: the caller asks the kernel again
        run_sync(ReadyClient._next)(queue_of(message("earlier", "kernel_info_reply")), {"ours"}, 1,
                                    "kernel_info_reply")


def test_a_late_answer_to_an_earlier_attempt_counts() -> None:
    # the first kernel_info's idle came after the 0.2 s wait, while the second was asked
    get = queue_of(message("startup", "status", "idle"), message("first", "status", "idle"))
    found = run_sync(ReadyClient._next)(get, {"first", "second"}, 1, "status", "idle")
    assert found == message("first", "status", "idle")


@pytest.mark.slow
def test_papermill_gets_a_client_that_is_ready_once_the_kernel_answered(tmp_path: Path) -> None:
    kernel = kernels.Kernel(tmp_path, dict(os.environ), warm=())
    client = kernel.manager.client()  # as papermill asks for it
    outputs: list[dict] = []
    try:
        assert isinstance(client, ReadyClient)
        client.start_channels()
        run_sync(client.wait_for_ready)(timeout=60)
        # ready means both channels answer: a cell's output comes back on IOPub
        reply = run_sync(client.execute_interactive)("print('up')", timeout=15,
                                                     output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok"
        assert any(msg["content"].get("text") == "up\n" for msg in outputs)
    finally:
        client.stop_channels()
        kernel.shutdown()
    assert kernel.process is None or kernel.process.poll() is not None

