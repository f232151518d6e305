"""The training plan fitted to the data: how many optimizer steps, how often to validate, how long it takes.

Rule (epochs 0 and max_steps <= 0, the default): train AUTO_EPOCHS epochs with a floor of MIN_AUTO_STEPS
optimizer steps and a ceiling of MAX_AUTO_STEPS; validate about AUTO_EVALS times per run; the runner keeps
the checkpoint with the lowest validation loss and stops when it has not improved for
`early_stopping_patience` evaluations. One epoch of a small QA set (75 rows, batch 8) is ~10 steps: far too
few to learn facts, which need several passes (Ovadia et al. 2024; our measurement in docs/benchmarks.md). Explicit
epochs or max_steps are obeyed as given.

Minutes are estimated from the median tokens/s of previously trained adapters of the same base model on this
machine in the same precision (their stored metrics), or from default_tokens_per_s when there is none yet (the
basis is stated).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from foundation.registry import AdapterRegistry
from training.builders import read_questions
from training.config import JobConfig, bf16_choice, parse_augment
from training.data import chat, dedup
from training.doc_questions import QUESTIONS
from training.sources import load_source
from training.tools import DataTools

AUTO_EPOCHS = 8
MIN_AUTO_STEPS = 60
MAX_AUTO_STEPS = 1000
AUTO_EVALS = 10
# trl SFT LoRA r16 on the bundled 135M model, 2 CPU cores, fp32, measured at 169 tokens/s on one machine: the
# guess used until this data folder has timed a job of its own.
DEFAULT_TOKENS_PER_S = 150.0
# The same guess for bf16 autocast, chosen only where the CPU has native bf16: the optimizer steps of four fresh
# default decides on an AMD Zen 4 (avx512_bf16, 2 cores; validations apart, as runner.step_tokens_per_s times
# them) ran at 249, 271, 277 and 302 tokens/s; assuming the fp32 speed made the whole plan 1.7x too long. A
# stock step on an AMX Xeon ran 1.7-1.9x its fp32 speed.
DEFAULT_BF16_TOKENS_PER_S = 270.0
# A validation token costs about half a training token (forward only): 22 s for 24 rows of ~228 tokens where a
# training token took 7.8 ms (fp32, same job); ~9 s for 24 rows of ~227 where one took 3.3 ms (bf16, Zen 4). The
# speeds above are the optimizer steps' own (runner.step_tokens_per_s), so validations are costed on top.
EVAL_TOKEN_COST = 0.5


def validation_tokens(val_rows: int, tokens_per_row: float) -> float:
    """One validation pass, in training tokens of the same time."""
    return val_rows * tokens_per_row * EVAL_TOKEN_COST


def default_tokens_per_s(bf16: bool) -> float:
    return DEFAULT_BF16_TOKENS_PER_S if bf16 else DEFAULT_TOKENS_PER_S


@dataclass
class TrainingPlan:
    """What a job will do: steps, epochs they amount to, validation interval and the time estimate."""

    steps: int
    epochs: float
    eval_steps: int
    fitted: bool  # True: the rule above chose the steps; False: the job's own epochs / max_steps
    minutes: float
    tokens_per_s: float
    basis: str  # how tokens_per_s was obtained
    keeps_best: bool = True  # the checkpoint with the lowest validation loss is registered
    patience: int = 0  # evaluations without improvement before stopping early (0: never)
    bf16: bool = False  # bf16 autocast (foundation.models.use_bf16 chose it); speeds are timed per precision

    def text(self) -> str:
        how = "fitted to the data" if self.fitted else "as configured"
        after = (", the best checkpoint is kept" if self.keeps_best else "") + \
            (f", stops after {self.patience} without improvement" if self.patience else "")
        precision = "bf16" if self.bf16 else "fp32"
        return (f"~{self.steps} steps (~{self.epochs:.1f} epochs, {how}), ~{self.minutes:.1f} minutes on this "
                f"machine in {precision} ({self.tokens_per_s:.0f} tokens/s, {self.basis}); validation every "
                f"{self.eval_steps} steps{after}")


def is_fitted(cfg: JobConfig) -> bool:
    return cfg.max_steps <= 0 and cfg.epochs <= 0


def steps_per_epoch(cfg: JobConfig, train_rows: int, world_size: int = 1) -> int:
    return max(1, math.ceil(train_rows / (cfg.batch_size * cfg.grad_accum * max(1, world_size))))


def resolve(cfg: JobConfig, train_rows: int, world_size: int = 1) -> JobConfig:
    """The config the trainer runs: the fitted rule turned into max_steps and eval_steps (cfg is not changed)."""
    if not is_fitted(cfg):
        return cfg
    per_epoch = steps_per_epoch(cfg, train_rows, world_size)
    steps = min(MAX_AUTO_STEPS, max(MIN_AUTO_STEPS, AUTO_EPOCHS * per_epoch))
    return replace(cfg, max_steps=steps, eval_steps=max(1, steps // AUTO_EVALS))


def plan(cfg: JobConfig, train_rows: int, tokens_per_row: float, tokens_per_s: float | None = None,
         basis: str = "", world_size: int = 1, bf16: bool = False) -> TrainingPlan:
    """The plan for `train_rows` rows of about `tokens_per_row` tokens each, its validations included."""
    run = resolve(cfg, train_rows, world_size)
    per_epoch = steps_per_epoch(cfg, train_rows, world_size)
    steps = run.max_steps if run.max_steps > 0 else math.ceil(run.epochs * per_epoch)
    speed = tokens_per_s or default_tokens_per_s(bf16)
    tokens = steps * cfg.batch_size * cfg.grad_accum * max(1, world_size) * tokens_per_row
    validated = cfg.val_fraction > 0
    if validated:  # the held-out rows (val_fraction of all), forward only, at every validation
        val_rows = round(train_rows * cfg.val_fraction / (1 - cfg.val_fraction))
        tokens += math.ceil(steps / max(1, run.eval_steps)) * validation_tokens(val_rows, tokens_per_row)
    return TrainingPlan(steps, steps / per_epoch, min(run.eval_steps, steps), is_fitted(cfg),
                        round(tokens / speed / 60, 1), speed,
                        basis or ("measured" if tokens_per_s else "assumed: no adapter trained here yet"),
                        validated and cfg.keep_best, cfg.early_stopping_patience if validated else 0, bf16)


def measured_tokens_per_s(data_dir: Path, base_model: str, bf16: bool = False) -> tuple[float | None, str]:
    """(median training tokens/s of registered adapters of `base_model` trained in the same precision, how it
    was obtained); adapters from before the precision was recorded trained in fp32."""
    speeds = [float(i.metrics["tokens_per_s"]) for i in AdapterRegistry(data_dir).list()
              if i.base_model == base_model and i.metrics.get("tokens_per_s")
              and bool(i.metrics.get("bf16", False)) == bf16]
    precision = "bf16" if bf16 else "fp32"
    if not speeds:
        return None, f"assumed {default_tokens_per_s(bf16):.0f}: no {precision} adapter of this model trained here yet"
    return statistics.median(speeds), f"median of {len(speeds)} earlier job(s) in {precision} on this machine"


def plan_for_rows(cfg: JobConfig, rows: list, tokenizer, data_dir: Path, base_model: str,
                  bf16: bool = False) -> TrainingPlan:
    """The plan for the rows a job would train on (val_fraction held out), timed from this machine's jobs."""
    train_rows = max(1, round(len(rows) * (1 - cfg.val_fraction)))
    tokens = [len(tokenizer.apply_chat_template(ex.messages, return_dict=True)["input_ids"]) if ex.kind == "chat"
              else len(tokenizer(ex.text or ex.chosen)["input_ids"]) for ex in rows[:200]]
    per_row = min(cfg.max_length, statistics.mean(tokens)) if tokens else cfg.max_length
    speed, basis = measured_tokens_per_s(data_dir, base_model, bf16)
    return plan(cfg, train_rows, per_row, speed, basis, bf16=bf16)


