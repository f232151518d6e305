"""What a training job calls on the model or the document index, as narrow callables handed in from above.

Training sits below the runtime layer, so it never sees the runtime or the Arena: the caller (`arena train`,
the Train tab, `arena decide`) composes these from its own runtime (assistant.runtime.Runtime.data_tools). A job
from files or votes needs none of them; a source that needs a missing one is refused with an ArenaError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.variants import VariantConfig

# (questions, variant config, generation settings, progress(done, total) or None, on_answer(index, text))
AnswerMany = Callable[[list[str], VariantConfig, GenSettings, Any, Callable[[int, str], None]], None]


@dataclass(frozen=True)
class RagTeacher:
    """The RAG variant as a distillation teacher: the exact prompt it sends (a cached answer's key) and answers."""

    model: str  # the base model's name, part of each cached answer's key
    prompt: Callable[[str, VariantConfig, GenSettings], tuple[list[dict], str | None]]  # -> messages, adapter
    answer_many: AnswerMany  # calls on_answer as soon as each answer is ready, so it is cached then


@dataclass(frozen=True)
class DataTools:
    """The callables data sources built from documents or a model need (see the module docstring)."""

    sections: Callable[[], list] | None = None  # the ingested documents' sections (.title, .text, .source)
    search: Callable[[str, int], list] | None = None  # question, n -> ranked hits (.text, .citation)
    paraphraser: Callable[[str], Callable] | None = None  # model name -> generate(prompts, gen) -> texts
    encode: Callable[[list[str]], Any] | None = None  # texts -> embedding matrix (paraphrase checks)
    teacher: RagTeacher | None = None  # distillation
    count_tokens: Callable[[str], int] | None = None  # text -> the base model's token count (passage budgets)
    questions: Callable[[str], Callable] | None = None  # generator SPEC -> generate(prompts, gen) -> texts


def need(tools: DataTools | None, *names: str) -> DataTools:
    """`tools` when every named callable is there; else the ArenaError saying how a job gets them."""
    if tools is None or any(getattr(tools, name) is None for name in names):
        raise ArenaError("this data source (documents, distillation or paraphrases) needs the model and the "
                         "document index: run it through `arena train`, or pass DataTools "
                         "(assistant.runtime.Runtime.data_tools)")
    return tools
