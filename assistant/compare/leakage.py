"""Leakage guard: evaluation questions seen in an adapter's training data, and section-based splitting."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from assistant.compare.metrics import normalize, unit_rows

NEAR_DUPLICATE_COSINE = 0.85  # MiniLM: paraphrases of one question ~0.9, related but distinct ~0.5


@dataclass
class Overlap:
    """One evaluation question that also appears (exactly or nearly) in training data."""

    eval_index: int
    question: str
    train_question: str
    kind: str  # "exact" or "near-duplicate"
    similarity: float


def find_overlaps(eval_questions: list[str], train_questions: list[str], embedder=None,
                  threshold: float = NEAR_DUPLICATE_COSINE) -> list[Overlap]:
    """Exact matches after normalisation, then near-duplicates by embedding cosine (when an embedder is given)."""
    train_norm = {normalize(q): q for q in train_questions if q.strip()}
    found, rest = [], []
    for i, q in enumerate(eval_questions):
        if normalize(q) in train_norm:
            found.append(Overlap(i, q, train_norm[normalize(q)], "exact", 1.0))
        else:
            rest.append(i)
    if embedder is None or not rest or not train_norm:
        return found
    train_list = list(train_norm.values())
    vectors = unit_rows(embedder.encode([eval_questions[i] for i in rest] + train_list))
    sims = vectors[: len(rest)] @ vectors[len(rest):].T
    for row, i in enumerate(rest):
        j = int(np.argmax(sims[row]))
        if sims[row, j] >= threshold:
            found.append(Overlap(i, eval_questions[i], train_list[j], "near-duplicate", float(sims[row, j])))
    return sorted(found, key=lambda o: o.eval_index)


def overlap_warnings(adapter: str, overlaps: list[Overlap], total: int) -> list[str]:
    """Plain warnings for the report: how many evaluation questions the adapter was trained on."""
    if not overlaps:
        return []
    lines = [f"adapter {adapter!r} was trained on {len(overlaps)} of {total} evaluation questions; "
             "its scores on them measure memory, not generalisation"]
    for o in overlaps[:10]:
        detail = "exact" if o.kind == "exact" else f"near-duplicate, cosine {o.similarity:.2f}"
        lines.append(f"  eval #{o.eval_index + 1} {o.question!r} ~ training {o.train_question!r} ({detail})")
    if len(overlaps) > 10:
        lines.append(f"  … and {len(overlaps) - 10} more")
    return lines


def section_key(pair: dict) -> tuple[str, str]:
    return (str(pair.get("source", "")), str(pair.get("section", "")))


def split_by_section(pairs: list[dict], eval_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Split document-drawn pairs into (train, eval) so that no source section feeds both sides."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for pair in pairs:
        groups.setdefault(section_key(pair), []).append(pair)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(eval_fraction * len(pairs)))
    eval_keys: set = set()
    taken = 0
    for key in keys:
        # Keep at least one section for training whenever there is more than one.
        if taken >= target or len(eval_keys) == len(keys) - 1:
            break
        eval_keys.add(key)
        taken += len(groups[key])
    train = [p for p in pairs if section_key(p) not in eval_keys]
    evals = [p for p in pairs if section_key(p) in eval_keys]
    return train, evals
