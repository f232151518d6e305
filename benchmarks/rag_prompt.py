"""RAG prompt benchmark: our RAG variant vs the naive baseline (top-3 BM25 passages + question), same model.

Both answer the same questions of benchmarks/retrieval_faq.py's FAQ (ingested as one Markdown file per entry)
on the bundled model, greedy, with max new tokens sized from the references (foundation.variants
.max_new_tokens_for). Prints token F1 / contains per prompt, the paired F1 difference with its bootstrap
interval, and answer lengths. About 3-5 minutes on 2 CPU cores.
Run: .venv/bin/python benchmarks/rag_prompt.py [--questions 20] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_runtime(data_dir: Path, n: int):
    """The bundled model and a fresh index of the FAQ under data_dir (the converted model is kept there)."""
    from assistant.runtime import Runtime
    from benchmarks.retrieval_faq import ENTRIES
    from foundation.settings import Settings
    from retrieval.ingest import ingest_paths

    docs = data_dir / "faq"
    shutil.rmtree(docs, ignore_errors=True)
    shutil.rmtree(data_dir / "index", ignore_errors=True)
    docs.mkdir(parents=True)
    for i, (title, body, _, _) in enumerate(ENTRIES):
        (docs / f"faq-{i:02d}.md").write_text(f"## {title}\n\n{body}\n")
    runtime = Runtime(Settings(data_dir=data_dir))
    ingest_paths(runtime.store, [docs])
    return runtime, [(q, a) for _, _, q, a in ENTRIES[:n]]


def naive_rag_answers(store, engine, questions: list[str], gen, progress) -> list[dict]:
    """The naive baseline: {"question", "answer", "passages"} per question -- the top-3 BM25 passages of the
    document ``store`` pasted before the question (foundation.variants.naive_rag_messages), the base model."""
    from foundation.generation import Row
    from foundation.variants import naive_rag_messages

    out = []
    for question in questions:
        hits = store.search(question, k=3, mode="bm25")
        row = Row(engine.chat_ids(naive_rag_messages(question, hits)), None)
        out.append({"question": question, "answer": engine.generate([row], gen)[0].text.strip(),
                    "passages": [h.text for h in hits]})
        progress(len(out), len(questions))
    return out


def _progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total} answered", end="\n" if done == total else "", file=sys.stderr, flush=True)


def main() -> None:
    from assistant.compare.bootstrap import paired_difference
    from foundation.generation import GenSettings
    from foundation.metrics import contains, retrieval_hit, token_f1
    from foundation.variants import VariantConfig, max_new_tokens_for

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "arena-bench-rag-prompt")
    args = p.parse_args()
    runtime, pairs = build_runtime(args.data, args.questions)
    questions, refs = [q for q, _ in pairs], [a for _, a in pairs]
    gen = GenSettings(max_new_tokens=max_new_tokens_for(refs, runtime.engine.count_tokens), temperature=0.0)
    print(f"{len(pairs)} questions, bundled model, greedy, max new tokens {gen.max_new_tokens}", flush=True)
    start = time.perf_counter()
    ours = [a["rag"] for a in runtime.arena.ask_many(questions, ["rag"], VariantConfig(), gen, progress=_progress)]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    naive = naive_rag_answers(runtime.store, runtime.engine, questions, gen, progress=_progress)
    t_naive = time.perf_counter() - start
    f1 = {"ours": [token_f1(a.text, r) for a, r in zip(ours, refs, strict=True)],
          "naive": [token_f1(a["answer"], r) for a, r in zip(naive, refs, strict=True)]}
    has = {"ours": [contains(a.text, r) for a, r in zip(ours, refs, strict=True)],
           "naive": [contains(a["answer"], r) for a, r in zip(naive, refs, strict=True)]}
    hit = {"ours": [retrieval_hit(r, [h.text for h in a.sources]) or 0.0 for a, r in zip(ours, refs, strict=True)],
           "naive": [retrieval_hit(r, a["passages"]) or 0.0 for a, r in zip(naive, refs, strict=True)]}
    words = {"ours": [len(a.text.split()) for a in ours], "naive": [len(a["answer"].split()) for a in naive]}
    for name, seconds in (("ours", t_ours), ("naive", t_naive)):
        n = len(refs)
        print(f"{name:<6} token F1 {sum(f1[name]) / n:.3f} · contains {sum(has[name]) / n:.2f} · retrieval hit "
              f"{sum(hit[name]) / n:.2f} · {sum(words[name]) / n:.1f} words/answer · {seconds:.0f} s")
    d = paired_difference(f1["ours"], f1["naive"], seed=0)
    print(f"paired F1 ours - naive: {d['mean']:+.3f} [95 % bootstrap {d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    if os.environ.get("ARENA_BENCH_SHOW"):
        for q, a, b, r in zip(questions, ours, naive, refs, strict=True):
            print(f"- {q}\n  ref:   {r}\n  ours:  {a.text!r}\n  naive: {b['answer']!r}")


if __name__ == "__main__":
    main()
