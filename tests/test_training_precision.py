"""Training precision: bf16 autocast where the hardware has native bf16, fp32 elsewhere, overridable; both
paths train the tiny model, with the speed code on (ARENA_FAST=0 runs the stock path) and the choice saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file as load_safetensors

from foundation import models
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from training.config import JobConfig, bf16_choice
from training.job import run_job

AVX2_ONLY = "flags\t\t: fpu sse sse2 avx avx2 fma\n"
ZEN4 = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
AMX = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.mark.parametrize("cpuinfo,native", [(AVX2_ONLY, False), (ZEN4, True), (AMX, True),
                                            ("flags : avx512f avx512_vnni\n", False)])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert models.cpu_supports_bf16(cpuinfo) is native


def test_auto_follows_the_hardware_and_on_off_override_it(monkeypatch):
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(models, "cpu_supports_bf16", lambda text=None, native=native: native)
        assert models.use_bf16("auto", cpu) is native
        assert models.use_bf16("on", cpu) is True and models.use_bf16("off", cpu) is False


@pytest.mark.parametrize("given,choice", [("auto", "auto"), (True, "on"), (False, "off"), ("False", "off"),
                                          ("on", "on"), ("OFF", "off")])
def test_older_yaml_booleans_still_load(given, choice):
    assert bf16_choice(given) == choice


def test_a_bad_precision_is_refused_by_name():
    with pytest.raises(ArenaError, match="bf16 must be one of auto, on, off, got 'fast'"):
        JobConfig(bf16="fast", data=[{"path": "x.jsonl"}]).validate()


def _train(qa_file, settings, choice: str, native: bool, monkeypatch) -> dict:
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda text=None: native)
    cfg = JobConfig(name=f"p-{choice}-{native}", data=[{"path": str(qa_file)}], max_steps=12, batch_size=4,
                    max_length=96, eval_steps=6, save_steps=50, val_fraction=0.25, lora_r=4, lora_alpha=8,
                    learning_rate=5e-3, bf16=choice, seed=3)
    return run_job(cfg, settings)


def test_both_precisions_train_and_the_job_records_which_one(qa_file, settings, monkeypatch):
    """auto on a CPU with native bf16 trains in bf16, on one without in fp32; each adapter learns (lora_B
    leaves zero, validation loss falls) and the two validation losses agree within bf16's rounding."""
    results = {}
    for native in (True, False):
        result = _train(qa_file, settings, "auto", native, monkeypatch)
        saved = (Path(result["job_dir"]) / "config.yaml").read_text()
        assert f"bf16: '{'on' if native else 'off'}'" in saved or f"bf16: {'on' if native else 'off'}" in saved
        info = AdapterRegistry(settings.data_dir).get(result["adapter"])
        assert info.metrics["bf16"] is native
        lora_b = [t for n, t in load_safetensors(str(info.path / "adapter_model.safetensors")).items()
                  if "lora_B" in n]
        assert lora_b and all(torch.isfinite(t).all() for t in lora_b) and any(t.abs().sum() > 0 for t in lora_b)
        vals = [json.loads(line)["val_loss"] for line in (Path(result["job_dir"]) / "metrics.jsonl").read_text()
                .splitlines() if "val_loss" in json.loads(line)]
        assert vals[-1] < vals[0], vals  # it learned, in either precision
        results[native] = result["metrics"]["val_loss"]
    bf16_loss, fp32_loss = results[True], results[False]
    # bf16 keeps 8 bits of mantissa: over 12 steps the two runs drift apart by rounding only.
    assert abs(bf16_loss - fp32_loss) < 0.05 * fp32_loss, results