def plan_job(cfg: JobConfig, settings, tools: DataTools | None = None) -> TrainingPlan:
    """The plan of a configured job before it starts (the Train tab shows it): its sources' rows with their
    weights, up to K paraphrases per plain question with `augment`. A distillation source counts its questions
    (their answers are generated when the job runs, so its tokens are underestimated); so does a documents
    source with a question generator (at most that many pairs pass its filters)."""
    from transformers import AutoTokenizer

    from foundation.models import resolve_device, resolve_model_path, use_bf16  # deferred: pulls torch

    rows = []
    for spec in cfg.data:
        if spec.get("source") == "distill":
            found = [chat(q, "") for q in dict.fromkeys(read_questions(Path(spec["questions"])))]
        elif spec.get("generator"):  # counted as the questions asked: writing them is the job's first step
            found = [chat("", "")] * int(spec.get("n_questions", QUESTIONS))
        else:
            found = dedup(load_source(spec, settings, tools, cfg))
        rows += found * max(1, round(float(spec.get("weight", 1.0))))
    paraphrased = [ex for ex in rows if ex.kind == "chat"] * parse_augment(cfg.augment)
    model = cfg.base_model or settings.model
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model, settings),
                                              trust_remote_code=settings.trust_remote_code)
    bf16 = use_bf16(bf16_choice(cfg.bf16), resolve_device(settings.device))
    return plan_for_rows(cfg, rows + paraphrased, tokenizer, settings.data_dir, model, bf16)
