"""One training job at a time per data dir, across processes: filelock's exclusive lock on data_dir/jobs/train.lock.

filelock takes an flock on Unix, which the kernel drops when the holding process exits, even after kill -9, so a
killed job never leaves the folder locked. The lock file itself is truncated by every attempt to take it, so the
holder's name lives beside it in train.lock.holder (read only to word the refusal).
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from foundation.errors import ArenaError


class TrainingLock:
    """Held by the process that trains; the kernel drops it when that process exits, even after kill -9."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "jobs" / "train.lock"
        self._holder_file = self.path.with_name(self.path.name + ".holder")
        self._lock = self._new_lock()

    def _new_lock(self) -> FileLock:
        # timeout 0: never wait; no soft-lock fallback, since a soft lock would outlive a killed process.
        return FileLock(self.path, timeout=0, thread_local=False, fallback_to_soft=False)

    def acquire(self, job_id: str) -> None:
        """Take the lock or raise ArenaError naming the job that holds it (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise ArenaError(f"another training job is running ({self.holder()}); one job at a time per data "
                             "folder: wait for it to finish or cancel it") from None
        self._holder_file.write_text(f"job {job_id}, pid {os.getpid()}")

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def holder(self) -> str:
        try:
            return self._holder_file.read_text().strip() or "unknown job"
        except OSError:
            return "unknown job"

    def busy(self) -> bool:
        """True while some process (this one included, through another handle) holds the lock."""
        if not self.path.parent.is_dir():
            return False
        probe = self._new_lock()  # its own file handle: flock sees this process's other handle as a holder
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        return False

    def __enter__(self) -> TrainingLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
