"""The tiny Llama with its LM head scaled x20, for tests where a LoRA must move probability a lot.

The random head's logits are nearly uniform and stay so: the final RMSNorm fixes the hidden state's size and
trl refuses a LoRA on lm_head, so a LoRA on the tiny model can barely change which token comes next. Scaled,
a LoRA that turns the hidden state can (what a trained model's head allows)."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import make_tiny_model, make_tiny_tokenizer


def save_peaked_model(folder: Path) -> Path:
    tok = make_tiny_tokenizer()
    model = make_tiny_model(len(tok))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
