"""Packed small-batch linears and row-sliced decode attention: same results as the plain paths."""

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from assistant import attention, packed_linear

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="torch built without MKL")


@torch.inference_mode()
def test_packed_linear_only_inside_decode_steps_and_close_to_plain():
    torch.manual_seed(0)
    layer = nn.Linear(64, 96)
    assert packed_linear.install(layer) == 1 and packed_linear.install(layer) == 0  # once per layer
    x = torch.randn(5, 1, 64)
    plain = nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(layer(x), plain)  # outside the decode loop: F.linear, bit for bit
    assert not hasattr(layer, "_arena_packed")
    with packed_linear.decode_steps():
        packed = layer(x)
        single = layer(x[:1])  # one row stays on F.linear
    assert layer._arena_packed[0][0] == 5
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(single, nn.functional.linear(x[:1], layer.weight, layer.bias))


def test_packed_linear_repacks_after_weight_change_and_leaves_autograd_alone():
    torch.manual_seed(0)
    layer = nn.Linear(32, 48)
    packed_linear.install(layer)
    x = torch.randn(4, 32)
    with packed_linear.decode_steps():
        y = layer(x)  # grad enabled: plain path, differentiable
        assert y.requires_grad and not hasattr(layer, "_arena_packed")
        with torch.inference_mode():
            layer(x)
            with torch.no_grad():
                layer.weight.mul_(2)
            doubled = layer(x)
    torch.testing.assert_close(doubled, nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def _left_padded_mask(lengths: list[int], width: int) -> torch.Tensor:
    starts = torch.tensor([width - n for n in lengths])
    return (torch.arange(width) >= starts[:, None])[:, None, None, :]


def test_left_pad_starts_only_for_one_token_left_padded_batches():
    q = torch.zeros(3, 4, 1, 8)
    assert attention.left_pad_starts(q, _left_padded_mask([5, 2, 7], 7)) == [2, 5, 0]
    assert attention.left_pad_starts(q, _left_padded_mask([7, 7, 7], 7)) is None  # nothing to skip
    holes = _left_padded_mask([5, 2, 7], 7).clone()
    holes[2, 0, 0, 3] = False
    assert attention.left_pad_starts(q, holes) is None
    assert attention.left_pad_starts(torch.zeros(3, 4, 2, 8), _left_padded_mask([5, 2, 7], 7)) is None
    assert attention.left_pad_starts(q, None) is None


@torch.inference_mode()
def test_row_sliced_attention_matches_sdpa_on_padded_batch():
    torch.manual_seed(0)
    module = nn.Module()
    module.num_key_value_groups, module.is_causal = 2, True
    q, k, v = torch.randn(3, 4, 1, 8), torch.randn(3, 2, 9, 8), torch.randn(3, 2, 9, 8)
    mask = _left_padded_mask([9, 3, 6], 9)
    ours, _ = attention.row_sliced_sdpa(module, q, k, v, mask, scaling=8 ** -0.5)
    reference, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=8 ** -0.5)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_install_switches_only_sdpa_models(tiny_model):
    assert tiny_model.config._attn_implementation == "sdpa"
    assert attention.install(tiny_model) and tiny_model.config._attn_implementation == attention.NAME
    assert not attention.install(tiny_model)  # already switched: nothing to do
