"""The naive RAG baseline: the top-3 BM25 passages pasted before the question, no instruction.

A benchmark (and decide) runs it next to the RAG variant: a RAG prompt that loses to this baseline would make
the comparison judge retrieval-augmented generation by a poor prompt.
"""

from __future__ import annotations

from collections.abc import Callable

from foundation.generation import GenSettings, Row
from foundation.variants import naive_rag_messages

NAIVE_K = 3
NAIVE_MODE = "bm25"


def naive_rag_answers(store, engine, questions: list[str], gen: GenSettings, k: int = NAIVE_K,
                      progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """{"question", "answer", "passages"} per question: keyword search in the document ``store``, passages +
    question, the base model on ``engine``; `progress(done, total)` after each."""
    out = []
    for question in questions:
        hits = store.search(question, k=k, mode=NAIVE_MODE)
        row = Row(engine.chat_ids(naive_rag_messages(question, hits)), None)
        out.append({"question": question, "answer": engine.generate([row], gen)[0].text.strip(),
                    "passages": [h.text for h in hits]})
        if progress:
            progress(len(out), len(questions))
    return out
