"""The trainer arguments every method shares (SFT, DPO, reward, RLOO), from one JobConfig."""

from __future__ import annotations

from pathlib import Path

from foundation.models import use_bf16
from training.config import JobConfig, report_targets

CHECKPOINTS = "checkpoints"


def common_args(cfg: JobConfig, folder: Path, device, has_val: bool) -> dict:
    """TrainingArguments fields from `cfg` for a job writing its checkpoints under `folder`."""
    # The trainer's own best-checkpoint machinery: a checkpoint at every evaluation (so the best one exists),
    # eval_loss as the metric, and the best weights loaded back at the end before the artifact is saved.
    best = cfg.keep_best and has_val
    # load_best_model_at_end needs save_steps to be a multiple of eval_steps: evaluate at least as often as a
    # checkpoint was asked for (a small validation set is cheap), and save at every evaluation.
    eval_steps = min(cfg.eval_steps, cfg.save_steps) if best else cfg.eval_steps
    tracked = has_val and (cfg.keep_best or cfg.early_stopping_patience > 0)
    return dict(
        output_dir=str(folder / CHECKPOINTS), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps, eval_strategy="steps" if has_val else "no", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps if best else cfg.save_steps, save_total_limit=2,
        load_best_model_at_end=best, metric_for_best_model="eval_loss" if tracked else None,
        seed=cfg.seed, data_seed=cfg.seed,
        bf16=use_bf16(cfg.bf16, device), use_cpu=device.type == "cpu", report_to=report_targets(cfg.report_to) or "none", run_name=cfg.name, disable_tqdm=True,
        dataloader_num_workers=0, max_length=cfg.max_length, save_only_model=False)
