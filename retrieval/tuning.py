"""Retrieval settings chosen on the training pairs: splitter, k and search mode by retrieval hit rate.

RAG can only answer what it retrieves, so before a comparison judges it, `arena decide` picks the settings
under which the training questions' answers are retrieved most often. Each splitter's chunks go into a
throw-away index under <data_dir>/tmp/retrieval-tuning (removed afterwards; the real index is untouched);
every (splitter, mode, k) is scored by the share of questions whose answer is in one of the top-k chunks
(foundation.metrics.retrieval_hit, the comparison's own hit). The choice is the smallest k within
TOLERANCE of the best hit rate (fewer passages: a shorter prompt and fewer distractors for a small model);
ties prefer the app's defaults (recursive splitter, hybrid search).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from foundation.errors import ArenaError
from foundation.metrics import retrieval_hit
from retrieval.chunking import SPLITTERS, ChunkConfig  # tried all, ties in this order
from retrieval.ingest import KnownVectors, ingest_paths, text_hash
from retrieval.store import DocumentStore

MODES = ("hybrid", "dense", "bm25")  # in order of preference on ties
KS = (2, 3, 4, 6)
TOLERANCE = 0.02


@dataclass
class RetrievalChoice:
    """The chosen settings, their hit rate on the pairs, and every measured combination."""

    splitter: str
    mode: str
    k: int
    hit_rate: float
    questions: int
    table: list[dict] = field(default_factory=list)  # {"splitter", "mode", "k", "hit_rate"}


def hit_rates(store, pairs: list[dict], modes=MODES, ks=KS) -> list[dict]:
    """{"mode", "k", "hit_rate"} for each mode and k on one store (one search per question and mode)."""
    questions = [p["question"] for p in pairs]
    rows = []
    for mode in modes:
        ranked = store.search_many(questions, k=max(ks), mode=mode)
        for k in ks:
            hits = [retrieval_hit(p["answer"], [h.text for h in found[:k]]) or 0.0
                    for p, found in zip(pairs, ranked, strict=True)]
            rows.append({"mode": mode, "k": k, "hit_rate": sum(hits) / len(hits)})
    return rows


def pick(table: list[dict], tolerance: float = TOLERANCE) -> dict:
    """The smallest k within `tolerance` of the best hit rate; ties by splitter then mode preference."""
    best = max(r["hit_rate"] for r in table)
    near = [r for r in table if r["hit_rate"] >= best - tolerance]
    return min(near, key=lambda r: (r["k"], -r["hit_rate"], SPLITTERS.index(r["splitter"]),
                                    MODES.index(r["mode"])))


def choose_retrieval(paths: list[Path], pairs: list[dict], embedder, data_dir: Path,
                     splitters=SPLITTERS, modes=MODES, ks=KS,
                     progress: Callable[[int, int, str], None] | None = None,
                     known: KnownVectors | None = None) -> RetrievalChoice:
    """Ingest `paths` once per splitter into a temporary index and choose by hit rate on `pairs`
    ({"question", "answer"} dicts, e.g. the training pairs: never the held-out evaluation set). A chunk text
    is embedded once: the splitters share their vectors, and `known` (e.g. the real index's cached_vectors,
    same embedder) supplies those of the chunks it already holds."""
    pairs = [p for p in pairs if str(p.get("question", "")).strip() and str(p.get("answer", "")).strip()]
    if not pairs:
        raise ArenaError("choosing retrieval settings needs question/answer pairs; none were given")
    work = Path(data_dir) / "tmp" / "retrieval-tuning"
    table, seen = [], {}  # seen: text hash -> vector, of the splitters done so far

    def lookup(hashes: list[str]) -> dict:
        return (known(hashes) if known else {}) | {h: seen[h] for h in hashes if h in seen}

    try:
        for n, splitter in enumerate(splitters):
            if progress:
                progress(n, len(splitters), f"retrieval settings: {splitter} splitter")
            shutil.rmtree(work / splitter, ignore_errors=True)
            store = DocumentStore(work / splitter, embedder)
            try:
                report = ingest_paths(store, list(paths), ChunkConfig(splitter=splitter), known=lookup)
                if not report.chunks:
                    raise ArenaError(f"no text could be read from {', '.join(map(str, paths))}")
                seen |= store.cached_vectors([text_hash(t) for t in store.chunk_texts()])
                table += [{"splitter": splitter, **row} for row in hit_rates(store, pairs, modes, ks)]
            finally:
                store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = pick(table)
    return RetrievalChoice(best["splitter"], best["mode"], best["k"], best["hit_rate"], len(pairs), table)
