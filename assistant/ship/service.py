"""What the OpenAI-compatible endpoint serves: model names -> strategies, and one chat turn through the arena.

Two sources: the running runtime (every strategy over the data folder: base, prompt, rag, and finetuned /
rag+finetuned for each chat adapter, with the Chat tab's default prompts) or an exported bundle (its one
strategy, with the prompts, retrieval settings, adapter and index it was exported with).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from assistant.runtime import Runtime
from assistant.ship.batcher import Batcher
from assistant.ship.bundle import Bundle
from assistant.ship.strategy import Strategy
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row, RowOutput
from foundation.registry import AdapterRegistry
from foundation.variants import ADAPTER_VARIANTS, STRATEGIES, served_name
from retrieval.store import DocumentStore


class UnknownModel(ArenaError):
    """The request names a model this server does not serve (HTTP 404)."""


@dataclass
class Turn:
    """One prepared chat turn: what the engine runs and what the response reports."""

    strategy: Strategy
    row: Row
    gen: GenSettings
    sources: list
    notice: str


class BundleRuntime(Runtime):
    """A runtime whose adapters and document index are a bundle's; models and caches stay in the data folder."""

    def __init__(self, settings, bundle: Bundle):
        super().__init__(replace(settings, model=bundle.strategy.base_model or settings.model,
                                 embedder=bundle.strategy.embedder or settings.embedder),
                         registry=AdapterRegistry(bundle.folder))
        self.bundle = bundle

    @property
    def store(self):
        index = self.bundle.index_dir
        if index is None:
            raise ArenaError(f"bundle {self.bundle.folder} has no document index")
        return self._once("store", lambda: DocumentStore(Path(index), self.embedder))


class ChatService:
    """Model names to strategies, and chat turns run through the arena and the shared batcher."""

    def __init__(self, runtime: Runtime, bundle: Bundle | None = None):
        self.runtime = runtime
        self.bundle = bundle

    @cached_property
    def batcher(self) -> Batcher:
        return Batcher(self.runtime.engine)  # on the first request: the engine loads then

    def models(self) -> dict[str, Strategy]:
        if self.bundle is not None:
            return {self.bundle.strategy.model_name: self.bundle.strategy}
        settings = self.runtime.settings
        plain = [Strategy(variant=v, base_model=settings.model, embedder=settings.embedder)
                 for v in STRATEGIES if v not in ADAPTER_VARIANTS]
        tuned = [Strategy(variant=v, adapter=a.name, base_model=settings.model, embedder=settings.embedder)
                 for a in self.runtime.registry.chat_adapters() for v in sorted(ADAPTER_VARIANTS)]
        return {s.model_name: s for s in plain + tuned}

    def strategy(self, name: str) -> Strategy:
        found = self.models().get(name)
        if found is None:
            raise UnknownModel(f"unknown model {str(name)[:80]!r}; served: {', '.join(self.models()) or 'none'}")
        return found

    def prepare(self, name: str, messages: list[dict], gen: GenSettings) -> Turn:
        """The turn for `messages` (the last one from the user; earlier user/assistant turns are history)."""
        strategy = self.strategy(name)
        question, history = split_messages(messages)
        arena = self.runtime.arena
        gen.check(arena.engine.context_length)
        prepared = arena.prepare(question, [strategy.variant], strategy.variant_config(), history,
                                 gen)[strategy.variant]
        if prepared.error:
            raise ArenaError(f"{served_name(strategy.variant, strategy.adapter)}: {prepared.error}")
        row = arena.rows({strategy.variant: prepared}, [strategy.variant], gen)[0]  # context-length check
        return Turn(strategy, row, gen, prepared.sources, prepared.notice)

    def stream(self, turn: Turn) -> Iterator[RowOutput]:
        return self.batcher.stream(turn.row, turn.gen)


def split_messages(messages: list[dict]) -> tuple[str, list[dict]]:
    """(question, history). The strategy supplies its own system turn (as the comparison measured it), so a
    client's system messages are not sent on; the conversation must end with a user message."""
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise ArenaError("messages must end with a user message")
    if not turns[-1]["content"].strip():
        raise ArenaError("the last user message is empty")
    return turns[-1]["content"], turns[:-1]
