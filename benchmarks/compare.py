"""Comparison benchmark: our bootstrap vs scipy's, metric scoring throughput, and the runner's overhead.

Prints figures, ours vs a reference measured side by side in one run. Sized to finish in about a minute on
2 CPU cores. Run: .venv/bin/python benchmarks/compare.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bench_bootstrap(n_questions: int = 200, cells: int = 50, resamples: int = 2000) -> None:
    """5 variants x 10 metrics of per-question scores: our vectorised bootstrap vs scipy.stats.bootstrap."""
    from scipy.stats import bootstrap

    from assistant.compare.bootstrap import bootstrap_ci

    rng = np.random.default_rng(0)
    data = [rng.random(n_questions) for _ in range(cells)]
    start = time.perf_counter()
    ours = [bootstrap_ci(d, seed=0, n_resamples=resamples) for d in data]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ref = [bootstrap((d,), np.mean, n_resamples=resamples, method="percentile", random_state=0).confidence_interval
           for d in data]
    t_ref = time.perf_counter() - start
    gap = max(max(abs(o["ci_low"] - r.low), abs(o["ci_high"] - r.high)) for o, r in zip(ours, ref, strict=True))
    print(f"bootstrap {cells} cells x {n_questions} questions x {resamples} resamples: "
          f"ours {t_ours * 1000:.0f} ms, scipy percentile {t_ref * 1000:.0f} ms; max CI bound gap {gap:.4f}")


def bench_scoring(n: int = 1000) -> None:
    """Text metrics per answer (F1, ROUGE-L, exact, contains, groundedness, hit) vs rouge-score alone."""
    from rouge_score import rouge_scorer

    from foundation.metrics import answer_scores

    answer = "Hold the power button for ten seconds until the light blinks blue, then release it."
    ref = "Hold the power button for ten seconds."
    chunks = ["Hold the power button for ten seconds until the light blinks blue.", "Warranty: two years."]
    start = time.perf_counter()
    for _ in range(n):
        answer_scores(answer, ref, chunks)
    t_ours = time.perf_counter() - start
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    start = time.perf_counter()
    for _ in range(n):
        scorer.score(ref, answer)
    t_ref = time.perf_counter() - start
    print(f"scoring {n} answers: all text metrics {t_ours * 1000:.0f} ms "
          f"({n / t_ours:.0f}/s), rouge-score ROUGE-L alone {t_ref * 1000:.0f} ms ({n / t_ref:.0f}/s)")


def bench_runner(n_questions: int = 6) -> None:
    """Full comparison (answers + NLL + scoring + stats) vs the bare answering it wraps, tiny model."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tiny_model, make_tiny_tokenizer

    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.comparison import run_comparison
    from assistant.runtime import Runtime
    from foundation.generation import GenSettings
    from foundation.models import LoadedModel
    from foundation.settings import Settings
    from foundation.variants import VariantConfig

    tok = make_tiny_tokenizer()
    loaded = LoadedModel(make_tiny_model(len(tok)), tok, "tiny", "<memory>", torch.float32,
                         torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp)), base=loaded)
        runtime.embedder.encode(["warm up"])
        items = [EvalItem(f"Question number {i}: how do I reset device {i}?", f"Press reset {i} times.")
                 for i in range(n_questions)]
        variants = ("base", "prompt")
        gen = GenSettings(max_new_tokens=32)
        start = time.perf_counter()
        runtime.arena.ask_many([it.question for it in items], variants, VariantConfig(), gen)
        t_bare = time.perf_counter() - start
        runs = []
        for _ in range(2):  # the first run also pays one-time imports (rouge-score/nltk)
            start = time.perf_counter()
            run_comparison(runtime, items, CompareConfig(variants=variants, max_new_tokens=32), store=False)
            runs.append(time.perf_counter() - start)
    print(f"comparison of {n_questions} questions x {len(variants)} variants x 32 tokens (tiny model): "
          f"full run {runs[0]:.2f} s cold / {runs[1]:.2f} s warm vs bare answering {t_bare:.2f} s "
          f"(warm overhead {runs[1] / t_bare - 1:+.0%}: reference NLL passes, embedding, scoring, bootstrap)")


if __name__ == "__main__":
    bench_bootstrap()
    bench_scoring()
    bench_runner()
