"""Feature-based fine-tuning where it pays: a per-question router over the variants ("routed").

The frozen embedder's vector of a question is the feature; a small trained head (scikit-learn's multinomial
logistic regression) predicts
which variant answers that question best. Labels come from what the app already stores:
- every finished comparison run: per question, the variant with the best score on the run's primary metric
  (ties go to the cheaper variant, in the order of VARIANTS);
- every chat vote: the variant the user picked.

In chat the "routed" column answers with the variant the router ranks first among those that can run, and
says which. In a comparison the routed column is evaluated by K-fold cross-validation over the evaluation
questions: for each fold the router is trained on the other folds' per-question winners plus the stored runs
and votes, with every copy of the fold's own questions removed, so it never trains on the question it answers.
It re-uses the other variants' answers (no generation), and its cost is the chosen variants' plus one embedding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assistant.compare.result import QuestionRecord, RouterSummary, VariantCost
from assistant.compare.runs import RunStore
from foundation import atomic
from foundation.errors import ArenaError
from foundation.metrics import HIGHER_IS_BETTER
from foundation.variants import STRATEGIES
from foundation.votes import VoteStore

CANDIDATES = STRATEGIES  # what the router may pick, cheapest first
DEFAULT_FOLDS = 5
NO_ROUTER = "no router yet — run a comparison or vote in chat, then the routed column can learn from them"


@dataclass(frozen=True)
class Example:
    """One labelled question: the variant that answered it best."""

    question: str
    variant: str
    origin: str  # "run 3" / "vote 12" / "fold": where the label came from


def winner(scores: dict[str, float], higher: bool) -> str:
    """The best-scoring variant; ties go to the first in CANDIDATES (the cheaper), as max keeps the first maximum."""
    ranked = [v for v in CANDIDATES if v in scores and scores[v] is not None]
    return max(ranked, key=lambda v: float(scores[v]) if higher else -float(scores[v]))


def run_examples(per_question: list[QuestionRecord], metric: str, origin: str) -> list[Example]:
    """Per-question winners of one comparison result (the routed column itself is not a candidate)."""
    higher = HIGHER_IS_BETTER.get(metric, True)
    out = []
    for record in per_question:
        scores = {v: a.scores.get(metric) for v, a in record.answers.items() if v in CANDIDATES}
        scores = {v: s for v, s in scores.items() if s is not None}
        if len(scores) >= 2:
            out.append(Example(record.question, winner(scores, higher), origin))
    return out


def stored_examples(data_dir: Path) -> list[Example]:
    """Labels from every finished comparison run and every chat vote in the data folder."""
    out = []
    runs = Path(data_dir) / "runs.sqlite"
    for run in RunStore(runs).list(limit=1000) if runs.is_file() else []:
        out += run_examples(run.result.per_question, run.settings.get("metric") or run.result.metric,
                            f"run {run.id}")
    votes = Path(data_dir) / "votes.sqlite"
    for vote in VoteStore(votes).all() if votes.is_file() else []:
        if vote.winner in CANDIDATES:
            out.append(Example(vote.question, vote.winner, f"vote {vote.id}"))
    return out


def _key(question: str) -> str:
    return " ".join(question.lower().split())


class Router:
    """A softmax head on frozen question embeddings; a single-class training set predicts that class."""

    def __init__(self, classes: list[str], coef: np.ndarray, intercept: np.ndarray, n: int, backend: str):
        self.classes, self.coef, self.intercept, self.n, self.backend = classes, coef, intercept, n, backend

    @classmethod
    def fit(cls, features: np.ndarray, labels: list[str], seed: int = 0) -> Router:
        if not labels:
            raise ArenaError(NO_ROUTER)
        classes = [v for v in CANDIDATES if v in set(labels)]
        y = np.array([classes.index(v) for v in labels])
        if len(classes) == 1:
            return cls(classes, np.zeros((1, features.shape[1])), np.zeros(1), len(labels), "constant")
        from sklearn.linear_model import LogisticRegression

        head = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(features, y)
        return cls(classes, head.coef_.astype(np.float64), head.intercept_.astype(np.float64), len(labels), "sklearn")

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n questions, n classes) probabilities: sklearn's predict_proba, from the stored coefficients."""
        from scipy.special import softmax

        if len(self.classes) == 1:
            return np.ones((features.shape[0], 1))
        logits = features @ self.coef.T + self.intercept
        if logits.shape[1] == 1:  # sklearn's binary form: one logit for the second class
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        return softmax(logits, axis=1)

    def rank(self, features: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per question, (variant, probability) from most to least likely."""
        return [[(self.classes[k], float(row[k])) for k in np.argsort(-row, kind="stable")]
                for row in self.probabilities(features)]

    def to_json(self) -> dict:
        return {"classes": self.classes, "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "n": self.n, "backend": self.backend}

    @classmethod
    def from_json(cls, data: dict) -> Router:
        return cls(list(data["classes"]), np.array(data["coef"], dtype=np.float64),
                   np.array(data["intercept"], dtype=np.float64), int(data["n"]), data["backend"])


def train_router(examples: list[Example], encode, exclude: set[str] = frozenset(), seed: int = 0) -> Router:
    """Fit on `examples` minus any whose question (case/space-insensitive) is in `exclude`."""
    kept = [e for e in examples if _key(e.question) not in exclude]
    if not kept:
        raise ArenaError(NO_ROUTER)
    features = np.asarray(encode([e.question for e in kept]), dtype=np.float64)
    return Router.fit(features, [e.variant for e in kept], seed=seed)


def cached_router(data_dir: Path, encode, embedder_id: str) -> Router:
    """The router on everything stored, cached in cache/router.json by a hash of its training labels."""
    examples = stored_examples(data_dir)
    if not examples:
        raise ArenaError(NO_ROUTER)
    key = hashlib.sha256(json.dumps([embedder_id] + [[e.question, e.variant] for e in examples]).encode())
    path = Path(data_dir) / "cache" / "router.json"
    with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):  # no cache yet, or an unreadable one
        saved = json.loads(path.read_text())
        if saved.get("key") == key.hexdigest():
            return Router.from_json(saved["router"])
    router = train_router(examples, encode)
    atomic.write_json(path, {"key": key.hexdigest(), "router": router.to_json()})
    return router


def folds(questions: list[str], k: int, seed: int) -> list[int]:
    """Fold number per question; copies of one question share a fold (they must not train each other)."""
    keys = list(dict.fromkeys(_key(q) for q in questions))
    order = np.random.default_rng(seed).permutation(len(keys))
    fold_of = {keys[j]: rank % k for rank, j in enumerate(order)}
    return [fold_of[_key(q)] for q in questions]


def cross_validated_picks(per_question: list[QuestionRecord], metric: str, encode, stored: list[Example],
                          variants: list[str], k: int = DEFAULT_FOLDS, seed: int = 0) -> list[dict]:
    """Per evaluation question: the variant a router trained without that question picks, among `variants`.

    Returns [{"variant", "probability", "fold", "train_size"}]; the training set of a fold holds the other
    folds' winners and the stored runs' and votes' labels, minus every question of the fold."""
    questions = [r.question for r in per_question]
    encode = _memo(encode)  # each fold re-fits on mostly the same questions: embed each once
    own = run_examples(per_question, metric, "fold")
    fold_of = folds(questions, max(2, min(k, len(set(map(_key, questions))))), seed)
    features = np.asarray(encode(questions), dtype=np.float64)
    labelled = {_key(e.question): e for e in own}
    picks: list[dict] = [{}] * len(questions)
    for fold in sorted(set(fold_of)):
        held = {_key(q) for q, f in zip(questions, fold_of, strict=True) if f == fold}
        train = [labelled[_key(q)] for q, f in zip(questions, fold_of, strict=True)
                 if f != fold and _key(q) in labelled] + stored
        router = train_router(train, encode, exclude=held, seed=seed)
        for i in (i for i, f in enumerate(fold_of) if f == fold):
            ranked = [(v, p) for v, p in router.rank(features[i:i + 1])[0] if v in variants]
            choice = ranked[0] if ranked else (variants[0], 0.0)
            picks[i] = {"variant": choice[0], "probability": round(choice[1], 4), "fold": fold,
                        "train_size": router.n}
    return picks


def _memo(encode):
    seen: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in seen))
        if missing:
            seen.update(zip(missing, np.asarray(encode(missing), dtype=np.float64), strict=True))
        return np.stack([seen[t] for t in texts])
    return cached


