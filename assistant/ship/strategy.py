"""The strategy to ship: one variant, its adapter, its prompts and retrieval settings, and where they came from.

It is resolved from flags (`--variant`, `--adapter`) or from a finished decide workspace (`--from-decision`:
the winner, seed 0's adapter that the comparison scored, the retrieval settings chosen on the training pairs,
the few-shot pairs of the prompt variant, the answer length), saved as the bundle's `strategy.yaml`, and read
back by `arena serve --api --bundle` so the bundle answers exactly as the workspace did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import with_config

from assistant.decide.cache import StageCache
from foundation import config_file
from foundation.errors import ArenaError
from foundation.records import read_jsonl
from foundation.variants import (
    ADAPTER_VARIANTS,
    DEFAULT_DYNAMIC_K,
    DEFAULT_SYSTEM_PROMPT,
    RAG_INSTRUCTION,
    ROUTED,
    STRATEGIES,
    VariantConfig,
    served_name,
)

# The OpenAI model name picks the variant and, for the adapter variants, the adapter: "rag+finetuned:faq-lora".
SEPARATOR = ":"


@with_config(config_file.STRICT)  # strategy.yaml is read back with its values checked, unknown keys refused
@dataclass
class Strategy(config_file.YamlFile):
    """strategy.yaml: everything a bundle serves, as the comparison served it."""

    variant: str
    adapter: str = ""
    base_model: str = ""
    embedder: str = ""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # the prompt variant's system turn
    rag_instruction: str = RAG_INSTRUCTION  # the RAG variants' system turn, before the passages (record only)
    few_shot: list[dict] = field(default_factory=list)
    dynamic_k: int = DEFAULT_DYNAMIC_K
    rag_k: int = 4
    rag_mode: str = "hybrid"
    splitter: str = ""
    max_new_tokens: int = 256
    decision: str = ""  # the decide workspace it came from ("" = chosen by flags)
    run_id: int = 0  # that decision's comparison run
    peft: str = ""  # bundle-relative paths of what was exported ("" = not part of this variant)
    gguf: str = ""
    index: str = ""

    @property
    def model_name(self) -> str:
        return served_name(self.variant, self.adapter)

    def variant_config(self) -> VariantConfig:
        return VariantConfig(system_prompt=self.system_prompt, few_shot=list(self.few_shot),
                             dynamic_k=self.dynamic_k, rag_k=self.rag_k, rag_mode=self.rag_mode,
                             adapter=self.adapter or None)


def parse_model_name(name: str) -> tuple[str, str | None]:
    """'rag+finetuned:faq-lora' -> ('rag+finetuned', 'faq-lora'); ArenaError for anything else."""
    variant, sep, adapter = str(name).partition(SEPARATOR)
    if variant not in STRATEGIES:
        raise ArenaError(f"unknown model {str(name)[:80]!r}: use one of {', '.join(STRATEGIES)} (adapter "
                         f"variants as finetuned{SEPARATOR}ADAPTER)")
    if variant in ADAPTER_VARIANTS and not adapter:
        raise ArenaError(f"model {variant!r} needs an adapter: {variant}{SEPARATOR}ADAPTER")
    if variant not in ADAPTER_VARIANTS and sep:
        raise ArenaError(f"model {variant!r} takes no adapter, got {str(name)[:80]!r}")
    return variant, adapter or None


def from_flags(variant: str, adapter: str | None, registry, settings) -> Strategy:
    """The variant with the default prompts and retrieval settings (the Chat tab's defaults)."""
    if variant == ROUTED:
        raise ArenaError("the routed variant picks a strategy per question with a classifier; export the "
                         "strategy it picks most, or the decision's winner (--from-decision)")
    parse_model_name(served_name(variant, adapter or "x"))  # the variant is one of the strategies
    if variant in ADAPTER_VARIANTS:
        if not adapter:
            raise ArenaError(f"variant {variant} needs --adapter NAME (or --from-decision NAME)")
        info = registry.get(adapter)  # ArenaError listing the adapters there are
        if info.kind != "adapter":
            raise ArenaError(f"{info.name!r} is a {info.kind} model (it scores answers), not a chat adapter")
        adapter = info.name
    else:
        adapter = ""
    return Strategy(variant=variant, adapter=adapter, base_model=settings.model, embedder=settings.embedder)


def from_decision(workspace: Path, registry, settings) -> Strategy:
    """The winner of a finished decide workspace, with the settings its comparison served it with."""
    stages = StageCache(workspace)
    compare, retrieval = stages.output("compare"), stages.output("retrieval")
    if stages.output("report") is None or compare is None:
        raise ArenaError(f"decision {Path(workspace).name!r} has not finished (no report in {workspace}); "
                         "run arena decide first")
    variant = compare.recommendation.variant
    if not variant:
        raise ArenaError(f"decision {Path(workspace).name!r} has no winner: {compare.recommendation.reason}")
    seed0 = stages.output("train-s0") if variant in ADAPTER_VARIANTS else None
    strategy = from_flags(variant, seed0 and seed0.adapter, registry, settings)
    strategy.few_shot = _pairs(stages.folder("evalset") / "train_pairs.jsonl")
    if retrieval:  # else a workspace from before retrieval tuning: served with the defaults
        strategy.rag_k, strategy.rag_mode, strategy.splitter = retrieval.k, retrieval.mode, retrieval.splitter
    strategy.max_new_tokens = compare.max_new_tokens or strategy.max_new_tokens
    strategy.decision, strategy.run_id = Path(workspace).name, compare.run_id
    return strategy


def _pairs(path: Path) -> list[dict]:
    """The training pairs the prompt variant drew its few-shot examples from in the comparison."""
    if not path.is_file():
        return []
    return [{"question": r["question"], "answer": r["answer"]} for r in read_jsonl(path)]
