"""Run one training job: prepare data, build the trainer (trl SFT or DPO), train, save, register."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from foundation import atomic
from foundation.errors import ArenaError
from foundation.models import resolve_device, resolve_model_path, use_bf16
from foundation.paths import confine
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from training import speed
from training.callbacks import (
    CANCEL_FILE,
    CancelCallback,
    EarlyStopping,
    MetricsCallback,
    StderrProgress,
    read_metrics,
    truncate_metrics,
)
from training.config import JobConfig
from training.data import Example
from training.methods import build_trainable, trainable_summary
from training.plan import plan_for_rows
from training.plan import resolve as resolve_plan
from training.reward import final_metrics
from training.rl import rloo_trainer
from training.sources import prepare_data
from training.tokenize import pref_datasets, tokenize_examples
from training.tools import DataTools
from training.trainer_args import CHECKPOINTS, common_args
from training.unfreeze import UnfreezeCallback, parse_schedule


def job_dir(settings: Settings, cfg: JobConfig) -> Path:
    """<data_dir>/jobs/<job id>; a new job's id is a timestamp plus its name, both confined to jobs/."""
    jobs = Path(settings.data_dir) / "jobs"
    name = confine(jobs, cfg.name, "job name").name  # also the adapter's name: refused now, not after training
    if not cfg.job_id:
        cfg.job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    folder = confine(jobs, cfg.job_id, "job id")
    cfg.job_id = folder.name  # a YAML job_id such as '../x' is stored as what it became
    return folder


def write_status(folder: Path, **fields) -> None:
    """status.json for the UI and scripts; written atomically (main process only)."""
    if not is_main_process():
        return
    atomic.write_json(folder / "status.json", {"updated": time.time(), **fields})


def read_status(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def make_trainer(cfg: JobConfig, model, tokenizer, train: list[Example], val: list[Example], folder: Path,
                 device, callbacks: list, fast: bool = True, settings: Settings | None = None):
    """trl SFTTrainer on pre-tokenized rows (prompt already masked), or DPOTrainer on preference pairs;
    `fast` switches it to the measured speed path where that applies (training/speed, ARENA_FAST)."""
    from transformers import PrinterCallback  # deferred: pulls torch

    if cfg.method == "rloo":  # RLHF stages (training/reward.py, rl.py): stock trl, speed path unmeasured
        trainer = rloo_trainer(cfg, model, tokenizer, train, val, folder, device, callbacks, settings)
    elif cfg.method == "reward":
        trainer = _pref_trainer(cfg, model, tokenizer, train, val, folder, device, callbacks)
    else:
        build = _pref_trainer if cfg.method == "dpo" else _sft_trainer
        trainer = build(cfg, model, tokenizer, train, val, folder, device, callbacks)
        if fast:
            speed.apply(model, trainer)
    # With tqdm off, transformers prints every log dict to stdout, which must stay machine-readable (--json):
    # progress goes to stderr and metrics.jsonl (training/callbacks.py).
    trainer.remove_callback(PrinterCallback)
    return trainer


def _pref_trainer(cfg: JobConfig, model, tokenizer, train, val, folder: Path, device, callbacks: list):
    """trl DPOTrainer, or RewardTrainer for a reward model (training/reward.py), on the preference pairs in
    trl's conversational prompt/chosen/rejected form."""
    import trl  # its trainers load on first access: only the one used here is imported

    tr, va = pref_datasets(cfg.method, train, val)
    common = dict(activation_checkpointing=False, **common_args(cfg, folder, device, va is not None))
    if cfg.method == "reward":
        model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
        args, build = trl.RewardConfig(**common), trl.RewardTrainer
    else:
        args, build = trl.DPOConfig(beta=cfg.dpo_beta, **common), trl.DPOTrainer
    return build(model=model, args=args, train_dataset=tr, eval_dataset=va, processing_class=tokenizer,
                 callbacks=callbacks)


def _sft_trainer(cfg: JobConfig, model, tokenizer, train, val, folder: Path, device, callbacks: list):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    # Rows carry their own labels (prompt masked with -100): trl's collator uses them as they are.
    tr, va = (tokenize_examples(tokenizer, rows, cfg.max_length) for rows in (train, val))
    if not tr:
        raise ArenaError(f"method {cfg.method!r} needs chat or text rows; the data has none usable "
                         "(preference pairs only train with method 'dpo')")
    # Default: random batches like a plain Trainer; the speed path runs each as one packed sequence. Length-
    # grouped batches were tried: with Adam every step moves about as far whatever its token count, so buckets
    # of short rows pulled the model towards short answers (+3.5 % validation loss on benchmarks/training.py).
    # trl's padding-free packing is optional: on CPU its block-diagonal mask over one long row measured slower.
    # Prompt tuning prepends virtual tokens: no packing.
    packing = cfg.packing and cfg.method != "prompt_tuning"
    # trl turns gradient checkpointing on by default; it recomputes every layer in the backward (~30 % slower)
    # to save activation memory that a small model on CPU does not need.
    args = SFTConfig(packing=packing, packing_strategy="bfd", eval_packing=packing,
                     train_sampling_strategy="random",
                     activation_checkpointing=False, **common_args(cfg, folder, device, bool(va)))
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(tr),
                      eval_dataset=Dataset.from_list(va) if va else None, processing_class=tokenizer,
                      callbacks=callbacks)


