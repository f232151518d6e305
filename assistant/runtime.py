"""Lazily loaded shared resources (base model, ...) for the app and CLI, created from one Settings."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from assistant.arena import Arena
from assistant.inference.choose import build_engine
from assistant.inference.openai_engine import ServerClient, engine_from_settings
from foundation.generation import parse_server_model
from foundation.models import LoadedModel, load_model, resolve_device
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from foundation.votes import VoteStore
from retrieval.embedding import Embedder
from retrieval.store import DocumentStore, app_index
from training.augment import engine_generate
from training.tools import DataTools, RagTeacher


class Runtime:
    """Holds the one copy of each heavy resource; loads each on first use, thread-safely."""

    def __init__(self, settings: Settings, base: LoadedModel | None = None, index_dir: Path | None = None,
                 **preloaded):
        """Tests and scripts may hand in ready-made resources by name (base=tiny model, embedder=...).
        `index_dir`: where the document store lives (default data_dir/index, the app's; a decision has its own)."""
        self.settings = settings
        self.index_dir = index_dir or app_index(settings.data_dir)
        self._lock = threading.Lock()  # guards the per-resource lock table only
        self._locks: dict[str, threading.RLock] = {}
        self._made: dict[str, object] = {k: v for k, v in {"base": base, **preloaded}.items() if v is not None}
        self.engine_notice = ""  # why generation runs on torch although onnx was asked for (or auto)

    def _once(self, name: str, factory: Callable[[], object]):
        # One lock per resource, so a slow one (the first start converts the model for ~35 s) never holds up
        # the others (the document store, the adapter list) and the UI can be built and used meanwhile.
        # Factories may ask for other resources (the store needs the embedder, the engine the base model);
        # those dependencies never form a cycle, so the per-resource locks cannot deadlock.
        with self._lock:
            lock = self._locks.setdefault(name, threading.RLock())
        with lock:
            if name not in self._made:
                self._made[name] = factory()
            return self._made[name]

    def question_generator(self, spec: str) -> Callable:
        """generate(list of messages, GenSettings) -> texts, for a question generator SPEC (decide's and
        `arena train`'s --generator, and the paraphrase writer): "base" (this runtime's engine), a local model id
        or folder (a runtime on it, loaded on first use), or openai:URL:MODEL (a server, engine_concurrency
        requests at a time)."""
        server = parse_server_model(spec)
        if server:
            url, model = server
            client = ServerClient(url, self.settings.engine_key)
            return lambda prompts, gen: client.chat_many(model, prompts, gen.max_new_tokens, gen.temperature,
                                                         self.settings.engine_concurrency)
        # another model: a runtime on it with the same data folder and settings
        writer = self if spec in ("base", self.settings.model) else Runtime(replace(self.settings, model=spec))
        return lambda prompts, gen: engine_generate(writer.engine)(prompts, gen)  # the engine loads on first use

    @property
    def base(self) -> LoadedModel:
        return self._once("base", lambda: load_model(self.settings))

    @property
    def embedder(self):
        """The sentence-transformers embedder (settings.embedder) used for ingestion and queries."""
        device = str(resolve_device(self.settings.device))
        return self._once("embedder", lambda: Embedder.from_settings(self.settings, device))

    @property
    def store(self):
        """The document store (index_dir): SQLite + FAISS + BM25, reloaded when another process commits."""
        return self._once("store", lambda: DocumentStore(self.index_dir, self.embedder))

    def with_index(self, index_dir: Path) -> Runtime:
        """A runtime on another document store that shares this one's loaded model, engine and embedder."""
        made = {name: value for name, value in self._made.items() if name not in ("store", "arena")}
        return Runtime(self.settings, index_dir=index_dir, **made)

    @property
    def engine(self):
        """The one generation engine over `base` (settings.engine; adapters are loaded into it by name)."""
        return self._once("engine", self._build_engine)

    def _build_engine(self):
        if self.settings.engine == "openai":
            return engine_from_settings(self.settings)
        engine, self.engine_notice = build_engine(self.settings.engine, self.base, self.settings.models_dir)
        if self.engine_notice:
            print(self.engine_notice, file=sys.stderr, flush=True)
        return engine

    @property
    def arena(self):
        """Prompt builders + engine: what the Chat tab, `arena ask` and the comparison call."""
        return self._once("arena", self.new_arena)

    def new_arena(self, embed=None) -> Arena:
        """An Arena over this runtime's parts, each loaded on first use; the arena never sees the runtime."""
        return Arena(engine=lambda: self.engine, store=lambda: self.store, registry=lambda: self.registry,
                     embedder=lambda: self.embedder, data_dir=self.settings.data_dir,
                     embedder_name=self.settings.embedder, embed=embed)

    @property
    def registry(self):
        """Trained adapters (data_dir/adapters); re-reads the folder on every list(), so it is cheap to share."""
        return self._once("registry", lambda: AdapterRegistry(self.settings.data_dir))

    @property
    def votes(self):
        """The "best answer" vote log (data_dir/votes.sqlite)."""
        return self._once("votes", lambda: VoteStore(self.settings.data_dir / "votes.sqlite"))

    def data_tools(self) -> DataTools:
        """What a training job calls on this runtime's model and documents, as narrow callables: training sits
        below the runtime and never sees it. Nothing loads here; each resource loads when a source first calls
        it, so a job from files loads neither the model nor the index."""
        teacher = RagTeacher(self.settings.model, lambda *a: self.arena.rag_prompt(*a),
                             lambda *a: self.arena.rag_answers(*a))
        return DataTools(sections=lambda: [] if self.store.is_empty() else self.store.sections(),
                         search=lambda question, n: self.store.search(question, k=n),
                         paraphraser=self.question_generator, encode=lambda texts: self.embedder.encode(texts),
                         teacher=teacher, questions=self.question_generator,
                         count_tokens=lambda text: self.engine.count_tokens(text))
