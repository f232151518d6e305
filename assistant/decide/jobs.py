"""Launch `arena decide` as a subprocess for the Decide tab: the same command line users run, never a shell."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.decide.config import DecideConfig, workspace
from assistant.decide.progress import CANCEL_FILE, PROGRESS_FILE, read_progress
from foundation.errors import ArenaError
from foundation.launch import LaunchedJob, log_tail, spawn_arena

LOG = "log.txt"
# A run's last record names how it ended; its process may still be exiting for a moment after writing it.
ENDED = {"done": "finished", "failed": "failed", "cancelled": "been cancelled"}


class DecideJob(LaunchedJob):
    """One decide run at a time per app: start, cancel (a CANCEL file), progress from its progress.json."""

    def start(self, cfg: DecideConfig) -> Path:
        cfg.validate()
        with self._lock:
            if self.running():
                raise ArenaError(f"decision {self.folder.name} is still running; cancel it or wait")
            folder = workspace(self.settings.data_dir, cfg.name)
            folder.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(folder / "decide.yaml")
            (folder / CANCEL_FILE).unlink(missing_ok=True)
            # A fresh record, so a tick before the child writes its own does not show the previous run's end.
            (folder / PROGRESS_FILE).write_text(json.dumps({"state": "starting", "fraction": 0.0}))
            s = self.settings
            self._proc = spawn_arena(["decide", "--config", str(folder / "decide.yaml"), "--data-dir",
                                      str(s.data_dir), "--model", s.model, "--embedder", s.embedder, "--device",
                                      s.device, "--json"], folder / LOG)
            self.folder = folder
            return folder

    def cancel(self) -> None:
        """Finished stages are kept; training checkpoints at its next step, so a new start resumes it."""
        if self.folder is None or not self.running():
            raise ArenaError("no decision is running")
        ended = read_progress(self.folder).get("state")
        if ended in ENDED:  # a CANCEL file now would change nothing, and the tab would show "cancelling…"
            raise ArenaError(f"decision {self.folder.name} has already {ENDED[ended]}; nothing to cancel")
        (self.folder / CANCEL_FILE).touch()

    def progress(self) -> dict:
        if self.folder is None:
            return {"state": "idle"}
        state = read_progress(self.folder)
        if state.get("state") in ("starting", "running") and not self.running():
            code = self._proc.returncode if self._proc else None
            state = {**state, "state": "failed", "error": f"the decide process ended (exit {code}):\n"
                                                            + self.log_tail()}
        return state

    def log_tail(self, chars: int = 1500) -> str:
        return log_tail(self.folder / LOG if self.folder else None, chars)
