"""The recommendation rule, on paired per-question scores (statistics: paired.py; reasons: reasons.py); docs/verdict.md.

1. Rank the variants by the mean of the primary metric (NLL: lower is better; perplexity is decided on its
   logarithm, the NLL). The first is the *leader*.
2. Compare the leader with every other variant on the paired per-question differences, clustered by source when
   the questions carry one, Holm-corrected over those comparisons (paired.compare_to_best). On the same draws:
   an equivalence test (TOST, equivalence.py) of each difference against the margin (+-``margin`` in the
   metric's units, EQUIVALENCE_MARGINS by default), Holm-corrected too, and P(best), the leader's share of the
   joint resamples in which it has the best mean.
3. Seeds: a variant scored with several training seeds enters with its per-question mean over the seeds.
   Its separation from the leader also needs the seeds to agree: every seed's mean must stay on the same side
   of the other variant's score(s) -- the worst seed of the better variant must still beat the best seed of
   the worse one. Otherwise the seeds flip the order and the two are treated as not separated. Likewise its
   equivalence needs every pair of seed means within the margin.
4. Three outcomes (``outcome``):
   - "equivalent": some variant cheaper than the leader (costs compared in COST_ORDER) is shown equivalent to
     it: recommend the cheapest such variant. Also when the leader is the cheapest and every variant it is not
     separated from is shown equivalent to it: recommend the leader. A difference smaller than the margin is
     not worth paying for, so this holds even when the cheaper variant is measurably behind.
   - "clear": otherwise, when every other variant, the runner-up in particular, is separated from the leader.
   - "inconclusive": otherwise. No variant is recommended (``variant`` is None): a variant that trails the
     leader without being shown equivalent is never recommended, and the leader is not yet shown best. The
     ``leader`` field names it, ``p_best`` gives P(best), ``more_questions`` how many questions beyond the ones
     scored would separate the leader from its closest rival (80 % power at the strictest Holm level), and the
     reason says how to get them (more Q/A pairs, generated questions, more training seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from assistant.compare import reasons
from assistant.compare.bootstrap import PAIRED_RESAMPLES, finite_values
from assistant.compare.equivalence import EQUIVALENCE_MARGINS
from assistant.compare.paired import compare_to_best
from assistant.compare.stats import mean_over_seeds, seed_spread
from foundation.errors import ArenaError
from foundation.metrics import HIGHER_IS_BETTER, METRIC_LABELS

OUTCOMES = ("clear", "equivalent", "inconclusive")
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
    """Which variant to use (None when inconclusive), why (sentences with numbers), the outcome, the statistics.

    ``outcome``: "clear" | "equivalent" | "inconclusive" (``clear`` is outcome == "clear"); ``leader`` the
    variant with the best mean (= ``best``), ``p_best`` its P(best), ``margin`` the equivalence margin in the
    metric's units (None: not tested), ``more_questions`` the questions to add to settle an inconclusive verdict."""

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
    outcome: str = "inconclusive"
    leader: str | None = None
    p_best: float | None = None
    margin: float | None = None
    more_questions: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recommendation:
        """A stored recommendation; one stored before the three outcomes had only ``clear`` (outcome "" when
        not clear: the old "no clear winner")."""
        known = {f.name for f in fields(cls)}
        rec = cls(**{"variant": None, "reason": "", "clear": False, "metric": "f1",
                     **{k: v for k, v in data.items() if k in known}})
        if data.get("outcome") not in OUTCOMES:
            rec.outcome = "clear" if rec.clear else ""
        return rec


def decision_metric(metric: str) -> str:
    """The metric the test runs on: perplexity's per-question values are heavy-tailed exps of the NLL."""
    return "nll" if metric == "ppl" else metric


def resolve_margin(metric: str, margin: float | None = None) -> float | None:
    """The equivalence margin: ``margin`` when given (0 or None = the metric's default), else the default."""
    if margin is not None and not margin >= 0:
        raise ArenaError(f"--equivalence-margin must be a positive number in the metric's units, got {margin}")
    return float(margin) if margin else EQUIVALENCE_MARGINS.get(decision_metric(metric))


