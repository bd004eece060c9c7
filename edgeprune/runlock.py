"""One writer per run: an OS file lock on `<run>/.lock`, held while a command writes the run.

The kernel drops a `flock` when its process ends, however it ends (SIGKILL, OOM, power loss of a container), so a
crash never leaves a stale lock: a run whose manifest says "running" while nobody holds its lock was interrupted.
The lock file also names its holder (pid and command) for the message a second writer gets. Re-entrant within a
process (a sweep cell prunes, exports and benches one run in turn). Where `fcntl` is missing (Windows) runs are
not locked.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from edgeprune.errors import EdgepruneError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth) for the locks this process holds


class RunBusy(EdgepruneError):
    pass


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    pid, _, command = text.partition(" ")
    return f"process {pid} ({command})" if pid.isdigit() else "another process"


def _try_lock(path: Path) -> int | None:
    """An open fd holding the lock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def holding(run_dir: Path, command: str | None = None) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block, or raise RunBusy naming the process that holds it."""
    path = (run_dir / LOCK_FILE).resolve()
    if fcntl is None:
        yield
        return
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
    else:
        fd = _try_lock(path)
        if fd is None:
            raise RunBusy(
                f"run '{run_dir.name}' is being written by {_holder(path)}: wait for it to finish (or stop it), "
                "or use another --run"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command or ' '.join(sys.argv)}\n".encode())
        _held[path] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held[path]
        if depth > 1:
            _held[path] = (fd, depth - 1)
        else:
            del _held[path]
            os.close(fd)  # releases the lock; the file stays (removing it would race with a new holder)


def is_held(run_dir: Path) -> bool:
    """Whether some process (this one included) holds the run's lock now."""
    path = (run_dir / LOCK_FILE).resolve()
    if fcntl is None or not path.exists():
        return False
    if path in _held:
        return True
    fd = _try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False
