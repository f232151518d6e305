"""Packed causal attention (training/speed/attention.py) computes what SDPA computes, row by row, gradients included."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch.nn import functional as F

from training.speed import attention
from training.speed.attention import packed_causal_attention, supports
from training.speed.packing import packed_sdpa

HEADS, KV_HEADS, DIM = 6, 2, 8
LENGTHS = [5, 0, 9, 1, 7]  # an empty row and a one-token row too


def _qkv(dtype=torch.float32, lengths=LENGTHS):
    """Inputs laid out as transformers makes them: projections viewed as [1, tokens, heads, dim], transposed."""
    g = torch.Generator().manual_seed(0)
    tokens = sum(lengths)
    q = torch.randn(1, tokens, HEADS, DIM, generator=g, dtype=dtype).transpose(1, 2).requires_grad_()
    k = torch.randn(1, tokens, KV_HEADS, DIM, generator=g, dtype=dtype).transpose(1, 2).requires_grad_()
    v = torch.randn(1, tokens, KV_HEADS, DIM, generator=g, dtype=dtype).transpose(1, 2).requires_grad_()
    return q, k, v


def _sdpa_per_row(q, k, v, lengths, scaling):
    groups = HEADS // KV_HEADS
    rows = zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2), strict=True)
    outs = [F.scaled_dot_product_attention(a, b.repeat_interleave(groups, 1), c.repeat_interleave(groups, 1),
                                           is_causal=True, scale=scaling).transpose(1, 2)
            for a, b, c in rows if a.size(2)]
    return torch.cat(outs, 1)


def _output_and_grads(fn, lengths=LENGTHS):
    q, k, v = _qkv(lengths=lengths)
    out = fn(q, k, v, lengths, 0.3)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a gradient that differs per position
    (out * weights).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize("keep_max", [0, 6, 256])  # every row recomputes / mixed / every row keeps its probs
def test_packed_attention_matches_sdpa_row_by_row(keep_max):
    with mock.patch.object(attention, "KEEP_MAX", keep_max):
        ours = _output_and_grads(packed_causal_attention)
    ref = _output_and_grads(_sdpa_per_row)
    assert ours[0].shape == (1, sum(LENGTHS), HEADS, DIM)
    for name, a, b in zip(["out", "grad q", "grad k", "grad v"], ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_packed_attention_gradients_pass_gradcheck():
    q, k, v = _qkv(torch.float64, lengths=[3, 4])
    assert torch.autograd.gradcheck(lambda *x: packed_causal_attention(*x, [3, 4], 0.5), (q, k, v))


def test_rows_do_not_see_each_other():
    q, k, v = _qkv(lengths=[4, 5])
    out = packed_causal_attention(q, k, v, [4, 5], 0.3)
    v2 = v.detach().clone()
    v2[:, :, :4] += 10  # change only the first row's values
    out2 = packed_causal_attention(q, k, v2, [4, 5], 0.3)
    assert torch.equal(out[:, 4:], out2[:, 4:]) and not torch.allclose(out[:, :4], out2[:, :4])


def test_unsupported_inputs_are_refused():
    q, k, v = _qkv()
    assert supports(q, k, v, LENGTHS, 0.0)
    assert not supports(q, k, v, LENGTHS, 0.1)  # dropout
    assert not supports(q.bfloat16(), k.bfloat16(), v.bfloat16(), LENGTHS, 0.0)
    assert not supports(q, k, v.bfloat16(), LENGTHS, 0.0)  # autocast: rotated q/k in fp32, v in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not supports(q, k, v, LENGTHS, 0.0)
    assert not supports(q, k, v, [sum(LENGTHS) - 1], 0.0)  # lengths do not cover the tokens
    long_q, long_k, long_v = _qkv(lengths=[attention.LONGEST + 1])
    assert not supports(long_q, long_k, long_v, [attention.LONGEST + 1], 0.0)


class _Layer(torch.nn.Module):
    is_causal, num_key_value_groups, training = True, HEADS // KV_HEADS, True

    def __init__(self, sliding_window=None):
        super().__init__()
        self.sliding_window = sliding_window


@pytest.mark.parametrize("layer, kwargs, fast", [(_Layer(), {}, True), (_Layer(), {"dropout": 0.1}, False),
                                                 (_Layer(sliding_window=4), {}, False),
                                                 (_Layer(), {"is_causal": False}, False)])
def test_packed_sdpa_takes_the_fast_path_only_for_plain_causal_layers(layer, kwargs, fast):
    q, k, v = _qkv()
    bounds = torch.tensor([0, 5, 5, 14, 15, 22], dtype=torch.int32)
    with mock.patch.object(attention, "packed_causal_attention", wraps=packed_causal_attention) as spy:
        out, _ = packed_sdpa(layer, q, k, v, None, cu_seq_lens_q=bounds, scaling=0.3, **kwargs)
    assert spy.called == fast
    if fast:
        assert torch.allclose(out, _sdpa_per_row(q, k, v, LENGTHS, 0.3), atol=1e-5)
