"""Did the adapter learn its facts? A sample of its own training pairs, to score next to the held-out questions.

The rows come from the training job folder (<data_dir>/jobs/<job_id>/train.jsonl, or a sweep trial's), the
exact rows the adapter was trained on. A high score there and a low one held out means the adapter memorised
answers that do not carry over; a low score on both means it never learned them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from assistant.compare.evalset import EvalItem
from foundation.registry import MARKER

SAMPLE = 16  # answers cost generation time; 16 gives the score to about +-0.1 on F1, enough for the sentence


def _job_folder(data_dir: Path, adapter_path: Path) -> Path | None:
    try:
        job_id = json.loads((Path(adapter_path) / MARKER).read_text()).get("job_id")
    except (OSError, json.JSONDecodeError):
        return None
    if not job_id:
        return None
    folder = Path(data_dir) / "jobs" / Path(str(job_id)).name  # .name: a marker cannot point outside jobs/
    return folder if folder.is_dir() else None


def _pairs(path: Path) -> list[tuple[str, str, bool]]:
    """(question, answer, has_system_turn) of the one-turn chat rows of a saved train.jsonl."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        msgs = [m for m in row.get("messages") or [] if isinstance(m, dict)]
        users = [m.get("content", "") for m in msgs if m.get("role") == "user"]
        if row.get("kind") == "chat" and users and msgs[-1].get("role") == "assistant":
            out.append((users[-1], msgs[-1].get("content", ""), any(m.get("role") == "system" for m in msgs)))
    return [p for p in out if p[0].strip() and p[1].strip()]


def training_sample(data_dir: Path, adapter_path: Path, k: int = SAMPLE, seed: int = 0) -> list[EvalItem]:
    """Up to ``k`` of the adapter's training pairs (seeded), or [] when its job folder is not available.

    Plain question/answer rows are preferred: rows with a system turn carry passages or instructions that the
    finetuned variant is not served with."""
    folder = _job_folder(data_dir, adapter_path)
    if folder is None or k < 1:
        return []
    pairs: dict[str, tuple[str, bool]] = {}
    for path in sorted(folder.rglob("train.jsonl")):
        for question, answer, system in _pairs(path):
            pairs.setdefault(question, (answer, system))
    plain = [q for q, (_, system) in pairs.items() if not system]
    pool = plain or list(pairs)
    chosen = random.Random(seed).sample(pool, min(k, len(pool)))
    return [EvalItem(q, pairs[q][0], source="training data") for q in chosen]
