"""Turn normalized Examples into token ids and labels: answer tokens only for chat, all tokens for text."""

from __future__ import annotations

from foundation.errors import ArenaError
from training.data import Example

IGNORE = -100  # label value the loss skips


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_answer) pieces using the model's chat template.

    Each assistant turn is located by rendering the conversation up to it with the generation prompt
    (its start) and including it (its end); templates that are not prefix-stable are rejected.
    """
    pieces, done = [], ""
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:i], True)
        end = _render(tokenizer, messages[: i + 1], False)
        if not (start.startswith(done) and end.startswith(start)):
            raise ValueError("the chat template is not prefix-stable; cannot mask prompt tokens")
        pieces += [(start[len(done):], False), (end[len(start):], True)]
        done = end
    return [(t, a) for t, a in pieces if t]


def tokenize_chat(tokenizer, messages: list[dict], max_length: int) -> dict | None:
    """input_ids + labels with every non-assistant token masked; None when truncation leaves no answer."""
    ids, labels = [], []
    # Tokenizing piece by piece keeps the answer boundary exact: generation also starts a fresh token there.
    for text, is_answer in chat_segments(tokenizer, messages):
        piece = _ids(tokenizer, text)
        ids += piece
        labels += piece if is_answer else [IGNORE] * len(piece)
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def tokenize_text(tokenizer, text: str, max_length: int) -> list[dict]:
    """Raw text (continued pre-training): every token is a target; long texts become several windows."""
    ids = _ids(tokenizer, text)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return [{"input_ids": ids[i:i + max_length], "labels": ids[i:i + max_length]}
            for i in range(0, len(ids), max_length) if len(ids[i:i + max_length]) > 1]


def tokenize_examples(tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    """Tokenize chat and text Examples (preference rows are left to the DPO trainer)."""
    rows = []
    for ex in examples:
        if ex.kind == "chat":
            row = tokenize_chat(tokenizer, ex.messages, max_length)
            rows += [row] if row else []
        elif ex.kind == "text":
            rows += tokenize_text(tokenizer, ex.text, max_length)
    return rows


def pref_datasets(method: str, train: list[Example], val: list[Example]):
    """The preference Examples of train and val in trl's conversational prompt/chosen/rejected form, as
    datasets (val None when it has none); ArenaError when train has none."""
    from datasets import Dataset  # deferred: pulls pyarrow

    tr, va = ([{"prompt": ex.messages,
                "chosen": [{"role": "assistant", "content": ex.chosen}],
                "rejected": [{"role": "assistant", "content": ex.rejected}]}
               for ex in rows if ex.kind == "pref"] for rows in (train, val))
    if not tr:
        raise ArenaError(f"method {method!r} needs preference pairs (prompt/chosen/rejected rows or --from-votes)")
    return Dataset.from_list(tr), Dataset.from_list(va) if va else None
