"""A comparison's pure half: from items, answers and reference NLLs to the typed result's parts.

Nothing here generates, loads a model or reads the runtime: the orchestration (assistant/comparison.py)
answers the questions, measures NLLs, sizes and timings, and hands them in. So these functions run the same on
a live run, a resumed one, and in tests on hand-written answers.
"""

from __future__ import annotations

from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem
from assistant.compare.judge import parse_spec
from assistant.compare.recommend import resolve_margin
from assistant.compare.result import QuestionRecord, Source, Summary, VariantAnswer, VariantCost, summaries
from assistant.compare.router import check_routed
from assistant.compare.stats import exp_summary, paired_against, summarize
from foundation.errors import ArenaError
from foundation.generation import check_stop_on_loop
from foundation.metrics import PRIMARY_METRICS, answer_scores, perplexity, semantic_similarities
from foundation.variants import ADAPTER_VARIANTS, RAG_VARIANTS, VARIANTS

DISAGREE_F1_SPREAD = 0.3


def validate(compare_cfg: CompareConfig, items: list[EvalItem]) -> None:
    if not items:
        raise ArenaError("the evaluation set is empty")
    unknown = [v for v in compare_cfg.variants if v not in VARIANTS]
    if unknown or not compare_cfg.variants:
        raise ArenaError(f"unknown variant(s) {unknown or '(none given)'}; choose from {', '.join(VARIANTS)}")
    if compare_cfg.metric not in PRIMARY_METRICS:
        raise ArenaError(f"unknown metric {compare_cfg.metric!r}; choose one of {', '.join(PRIMARY_METRICS)}")
    # a negative margin stops the run before any work
    resolve_margin(compare_cfg.metric, compare_cfg.equivalence_margin)

    if compare_cfg.metric in ("nll", "ppl") and not compare_cfg.reference_nll:
        raise ArenaError(f"metric {compare_cfg.metric!r} comes from the reference NLL: it cannot be skipped "
                         "(drop --no-reference-nll)")
    check_stop_on_loop(compare_cfg.stop_on_loop)
    check_routed(compare_cfg.variants)
    needs = [v for v in compare_cfg.variants if v in ADAPTER_VARIANTS]
    if needs and not compare_cfg.adapter:
        raise ArenaError(f"variant(s) {', '.join(needs)} need an adapter: pass --adapter NAME")
    if compare_cfg.judge:
        parse_spec(compare_cfg.judge)  # a bad spec stops the run before anything is generated
    elif compare_cfg.metric == "judge":
        raise ArenaError("metric 'judge' needs an LLM judge: --judge local or --judge openai:URL:MODEL")


def check_answers(answers: list[dict]) -> None:
    """A variant that cannot run (no documents, no adapter) would leave holes: stop with its reason."""
    for per_variant in answers:
        for name, answer in per_variant.items():
            if getattr(answer, "error", ""):
                raise ArenaError(f"variant {name!r} cannot run: {answer.error}")


def score_all(items, variants, answers, nlls, embedder) -> tuple[list[QuestionRecord], dict]:
    """Per-question records and table[variant][metric] = per-question values (the statistics' input).

    ``embedder``: anything with ``encode`` for semantic similarity, or None (that metric is then not scored)."""
    table = {v: {} for v in variants}
    per_question = []
    sims = {}
    if embedder is not None:  # one encode call for every variant's answers: per-call overhead dominates
        flat = semantic_similarities(embedder, [a[v].text for v in variants for a in answers],
                                     [it.answer for v in variants for it in items])
        sims = {v: flat[k * len(items):(k + 1) * len(items)] for k, v in enumerate(variants)}
    for i, (item, ans, nll) in enumerate(zip(items, answers, nlls, strict=True)):
        record = QuestionRecord(item.question, item.answer, item.source, {})
        for v in variants:
            a = ans[v]
            scores = answer_scores(a.text, item.answer, [h.text for h in a.sources])
            ref_nll = None if nll[v] is None else float(nll[v])  # None: the serving engine cannot score
            scores.update(semantic=sims[v][i] if sims else None, nll=ref_nll,
                          ppl=None if ref_nll is None else perplexity(ref_nll), ttft_s=a.ttft_s,
                          tokens_per_s=a.tokens_per_s)
            for metric, value in scores.items():
                table[v].setdefault(metric, []).append(value)
            record.answers[v] = VariantAnswer(a.text, scores, a.adapter,
                                              [Source(h.citation, h.text, h.score) for h in a.sources])
        record.disagree = disagree(record.answers)
        per_question.append(record)
    return per_question, table


def disagree(answers: dict[str, VariantAnswer]) -> bool:
    """Variants disagree when some contain the reference and others not, or their token F1 spreads widely."""
    f1 = [a.scores["f1"] for a in answers.values()]
    hit = {a.scores["contains"] for a in answers.values()}
    return len(answers) > 1 and (len(hit) > 1 or max(f1) - min(f1) >= DISAGREE_F1_SPREAD)


def clusters(items: list[EvalItem]) -> list[str]:
    """The unit the paired bootstrap resamples: a question's source (and section, when known)."""
    return [f"{it.source}#{it.section}" if it.section else it.source for it in items]


def summarise(table: dict, variants: list[str], seed: int) -> tuple[dict[str, Summary], dict[str, Summary]]:
    """Bootstrap summaries per variant (perplexity mapped from the NLL interval) and paired diffs vs base."""
    summary = summarize({v: {m: vals for m, vals in table[v].items() if m != "ppl"} for v in variants}, seed=seed)
    for v in variants:
        summary[v]["ppl"] = exp_summary(summary[v]["nll"])
    return summaries(summary), summaries(paired_against(table, "base", seed=seed))


def table_of(per_question: list[QuestionRecord], variants, metric: str) -> dict[str, dict[str, list]]:
    """table[variant][metric] = per-question values, read back from a result's records."""
    return {v: {metric: [q.answers[v].scores.get(metric) for q in per_question]} for v in variants}


def variant_costs(variants: list[str], answers: list[dict], training_seconds: float, adapter_mb: float,
                  index_mb: float) -> dict[str, VariantCost]:
    """Per variant: adapter training seconds, mean prompt tokens beyond the plainest variant, extra memory
    (the adapter's and the index's size on disk), seconds per answer."""
    prompt = {v: sum(a[v].prompt_tokens for a in answers) / len(answers) for v in variants}
    floor = prompt.get("base", min(prompt.values()))
    return {v: VariantCost(
        training_seconds=training_seconds if v in ADAPTER_VARIANTS else 0.0,
        extra_prompt_tokens=max(0.0, prompt[v] - floor),
        memory_mb=(adapter_mb if v in ADAPTER_VARIANTS else 0.0) + (index_mb if v in RAG_VARIANTS else 0.0),
        seconds_per_answer=sum(_seconds(a[v]) for a in answers) / len(answers)) for v in variants}


def _seconds(answer) -> float:
    """Wall time of one answer: first token, then the rest at the measured decode rate."""
    rate = answer.tokens_per_s or 0.0
    return answer.ttft_s + (answer.tokens / rate if rate > 0 else 0.0)
