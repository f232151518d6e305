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
