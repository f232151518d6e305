"""One comparison's settings: what to compare and how (stored with every run, reloaded by --resume).

The `arena compare` flags of the fields with a ``help`` are derived from them (assistant/cli/compare.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from assistant.compare.bias import DEFAULT_BIAS_MARGIN
from assistant.compare.forgetting import DEFAULT_MARGIN
from assistant.compare.learned import SAMPLE
from foundation.generation import LOOP_STOP, STOP_ON_LOOP_HELP
from foundation.metrics import PRIMARY_METRICS
from foundation.variants import STRATEGIES


@dataclass
class CompareConfig:
    """What to compare and how; stored with every run."""

    variants: tuple[str, ...] = STRATEGIES
    metric: Literal[PRIMARY_METRICS] = field(default="f1", metadata={"help": "primary metric (default f1)"})
    adapter: str | None = field(default=None, metadata={
        "help": "registered adapter for finetuned / rag+finetuned"})
    seed: int = field(default=0, metadata={"help": "seed of generation, the drawn questions and the bootstrap (default 0)"})
    # None: sized from the references (foundation.variants.max_new_tokens_for)
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "answer length limit (default: 1.5x the 90th percentile of the reference answers' tokens)"})
    # stop on repetition, the same for every variant (GenSettings); 0 = off
    stop_on_loop: int = field(default=LOOP_STOP, metadata={"help": STOP_ON_LOOP_HELP, "metavar": "N"})
    forgetting: bool = field(default=True, metadata={
        "help": "run the general-knowledge forgetting check and the bias probe of the adapter (--no-forgetting: "
                "skip them)"})
    # Off: no per-variant NLL of the references (not part of a token-F1 or judge verdict; decide turns it off when
    # its time budget is short, as the RAG variants' long prompts make it ~1/3 of a comparison).
    reference_nll: bool = field(default=True, metadata={
        "help": "score each variant's NLL of the reference answers (--no-reference-nll: skip it; needed for "
                "--metric nll)"})
    forgetting_margin: float = DEFAULT_MARGIN
    bias_margin: float = DEFAULT_BIAS_MARGIN  # the bias probe runs with the forgetting check
    learned_sample: int = SAMPLE  # own training questions the adapter answers for the "did it learn" check
    eval_name: str = ""
    label: str = ""
    # LLM judge (assistant/compare/judge.py)
    judge: str = field(default="", metadata={
        "help": "LLM judge: grade every answer against the reference (correct / partially / wrong) with the local "
                "base model or MODEL on an OpenAI-compatible server", "metavar": "local|openai:URL:MODEL"})
    # 0 = the metric's default (equivalence.EQUIVALENCE_MARGINS)
    equivalence_margin: float = field(default=0.0, metadata={
        "help": "practical-equivalence margin in the metric's units: a cheaper variant shown within ±M of the "
                "leader is recommended (default 0.05 for scores in [0, 1], 0.05 nats for NLL; docs/verdict.md)",
        "metavar": "M"})
