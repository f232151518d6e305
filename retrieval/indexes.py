"""One committed generation of the search indexes: FAISS (dense) + bm25s (keyword), saved atomically."""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HNSW_AUTO_MIN = 20_000  # below this a flat scan is exact and already fast (~2.5 ms at 10k here)
HNSW_M, HNSW_EF_SEARCH = 32, 64
RRF_K = 60  # the constant from the reciprocal-rank-fusion paper; damps the weight of the very top ranks
# In hybrid mode a keyword hit joins the fusion only if its BM25 score reaches this share of the IDF of a term
# found in a single chunk, i.e. it matched something specific. Without it, incidental matches on common words
# ("cup", "coffee") appear in both lists and out-vote the dense ranking (FAQ benchmark: recall@5 0.97 -> 1.0).
KEYWORD_MIN_SHARE = 0.5
WORD = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")


# bm25s's 33-word English list keeps question words and pronouns, which then match every FAQ title.
EXTRA_STOPWORDS = ("i me my mine we us our you your he she him her his its them what which who whom whose why "
                   "when where how do does did doing can could would should shall may might must have has had "
                   "am been being so than too very just about from").split()


@functools.cache  # built once, not for every chunk and query
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | frozenset(EXTRA_STOPWORDS)


def keyword_tokens(text: str) -> list[str]:
    """Lower-cased words and codes (``e-42``, ``v2.1``), stop words dropped, light plural folding."""
    stop = _stopwords()
    tokens = []
    for word in WORD.findall(text.lower()):
        if word in stop:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        tokens.append(word)
    return tokens


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score = sum of 1 / (k + rank); ties keep first-seen order."""
    scores: Counter[int] = Counter()
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] += 1.0 / (k + rank)
    return scores.most_common()  # a stable sort: equal scores stay in first-seen order


class SearchIndex:
    """Dense and keyword indexes over the same chunk ids; built whole, saved under a generation number."""

    def __init__(self, dense, bm25, bm25_ids: np.ndarray):
        self.dense = dense
        self.bm25 = bm25
        self.bm25_ids = bm25_ids

    @property
    def size(self) -> int:
        return int(self.dense.ntotal)

    @property
    def specific_score(self) -> float:
        """Minimum BM25 score of a keyword hit worth fusing (see KEYWORD_MIN_SHARE); Lucene IDF, df = 1."""
        n = len(self.bm25_ids)
        return KEYWORD_MIN_SHARE * math.log(1 + (n - 0.5) / 1.5)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, texts: list[str], index_type: str = "auto"):
        import bm25s

        dense = make_faiss(vectors.shape[1], index_type, len(ids))
        with faiss_threads(os.cpu_count() or 1):  # building is throughput-bound
            dense.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        bm25 = bm25s.BM25()
        # A chunk with no keyword left still needs a row so positions stay aligned with bm25_ids.
        bm25.index([keyword_tokens(t) or ["∅"] for t in texts], show_progress=False)
        return cls(dense, bm25, ids.astype(np.int64))

    def search_dense(self, qvecs: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        k = min(k, self.size)
        # One query is latency-bound: a single OpenMP thread avoids thread wake-up/spin costs (26 vs 74 ms for
        # a 100k flat scan on a busy 2-core box); batches still use every core.
        with faiss_threads(1 if len(qvecs) < 8 else os.cpu_count() or 1):
            scores, ids = self.dense.search(np.ascontiguousarray(qvecs, dtype=np.float32), k)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
                for row_ids, row_scores in zip(ids, scores, strict=True)]

    def search_keyword(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """BM25 top-k per query; zero-score documents are no match and are left out."""
        results = []
        for query in queries:
            # get_scores + argpartition: ~0.3 ms at 100k chunks vs ~8 ms through bm25s.retrieve's generic path.
            tokens = [t for t in keyword_tokens(query) if t in self.bm25.vocab_dict]
            if not tokens:
                results.append([])
                continue
            scores = self.bm25.get_scores(tokens)
            top = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            results.append([(int(self.bm25_ids[d]), float(scores[d])) for d in top if scores[d] > 0])
        return results

    def save(self, folder: Path, generation: int) -> None:
        """Write each file under a temp name, fsync, then os.replace into its generation name."""
        import faiss

        faiss_tmp = folder / f"faiss-{generation}.index.tmp"
        faiss.write_index(self.dense, str(faiss_tmp))
        bm25_tmp = folder / f"bm25-{generation}.tmp"
        shutil.rmtree(bm25_tmp, ignore_errors=True)
        self.bm25.save(str(bm25_tmp), show_progress=False)
        np.save(bm25_tmp / "chunk_ids.npy", self.bm25_ids)
        for path in [faiss_tmp, *bm25_tmp.iterdir()]:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(faiss_tmp, folder / f"faiss-{generation}.index")
        final = folder / f"bm25-{generation}"
        shutil.rmtree(final, ignore_errors=True)  # left by a crash after this rename but before commit
        os.replace(bm25_tmp, final)

    @classmethod
    def load(cls, folder: Path, generation: int) -> SearchIndex:
        import bm25s
        import faiss

        dense = faiss.read_index(str(folder / f"faiss-{generation}.index"))
        _tune(dense)
        bm25 = bm25s.BM25.load(str(folder / f"bm25-{generation}"), show_progress=False)
        return cls(dense, bm25, np.load(folder / f"bm25-{generation}" / "chunk_ids.npy"))


@contextmanager
def faiss_threads(n: int):
    """Run FAISS with `n` OpenMP threads, then restore the previous count.

    FAISS and torch share one OpenMP runtime, and omp_set_num_threads sets the calling thread's count for
    every library on that runtime: left set, one single-query search made all later generation, scoring and
    embedding on this thread run on one core. So the count is only borrowed for the FAISS call.
    """
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def make_faiss(dim: int, index_type: str, n: int):
    """Inner-product index with explicit ids; HNSW for large collections (approximate, much faster)."""
    import faiss

    use_hnsw = index_type == "hnsw" or (index_type == "auto" and n >= HNSW_AUTO_MIN)
    inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT) if use_hnsw \
        else faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    _tune(index)
    return index


def _tune(index) -> None:
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH


def stale_files(folder: Path, keep: int) -> list[Path]:
    """Index files of older generations (and unfinished writes up to `keep`); newer ones may be a
    concurrent writer's work in progress, so they are left alone."""
    return [path for path in [*folder.glob("faiss-*"), *folder.glob("bm25-*")]
            if (match := re.match(r"(?:faiss|bm25)-(\d+)", path.name))
            and (int(match[1]) < keep or (int(match[1]) == keep and path.name.endswith(".tmp")))]
