"""Why each losing strategy lost: one plain sentence per variant from measurements the run already has.

Inputs (all in the comparison result): the verdict's paired comparisons, the retrieval hit share of the RAG
variants (their ceiling: an answer the retriever did not find cannot be read from the passages), the adapter's
score on a sample of its own training questions against held-out ones ("learned"), the forgetting probe, and
the costs (training time, prompt tokens per question, seconds per answer).
"""

from __future__ import annotations

from assistant.compare.equivalence import UNIT_METRICS
from assistant.compare.recommend import Recommendation, cost_phrase
from assistant.compare.result import ComparisonResult, cost_table, mean_of
from foundation.metrics import METRIC_LABELS
from foundation.variants import ADAPTER_VARIANTS, RAG_VARIANTS

LOW_HIT = 0.6         # below this share of found answers, retrieval rather than the model limits RAG
MEMORISED_GAP = 0.15  # training-question score this far above held-out: learned answers that do not carry over
NOT_LEARNED = 0.3     # training-question score below this: the adapter did not learn its own data
SLOWER = 1.5          # answers this many times slower than the recommended variant's are worth saying
MAX_DIAGNOSES = 2     # one sentence: the standing plus the two most telling measurements


def why_sentences(result: ComparisonResult) -> dict[str, str]:
    """{variant: sentence} for every compared variant except the recommended one (when the verdict is
    inconclusive: except the leader, so each sentence says where that variant stands against it)."""
    rec = result.recommendation
    chosen = _chosen(rec)
    if chosen is None or not rec.means:
        return {}
    out = {}
    for v in rec.means:
        if v == chosen:
            continue
        standing, named_cost = _standing(result, v)
        clauses = [standing] + _diagnoses(result, v, named_cost)[:MAX_DIAGNOSES]
        sentence = "; ".join(c for c in clauses if c)
        out[v] = sentence[0].upper() + sentence[1:] + "."
    return out


def _chosen(rec: Recommendation) -> str | None:
    """The variant the others are explained against: the recommended one, or the leader of an open verdict."""
    if rec.variant is None and rec.outcome == "inconclusive":
        return rec.leader or rec.best
    return rec.variant


def _standing(result: ComparisonResult, v: str) -> tuple[str, str | None]:
    """How the variant stands against the best, and the cost it names (so a diagnosis does not repeat it)."""
    rec = result.recommendation
    chosen, best, means = _chosen(rec), rec.best, rec.means
    label = METRIC_LABELS.get(rec.metric, rec.metric)
    row = rec.comparisons.get(v, {})
    within = f"within the ±{rec.margin:g} equivalence margin of" if rec.margin is not None else ""
    if v != best and row.get("separated") and not row.get("equivalent"):
        return (f"its {label} of {means[v]:.3f} is measurably below {best}'s {means[best]:.3f} "
                f"(by {abs(row['mean']):.3f})"), None
    if rec.outcome == "inconclusive" and not row.get("equivalent"):
        return (f"its {label} of {means[v]:.3f} trails the leader {best} ({means[best]:.3f}) by "
                f"{abs(row.get('mean', 0.0)):.3f}, not measurably: more questions are needed to rule it out"), None
    key, phrase = cost_phrase(cost_table(result.costs), v, chosen)
    cost = f", and it {phrase}" if phrase else " at the same cost, and it ranked lower"
    chosen_row = rec.comparisons.get(chosen, {})
    if v == best and chosen_row.get("equivalent"):
        return (f"it scored highest on {label} ({means[v]:.3f}), but {chosen} ({means[chosen]:.3f}) is "
                f"{within} it{cost}"), key
    if v == best:
        return (f"it scored highest on {label} ({means[v]:.3f}) but not measurably above {chosen} "
                f"({means[chosen]:.3f}){cost}"), key
    if row.get("equivalent"):
        return f"its {label} of {means[v]:.3f} is {within} {best}'s {means[best]:.3f} too{cost}", key
    if row.get("seed_flip"):
        return f"its {label} of {means[v]:.3f} changes order with {best}'s across training seeds{cost}", key
    return f"its {label} of {means[v]:.3f} is not measurably different from {best}'s {means[best]:.3f}{cost}", key


