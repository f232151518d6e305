"""Retrieval settings chosen by hit rate on the training pairs: real MiniLM, FAISS, bm25s, temp indexes."""

from __future__ import annotations

from collections import Counter

import pytest

from foundation.errors import ArenaError
from retrieval.tuning import KS, MODES, SPLITTERS, choose_retrieval, pick

# One manual whose sections are long enough for the splitters to cut differently.
MANUAL = "\n\n".join(
    f"## {title}\n\n" + " ".join(f"Filler sentence {i} about the {title.lower()} of the appliance." for i in range(25))
    + f" {fact}"
    for title, fact in [("Descaling", "Descale with one sachet of descaler every two months."),
                        ("Warranty", "The warranty lasts two years or 5000 cups."),
                        ("Grinder", "Turn the grind dial one notch at a time while grinding."),
                        ("Filter", "Replace the AquaPure filter after 50 litres."),
                        ("Standby", "Standby power is under 0.5 W."),
                        ("Milk", "Clean the milk system with tablet MC-3 once a week.")])
PAIRS = [{"question": "How often do I descale?", "answer": "every two months"},
         {"question": "How long is the warranty?", "answer": "two years or 5000 cups"},
         {"question": "How do I change the grind?", "answer": "one notch at a time"},
         {"question": "When is the filter replaced?", "answer": "after 50 litres"},
         {"question": "What does standby draw?", "answer": "under 0.5 W"},
         {"question": "Which tablet cleans the milk system?", "answer": "tablet MC-3"}]


@pytest.fixture(scope="module")
def embedder():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2")


def test_choice_is_the_smallest_k_near_the_best_hit_rate(embedder, tmp_path):
    (tmp_path / "manual.md").write_text(MANUAL)
    data_dir = tmp_path / "data"
    seen = []
    choice = choose_retrieval([tmp_path / "manual.md"], PAIRS, embedder, data_dir,
                              progress=lambda n, total, text: seen.append(text))
    assert len(choice.table) == len(SPLITTERS) * len(MODES) * len(KS) and choice.questions == len(PAIRS)
    best = max(r["hit_rate"] for r in choice.table)
    assert choice.hit_rate >= best - 0.02 and choice.hit_rate > 0.5
    assert all(r["k"] >= choice.k for r in choice.table if r["hit_rate"] >= best - 0.02)
    for row in choice.table:  # more passages never retrieve fewer answers
        bigger = [r for r in choice.table if (r["splitter"], r["mode"]) == (row["splitter"], row["mode"])
                  and r["k"] > row["k"]]
        assert all(r["hit_rate"] >= row["hit_rate"] for r in bigger)
    assert not (data_dir / "tmp" / "retrieval-tuning").exists() and len(seen) == len(SPLITTERS)
    assert not (data_dir / "index").exists()  # the real index is not touched


def test_ties_prefer_fewer_passages_then_the_defaults():
    table = [{"splitter": s, "mode": m, "k": k, "hit_rate": 0.9 if k >= 3 else 0.5}
             for s in SPLITTERS for m in MODES for k in KS]
    assert pick(table) == {"splitter": "recursive", "mode": "hybrid", "k": 3, "hit_rate": 0.9}
    table.append({"splitter": "tokens", "mode": "dense", "k": 2, "hit_rate": 0.89})  # within tolerance
    assert pick(table)["k"] == 2 and pick(table)["splitter"] == "tokens"


def test_no_pairs_or_no_text_is_refused(embedder, tmp_path):
    with pytest.raises(ArenaError, match="needs question/answer pairs"):
        choose_retrieval([tmp_path], [{"question": "q", "answer": " "}], embedder, tmp_path / "data")
    (tmp_path / "empty.md").write_text("")
    with pytest.raises(ArenaError, match="no text could be read"):
        choose_retrieval([tmp_path / "empty.md"], PAIRS, embedder, tmp_path / "data", splitters=("recursive",))
    assert not (tmp_path / "data" / "tmp" / "retrieval-tuning").exists()


class _Counting:
    """The real embedder, counting the texts it is asked to encode (in all, and each text's times)."""

    def __init__(self, inner):
        self.inner, self.texts, self.times = inner, 0, Counter()

    def encode(self, texts, *args, **kwargs):
        self.texts += len(texts)
        self.times.update(texts)
        return self.inner.encode(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_each_chunk_text_is_embedded_once_across_splitters_and_the_real_index(embedder, tmp_path):
    from retrieval.chunking import ChunkConfig
    from retrieval.ingest import ingest_paths
    from retrieval.store import DocumentStore

    (tmp_path / "manual.md").write_text(MANUAL)
    docs = [tmp_path / "manual.md"]
    alone = _Counting(embedder)
    plain = choose_retrieval(docs, PAIRS, alone, tmp_path / "a")
    index = DocumentStore(tmp_path / "index", embedder)  # the real index, ingested with the default splitter
    try:
        ingest_paths(index, docs, ChunkConfig(splitter="recursive"))
        held = len(set(index.chunk_texts()))
        reusing = _Counting(embedder)
        reused = choose_retrieval(docs, PAIRS, reusing, tmp_path / "b", known=index.cached_vectors)
    finally:
        index.close()
    assert reused.table == plain.table and (reused.splitter, reused.mode, reused.k) == (plain.splitter, plain.mode,
                                                                                       plain.k)
    assert held > 0 and reusing.texts == alone.texts - held  # the real index's chunks were not embedded again
    chunk_texts = set()
    for splitter in SPLITTERS:  # every splitter's chunks (the count also holds the questions searched)
        store = DocumentStore(tmp_path / f"count-{splitter}", embedder)
        try:
            ingest_paths(store, docs, ChunkConfig(splitter=splitter))
            chunk_texts.update(store.chunk_texts())
        finally:
            store.close()
    assert chunk_texts and all(alone.times[t] == 1 for t in chunk_texts)  # a text two splitters share: once