def recommend_from_table(table: dict[str, dict[str, list]], costs: dict, metric: str = "f1",
                         sources: Sequence[str] | None = None, seed: int = 0,
                         seed_tables: Sequence[dict[str, dict[str, list]]] = (),
                         margin: float | None = None) -> Recommendation:
    """recommend() on a runner table (table[variant][metric] = per-question list).

    ``seed_tables``: tables of the same questions from adapters trained with other seeds, holding only the
    variants that depend on the seed (finetuned, rag+finetuned); a variant found in any of them is scored
    with one per-question list per seed."""
    m = decision_metric(metric)
    scores = {v: list(t[m]) for v, t in table.items() if m in t}
    other_seeds = {v: [list(t[v][m]) for t in seed_tables if m in t.get(v, {})] for v in scores}
    seed_scores = {v: [scores[v]] + runs for v, runs in other_seeds.items() if runs}
    return recommend(scores, costs, m, sources=sources, seed_scores=seed_scores, seed=seed, margin=margin)


def recommend(scores: dict[str, Sequence], costs: dict[str, dict], metric: str = "f1", *,
              sources: Sequence[str] | None = None, seed_scores: dict[str, Sequence[Sequence]] | None = None,
              seed: int = 0, n_resamples: int = PAIRED_RESAMPLES,
              margin: float | None = None) -> Recommendation:
    """Apply the rule to scores[variant] = per-question values of ``metric`` (None = not scored).

    ``seed_scores[variant]`` = one per-question list per training seed (the decide pipeline's --seeds); it
    replaces ``scores[variant]`` by the per-question mean over seeds and adds the seed-agreement check.
    ``margin``: the equivalence margin in the metric's units (None or 0: EQUIVALENCE_MARGINS)."""
    if metric not in HIGHER_IS_BETTER:
        raise ArenaError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    higher, label = HIGHER_IS_BETTER[metric], METRIC_LABELS[metric]
    margin = resolve_margin(metric, margin)
    scores, spreads = _with_seeds(scores, seed_scores or {})
    if sources is not None and scores and len(sources) != len(next(iter(scores.values()))):
        raise ArenaError(f"{len(sources)} sources for {len(next(iter(scores.values())))} questions: give one "
                         "source per question (or none)")
    means = {v: float(finite_values(vals).mean()) for v, vals in scores.items() if finite_values(vals).size}
    if not means:
        return Recommendation(None, f"No variant has a {label} score, so there is nothing to recommend.",
                              False, metric, margin=margin)
    ranked = sorted(means, key=lambda v: means[v], reverse=higher)
    best, n = ranked[0], max(len(s) for s in scores.values())
    base = {"metric": metric, "best": best, "leader": best, "n_questions": n, "means": means, "seeds": spreads,
            "margin": margin}
    if len(ranked) == 1:
        return Recommendation(best, f"Only {best} was scored: {label} {means[best]:.3f}.", True, outcome="clear",
                              p_best=1.0, **base)
    stats = compare_to_best({v: scores[v] for v in ranked}, best, higher, sources, seed, n_resamples, margin)
    comparisons = stats.pop("comparisons")
    for v, row in comparisons.items():
        row["seed_flip"], exceed = _seed_checks(spreads, means, best, v, higher, margin)
        row["separated"] = row["separated"] and not row["seed_flip"]
        if margin is not None:
            row["seeds_exceed_margin"] = exceed
            row["equivalent"] = row["equivalent"] and not exceed
    base.update(runner_up=ranked[1], comparisons=comparisons, stats=stats, p_best=stats["p_best"][best])
    return _verdict(ranked, costs, base)


