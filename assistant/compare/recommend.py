"""The recommendation rule: a clear winner only when its interval separates, else the cheaper tied variant."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from assistant.compare.metrics import HIGHER_IS_BETTER, METRIC_LABELS
from assistant.errors import ArenaError

# Costs in the order they decide a tie: training is paid once but is the biggest effort, prompt tokens are
# paid on every question, memory is the smallest concern on a machine that already holds the base model.
COST_ORDER = ("training_seconds", "extra_prompt_tokens", "memory_mb")
COST_PHRASES = {
    "training_seconds": "needs {a:g} s of adapter training instead of {b:g} s for {other}",
    "extra_prompt_tokens": "adds {a:.0f} prompt tokens per question instead of {b:.0f} for {other}",
    "memory_mb": "needs {a:.1f} MB of extra memory instead of {b:.1f} MB for {other}",
}


@dataclass
class Recommendation:
    """Which variant to use, why (one or two sentences with numbers), and whether it was a clear win."""

    variant: str | None
    reason: str
    clear: bool
    metric: str
    deciding_cost: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(summary: dict) -> str:
    return f"{summary['mean']:.3f} (95 % CI {summary['ci_low']:.3f}–{summary['ci_high']:.3f})"


def _separates(best: dict, other: dict, higher: bool) -> bool:
    return best["ci_low"] > other["ci_high"] if higher else best["ci_high"] < other["ci_low"]


def _cost_key(costs: dict, variant: str) -> tuple:
    c = costs.get(variant, {})
    return tuple(round(float(c.get(k) or 0.0), 6) for k in COST_ORDER)


def _deciding_cost(costs: dict, cheap: str, other: str) -> str | None:
    for key, a, b in zip(COST_ORDER, _cost_key(costs, cheap), _cost_key(costs, other), strict=True):
        if a != b:
            return key
    return None


def _cost_phrase(key: str, cheap_value: float, other_value: float, other: str) -> str:
    return COST_PHRASES[key].format(a=cheap_value, b=other_value, other=other)


def recommend(summary: dict[str, dict[str, dict]], costs: dict[str, dict], metric: str = "f1") -> Recommendation:
    """Apply the rule to summary[variant][metric] = {"mean","ci_low","ci_high"} and per-variant costs."""
    if metric not in HIGHER_IS_BETTER:
        raise ArenaError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    higher, label = HIGHER_IS_BETTER[metric], METRIC_LABELS[metric]
    scored = {v: m[metric] for v, m in summary.items() if m.get(metric, {}).get("mean") is not None}
    if not scored:
        return Recommendation(None, f"No variant has a {label} score, so there is nothing to recommend.",
                              False, metric)
    ranked = sorted(scored, key=lambda v: scored[v]["mean"], reverse=higher)
    best = ranked[0]
    if len(ranked) == 1:
        return Recommendation(best, f"Only {best} was scored: {label} {_fmt(scored[best])}.", False, metric)
    runner = ranked[1]
    if _separates(scored[best], scored[runner], higher):
        reason = (f"{best} is best on {label} with {_fmt(scored[best])}, ahead of the runner-up {runner} "
                  f"at {_fmt(scored[runner])}; the intervals do not overlap.")
        return Recommendation(best, reason, True, metric)
    return _cheaper_of_tied(scored, ranked, costs, metric)


def _cheaper_of_tied(scored: dict, ranked: list[str], costs: dict, metric: str) -> Recommendation:
    higher, label = HIGHER_IS_BETTER[metric], METRIC_LABELS[metric]
    best = ranked[0]
    tied = [v for v in ranked if not _separates(scored[best], scored[v], higher)]
    # min() keeps the first of equal-cost variants, and ranked is best-first, so equal cost -> better score.
    cheap = min(tied, key=lambda v: _cost_key(costs, v))
    other = ranked[1] if cheap == best else best
    listing = ", ".join(f"{v} {_fmt(scored[v])}" for v in tied)
    head = f"No clear winner on {label}: the intervals of {listing} overlap."
    key = _deciding_cost(costs, cheap, other)
    if key is None:
        return Recommendation(cheap, f"{head} They cost the same, so prefer {cheap}, the higher-scoring one.",
                              False, metric)
    a = _cost_key(costs, cheap)[COST_ORDER.index(key)]
    b = _cost_key(costs, other)[COST_ORDER.index(key)]
    reason = f"{head} Prefer the cheaper: {cheap}, which {_cost_phrase(key, a, b, other)}."
    return Recommendation(cheap, reason, False, metric, key)
