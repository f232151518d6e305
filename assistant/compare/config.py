"""One comparison's settings: what to compare and how (stored with every run, reloaded by --resume)."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.compare.bias import DEFAULT_BIAS_MARGIN
from assistant.compare.forgetting import DEFAULT_MARGIN
from assistant.compare.learned import SAMPLE
from foundation.generation import LOOP_STOP
from foundation.variants import STRATEGIES


@dataclass
class CompareConfig:
    """What to compare and how; stored with every run."""

    variants: tuple[str, ...] = STRATEGIES
    metric: str = "f1"
    adapter: str | None = None
    seed: int = 0
    max_new_tokens: int | None = None  # None: sized from the references (foundation.variants.max_new_tokens_for)
    stop_on_loop: int = LOOP_STOP  # stop on repetition, the same for every variant (GenSettings); 0 = off
    forgetting: bool = True
    forgetting_margin: float = DEFAULT_MARGIN
    bias_margin: float = DEFAULT_BIAS_MARGIN  # the bias probe runs with the forgetting check
    learned_sample: int = SAMPLE  # own training questions the adapter answers for the "did it learn" check
    eval_name: str = ""
    label: str = ""
    judge: str = ""  # LLM judge: "" none | local | openai:URL:MODEL (assistant/compare/judge.py)
    # practical-equivalence margin in the metric's units (0 = the metric's default, equivalence.EQUIVALENCE_MARGINS)
    equivalence_margin: float = 0.0
