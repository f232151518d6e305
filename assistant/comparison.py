"""Run a strategy comparison: every variant answers every question through the runtime, then the pure half
(assistant/compare/scoring.py) scores, summarises and recommends into a `ComparisonResult`.

This is the orchestration beside the Arena: it alone reaches the runtime (engine, embedder, registry, data
folder) and hands assistant.compare plain inputs (answers, NLLs, sizes, callables).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, replace
from pathlib import Path

from assistant.compare.bias import check_bias
from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem, draw_eval_set, load_eval_set
from assistant.compare.forgetting import Scorer, check_forgetting
from assistant.compare.judge import judge_all, malformed_warning, parse_spec
from assistant.compare.learned import training_sample
from assistant.compare.recommend import recommend_from_table
from assistant.compare.result import ComparisonResult, LearnedCheck, cost_table
from assistant.compare.resume import PartialRun, plan_from_json
from assistant.compare.router import add_routed, routed_costs
from assistant.compare.runs import RunStore
from assistant.compare.scoring import check_answers, clusters, score_all, summarise, validate, variant_costs
from assistant.compare.why import why_sentences
from foundation.cache_folder import weight_files
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row
from foundation.leakage import find_overlaps, overlap_warnings
from foundation.row_cache import RowCache, content_key
from foundation.variants import ADAPTER_VARIANTS, ROUTED, VariantConfig, max_new_tokens_for

Progress = Callable[[float, str], None]
PROBE_CACHE = Path("cache") / "probe_nll.sqlite"  # in the data folder: the probes' base-model NLLs


def run_comparison(runtime, items: list[EvalItem], compare_cfg: CompareConfig, variant_cfg=None,
                   progress: Progress | None = None, store: bool = True,
                   resume: int | None = None) -> ComparisonResult:
    """Answer, score and summarise; the result is also stored in runs.sqlite (unless store=False).

    Stored runs keep every answered and scored question as it completes (assistant/compare/resume.py);
    `resume=RUN_ID` continues such a run (see resume_comparison)."""
    validate(compare_cfg, items)
    engine = runtime.engine  # a serving engine that cannot be reached fails here, before a run is stored
    if compare_cfg.max_new_tokens is None:
        compare_cfg = replace(compare_cfg, max_new_tokens=max_new_tokens_for([it.answer for it in items],
                                                                             engine.count_tokens))
    progress = progress or (lambda fraction, text: None)
    variant_cfg = replace(variant_cfg or VariantConfig(), adapter=compare_cfg.adapter)
    gen = GenSettings(max_new_tokens=compare_cfg.max_new_tokens, temperature=0.0, top_p=1.0, seed=compare_cfg.seed,
                      stop_on_loop=compare_cfg.stop_on_loop)
    arena, variants = runtime.arena, list(compare_cfg.variants)
    generated = [v for v in variants if v != ROUTED]  # routed re-uses the others' answers (compare/router.py)

    def answer_many(questions: list[str], on_answer, on_progress) -> None:
        arena.ask_many(questions, generated, variant_cfg, gen, on_answer=on_answer, progress=on_progress)

    progress(0.0, f"answering {len(items)} questions × {len(variants)} variants")
    partial = PartialRun.begin(runtime.settings.data_dir, items, compare_cfg, variant_cfg, resume, store)
    answers = partial.answers(answer_many, [it.question for it in items], generated, check_answers, progress)
    nlls = [dict.fromkeys(generated) for _ in items]  # None: not scored (shown as such, as for a server engine)
    if compare_cfg.reference_nll:
        progress(0.7, "reference likelihoods")
        nll_many = _reference_nll(arena, generated, variant_cfg)
        nlls = partial.nlls(lambda todo: nll_many([(it.question, it.answer) for it in todo]), items, generated,
                            progress)
    progress(0.8, "scoring")
    per_question, table = score_all(items, generated, answers, nlls, _embedder(runtime))
    judge_settings, judged = _judge(runtime, compare_cfg, items, answers, generated, table, per_question, progress)
    routed = _routed(runtime, compare_cfg, per_question, table, answers, generated, progress) \
        if ROUTED in variants else None
    summaries, paired = summarise(table, variants, compare_cfg.seed)
    costs = _costs(runtime, variants, answers, compare_cfg.adapter)
    if routed:
        costs[ROUTED] = routed_costs(costs, routed.picks, routed.seconds, len(items))
    forgetting, bias = adapter_probes(runtime, compare_cfg, variant_cfg, variants, progress)
    result = ComparisonResult(
        variants=summaries, paired=paired, per_question=per_question, costs=costs, router=routed, judge=judged,
        recommendation=recommend_from_table(table, cost_table(costs), compare_cfg.metric, clusters(items),
                                            compare_cfg.seed, margin=compare_cfg.equivalence_margin),
        warnings=(_leakage_warnings(runtime, compare_cfg, [it.question for it in items])
                  + [n for n in (getattr(engine, "nll_notice", ""), judged and malformed_warning(judged)) if n]
                  + [p.message for p in forgetting + bias if p.flagged]),
        forgetting=forgetting, bias=bias,
        learned=_learned_check(runtime, compare_cfg, variant_cfg, gen, summaries, progress),
        settings=_run_settings(runtime, compare_cfg, variant_cfg, gen, len(items), judge_settings))
    result.why = why_sentences(result)
    if store:
        result.run_id = partial.run_id
        partial.finish(result.settings, result)
    progress(1.0, "done")
    return result


def resume_comparison(runtime, run_id: int, progress: Progress | None = None) -> ComparisonResult:
    """Continue an interrupted stored run with its own items and settings; the result equals an
    uninterrupted run's (answers and scores already stored are read back, not generated again)."""
    plan = RunStore(Path(runtime.settings.data_dir) / "runs.sqlite").partial(run_id)[0]
    items, compare_cfg, variant_cfg = plan_from_json(plan)
    return run_comparison(runtime, items, compare_cfg, variant_cfg, progress, resume=run_id)


