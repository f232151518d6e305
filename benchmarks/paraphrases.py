"""Paraphrase benchmark: what stopping a sample at its first line (GenSettings.one_line) saves when `arena train`
and `arena decide` write K paraphrases per training question, and that it changes no kept paraphrase.

Corpus: the question titles of the Django FAQ (benchmarks/decide.py: docs/faq of the Django 5.2.19 source
distribution on PyPI, BSD-3-Clause, copyright the Django Software Foundation and contributors; not written for
this project).

What runs, on the bundled model through the runtime's own engine (the one decide's paraphraser uses): the
paraphrase prompt of training/augment.py for each question, K sampled rows per question, batched as
training/augment.py batches them (questions_per_call(K) questions per engine call), once with the line stop and
once without, alternating per batch so both see the same machine load. Prints tokens decoded per sample, seconds
per batch (the ratio is what counts; absolute seconds depend on the machine and its load) and how many samples
have the same first line both ways (the only part a paraphrase is read from: training/augment.clean), and the
paraphrases kept by the similarity band both ways. `--per-call N` times instead N questions per call against
questions_per_call(K) (both with the line stop, alternating), e.g. `--k 1 --per-call 4`, the batching before
calls were filled to BATCH_ROWS rows.

Run: .venv/bin/python benchmarks/paraphrases.py [--questions 24] [--k 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.faq_corpora import faq_pairs, fetch_corpus  # noqa: E402


def main() -> None:
    from assistant.runtime import Runtime
    from foundation.generation import GenSettings, Row
    from foundation.settings import Settings
    from training.augment import PROMPT, ParaphraseSettings, clean, keep_paraphrases, questions_per_call

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "arena-bench-paraphrases"))
    ap.add_argument("--per-call", type=int, default=0, help="time N questions per call against the default")
    args = ap.parse_args()
    cache = Path(args.cache)
    questions = [p["question"] for p in faq_pairs(fetch_corpus("django", cache))][:args.questions]
    runtime = Runtime(Settings(data_dir=cache / "arena"))
    engine = runtime.engine
    ps = ParaphraseSettings(k=args.k, model=runtime.settings.model)
    base = GenSettings(max_new_tokens=ps.max_new_tokens, temperature=ps.temperature, top_p=ps.top_p, seed=ps.seed)
    modes = {"one line": replace(base, one_line=True), "to the limit": replace(base, one_line=False)}
    tokens = {m: 0 for m in modes}
    seconds = {m: 0.0 for m in modes}
    texts: dict[str, list[str]] = {m: [] for m in modes}
    engine.generate([Row(engine.chat_ids([{"role": "user", "content": "warm up"}]))], replace(base, max_new_tokens=4))
    if args.per_call:
        return batching(engine, questions, ps, replace(base, one_line=True), args.per_call)
    per_call = questions_per_call(ps.k)
    for start in range(0, len(questions), per_call):
        batch = questions[start:start + per_call]
        rows = [Row(engine.chat_ids([{"role": "user", "content": PROMPT.format(question=q)}]))
                for q in batch for _ in range(ps.k)]
        order = list(modes) if (start // per_call) % 2 == 0 else list(reversed(modes))
        for mode in order:
            began = time.perf_counter()
            outs = engine.generate(rows, modes[mode])
            seconds[mode] += time.perf_counter() - began
            tokens[mode] += sum(len(o.tokens) for o in outs)
            texts[mode] += [o.text for o in outs]
    n = len(texts["one line"])
    same = sum(clean(a) == clean(b) for a, b in zip(texts["one line"], texts["to the limit"], strict=True))
    kept = {m: sum(len(keep_paraphrases(q, texts[m][i * ps.k:(i + 1) * ps.k], runtime.embedder.encode))
                   for i, q in enumerate(questions)) for m in modes}
    print(f"engine {type(engine).__name__}, {len(questions)} questions x K={ps.k} = {n} samples, "
          f"max {ps.max_new_tokens} new tokens")
    for mode in modes:
        print(f"{mode:>13}: {tokens[mode] / n:5.1f} tokens per sample, {seconds[mode]:7.1f} s, "
              f"{kept[mode]} paraphrases kept")
    print(f"same first line: {same}/{n}; time ratio (to the limit / one line): "
          f"{seconds['to the limit'] / seconds['one line']:.2f}x; tokens ratio: "
          f"{tokens['to the limit'] / tokens['one line']:.2f}x")


if __name__ == "__main__":
    main()


def batching(engine, questions: list[str], ps, gen, per_call: int) -> None:
    """Seconds to sample every question K times at `per_call` questions per call vs questions_per_call(K), the two
    alternating in rounds of the larger call's questions so both see the same machine load."""
    from foundation.generation import Row
    from training.augment import PROMPT, questions_per_call

    sizes = {"given": per_call, "default": questions_per_call(ps.k)}
    seconds = dict.fromkeys(sizes, 0.0)
    step = max(sizes.values())
    for start in range(0, len(questions), step):
        chunk = questions[start:start + step]
        for name in (list(sizes) if (start // step) % 2 == 0 else list(reversed(sizes))):
            for at in range(0, len(chunk), sizes[name]):
                rows = [Row(engine.chat_ids([{"role": "user", "content": PROMPT.format(question=q)}]))
                        for q in chunk[at:at + sizes[name]] for _ in range(ps.k)]
                began = time.perf_counter()
                engine.generate(rows, gen)
                seconds[name] += time.perf_counter() - began
    print(f"{len(questions)} questions x K={ps.k}: {per_call} per call {seconds['given']:.1f} s, "
          f"{sizes['default']} per call (questions_per_call) {seconds['default']:.1f} s; "
          f"ratio {seconds['given'] / seconds['default']:.2f}x")
