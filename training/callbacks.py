"""Trainer callbacks: JSON-lines metrics with ETA, the stderr progress line, cancel (signal or file) with a
checkpoint, early stopping."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

from transformers import EarlyStoppingCallback, TrainerCallback

from foundation import progress_line
from foundation.launch import CANCEL_FILE

TRIALS = "trials"  # a sweep trains each trial in <job>/trials/<n>
# Trainer/trl log key -> metrics.jsonl name: losses and learning rate; reward model accuracy (training/reward.py),
# RL reward, KL to the base and completion length (training/rl.py), the gradual-unfreezing stage (training/unfreeze.py)
LOGGED = {"loss": "loss", "eval_loss": "val_loss", "learning_rate": "learning_rate",
          "accuracy": "accuracy", "eval_accuracy": "val_accuracy", "margin": "margin", "reward": "reward",
          "kl": "kl", "completions/mean_length": "completion_length", "trainable_layers": "trainable_layers"}


def cancel_files(job_dir: Path) -> list[Path]:
    """The CANCEL files a job obeys: its own and, for a sweep trial, its sweep's (the folder the UI launched)."""
    job_dir = Path(job_dir)
    files = [job_dir / CANCEL_FILE]
    if job_dir.parent.name == TRIALS:
        files.append(job_dir.parent.parent / CANCEL_FILE)
    return files


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl (a partially written last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines() if Path(path).is_file() else []:
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after `step` (logged after the checkpoint a resumed run restarts from)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in kept))


class MetricsCallback(TrainerCallback):
    """Append step, loss, val_loss, learning rate, tokens/s and ETA to metrics.jsonl (main process only). A
    record's tokens/s covers the steps since the previous training log of this process, never a validation or a
    checkpoint save (runner.step_tokens_per_s)."""

    start, start_step = 0.0, 0

    def __init__(self, path: Path):
        self.path = Path(path)
        self.last = None  # (time, tokens) of the previous train log, for tokens/s

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.start_step = time.time(), state.global_step  # a resumed run counts from its checkpoint

    def on_evaluate(self, args, state, control, **kwargs):
        self.last = None  # a validation (and its checkpoint) is not step time: the next interval starts after it

    on_save = on_evaluate

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        rec = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
               "time": round(time.time(), 3)}
        rec.update({name: logs[key] for key, name in LOGGED.items() if key in logs})
        if "num_tokens" in logs and "loss" in logs:
            now, tokens = time.time(), float(logs["num_tokens"])
            if self.last and now > self.last[0]:
                rec["tokens_per_s"] = round((tokens - self.last[1]) / (now - self.last[0]), 2)
            self.last = (now, tokens)
            rec["tokens"] = tokens
        done = state.global_step - self.start_step
        if done > 0 and state.max_steps:  # the steps left at this run's pace so far
            rec["eta_s"] = round((time.time() - self.start) / done * (state.max_steps - state.global_step), 1)
        if "train_runtime" in logs:
            rec["train_runtime"] = logs["train_runtime"]
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")


class StderrProgress(TrainerCallback):
    """`arena train`'s progress: a tqdm bar of steps with the losses (foundation/progress_line.py: rewritten in
    place on a terminal; in a log file, the UI's job log, a line every few seconds plus every validation and
    the last step). The Trainer's own tqdm stays off (disable_tqdm): it would print every log dict as a line."""

    def __init__(self, name: str, stream=None):
        self.name, self.stream, self.loss, self.val, self.line = name, stream, None, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a resumed run's rate counts from its checkpoint
            self.line = progress_line.bar(state.max_steps, self.name, self.stream, initial=state.global_step,
                                          unit="step")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.line is None or not logs or "train_runtime" in logs:
            return
        self.loss = logs["loss"] if isinstance(logs.get("loss"), float) else self.loss
        self.val = logs.get("eval_loss", self.val)
        parts = [f"loss {self.loss:.3f}"] if self.loss is not None else []
        parts += [f"val {self.val:.3f}"] if self.val is not None else []
        progress_line.advance(self.line, state.global_step, " · ".join(parts))
        if "eval_loss" in logs:
            self.line.refresh()  # shown even in a log file between its timed lines; close() shows the last step

    def on_train_end(self, args, state, control, **kwargs):
        if self.line is not None:
            self.line.close()
            self.line = None


class CancelCallback(TrainerCallback):
    """On SIGTERM/SIGINT or a CANCEL file in the job folder: save a checkpoint now and stop cleanly."""

    def __init__(self, job_dir: Path):
        self.files = cancel_files(job_dir)
        self.requested = False

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.requested = True  # acted on at the next step boundary, where a checkpoint is consistent

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested or any(f.exists() for f in self.files):
            self.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping on the validation loss, remembering the step where it stopped.

    It compares each evaluation with TrainerState.best_metric (metric_for_best_model = eval_loss, which also
    drives load_best_model_at_end); a NaN loss counts as no improvement. Its counter is saved in each checkpoint
    (TrainerState.stateful_callbacks) and restored on resume, so a resumed run stops at the same step as an
    uninterrupted one instead of starting its patience afresh.
    """

    stopped_at: int | None = None

    def state(self) -> dict:
        saved = super().state()
        saved["attributes"]["stopped_at"] = self.stopped_at
        return saved

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        # Restored in place rather than by the Trainer (restore_callback_states_from_checkpoint): the Trainer
        # swaps in a new instance, while the runner reads `stopped_at` from the one it created.
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        saved = saved[0] if isinstance(saved, list) else saved
        for key, value in ((saved or {}).get("attributes") or {}).items():
            if key in self.state()["attributes"]:
                setattr(self, key, value)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        super().on_evaluate(args, state, control, metrics or {}, **kwargs)
        if control.should_training_stop and self.early_stopping_patience_counter >= self.early_stopping_patience:
            self.stopped_at = state.global_step
        return control
