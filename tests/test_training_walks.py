"""The Trainer's per-step module walks, done once (training/speed/walks.py), behave like the walks themselves."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from training.config import JobConfig
from training.data import chat
from training.speed.walks import cache_module_walks


def test_cached_train_and_zero_grad_reach_every_module_and_parameter(tiny_model):
    class Custom(nn.Module):  # a module with side effects in its own train(), like peft's DoRA layers
        def train(self, mode=True):
            self.calls = getattr(self, "calls", 0) + 1
            return super().train(mode)

    tiny_model.custom = Custom()
    cache_module_walks(tiny_model)
    tiny_model.eval()
    assert not any(m.training for m in tiny_model.modules()) and tiny_model.custom.calls == 1
    assert tiny_model.train() is tiny_model and all(m.training for m in tiny_model.modules())
    tiny_model.train()
    tiny_model.train(True)
    assert tiny_model.custom.calls == 2  # unchanged mode: no walk
    tiny_model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    assert all(p.grad is not None for p in tiny_model.parameters())
    tiny_model.zero_grad()
    assert all(p.grad is None for p in tiny_model.parameters())


def test_trainer_flops_and_clipping_match_the_plain_trainer(tiny_model, tiny_tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    from training.runner import make_trainer

    peft = get_peft_model(tiny_model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"))
    rows = [chat(f"Question {i}?", "word " * (2 + i)) for i in range(8)]
    cfg = JobConfig(name="t", data=[{"path": "-"}], max_steps=1, batch_size=4, lora_r=4, val_fraction=0)
    trainer = make_trainer(cfg, peft, tiny_tokenizer, rows, [], tmp_path, torch.device("cpu"), [])
    assert "train" in vars(peft) and "zero_grad" in vars(peft)
    batch = {"input_ids": torch.ones(3, 7, dtype=torch.long)}
    assert trainer.floating_point_ops(batch) == Trainer.floating_point_ops(trainer, batch) > 0
    assert trainer.floating_point_ops(batch) == Trainer.floating_point_ops(trainer, batch)  # cached count
    peft(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss.mul(100).backward()
    grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.grad is not None}
    ours = trainer._clip_grad_norm(peft)
    clipped = {n: p.grad.clone() for n, p in peft.named_parameters() if p.grad is not None}
    for name, param in peft.named_parameters():
        if param.grad is not None:
            param.grad.copy_(grads[name])
    reference = Trainer._clip_grad_norm(trainer, peft)
    assert float(ours) == float(reference) > trainer.args.max_grad_norm  # it really clipped
    assert all(torch.equal(clipped[n], p.grad) for n, p in peft.named_parameters() if p.grad is not None)
