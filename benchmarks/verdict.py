"""Verdict benchmark: the old unpaired-overlap rule vs the paired, Holm-corrected rule, on simulated scores.

The scores imitate an earlier FAQ comparison on the bundled model (82 held-out questions, per-question token F1 spread widely by
question difficulty, RAG ahead of base by +0.025 with a paired interval of about +0.007 to +0.046, i.e. an SD
of the per-question differences near 0.09). Both rules run on the same simulated data sets in one run:

- detection: how often each rule declares the truly better variant the clear winner;
- false alarms with no true difference (independent questions, then questions correlated within sections,
  where the paired rule is run with and without resampling by section);
- time per verdict for five variants.

Sized to finish in about a minute on 2 CPU cores. Run: .venv/bin/python benchmarks/verdict.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_QUESTIONS, GAIN, SD_DIFF, TRIALS = 82, 0.025, 0.09, 200
COSTS = {"base": {}, "prompt": {"extra_prompt_tokens": 100}, "rag": {"extra_prompt_tokens": 400},
         "finetuned": {"training_seconds": 600}, "rag+finetuned": {"training_seconds": 600,
                                                                   "extra_prompt_tokens": 400}}


def overlap_winner(scores: dict) -> str | None:
    """The rule before the paired one: best wins when its 95 % interval does not overlap the runner-up's."""
    from assistant.compare.stats import bootstrap_ci

    summary = {v: bootstrap_ci(s) for v, s in scores.items()}
    best, runner = sorted(summary, key=lambda v: summary[v]["mean"], reverse=True)[:2]
    return best if summary[best]["ci_low"] > summary[runner]["ci_high"] else None


def paired_winner(scores: dict, sources=None) -> str | None:
    from assistant.compare.recommend import recommend

    rec = recommend(scores, COSTS, "f1", sources=sources)
    return rec.variant if rec.clear else None


def simulate(rng, gain: float, n: int = N_QUESTIONS, cluster_sd: float = 0.0, size: int = 1) -> dict:
    """base and rag per-question F1: shared difficulty, rag's difference = gain + section effect + noise."""
    difficulty = rng.beta(1.2, 2.0, n)
    section = np.repeat(rng.normal(0, cluster_sd, -(-n // size)), size)[:n]
    return {"base": list(difficulty), "rag": list(difficulty + gain + section + rng.normal(0, SD_DIFF, n))}


def rates(trials: int, gain: float, cluster_sd: float = 0.0, size: int = 1) -> dict:
    rng = np.random.default_rng(0)
    hits = {"overlap": 0, "paired": 0, "paired by section": 0}
    for _ in range(trials):
        scores = simulate(rng, gain, cluster_sd=cluster_sd, size=size)
        sources = [f"s{i // size}" for i in range(N_QUESTIONS)] if size > 1 else None
        # with a true gain only "rag" counts; without one any declared winner is a false alarm
        wanted = {"rag"} if gain else {"rag", "base"}
        hits["overlap"] += overlap_winner(scores) in wanted
        hits["paired"] += paired_winner(scores) in wanted
        if sources:
            hits["paired by section"] += paired_winner(scores, sources) in wanted
    return {k: v / trials for k, v in hits.items()}


def widening_rates(trials: int = 400, sections: int = 8, size: int = 5) -> dict:
    """No true difference, questions correlated within few sections: plain vs widened percentile interval."""
    from assistant.compare.stats import Draws, Resampler

    rng = np.random.default_rng(3)
    n, out = sections * size, {"plain": 0, "widened": 0}
    keys = [f"s{j // size}" for j in range(n)]
    for i in range(trials):
        diffs = np.repeat(rng.normal(0, 0.1, sections), size) + rng.normal(0, 0.1, n)
        draws = Resampler.build(n, keys, seed=i, n_resamples=2000).draws(diffs)
        for name, d in (("widened", draws), ("plain", Draws(draws.means, draws.center, units=1))):
            low, high = d.interval(0.05)
            out[name] += low > 0 or high < 0
    return {k: v / trials for k, v in out.items()}


def bench_timing(repeats: int = 20) -> None:
    rng = np.random.default_rng(1)
    base = rng.beta(1.2, 2.0, N_QUESTIONS)
    scores = {v: list(base + d + rng.normal(0, SD_DIFF, N_QUESTIONS))
              for v, d in zip(COSTS, (0.0, 0.01, 0.03, 0.02, 0.04), strict=True)}
    paired_winner(scores)  # scipy import and first-call costs out of the timing
    timings = {}
    for name, fn in (("overlap", overlap_winner), ("paired", paired_winner)):
        start = time.perf_counter()
        for _ in range(repeats):
            fn(scores)
        timings[name] = (time.perf_counter() - start) / repeats
    print(f"time per verdict, 5 variants x {N_QUESTIONS} questions: overlap {timings['overlap'] * 1000:.0f} ms, "
          f"paired + Holm {timings['paired'] * 1000:.0f} ms ({timings['paired'] / timings['overlap']:.1f}x)")


def main() -> None:
    print(f"{TRIALS} simulated comparisons of base vs rag, {N_QUESTIONS} questions, SD of differences {SD_DIFF}")
    real = rates(TRIALS, GAIN)
    print(f"detects a true +{GAIN} gain: overlap rule {real['overlap']:.0%}, paired rule {real['paired']:.0%}")
    null = rates(TRIALS, 0.0)
    print(f"false winner, no true gain: overlap rule {null['overlap']:.0%}, paired rule {null['paired']:.0%}")
    corr = rates(TRIALS, 0.0, cluster_sd=0.06, size=4)
    print(f"false winner, no true gain, 4 correlated questions per section: overlap {corr['overlap']:.0%}, "
          f"paired by question {corr['paired']:.0%}, paired by section {corr['paired by section']:.0%}")
    wide = widening_rates()
    print(f"false alarms at nominal 5 %, 8 sections x 5 correlated questions, cluster bootstrap: plain percentile "
          f"interval {wide['plain']:.0%}, widened by sqrt(G/(G-1)) t/z {wide['widened']:.0%}")
    bench_timing()


if __name__ == "__main__":
    main()
