"""Forgetting check: does an adapter make the base model worse at general knowledge and general text?

Both probes are teacher-forced likelihoods (no generation), so the check costs a few forward passes:
the shipped general-knowledge answers under their questions, and the shipped everyday paragraphs as the
reply to a neutral "write a paragraph" request. The adapter is flagged when its perplexity on either probe
exceeds the base model's by more than ``margin`` (relative).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.compare.metrics import perplexity

DATA_DIR = Path(__file__).parent / "data"
TEXT_PROMPT = "Write a short paragraph of everyday English."
DEFAULT_MARGIN = 0.15

# scorer(pairs) -> (base NLLs, adapter NLLs), one mean token NLL per (prompt, reply) pair.
Scorer = Callable[[list[tuple[str, str]]], tuple[list[float], list[float]]]


@dataclass
class Probe:
    """General-knowledge QA pairs and general-text paragraphs shipped in assistant/compare/data."""

    qa: list[tuple[str, str]]
    paragraphs: list[str]


def load_probe(data_dir: Path = DATA_DIR) -> Probe:
    qa = []
    for line in (data_dir / "general_qa.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            qa.append((row["question"], row["answer"]))
    text = (data_dir / "general_text.txt").read_text(encoding="utf-8")
    return Probe(qa, [p.strip() for p in text.split("\n\n") if p.strip()])


def arena_scorer(arena, cfg, adapter: str) -> Scorer:
    """Scores through ``Arena.reference_nll`` with the base and finetuned variants (the engine's own adapter path)."""
    from dataclasses import replace

    cfg = replace(cfg, adapter=adapter, system_prompt="", few_shot=[])

    def score(pairs):
        base, tuned = [], []
        for prompt, reply in pairs:
            prepared = arena.prepare(prompt, ["base", "finetuned"], cfg)
            nll = arena.reference_nll(prepared, reply)
            base.append(float(nll["base"]))
            tuned.append(float(nll["finetuned"]))
        return base, tuned
    return score


def check_forgetting(adapter: str, scorer: Scorer, margin: float = DEFAULT_MARGIN,
                     probe: Probe | None = None) -> dict:
    """Base vs adapter perplexity on both probes; ``flagged`` when either rises by more than ``margin``."""
    probe = probe or load_probe()
    text_pairs = [(TEXT_PROMPT, p) for p in probe.paragraphs]
    base, tuned = scorer(list(probe.qa) + text_pairs)
    n = len(probe.qa)
    out = {"adapter": adapter, "margin": margin, "probes": {}}
    for name, sl in (("general_qa", slice(0, n)), ("general_text", slice(n, None))):
        b, t = (perplexity(sum(v) / len(v)) for v in (base[sl], tuned[sl]))
        out["probes"][name] = {"base_ppl": b, "adapter_ppl": t, "relative_change": t / b - 1}
    worst = max(out["probes"], key=lambda k: out["probes"][k]["relative_change"])
    change = out["probes"][worst]["relative_change"]
    out["flagged"] = change > margin
    verdict = "FORGETTING" if out["flagged"] else "ok"
    out["message"] = (f"{verdict}: adapter {adapter!r} perplexity on {worst.replace('_', ' ')} "
                      f"{out['probes'][worst]['adapter_ppl']:.2f} vs base {out['probes'][worst]['base_ppl']:.2f} "
                      f"({change:+.1%}; margin {margin:.0%})")
    return out
