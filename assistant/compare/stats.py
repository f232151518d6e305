"""Bootstrap confidence intervals and paired differences over per-question scores (seeded, reproducible)."""

from __future__ import annotations

import math

import numpy as np

N_RESAMPLES = 2000


def _clean(values) -> np.ndarray:
    """Float array without the None/NaN entries (a metric that does not apply to some questions)."""
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[~np.isnan(arr)]


def bootstrap_ci(values, seed: int = 0, n_resamples: int = N_RESAMPLES, level: float = 0.95) -> dict:
    """Mean with a percentile-bootstrap interval: {"mean", "ci_low", "ci_high", "n"}; None when empty."""
    arr = _clean(values)
    if arr.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    if arr.size == 1:
        value = float(arr[0])
        return {"mean": value, "ci_low": value, "ci_high": value, "n": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    means = arr[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(arr.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(arr.size)}


def paired_difference(a, b, seed: int = 0, n_resamples: int = N_RESAMPLES, level: float = 0.95) -> dict:
    """Mean of a - b over questions both scored, with a bootstrap interval resampling whole questions."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    diffs = [None if x is None or y is None else float(x) - float(y) for x, y in zip(a, b, strict=True)]
    return bootstrap_ci(diffs, seed=seed, n_resamples=n_resamples, level=level)


def summarize(scores: dict[str, dict[str, list]], seed: int = 0) -> dict[str, dict[str, dict]]:
    """scores[variant][metric] = per-question list -> summary[variant][metric] = bootstrap_ci(...)."""
    return {variant: {metric: bootstrap_ci(vals, seed=seed) for metric, vals in metrics.items()}
            for variant, metrics in scores.items()}


def paired_against(scores: dict[str, dict[str, list]], reference: str = "base", seed: int = 0) -> dict:
    """Paired differences of every other variant against ``reference`` on every shared metric."""
    if reference not in scores:
        return {}
    out = {}
    for variant, metrics in scores.items():
        if variant == reference:
            continue
        out[variant] = {m: paired_difference(vals, scores[reference][m], seed=seed)
                        for m, vals in metrics.items() if m in scores[reference]}
    return out


def exp_summary(nll_summary: dict) -> dict:
    """Perplexity summary from an NLL summary: exp is monotone, so the interval maps through it."""
    def _exp(v):
        return None if v is None else math.exp(min(v, 50.0))
    return {"mean": _exp(nll_summary["mean"]), "ci_low": _exp(nll_summary["ci_low"]),
            "ci_high": _exp(nll_summary["ci_high"]), "n": nll_summary["n"]}
