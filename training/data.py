"""Training data: load JSONL/JSON/CSV in common formats, normalize, dedup, split, fingerprint, tokenize."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from foundation.errors import ArenaError
from foundation.records import read_records

ROLES = {"system", "user", "assistant"}
FORMATS = ("messages, prompt/completion, prompt/chosen/rejected, instruction/input/output, question/answer, text, "
           "question or prompt alone (rloo prompts)")


@dataclass
class Example:
    """One normalized training row: chat (messages ending with an assistant turn), raw text, or a preference."""

    kind: str  # "chat" | "text" | "pref" | "prompt" (a question alone: only rloo, which samples its answers)
    messages: list[dict] = field(default_factory=list)  # chat: full conversation; pref, prompt: the prompt turns
    text: str = ""
    chosen: str = ""
    rejected: str = ""
    origin: str = ""  # "file.jsonl line 12": where it came from, for error messages

    def key(self) -> str:
        """Canonical content (origin excluded) used for dedup and fingerprints."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "origin"}, sort_keys=True, ensure_ascii=False)

    def question(self) -> str:
        """The last user turn (what the adapter was asked), or "" for raw text."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""


def chat(question: str, answer: str, system: str = "", origin: str = "") -> Example:
    """A one-turn chat example."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Example("chat", msgs, origin=origin)


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ArenaError(f"{where}: field {key!r} must be a non-empty string, got {value!r:.60}")
    return value.strip()


def _messages(value, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ArenaError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ArenaError(f"{where}: message {i} must have role in {sorted(ROLES)} and a string content, "
                             f"got {m!r:.80}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def normalize(row, where: str) -> Example:
    """Map one raw row in any supported format to an Example; raise ArenaError naming the row."""
    if not isinstance(row, dict):
        raise ArenaError(f"{where}: expected an object, got {type(row).__name__}")
    if "messages" in row:
        msgs = _messages(row["messages"], where)
        if not any(m["role"] == "assistant" for m in msgs):
            raise ArenaError(f"{where}: 'messages' has no assistant turn to learn from")
        while msgs[-1]["role"] != "assistant":
            msgs.pop()  # trailing user turns have no answer: nothing to learn from them
        return Example("chat", msgs, origin=where)
    if "chosen" in row or "rejected" in row:
        return Example("pref", _prompt_turns(row, where), chosen=_text(row, "chosen", where),
                       rejected=_text(row, "rejected", where), origin=where)
    if "completion" in row:
        return Example("chat", _prompt_turns(row, where) + [
            {"role": "assistant", "content": _text(row, "completion", where)}], origin=where)
    if _prompt_alone(row, "prompt"):
        return Example("prompt", _prompt_turns(row, where), origin=where)
    if "instruction" in row:
        extra = row.get("input") or ""
        question = _text(row, "instruction", where) + (f"\n\n{extra.strip()}" if str(extra).strip() else "")
        return chat(question, _text(row, "output", where), origin=where)
    if "question" in row:
        question = _text(row, "question", where)
        context = row.get("context") or ""
        if str(context).strip():
            question = f"Context:\n{str(context).strip()}\n\nQuestion: {question}"
        if _prompt_alone(row, "question"):
            return Example("prompt", [{"role": "user", "content": question}], origin=where)
        return chat(question, _text(row, "answer", where), origin=where)
    if "text" in row:
        return Example("text", text=_text(row, "text", where), origin=where)
    raise ArenaError(f"{where}: unknown row format with keys {sorted(row)}; expected one of: {FORMATS}")


def _prompt_turns(row: dict, where: str) -> list[dict]:
    """A row's "prompt": a list of {role, content} turns, or a string (one user turn)."""
    prompt = row.get("prompt")
    return _messages(prompt, where) if isinstance(prompt, list) else [
        {"role": "user", "content": _text(row, "prompt", where)}]


def _prompt_alone(row: dict, key: str) -> bool:
    """A question or prompt with no answer field at all (an empty answer is still an error)."""
    return key in row and not {"answer", "completion", "output", "chosen", "rejected", "text"} & set(row)


def refuse_prompts(rows: list[Example], method: str) -> None:
    """Questions alone train only with rloo (it samples the answers); any other method names the first row."""
    alone = next((ex for ex in rows if ex.kind == "prompt"), None)
    if alone is not None and method != "rloo":
        raise ArenaError(f"{alone.origin}: a question without an answer; method {method!r} needs answers "
                         "(only method 'rloo' trains on questions alone)")


def load_file(path: Path) -> list[Example]:
    """Read a .jsonl, .json or .csv file into Examples; errors name the file and line."""
    return [normalize(row, where) for where, row in read_records(path, "training data file")]


def dedup(examples: list[Example]) -> list[Example]:
    """Drop exact duplicates (same normalized content), keeping the first occurrence."""
    first: dict[str, Example] = {}
    for ex in examples:
        first.setdefault(ex.key(), ex)
    return list(first.values())


def split(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded shuffle, then hold out val_fraction (at least one row when there are 2+ rows and fraction > 0)."""
    rows = list(examples)
    random.Random(seed).shuffle(rows)
    n_val = round(len(rows) * val_fraction)
    if val_fraction > 0 and len(rows) >= 2:
        n_val = min(max(n_val, 1), len(rows) - 1)
    return rows[n_val:], rows[:n_val]


def fingerprint(train: list[Example], val: list[Example]) -> str:
    """Short sha256 of the final train/validation content (order included)."""
    h = hashlib.sha256()
    for tag, rows in (("train", train), ("val", val)):
        h.update(tag.encode())
        for ex in rows:
            h.update(ex.key().encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()[:16]


def mix(sources: list[tuple[list[Example], float]], seed: int) -> list[Example]:
    """Multi-task mix: weight w keeps round(w * n) rows of a source (sampling with replacement beyond n)."""
    rng, out = random.Random(seed), []
    for rows, weight in sources:
        if weight < 0:
            raise ArenaError(f"data weight must be >= 0, got {weight}")
        want = round(len(rows) * weight)
        whole, rest = divmod(want, len(rows)) if rows else (0, 0)
        out += rows * whole + rng.sample(rows, rest)
    return out
