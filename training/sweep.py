"""A small grid sweep (learning rate x LoRA rank): train each trial, register only the best by val loss."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from assistant.errors import ArenaError
from assistant.settings import Settings
from training.config import JobConfig


def trial_grid(cfg: JobConfig) -> list[dict]:
    lrs = cfg.sweep.get("learning_rate") or [cfg.learning_rate]
    ranks = cfg.sweep.get("lora_r") or [cfg.lora_r]
    grid = [{"learning_rate": float(lr), "lora_r": int(r)} for lr, r in itertools.product(lrs, ranks)]
    if len(grid) > 12:
        raise ArenaError(f"sweep has {len(grid)} trials; keep it at 12 or fewer on this hardware")
    return grid


def run_sweep(cfg: JobConfig, settings: Settings, folder: Path, runtime=None) -> dict:
    """Every trial trains in jobs/<id>/trials/<n>; the lowest final validation loss wins."""
    from training.runner import register, train_one, trial_config

    if cfg.val_fraction <= 0:
        raise ArenaError("a sweep picks the best run by validation loss: set val_fraction > 0")
    folder.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(folder / "config.yaml")
    rows, results = [], []
    for n, params in enumerate(trial_grid(cfg)):
        trial = trial_config(cfg, job_id=f"{cfg.job_id}/trials/{n}", **params)
        result = train_one(trial, settings, folder / "trials" / str(n), runtime=runtime)
        if result["state"] == "cancelled":
            return {**result, "sweep": _mark(rows)}
        rows.append({**params, "val_loss": result["metrics"]["val_loss"], "trial": n})
        results.append((trial, result))
    best = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])
    rows = _mark(rows, best)
    (folder / "sweep.json").write_text(json.dumps(rows, indent=1))
    trial, result = results[best]
    out = register(result, trial, settings)
    return {**out, "sweep": rows}


def _mark(rows: list[dict], best: int | None = None) -> list[dict]:
    return [{**r, "best": i == best} for i, r in enumerate(rows)]
