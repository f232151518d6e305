"""Gradual unfreezing (training/unfreeze.py) on the tiny 2-layer Llama: schedule parsing, which parameters the
optimizer updates at each step, weights untouched before their stage, and the run through `run_job`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from foundation.errors import ArenaError
from training.config import JobConfig
from training.unfreeze import Stage, UnfreezeCallback, parse_schedule


def test_parse_schedule_and_errors():
    assert parse_schedule("2:0, 4:50,all:100") == [Stage(2, 0), Stage(4, 50), Stage(None, 100)]
    for bad, word in (("2:5", "step 0"), ("2:0,1:10", "unfreeze more"), ("2:0,4:0", "later step"),
                      ("x:0", "LAYERS:STEP"), ("2", "LAYERS:STEP"), ("all:0,4:10", "unfreeze more"), ("", "empty")):
        with pytest.raises(ArenaError, match=word):
            parse_schedule(bad)
    with pytest.raises(ArenaError, match="needs method 'freeze'"):
        JobConfig(method="lora", unfreeze_schedule="1:0", data=[{"path": "x"}]).validate()


class Probe(TrainerCallback):
    """At each optimizer step: which parameters have a gradient (= what AdamW updates) and a weight snapshot."""

    def __init__(self, model):
        self.model = model
        self.updated: dict[int, set[str]] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.optimizer_ids: list[set[int]] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        names = {n for n, p in self.model.named_parameters() if p.grad is not None}
        self.updated[state.global_step] = names
        self.optimizer_ids.append({id(p) for group in optimizer.param_groups for p in group["params"]})

    def on_step_begin(self, args, state, control, **kwargs):
        self.snapshots[state.global_step] = {n: p.detach().clone() for n, p in self.model.named_parameters()}


def test_parameters_unfreeze_at_their_steps_and_stay_untouched_before(qa_file, settings, tmp_path):
    from transformers import AutoTokenizer

    from training.data import load_file, split
    from training.methods import build_trainable
    from training.runner import make_trainer

    cfg = JobConfig(name="u", method="freeze", unfreeze_schedule="1:0,2:2,all:4", data=[{"path": str(qa_file)}],
                    max_steps=6, batch_size=4, learning_rate=1e-2, val_fraction=0, max_length=64, save_steps=100)
    cfg.validate()
    tok = AutoTokenizer.from_pretrained(settings.model)
    model = build_trainable(cfg, settings.model, torch.device("cpu"))
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    train, _ = split(load_file(qa_file), 0, 0)
    unfreeze = UnfreezeCallback(model, parse_schedule(cfg.unfreeze_schedule))
    probe = Probe(model)
    trainer = make_trainer(cfg, model, tok, train, [], tmp_path, torch.device("cpu"), [unfreeze, probe],
                           fast=settings.fast)
    trainer.train()

    top = {n for n in initial if ".layers.1." in n or n == "model.norm.weight"}
    top2 = top | {n for n in initial if ".layers.0." in n}
    # global_step counts finished steps: the update made during step k is recorded under k
    assert probe.updated[0] == probe.updated[1] == top
    assert probe.updated[2] == probe.updated[3] == top2
    assert probe.updated[4] == probe.updated[5] == set(initial)  # embeddings and LM head from step 4
    assert unfreeze.history == [(0, unfreeze.history[0][1]), (2, unfreeze.history[1][1]),
                                (4, sum(p.numel() for p in model.parameters()))]
    # one fixed set of optimizer parameters from the start (what makes a resumed optimizer state load back)
    assert all(ids == {id(p) for p in model.parameters()} for ids in probe.optimizer_ids)
    lower = [n for n in initial if ".layers.0." in n]
    embed = [n for n in initial if "embed_tokens" in n or "lm_head" in n]
    for step in (1, 2):  # snapshots taken before the update of `step`: layer 0 is still as loaded at its start
        assert all(torch.equal(probe.snapshots[step][n], initial[n]) for n in lower)
    assert not all(torch.equal(probe.snapshots[4][n], initial[n]) for n in lower)
    for step in (1, 3, 4):
        assert all(torch.equal(probe.snapshots[step][n], initial[n]) for n in embed)
    final = dict(model.named_parameters())
    assert not all(torch.equal(final[n].detach(), initial[n]) for n in embed)


def test_run_job_logs_the_stage_and_registers_a_full_model(qa_file, settings):
    from foundation.registry import AdapterRegistry
    from training.job import run_job

    cfg = JobConfig(name="gradual", method="freeze", unfreeze_schedule="1:0,all:2", data=[{"path": str(qa_file)}],
                    max_steps=3, batch_size=4, max_length=64, val_fraction=0.2, eval_steps=2, save_steps=50)
    result = run_job(cfg, settings)
    records = [json.loads(x) for x in (Path(result["job_dir"]) / "metrics.jsonl").read_text().splitlines()]
    stages = [(r["step"], r["trainable_layers"]) for r in records if "trainable_layers" in r]
    assert stages[0] == (1, 1) and ("all" in {s for _, s in stages})
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.peft_type is None and info.method == "freeze"
    assert (info.path / "model.safetensors").is_file()
