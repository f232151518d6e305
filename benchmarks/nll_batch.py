"""Reference-NLL benchmark: the comparison's teacher-forced NLLs one row at a time (Engine.nll) vs in padded
batches (Engine.nll_many), on the bundled model, and how far apart their values are.

Corpus: the Django FAQ (benchmarks/decide.py: docs/faq of the Django 5.2.19 source distribution on PyPI,
BSD-3-Clause, copyright the Django Software Foundation and contributors; not written for this project). Each
Q/A pair gives two rows, as a comparison scores them: the FAQ answer after the question alone (the base and
fine-tuned variants' prompt) and after the question with RAG passages (the rag variants' prompt: RAG_PASSAGES
windows of PASSAGE_WORDS words of the question's own FAQ page, from its title on, numbered as the Arena numbers
retrieved passages). No adapter: batching groups rows by adapter, so each adapter's rows batch like these.

What runs: the torch engine (the engine every NLL runs on; the onnx engine delegates its NLLs to it), every row
scored one by one and all rows in one nll_many call, alternating the order each round so both see the same
machine load. Prints seconds per mode (the ratio is what counts; absolute seconds depend on the machine and its
load) and the largest |difference| between the two modes' NLLs.

Run: .venv/bin/python benchmarks/nll_batch.py [--pairs 24] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.decide import faq_pairs, fetch_faq  # noqa: E402

RAG_PASSAGES = 4
PASSAGE_WORDS = 120


def passages(page_text: str, title: str) -> list:
    """RAG_PASSAGES consecutive windows of the page's words, from the question's title on."""
    from retrieval.store import Hit

    words = page_text.split()
    start = max(0, " ".join(words).find(title))
    words = " ".join(words)[start:].split()
    return [Hit(" ".join(words[k * PASSAGE_WORDS:(k + 1) * PASSAGE_WORDS]), "faq", 1.0, k, f"faq #{k + 1}")
            for k in range(RAG_PASSAGES) if words[k * PASSAGE_WORDS:]]


def nll_rows(engine, faq: Path, n_pairs: int) -> list:
    from foundation.variants import base_messages, rag_messages

    rows = []
    for pair in faq_pairs(faq)[:n_pairs]:
        reference = engine.tokenizer(pair["answer"], add_special_tokens=False)["input_ids"]
        hits = passages((faq / pair["source"]).read_text(encoding="utf-8"), pair["question"])
        for messages in (base_messages(pair["question"]), rag_messages(pair["question"], hits)):
            rows.append((engine.chat_ids(messages), reference, None))
    return rows


def main() -> None:
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "arena-bench-nll"))
    args = ap.parse_args()
    cache = Path(args.cache)
    engine = Runtime(Settings(data_dir=cache / "arena", engine="torch")).engine
    rows = nll_rows(engine, fetch_faq(cache), args.pairs)
    engine.nll_many(rows[:2])  # warm up
    modes = {"one by one": lambda: [engine.nll(*row) for row in rows], "batched": lambda: engine.nll_many(rows)}
    seconds = {m: 0.0 for m in modes}
    values: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for mode in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            began = time.perf_counter()
            values[mode] = modes[mode]()
            seconds[mode] += time.perf_counter() - began
    lengths = sorted(len(p) + len(ref) for p, ref, _ in rows)
    diff = max(abs(a - b) for a, b in zip(values["one by one"], values["batched"], strict=True))
    print(f"engine {engine.name} ({engine.loaded.model_id}, {engine.loaded.dtype}, {os.cpu_count()} cores), "
          f"{len(rows)} rows ({args.pairs} FAQ pairs x question alone / with {RAG_PASSAGES} passages), "
          f"tokens per row {lengths[0]}-{lengths[-1]} (median {lengths[len(lengths) // 2]}), {args.rounds} rounds")
    for mode in modes:
        print(f"{mode:>11}: {seconds[mode]:7.1f} s ({seconds[mode] / args.rounds / len(rows) * 1000:.0f} ms per row)")
    print(f"time ratio (one by one / batched): {seconds['one by one'] / seconds['batched']:.2f}x; "
          f"max |NLL difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
