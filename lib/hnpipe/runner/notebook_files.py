"""How `hnpipe run` keeps each executed notebook: whole or absent, and a failed save reported
as what it is.

papermill saves the executed notebook when it starts and after every cell, by default straight
into the file: a full disk leaves truncated JSON, and the OSError ends the notebook's execution,
so the run said the notebook failed although its table was published. Under the runs folder the
runner's handler writes a temporary file beside the notebook and renames it into place (atomic
on one file system), and a save that fails is remembered instead of raised: the notebook goes
on (its table matters more than its record), and the runner names the record it could not
write (`failed_save`). A later save that succeeds (space freed) clears it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from hnpipe.config import process_alive

_registered: set[str] = set()
_failed: dict[str, OSError] = {}
_lock = threading.Lock()


def keep_under(directory: Path) -> None:
    """Save the executed notebooks under `directory` (the runs folder) this way, from now on."""
    # papermill as the runner imports it (without pyarrow.fs and the other optional modules),
    # so keeping notebooks this way costs the run's process no extra start-up.
    from hnpipe.runner.kernels import import_papermill

    import_papermill()
    from papermill.iorw import LocalHandler, papermill_io

    class KeptNotebook(LocalHandler):
        def write(self, buf: str, path: str) -> None:
            save(buf, path)

    scheme = str(directory)
    with _lock:
        if scheme not in _registered:  # papermill picks the newest registered prefix that matches
            papermill_io.register(scheme, KeptNotebook())
            _registered.add(scheme)


def write_whole(text: str, path: Path | str) -> None:
    """Write `text` to `path` through a temporary file renamed into place: the file is whole or
    as it was. Raises the OSError (the temporary file removed)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def save(text: str, path: str) -> None:
    """Write `text` to `path` whole (write_whole); remember an OSError instead of raising."""
    try:
        write_whole(text, path)
    except OSError as error:
        with _lock:
            _failed[str(path)] = error
    else:
        with _lock:
            _failed.pop(str(path), None)


def failed_save(path: Path) -> OSError | None:
    """Why the executed notebook at `path` could not be saved (None: it was, whole); forgets it."""
    with _lock:
        return _failed.pop(str(path), None)


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary notebooks a killed run left under `directory` (named after its process id)."""
    if not directory.is_dir():
        return
    for leftover in [*directory.glob("*/*/.*.ipynb.*.tmp"), *directory.glob("*/*/.*.html.*.tmp")]:
        pid = leftover.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                leftover.unlink()
