"""Decode attention over each row's real keys only, for left-padded side-by-side batches.

Five variants decode as one batch whose KV cache is left-padded to the longest prompt: two ~1,000-token RAG
rows beside three short ones. Plain SDPA then reads every padded slot of every row, and at one query token
per row, reading the cache is the whole cost (measured: a fifth of a five-row decode step, most of it zeros).
Here a one-token step over a left-padded boolean mask runs SDPA per row on the slice that row really has.
Anything else (prefill, one row, other masks) is transformers' own SDPA unchanged.
"""

from __future__ import annotations

import torch

NAME = "arena_sdpa"


def install(model) -> bool:
    """Switch an SDPA model to NAME (registered once); returns False when the model uses something else."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(NAME, row_sliced_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # same boolean masks as SDPA
    model.set_attn_implementation(NAME)
    return True


def row_sliced_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, with left-padded one-token steps split into unpadded rows."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    starts = left_pad_starts(query, attention_mask)
    if starts is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outs = [sdpa_attention_forward(module, query[i:i + 1], key[i:i + 1, :, s:], value[i:i + 1, :, s:], None,
                                   **kwargs)[0] for i, s in enumerate(starts)]
    return torch.cat(outs), None


def left_pad_starts(query: torch.Tensor, mask: torch.Tensor | None) -> list[int] | None:
    """First real key slot of each row when `mask` is a one-query, left-padding-only boolean mask, else None."""
    if mask is None or mask.dtype != torch.bool or query.shape[0] < 2 or query.shape[2] != 1 \
            or mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != 1:
        return None
    rows = mask[:, 0, 0, :]
    starts = rows.shape[-1] - rows.sum(-1)
    expected = torch.arange(rows.shape[-1], device=rows.device) >= starts[:, None]
    if not torch.equal(rows, expected) or not bool(starts.any()):
        return None  # holes in the mask, or no padding at all: one batched call is right
    return starts.tolist()
