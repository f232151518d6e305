"""Run a strategy comparison: every variant answers every question, then score, summarise and recommend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from assistant.compare.bias import check_bias
from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem
from assistant.compare.forgetting import arena_scorer, check_forgetting
from assistant.compare.judge import judge_run, malformed_warning, parse_spec
from assistant.compare.learned import training_sample
from assistant.compare.recommend import recommend_from_table, resolve_margin
from assistant.compare.resume import PartialRun, plan_from_json
from assistant.compare.router import add_routed, check_routed, routed_costs
from assistant.compare.runs import RunStore
from assistant.compare.stats import exp_summary, paired_against, summarize
from assistant.compare.why import why_sentences
from foundation import metrics as M
from foundation.errors import ArenaError
from foundation.generation import GenSettings, check_stop_on_loop
from foundation.leakage import find_overlaps, overlap_warnings
from foundation.variants import (
    ADAPTER_VARIANTS,
    RAG_VARIANTS,
    ROUTED,
    VARIANTS,
    VariantConfig,
    max_new_tokens_for,
)

DISAGREE_F1_SPREAD = 0.3


def validate(cc: CompareConfig, items: list[EvalItem]) -> None:
    if not items:
        raise ArenaError("the evaluation set is empty")
    unknown = [v for v in cc.variants if v not in VARIANTS]
    if unknown or not cc.variants:
        raise ArenaError(f"unknown variant(s) {unknown or '(none given)'}; choose from {', '.join(VARIANTS)}")
    if cc.metric not in M.PRIMARY_METRICS:
        raise ArenaError(f"unknown metric {cc.metric!r}; choose one of {', '.join(M.PRIMARY_METRICS)}")
    resolve_margin(cc.metric, cc.equivalence_margin)  # a negative margin stops the run before any work

    check_stop_on_loop(cc.stop_on_loop)
    check_routed(cc.variants)
    needs = [v for v in cc.variants if v in ADAPTER_VARIANTS]
    if needs and not cc.adapter:
        raise ArenaError(f"variant(s) {', '.join(needs)} need an adapter: pass --adapter NAME")
    if cc.judge:
        parse_spec(cc.judge)  # a bad spec stops the run before anything is generated
    elif cc.metric == "judge":
        raise ArenaError("metric 'judge' needs an LLM judge: --judge local or --judge openai:URL:MODEL")


def _embedder(runtime):
    """The shared embedder for semantic similarity and near-duplicate checks, or None when unavailable."""
    try:
        return runtime.embedder
    except ArenaError:  # no embedder can be loaded (e.g. a model folder that is gone): those metrics are skipped
        return None


def run_comparison(runtime, items: list[EvalItem], cc: CompareConfig, cfg=None,
                   progress: Callable[[float, str], None] | None = None, store: bool = True,
                   resume: int | None = None) -> dict:
    """Answer, score and summarise; returns the JSON-ready result (also stored in runs.sqlite).

    Stored runs keep every answered and scored question as it completes (assistant/compare/resume.py);
    `resume=RUN_ID` continues such a run (see resume_comparison)."""
    validate(cc, items)
    engine = runtime.engine  # a serving engine that cannot be reached fails here, before a run is stored
    if cc.max_new_tokens is None:
        cc = replace(cc, max_new_tokens=max_new_tokens_for([it.answer for it in items], engine.count_tokens))
    progress = progress or (lambda fraction, text: None)
    cfg = replace(cfg or VariantConfig(), adapter=cc.adapter)
    gen = GenSettings(max_new_tokens=cc.max_new_tokens, temperature=0.0, top_p=1.0, seed=cc.seed,
                      stop_on_loop=cc.stop_on_loop)
    arena, variants = runtime.arena, list(cc.variants)
    generated = [v for v in variants if v != ROUTED]  # routed re-uses the others' answers (compare/router.py)
    questions = [it.question for it in items]
    progress(0.0, f"answering {len(items)} questions × {len(variants)} variants")
    partial = PartialRun.begin(runtime.settings.data_dir, items, cc, cfg, resume, store)
    answers = partial.answers(arena, questions, generated, cfg, gen, check_answers, progress)
    progress(0.7, "reference likelihoods")
    nlls = partial.nlls(arena, items, generated, cfg, progress)
    progress(0.8, "scoring")
    per_question, table = score_all(items, generated, answers, nlls, _embedder(runtime))
    judged = None
    if cc.judge:
        progress(0.85, "LLM judge")
        judged = judge_run(runtime, cc.judge, items, answers, generated, table, per_question)
    routed = _routed(runtime, cc, per_question, table, answers, generated, progress) if ROUTED in variants else None
    result = summarise(table, variants, cc)
    result["costs"] = variant_costs(runtime, variants, answers, cc.adapter)
    if routed:
        result["costs"][ROUTED] = routed_costs(result["costs"], routed["picks"], routed["seconds"], len(items))
    result["router"] = routed
    result["recommendation"] = recommend_from_table(table, result["costs"], cc.metric, clusters(items),
                                                    cc.seed, margin=cc.equivalence_margin).to_dict()
    result["per_question"] = per_question
    result["warnings"] = leakage_warnings(runtime, cc, questions) + engine_notices(runtime, judged)
    result["judge"] = judged["summary"] if judged else None
    result["forgetting"], result["bias"] = adapter_probes(runtime, cc, cfg, variants, progress)
    result["warnings"] += [f["message"] for f in result["forgetting"] + result["bias"] if f["flagged"]]
    result["learned"] = learned_check(runtime, cc, cfg, gen, result["variants"], progress)
    result["why"] = why_sentences(result)
    result["settings"] = run_settings(runtime, cc, cfg, gen, len(items))
    result["settings"]["judge"] = judged["settings"] if judged else None
    if runtime.settings.engine == "openai":  # where the answers came from (the key itself is never stored)
        result["settings"]["engine"] = {"name": "openai", "url": runtime.settings.engine_url,
                                        "concurrency": runtime.settings.engine_concurrency}
    if store:
        result["run_id"] = partial.run_id
        partial.finish(result["settings"], result)
    progress(1.0, "done")
    return result


def adapter_probes(runtime, cc: CompareConfig, cfg, variants: list[str], progress) -> tuple[list, list]:
    """The forgetting check and the bias probe of the adapter (both built on reference NLL, each a paired change
    with its interval), as JSON-ready dicts, or ([], [])."""
    scores_nll = not getattr(runtime.engine, "nll_notice", "")
    if not (cc.adapter and cc.forgetting and scores_nll and any(v in ADAPTER_VARIANTS for v in variants)):
        return [], []
    scorer = arena_scorer(runtime.arena, cfg, cc.adapter)
    progress(0.9, "forgetting check")
    forgetting = [check_forgetting(cc.adapter, scorer, cc.forgetting_margin).to_dict()]
    progress(0.92, "bias probe")
    return forgetting, [check_bias(cc.adapter, scorer, cc.bias_margin).to_dict()]


def _routed(runtime, cc: CompareConfig, per_question, table, answers, generated, progress) -> dict:
    """The routed column, cross-validated over the evaluation questions (assistant/compare/router.py)."""
    progress(0.87, "router (cross-validated over the questions)")
    embedder = _embedder(runtime)
    if embedder is None:
        raise ArenaError("variant 'routed' needs the embedder (its features), which is not available")
    return add_routed(per_question, table, answers, generated, cc.metric, embedder.encode,
                      runtime.settings.data_dir, cc.seed)


def resume_comparison(runtime, run_id: int, progress: Callable[[float, str], None] | None = None) -> dict:
    """Continue an interrupted stored run with its own items and settings; the result equals an
    uninterrupted run's (answers and scores already stored are read back, not generated again)."""
    items, cc, cfg = plan_from_json(RunStore(Path(runtime.settings.data_dir) / "runs.sqlite").partial(run_id)[0])
    return run_comparison(runtime, items, cc, cfg, progress, resume=run_id)


