"""Tests of a comparison beyond the bootstrap (bootstrap.py): summaries, exact McNemar, Holm, sample size, seeds.

1. Per-variant summaries: each metric's mean with its 95 % bootstrap interval; paired differences against a
   reference variant; perplexity's interval is the NLL's mapped through exp.
2. For a binary metric (every score 0 or 1: exact match, contains) without clusters, the exact McNemar test gives
   the p-value of a paired difference instead of the bootstrap: a two-sided exact binomial test
   (scipy.stats.binomtest) of the b pairs "first right, second wrong" among the b + c discordant pairs against
   1/2. McNemar treats pairs as independent, so with clusters the bootstrap p is used and McNemar is reported
   alongside.
3. Holm over the m comparisons "best - other": order by p ascending (ties: larger |mean|/SE first); the i-th
   (1-based) is tested at alpha / (m - i + 1); testing stops at the first that fails. Adjusted p-values:
   p_adj(i) = max over j <= i of min(1, (m - j + 1) * p(j)). Adjusted interval: the i-th comparison's
   (widened) percentile interval at level 1 - alpha / (m - i + 1); a comparison at or after the stop gets the
   stop's level, whose wider interval reaches 0 when the test failed there. A comparison is *separated* when
   Holm rejects it (p_adj < alpha) and its adjusted interval excludes 0.
4. Sample size: the number of questions for 80 % power of a two-sided z-test at the strictest Holm level
   alpha / m (normal approximation): n = ((z(1 - alpha / (2m)) + z(0.8)) * sigma / |delta|)^2, delta the
   observed paired mean, sigma the SD of the per-question differences; with clusters sigma = bootstrap SE *
   sqrt(n), which keeps the design effect of the clustering.
5. Seeds: a variant trained with several seeds is scored per question by its mean over the seeds; its spread
   is the SD and range of the per-seed means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from statistics import NormalDist

import numpy as np

from assistant.compare.bootstrap import as_array, bootstrap_ci, finite_values, paired_difference
from foundation.metrics import perplexity

ALPHA = 0.05
POWER = 0.8


def summarize(scores: dict[str, dict[str, list]], seed: int = 0) -> dict[str, dict[str, dict]]:
    """scores[variant][metric] = per-question list -> summary[variant][metric] = bootstrap_ci(...)."""
    return {variant: {metric: bootstrap_ci(vals, seed=seed) for metric, vals in metrics.items()}
            for variant, metrics in scores.items()}


def paired_against(scores: dict[str, dict[str, list]], reference: str = "base", seed: int = 0) -> dict:
    """Paired differences of every other variant against ``reference`` on every shared metric."""
    if reference not in scores:
        return {}
    return {variant: {m: paired_difference(vals, scores[reference][m], seed=seed)
                      for m, vals in metrics.items() if m in scores[reference]}
            for variant, metrics in scores.items() if variant != reference}


def exp_summary(nll_summary: dict) -> dict:
    """Perplexity summary from an NLL summary: exp is monotone, so the interval maps through it."""
    return {**{k: perplexity(nll_summary[k]) for k in ("mean", "ci_low", "ci_high")}, "n": nll_summary["n"]}


def mcnemar_exact(a, b) -> dict | None:
    """Exact McNemar test of two binary score lists: {"b", "c", "p_value"}; None when a score is not 0/1."""
    from scipy.stats import binomtest

    x, y = as_array(a), as_array(b)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if not np.isin(x, (0.0, 1.0)).all() or not np.isin(y, (0.0, 1.0)).all():
        return None
    b_count, c_count = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    n = b_count + c_count
    p = 1.0 if n == 0 else float(binomtest(b_count, n, 0.5, alternative="two-sided").pvalue)
    return {"b": b_count, "c": c_count, "p_value": p}


def holm(pvalues: Sequence[float], alpha: float = ALPHA, tiebreak: Sequence[float] | None = None) -> list[dict]:
    """Holm step-down (rule 3), per input position: {"rank", "level", "p_adjusted", "rejected"}.

    ``tiebreak`` orders equal p-values (smaller first)."""
    m = len(pvalues)
    keys = tiebreak if tiebreak is not None else [0.0] * m
    order = sorted(range(m), key=lambda i: (pvalues[i], keys[i], i))
    out: list[dict] = [{} for _ in range(m)]
    running, stopped = 0.0, False
    for rank, i in enumerate(order, 1):
        level = alpha / (m - rank + 1)
        running = max(running, min(1.0, (m - rank + 1) * pvalues[i]))
        stopped = stopped or pvalues[i] >= level
        out[i] = {"rank": rank, "level": level, "p_adjusted": running, "rejected": not stopped}
    return out


def holm_walk(names: Sequence[str], steps: list[dict],
              passes: Callable[[str, float], bool]) -> Iterator[tuple[str, dict, float, bool]]:
    """(name, step, level, passed) in Holm order: a comparison passes when Holm rejects it, ``passes(name,
    level)`` and none before it failed; from the first failure on every comparison gets that step's level."""
    stop = None
    for name, step in sorted(zip(names, steps, strict=True), key=lambda pair: pair[1]["rank"]):
        level = stop or step["level"]
        passed = stop is None and step["rejected"] and passes(name, level)
        if not passed and stop is None:
            stop = level
        yield name, step, level, passed


def questions_needed(mean_diff: float, sd_diff: float, alpha: float) -> int | None:
    """Questions for POWER of a two-sided z-test at ``alpha`` (rule 4); None when the mean is 0."""
    # |mean| below float rounding of a sum of scores counts as no difference at all
    if abs(mean_diff) < 1e-12 or not math.isfinite(mean_diff) or not math.isfinite(sd_diff):
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(POWER)
    return max(2, math.ceil((z * sd_diff / abs(mean_diff)) ** 2))


def mean_over_seeds(per_seed: Sequence[Sequence]) -> list[float | None]:
    """Per-question mean over seeds (None where no seed scored the question)."""
    arr = np.vstack([as_array(s) for s in per_seed])
    counts = np.sum(~np.isnan(arr), axis=0)
    sums = np.nansum(arr, axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]


def seed_spread(per_seed: Sequence[Sequence]) -> dict:
    """Mean and spread of a variant's per-seed mean scores: {"seeds", "mean", "sd", "min", "max", "per_seed"}."""
    lengths = {len(s) for s in per_seed}
    if not per_seed or len(lengths) != 1:
        raise ValueError(f"per-seed scores need one equal-length list per seed, got lengths {sorted(lengths)}")
    means = [float(np.mean(vals)) if vals.size else math.nan for vals in map(finite_values, per_seed)]
    arr = np.array(means)
    return {"seeds": len(means), "mean": float(np.nanmean(arr)),
            "sd": float(np.nanstd(arr, ddof=1)) if len(means) > 1 else 0.0,
            "min": float(np.nanmin(arr)), "max": float(np.nanmax(arr)), "per_seed": means}
