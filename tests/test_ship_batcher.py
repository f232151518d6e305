"""The API's batcher over the real torch engine (tiny Llama): requests that wait together run in one engine
call, and batching changes no answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from assistant.inference.torch_engine import Engine
from assistant.ship.batcher import Batcher
from foundation.generation import GenSettings, Row


class Recording(Engine):
    """The real engine, recording how many rows each call got; its first call waits for `release`."""

    def __init__(self, loaded):
        super().__init__(loaded)
        self.calls: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()

    def stream(self, rows, gen):
        self.calls.append(len(rows))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(60)
        yield from super().stream(rows, gen)


def test_waiting_requests_share_one_engine_call_and_keep_their_answers(tiny_loaded):
    engine = Recording(tiny_loaded)
    gen = GenSettings(max_new_tokens=8)
    prompts = [engine.chat_ids([{"role": "user", "content": f"question number {i}"}]) for i in range(8)]
    alone = [Engine(tiny_loaded).generate([Row(p)], gen)[0].tokens for p in prompts]
    batcher = Batcher(engine)

    def run(i):
        *_, last = batcher.stream(Row(prompts[i]), gen)
        return last.tokens

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(run, 0)
        assert engine.started.wait(60)  # the worker is inside its first engine call
        rest = [pool.submit(run, i) for i in range(1, 8)]
        end = time.monotonic() + 60
        while batcher._queue.qsize() < 7 and time.monotonic() < end:
            time.sleep(0.01)
        engine.release.set()
        results = [first.result(60)] + [f.result(60) for f in rest]
    assert engine.calls == [1, 7]
    assert results == alone
