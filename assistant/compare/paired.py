"""The leader against every other variant: paired differences on shared bootstrap draws, Holm-adjusted, with
McNemar for binary metrics, the questions needed, the equivalence test and P(best) (the rules: bootstrap.py,
stats.py, equivalence.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from assistant.compare.bootstrap import PAIRED_RESAMPLES, Draws, Resampler, as_array, p_best
from assistant.compare.equivalence import add_equivalence
from assistant.compare.stats import ALPHA, holm, holm_walk, mcnemar_exact, questions_needed


def compare_to_best(scores: dict[str, Sequence], best: str, higher: bool, sources: Sequence[str] | None = None,
                    seed: int = 0, n_resamples: int = PAIRED_RESAMPLES, margin: float | None = None) -> dict:
    """Paired best - other for every other variant, Holm-adjusted at ALPHA: {"comparisons": {variant: {...}}, ...}.

    Each comparison: mean (best - other, in the metric's units), ci_low/ci_high (adjusted interval), level
    (its Holm alpha), p_value, p_adjusted, test ("bootstrap" or "mcnemar"), mcnemar, separated, n, sd, se,
    questions_needed (at alpha / m); with a ``margin`` also the equivalence test's fields (equivalence.py). The
    result also holds p_best: {variant: P(best)}."""
    others = [v for v in scores if v != best]
    resampler = Resampler.build(len(scores[best]), sources, seed=seed, n_resamples=n_resamples)
    top = as_array(scores[best])
    rows, draws = {}, {}
    for v in others:
        diffs = top - as_array(scores[v])
        draws[v] = resampler.draws(diffs)
        rows[v] = _comparison_row(diffs, draws[v], scores[best], scores[v], resampler.clustered,
                                  ALPHA / max(len(others), 1))
    steps = holm([rows[v]["p_value"] for v in others], ALPHA,
                 tiebreak=[-abs(rows[v]["mean"]) / (rows[v]["se"] or 1e-12) for v in others])

    def excludes_zero(v: str, level: float) -> bool:
        low, high = draws[v].interval(level)
        return low > 0 if higher else high < 0

    for v, step, level, separated in holm_walk(others, steps, excludes_zero):
        low, high = draws[v].interval(level)
        rows[v].update(ci_low=low, ci_high=high, level=level, p_adjusted=step["p_adjusted"], separated=separated)
    if margin is not None:
        add_equivalence(rows, draws, margin)
    return {"comparisons": rows, "clustered": resampler.clustered, "clusters": resampler.n_clusters,
            "note": resampler.note, "alpha": ALPHA, "resamples": n_resamples, "margin": margin,
            "p_best": p_best(scores, higher, resampler)}


def _comparison_row(diffs: np.ndarray, draws: Draws, best_scores, other_scores, clustered: bool,
                    power_alpha: float) -> dict:
    valid = diffs[~np.isnan(diffs)]
    se = float(np.nanstd(draws.means))
    # The design effect of clustering is carried by the bootstrap SE; without clusters the plain SD is used.
    sd = se * math.sqrt(valid.size) if clustered else float(valid.std(ddof=1)) if valid.size > 1 else 0.0
    mcnemar = mcnemar_exact(best_scores, other_scores)
    use_mcnemar = mcnemar is not None and not clustered
    p_value = mcnemar["p_value"] if use_mcnemar else draws.p_value()
    return {"mean": draws.center, "n": int(valid.size), "sd": sd, "se": se, "p_value": p_value,
            "test": "mcnemar" if use_mcnemar else "bootstrap", "mcnemar": mcnemar,
            "questions_needed": questions_needed(draws.center, sd, power_alpha) if sd > 0 else None}
