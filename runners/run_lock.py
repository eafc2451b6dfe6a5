"""One run at a time per run dir: an OS lock (``flock``) on ``<run dir>/run.lock``.

Two runs writing into one dir would interleave checkpoints and results. The lock is held by the open file,
so the OS releases it when the process ends in any way (``kill -9`` included) and a later run never finds a
stale lock. The holder writes its PID into the file so a refused run can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from runners.identity import ResumeRefused

LOCK_FILE = "run.lock"


class RunDirBusy(ResumeRefused):
    """Another live process holds the run dir."""


class RunDirLock:
    """``with RunDirLock(out_dir):`` holds the dir's lock or raises :class:`RunDirBusy` at once."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"another run (PID {holder}) is running in {self.path.parent}: two runs in one dir would "
                "overwrite each other's checkpoints and results. Wait for it to finish, or run into "
                "another dir (hydra.run.dir=<new dir>)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file releases the lock

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, ex: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
