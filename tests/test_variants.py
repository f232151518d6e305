"""Prompt builders of the five variants: messages, RAG budget fitting, dynamic few-shot, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.errors import ArenaError
from foundation.variants import (
    base_messages,
    check_few_shot,
    fit_hits,
    format_passage,
    parse_variants,
    pick_few_shot,
    prompt_messages,
    rag_budget,
    rag_messages,
    truncate_question,
)
from retrieval.store import Hit


def words(text: str) -> int:
    return len(text.split())


def test_base_and_prompt_messages():
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert base_messages("Q?", history) == history + [{"role": "user", "content": "Q?"}]
    shots = [{"question": "q1", "answer": "a1"}]
    msgs = prompt_messages("Q?", "Be brief.", shots, history)
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1:3] == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    assert msgs[3:] == history + [{"role": "user", "content": "Q?"}]
    assert prompt_messages("Q?", "  ", [])[0]["role"] == "user"  # empty system prompt is left out


def test_rag_messages_number_passages_and_ask_for_citations():
    hits = [Hit("Use 25 Nm.", "manual.pdf", 0.9, 1, "manual.pdf p.3", page=3),
            Hit("Reset by holding.", "faq.rst", 0.5, 2, "faq.rst § Reset")]
    msgs = rag_messages("torque?", hits)
    system = msgs[0]["content"]
    assert "[1] (manual.pdf p.3)\nUse 25 Nm." in system and "[2] (faq.rst § Reset)" in system
    assert "[n]" in system and msgs[-1] == {"role": "user", "content": "torque?"}


def test_rag_budget_keeps_rank_order_and_cuts_the_overflowing_passage():
    hits = [Hit(" ".join(f"w{i}" for i in range(40)), f"d{j}.txt", 1 - j / 10, j, f"d{j}.txt")
            for j in range(4)]
    kept, notice = fit_hits(hits, 120, words)
    assert [h.source for h in kept] == ["d0.txt", "d1.txt", "d2.txt"]
    assert kept[2].text.endswith("…") and words(kept[2].text) < 40 and kept[2].score == hits[2].score
    assert sum(words(format_passage(i, h)) for i, h in enumerate(kept, 1)) <= 120
    assert "1 passage(s) dropped" in notice
    assert fit_hits(hits, 10_000, words) == (hits, "")
    assert rag_budget(2048, 256, 100) == int(2048 * 0.9) - 356


def test_dynamic_few_shot_picks_nearest_pairs():
    vocab = ["bolt", "torque", "password", "reset", "invoice", "vat"]

    def embed(texts):  # bag of words over a fixed vocabulary: nearest = most shared words
        return np.array([[t.lower().count(w) + 1e-3 for w in vocab] for t in texts], dtype=np.float32)

    pairs = [{"question": "How do I pay an invoice with vat?", "answer": "a"},
             {"question": "What torque for the bolt?", "answer": "b"},
             {"question": "How to reset my password?", "answer": "c"},
             {"question": "Bolt torque in winter?", "answer": "d"}]
    picked = pick_few_shot("Which torque should the bolt get?", pairs, 2, embed)
    assert {p["answer"] for p in picked} == {"b", "d"}
    assert pick_few_shot("x", pairs, 0, embed) == pairs


def test_parse_variants_and_bad_few_shot():
    assert parse_variants("rag, base") == ["base", "rag"]
    with pytest.raises(ArenaError, match="unknown variant 'lora'"):
        parse_variants("base,lora")
    with pytest.raises(ArenaError, match="few-shot example 2"):
        check_few_shot([{"question": "q", "answer": "a"}, {"question": "q"}])


def test_question_empty_or_too_long():
    with pytest.raises(ArenaError, match="empty"):
        truncate_question("   ", 10, words)
    text, notice = truncate_question("one two three four five six", 3, words)
    assert words(text.rstrip(" …")) <= 3 and "truncated from 6 to 3 tokens" in notice
    assert truncate_question(" ok ", 3, words) == ("ok", "")


def test_rag_k_is_bounded_where_the_variant_settings_are_made():
    """Chat's 'RAG passages (k)' 100000 made a 7,000-token prompt (100 s to the first token) without a word;
    the bound is the Documents search's, one definition."""
    from foundation.variants import MAX_RAG_K, VariantConfig
    from ui.chat import _configs

    assert VariantConfig(rag_k=MAX_RAG_K).rag_k == MAX_RAG_K
    for k in (0, -5, MAX_RAG_K + 1, 100000):
        with pytest.raises(ArenaError, match=f"RAG passages \\(k\\) must be between 1 and {MAX_RAG_K}, got {k}"):
            VariantConfig(rag_k=k)
    with pytest.raises(ArenaError, match="got 100000"):
        _configs(None, "", "", 0, 100000, "hybrid", 64, 0.0, 1.0, 0, 1.0)