def last_checkpoint(folder: Path) -> str | None:
    """The newest COMPLETE checkpoint: a kill -9 mid-save leaves a folder without a readable trainer_state.json
    (the Trainer writes it after the weights, optimizer and RNG state), which must not be resumed from."""
    found = [p for p in (folder / CHECKPOINTS).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        return str(path)
    return None


def train_one(cfg: JobConfig, settings: Settings, folder: Path, resume: bool = False,
              tools: DataTools | None = None, reuse_data: bool = False, progress: bool = False) -> dict:
    """Train in `folder` and save the artifact to folder/artifact; returns a result dict (state, metrics).
    `reuse_data`: train on the rows already saved in `folder` (a sweep's later trials) instead of rebuilding."""
    from transformers import AutoTokenizer, set_seed

    folder.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    resolve_precision(cfg, settings)
    cfg.to_yaml(folder / "config.yaml")
    train, val, fp = prepare_data(cfg, settings, folder, tools, reuse=resume or reuse_data)
    # config.yaml keeps epochs 0 (the fitted plan): a resume resolves the same plan from the same saved rows.
    planned, cfg = cfg, resolve_plan(cfg, len(train), int(os.environ.get("WORLD_SIZE", "1")))
    base = resolve_model_path(cfg.base_model or settings.model, settings)
    init = AdapterRegistry(settings.data_dir).get(cfg.init_from) if cfg.init_from else None
    set_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=settings.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if is_main_process():  # what the Train tab showed before starting, on stderr for `arena train`
        shown = plan_for_rows(planned, train + val, tokenizer, settings.data_dir, planned.base_model or settings.model,
                              use_bf16(cfg.bf16, device))
        print(f"plan: {shown.text()}", file=sys.stderr, flush=True)
    model = build_trainable(cfg, base, device, init, settings.trust_remote_code)
    cancel = CancelCallback(folder)
    val_loss = bool(val) and cfg.method != "rloo"  # RL has no validation loss to stop on (training/rl.py)
    stopper = EarlyStopping(cfg.early_stopping_patience) if cfg.early_stopping_patience > 0 and val_loss else None
    cancel.install_signals()
    ckpt = last_checkpoint(folder) if resume else None
    if resume and ckpt is None:
        raise ArenaError(f"job {folder.name} has no checkpoint to resume from")
    if ckpt and is_main_process():
        truncate_metrics(folder / "metrics.jsonl", int(ckpt.rsplit("-", 1)[-1]))
    callbacks = [MetricsCallback(folder / "metrics.jsonl"), cancel] + ([stopper] if stopper else [])
    if progress:  # prints on rank 0 only, like MetricsCallback (state.is_world_process_zero)
        callbacks.append(StderrProgress(cfg.name))
    if cfg.unfreeze_schedule:  # first: its on_log adds the stage to the record MetricsCallback writes
        callbacks.insert(0, UnfreezeCallback(model, parse_schedule(cfg.unfreeze_schedule)))
    trainer = make_trainer(cfg, model, tokenizer, train, val, folder, device, callbacks, settings.fast, settings)
    write_status(folder, state="running", pid=os.getpid(), name=cfg.name, fingerprint=fp)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=ckpt)
    seconds = time.time() - started
    if cancel.requested:
        write_status(folder, state="cancelled", step=trainer.state.global_step, name=cfg.name)
        (folder / CANCEL_FILE).unlink(missing_ok=True)
        return {"state": "cancelled", "step": trainer.state.global_step, "job_dir": str(folder)}
    metrics = _final_metrics(trainer, result, stopper, seconds, train, trainable_summary(model))
    if cfg.method == "reward":
        metrics.update(final_metrics(model, tokenizer, train, val))
    if trainer.accelerator.is_main_process:  # save_pretrained (peft's and transformers') makes the folder
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(folder / "artifact", safe_serialization=True)
        tokenizer.save_pretrained(folder / "artifact")
    trainer.accelerator.wait_for_everyone()
    return {"state": "done", "metrics": metrics, "fingerprint": fp, "job_dir": str(folder),
            "base_model": cfg.base_model or settings.model,
            "questions": sorted({ex.question() for ex in train if ex.question()}), "peft_type": _peft_type(model)}


