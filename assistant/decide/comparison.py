"""The compare stage of `arena decide`: `arena compare`'s run_comparison on the held-out set, once with every
variant (the stored run the Compare tab opens), then once per extra training seed for the adapter variants,
so the fine-tuned variants are reported as mean ± spread across seeds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem
from assistant.compare.recommend import decision_metric, recommend_from_table
from assistant.compare.result import cost_table
from assistant.compare.runs import RunStore
from assistant.compare.scoring import clusters, table_of
from assistant.compare.why import why_sentences
from assistant.comparison import run_comparison
from assistant.decide.outputs import CompareOutput, RetrievalChoice
from assistant.decide.timings import PhaseClock
from foundation.records import read_jsonl
from foundation.variants import ADAPTER_VARIANTS, VariantConfig, check_few_shot


def run_compare(decide_run, rep, tmp: Path, adapters: list[str], got: RetrievalChoice,
                reference_nll: bool = True) -> CompareOutput:
    """Compare every variant with seed 0's adapter, then the adapter variants with each other seed's; the
    verdict is then taken again over all seeds (recommend_from_table's seed tables) and stored with the run.
    `reference_nll`: False when the budget left it out (plan.training_fit; the plan's notes say so)."""
    decide_cfg, runtime = decide_run.cfg, decide_run.runtime
    evalset = decide_run.cache.folder("evalset")
    items = [EvalItem(**row) for row in read_jsonl(evalset / "eval.jsonl")]
    pairs = [{"question": p["question"], "answer": p["answer"]} for p in read_jsonl(evalset / "train_pairs.jsonl")]
    # The prompt variant at its best: dynamic few-shot from the training pairs (VariantConfig's default k).
    variant_cfg = VariantConfig(few_shot=check_few_shot(pairs), rag_k=got.k, rag_mode=got.mode)
    variants = tuple(v for v in decide_cfg.variants if adapters or v not in ADAPTER_VARIANTS)
    label = f"decide {decide_cfg.name} {decide_run.keys['compare'][:8]}"
    compare_cfg = CompareConfig(variants=variants, metric=decide_cfg.metric, adapter=adapters[0] if adapters else None,
                                seed=decide_cfg.seed, max_new_tokens=decide_cfg.max_new_tokens or None,
                                forgetting=decide_cfg.forgetting, stop_on_loop=decide_cfg.stop_on_loop,
                                eval_name=f"decide {decide_cfg.name}", label=label,
                                equivalence_margin=decide_cfg.equivalence_margin, reference_nll=reference_nll)
    runs, store = max(1, len(adapters)), RunStore(Path(decide_run.settings.data_dir) / "runs.sqlite")
    clock = PhaseClock()  # seconds per sub-stage (answering, reference NLL, router, probes), for the report

    def progress(k):
        return clock.wrap(lambda fraction, text: rep.update((k + fraction) / runs, f"seed {k}: {text}" if k else text))

    # the stored run this stage started before a crash (answers so far are kept) is resumed
    interrupted = next((run_id for run_id, name, _ in store.unfinished() if name == label), None)
    result = run_comparison(runtime, items, compare_cfg, variant_cfg=variant_cfg, progress=progress(0),
                            resume=interrupted)
    metric = decision_metric(decide_cfg.metric)
    tuned = tuple(v for v in variants if v in ADAPTER_VARIANTS)
    seed_tables = []
    for k, adapter in enumerate(adapters[1:], 1):
        extra = run_comparison(runtime, items, replace(compare_cfg, variants=tuned, adapter=adapter,
                                                       forgetting=False, learned_sample=0, label=""),
                               variant_cfg=variant_cfg, progress=progress(k), store=False)
        seed_tables.append(table_of(extra.per_question, extra.variants, metric))
    if seed_tables:
        result.recommendation = recommend_from_table(table_of(result.per_question, result.variants, metric),
                                                     cost_table(result.costs), decide_cfg.metric, clusters(items),
                                                     decide_cfg.seed, seed_tables,
                                                     margin=decide_cfg.equivalence_margin)
        result.why = why_sentences(result)
        store.finish(result.run_id, result.settings, result)
    result.seeds = {"per_seed": [{"seed": decide_cfg.seed + k, "adapter": a} for k, a in enumerate(adapters)],
                    "summary": result.recommendation.seeds}
    (tmp / "result.json").write_text(json.dumps(result.to_dict(), default=str), encoding="utf-8")
    return CompareOutput(result.run_id, result.recommendation, result.settings["generation"]["max_new_tokens"],
                         len(items), result.seeds["summary"], clock.stop())
