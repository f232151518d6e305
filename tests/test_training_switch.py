"""The training speed switch: ARENA_FAST / make_trainer(fast=...) and the version guard of training/speed."""

from __future__ import annotations

import copy

import pytest
import torch

from foundation.settings import load_settings
from training import speed
from training.config import JobConfig
from training.data import chat
from training.runner import make_trainer

ROWS = [chat(f"Question {i}?", "word " * (2 + (i * 5) % 17)) for i in range(16)]
TESTED_VERSIONS = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2", "trl": "1.16.0"}


def _peft(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear"))


def _train(model, tokenizer, folder, fast: bool, bf16: str = "off"):
    cfg = JobConfig(name="t", data=[{"path": "-"}], max_steps=3, batch_size=4, lora_r=4, lora_alpha=8,
                    lora_dropout=0.0, max_length=256, val_fraction=0, seed=3, bf16=bf16)
    trainer = make_trainer(cfg, model, tokenizer, ROWS, ROWS[:8], folder, torch.device("cpu"), [], fast)
    patched = {name for name in ("compute_loss", "_clip_grad_norm", "floating_point_ops") if name in vars(trainer)}
    trainer.train()
    return trainer, patched


def _patched_layers(model) -> list:
    """LoRA linears and norms whose forward the speed path replaced (accelerate may wrap the top forward)."""
    return [m for m in model.modules()
            if "forward" in vars(m) and (hasattr(m, "lora_A") or type(m).__name__.endswith("RMSNorm"))]


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("bf16", ["off", "on"])
def test_fast_and_stock_paths_train_the_same_adapter(tiny_model, tiny_tokenizer, tmp_path, bf16):
    """Both precisions, on any CPU (bf16 "on" is emulated where the CPU has no native bf16: slower, same math)."""
    start = _peft(tiny_model)
    before = _snapshot(start)
    runs = {}
    for fast in (True, False):
        model = copy.deepcopy(start)
        trainer, patched = _train(model, tiny_tokenizer, tmp_path / str(fast), fast, bf16)
        runs[fast] = (trainer.evaluate()["eval_loss"], _snapshot(model), patched, model)
    assert runs[True][2] == {"compute_loss", "_clip_grad_norm", "floating_point_ops"}
    assert runs[False][2] == set()  # stock: the library's own trainer methods
    assert _patched_layers(runs[False][3]) == [] and _patched_layers(runs[True][3])
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-3)
    for fast in (True, False):
        after = runs[fast][1]
        lora = [n for n in after if "lora_" in n]
        assert any(not torch.equal(after[n], before[n]) for n in lora)  # the adapter learned
        assert all(torch.equal(after[n], before[n]) for n in after if "lora_" not in n)  # base untouched
        if bf16 == "off":
            for name in lora:  # the two paths end at the same adapter (fp32 sums in another order)
                assert torch.allclose(runs[True][1][name], runs[False][1][name], atol=1e-4, rtol=1e-3), name
    if bf16 == "on":  # bf16 rounding flips Adam's first, sign-like steps on a few near-zero gradients (measured:
        # 1.5e-4 of the adapter's norm on a Zen 4); the bulk of the adapter is the same
        fast_w, stock_w = (torch.cat([runs[fast][1][n].flatten() for n in lora]) for fast in (True, False))
        assert (fast_w - stock_w).norm() < 1e-2 * stock_w.norm()


def test_versions_outside_the_tested_range_keep_the_stock_path(tiny_model, tiny_tokenizer, tmp_path):
    assert speed.untested_versions(TESTED_VERSIONS) == []
    newer = {**TESTED_VERSIONS, "transformers": "6.0.0"}
    assert speed.untested_versions(newer) == ["transformers 6.0.0 (tested 5.0 to below 6)"]
    assert "trl not installed" in speed.untested_versions({k: v for k, v in TESTED_VERSIONS.items() if k != "trl"})
    model = _peft(tiny_model)
    cfg = JobConfig(name="t", data=[{"path": "-"}], max_steps=1, batch_size=4, lora_r=4, val_fraction=0)
    trainer = make_trainer(cfg, model, tiny_tokenizer, ROWS, [], tmp_path, torch.device("cpu"), [], fast=False)
    assert speed.apply(model, trainer, installed=newer) is False
    assert "compute_loss" not in vars(trainer) and _patched_layers(model) == []
    assert speed.apply(model, trainer, installed=TESTED_VERSIONS) is True
    assert "compute_loss" in vars(trainer)


def test_arena_fast_setting():
    assert load_settings(env={}).fast is True
    assert load_settings(env={"ARENA_FAST": "0"}).fast is False
    with pytest.raises(ValueError, match="ARENA_FAST"):
        load_settings(env={"ARENA_FAST": "maybe"})
