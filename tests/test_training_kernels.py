"""Hand-written RMSNorm, rotary and cross-entropy gradients (training/speed/kernels.py) match transformers/PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from training.speed import kernels
from training.speed.kernels import (
    RMSNormFn,
    RotaryFn,
    SummedNLLFn,
    fuse_rms_norms,
    fused_rotary,
    llama_rotary_modules,
    summed_nll,
)


def _close(a, b, atol=1e-5):
    return torch.allclose(a, b, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("train_weight", [False, True])
def test_rms_norm_matches_llama_with_gradients(train_weight):
    torch.manual_seed(0)
    norm = LlamaRMSNorm(24, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    norm.weight.requires_grad_(train_weight)
    x = torch.randn(2, 7, 24) * 3
    upstream = torch.randn(2, 7, 24)
    results = []
    for fn in (norm, lambda t: RMSNormFn.apply(t, norm.weight, norm.variance_epsilon)):
        norm.weight.grad = None
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.backward(upstream)
        results.append((out, xi.grad, norm.weight.grad))
    (ref_out, ref_gx, ref_gw), (out, gx, gw) = results
    assert _close(out, ref_out) and _close(gx, ref_gx)
    assert (gw is None and ref_gw is None) if not train_weight else _close(gw, ref_gw, atol=1e-4)


def test_rms_norm_and_rotary_pass_gradcheck():
    torch.manual_seed(0)
    x, weight = torch.randn(3, 5, dtype=torch.float64, requires_grad=True), torch.rand(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t, w: RMSNormFn.apply(t, w, 1e-6), (x, weight.requires_grad_()))
    q = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    angles = torch.randn(1, 1, 4, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: RotaryFn.apply(t, angles.cos(), angles.sin()), (q,))


def test_rotary_matches_llama_with_gradients():
    torch.manual_seed(0)
    # transformers' layout: projections viewed as [batch, tokens, heads, dim] and transposed
    q = torch.randn(1, 9, 6, 8).transpose(1, 2)
    k = torch.randn(1, 9, 2, 8).transpose(1, 2)
    angles = torch.randn(1, 9, 8)
    cos, sin = angles.cos(), angles.sin()
    results = []
    for fn in (modeling_llama.apply_rotary_pos_emb, kernels.rotary):
        qi, ki = q.clone().requires_grad_(), k.clone().requires_grad_()
        a, b = fn(qi, ki, cos, sin)
        (a * torch.linspace(-1, 1, a.numel()).view_as(a)).sum().add((b * b.detach()).sum()).backward()
        results.append((a, b, qi.grad, ki.grad))
    for ours, ref in zip(results[1], results[0], strict=True):
        assert _close(ours, ref)


@pytest.mark.parametrize("upstream", [0.37, -1.5, 0.0])
def test_summed_nll_matches_cross_entropy(upstream):
    torch.manual_seed(0)
    logits, target = torch.randn(6, 50) * 4, torch.randint(0, 50, (6,))
    grads = []
    for fn in (lambda t: F.cross_entropy(t, target, reduction="sum"), lambda t: summed_nll(t, target)):
        leaf = logits.clone().requires_grad_()
        loss = fn(leaf * 1.0)  # through a non-leaf, as the LM head's output is
        (loss * upstream).backward()
        grads.append((loss, leaf.grad))
    assert _close(grads[1][0], grads[0][0]) and _close(grads[1][1], grads[0][1])


def test_summed_nll_refuses_a_second_backward_instead_of_returning_wrong_gradients():
    logits = torch.randn(4, 10, requires_grad=True)
    loss = SummedNLLFn.apply(logits * 1.0, torch.tensor([1, 2, 3, 4]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()  # the backward turned the saved logits into probabilities in place


def test_only_llama_style_modules_are_replaced_and_rotary_comes_back(tiny_model):
    class OnePlusWeightNorm(LlamaRMSNorm):  # Gemma's formula: (1 + weight) * x: must keep its own forward
        def forward(self, hidden_states):
            return (1 + self.weight) * hidden_states

    tiny_model.extra_norm = OnePlusWeightNorm(8)
    assert fuse_rms_norms(tiny_model) == 2 * 2 + 1  # two per layer and the final norm, not the Gemma-style one
    assert "forward" not in vars(tiny_model.extra_norm)
    original = modeling_llama.apply_rotary_pos_emb
    with fused_rotary(llama_rotary_modules(tiny_model)) as swapped:
        assert swapped == 1 and modeling_llama.apply_rotary_pos_emb is kernels.rotary
    assert modeling_llama.apply_rotary_pos_emb is original


def test_answer_only_loss_with_every_kernel_under_bf16_autocast(tiny_model):
    """--bf16: queries and keys arrive in bf16 (the packed attention falls back to SDPA), the residual stream
    stays fp32 (the fused norm runs), rotary mixes dtypes; the loss still matches the stock model's."""
    from training.speed.loss import add_answer_head

    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = tiny_model(input_ids=ids, attention_mask=mask, labels=ids).loss
        add_answer_head(tiny_model)
        fuse_rms_norms(tiny_model)
        tiny_model.train()
        loss = tiny_model(input_ids=ids, attention_mask=mask, labels=ids, answer_only=True).loss
    loss.backward()
    assert abs(float(loss) - float(reference)) < 0.02 * float(reference)
    assert tiny_model.model.layers[0].self_attn.q_proj.weight.grad is not None