def check_answers(answers: list[dict]) -> None:
    """A variant that cannot run (no documents, no adapter) would leave holes: stop with its reason."""
    for per_variant in answers:
        for name, answer in per_variant.items():
            if getattr(answer, "error", ""):
                raise ArenaError(f"variant {name!r} cannot run: {answer.error}")


def score_all(items, variants, answers, nlls, embedder) -> tuple[list[dict], dict]:
    """Per-question records and table[variant][metric] = per-question values."""
    table = {v: {} for v in variants}
    per_question = []
    sims = {}
    if embedder is not None:  # one encode call for every variant's answers: per-call overhead dominates
        flat = M.semantic_similarities(embedder, [a[v].text for v in variants for a in answers],
                                       [it.answer for v in variants for it in items])
        sims = {v: flat[k * len(items):(k + 1) * len(items)] for k, v in enumerate(variants)}
    for i, (item, ans, nll) in enumerate(zip(items, answers, nlls, strict=True)):
        record = {"question": item.question, "reference": item.answer, "source": item.source, "answers": {}}
        for v in variants:
            a = ans[v]
            scores = M.answer_scores(a.text, item.answer, [h.text for h in a.sources])
            ref_nll = None if nll[v] is None else float(nll[v])  # None: the serving engine cannot score
            scores.update(semantic=sims[v][i] if sims else None, nll=ref_nll,
                          ppl=None if ref_nll is None else M.perplexity(ref_nll), ttft_s=a.ttft_s,
                          tokens_per_s=a.tokens_per_s)
            for metric, value in scores.items():
                table[v].setdefault(metric, []).append(value)
            record["answers"][v] = {"text": a.text, "adapter": a.adapter, "scores": scores,
                                    "sources": [{"citation": h.citation, "text": h.text, "score": h.score}
                                                for h in a.sources]}
        record["disagree"] = disagree(record["answers"])
        per_question.append(record)
    return per_question, table


