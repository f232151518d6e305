"""One training job at a time per data dir, across processes: an exclusive flock on data_dir/jobs/train.lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from foundation.errors import ArenaError


class TrainingLock:
    """Held by the process that trains; the kernel drops it when that process exits, even after kill -9."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "jobs" / "train.lock"
        self._fd: int | None = None

    def acquire(self, job_id: str) -> None:
        """Take the lock or raise ArenaError naming the job that holds it (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ArenaError(f"another training job is running ({self.holder()}); one job at a time per data "
                             "folder: wait for it to finish or cancel it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"job {job_id}, pid {os.getpid()}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown job"
        except OSError:
            return "unknown job"

    def busy(self) -> bool:
        """True while some process (this one included, through another handle) holds the lock."""
        if not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken just now
        return False

    def __enter__(self) -> TrainingLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