def eval_items(runtime, eval_file: str | Path | None, adapter: str | None, seed: int = 0, limit: int = 0
               ) -> tuple[list[EvalItem], str]:
    """Evaluation items and a name for them: the file's, or (no file) drawn from the documents' held-out sections
    (never those the adapter was trained on); only the first ``limit`` when it is positive."""
    if eval_file:
        items, name = load_eval_set(Path(eval_file)), Path(eval_file).name
    else:
        trained = runtime.registry.training_questions(adapter) if adapter else []
        items, _ = draw_eval_set(runtime.store.sections(), exclude_questions=trained, seed=seed)
        name = "drawn from documents"
    return (items[:limit] if limit > 0 else items), name


def _reference_nll(arena, variants: list[str], variant_cfg: VariantConfig
                   ) -> Callable[[list[tuple[str, str]]], list[dict]]:
    """[(question, reference answer)] -> per pair, each variant's NLL of that answer after its own prompt for the
    question, all scored in one batched engine call (Arena.reference_nll_many)."""
    return lambda pairs: arena.reference_nll_many([(arena.prepare(q, variants, variant_cfg), a) for q, a in pairs])


def _embedder(runtime):
    """The shared embedder for semantic similarity and near-duplicate checks, or None when unavailable."""
    try:
        return runtime.embedder
    except ArenaError:  # no embedder can be loaded (e.g. a model folder that is gone): those metrics are skipped
        return None


def _judge(runtime, compare_cfg: CompareConfig, items, answers, generated, table, per_question, progress):
    """The LLM judge step: (settings stored with the run, summary shown with it), or (None, None)."""
    if not compare_cfg.judge:
        return None, None
    progress(0.85, "LLM judge")
    s = runtime.settings
    key = s.engine_key if compare_cfg.judge.startswith("openai:") else ""
    judge_cfg = parse_spec(compare_cfg.judge, key, s.engine_concurrency)

    def local(conversations: list[list[dict]]) -> list[str]:  # --judge local: the run's own engine
        engine = runtime.engine
        gen = GenSettings(max_new_tokens=judge_cfg.max_tokens, temperature=judge_cfg.temperature)
        return [o.text for o in engine.generate([Row(engine.chat_ids(m)) for m in conversations], gen)]

    return judge_cfg.stored(), judge_all(judge_cfg, local, items, answers, generated, table, per_question)


