"""Causal attention over a packed batch with a hand-written backward, for training short rows on CPU.

A packed batch (packing.py) holds ~8 rows of ~50-200 tokens. Per row, PyTorch's CPU flash kernel ran at about
half the rate of a plain matrix product on this machine: its tiles are sized for long sequences, and its
backward recomputes the probabilities. Here each row is a few batched matrix products on the key/value head
groups (grouped-query attention without repeating keys and values), and short rows keep their probabilities
for the backward instead of recomputing them. Measured per layer (8 rows, 45-179 tokens, 9 heads, 3 key/value
heads): forward+backward 20 ms vs 27-30 ms for the flash kernel per row.

The math is softmax(q k^T * scaling + causal mask) v, exactly as SDPA computes it, in a different rounding
order (outputs and gradients agree to ~1e-6).
"""

from __future__ import annotations

import functools
import itertools

import torch

# Rows up to this length keep their probabilities (heads x L x L floats) for the backward; at 256 tokens that
# is at most half of what the MLP keeps for the same tokens. Longer rows recompute them in the backward.
KEEP_MAX = 256
# Longer rows would materialize a score matrix of heads x L x L floats (~150 MB at 2048 x 9 heads): callers
# use the flash kernel instead (`supports`).
LONGEST = 2048


def supports(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: list[int],
             dropout: float) -> bool:
    """Whether `packed_causal_attention` can run these inputs ([1, heads, tokens, dim] query, key, value).

    Not under autocast: its bmm would run in bf16 in the forward but not in the backward.
    """
    return (dropout == 0 and query.dtype in (torch.float32, torch.float64) and query.size(0) == 1
            and key.dtype == value.dtype == query.dtype and not torch.is_autocast_enabled(query.device.type)
            and query.size(1) % key.size(1) == 0 and query.size(2) == key.size(2) == sum(lengths)
            and max(lengths, default=0) <= LONGEST)


def packed_causal_attention(query, key, value, lengths: list[int], scaling: float) -> torch.Tensor:
    """Causal attention within each row of a packed sequence.

    query [1, heads, tokens, dim], key and value [1, kv_heads, tokens, dim], rows of `lengths` tokens end to end;
    returns [1, tokens, heads, dim] (the layout transformers' attention functions return).
    """
    return _PackedCausalAttention.apply(query, key, value, tuple(lengths), float(scaling))


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[heads, L, dim] -> [kv_heads, group * L, dim]: the query heads that share a key/value head, stacked."""
    return x.reshape(groups, -1, x.size(-1))


def _probabilities(qg: torch.Tensor, k: torch.Tensor, scaling: float) -> torch.Tensor:
    """softmax(q k^T * scaling + causal mask) for grouped queries qg [kv, group * L, dim] and k [kv, L, dim]."""
    length = k.size(1)
    make = _causal_mask if length <= KEEP_MAX else _causal_mask.__wrapped__  # cache only the small ones
    mask = make(length, qg.size(1) // length, qg.dtype, qg.device)
    scores = torch.baddbmm(mask, qg, k.transpose(1, 2), alpha=scaling)  # mask + scaling * q k^T in one GEMM
    return torch.softmax(scores, dim=-1)


@functools.lru_cache(maxsize=32)
def _causal_mask(length: int, groups: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[groups * L, L]: 0 on and below the diagonal, -inf above, once per query head of a group.

    Cached: every layer of a batch asks for the same rows' masks (30 layers x 8 rows), and building them
    (fill, triu, repeat) took ~10 % of the attention's time.
    """
    mask = torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu_(1)
    return mask.repeat(groups, 1)


class _PackedCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, lengths, scaling):
        heads, kv_heads, dim = query.size(1), key.size(1), query.size(3)
        out = query.new_empty(1, query.size(2), heads, dim)
        kept = []
        for start, length in _rows(lengths):
            rows = slice(start, start + length)
            probs = _probabilities(_grouped(query[0, :, rows], kv_heads), key[0, :, rows], scaling)
            o = torch.bmm(probs, value[0, :, rows])  # [kv, group * L, dim], query heads in order
            out[0, rows] = o.view(heads, length, dim).transpose(0, 1)
            kept.append(probs if length <= KEEP_MAX else None)
        ctx.save_for_backward(query, key, value, *kept)
        ctx.lengths, ctx.scaling = lengths, scaling
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, *kept = ctx.saved_tensors
        kv_heads, scaling = key.size(1), ctx.scaling
        # Same strides as the inputs (views of the q/k/v projections), so their own backward copies nothing.
        grad_q, grad_k, grad_v = torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)
        for (start, length), probs in zip(_rows(ctx.lengths), kept, strict=True):
            rows = slice(start, start + length)
            qg, k, v = _grouped(query[0, :, rows], kv_heads), key[0, :, rows], value[0, :, rows]
            if probs is None:
                probs = _probabilities(qg, k, scaling)
            go = _grouped(grad_out[0, rows].transpose(0, 1), kv_heads)
            grad_v[0, :, rows] = torch.bmm(probs.transpose(1, 2), go)  # sums over each group's query heads
            grad_scores = torch._softmax_backward_data(torch.bmm(go, v.transpose(1, 2)), probs, -1, probs.dtype)
            grad_q[0, :, rows] = torch.bmm(grad_scores, k).mul_(scaling).view(-1, length, k.size(2))
            grad_k[0, :, rows] = torch.bmm(grad_scores.transpose(1, 2), qg).mul_(scaling)
        return grad_q, grad_k, grad_v, None, None


def _rows(lengths):
    """(start, length) of every non-empty row."""
    starts = itertools.accumulate(lengths, initial=0)  # one more than the rows: zip stops at the last row
    return [(start, length) for start, length in zip(starts, lengths, strict=False) if length]
