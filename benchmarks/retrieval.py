"""Retrieval benchmark: ingestion chunks/s vs plain fp32 sentence-transformers, query latency at 10k/100k
chunks, and recall@k / MRR for dense, BM25 and hybrid. Prints a table (and --json writes the figures).

    .venv/bin/python benchmarks/retrieval.py                 # built-in FAQ corpus (benchmarks/retrieval_faq.py)
    .venv/bin/python benchmarks/retrieval.py --docs DIR --qa qa.jsonl   # your documents and QA pairs
    .venv/bin/python benchmarks/retrieval.py --embedder-backend torch --threads 1   # torch only, one core

"Ours" uses the Embedder as the app does (--embedder-backend auto: int8 ONNX Runtime where it applies, its
export cached under --data-dir/models); the reference is always plain fp32 SentenceTransformer.encode.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.retrieval_faq import ENTRIES  # noqa: E402
from foundation.settings import load_settings  # noqa: E402
from retrieval.chunking import ChunkConfig  # noqa: E402
from retrieval.embedding import Embedder  # noqa: E402
from retrieval.ingest import ingest_paths  # noqa: E402
from retrieval.store import DocumentStore, PendingDocument  # noqa: E402

EMBEDDER = "bundled:all-minilm-l6-v2"
WORDS = ("pump valve boiler grinder tank filter seal lever dial drawer sensor relay heater nozzle gasket "
         "descale rinse brew froth steam pressure temperature warranty service firmware display menu cup "
         "water milk bean powder tray hopper button light alarm cycle program litre minute second").split()


def write_faq(folder: Path) -> Path:
    """The FAQ corpus as one Markdown file plus the QA set as JSONL; returns the QA path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faq.md").write_text("# Aquila A2 FAQ\n\n" + "\n\n".join(f"## {q}\n{body}" for q, body, _, _ in ENTRIES))
    qa = folder.parent / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": eq, "answer": ans}) + "\n" for _, _, eq, ans in ENTRIES))
    return qa


