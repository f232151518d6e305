"""The compare stage of `arena decide`: `arena compare`'s run_comparison on the held-out set, once with every
variant (the stored run the Compare tab opens), then once per extra training seed for the adapter variants,
so the fine-tuned variants are reported as mean ± spread across seeds."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

ADAPTER_VARIANTS = ("finetuned", "rag+finetuned")
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 16, 512


def auto_max_new_tokens(references: list[str], tokenizer) -> int:
    """~1.5x the 90th percentile of the reference answers' token counts: room for a full answer, without
    letting long-winded variants ramble (and cost) far beyond what the references say."""
    if not references:
        return 128
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references]
    p90 = float(np.percentile(lengths, 90))
    return int(min(MAX_NEW_TOKENS, max(MIN_NEW_TOKENS, math.ceil(1.5 * p90))))


def seed_spread(values: list[float]) -> dict:
    """Mean ± spread of one variant's score across training seeds (sample standard deviation, min, max).
    Placeholder for the paired-statistics module's seed-aware function until it exists."""
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "sd": sd, "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}


def seed_scores(result: dict, metric: str) -> dict:
    """{variant: (mean, per-question list)} of the adapter variants in one comparison result."""
    out = {}
    for v in ADAPTER_VARIANTS:
        if v in result["variants"]:
            per_q = [q["answers"][v]["scores"].get(metric) for q in result["per_question"]]
            out[v] = {"mean": result["variants"][v][metric]["mean"], "per_question": per_q}
    return out


def seed_caveat(result: dict, seeds: dict, metric: str) -> str | None:
    """A sentence when the recommended adapter variant's worst seed falls below the runner-up's mean."""
    rec = result["recommendation"].get("variant")
    if rec not in seeds or seeds[rec]["n"] < 2:
        return None
    others = [s[metric]["mean"] for v, s in result["variants"].items()
              if v != rec and s.get(metric, {}).get("mean") is not None]
    if others and seeds[rec]["min"] < max(others):
        return (f"{rec} depends on the training seed: across {seeds[rec]['n']} seeds its {metric} ranges "
                f"{seeds[rec]['min']:.3f}–{seeds[rec]['max']:.3f}, and its worst seed scores below the "
                f"best other variant ({max(others):.3f}).")
    return None


def run_compare(decision, rep, tmp: Path, adapters: list[str]) -> dict:
    """Compare every variant with seed 0's adapter, then the adapter variants with each other seed's."""
    from assistant.compare.evalset import EvalItem
    from assistant.compare.runner import CompareConfig, run_comparison
    from assistant.decide.stages import FEW_SHOT_K, _load
    from assistant.variants import VariantConfig, check_few_shot

    cfg, rt = decision.cfg, decision.rt
    evalset = decision.cache.folder("evalset")
    items = [EvalItem(**row) for row in _load(evalset / "eval.jsonl")]
    pairs = [{"question": p["question"], "answer": p["answer"]} for p in _load(evalset / "train_pairs.jsonl")]
    # The prompt variant at its best: the training pairs nearest each question as few-shot examples.
    vcfg = VariantConfig(few_shot=check_few_shot(pairs), dynamic_k=FEW_SHOT_K if pairs else 0)
    max_new = cfg.max_new_tokens or auto_max_new_tokens([it.answer for it in items], rt.base.tokenizer)
    variants = tuple(v for v in cfg.variants if adapters or v not in ADAPTER_VARIANTS)
    cc = CompareConfig(variants=variants, metric=cfg.metric, adapter=adapters[0] if adapters else None,
                       seed=cfg.seed, max_new_tokens=max_new, forgetting=cfg.forgetting,
                       eval_name=f"decide {cfg.name}", label=f"decide {cfg.name}")
    runs = max(1, len(adapters))

    def progress(k):
        return lambda fraction, text: rep.update((k + fraction) / runs, f"seed {k}: {text}" if k else text)

    result = run_comparison(rt, items, cc, cfg=vcfg, progress=progress(0))
    per_seed = [{"seed": cfg.seed, "adapter": adapters[0], **seed_scores(result, cfg.metric)}] if adapters else []
    tuned = tuple(v for v in variants if v in ADAPTER_VARIANTS)
    for k, adapter in enumerate(adapters[1:], 1):
        extra = run_comparison(rt, items, replace(cc, variants=tuned, adapter=adapter, forgetting=False),
                               cfg=vcfg, progress=progress(k), store=False)
        per_seed.append({"seed": cfg.seed + k, "adapter": adapter, **seed_scores(extra, cfg.metric)})
    seeds = {v: seed_spread([s[v]["mean"] for s in per_seed]) for v in tuned} if per_seed else {}
    result["seeds"] = {"per_seed": per_seed, "summary": seeds}
    caveat = seed_caveat(result, seeds, cfg.metric)
    if caveat:
        result["warnings"].append(caveat)
    (tmp / "result.json").write_text(json.dumps(result, default=str), encoding="utf-8")
    return {"run_id": result.get("run_id"), "recommendation": result["recommendation"],
            "max_new_tokens": max_new, "questions": len(items), "seeds": seeds}
