"""The recommendation rule, on paired per-question scores (the statistics are in stats.py).

1. Rank the variants by the mean of the primary metric (NLL: lower is better; perplexity is decided on its
   logarithm, the NLL).
2. Compare the best with every other variant on the paired per-question differences, clustered by source when
   the questions carry one, Holm-corrected over those comparisons (stats.compare_to_best).
3. Seeds: a variant scored with several training seeds enters with its per-question mean over the seeds.
   Its separation from the best also needs the seeds to agree: every seed's mean must stay on the same side
   of the other variant's score(s) -- the worst seed of the better variant must still beat the best seed of
   the worse one. Otherwise the seeds flip the order and the two are treated as not separated.
4. A clear winner when every other variant, the runner-up in particular, is separated from the best.
5. Otherwise "no clear winner -- prefer the cheaper" among the best and the variants not separated from it,
   comparing costs in COST_ORDER; the reason also says how many questions would settle best vs the closest
   variant (80 % power at the strictest Holm level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from assistant.compare.metrics import HIGHER_IS_BETTER, METRIC_LABELS
from assistant.compare.stats import (
    ALPHA,
    PAIRED_RESAMPLES,
    compare_to_best,
    finite_values,
    mean_over_seeds,
    seed_spread,
)
from foundation.errors import ArenaError

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
    """Which variant to use, why (sentences with numbers), whether it was a clear win, and the statistics."""

    variant: str | None
    reason: str
    clear: bool
    metric: str
    deciding_cost: str | None = None
    best: str | None = None
    runner_up: str | None = None
    n_questions: int = 0
    means: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def decision_metric(metric: str) -> str:
    """The metric the test runs on: perplexity's per-question values are heavy-tailed exps of the NLL."""
    return "nll" if metric == "ppl" else metric


def recommend_from_table(table: dict[str, dict[str, list]], costs: dict, metric: str = "f1",
                         sources: Sequence[str] | None = None, seed: int = 0,
                         seed_tables: Sequence[dict[str, dict[str, list]]] = ()) -> Recommendation:
    """recommend() on a runner table (table[variant][metric] = per-question list).

    ``seed_tables``: tables of the same questions from adapters trained with other seeds, holding only the
    variants that depend on the seed (finetuned, rag+finetuned); a variant found in any of them is scored
    with one per-question list per seed."""
    m = decision_metric(metric)
    scores = {v: list(t[m]) for v, t in table.items() if m in t}
    seed_scores = {}
    for v in scores:
        runs = [scores[v]] + [list(t[v][m]) for t in seed_tables if m in t.get(v, {})]
        if len(runs) > 1:
            seed_scores[v] = runs
    return recommend(scores, costs, m, sources=sources, seed_scores=seed_scores, seed=seed)


def recommend(scores: dict[str, Sequence], costs: dict[str, dict], metric: str = "f1", *,
              sources: Sequence[str] | None = None, seed_scores: dict[str, Sequence[Sequence]] | None = None,
              alpha: float = ALPHA, seed: int = 0, n_resamples: int = PAIRED_RESAMPLES) -> Recommendation:
    """Apply the rule to scores[variant] = per-question values of ``metric`` (None = not scored).

    ``seed_scores[variant]`` = one per-question list per training seed (the decide pipeline's --seeds); it
    replaces ``scores[variant]`` by the per-question mean over seeds and adds the seed-agreement check."""
    if metric not in HIGHER_IS_BETTER:
        raise ArenaError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    higher, label = HIGHER_IS_BETTER[metric], METRIC_LABELS[metric]
    scores, spreads = _with_seeds(scores, seed_scores or {})
    if sources is not None and scores and len(sources) != len(next(iter(scores.values()))):
        raise ArenaError(f"{len(sources)} sources for {len(next(iter(scores.values())))} questions: give one "
                         "source per question (or none)")
    means = {v: float(finite_values(vals).mean()) for v, vals in scores.items() if finite_values(vals).size}
    if not means:
        return Recommendation(None, f"No variant has a {label} score, so there is nothing to recommend.",
                              False, metric)
    ranked = sorted(means, key=lambda v: means[v], reverse=higher)
    best, n = ranked[0], max(len(s) for s in scores.values())
    base = {"metric": metric, "best": best, "n_questions": n, "means": means, "seeds": spreads}
    if len(ranked) == 1:
        return Recommendation(best, f"Only {best} was scored: {label} {means[best]:.3f}.", False, **base)
    stats = compare_to_best({v: scores[v] for v in ranked}, best, higher, sources, alpha, seed, n_resamples)
    comparisons = stats.pop("comparisons")
    for v, row in comparisons.items():
        row["seed_flip"] = _seeds_flip(spreads, means, best, v, higher)
        row["separated"] = row["separated"] and not row["seed_flip"]
    base.update(runner_up=ranked[1], comparisons=comparisons, stats=stats)
    if all(row["separated"] for row in comparisons.values()):
        return Recommendation(best, _clear_reason(best, ranked[1], comparisons, means, spreads, label, n, stats),
                              True, **base)
    return _cheaper_of_tied(ranked, comparisons, means, spreads, costs, label, n, base)


def _with_seeds(scores: dict, seed_scores: dict) -> tuple[dict, dict]:
    scores = {v: list(vals) for v, vals in scores.items()}
    spreads = {}
    for v, runs in seed_scores.items():
        if len(runs) < 1:
            raise ArenaError(f"variant {v!r}: per-seed scores are empty")
        try:
            spreads[v] = seed_spread(runs)
        except ValueError as exc:
            raise ArenaError(f"variant {v!r}: {exc}") from exc
        scores[v] = mean_over_seeds(runs)
    lengths = {v: len(vals) for v, vals in scores.items()}
    if len(set(lengths.values())) > 1:
        raise ArenaError(f"paired scores need the same questions for every variant, got lengths {lengths}")
    return scores, spreads