def arena_scorer(arena, variant_cfg: VariantConfig, adapter: str, base_cache: ProbeBaseCache | None = None
                 ) -> Scorer:
    """The probes' scorer through ``Arena.reference_nll_many`` with the base and finetuned variants (the engine's
    own adapter path): (base NLLs, adapter NLLs) per (prompt, reply) pair, in one engine call per probe. The base
    half does not depend on the adapter: with a `base_cache`, pairs it holds are scored under the adapter only."""
    cfg = replace(variant_cfg, adapter=adapter, system_prompt="", few_shot=[])

    def score(pairs):
        prepared = [arena.prepare(prompt, ["base", "finetuned"], cfg) for prompt, _ in pairs]
        keys = [base_cache.key(p["base"].messages, reply) if base_cache else "" for p, (_, reply) in
                zip(prepared, pairs, strict=True)]
        known = base_cache.get(keys) if base_cache else {}
        nlls = arena.reference_nll_many([({n: v for n, v in p.items() if n != "base" or key not in known}, reply)
                                         for p, key, (_, reply) in zip(prepared, keys, pairs, strict=True)])
        if base_cache:
            base_cache.put({key: n["base"] for key, n in zip(keys, nlls, strict=True) if "base" in n})
        base = [known[key] if key in known else n["base"] for key, n in zip(keys, nlls, strict=True)]
        return [float(b) for b in base], [float(n["finetuned"]) for n in nlls]
    return score


class ProbeBaseCache:
    """The probes' base-model NLLs, kept by content in the data folder (a row cache of its own,
    cache/probe_nll.sqlite): key = the model's identity, the base prompt's messages and the reply. A second seed
    or a second run then scores the probes under the adapter only. It is only a cache: a file that is not a
    readable database is deleted and started again, and if that fails too the probes are scored without it."""

    def __init__(self, data_dir: Path, model: list):
        self.path, self.model = Path(data_dir) / PROBE_CACHE, model

    def key(self, messages: list[dict], reply: str) -> str:
        return content_key("probe-base-nll", self.model, messages, reply)

    def _rows(self, use: Callable[[RowCache], object], fallback):
        for _ in range(2):
            try:
                return use(RowCache(self.path))
            except (sqlite3.DatabaseError, ValueError):  # "file is not a database", a damaged page or value
                with suppress(OSError):
                    self.path.unlink(missing_ok=True)
        return fallback

    def get(self, keys: list[str]) -> dict[str, float]:
        found = self._rows(lambda rows: rows.get_many(keys), {})
        return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}

    def put(self, scores: dict[str, float]) -> None:
        self._rows(lambda rows: [rows.put(k, v) for k, v in scores.items()], None)


def model_identity(runtime) -> list:
    """What a cached NLL of the base model depends on besides its text: the model (its weights' files, so a
    replaced folder counts as another model), the dtype and device it runs in; or the serving engine's model."""
    s = runtime.settings
    if s.engine == "openai":
        return ["openai", s.engine_url, s.model]
    base = runtime.base
    folder = Path(base.path)
    weights = weight_files(folder) if folder.is_dir() else []
    return [base.model_id, str(base.path), str(base.dtype), str(base.device), weights]


def adapter_probes(runtime, compare_cfg: CompareConfig, variant_cfg, variants: list[str],
                   progress) -> tuple[list, list]:
    """The forgetting check and the bias probe of the adapter (both built on reference NLL, each a paired change
    with its interval), or ([], [])."""
    scores_nll = not getattr(runtime.engine, "nll_notice", "")
    if not (compare_cfg.adapter and compare_cfg.forgetting and scores_nll
            and any(v in ADAPTER_VARIANTS for v in variants)):
        return [], []
    cache = ProbeBaseCache(runtime.settings.data_dir, model_identity(runtime))
    scorer = arena_scorer(runtime.arena, variant_cfg, compare_cfg.adapter, cache)
    progress(0.9, "forgetting check")
    forgetting = [check_forgetting(compare_cfg.adapter, scorer, compare_cfg.forgetting_margin)]
    progress(0.92, "bias probe")
    return forgetting, [check_bias(compare_cfg.adapter, scorer, compare_cfg.bias_margin)]


