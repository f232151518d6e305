"""Launch `arena train` as a subprocess for the UI: one job at a time, cancel, resume, tail its metrics."""

from __future__ import annotations

from pathlib import Path

from foundation.errors import ArenaError
from foundation.launch import LaunchedJob, log_tail, spawn_arena
from training.callbacks import CANCEL_FILE, read_metrics
from training.config import JobConfig
from training.lock import TrainingLock
from training.runner import job_dir, read_status


class JobManager(LaunchedJob):
    """Runs the SAME command line users run (`python -m assistant train CONFIG.yaml`), never via a shell."""

    def start(self, cfg: JobConfig) -> Path:
        """Write the job YAML and launch it; refuses while another job runs."""
        cfg.validate()
        self._check_free()  # before writing anything for a job that cannot start
        folder = job_dir(self.settings, cfg)
        cfg.to_yaml(folder / "config.yaml")  # makes the folder (an atomic write)
        return self._launch(folder, resume=False)

    def resume(self, folder: Path | None = None) -> Path:
        folder = Path(folder or self.folder or "")
        if not (folder / "config.yaml").is_file():
            raise ArenaError("no job to resume: start a job first")
        return self._launch(folder, resume=True)

    def _launch(self, folder: Path, resume: bool) -> Path:
        with self._lock:
            self._check_free()
            (folder / CANCEL_FILE).unlink(missing_ok=True)
            argv = ["train", str(folder / "config.yaml"), "--data-dir", str(self.settings.data_dir), "--model",
                    self.settings.model, "--device", self.settings.device, "--json"] + (["--resume"] if resume else [])
            self._proc = spawn_arena(argv, folder / "log.txt", append=True)
            self.folder = folder
            return folder

    def _check_free(self) -> None:
        """Refuse while our own job runs, or while any process holds the data folder's training lock."""
        if self.running():
            raise ArenaError(f"job {self.folder.name} is still running; cancel it or wait")
        lock = TrainingLock(self.settings.data_dir)
        if lock.busy():  # e.g. `arena train` started from a terminal on the same data folder
            raise ArenaError(f"another training job is running ({lock.holder()}); wait for it or cancel it")

    def cancel(self) -> None:
        """Ask the job to checkpoint and stop (a cancel file, read at the next step; SIGTERM does the same)."""
        if self.folder is None:
            raise ArenaError("no job to cancel")
        (self.folder / CANCEL_FILE).touch()

    def progress(self) -> dict:
        """State, step/max_steps, fraction, ETA, the loss history and the log tail of the current job."""
        if self.folder is None:
            return {"state": "idle", "records": []}
        status = read_status(self.folder)
        # a sweep trains in trial folders: its status names the trial being trained (or the best one, when done)
        records = read_metrics(Path(status.get("trial_dir") or self.folder) / "metrics.jsonl")
        state = status.get("state", "starting")
        if state == "running" and not self.running():
            state = "failed"  # the process died without reporting (crash, kill -9): resume can pick it up
        last = next((r for r in reversed(records) if "max_steps" in r), {})
        step, total = last.get("step", 0), last.get("max_steps") or 0
        return {"state": "running" if self.running() and state != "done" else state, "step": step,
                "max_steps": total, "fraction": step / total if total else 0.0, "eta_s": last.get("eta_s"),
                "records": records, "status": status, "job_dir": str(self.folder), "log": self.log_tail()}

    def log_tail(self, chars: int = 2000) -> str:
        return log_tail(self.folder / "log.txt" if self.folder else None, chars)