def _verdict(ranked: list, costs: dict, base: dict) -> Recommendation:
    """Rule 4: equivalent (a cheaper variant within the margin) before clear, else inconclusive."""
    best, rows = ranked[0], base["comparisons"]
    shown_equivalent = [v for v in ranked[1:] if rows[v].get("equivalent")]
    # min() keeps the first of equal-cost variants, and ranked is best-first, so equal cost -> better score.
    choice = min([best] + shown_equivalent, key=lambda v: _cost_key(costs, v))
    if choice != best:
        key, phrase = cost_phrase(costs, choice, best)
        text = reasons.cheaper_equivalent(base, choice, phrase)
        return Recommendation(choice, text, False, outcome="equivalent", deciding_cost=key, **base)
    if all(row["separated"] for row in rows.values()):
        return Recommendation(best, reasons.clear(base, ranked[1]), True, outcome="clear", **base)
    if all(row["separated"] or row.get("equivalent") for row in rows.values()):
        near = [v for v, row in rows.items() if not row["separated"]]
        closest = min(near, key=lambda v: abs(rows[v]["mean"]))
        key, phrase = cost_phrase(costs, closest, best)
        text = reasons.leader_equivalent(base, near, closest, phrase)
        return Recommendation(best, text, False, outcome="equivalent", deciding_cost=key, **base)
    open_ = [v for v in ranked[1:] if not rows[v]["separated"] and not rows[v].get("equivalent")]
    return Recommendation(None, reasons.inconclusive(base, open_), False, outcome="inconclusive",
                          more_questions=_more_questions(rows[open_[0]], base["n_questions"]), **base)


def _with_seeds(scores: dict, seed_scores: dict) -> tuple[dict, dict]:
    scores = {v: list(vals) for v, vals in scores.items()}
    spreads = {}
    for v, runs in seed_scores.items():
        try:  # seed_spread refuses no runs or runs of unequal lengths
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


def _seed_checks(spreads: dict, means: dict, best: str, other: str, higher: bool, margin: float | None
                 ) -> tuple[bool, bool]:
    """Rule 3, only checked with seeds: (the worst seed of the best does not beat the best seed of the other,
    some seed of one and some seed of the other differ by the margin or more)."""
    if best not in spreads and other not in spreads:
        return False, False
    (b_lo, b_hi), (o_lo, o_hi) = _seed_range(spreads, means, best), _seed_range(spreads, means, other)
    exceed = margin is not None and max(b_hi - o_lo, o_hi - b_lo) >= margin
    return not (b_lo > o_hi if higher else b_hi < o_lo), exceed


def _cost_key(costs: dict, variant: str) -> tuple:
    c = costs.get(variant, {})
    return tuple(round(float(c.get(k) or 0.0), 6) for k in COST_ORDER)


def cost_phrase(costs: dict, cheap: str, other: str) -> tuple[str | None, str]:
    """The first cost in COST_ORDER where ``cheap`` and ``other`` differ, and a phrase with both values."""
    for key, a, b in zip(COST_ORDER, _cost_key(costs, cheap), _cost_key(costs, other), strict=True):
        if a != b:
            return key, COST_PHRASES[key].format(a=a, b=b, other=other)
    return None, ""


def _more_questions(row: dict, n: int) -> int | None:
    needed = row.get("questions_needed")
    return needed - n if needed and needed > n and not row.get("seed_flip") else None


# ---------------------------------------------------------------- the verdict in one line, for every reader


def headline(rec: Recommendation) -> str:
    """'rag (clear winner)', 'rag (practically equivalent to ... and cheaper)' or 'no variant yet (...)'."""
    outcome, variant = rec.outcome, rec.variant
    leader = rec.leader or rec.best
    label = METRIC_LABELS.get(rec.metric, rec.metric)
    if outcome == "clear":
        return f"{variant} (clear winner)"
    if outcome == "equivalent" and variant != leader:
        return (f"{variant} (practically equivalent: within ±{rec.margin:g} {label} of the leader {leader}, "
                "and cheaper)")
    if outcome == "equivalent":
        return (f"{variant} (practically equivalent: the leader, and those it does not beat are within "
                f"±{rec.margin:g} {label} and no cheaper)")
    if outcome == "inconclusive" and leader:
        return f"no variant yet (inconclusive: {leader} leads, P(best) {(rec.p_best or 0) * 100:.0f} %)"
    if outcome == "inconclusive":
        return "no variant (nothing was scored)"
    return f"{variant or 'none'} (no clear winner)"