def _routed(runtime, compare_cfg: CompareConfig, per_question, table, answers, generated, progress):
    """The routed column, cross-validated over the evaluation questions (assistant/compare/router.py)."""
    progress(0.87, "router (cross-validated over the questions)")
    embedder = _embedder(runtime)
    if embedder is None:
        raise ArenaError("variant 'routed' needs the embedder (its features), which is not available")
    return add_routed(per_question, table, answers, generated, compare_cfg.metric, embedder.encode,
                      runtime.settings.data_dir, compare_cfg.seed)


def _learned_check(runtime, compare_cfg: CompareConfig, variant_cfg, gen, heldout: dict,
                   progress) -> LearnedCheck | None:
    """The finetuned variant on a sample of its own training pairs, next to its held-out scores (or None)."""
    if not (compare_cfg.adapter and compare_cfg.learned_sample > 0 and "finetuned" in compare_cfg.variants):
        return None
    items = training_sample(runtime.settings.data_dir, runtime.registry.get(compare_cfg.adapter).path,
                            compare_cfg.learned_sample, compare_cfg.seed)
    if not items:
        return None
    progress(0.95, f"adapter on {len(items)} of its training questions")
    arena = runtime.arena
    answers = arena.ask_many([it.question for it in items], ["finetuned"], variant_cfg, gen)
    check_answers(answers)
    nlls = _reference_nll(arena, ["finetuned"], variant_cfg)([(it.question, it.answer) for it in items])
    _, table = score_all(items, ["finetuned"], answers, nlls, _embedder(runtime))
    train = summarise(table, ["finetuned"], compare_cfg.seed)[0]["finetuned"]
    return LearnedCheck(compare_cfg.adapter, "finetuned", len(items), train, heldout["finetuned"])


def _folder_mb(path: Path) -> float:
    """Size on disk; 0 for a folder that does not exist (rglob finds nothing in it)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def _costs(runtime, variants: list[str], answers: list[dict], adapter: str | None) -> dict:
    """variant_costs with what this machine measures: the adapter's training time and size, the index's size."""
    info = runtime.registry.get(adapter) if adapter and set(variants) & set(ADAPTER_VARIANTS) else None
    return variant_costs(variants, answers, float(info.metrics.get("train_seconds", 0.0)) if info else 0.0,
                         _folder_mb(info.path) if info else 0.0,
                         _folder_mb(Path(runtime.settings.data_dir) / "index"))


def _leakage_warnings(runtime, compare_cfg: CompareConfig, questions: list[str]) -> list[str]:
    """Warn about evaluation questions the compared adapter was trained on (exact or near-duplicate)."""
    if not compare_cfg.adapter or not set(compare_cfg.variants) & set(ADAPTER_VARIANTS):
        return []
    trained = runtime.registry.training_questions(compare_cfg.adapter)
    overlaps = find_overlaps(questions, trained, embedder=_embedder(runtime))
    return overlap_warnings(compare_cfg.adapter, overlaps, len(questions))


def _run_settings(runtime, compare_cfg: CompareConfig, variant_cfg, gen, n_items: int, judge: dict | None) -> dict:
    s = runtime.settings
    c, v = compare_cfg, variant_cfg
    out = {"eval": c.eval_name, "questions": n_items, "variants": list(c.variants), "adapter": c.adapter,
           "metric": c.metric, "seed": c.seed, "model": s.model, "embedder": s.embedder,
           "generation": asdict(gen), "system_prompt": v.system_prompt, "few_shot": len(v.few_shot),
           "rag_k": v.rag_k, "rag_mode": v.rag_mode, "forgetting_margin": c.forgetting_margin,
           "judge": judge}
    if s.engine == "openai":  # where the answers came from (the key itself is never stored)
        out["engine"] = {"name": "openai", "url": s.engine_url, "concurrency": s.engine_concurrency}
    return out
