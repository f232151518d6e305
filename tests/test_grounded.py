"""RAFT-style grounded rows in the served RAG prompt: oracle share, distractors, citations, identical prompts."""

from __future__ import annotations

import pytest

from assistant.runtime import Runtime
from foundation.settings import Settings
from foundation.variants import RAG_INSTRUCTION, VariantConfig, display_order, format_passage
from retrieval.store import Hit
from tests.conftest import make_lora
from tests.test_chat import ListStore
from training.builders import grounded_examples
from training.data import chat
from training.tokenize import IGNORE, tokenize_chat


def corpus(n: int) -> tuple[list, dict]:
    """n questions, each answered by exactly one passage (its code appears nowhere else)."""
    qa = [chat(f"Which code opens door {i}?", f"Code Q{i}7X{i}.") for i in range(n)]
    passages = {i: Hit(f"Door {i} opens with code Q{i}7X{i}. Keep it secret.", "doors.md", 1.0, i,
                       f"doors.md § Door {i}", section=f"Door {i}") for i in range(n)}
    return qa, passages


def ranked_search(passages: dict):
    """Ranked hits for a question: two other doors first, then its own passage, then the rest."""
    def search(question: str, n: int) -> list:
        own = int(question.rsplit(" ", 1)[1].rstrip("?"))
        others = [passages[j] for j in sorted(passages) if j != own]
        return (others[:2] + [passages[own]] + others[2:])[:n]
    return search


def passage_numbers(system: str, passages: dict) -> dict[int, int]:
    """door -> [n] of its passage in a rendered RAG system turn."""
    return {door: int(system.split(f"({hit.citation})")[0].rsplit("[", 1)[1].rstrip("] "))
            for door, hit in passages.items() if f"({hit.citation})" in system}


@pytest.mark.parametrize("share", [0.8, 0.5, 0.0, 1.0])
def test_oracle_share_distractors_and_citations(share):
    qa, passages = corpus(20)
    rows = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=share, seed=3)
    with_oracle = 0
    for i, row in enumerate(rows):
        system, question, target = (m["content"] for m in row.messages)
        assert system.startswith(RAG_INSTRUCTION) and question == qa[i].question()
        numbers = passage_numbers(system, passages)
        assert len(numbers) == 4 and sorted(numbers.values()) == [1, 2, 3, 4]
        if i in numbers:  # the oracle is in: the target cites its number
            with_oracle += 1
            assert target == f"Code Q{i}7X{i}. [{numbers[i]}]"
        else:  # only distractors, none holding the answer: the target is the plain answer (RAFT)
            assert target == f"Code Q{i}7X{i}."
    assert with_oracle == round(share * 20)


def test_oracle_lands_at_varied_positions_and_is_seeded():
    qa, passages = corpus(20)
    rows = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=1.0, seed=1)
    spots = {passage_numbers(r.messages[0]["content"], passages)[i] for i, r in enumerate(rows)}
    assert len(spots) > 1  # not always where retrieval ranked it
    again = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=1.0, seed=1)
    assert [r.messages for r in rows] == [r.messages for r in again]


def test_training_and_serving_send_identical_prompt_tokens(tiny_loaded, data_dir, tmp_path):
    """The rag+finetuned variant is served with exactly the prompt its grounded rows were trained on."""
    from foundation.registry import AdapterRegistry

    qa, passages = corpus(6)
    row = grounded_examples(qa[:1], ranked_search(passages), k=4, oracle_share=1.0, seed=0)[0]
    system = row.messages[0]["content"]
    shown = sorted((h for h in passages.values() if f"({h.citation})" in system),
                   key=lambda h: system.index(f"({h.citation})"))
    AdapterRegistry(data_dir).register("grounded", make_lora(tiny_loaded.model, tmp_path / "lora", 1),
                                       {"method": "lora", "peft_type": "LORA"}, [qa[0].question()])
    # Retrieval ranks them best first; the prompt shows them best last (variants.display_order).
    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded, store=ListStore(display_order(shown)))
    served = runtime.arena.prepare(qa[0].question(), ["rag", "rag+finetuned"],
                                   VariantConfig(rag_k=4, adapter="grounded"))
    trained = tokenize_chat(tiny_loaded.tokenizer, row.messages, 4096)
    prompt_ids = [t for t, label in zip(trained["input_ids"], trained["labels"], strict=True) if label == IGNORE]
    for name in ("rag", "rag+finetuned"):
        assert served[name].messages == row.messages[:-1] and served[name].sources == shown
        assert runtime.engine.chat_ids(served[name].messages) == prompt_ids


# ---- passage token budget (JobConfig.grounded_passage_tokens) ---------------------------------------------