def _final_metrics(trainer, result, stopper, seconds, train, summary) -> dict:
    from transformers.integrations import get_reporting_integration_callbacks

    history = read_metrics(Path(trainer.args.output_dir).parent / "metrics.jsonl")
    losses = [r["loss"] for r in history if "loss" in r]
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    state = trainer.state
    if trainer.eval_dataset is not None and trainer.args.load_best_model_at_end and state.best_metric is not None:
        # The loaded weights are the best checkpoint's, whose validation loss was measured when it was saved: a
        # final evaluation would repeat it (~25 s of a 9-minute job on a 165-pair FAQ).
        vals.append(state.best_metric)
    elif trainer.eval_dataset is not None:  # the loaded weights, never validated as they are
        # The tracker's run (--report-to) ended with training; an evaluation after it would open a second,
        # unnamed run, so the trackers' callbacks leave first.
        for callback in get_reporting_integration_callbacks(trainer.args.report_to):
            trainer.remove_callback(callback)
        vals.append(trainer.evaluate()["eval_loss"])
    tokens = [r["tokens"] for r in history if "tokens" in r]
    return {"train_loss": losses[-1] if losses else result.training_loss, "val_loss": vals[-1] if vals else None,
            "best_val_loss": min(vals) if vals else None, "steps": state.global_step,
            "train_seconds": round(seconds, 2), "tokens": tokens[-1] if tokens else None,
            "tokens_per_s": step_tokens_per_s(history, tokens[-1] / seconds if tokens and seconds > 0 else None),
            "early_stopped_at": stopper.stopped_at if stopper else None, "train_rows": len(train),
            "best_step": state.best_global_step if trainer.args.load_best_model_at_end else None,
            "max_steps": state.max_steps,
            "world_size": trainer.args.world_size, "bf16": bool(trainer.args.bf16), **summary}


def step_tokens_per_s(history: list[dict], overall: float | None) -> float | None:
    """Training tokens per second of the optimizer steps alone: the records whose tokens/s covers an interval
    without a validation or checkpoint (callbacks.MetricsCallback), weighted by their tokens. Plans cost
    validations on their own (plan.py EVAL_TOKEN_COST); with them inside, a 66-step job with
    three validations read 265 tokens/s where its steps ran at 302 (Zen 4, bf16), and the plan counted the
    validations twice. `overall` (tokens over the whole run) when no such interval was logged."""
    tokens = seconds = 0.0
    previous = None
    for record in (r for r in history if "tokens" in r):
        if previous is not None and record.get("tokens_per_s"):
            delta = record["tokens"] - previous["tokens"]
            tokens, seconds = tokens + delta, seconds + delta / record["tokens_per_s"]
        previous = record
    speed = tokens / seconds if seconds > 0 else overall
    return round(speed, 2) if speed else None


def _peft_type(model) -> str | None:
    config = getattr(model, "peft_config", None)
    if not config:
        return None
    peft_type = next(iter(config.values())).peft_type
    return str(getattr(peft_type, "value", peft_type))


def register(result: dict, cfg: JobConfig, settings: Settings) -> dict:
    """Put a finished job's artifact into the adapter registry (main process only)."""
    if result["state"] != "done" or not is_main_process():
        return result
    folder = Path(result["job_dir"])
    meta = {"method": cfg.method, "kind": "reward" if cfg.method == "reward" else "adapter",
            "base_model": result["base_model"], "metrics": result["metrics"],
            "peft_type": result["peft_type"], "fingerprint": result["fingerprint"], "job_id": cfg.job_id,
            "config": asdict(cfg)}
    info = AdapterRegistry(settings.data_dir).register(
        cfg.name, folder / "artifact", meta, result["questions"],
        {"job.yaml": folder / "config.yaml", "metrics.jsonl": folder / "metrics.jsonl"})
    write_status(folder, state="done", adapter=info.name, metrics=result["metrics"], name=cfg.name)
    out = {k: v for k, v in result.items() if k != "questions"}  # stored with the adapter; too long to print
    return {**out, "adapter": info.name, "path": str(info.path)}


def resolve_precision(cfg: JobConfig, settings: Settings) -> JobConfig:
    """bf16 'auto' becomes 'on' or 'off' for this device, so the saved config says which precision trained and
    a resume compares like with like."""
    cfg.bf16 = "on" if use_bf16(cfg.bf16, resolve_device(settings.device)) else "off"
    return cfg
