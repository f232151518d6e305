"""Answer-only LM head: same loss and gradients as the model's own loss, chunked or not, through PEFT."""

from __future__ import annotations

import pytest
import torch

from training.speed import loss as answer_loss
from training.speed.loss import IGNORE, add_answer_head


def _batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 20), generator=g)
    labels = ids.clone()
    labels[:, :12] = IGNORE  # prompt masked
    labels[1, 16:] = IGNORE  # a right-padded row
    mask = torch.ones_like(ids)
    mask[1, 16:] = 0
    return ids, mask, labels


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("chunk", [4096, 5])
def test_answer_only_loss_and_grads_match_full_logits(tiny_model, tiny_tokenizer, monkeypatch, chunk):
    monkeypatch.setattr(answer_loss, "CHUNK", chunk)  # 5: several checkpointed chunks
    model = tiny_model.train()
    ids, mask, labels = _batch(len(tiny_tokenizer))
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    ref.backward()
    ref_grads = _grads(model)
    model.zero_grad()
    add_answer_head(model)
    ours = model(input_ids=ids, attention_mask=mask, labels=labels, answer_only=True).loss
    ours.backward()
    assert torch.allclose(ours, ref, atol=1e-5)
    for a, b in zip(_grads(model), ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_answer_head_through_peft_trains_only_lora(tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"))
    add_answer_head(model.get_base_model())
    ids, mask, labels = _batch(len(tiny_tokenizer), seed=1)
    out = model(input_ids=ids, attention_mask=mask, labels=labels, answer_only=True, num_items_in_batch=10)
    out.loss.backward()
    named = dict(model.named_parameters())
    assert all(named[n].grad is None for n in named if "lora_" not in n)
    assert any(named[n].grad is not None and named[n].grad.abs().sum() > 0 for n in named if "lora_B" in n)
    # Without the flag the forward is untouched: logits for generation.
    assert model(input_ids=ids[:1]).logits.shape == (1, 20, len(tiny_tokenizer))
