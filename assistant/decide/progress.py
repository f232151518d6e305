"""Progress of a decide run: overall fraction and ETA over the planned stages, a progress.json the Decide tab
polls, a stderr line for the CLI, and cancellation through a CANCEL file in the workspace."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from foundation import atomic, progress_line
from foundation.errors import ArenaError
from foundation.launch import CANCEL_FILE

PROGRESS_FILE = "progress.json"


class DecideCancelled(ArenaError):
    """The user asked the run to stop (CANCEL file or SIGTERM); finished stages stay cached."""


def read_progress(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / PROGRESS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


class Reporter:
    """Weights each stage by its planned seconds; the ETA scales what is left by the speed seen so far."""

    def __init__(self, folder: Path, estimates: dict[str, float], stderr: bool = True):
        self.folder = Path(folder)
        self.estimates = {k: max(float(v), 1.0) for k, v in estimates.items()}
        # the CLI's line (foundation/progress_line.py) shows this reporter's own ETA, not tqdm's rate
        self.line = progress_line.percent_line(eta=False) if stderr and sys.stderr is not None else None
        self.started = time.time()
        self.done: dict[str, float] = {}  # stage -> seconds it took (0 when cached)
        self.stage, self.stage_started, self.fraction = "", self.started, 0.0

    def cancelled(self) -> bool:
        return (self.folder / CANCEL_FILE).exists()

    def check(self) -> None:
        if self.cancelled():
            raise DecideCancelled("cancelled; finished stages are kept, run the same command again to continue")

    def begin(self, stage: str) -> None:
        self.check()
        self.stage, self.stage_started, self.fraction = stage, time.time(), 0.0
        self.update(0.0, "starting")

    def end(self, stage: str, reused: bool) -> None:
        self.done[stage] = 0.0 if reused else time.time() - self.stage_started
        self.update(1.0, "cached" if reused else "done")

    def overall(self) -> float:
        total = sum(self.estimates.values()) or 1.0
        finished = sum(self.estimates.get(s, 0.0) for s in self.done)
        current = 0.0 if self.stage in self.done else self.estimates.get(self.stage, 0.0) * self.fraction
        return min(1.0, (finished + current) / total)

    def eta_s(self) -> float:
        """Planned seconds left, times the ratio of real to planned seconds on the stages actually run."""
        # The first stage run also pays one-time loading (embedder, model conversion): it does not calibrate.
        ran = dict([(s, t) for s, t in self.done.items() if t > 0][1:])
        ratio = sum(ran.values()) / sum(self.estimates.get(s, 1.0) for s in ran) if ran else 1.0
        left = sum(v for s, v in self.estimates.items() if s not in self.done and s != self.stage)
        left_now = 0.0  # of the stage under way
        if self.stage and self.stage not in self.done:
            spent = time.time() - self.stage_started
            left_now = spent / self.fraction * (1 - self.fraction) if self.fraction > 0.05 else \
                max(self.estimates.get(self.stage, 0.0) * ratio - spent, 0.0)
        return round(left * ratio + left_now, 1)

    def update(self, fraction: float, message: str, **extra) -> None:
        """Record progress within the current stage (0..1); raises DecideCancelled when asked to stop."""
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        state = {"state": "running", "stage": self.stage, "stage_fraction": round(self.fraction, 4),
                 "fraction": round(self.overall(), 4), "eta_s": self.eta_s(), "message": message,
                 "elapsed_s": round(time.time() - self.started, 1), "done": self.done, "pid": os.getpid(),
                 "updated": time.time(), **extra}
        self.write(state)
        if self.line is not None:
            self.line(state["fraction"], f"{self.stage}: {message[:50]} · ETA {state['eta_s'] / 60:.1f} min")
        if message not in ("done", "cached"):
            self.check()

    def finish(self, state: str, **extra) -> None:
        """The final record: state done | failed | cancelled, with whatever the caller adds (report paths)."""
        self.write({"state": state, "stage": self.stage, "fraction": 1.0 if state == "done" else self.overall(),
                    "eta_s": 0.0, "done": self.done, "elapsed_s": round(time.time() - self.started, 1),
                    "pid": os.getpid(), "updated": time.time(), **extra})
        if self.line is not None:
            self.line.close()

    def write(self, state: dict) -> None:
        atomic.write_json(self.folder / PROGRESS_FILE, state)
