"""Training speed levers keep the math: fused LoRA linears, packed / unpadded batches, make_trainer wiring."""

from __future__ import annotations

import contextlib
import copy
from unittest import mock

import pytest
import torch

from training.config import JobConfig
from training.data import chat
from training.speed import attention as attention_module
from training.speed import fastlora, kernels
from training.speed.fastlora import LoraLinearFn, fuse_lora_linears
from training.speed.loss import IGNORE, add_answer_head, length_chunks, unpadded_parts


def _peft(model, **kw):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear",
                                            **kw))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:  # non-zero B, so the LoRA path really contributes to outputs and gradients
                param.normal_(0, 0.2)
    return peft.train()


def _loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_lora_matches_peft_loss_and_grads(tiny_model, tiny_tokenizer):
    ref = _peft(tiny_model)
    fused = copy.deepcopy(ref)
    assert fuse_lora_linears(fused) == 14  # 2 layers x 7 linears; lm_head is not a LoRA target
    ids = torch.randint(0, len(tiny_tokenizer), (2, 24), generator=torch.Generator().manual_seed(0))
    ref_loss, ref_grads = _loss_and_grads(ref, ids)
    with mock.patch.object(LoraLinearFn, "apply", wraps=LoraLinearFn.apply) as spy:
        loss, grads = _loss_and_grads(fused, ids)
    assert spy.call_count == 14
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and all("lora_" in n for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-6, rtol=1e-4), name


def test_fused_function_with_bias_and_input_grad_matches_autograd():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, requires_grad=True)
    weight, bias = torch.randn(6, 8), torch.randn(6)
    a, b = torch.randn(4, 8, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    out = LoraLinearFn.apply(x, weight, bias, a, b, 0.5)
    ref = x @ weight.t() + bias + (x @ a.t()) @ b.t() * 0.5
    assert torch.allclose(out, ref, atol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, a, b), grad)
    want = torch.autograd.grad(ref, (x, a, b), grad)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-4)


def test_unfusable_cases_fall_back_to_peft(tiny_model, tiny_tokenizer):
    ids = torch.randint(0, len(tiny_tokenizer), (1, 10))
    with torch.no_grad():
        base_logits = tiny_model(input_ids=ids).logits
    dropped = _peft(copy.deepcopy(tiny_model), lora_dropout=0.1)
    plain = _peft(tiny_model)
    fuse_lora_linears(dropped)
    fuse_lora_linears(plain)
    with mock.patch.object(LoraLinearFn, "apply", wraps=LoraLinearFn.apply) as spy, torch.no_grad():
        dropped(input_ids=ids)  # dropout on the LoRA input: peft's own path
        with plain.disable_adapter():
            disabled = plain(input_ids=ids).logits
    assert spy.call_count == 0
    assert torch.allclose(disabled, base_logits, atol=1e-6)


def test_length_chunks_bound_padding_and_cover_rows():
    lengths = [100, 12, 95, 40, 88, 13, 60, 100]
    chunks = length_chunks(lengths)
    assert sorted(i for c in chunks for i in c) == list(range(8))
    assert all(lengths[i] >= 0.85 * lengths[c[0]] for c in chunks for i in c)
    assert chunks[0] == [0, 7, 2, 4] or sorted(chunks[0]) == [0, 2, 4, 7]


def _padded_batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    lengths = [30, 8, 28, 12, 30, 9]
    ids = torch.randint(0, vocab, (6, 30), generator=g)
    mask = (torch.arange(30) < torch.tensor(lengths)[:, None]).long()
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[:, :4] = IGNORE  # prompt
    return ids, mask, labels


