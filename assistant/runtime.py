"""Lazily loaded shared resources (base model, ...) for the app and CLI, created from one Settings."""

from __future__ import annotations

import threading

from assistant.models import LoadedModel, load_model
from assistant.settings import Settings


class Runtime:
    """Holds the one copy of each heavy resource; loads each on first use, thread-safely."""

    def __init__(self, settings: Settings, base: LoadedModel | None = None):
        self.settings = settings
        self._lock = threading.RLock()
        self._base = base  # tests pass a tiny in-process model here

    @property
    def base(self) -> LoadedModel:
        with self._lock:
            if self._base is None:
                self._base = load_model(self.settings)
            return self._base

    @property
    def embedder(self):
        """The sentence-transformers embedder (settings.embedder) used for ingestion and queries."""
        from assistant.models import resolve_device
        from retrieval.embedding import Embedder

        with self._lock:
            if getattr(self, "_embedder", None) is None:
                self._embedder = Embedder.load(self.settings.embedder, str(resolve_device(self.settings.device)))
            return self._embedder

    @property
    def store(self):
        """The document store (data_dir/index): SQLite + FAISS + BM25, reloaded when another process commits."""
        from retrieval.store import DocumentStore

        with self._lock:
            if getattr(self, "_store", None) is None:
                self._store = DocumentStore.open(self.settings.data_dir, self.embedder)
            return self._store

    @property
    def engine(self):
        """The one generation engine over `base` (adapters are loaded into it by name)."""
        from assistant.engine import Engine

        with self._lock:
            if getattr(self, "_engine", None) is None:
                self._engine = Engine(self.base)
            return self._engine

    @property
    def arena(self):
        """Prompt builders + engine: what the Chat tab, `arena ask` and the comparison call."""
        from assistant.arena import Arena

        with self._lock:
            if getattr(self, "_arena", None) is None:
                self._arena = Arena(self)
            return self._arena

    @property
    def registry(self):
        """Trained adapters (data_dir/adapters); re-reads the folder on every list(), so it is cheap to share."""
        from training.registry import AdapterRegistry

        with self._lock:
            if getattr(self, "_registry", None) is None:
                self._registry = AdapterRegistry(self.settings.data_dir)
            return self._registry

    @property
    def votes(self):
        """The "best answer" vote log (data_dir/votes.sqlite)."""
        from assistant.votes import VoteStore

        with self._lock:
            if getattr(self, "_votes", None) is None:
                self._votes = VoteStore(self.settings.data_dir / "votes.sqlite")
            return self._votes
