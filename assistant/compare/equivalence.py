"""Practical equivalence: is the leader - other difference inside (-margin, +margin)? (TOST, docs/verdict.md)

Two one-sided tests: the difference is shown inside the margins at alpha when its widened paired interval
(bootstrap.py, rule 4) at level 1 - 2 alpha lies inside them -- both one-sided tests reject at alpha. The TOST
p-value is the smallest alpha at which it does. Holm runs over the same m comparisons as the difference test, so
the chance of calling any truly non-equivalent pair equivalent stays under alpha; the adjusted TOST interval is
the one at level 1 - 2 x (its Holm level).
"""

from __future__ import annotations

from assistant.compare.bootstrap import P_MAX, Draws, smallest_alpha
from assistant.compare.stats import ALPHA, holm, holm_walk

# Scores in [0, 1] (exact match and contains: shares of questions); the reports' axes use it too.
UNIT_METRICS = ("f1", "rougeL", "exact", "contains", "semantic", "judge", "groundedness", "retrieval_hit")
# Default margins, in the decision metric's own units. Scores in [0, 1]: 0.05, five points on the 0-100
# scale -- smaller than the gaps between strategies worth acting on (0.1 and more in our FAQ runs), larger than
# what rounding of a few answers moves. NLL (nats per reference token): 0.05 nats, a perplexity ratio of
# exp(0.05) = 1.05, the same 5 % in relative terms. Other metrics (latency, speed) have no natural scale: no
# equivalence test unless a margin is given.
BOUNDED_MARGIN = 0.05
NLL_MARGIN = 0.05
EQUIVALENCE_MARGINS = {**dict.fromkeys(UNIT_METRICS, BOUNDED_MARGIN), "nll": NLL_MARGIN}


def tost_p_value(draws: Draws, margin: float) -> float:
    """The smallest alpha at which the 1 - 2 alpha interval of ``draws`` lies inside (-margin, margin)."""
    def inside(alpha):
        low, high = draws.interval(2 * alpha)
        return -margin < low and high < margin

    return smallest_alpha(inside, P_MAX / 2) if draws.measurable and margin > 0 else 1.0


def add_equivalence(rows: dict, draws: dict[str, Draws], margin: float, alpha: float = ALPHA) -> None:
    """The test on every comparison, Holm over them: adds tost_p, tost_p_adjusted, tost_level, tost_low/tost_high
    (the adjusted 1 - 2 level interval) and ``equivalent`` to each row."""
    names = list(rows)
    pvalues = {v: tost_p_value(draws[v], margin) for v in names}
    steps = holm([pvalues[v] for v in names], alpha, tiebreak=[abs(rows[v]["mean"]) for v in names])
    for v, step, level, equivalent in holm_walk(names, steps, lambda v, level: True):
        low, high = draws[v].interval(2 * level) if draws[v].units >= 2 else (rows[v]["mean"], rows[v]["mean"])
        rows[v].update(tost_p=pvalues[v], tost_p_adjusted=step["p_adjusted"], tost_level=level, tost_low=low,
                       tost_high=high, equivalent=equivalent)
