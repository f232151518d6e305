"""A small grid sweep (learning rate x LoRA rank): train each trial, register only the best by val loss."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

from foundation import atomic
from foundation.errors import ArenaError
from foundation.settings import Settings
from training.callbacks import CANCEL_FILE, TRIALS
from training.config import JobConfig, sweep_axes
from training.runner import (
    is_main_process,
    last_checkpoint,
    register,
    resolve_precision,
    train_one,
    write_status,
)
from training.tools import DataTools
from training.trainer_args import CHECKPOINTS

RESULT = "result.json"  # a finished trial's result: a resumed sweep does not train it again


def trial_grid(cfg: JobConfig) -> list[dict]:
    """Every (learning rate, rank) pair; lora_alpha follows the rank so alpha/r (the LoRA scale) stays put."""
    cfg.validate_sweep()  # refuses more than MAX_TRIALS trials
    lrs, ranks = sweep_axes(cfg)
    return [{"learning_rate": lr, "lora_r": r, "lora_alpha": max(1, round(cfg.alpha * r / cfg.lora_r))}
            for lr, r in itertools.product(lrs, ranks)]


def run_sweep(cfg: JobConfig, settings: Settings, folder: Path, tools: DataTools | None = None,
              resume: bool = False, progress: bool = False) -> dict:
    """Train every trial in <job>/trials/<n>; register the lowest final validation loss under the job's name.

    Cancel (the job's CANCEL file, SIGTERM or SIGINT) stops the running trial at a checkpoint. With resume,
    finished trials are kept, the cancelled one continues from its checkpoint and the rest follow.
    """
    grid = trial_grid(cfg)
    cfg.to_yaml(folder / "config.yaml")  # makes the folder (an atomic write)
    previous = _catch_signals(folder)
    try:
        return _sweep(cfg, settings, folder, grid, tools, resume, progress)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _sweep(cfg: JobConfig, settings: Settings, folder: Path, grid: list[dict], tools: DataTools | None,
           resume: bool, progress: bool) -> dict:
    rows, results = [], []
    for n, params in enumerate(grid):
        trial_dir = folder / TRIALS / str(n)
        where = {"name": cfg.name, "trial_dir": str(trial_dir),
                 "sweep": {"trial": n, "trials": len(grid), "rows": _mark(rows)}}
        if (folder / CANCEL_FILE).exists():  # cancelled between trials: do not start the next one
            return _cancelled(folder, {"state": "cancelled", "step": 0}, where)
        write_status(folder, state="running", pid=os.getpid(), **where)
        trial = replace(cfg, sweep={}, job_id=f"{cfg.job_id}/{TRIALS}/{n}", **params)
        result = _run_trial(trial, settings, trial_dir, tools, resume, folder / TRIALS / "0", progress)
        _catch_signals(folder)  # the trial installed its own handlers, which die with it
        if result["state"] == "cancelled":
            return _cancelled(folder, result, where)
        rows.append(_row(n, params, result))
        results.append((trial, result))
    # the lowest validation loss; a diverged trial (NaN) never wins
    best = min(range(len(rows)), key=lambda i: math.inf if math.isnan(rows[i]["val_loss"]) else rows[i]["val_loss"])
    rows = _mark(rows, best)
    trial, result = results[best]
    if is_main_process():
        (folder / "sweep.json").write_text(json.dumps(rows, indent=1))
    out = register(result, trial, settings)
    write_status(folder, state="done", adapter=out.get("adapter"), metrics=result["metrics"], name=cfg.name,
                 trial_dir=result["job_dir"], sweep={"trials": len(grid), "rows": rows})
    return {**out, "job_dir": str(folder), "trial_dir": result["job_dir"], "sweep": rows}


def _run_trial(trial: JobConfig, settings: Settings, trial_dir: Path, tools: DataTools | None,
               resume: bool, first_dir: Path, progress: bool) -> dict:
    """A finished trial's saved result, its checkpoint continued, or a fresh run (resume only reuses work
    done with the same trial settings). A fresh trial after the first trains on the first trial's rows."""
    same = resume and (trial_dir / "config.yaml").is_file() and \
        JobConfig.from_yaml(trial_dir / "config.yaml") == resolve_precision(trial, settings)
    if same and (trial_dir / RESULT).is_file():
        return json.loads((trial_dir / RESULT).read_text())
    from_checkpoint = same and last_checkpoint(trial_dir) is not None
    if not from_checkpoint and is_main_process():
        # A fresh trial starts from nothing: a stale metrics file would be appended to, stale checkpoints kept.
        for name in ("metrics.jsonl", "status.json", RESULT):
            (trial_dir / name).unlink(missing_ok=True)
        shutil.rmtree(trial_dir / CHECKPOINTS, ignore_errors=True)
    shared = not from_checkpoint and trial_dir != first_dir and _copy_data(first_dir, trial_dir)
    result = train_one(trial, settings, trial_dir, resume=from_checkpoint, tools=tools, reuse_data=shared,
                       progress=progress)
    if result["state"] == "done" and is_main_process():
        (trial_dir / RESULT).write_text(json.dumps(result, default=str))
    return result


def _copy_data(first_dir: Path, trial_dir: Path) -> bool:
    """Give a trial the first trial's train/val rows. Trials differ only in learning rate and rank, so the
    rows are the same; rebuilding them would repeat the slow sources (distillation generates every answer)."""
    files = [first_dir / "train.jsonl", first_dir / "val.jsonl"]
    if not all(f.is_file() for f in files):
        return False
    for f in files:  # every rank copies (identical bytes) so none reads before its copy exists
        atomic.replace_with(trial_dir / f.name, lambda tmp, f=f: shutil.copyfile(f, tmp))
    return True


def _catch_signals(folder: Path) -> dict:
    """Outside a trial's training loop, SIGTERM/SIGINT become the job's CANCEL file, read before the next
    trial and at its first step (otherwise the finished trial's handler would swallow them)."""
    def on_signal(signum, frame):
        (folder / CANCEL_FILE).touch()

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def _cancelled(folder: Path, result: dict, where: dict) -> dict:
    write_status(folder, state="cancelled", step=result["step"], **where)
    (folder / CANCEL_FILE).unlink(missing_ok=True)  # else a resume would stop again at once
    return {**result, "job_dir": str(folder), "sweep": where["sweep"]["rows"]}


def _row(n: int, params: dict, result: dict) -> dict:
    val = result["metrics"].get("val_loss")
    if val is None:
        raise ArenaError(f"sweep trial {n} has no validation loss: the data is too small for a validation split")
    return {"trial": n, **params, "val_loss": val}


def _mark(rows: list[dict], best: int | None = None) -> list[dict]:
    return [{**r, "best": i == best} for i, r in enumerate(rows)]