def write_manuals(folder: Path, n_docs: int, seed: int = 0) -> None:
    """Deterministic manual-like text (unique sentences, so no chunk is a repeat of another)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(n_docs):
        sections = []
        for s in range(8):
            sentences = [f"Step {i + 1}: check the {rng.choice(WORDS)} near the {rng.choice(WORDS)} and "
                         f"{rng.choice(['clean', 'replace', 'tighten', 'inspect'])} it every {rng.randint(2, 90)} "
                         f"{rng.choice(['days', 'cycles', 'weeks'])} (ref {d}-{s}-{i})." for i in range(rng.randint(6, 14))]
            sections.append(f"## Section {s + 1}: {rng.choice(WORDS)} care\n" + " ".join(sentences))
        (folder / f"manual-{d:02d}.md").write_text("\n\n".join(sections))


def bench_ingestion(embedder: Embedder, work: Path, n_docs: int, repeats: int) -> dict:
    """Ours (load + chunk + embed + index + commit) vs plain fp32 SentenceTransformer.encode of the same chunks."""
    from sentence_transformers import SentenceTransformer

    from retrieval.embedder import resolve_embedder_path

    docs = work / "manuals"
    write_manuals(docs, n_docs)
    reference = SentenceTransformer(resolve_embedder_path(EMBEDDER), device="cpu")
    ours, ref, texts = [], [], []
    for r in range(repeats):  # alternate the two so background load hits both alike
        store = DocumentStore.open(work / f"ingest-{r}", embedder)
        report = ingest_paths(store, [docs], ChunkConfig())
        ours.append(report.chunks / report.seconds)
        texts = store.chunk_texts()
        start = time.perf_counter()
        reference.encode(texts)
        ref.append(len(texts) / (time.perf_counter() - start))
    # Re-ingest after editing a tenth of the files: unchanged chunk texts reuse their stored vectors.
    for path in sorted(docs.glob("*.md"))[: max(1, n_docs // 10)]:
        path.write_text(path.read_text().replace("Step 1:", "Step one:"))
    report = ingest_paths(store, [docs], ChunkConfig())
    gemm_share = weight_gemm_share(reference, texts)
    return {"chunks": len(texts), "fp32_weight_gemm_share": gemm_share, "bound_free_gemms": 1 / (1 - gemm_share),
            "bound_int8_4x_gemms": 1 / (1 - gemm_share * 3 / 4), "avg_chars": round(sum(map(len, texts)) / len(texts)),
            "ours_chunks_per_s": statistics.median(ours), "reference_chunks_per_s": statistics.median(ref),
            "speedup": statistics.median(ours) / statistics.median(ref), "ours_backend": embedder.backend,
            "reingest_10pct_edit_s": report.seconds, "reingest_embedded": report.embedded,
            "reingest_reused": report.reused}


def weight_gemm_share(reference, texts: list[str]) -> float:
    """Share of plain fp32 encode time spent in weight GEMMs (linear layers), from torch's profiler.

    Amdahl: if only those GEMMs get faster (int8, or bf16 where the CPU has it), the speedup is at most
    1 / (1 - share) even for free GEMMs, and 1 / (1 - share * 3/4) at int8 VNNI's 4x peak arithmetic rate.
    """
    from torch.profiler import profile

    with profile() as prof:
        reference.encode(texts[:256])
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    gemms = sum(ops.get(k, 0) for k in ("aten::addmm", "aten::mm", "mkl::_mkl_linear"))
    return gemms / sum(ops.values())


def fill_synthetic(store: DocumentStore, n: int, dim: int, seed: int = 0) -> float:
    """n synthetic chunks (random unit vectors, random-word texts) committed as one generation."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS + [f"w{i}" for i in range(5000)])
    from retrieval.chunking import Chunk

    pending = []
    per_doc = 1000
    for d in range(0, n, per_doc):
        m = min(per_doc, n - d)
        vectors = rng.standard_normal((m, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [" ".join(rng.choice(words, 60)) for _ in range(m)]
        pending.append(PendingDocument(f"synthetic-{d}.txt", "txt", f"doc-{d}", 0, "recursive", [],
                                       [Chunk(t, i) for i, t in enumerate(texts)],
                                       [f"{d}-{i}" for i in range(m)], vectors))
    start = time.perf_counter()
    store.commit(add=pending)
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def bench_latency(embedder: Embedder, work: Path, n: int, queries: list[str], index_type: str) -> dict:
    store = DocumentStore(work / f"latency-{n}-{index_type}", embedder, index_type=index_type)
    build_s = fill_synthetic(store, n, embedder.dim)
    index = store._current_index()
    qvecs = embedder.encode(queries)
    row = {"chunks": n, "index": index_type, "build_s": build_s}
    for mode in ("dense", "bm25", "hybrid"):
        samples = []
        for q, v in zip(queries, qvecs, strict=True):
            start = time.perf_counter()
            store.search_encoded(index, [q], v[None, :], 5, mode)
            samples.append(time.perf_counter() - start)
        row[f"{mode}_p50_ms"], row[f"{mode}_p95_ms"] = percentiles(samples)
    samples = []
    for q in queries:  # end to end: query embedding + hybrid search + SQLite fetch
        start = time.perf_counter()
        store.search(q, k=5)
        samples.append(time.perf_counter() - start)
    row["e2e_hybrid_p50_ms"], row["e2e_hybrid_p95_ms"] = percentiles(samples)
    store.close()
    return row


def bench_recall(embedder: Embedder, work: Path, docs: Path, qa: Path, ks: list[int], splitter: str) -> list[dict]:
    store = DocumentStore.open(work / f"recall-{splitter}", embedder)
    report = ingest_paths(store, [docs], ChunkConfig(splitter))
    pairs = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = [p["question"] for p in pairs]
    rows = []
    for mode in ("dense", "bm25", "hybrid"):
        results = store.search_many(questions, k=max(ks), mode=mode)
        ranks = [next((i for i, h in enumerate(hits, 1) if p["answer"].lower() in h.text.lower()), None)
                 for p, hits in zip(pairs, results, strict=True)]
        row = {"splitter": splitter, "mode": mode, "questions": len(pairs), "chunks": report.chunks,
               "mrr": sum(1 / r for r in ranks if r) / len(pairs)}
        row.update({f"recall@{k}": sum(1 for r in ranks if r and r <= k) / len(pairs) for k in ks})
        rows.append(row)
    return rows


def bench_threads(rounds: int = 5) -> dict:
    """Matmul time after a one-query search / before it, interleaved; and the same with the count left at 1.

    The second figure is what the old search did (faiss.omp_set_num_threads(1) left for the whole thread).
    """
    import faiss

    from retrieval.indexes import SearchIndex

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 64)).astype(np.float32)
    index = SearchIndex.build(np.arange(2000), vecs, [f"c{i}" for i in range(2000)])
    a = torch.randn(1024, 1024)

    def matmul_s() -> float:
        start = time.perf_counter()
        for _ in range(20):
            a @ a
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    before, after, left_at_one = [], [], []
    for _ in range(rounds):
        before.append(matmul_s())
        index.search_dense(vecs[:1], 5)
        after.append(matmul_s())
        faiss.omp_set_num_threads(1)
        left_at_one.append(matmul_s())
        faiss.omp_set_num_threads(threads)
    med = statistics.median
    return {"torch threads": f"{threads} -> {torch.get_num_threads()}",
            "matmul after/before search": round(med(after) / med(before), 2),
            "old behaviour (left at 1) / before": round(med(left_at_one) / med(before), 2)}


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = [(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)) for _ in cols]
    cells = [[f(r.get(c, "")) for f, c in zip(fmt, cols, strict=True)] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", help="folder of your documents (default: the built-in FAQ corpus)")
    parser.add_argument("--qa", help="JSONL with question and answer per line (needed with --docs)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ingest-docs", type=int, default=16, help="manual-like files for the ingestion run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingest", "latency", "recall", "threads"])
    parser.add_argument("--json", help="also write all figures to this JSON file")
    parser.add_argument("--embedder-backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--data-dir", help="where the ONNX export is cached (default: ARENA_DATA_DIR or ./arena_data)")
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(env={"ARENA_DATA_DIR": args.data_dir} if args.data_dir else None)
    start = time.perf_counter()
    embedder = Embedder.load(EMBEDDER, backend=args.embedder_backend, cache_dir=settings.models_dir)
    print(f"ours: {embedder.backend} (loaded in {time.perf_counter() - start:.1f} s, {torch.get_num_threads()} "
          f"threads){'; ' + embedder.backend_note if embedder.backend_note else ''}", flush=True)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "threads" not in args.skip:
            out["threads"] = bench_threads()
            print("\nThreads after a one-query search (matmul time ratios, interleaved)\n"
                  + table([out["threads"]]), flush=True)
        if "recall" not in args.skip:
            docs, qa = (Path(args.docs), Path(args.qa)) if args.docs else (work / "faq", write_faq(work / "faq"))
            out["recall"] = [r for s in ("recursive", "headers") for r in bench_recall(embedder, work, docs, qa,
                                                                                     [1, 3, 5], s)]
            print("\nRecall (hit = a retrieved chunk contains the answer text)\n" + table(out["recall"]), flush=True)
        if "ingest" not in args.skip:
            out["ingest"] = bench_ingestion(embedder, work, args.ingest_docs, args.repeats)
            print("\nIngestion\n" + table([out["ingest"]]), flush=True)
        if "latency" not in args.skip:
            rng = random.Random(1)
            questions = [e[2] for e in ENTRIES]
            queries = [rng.choice(questions) + f" {rng.choice(WORDS)}" for _ in range(args.queries)]
            out["latency"] = [bench_latency(embedder, work, n, queries, "flat" if n < 20_000 else t)
                              for n in args.sizes for t in (("flat",) if n < 20_000 else ("flat", "hnsw"))]
            print("\nQuery latency, k=5 (index-only p50/p95 per mode; e2e adds query embedding)\n"
                  + table(out["latency"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
