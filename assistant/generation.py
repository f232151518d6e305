"""Single-model streaming generation, used by the plain chat until the side-by-side engine takes over."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch

from assistant.models import LoadedModel


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


def stream_text(loaded: LoadedModel, messages: list[dict], max_new_tokens: int = 256) -> Iterator[str]:
    """Yield the growing answer while the model generates in a background thread."""
    from transformers import TextIteratorStreamer

    ids = chat_input_ids(loaded, messages)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                  pad_token_id=loaded.tokenizer.pad_token_id)
    thread = threading.Thread(target=_generate_quietly, args=(loaded.model, kwargs), daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text
    thread.join()


def _generate_quietly(model, kwargs) -> None:
    with torch.inference_mode():
        model.generate(**kwargs)
