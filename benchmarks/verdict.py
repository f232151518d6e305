"""Verdict benchmark: the old unpaired-overlap rule vs the paired, Holm-corrected rule, on simulated scores.

The scores imitate an earlier FAQ comparison on the bundled model (82 held-out questions, per-question token F1 spread widely by
question difficulty, RAG ahead of base by +0.025 with a paired interval of about +0.007 to +0.046, i.e. an SD
of the per-question differences near 0.09). Both rules run on the same simulated data sets in one run:

- detection: how often each rule declares the truly better variant the clear winner;
- false alarms with no true difference (independent questions, then questions correlated within sections,
  where the paired rule is run with and without resampling by section);
- time per verdict for five variants;
- the three outcomes (issue 24: clear winner / practically equivalent / inconclusive) on simulated token F1
  (f1_scores: Beta marginals with many scores near 0, a Gaussian copula for question difficulty), against the
  old rule "prefer the cheaper among those not separated from the best": how often a trailing variant is
  recommended with a true gap of 0.1 F1, how often a truly equivalent cheaper variant is recommended (against the
  TOST's power, tost_power), and the false clear-winner rate with no difference (3000 data sets).

Sized to finish in a few minutes on 2 CPU cores. Run: .venv/bin/python benchmarks/verdict.py
"""

from __future__ import annotations

import math
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
    from assistant.compare.bootstrap import bootstrap_ci

    summary = {v: bootstrap_ci(s) for v, s in scores.items()}
    best, runner = sorted(summary, key=lambda v: summary[v]["mean"], reverse=True)[:2]
    return best if summary[best]["ci_low"] > summary[runner]["ci_high"] else None


def paired_winner(scores: dict, sources=None) -> str | None:
    from assistant.compare.recommend import recommend

    rec = recommend(scores, COSTS, "f1", sources=sources)
    return rec.variant if rec.clear else None


def equivalent_pick(scores: dict) -> bool:
    """The verdict is "practically equivalent" (a gain under the margin is not worth its cost)."""
    from assistant.compare.recommend import recommend

    return recommend(scores, COSTS, "f1").outcome == "equivalent"


