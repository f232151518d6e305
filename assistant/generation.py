"""Plain single-model greedy generation (scripts and the bundled-model smoke test; the app uses Engine)."""

from __future__ import annotations

import torch

from foundation.models import LoadedModel


def chat_input_ids(loaded: LoadedModel, messages: list[dict]) -> torch.Tensor:
    """Token ids of a conversation rendered with the model's own chat template."""
    ids = loaded.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    return ids.to(loaded.device)


def generate_text(loaded: LoadedModel, messages: list[dict], max_new_tokens: int = 64) -> str:
    """Greedy answer to a conversation (deterministic; for tests and scripts)."""
    ids = chat_input_ids(loaded, messages)
    with torch.inference_mode():
        out = loaded.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=loaded.tokenizer.pad_token_id)
    return loaded.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