def disagree(answers: dict) -> bool:
    """Variants disagree when some contain the reference and others not, or their token F1 spreads widely."""
    f1 = [a["scores"]["f1"] for a in answers.values()]
    hit = {a["scores"]["contains"] for a in answers.values()}
    return len(answers) > 1 and (len(hit) > 1 or max(f1) - min(f1) >= DISAGREE_F1_SPREAD)


def clusters(items: list[EvalItem]) -> list[str]:
    """The unit the paired bootstrap resamples: a question's source (and section, when known)."""
    return [f"{it.source}#{it.section}" if it.section else it.source for it in items]


def learned_check(runtime, cc: CompareConfig, cfg, gen, heldout: dict, progress) -> dict | None:
    """The finetuned variant on a sample of its own training pairs, next to its held-out scores (or None)."""
    if not (cc.adapter and cc.learned_sample > 0 and "finetuned" in cc.variants):
        return None
    items = training_sample(runtime.settings.data_dir, runtime.registry.get(cc.adapter).path,
                            cc.learned_sample, cc.seed)
    if not items:
        return None
    progress(0.95, f"adapter on {len(items)} of its training questions")
    arena = runtime.arena
    answers = arena.ask_many([it.question for it in items], ["finetuned"], cfg, gen)
    check_answers(answers)
    nlls = [arena.reference_nll(arena.prepare(it.question, ["finetuned"], cfg), it.answer) for it in items]
    _, table = score_all(items, ["finetuned"], answers, nlls, _embedder(runtime))
    train = summarise(table, ["finetuned"], cc)["variants"]["finetuned"]
    return {"adapter": cc.adapter, "variant": "finetuned", "n": len(items), "train": train,
            "heldout": heldout["finetuned"]}


def summarise(table: dict, variants: list[str], cc: CompareConfig) -> dict:
    """Bootstrap summaries per variant (perplexity mapped from the NLL interval) and paired diffs vs base."""
    summary = summarize({v: {m: vals for m, vals in table[v].items() if m != "ppl"} for v in variants},
                        seed=cc.seed)
    for v in variants:
        summary[v]["ppl"] = exp_summary(summary[v]["nll"])
    paired = paired_against(table, "base", seed=cc.seed)
    return {"variants": summary, "paired": paired}


def _folder_mb(path: Path) -> float:
    path = Path(path)
    if not path.exists():
        return 0.0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def variant_costs(runtime, variants: list[str], answers: list[dict], adapter: str | None) -> dict:
    """Per variant: adapter training seconds, mean prompt tokens beyond the plainest variant, extra memory."""
    prompt = {v: sum(a[v].prompt_tokens for a in answers) / len(answers) for v in variants}
    floor = prompt.get("base", min(prompt.values()))
    info = runtime.registry.get(adapter) if adapter and set(variants) & set(ADAPTER_VARIANTS) else None
    index_mb = _folder_mb(Path(runtime.settings.data_dir) / "index")
    costs = {}
    for v in variants:
        tuned = v in ADAPTER_VARIANTS and info is not None
        costs[v] = {
            "training_seconds": float(info.metrics.get("train_seconds", 0.0)) if tuned else 0.0,
            "extra_prompt_tokens": max(0.0, prompt[v] - floor),
            "memory_mb": (_folder_mb(info.path) if tuned else 0.0) + (index_mb if v in RAG_VARIANTS else 0.0),
            "seconds_per_answer": sum(_seconds(a[v]) for a in answers) / len(answers),
        }
    return costs


def _seconds(answer) -> float:
    """Wall time of one answer: first token, then the rest at the measured decode rate."""
    rate = answer.tokens_per_s or 0.0
    return answer.ttft_s + (answer.tokens / rate if rate > 0 else 0.0)


def engine_notices(runtime, judged: dict | None) -> list[str]:
    """What the run could not measure: reference NLL on a serving engine, malformed judge replies."""
    notices = [getattr(runtime.engine, "nll_notice", ""), malformed_warning(judged["summary"]) if judged else ""]
    return [n for n in notices if n]


def leakage_warnings(runtime, cc: CompareConfig, questions: list[str]) -> list[str]:
    """Warn about evaluation questions the compared adapter was trained on (exact or near-duplicate)."""
    if not cc.adapter or not set(cc.variants) & set(ADAPTER_VARIANTS):
        return []
    trained = runtime.registry.training_questions(cc.adapter)
    overlaps = find_overlaps(questions, trained, embedder=_embedder(runtime))
    return overlap_warnings(cc.adapter, overlaps, len(questions))


def run_settings(runtime, cc: CompareConfig, cfg, gen, n_items: int) -> dict:
    s = runtime.settings
    return {"eval": cc.eval_name, "questions": n_items, "variants": list(cc.variants), "adapter": cc.adapter,
            "metric": cc.metric, "seed": cc.seed, "model": s.model, "embedder": s.embedder,
            "generation": asdict(gen), "system_prompt": cfg.system_prompt, "few_shot": len(cfg.few_shot),
            "rag_k": cfg.rag_k, "rag_mode": cfg.rag_mode, "forgetting_margin": cc.forgetting_margin}