def check_routed(variants) -> None:
    """The routed column picks among the other variants of the run: it needs at least two of them."""
    others = [v for v in variants if v in CANDIDATES]
    if "routed" in variants and len(others) < 2:
        raise ArenaError(f"variant 'routed' picks among the other variants of the run; add at least two of "
                         f"{', '.join(CANDIDATES)} (got {', '.join(others) or 'none'})")


def add_routed(per_question: list[QuestionRecord], table: dict, answers: list[dict], variants: list[str],
               metric: str, encode, data_dir: Path, seed: int = 0, k: int = DEFAULT_FOLDS) -> RouterSummary:
    """The routed column of a comparison, from the other variants' answers (cross-validated picks).

    Fills per_question[i].answers["routed"] (the picked answer, with routed_to), table["routed"] (the
    picked variant's scores) and answers[i]["routed"] (for the cost table); returns what the run reports."""
    started = time.time()
    stored = stored_examples(data_dir)
    picks = cross_validated_picks(per_question, metric, encode, stored, variants, k, seed)
    table["routed"] = {m: [table[p["variant"]][m][i] for i, p in enumerate(picks)] for m in table[variants[0]]}
    for i, (record, pick) in enumerate(zip(per_question, picks, strict=True)):
        chosen = pick["variant"]
        record.answers["routed"] = replace(record.answers[chosen], scores=dict(record.answers[chosen].scores),
                                           routed_to=chosen, router_probability=pick["probability"])
        answers[i]["routed"] = answers[i][chosen]
    counts = Counter(p["variant"] for p in picks)
    return RouterSummary({v: counts[v] for v in variants if counts[v]}, len({p["fold"] for p in picks}), len(stored),
                         round(time.time() - started, 3), "sklearn")


def routed_costs(costs: dict[str, VariantCost], picks: dict[str, int], router_seconds: float,
                 n_questions: int) -> VariantCost:
    """The routed column's cost: the picked variants' training and memory (any pick needs them loaded), its own
    measured prompt tokens and seconds per answer, plus the router's embedding and fitting time per question."""
    used = [v for v in picks if v in costs]
    own = costs["routed"]
    mem = {v: costs[v].memory_mb if v in used else 0.0 for v in CANDIDATES if v in costs}
    # the index and the adapter are each loaded once, whichever columns use them
    return replace(own, training_seconds=max((costs[v].training_seconds for v in used), default=0.0),
                   memory_mb=max(mem.get("rag+finetuned", 0.0), mem.get("rag", 0.0) + mem.get("finetuned", 0.0)),
                   seconds_per_answer=own.seconds_per_answer + router_seconds / max(1, n_questions))
