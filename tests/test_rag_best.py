"""RAG and prompting at their best: answer length from the references, the RAG and naive prompts, few-shot."""

from __future__ import annotations

import pytest

from foundation.errors import ArenaError
from foundation.variants import (
    DEFAULT_DYNAMIC_K,
    MAX_NEW_TOKENS,
    MIN_NEW_TOKENS,
    VariantConfig,
    max_new_tokens_for,
    naive_rag_messages,
    rag_messages,
)
from retrieval.store import Hit


def words(text: str) -> int:
    return len(text.split())


def test_max_new_tokens_is_one_and_a_half_times_the_90th_percentile_clamped():
    refs = [" ".join(["w"] * n) for n in range(10, 110, 10)]  # 10..100 words: p90 = 91
    assert max_new_tokens_for(refs, words) == 137  # ceil(1.5 * 91)
    assert max_new_tokens_for(["two words"] * 5, words) == MIN_NEW_TOKENS
    assert max_new_tokens_for([" ".join(["w"] * 400)], words) == MAX_NEW_TOKENS
    assert max_new_tokens_for(["", "  ", "one two three four five six seven eight nine ten eleven"], words) == 17
    with pytest.raises(ArenaError, match="no non-empty reference"):
        max_new_tokens_for(["", " "], words)


def test_comparison_without_max_new_tokens_sizes_answers_from_references(tiny_loaded, data_dir):
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.comparison import run_comparison
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded)
    items = [EvalItem(f"Question {i}?", "x" * (8 * i)) for i in range(1, 6)]  # byte tokens: 8..40
    result = run_comparison(runtime, items, CompareConfig(variants=("base",), forgetting=False), store=False)
    want = max_new_tokens_for([it.answer for it in items], runtime.engine.count_tokens)
    assert want == 56 and result.settings["generation"]["max_new_tokens"] == want  # ceil(1.5 * 36.8)
    fixed = run_comparison(runtime, items[:2], CompareConfig(variants=("base",), forgetting=False,
                                                             max_new_tokens=5), store=False)
    assert fixed.settings["generation"]["max_new_tokens"] == 5


def test_rag_prompt_asks_for_a_short_cited_answer_from_the_passages():
    hits = [Hit("Use 25 Nm.", "manual.pdf", 0.9, 1, "manual.pdf p.3", page=3)]
    system = rag_messages("torque?", hits)[0]["content"]
    assert "short" in system and "only the numbered passages" in system and "[n]" in system
    assert "do not say" in system  # what to answer when the passages lack it


def test_rag_prompt_shows_the_best_passage_last_and_numbers_match_the_sources(tiny_loaded, data_dir):
    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from tests.test_chat import ListStore

    ranked = [Hit(f"Passage ranked {r}.", "faq.md", 1 - r / 10, r, f"faq.md § {r}") for r in (1, 2, 3)]
    prepared = Runtime(Settings(data_dir=data_dir), tiny_loaded, store=ListStore(ranked)).arena.prepare(
        "q?", ["rag"], VariantConfig(rag_k=3))["rag"]
    system = prepared.messages[0]["content"]
    assert system.index("[1] (faq.md § 3)") < system.index("[2] (faq.md § 2)") < system.index("[3] (faq.md § 1)")
    assert [h.citation for h in prepared.sources] == ["faq.md § 3", "faq.md § 2", "faq.md § 1"]


def test_naive_rag_prompt_is_passages_then_question_without_instruction():
    hits = [Hit("Use 25 Nm.", "manual.pdf", 0.9, 1, "manual.pdf p.3"), Hit("Hold reset.", "faq", 0.5, 2, "faq")]
    assert naive_rag_messages("torque?", hits) == [
        {"role": "user", "content": "Use 25 Nm.\n\nHold reset.\n\ntorque?"}]
    assert naive_rag_messages("torque?", []) == [{"role": "user", "content": "torque?"}]


def test_prompt_variant_uses_the_nearest_training_pairs_by_default(tiny_loaded, data_dir):
    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from retrieval.embedding import Embedder

    pairs = [{"question": q, "answer": a} for q, a in [
        ("How do I descale the machine?", "Use one sachet of descaler."),
        ("What is the warranty period?", "Two years."),
        ("How long does the descaling cycle take?", "25 minutes."),
        ("Which batteries does the remote use?", "Two AAA batteries."),
        ("Can I use pre-ground coffee?", "Yes, one scoop."),
        ("How often should I descale?", "Every three months.")]]
    cfg = VariantConfig(few_shot=pairs)
    assert cfg.dynamic_k == DEFAULT_DYNAMIC_K == 3
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).new_arena(
        embed=Embedder.load("bundled:all-minilm-l6-v2").encode)
    messages = arena.prepare("What is the descaling procedure?", ["prompt"], cfg)["prompt"].messages
    shots = [m["content"] for m in messages if m["role"] == "user"][:-1]
    assert len(shots) == 3 and all("descal" in s for s in shots)