def filler(i: int) -> str:
    """About 150 tokens (bytes) of words found in no other door's passage, so each passage stays its own."""
    return " Notes: " + " ".join(f"n{i}w{j}" for j in range(30)) + "."


def long_corpus(n: int) -> tuple[list, dict]:
    """corpus() with passages about 200 tokens long (the answer's code in the first sentence)."""
    qa, passages = corpus(n)
    for i, hit in passages.items():
        passages[i] = Hit(hit.text + filler(i), hit.source, hit.score, hit.chunk_id, hit.citation,
                          section=hit.section)
    return qa, passages


def context_tokens(system: str, count) -> int:
    return count(system.split("Context:\n", 1)[1])


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_passage_budget_bounds_each_row_and_keeps_the_oracle_whole(tiny_tokenizer, share):
    def count(text: str) -> int:
        return len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])

    qa, passages = long_corpus(12)
    oracle_cost = count(format_passage(1, passages[0])) + 2
    budget = oracle_cost + 120  # the oracle and part of one distractor
    full = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=share, seed=5)
    cut = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=share, seed=5, passage_tokens=budget,
                            count_tokens=count)
    with_oracle = 0
    for i, (row, before) in enumerate(zip(cut, full, strict=True)):
        system, target = row.messages[0]["content"], row.messages[-1]["content"]
        assert context_tokens(system, count) <= budget < context_tokens(before.messages[0]["content"], count)
        numbers = passage_numbers(system, passages)
        if i in numbers:  # the answer's passage: whole, cited by its number in the target
            with_oracle += 1
            assert passages[i].text.strip() in system and target == f"Code Q{i}7X{i}. [{numbers[i]}]"
            assert len(numbers) == 2  # plus one distractor, cut to what was left ("…")
            assert "…" in system
        else:
            assert target == f"Code Q{i}7X{i}." and len(numbers) >= 1
    assert with_oracle == round(share * 12)
    total = sum(context_tokens(r.messages[0]["content"], count) for r in cut)
    assert total < 0.5 * sum(context_tokens(r.messages[0]["content"], count) for r in full)


def test_passage_budget_below_the_oracle_keeps_the_oracle_alone(tiny_tokenizer):
    def count(text: str) -> int:
        return len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])

    qa, passages = long_corpus(4)
    rows = grounded_examples(qa, ranked_search(passages), k=4, oracle_share=1.0, seed=0, passage_tokens=10,
                             count_tokens=count)
    for i, row in enumerate(rows):
        assert passage_numbers(row.messages[0]["content"], passages) == {i: 1}
        assert passages[i].text.strip() in row.messages[0]["content"]


def test_passage_budget_needs_a_token_counter():
    from foundation.errors import ArenaError

    qa, passages = corpus(2)
    with pytest.raises(ArenaError, match="token counter"):
        grounded_examples(qa, ranked_search(passages), k=4, passage_tokens=100)


class SectionStore:
    """A document store over fixed question-titled sections (retrieval itself is tested on its own): one
    section per door, searched best match first."""

    def __init__(self, passages: dict):
        self.passages = passages

    def is_empty(self):
        return not self.passages

    def sections(self):
        from training.builders import SectionText

        return [SectionText(f"Which code opens door {i}?", h.text, h.source) for i, h in self.passages.items()]

    def search(self, query, k=5, mode="hybrid"):
        return ranked_search(self.passages)(query.replace("?", ""), k)


def test_training_job_documents_source_applies_the_jobs_passage_budget(tiny_loaded, data_dir):
    """`arena train --from-documents grounded`: the job's grounded_passage_tokens, counted by the engine."""
    from training.config import JobConfig
    from training.sources import load_source

    _, passages = long_corpus(6)
    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded, store=SectionStore(passages))
    spec, count, tools = {"source": "documents", "kind": "grounded"}, runtime.engine.count_tokens, runtime.data_tools()
    budget = count(format_passage(1, passages[0])) + 100
    full = load_source(spec, runtime.settings, tools, JobConfig(grounded_passage_tokens=0, oracle_share=1.0))
    cut = load_source(spec, runtime.settings, tools, JobConfig(grounded_passage_tokens=budget, oracle_share=1.0))
    assert len(cut) == len(full) == 6
    for row, before in zip(cut, full, strict=True):
        system = row.messages[0]["content"]
        assert context_tokens(system, count) <= budget < context_tokens(before.messages[0]["content"], count)
        answer, cited = row.messages[-1]["content"].rsplit(" [", 1)
        assert answer in system  # the oracle (the section the question came from) is kept whole, and cited
        assert system.split(f"[{cited.rstrip(']')}] (", 1)[1].split(")\n", 1)[1].startswith(answer)