def _seed_range(spreads: dict, means: dict, v: str) -> tuple[float, float]:
    s = spreads.get(v)
    return (s["min"], s["max"]) if s else (means[v], means[v])


def _seeds_flip(spreads: dict, means: dict, best: str, other: str, higher: bool) -> bool:
    """Rule 3: the worst seed of the best must beat the best seed of the other (only checked with seeds)."""
    if best not in spreads and other not in spreads:
        return False
    (b_lo, b_hi), (o_lo, o_hi) = _seed_range(spreads, means, best), _seed_range(spreads, means, other)
    return not (b_lo > o_hi if higher else b_hi < o_lo)


def _gap(row: dict, n: int, stats: dict) -> str:
    """'+0.048 (Holm-adjusted 97.5 % paired interval +0.043 to +0.053; 60 questions in 12 source clusters)'."""
    conf = (1 - row["level"]) * 100
    where = f" in {stats['clusters']} source clusters" if stats.get("clustered") else ""
    mc = row.get("mcnemar")
    exact = f"; exact McNemar p = {mc['p_value']:.3g}, Holm-adjusted {row['p_adjusted']:.3g}" if mc else ""
    return (f"{row['mean']:+.3f} (Holm-adjusted {conf:.4g} % paired interval {row['ci_low']:+.3f} to "
            f"{row['ci_high']:+.3f}; {n} questions{where}{exact})")


def _about(needed: int) -> str:
    """Two significant figures: the estimate is rough, more digits would pretend otherwise."""
    return f"{needed:,}" if needed < 100 else f"{round(needed, 2 - len(str(needed))):,}"


def _seed_text(spreads: dict, v: str) -> str:
    s = spreads.get(v)
    if not s:
        return ""
    return (f" Across {s['seeds']} training seeds {v} scored {s['mean']:.3f} ± {s['sd']:.3f} "
            f"(range {s['min']:.3f}–{s['max']:.3f}).")


def _clear_reason(best, runner, comparisons, means, spreads, label, n, stats) -> str:
    text = (f"{best} is best on {label} with {means[best]:.3f}, ahead of the runner-up {runner} at "
            f"{means[runner]:.3f} by {_gap(comparisons[runner], n, stats)}; every other variant is measurably "
            "behind too.")
    return text + _seed_text(spreads, best) + _seed_text(spreads, runner)


def _settle_text(best: str, closest: str, row: dict, n: int) -> str:
    needed = row.get("questions_needed")
    if row.get("seed_flip"):
        return (f" The training seeds disagree on the order of {best} and {closest}: more seeds or a steadier "
                "training recipe would settle it.")
    if needed is None and abs(row["mean"]) < 1e-12:
        return (f" {best} and {closest} have the same mean score on these questions, so more questions would "
                "not separate them.")
    if needed is None:
        return f" {n} question(s) are too few to measure how much the difference varies; add more questions."
    if needed <= n:
        return (f" With {n} questions the difference between {best} and {closest} is at the edge of what this "
                "test can detect; a few more questions would settle it.")
    return f" About {_about(needed)} questions would settle {best} vs {closest}; you have {n}."


def _cost_key(costs: dict, variant: str) -> tuple:
    c = costs.get(variant, {})
    return tuple(round(float(c.get(k) or 0.0), 6) for k in COST_ORDER)


def _deciding_cost(costs: dict, cheap: str, other: str) -> str | None:
    for key, a, b in zip(COST_ORDER, _cost_key(costs, cheap), _cost_key(costs, other), strict=True):
        if a != b:
            return key
    return None


def cost_phrase(costs: dict, cheap: str, other: str) -> tuple[str | None, str]:
    """The first cost in COST_ORDER where ``cheap`` and ``other`` differ, and a phrase with both values."""
    key = _deciding_cost(costs, cheap, other)
    if key is None:
        return None, ""
    i = COST_ORDER.index(key)
    a, b = _cost_key(costs, cheap)[i], _cost_key(costs, other)[i]
    return key, COST_PHRASES[key].format(a=a, b=b, other=other)


def _cheaper_of_tied(ranked, comparisons, means, spreads, costs, label, n, base) -> Recommendation:
    best = ranked[0]
    tied = [best] + [v for v in ranked[1:] if not comparisons[v]["separated"]]
    closest = tied[1]
    # min() keeps the first of equal-cost variants, and ranked is best-first, so equal cost -> better score.
    cheap = min(tied, key=lambda v: _cost_key(costs, v))
    other = closest if cheap == best else best
    listing = ", ".join(f"{v} {means[v]:.3f}" for v in tied[1:])
    head = (f"No clear winner on {label}: {best} scores highest ({means[best]:.3f}) but is not measurably "
            f"ahead of {listing}; against {closest} the difference is {_gap(comparisons[closest], n, base['stats'])}.")
    head += _seed_text(spreads, best) + _seed_text(spreads, closest)
    head += _settle_text(best, closest, comparisons[closest], n)
    key, phrase = cost_phrase(costs, cheap, other)
    if key is None:
        return Recommendation(cheap, f"{head} They cost the same, so prefer {cheap}, the higher-scoring one.",
                              False, **base)
    return Recommendation(cheap, f"{head} Prefer the cheaper: {cheap}, which {phrase}.", False,
                          deciding_cost=key, **base)