def _diagnoses(result: ComparisonResult, v: str, named_cost: str | None = None) -> list[str]:
    """Measured reasons, most telling first (without the cost the standing already named)."""
    out = []
    if v in RAG_VARIANTS:
        out.append(_rag_ceiling(result, v))
    if v in ADAPTER_VARIANTS:
        out += [_learned(result), _forgetting(result)]
    if v == "base":
        out.append("it answers from pretraining alone, without your documents or any training")
    if v == "prompt" and named_cost != "extra_prompt_tokens":
        out.append(_prompt_tokens(result, v))
    out += [_seeds(result, v), "" if named_cost == "training_seconds" else _training_time(result, v),
            _latency(result, v)]
    return [c for c in out if c]


def _rag_ceiling(result: ComparisonResult, v: str) -> str:
    summary = result.variants.get(v, {})
    hit = mean_of(summary, "retrieval_hit")
    if hit is None:
        return ""
    text = f"the retrieved passages held the reference answer for {hit * 100:.0f} % of the questions"
    if hit < LOW_HIT:
        return text + ", so retrieval, not the model, caps what it can score"
    grounded = mean_of(summary, "groundedness")
    used = f" ({grounded * 100:.0f} % of its answers' content words come from them)" if grounded is not None else ""
    return text + ", so the answers, not retrieval, fall short" + used


def _prompt_tokens(result: ComparisonResult, v: str) -> str:
    cost = result.costs.get(v)
    extra = cost.extra_prompt_tokens if cost else 0.0
    return f"its instructions and examples add {extra:.0f} prompt tokens to every question" if extra else ""


def _learned(result: ComparisonResult) -> str:
    learned, metric = result.learned, result.metric
    if not learned:
        return ""
    train, held = mean_of(learned.train, metric), mean_of(learned.heldout, metric)
    if train is None or held is None:
        return ""
    label = METRIC_LABELS.get(metric, metric)
    text = (f"on {learned.n} of its own training questions the adapter scores {train:.2f} {label} against "
            f"{held:.2f} on held-out ones")
    if metric not in UNIT_METRICS:
        return text
    if train < NOT_LEARNED:
        return text + ", so it did not learn its training facts (more steps or paraphrased questions would help)"
    if train - held >= MEMORISED_GAP:
        return text + ", so it learned the training answers but they do not carry over to new questions"
    return text


def _forgetting(result: ComparisonResult) -> str:
    flagged = [f for f in result.forgetting if f.flagged]
    if not flagged:
        return ""
    probes = flagged[0].probes
    worst = max(probes, key=lambda k: probes[k].ci_low)  # as the check
    rose = probes[worst]
    return (f"it forgets general knowledge: perplexity on the {worst.replace('_', ' ')} probe rose "
            f"{rose.relative_change * 100:+.0f} % (interval {rose.ci_low * 100:+.0f} to {rose.ci_high * 100:+.0f} %)")


def _seeds(result: ComparisonResult, v: str) -> str:
    spread = result.recommendation.seeds.get(v)
    if not spread:
        return ""
    return (f"over {spread['seeds']} training seeds it scored {spread['mean']:.3f} ± {spread['sd']:.3f} "
            f"({spread['min']:.3f}–{spread['max']:.3f})")


def _training_time(result: ComparisonResult, v: str) -> str:
    cost = result.costs.get(v)
    seconds = cost.training_seconds if cost else 0.0
    return f"its adapter took {seconds / 60:.1f} min to train" if seconds > 0 else ""


def _latency(result: ComparisonResult, v: str) -> str:
    chosen = _chosen(result.recommendation)
    mine, theirs = result.costs.get(v), result.costs.get(chosen)
    mine, theirs = mine and mine.seconds_per_answer, theirs and theirs.seconds_per_answer
    if not mine or not theirs or mine < SLOWER * theirs:
        return ""
    return f"an answer takes {mine:.1f} s against {theirs:.1f} s for {chosen}"
