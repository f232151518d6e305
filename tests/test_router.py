"""Per-question router (assistant/compare/router.py): labels, both heads, cross-validation that never trains on
the question it answers, and the routed variant in chat (Arena) and in a comparison on the tiny model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from assistant.compare import router as R
from assistant.compare.recommend import Recommendation
from assistant.compare.result import ComparisonResult, QuestionRecord, VariantAnswer
from assistant.compare.runs import RunStore
from foundation.errors import ArenaError


def hashed(texts: list[str]) -> np.ndarray:
    """Features that carry no meaning: a seeded random unit vector per text (the head is under test here)."""
    out = []
    for t in texts:
        rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
        v = rng.normal(size=128)
        out.append(10 * v / np.linalg.norm(v))  # long vectors: weak regularisation, so it can memorise
    return np.array(out)


def record(question: str, scores: dict[str, float]) -> QuestionRecord:
    return QuestionRecord(question, "", "", {v: VariantAnswer(v, {"f1": s, "nll": 1 - s}) for v, s in scores.items()})


def test_winner_direction_and_ties():
    assert R.winner({"base": 0.5, "rag": 0.9}, higher=True) == "rag"
    assert R.winner({"base": 0.5, "rag": 0.9}, higher=False) == "base"
    assert R.winner({"rag": 0.7, "prompt": 0.7, "finetuned": 0.7}, higher=True) == "prompt"  # cheapest of a tie
    ex = R.run_examples([record("q?", {"base": 0.1, "rag": 0.8})], "nll", "run 1")
    assert ex == [R.Example("q?", "rag", "run 1")]  # rag has the lower nll (0.2 vs 0.9): lower is better


def test_head_learns_a_separable_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    labels = ["rag" if row[0] > 0 else "base" for row in x]
    router = R.Router.fit(x, labels)
    assert router.backend == "sklearn" and router.classes == ["base", "rag"]
    test = rng.normal(size=(40, 8))
    picked = [ranked[0][0] for ranked in router.rank(test)]
    assert np.mean([p == ("rag" if row[0] > 0 else "base") for p, row in zip(picked, test, strict=True)]) >= 0.9
    again = R.Router.from_json(json.loads(json.dumps(router.to_json())))
    assert np.allclose(again.probabilities(test), router.probabilities(test))
    assert R.Router.fit(x[:3], ["rag"] * 3).rank(test[:1])[0] == [("rag", 1.0)]


def test_cross_validation_never_trains_on_the_question_it_answers():
    # Random labels on meaningless features: only a router that saw a question's own label can get it right.
    rng = np.random.default_rng(1)
    questions = [f"question number {i}?" for i in range(40)]
    per_question = [record(q, {"base": 0.5, "rag": float(rng.integers(0, 2))}) for q in questions]
    truth = [r.variant for r in R.run_examples(per_question, "f1", "x")]
    # the same questions and labels in a stored run and in votes: the leak path that must be closed too
    stored = [R.Example(q.upper() + "  ", v, "run 9") for q, v in zip(questions, truth, strict=True)]
    picks = R.cross_validated_picks(per_question, "f1", hashed, stored, ["base", "rag"], k=5, seed=0)
    cv_accuracy = np.mean([p["variant"] == t for p, t in zip(picks, truth, strict=True)])
    leaked = R.train_router(R.run_examples(per_question, "f1", "all"), hashed)
    seen_accuracy = np.mean([r[0][0] == t for r, t in zip(leaked.rank(hashed(questions)), truth, strict=True)])
    assert seen_accuracy == 1.0  # it memorises what it sees...
    assert cv_accuracy < 0.75, cv_accuracy  # ...and cross-validation shows chance, not memory
    assert {p["fold"] for p in picks} == set(range(5)) and all(p["train_size"] == 64 for p in picks)


def test_routed_needs_two_other_variants():
    with pytest.raises(ArenaError, match="at least two"):
        R.check_routed(["base", "routed"])
    R.check_routed(["base", "rag", "routed"])


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.runtime import Runtime
    from foundation.models import LoadedModel
    from foundation.settings import Settings

    data_dir = tmp_path_factory.mktemp("router") / "arena_data"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    loaded = LoadedModel(model, tok, str(tiny_model_dir), str(tiny_model_dir), torch.float32,
                         torch.device("cpu"))
    return Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)), base=loaded)


SPORT = ["Who won the football match?", "How many players are on a football team?", "When is the tennis final?"]
COOKING = ["How long do I boil an egg?", "What temperature bakes bread?", "How do I make a tomato sauce?"]


def test_routed_column_in_chat_says_which_variant_answered(runtime):
    from foundation.generation import GenSettings
    from foundation.variants import VariantConfig

    arena, cfg, gen = runtime.arena, VariantConfig(system_prompt="Be brief.", dynamic_k=0), GenSettings(
        max_new_tokens=6, temperature=0.0)
    answers = arena.ask("Who scored the goal in the football match?", ["routed"], cfg, gen)
    assert answers["routed"].error == R.NO_ROUTER  # nothing stored yet: the column says what it needs
    per_question = [record(q, {"base": 1.0, "prompt": 0.0}) for q in SPORT] + \
                   [record(q, {"base": 0.0, "prompt": 1.0}) for q in COOKING]
    stored = ComparisonResult({}, {}, per_question, Recommendation(None, "", False, "f1"))
    RunStore(runtime.settings.data_dir / "runs.sqlite").add({"metric": "f1"}, stored)
    for question, expected in (("Who scored the goal in the football match?", "base"),
                               ("How long should I bake the bread?", "prompt")):
        answers = arena.ask(question, ["base", "prompt", "routed"], cfg, gen)
        routed = answers["routed"]
        assert routed.notice.startswith(f"router picked {expected}")
        assert routed.text == answers[expected].text and routed.messages == answers[expected].messages
    assert (runtime.settings.data_dir / "cache" / "router.json").is_file()


def test_routed_in_a_comparison_is_cross_validated_with_its_cost(runtime):
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.comparison import run_comparison

    items = [EvalItem(q, "It depends.", "faq.md") for q in SPORT + COOKING]
    compare_cfg = CompareConfig(variants=("base", "prompt", "routed"), max_new_tokens=6, eval_name="router")
    result = run_comparison(runtime, items, compare_cfg)
    assert set(result.variants) == {"base", "prompt", "routed"} and result.variants["routed"]["f1"].n == 6
    for q in result.per_question:
        routed = q.answers["routed"]
        assert routed.routed_to in {"base", "prompt"}
        assert routed.text == q.answers[routed.routed_to].text
    assert result.router.folds >= 2 and sum(result.router.picks.values()) == 6
    assert result.costs["routed"].seconds_per_answer > 0
    assert "routed" in result.paired