def simulate(rng, gain: float, n: int = N_QUESTIONS, cluster_sd: float = 0.0, size: int = 1) -> dict:
    """base and rag per-question F1: shared difficulty, rag's difference = gain + section effect + noise."""
    difficulty = rng.beta(1.2, 2.0, n)
    section = np.repeat(rng.normal(0, cluster_sd, -(-n // size)), size)[:n]
    return {"base": list(difficulty), "rag": list(difficulty + gain + section + rng.normal(0, SD_DIFF, n))}


def rates(trials: int, gain: float, cluster_sd: float = 0.0, size: int = 1) -> dict:
    rng = np.random.default_rng(0)
    hits = {"overlap": 0, "paired": 0, "paired by section": 0, "equivalent": 0}
    for _ in range(trials):
        scores = simulate(rng, gain, cluster_sd=cluster_sd, size=size)
        sources = [f"s{i // size}" for i in range(N_QUESTIONS)] if size > 1 else None
        # with a true gain only "rag" counts; without one any declared winner is a false alarm
        wanted = {"rag"} if gain else {"rag", "base"}
        hits["overlap"] += overlap_winner(scores) in wanted
        hits["paired"] += paired_winner(scores) in wanted
        hits["equivalent"] += equivalent_pick(scores)
        if sources:
            hits["paired by section"] += paired_winner(scores, sources) in wanted
    return {k: v / trials for k, v in hits.items()}


def widening_rates(trials: int = 400, sections: int = 8, size: int = 5) -> dict:
    """No true difference, questions correlated within few sections: plain vs widened percentile interval."""
    from assistant.compare.bootstrap import Draws, Resampler

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


# ---------------------------------------------------------------- the three outcomes (issue 24)

ISSUE_MEANS = {"rag+finetuned": 0.281, "finetuned": 0.185, "rag": 0.168, "base": 0.146, "prompt": 0.137}
GAP_MEANS = {"rag+finetuned": 0.28, "finetuned": 0.18, "rag": 0.17, "base": 0.15, "prompt": 0.14}


def f1_scores(rng, means: dict, n: int, sd: float = 0.27, rho: float = 0.5) -> dict[str, np.ndarray]:
    """Per-question token F1: Beta(mean, sd) marginals, correlation ``rho`` between variants on the latent
    normal scale (a question hard for one variant is hard for all)."""
    from scipy.stats import beta, norm

    shared = rng.normal(size=n)
    out = {}
    for v, m in means.items():
        k = m * (1 - m) / sd ** 2 - 1
        u = norm.cdf(math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=n))
        out[v] = beta.ppf(u, m * k, (1 - m) * k)
    return out


def tost_power(margin: float, sigma: float, n: int, alpha: float = 0.05) -> float:
    """Power of the t-based TOST at a true difference of 0 with normal differences of SD ``sigma``: the mean and
    the SD estimate are independent, so integrate P(|mean| < margin - t s / sqrt n) over the chi2 law of s."""
    from scipy import integrate
    from scipy.stats import chi2, norm
    from scipy.stats import t as student_t

    tq = student_t.ppf(1 - alpha, n - 1)

    def at(x):  # x = (n - 1) s^2 / sigma^2 ~ chi2(n - 1)
        half = margin - tq * sigma * math.sqrt(x / (n - 1)) / math.sqrt(n)
        return max(0.0, 2 * norm.cdf(half / (sigma / math.sqrt(n))) - 1) * chi2.pdf(x, n - 1)

    return integrate.quad(at, 0, chi2.ppf(1 - 1e-12, n - 1), limit=200)[0]


def old_rule(rec) -> str | None:
    """The rule before issue 24: the cheapest of the best and the variants not separated from it."""
    from assistant.compare.recommend import _cost_key

    if rec.outcome == "clear":
        return rec.variant
    tied = [rec.best] + [v for v, row in rec.comparisons.items() if not row["separated"]]
    return min(tied, key=lambda v: _cost_key(COSTS, v))


def outcome_rates(means: dict, n: int, trials: int, seed: int = 0, **shape) -> dict:
    """Shares of the three outcomes, of a trailing variant recommended (new rule, old rule) and of each pick."""
    from assistant.compare.recommend import recommend

    rng = np.random.default_rng(seed)
    top = max(means, key=means.get)
    out = {"clear": 0, "equivalent": 0, "inconclusive": 0, "trailing": 0, "trailing (old rule)": 0}
    for i in range(trials):
        scores = f1_scores(rng, means, n, **shape)
        rec = recommend({v: list(s) for v, s in scores.items()}, COSTS, "f1", seed=i, n_resamples=1000)
        out[rec.outcome] += 1
        out["trailing"] += rec.variant not in (None, top) and means[rec.variant] < means[top]
        old = old_rule(rec)
        out["trailing (old rule)"] += old != top and means[old] < means[top]
    return {k: v / trials for k, v in out.items()}


def equivalence_rate(n: int = 60, noise: float = 0.1, trials: int = 1000) -> tuple[float, float]:
    """Identical rag and rag+finetuned (rag cheaper): share of verdicts recommending rag, and the TOST's power."""
    from assistant.compare.recommend import recommend

    rng = np.random.default_rng(11)
    picked = 0
    for i in range(trials):
        q = rng.normal(0.5, 0.25, n)
        scores = {"rag+finetuned": list(q + rng.normal(0, noise, n)), "rag": list(q + rng.normal(0, noise, n))}
        picked += recommend(scores, COSTS, "f1", seed=i, n_resamples=1000).variant == "rag"
    return picked / trials, tost_power(0.05, noise * math.sqrt(2), n)


def print_outcomes() -> None:
    def line(name, r):
        print(f"  {name:<44} clear {r['clear']:5.1%}  equivalent {r['equivalent']:5.1%}  inconclusive "
              f"{r['inconclusive']:5.1%}  | trailing variant recommended: new {r['trailing']:5.1%}, old rule "
              f"{r['trailing (old rule)']:5.1%}")

    print("\nthree outcomes on simulated token F1 (SD 0.27 per question, 5 variants; 300 data sets each):")
    line("issue's means, 24 questions", outcome_rates(ISSUE_MEANS, 24, 300, sd=0.28, rho=0.3))
    for n in (24, 82, 200):
        line(f"true gap 0.1 to the runner-up, {n} questions", outcome_rates(GAP_MEANS, n, 300, seed=n))
    line("no difference at all, 24 questions", outcome_rates({v: 0.2 for v in COSTS}, 24, 300, seed=3))
    rate, power = equivalence_rate()
    print(f"truly equivalent, cheaper rag vs rag+finetuned, 60 questions, SD of differences 0.141, margin 0.05: "
          f"rag recommended in {rate:.1%} of 1000 data sets; the t-based TOST's power is {power:.1%}")
    null = outcome_rates({"base": 0.2, "rag": 0.2}, 24, 3000, seed=9)
    print(f"false clear winner, two identical variants, 24 questions, 3000 data sets: {null['clear']:.2%} "
          f"(nominal 5 %)")


def main() -> None:
    print(f"{TRIALS} simulated comparisons of base vs rag, {N_QUESTIONS} questions, SD of differences {SD_DIFF}")
    real = rates(TRIALS, GAIN)
    print(f"detects a true +{GAIN} gain: overlap rule {real['overlap']:.0%}, paired rule {real['paired']:.0%} "
          f"(practically equivalent, base preferred: {real['equivalent']:.0%} -- the gain is half the 0.05 margin)")
    null = rates(TRIALS, 0.0)
    print(f"false winner, no true gain: overlap rule {null['overlap']:.0%}, paired rule {null['paired']:.0%}")
    corr = rates(TRIALS, 0.0, cluster_sd=0.06, size=4)
    print(f"false winner, no true gain, 4 correlated questions per section: overlap {corr['overlap']:.0%}, "
          f"paired by question {corr['paired']:.0%}, paired by section {corr['paired by section']:.0%}")
    wide = widening_rates()
    print(f"false alarms at nominal 5 %, 8 sections x 5 correlated questions, cluster bootstrap: plain percentile "
          f"interval {wide['plain']:.0%}, widened by sqrt(G/(G-1)) t/z {wide['widened']:.0%}")
    bench_timing()
    print_outcomes()


if __name__ == "__main__":
    main()
