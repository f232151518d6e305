"""A tiny Llama that loops: greedy decoding repeats "cat dog." for ever, whatever the prompt.

Attention and MLP outputs are zeroed, so the last hidden state is the current token's embedding; the LM head
row of each token of the cycle c-a-t-space-d-o-g-. is its predecessor's embedding (random embeddings are
nearly orthogonal, so a token's own row wins), and the row of "c" also holds the newline's embedding: the
reply that follows the chat template's "assistant\\n" starts the cycle. This is the crafted case for the stop
on repetition (no setting of the decoding makes this model stop by itself: it never emits EOS)."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import make_tiny_model, make_tiny_tokenizer

CYCLE = "cat dog."


def make_looping_model(tokenizer, cycle: str = CYCLE):
    """`cycle`: the text repeated for ever (one token per byte, each byte once), e.g. CYCLE + "\\n" for lines."""
    model = make_tiny_model(len(tokenizer))
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokenizer.tokenize(cycle)]
    assert len(ids) == len(set(ids)) == len(cycle), "each byte of the cycle must be its own token"
    newline = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("\n"))[0]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        head = torch.zeros_like(model.lm_head.weight)
        for prev, nxt in zip(ids, ids[1:] + ids[:1], strict=True):
            head[nxt] = emb[prev]
        head[ids[0]] += emb[newline]
        model.lm_head.weight.copy_(head)
    return model


def save_looping_model(folder: Path, cycle: str = CYCLE) -> Path:
    tok = make_tiny_tokenizer()
    make_looping_model(tok, cycle).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
