"""Batched greedy/sampled decoding over per-row KV caches, and the settings and rows it works on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from assistant import packed_linear
from assistant.errors import ArenaError


@dataclass
class GenSettings:
    """Generation settings shared by all variants so the comparison is fair."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.0

    def check(self, context_length: int) -> None:
        """Raise ArenaError naming the first absurd value."""
        if not 1 <= self.max_new_tokens <= context_length // 2:
            raise ArenaError(f"max new tokens must be 1-{context_length // 2} (half the model's context "
                             f"of {context_length}), got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 5:
            raise ArenaError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ArenaError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 0.5 <= self.repetition_penalty <= 3:
            raise ArenaError(f"repetition penalty must be between 0.5 and 3, got {self.repetition_penalty}")


@dataclass
class Row:
    """One sequence to continue: prompt token ids and the adapter to use (None = base weights)."""

    input_ids: list[int]
    adapter: str | None = None


@dataclass
class RowOutput:
    """The growing output of one row."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    ttft_s: float = 0.0
    seconds: float = 0.0
    done: bool = False

    @property
    def tokens_per_s(self) -> float:
        decode = self.seconds - self.ttft_s
        return (len(self.tokens) - 1) / decode if len(self.tokens) > 1 and decode > 0 else 0.0



def decode(model, tokenizer, rows: list[Row], gen: GenSettings, eos_ids: set[int], route) -> Iterator[
        list[RowOutput]]:
    """Batched decode with a KV cache, yielding all rows' outputs after every token.

    `route(row_indices)` returns the context that routes those rows to their adapters (or is None).
    """
    steps = _decode_loop(model, tokenizer, rows, gen, eos_ids, route or (lambda idx: nullcontext()))
    while True:
        # Grad mode is thread-local and Gradio resumes a streaming generator from different worker threads,
        # so inference mode is entered around every step, not once around the loop (else: "Inference tensors
        # cannot be saved for backward" as soon as a step runs on another thread).
        with torch.inference_mode():
            outs = next(steps, None)
        if outs is None:
            return
        yield outs


def _decode_loop(model, tokenizer, rows, gen, eos_ids, route):
    device = next(model.parameters()).device
    ids, mask = _left_pad(rows, tokenizer.pad_token_id, device)
    seen = _seen_mask(ids, mask, model.config.vocab_size) if gen.repetition_penalty != 1.0 else None
    sampler = torch.Generator(device="cpu").manual_seed(gen.seed)
    start, outs = time.perf_counter(), [RowOutput() for _ in rows]
    cache, logits = prefill(model, rows, route, device, gen.max_new_tokens + 1)
    positions = mask.sum(-1, keepdim=True)
    everyone = list(range(len(rows)))
    for step in range(gen.max_new_tokens):
        nxt = pick_next(logits.float(), gen, seen, sampler)
        if _record(outs, nxt.tolist(), tokenizer, eos_ids, time.perf_counter() - start):
            break
        yield outs
        if step == gen.max_new_tokens - 1:
            break  # the last token is chosen: another forward would compute logits nobody reads
        if seen is not None:
            seen[torch.arange(len(rows)), nxt] = True
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        with route(everyone), packed_linear.decode_steps():
            logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                           past_key_values=cache, use_cache=True).logits[:, -1]
        positions = positions + 1
    yield outs


def prefill(model, rows: list[Row], route, device, room: int):
    """Each prompt alone (no compute wasted on padding), then one left-padded, growing KV cache for the batch
    with `room` free slots per row for the tokens to come (see kv_cache.py)."""
    from transformers import DynamicCache

    from assistant.kv_cache import merge_caches

    caches, last = [], []
    for i, row in enumerate(rows):
        cache = DynamicCache(config=model.config)
        with route([i]):
            out = model(input_ids=torch.tensor([row.input_ids], device=device), past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
        caches.append(cache)
        last.append(out.logits[:, -1])
    return merge_caches(caches, model.config, room), torch.cat(last)


def _left_pad(rows: list[Row], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row.input_ids):] = torch.tensor(row.input_ids)
        mask[i, width - len(row.input_ids):] = 1
    return ids.to(device), mask.to(device)


def _seen_mask(ids: torch.Tensor, mask: torch.Tensor, vocab: int) -> torch.Tensor:
    seen = torch.zeros((ids.shape[0], vocab), dtype=torch.bool, device=ids.device)
    seen.scatter_(1, ids * mask, mask.bool())  # padded slots scatter False, so pads are not "seen"
    return seen


def pick_next(logits: torch.Tensor, gen: GenSettings, seen: torch.Tensor | None,
              sampler: torch.Generator) -> torch.Tensor:
    """Next token per row: repetition penalty (as in transformers), then greedy or temperature/top-p."""
    if seen is not None:
        penalized = torch.where(logits > 0, logits / gen.repetition_penalty, logits * gen.repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if gen.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / gen.temperature, dim=-1)
    if gen.top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > gen.top_p  # keep the smallest prefix reaching top_p
        probs = probs.scatter(1, order, sorted_p.masked_fill(drop, 0))
    return torch.multinomial(probs.cpu(), 1, generator=sampler).squeeze(1).to(logits.device)


def _record(outs: list[RowOutput], tokens: list[int], tokenizer, eos_ids: set[int], elapsed: float) -> bool:
    """Append each unfinished row's token; return True once every row is finished."""
    for out, tok in zip(outs, tokens, strict=True):
        if out.done:
            continue
        if not out.tokens:
            out.ttft_s = elapsed
        if tok in eos_ids:
            out.done, out.seconds = True, elapsed
            continue
        out.tokens.append(tok)
        out.seconds = elapsed
        # A trailing replacement char is an incomplete multi-byte character; show it once complete.
        out.text = tokenizer.decode(out.tokens, skip_special_tokens=True).rstrip("\ufffd")
    return all(out.done for out in outs)
