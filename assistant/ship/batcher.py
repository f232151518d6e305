"""Concurrent API requests share the one engine: requests waiting when a batch starts go in together.

The engines take a list of rows per call and hold one lock per call (assistant/inference), so one call per
request would run requests strictly one after another. One worker thread instead gathers every request
queued with the same generation settings into one `engine.stream(rows, gen)` call and hands each request its
own row's growing output. Each row is decoded alone (its own KV cache), so an answer does not depend on what
it was batched with: the same request gives the same greedy tokens alone or among eight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from foundation.generation import GenSettings, Row, RowOutput

MAX_BATCH = 32  # rows per engine call: a cap on the memory one call can take


@dataclass
class _Request:
    row: Row
    gen: GenSettings
    updates: queue.Queue = field(default_factory=queue.Queue)  # RowOutput snapshots, then None (or an error)
    cancelled: bool = False


class Batcher:
    """`stream(row, gen)` yields the row's growing RowOutput; many callers, one engine call at a time."""

    def __init__(self, engine):
        self.engine = engine
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._held: list[_Request] = []  # taken from the queue but waiting for a batch with their settings
        self._thread = threading.Thread(target=self._loop, name="api-batcher", daemon=True)
        self._thread.start()

    def stream(self, row: Row, gen: GenSettings) -> Iterator[RowOutput]:
        request = _Request(row, gen)
        self._queue.put(request)
        try:
            for item in iter(request.updates.get, None):  # None: the row is finished
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.cancelled = True  # the client went away: stop sending it updates

    def _next_batch(self) -> list[_Request]:
        first = self._held.pop(0) if self._held else self._queue.get()
        while not self._queue.empty():  # the batcher thread is the only reader: a non-empty queue has an item
            self._held.append(self._queue.get())
        batch, rest = [first], []
        for request in self._held:
            (batch if request.gen == first.gen and len(batch) < MAX_BATCH else rest).append(request)
        self._held = rest
        return batch

    def _loop(self) -> None:
        while True:
            batch = [r for r in self._next_batch() if not r.cancelled]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            for outs in self.engine.stream([r.row for r in batch], batch[0].gen):
                for request, out in zip(batch, outs, strict=True):
                    if not request.cancelled:
                        request.updates.put(replace(out, tokens=list(out.tokens)))
        except Exception as exc:  # noqa: BLE001 (handed to every waiting request, raised in its thread)
            for request in batch:
                request.updates.put(exc)
            return
        for request in batch:
            request.updates.put(None)