@pytest.mark.parametrize("attention, forwards", [("sdpa", [(1, 117)]), ("eager", [(3, 30), (1, 12), (2, 9)])])
def test_packed_or_unpadded_batches_give_the_padded_batch_loss_and_grads(tiny_model, tiny_tokenizer, attention,
                                                                         forwards):
    # SDPA models run the batch as one packed sequence (packing.py); others as unpadded sub-batches.
    ids, mask, labels = _padded_batch(len(tiny_tokenizer))
    parts = list(unpadded_parts({"input_ids": ids, "attention_mask": mask}, labels))
    assert len(parts) == 3 and sum(p["input_ids"].numel() for p, _ in parts) == 30 * 3 + 12 + 9 * 2  # vs 6 x 30 padded
    tiny_model.set_attn_implementation(attention)
    model = _peft(tiny_model)
    fuse_lora_linears(model)
    ref_loss, ref_grads = None, None
    model.zero_grad()
    ref_loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # the model's own padded loss
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    add_answer_head(model.get_base_model())
    assert kernels.fuse_rms_norms(model) == 5  # the answer-only path with every kernel vs the stock padded loss
    shapes = []
    hook = model.get_base_model().model.register_forward_pre_hook(
        lambda mod, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    with mock.patch.object(attention_module, "packed_causal_attention",
                           wraps=attention_module.packed_causal_attention) as spy:
        out = model(input_ids=ids, attention_mask=mask, labels=labels, answer_only=True)
    hook.remove()
    assert shapes == forwards  # 117 real tokens of the 6 x 30 padded batch
    assert spy.call_count == (2 if attention == "sdpa" else 0)  # packed: training/speed/attention.py in both layers
    assert out.logits is None  # the answer-only path ran (the plain forward would ignore the flag)
    loss = out.loss
    loss.backward()
    assert torch.allclose(loss, ref_loss, atol=1e-5)
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.allclose(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4), name


def test_left_padded_or_packed_batches_are_not_split(tiny_tokenizer):
    ids, mask, labels = _padded_batch(len(tiny_tokenizer))
    left = mask.flip(1)
    assert len(list(unpadded_parts({"input_ids": ids, "attention_mask": left}, labels))) == 1
    packed = {"input_ids": ids[:1], "position_ids": torch.arange(30)[None]}
    assert list(unpadded_parts(packed, labels[:1]))[0][0] is packed


@pytest.fixture
def trainer(tiny_model, tiny_tokenizer, tmp_path):
    from training.runner import make_trainer

    rows = [chat(f"Question {i}?", "word " * (2 + (i * 7) % 40)) for i in range(48)]
    # fp32 on every CPU: under bf16 autocast (auto on a native-bf16 CPU) the fused LoRA kernel steps aside for
    # peft's own forward (fastlora.py); test_training_precision.py trains that path
    cfg = JobConfig(name="t", data=[{"path": "-"}], max_steps=2, batch_size=4, lora_r=4, lora_alpha=8,
                    lora_dropout=0.0, max_length=512, val_fraction=0, bf16="off")
    return make_trainer(cfg, _peft(tiny_model), tiny_tokenizer, rows, [], tmp_path, torch.device("cpu"), [])


def test_make_trainer_trains_random_batches_unpadded_with_fused_lora(trainer):
    from torch.utils.data import RandomSampler

    assert isinstance(trainer._get_train_sampler(), RandomSampler)  # the same batches as a plain Trainer
    patched = [m for m in trainer.model.modules() if "forward" in vars(m) and hasattr(m, "lora_A")]
    assert len(patched) == 14
    seen = []
    base = trainer.model.get_base_model().model
    hook = base.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    fns = [fastlora.LoraLinearFn, kernels.RMSNormFn, kernels.RotaryFn, kernels.SummedNLLFn]
    with contextlib.ExitStack() as stack:
        spies = [stack.enter_context(mock.patch.object(fn, "apply", wraps=fn.apply)) for fn in fns]
        trainer.train()
    hook.remove()
    # 2 steps: 14 LoRA linears, 5 norms, q and k rotated in 2 layers, one loss each
    assert [spy.call_count for spy in spies] == [28, 10, 8, 2] and trainer.state.global_step == 2
    assert len(seen) == 2 and all(shape[0] == 1 for shape in seen)  # each batch of 4 rows: one packed sequence


def test_pack_keeps_rows_apart():
    from training.speed.packing import pack

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = (ids != 0).long()
    labels = ids.masked_fill(mask == 0, IGNORE)
    kwargs, targets = pack(ids, mask, labels)
    assert kwargs["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and kwargs["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert kwargs["cu_seq_lens_q"].tolist() == [0, 3, 5]
    assert targets.tolist() == [6, 7, IGNORE, 9, IGNORE]  # no row predicts the next row's first token
    assert pack(ids, mask.flip(1), labels) is None  # left padding: not packed


RSS_AFTER_FREE = """
import sys, psutil, torch
from training.speed.memory import retain_freed_memory
retained = retain_freed_memory() if sys.argv[1] == "retain" else None
before = psutil.Process().memory_info().rss
x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
del x
print(retained, (psutil.Process().memory_info().rss - before) / 2**20)
"""


@pytest.mark.parametrize("mode", ["retain", "default"])
def test_freed_training_memory_stays_in_the_process(mode):
    """glibc's default unmaps a freed 64 MiB tensor at once (the next step faults its pages in again);
    after retain_freed_memory() it stays, ready for reuse."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE, mode], capture_output=True, text=True,
                         cwd=root, check=True).stdout.split()
    kept_mib = float(out[1])
    if mode == "retain":
        assert out[0] == "True" and kept_mib > 60
    else:
        assert kept_mib < 8
