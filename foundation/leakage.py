"""Leakage guard: evaluation questions seen in an adapter's training data, and section-based splitting.

A training question is a near-duplicate of an evaluation question when ALL hold:
- their embedding cosine is at least ``NEAR_DUPLICATE_COSINE`` (same meaning, as far as the embedder sees),
- they name the same numbers ("the timer for program 3" / "for program 7": cosine ~0.97, two questions), and
- their ``order_agreement`` is at least ``NEAR_DUPLICATE_ORDER``: no two words they share swap roles around
  the same connecting words. MiniLM mean-pools its token vectors and is nearly blind to word order: "How do I
  convert a string to a number?" and "How do I convert a number to a string?" score cosine 0.9955 (0.9914
  with the int8 ONNX export), more than the paraphrase "How do I reset my password?" / "What's the way to
  reset my password?" (0.966). An order-blind (bag-of-words) embedder gives exactly 1.0.
One detector (``find_overlaps``) serves both the comparison's leakage warning and `arena decide`'s dropping of
training pairs that copy evaluation questions.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from foundation.metrics import normalize, tokens, unit_rows

NEAR_DUPLICATE_COSINE = 0.85  # MiniLM: paraphrases of one question ~0.9, related but distinct ~0.5
# Measured by benchmarks/leakage.py with MiniLM: 21 paraphrase pairs (the espresso FAQ's titles against its user
# questions, and hand-written ones) all have agreement 1.0; 6 role swaps have 0.50-0.78 at cosine 0.991-0.996,
# above every paraphrase but one, so the cosine cannot reject them. One swapped pair reverses a question however
# long it is, so nothing below 1.0 passes. A plain word-order ratio (difflib.SequenceMatcher over the words)
# cannot separate them: 0.71 for the string/number swap against 0.46 for the password paraphrase.
NEAR_DUPLICATE_ORDER = 1.0
# A swap around these keeps the meaning ("cash and card" = "card and cash").
SYMMETRIC_CONNECTORS = frozenset({"and", "or", "&"})
MAX_PHRASE = 3  # words between two swapped words: a connector plus the rest of a short noun phrase


@dataclass(frozen=True)
class Overlap:
    """One evaluation question that also appears (exactly or nearly) in training data.

    ``cosine`` and ``order`` are the two figures the near-duplicate test rests on (None for an exact copy's
    cosine when no embedder was used)."""

    eval_index: int
    question: str
    train_question: str
    kind: str  # "exact" or "near-duplicate"
    cosine: float | None
    order: float

    def detail(self) -> str:
        if self.kind == "exact":
            return "exact copy after normalisation"
        return f"near-duplicate: embedding cosine {self.cosine:.2f}, word-order agreement {self.order:.2f}"


def _swap_around(between_a: list[str], between_b: list[str]) -> bool:
    """Two words in opposite orders swap roles when a connecting word (not "and"/"or") stands between them in
    both questions, within a short phrase: "string TO number" / "number TO string", and whole phrases too,
    "a Flask request TO a JSON response" / "a JSON response TO a Flask request" (between: "response to flask")."""
    if not between_a or not between_b or len(between_a) > MAX_PHRASE or len(between_b) > MAX_PHRASE:
        return False
    return bool((set(between_a) & set(between_b)) - SYMMETRIC_CONNECTORS)


def order_agreement(a: str, b: str) -> float:
    """Share of the words both questions contain that keep their role, in [0, 1].

    Two shared words swap roles when they come in opposite orders around the same (non-empty) connecting words:
    "string TO number" / "number TO string", "guest INVITE member" / "member INVITE guest". Reordering that
    changes the connecting words keeps the roles ("files from my laptop to the server" / "files to the server
    from my laptop", "battery warranty" / "warranty for the battery"), and so do adjacent words ("password
    reset" / "reset password") and symmetric connectors ("and", "or")."""
    ta, tb = tokens(a), tokens(b)
    pa, pb = {w: ta.index(w) for w in ta}, {w: tb.index(w) for w in tb}  # each word's first position
    shared = [w for w in pa if w in pb]
    swapped: set[str] = set()
    for x, y in combinations(shared, 2):
        if (pa[x] < pa[y]) == (pb[x] < pb[y]):
            continue
        between_a = ta[min(pa[x], pa[y]) + 1:max(pa[x], pa[y])]
        between_b = tb[min(pb[x], pb[y]) + 1:max(pb[x], pb[y])]
        if _swap_around(between_a, between_b):
            swapped |= {x, y}
    return 1.0 - len(swapped) / len(shared) if shared else 1.0


def same_numbers(a: str, b: str) -> bool:
    """Both questions name the same numbers: "program 3" and "program 7" (cosine ~0.97) ask different things."""
    return {t for t in tokens(a) if any(c.isdigit() for c in t)} == {t for t in tokens(b) if any(c.isdigit() for c in t)}


def passes_text_checks(a: str, b: str) -> float | None:
    """The order agreement of two questions when their words allow a near-duplicate (same numbers, order
    agreement at least NEAR_DUPLICATE_ORDER), else None."""
    if not same_numbers(a, b):
        return None
    order = order_agreement(a, b)
    return order if order >= NEAR_DUPLICATE_ORDER else None


def is_near_duplicate(cosine: float, a: str, b: str) -> bool:
    """The near-duplicate rule for two different questions whose embeddings have this cosine: close in meaning,
    the same numbers, and no shared words swapping roles. Used for leakage and the question generator."""
    return cosine >= NEAR_DUPLICATE_COSINE and passes_text_checks(a, b) is not None


def find_overlaps(eval_questions: list[str], train_questions: list[str], embedder=None) -> list[Overlap]:
    """Exact matches after normalisation, then near-duplicates (when an embedder is given): the most similar
    training question by cosine among those that also pass the word-order test."""
    train_norm = {normalize(q): q for q in train_questions if q.strip()}
    found, rest = [], []
    for i, q in enumerate(eval_questions):
        if normalize(q) in train_norm:
            found.append(Overlap(i, q, train_norm[normalize(q)], "exact", None, 1.0))
        else:
            rest.append(i)
    if embedder is None or not rest or not train_norm:
        return found
    train_list = list(train_norm.values())
    vectors = unit_rows(embedder.encode([eval_questions[i] for i in rest] + train_list))
    sims = vectors[: len(rest)] @ vectors[len(rest):].T
    for row, i in enumerate(rest):
        for j in np.argsort(-sims[row]):
            if sims[row, j] < NEAR_DUPLICATE_COSINE:
                break
            order = passes_text_checks(eval_questions[i], train_list[j])
            if order is not None:
                found.append(Overlap(i, eval_questions[i], train_list[j], "near-duplicate",
                                     float(sims[row, j]), order))
                break
    return sorted(found, key=lambda o: o.eval_index)


def overlap_warnings(adapter: str, overlaps: list[Overlap], total: int) -> list[str]:
    """Plain warnings for the report: how many evaluation questions the adapter was trained on, and for each
    (up to 10) both questions and the figures that made them a match."""
    if not overlaps:
        return []
    lines = [f"adapter {adapter!r} was trained on {len(overlaps)} of {total} evaluation questions; "
             "its scores on them measure memory, not generalisation"]
    for o in overlaps[:10]:
        lines.append(f"  eval #{o.eval_index + 1} {o.question!r} ~ training {o.train_question!r} ({o.detail()})")
    if len(overlaps) > 10:
        lines.append(f"  … and {len(overlaps) - 10} more")
    return lines


def section_key(pair: dict) -> tuple[str, str]:
    return (str(pair.get("source", "")), str(pair.get("section", "")))


def split_by_section(pairs: list[dict], eval_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Split document-drawn pairs into (train, eval) so that no source section feeds both sides."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    sizes = Counter(section_key(pair) for pair in pairs)  # pairs per section
    keys = sorted(sizes)
    random.Random(seed).shuffle(keys)
    target = max(1, round(eval_fraction * len(pairs)))
    eval_keys: set = set()
    taken = 0
    for key in keys:
        # Keep at least one section for training whenever there is more than one.
        if taken >= target or len(eval_keys) == len(keys) - 1:
            break
        eval_keys.add(key)
        taken += sizes[key]
    train = [p for p in pairs if section_key(p) not in eval_keys]
    evals = [p for p in pairs if section_key(p) in eval_keys]
    return train, evals
