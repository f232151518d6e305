"""The training plan fitted to the data, the best-validation checkpoint and early stopping on the tiny model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from foundation.errors import ArenaError
from training import plan as P
from training.config import JobConfig
from training.job import run_job
from training.runner import job_dir, step_tokens_per_s


def test_fitted_plan_has_a_floor_several_epochs_and_a_ceiling():
    cfg = JobConfig(data=[{"path": "x.jsonl"}])  # defaults: epochs 0, max_steps -1 -> fitted
    assert P.is_fitted(cfg)
    small = P.resolve(cfg, 16)  # 2 steps per epoch: the 60-step floor wins
    assert (small.max_steps, small.eval_steps) == (P.MIN_AUTO_STEPS, P.MIN_AUTO_STEPS // P.AUTO_EVALS)
    faq = P.resolve(cfg, 75)  # 10 steps per epoch x 8 epochs
    assert faq.max_steps == 80 and faq.eval_steps == 8
    assert P.resolve(cfg, 100_000).max_steps == P.MAX_AUTO_STEPS
    assert cfg.max_steps == -1  # the saved config keeps "fitted": a resume resolves the same plan
    explicit = JobConfig(data=[{"path": "x"}], epochs=2)
    assert P.resolve(explicit, 75) is explicit and P.plan(explicit, 75, 50).steps == 20


def test_plan_minutes_follow_the_measured_speed_and_say_how():
    cfg = JobConfig(data=[{"path": "x"}], batch_size=8)
    fast = P.plan(cfg, 75, tokens_per_row=60, tokens_per_s=200, basis="median of 2 earlier job(s)")
    slow = P.plan(cfg, 75, tokens_per_row=60, tokens_per_s=100, basis="median of 2 earlier job(s)")
    # 80 steps of 8 rows of 60 tokens, and 10 validations (every 8 steps) of the 8 held-out rows at half a token
    assert fast.steps == 80 and fast.minutes == round((80 * 8 * 60 + 10 * 8 * 60 * 0.5) / 200 / 60, 1) == 3.4
    assert slow.minutes == pytest.approx(2 * fast.minutes, abs=0.1)
    assert "~80 steps" in fast.text() and "minutes on this machine" in fast.text() and "median" in fast.text()
    assert "best checkpoint is kept, stops after 3 without improvement" in fast.text()
    last = P.plan(JobConfig(data=[{"path": "x"}], keep_best=False, early_stopping_patience=0), 75, 60)
    assert "best checkpoint" not in last.text() and "stops after" not in last.text()
    assumed = P.plan(cfg, 75, 60)
    assert assumed.tokens_per_s == P.DEFAULT_TOKENS_PER_S and "assumed" in assumed.text()


def test_a_machine_that_trained_nothing_assumes_the_speed_of_its_precision(settings):
    """No job timed here yet: bf16 autocast (native-bf16 CPUs only) is planned at its own, faster guess, so a
    fresh plan on such a CPU is not the fp32 one; the basis names the precision and the guess."""
    cfg = JobConfig(data=[{"path": "x"}], batch_size=8)
    fp32, bf16 = P.plan(cfg, 75, 60), P.plan(cfg, 75, 60, bf16=True)
    assert fp32.tokens_per_s == P.DEFAULT_TOKENS_PER_S and bf16.tokens_per_s == P.DEFAULT_BF16_TOKENS_PER_S
    assert bf16.minutes == pytest.approx(fp32.minutes * P.DEFAULT_TOKENS_PER_S / P.DEFAULT_BF16_TOKENS_PER_S,
                                         abs=0.1) and bf16.minutes < fp32.minutes
    for precision, guess in (("fp32", P.DEFAULT_TOKENS_PER_S), ("bf16", P.DEFAULT_BF16_TOKENS_PER_S)):
        speed, basis = P.measured_tokens_per_s(settings.data_dir, settings.model, bf16=precision == "bf16")
        assert speed is None and basis == f"assumed {guess:.0f}: no {precision} adapter of this model trained here yet"


def test_bad_epochs_and_patience_are_refused():
    with pytest.raises(ArenaError, match="epochs must be greater than or equal to 0, got -1"):
        JobConfig(data=[{"path": "x"}], epochs=-1).validate()
    with pytest.raises(ArenaError, match="early_stopping_patience"):
        JobConfig(data=[{"path": "x"}], early_stopping_patience=-2).validate()


def _val_losses(job_dir: str) -> list[tuple[int, float]]:
    """(step, val loss) of the evaluations during training (the last record is the runner's final evaluate)."""
    records = [json.loads(x) for x in (Path(job_dir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_loss"]) for r in records if "val_loss" in r][:-1]


def test_default_plan_keeps_best_checkpoint_and_stops_early(qa_file, settings, capsys):
    """Fitted plan on 16 rows: 60 steps planned; a high constant rate overfits, so validation stops improving,
    early stopping fires before 60, and the registered adapter is the best checkpoint, not the last. fp32 on
    every CPU: this checks the keep-best logic on one loss curve (bf16 autocast, auto on a native-bf16 CPU,
    takes another path through it, and is tested on its own in test_training_precision.py)."""
    cfg = JobConfig(name="fitted", data=[{"path": str(qa_file)}], batch_size=2, max_length=96, lora_r=4,
                    lora_alpha=8, val_fraction=0.2, learning_rate=0.05, lr_scheduler="constant", bf16="off")
    result = run_job(cfg, settings)
    m = result["metrics"]
    assert m["max_steps"] == P.MIN_AUTO_STEPS
    assert "plan: ~60 steps (~8.6 epochs, fitted to the data)" in capsys.readouterr().err  # 7 steps per epoch
    assert m["early_stopped_at"] is not None and m["steps"] == m["early_stopped_at"] < P.MIN_AUTO_STEPS
    vals = _val_losses(result["job_dir"])
    best_step, best_loss = min(vals, key=lambda sv: sv[1])
    assert m["best_step"] == best_step and best_step < m["steps"]
    assert vals[-1][1] > best_loss  # the last evaluation was worse: keeping the last would lose
    assert m["val_loss"] == pytest.approx(best_loss, rel=1e-4)  # the loaded weights are the best step's
    speed, basis = P.measured_tokens_per_s(settings.data_dir, settings.model)
    assert speed == pytest.approx(m["tokens_per_s"]) and "1 earlier job" in basis


def test_keep_best_off_registers_the_last_weights(qa_file, settings):
    cfg = JobConfig(name="last", data=[{"path": str(qa_file)}], batch_size=2, max_length=96, lora_r=4,
                    lora_alpha=8, val_fraction=0.2, learning_rate=0.05, lr_scheduler="constant", max_steps=12,
                    eval_steps=2, early_stopping_patience=0, keep_best=False)
    m = run_job(cfg, settings)["metrics"]
    vals = _val_losses(str(job_dir(settings, cfg)))
    assert m["steps"] == 12 and m["best_step"] is None and m["early_stopped_at"] is None
    assert vals[-1][0] == 12 and m["val_loss"] == pytest.approx(vals[-1][1], rel=1e-4)
    # tokens/s is the steps' own: no logged rate spans a validation and its checkpoint
    history = [json.loads(x) for x in (job_dir(settings, cfg) / "metrics.jsonl").read_text().splitlines()]
    after_val = [b for a, b in itertools.pairwise(history) if "val_loss" in a and "tokens" in b]
    assert len(after_val) >= 5 and not any("tokens_per_s" in r for r in after_val)
    assert m["tokens_per_s"] == step_tokens_per_s(history, None) > 0


def test_step_speed_leaves_out_validations_by_hand():
    """100 tokens in 2 s, a validation, a first log after it (no rate), 100 tokens in 4 s: 200 / 6 s."""
    history = [{"step": 1, "tokens": 50.0}, {"step": 2, "tokens": 150.0, "tokens_per_s": 50.0},
               {"step": 2, "val_loss": 1.0}, {"step": 3, "tokens": 200.0},
               {"step": 4, "tokens": 300.0, "tokens_per_s": 25.0}]
    assert step_tokens_per_s(history, 10.0) == pytest.approx(200 / 6, abs=0.01)
    assert step_tokens_per_s(history[:1], 10.0) == 10.0  # no rated interval: the whole run's rate
    assert step_tokens_per_s([], None) is None


def test_best_checkpoint_settings_keep_the_asked_checkpoint_cadence(tmp_path):
    import torch

    from training.trainer_args import common_args

    cpu = torch.device("cpu")
    frequent = common_args(JobConfig(data=[{"path": "x"}], eval_steps=20, save_steps=4), tmp_path, cpu, True)
    assert (frequent["eval_steps"], frequent["save_steps"]) == (4, 4) and frequent["load_best_model_at_end"]
    assert frequent["metric_for_best_model"] == "eval_loss"
    usual = common_args(JobConfig(data=[{"path": "x"}], eval_steps=8, save_steps=50), tmp_path, cpu, True)
    assert (usual["eval_steps"], usual["save_steps"]) == (8, 8)  # a checkpoint at every evaluation
    last = common_args(JobConfig(data=[{"path": "x"}], eval_steps=20, save_steps=4, keep_best=False,
                                  early_stopping_patience=0), tmp_path, cpu, True)
    assert (last["eval_steps"], last["save_steps"], last["load_best_model_at_end"]) == (20, 4, False)
    assert last["metric_for_best_model"] is None
    no_val = common_args(JobConfig(data=[{"path": "x"}]), tmp_path, cpu, False)
    assert no_val["eval_strategy"] == "no" and not no_val["load_best_model_at_end"]
