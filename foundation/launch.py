"""Long jobs launched by the UI: the very command line users run (`python -m assistant ...`), never a shell."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A long job (train, decide) stops at its next step when this file appears in its folder: how the UI's Cancel
# button and `arena ... --cancel` ask a job to stop without a signal.
CANCEL_FILE = "CANCEL"


def spawn_arena(argv: list[str], log: Path, append: bool = False) -> subprocess.Popen:
    """Start `python -m assistant ARGV...` with its stdout and stderr in `log`; the repository is importable
    from the child even when the app was started from another folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with Path(log).open("a" if append else "w") as out:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "assistant", *argv], cwd=str(ROOT), env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def log_tail(log: Path | None, chars: int) -> str:
    return log.read_text(errors="replace")[-chars:] if log is not None and log.is_file() else ""


class LaunchedJob:
    """One subprocess job at a time per app: the process, its folder, and whether it still runs."""

    def __init__(self, settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self.folder: Path | None = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        return self._proc.wait(timeout) if self._proc else None
