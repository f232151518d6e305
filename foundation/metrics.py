"""Per-answer quality metrics against a reference answer (pure functions, no model needed)."""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter

import numpy as np

# Which way is better for each metric the comparison reports (True: higher is better).
HIGHER_IS_BETTER = {
    "f1": True, "rougeL": True, "exact": True, "contains": True, "semantic": True,
    "nll": False, "ppl": False, "groundedness": True, "retrieval_hit": True,
    "ttft_s": False, "tokens_per_s": True, "judge": True, "loops": False,
}
METRIC_LABELS = {
    "f1": "token F1", "rougeL": "ROUGE-L", "exact": "exact match", "contains": "contains reference",
    "semantic": "semantic similarity", "nll": "reference NLL", "ppl": "reference perplexity",
    "groundedness": "groundedness", "retrieval_hit": "retrieval hit", "ttft_s": "time to first token (s)",
    "tokens_per_s": "tokens/s", "judge": "LLM judge", "loops": "answers that loop",
}
# Metrics a user may pick as the primary one for the recommendation.
PRIMARY_METRICS = ("f1", "rougeL", "exact", "contains", "semantic", "nll", "ppl", "judge")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
# Function words carry no content, so they do not count towards groundedness.
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this "
    "that these those i you he she we they them his her our your their my me us do does did not no so than "
    "then there here can could will would should may might must have has had what which who whom how why "
    "when where also just very about into over out up".split())


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (bag of words)."""
    pred, ref = tokens(answer), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@functools.cache  # built on first use: no work at import time
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure from the rouge-score package (stemmed, its own tokenizer)."""
    return float(_rouge_scorer().score(reference, answer)["rougeL"].fmeasure)


def exact_match(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def contains(answer: str, reference: str) -> float:
    """1.0 when the normalised reference appears as whole words inside the normalised answer."""
    ref = normalize(reference)
    return float(bool(ref) and f" {ref} " in f" {normalize(answer)} ")


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOPWORDS]


def groundedness(answer: str, chunks: list[str]) -> float | None:
    """Share of the answer's content words that occur in the retrieved chunks; None without chunks."""
    if not chunks:
        return None
    words = content_tokens(answer)
    if not words:
        return 0.0
    support = set(tokens(" ".join(chunks)))
    return sum(w in support for w in words) / len(words)


def retrieval_hit(reference: str, chunks: list[str], min_recall: float = 0.8) -> float | None:
    """1.0 when one chunk contains the reference (verbatim, or >= min_recall of its content words)."""
    if not chunks:
        return None
    ref_norm, ref_words = normalize(reference), set(content_tokens(reference))
    for chunk in chunks:
        chunk_norm = normalize(chunk)
        if ref_norm and f" {ref_norm} " in f" {chunk_norm} ":
            return 1.0
        if ref_words and len(ref_words & set(chunk_norm.split())) / len(ref_words) >= min_recall:
            return 1.0
    return 0.0


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise rows (embedders may or may not normalise themselves)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def semantic_similarities(embedder, answers: list[str], references: list[str]) -> list[float]:
    """Cosine between each answer and its reference, with any object that has ``encode(list[str])``."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    if not answers:
        return []
    vectors = unit_rows(embedder.encode(list(answers) + list(references)))
    a, r = vectors[: len(answers)], vectors[len(answers):]
    return [float(x) for x in np.sum(a * r, axis=1)]


LOOP_NGRAM = 4
LOOP_MIN_DISTINCT = 0.6
_WORDS = re.compile(r"\w+")


def distinct_ngram_share(text: str, n: int = LOOP_NGRAM) -> float | None:
    """Share of the answer's word n-grams (lower-cased words) that are distinct; None below n words."""
    words = _WORDS.findall(text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def loops(text: str) -> float:
    """1.0 when the answer degenerates into repetition: fewer than 60 % of its word 4-grams are distinct
    ("The answer is: The answer is: ..."); answers under 4 words never loop. Its mean over a variant's
    answers is the variant's loop share."""
    share = distinct_ngram_share(text)
    return float(share is not None and share < LOOP_MIN_DISTINCT)


def perplexity(nll: float | None) -> float | None:
    """exp(mean token NLL), capped so a wildly wrong adapter does not overflow to inf."""
    return None if nll is None else math.exp(min(nll, 50.0))


def answer_scores(answer: str, reference: str, chunks: list[str] | None = None) -> dict[str, float | None]:
    """The text-only metrics for one answer (semantic similarity and NLL are added by the runner)."""
    chunks = chunks or []
    return {
        "f1": token_f1(answer, reference),
        "rougeL": rouge_l(answer, reference),
        "exact": exact_match(answer, reference),
        "contains": contains(answer, reference),
        "groundedness": groundedness(answer, chunks),
        "retrieval_hit": retrieval_hit(reference, chunks),
        "loops": loops(answer),
    }
