"""The plain per-row torch decode (the reference engine's loop); its settings and rows are foundation.generation's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from assistant.inference.base import end_early, row_text
from foundation.generation import GenSettings, Row, RowOutput


# Grad mode is thread-local and Gradio resumes a streaming generator from different worker threads, so inference
# mode must hold around every step, not once around the loop (else: "Inference tensors cannot be saved for
# backward" as soon as a step runs on another thread): on a generator, torch's decorator enters it for each step.
@torch.inference_mode()
def decode_row(model, context, row: Row, gen: GenSettings, eos_ids: set[int], tokenizer) -> Iterator[RowOutput]:
    """One row decoded alone with a KV cache, yielding its output after every token.

    `context()` is entered around each forward (it activates the row's adapter). Rows are never padded or
    batched together, so a row's greedy tokens are the same whatever else is generated beside it.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = torch.tensor([row.input_ids], device=device)
    seen = None
    if gen.repetition_penalty != 1.0:
        seen = torch.zeros((1, model.config.vocab_size), dtype=torch.bool, device=device)
        seen[0, ids[0]] = True
    sampler = torch.Generator(device="cpu").manual_seed(gen.seed)
    start, out, cache = time.perf_counter(), RowOutput(), DynamicCache(config=model.config)
    with context():
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    for step in range(gen.max_new_tokens):
        nxt = pick_next(logits.float(), gen, seen, sampler)
        if record_token(out, int(nxt), tokenizer, eos_ids, time.perf_counter() - start) or \
                end_early(out, gen, tokenizer) or step == gen.max_new_tokens - 1:
            break  # after the last token, another forward would compute logits nobody reads
        yield out
        if seen is not None:
            seen[0, nxt] = True
        with context():
            logits = model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
    out.done = True
    yield out


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


def record_token(out: RowOutput, token: int, tokenizer, eos_ids: set[int], elapsed: float) -> bool:
    """Append one generated token to a row's output; True when it ends the row (EOS)."""
    if not out.tokens:
        out.ttft_s = elapsed
    out.seconds = elapsed
    if token in eos_ids:
        out.done = True
        return True
    out.tokens.append(token)
    out.text = row_text(tokenizer, out.tokens)
    return False


def reference_nll(model, prompt_ids: list[int], reference_ids: list[int]) -> float:
    """Mean per-token NLL of `reference_ids` after `prompt_ids` under `model` (teacher forcing, one forward)."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(reference_ids)], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    return float(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids):]))


def batch_reference_nll(model, rows: list[tuple[list[int], list[int]]]) -> list[float]:
    """`reference_nll` of several (prompt_ids, reference_ids) rows in one padded forward (equal within float
    error: tests/test_nll_batch.py).

    Rows are left-padded, so every reference ends at the last position: only the last (longest reference + 1)
    positions get vocabulary logits (`logits_to_keep`), instead of a batch x length x vocabulary tensor whose
    prompt part nobody reads (a RAG prompt is most of a row). The attention mask hides the padding; positions
    count from each row's first real token (as transformers' generate does for left padding). The loss is
    transformers' own: cross-entropy with -100 on every position that is not a reference token.
    """
    device = next(model.parameters()).device
    length = max(len(p) + len(r) for p, r in rows)
    keep = max(len(r) for _, r in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)  # the pad id is never seen (masked)
    mask = torch.zeros_like(ids)
    labels = torch.full((len(rows), keep), -100, dtype=torch.long)
    for i, (prompt, reference) in enumerate(rows):
        ids[i, length - len(prompt) - len(reference):] = torch.tensor(list(prompt) + list(reference))
        mask[i, length - len(prompt) - len(reference):] = 1
        labels[i, keep - len(reference):] = torch.tensor(list(reference))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       logits_to_keep=keep + 1).logits[:, :-1].float()
        labels = labels.to(device)
        # Flattened to (tokens, vocabulary) as transformers' causal-LM loss does: log-softmax over the last,
        # contiguous dimension (over a middle dimension, torch sums the vocabulary in another order: measured
        # 1e-4 nats off the one-row NLL on the bundled model).
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100, reduction="none").view(labels.shape)
        return (loss.sum(-1) / (labels != -100).sum(-1)).tolist()
