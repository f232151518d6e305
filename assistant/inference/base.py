"""The small interface every generation engine offers, and the pieces engines share."""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row, RowOutput, first_line_done, loop_cut

NllRow = tuple[list[int], list[int], str | None]  # (prompt_ids, reference_ids, adapter): Engine.nll_many


@dataclass
class AdapterSlot:
    """A loaded adapter: where it came from and how the engine runs it.

    mode "mixed": runs beside the other rows on the engine's normal path; "separate": its own model or a
    slower path (full-model folders; adapters the onnx graph cannot take run on the torch engine).
    """

    name: str
    path: Path
    peft_type: str | None
    mode: str


class Engine(Protocol):
    """What the Arena, the comparison and the UI need from a generation engine."""

    name: str
    tokenizer: object
    slots: dict[str, AdapterSlot]

    @property
    def context_length(self) -> int: ...

    @property
    def eos_ids(self) -> set[int]: ...

    def chat_ids(self, messages: list[dict]) -> list[int]: ...

    def count_tokens(self, text: str) -> int: ...

    def load_adapter(self, name: str, path: Path) -> AdapterSlot: ...

    def stream(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        """Every row's growing output (one RowOutput per row, each with its own ttft and seconds)."""
        ...

    def generate(self, rows: list[Row], gen: GenSettings) -> list[RowOutput]: ...

    def nll(self, prompt_ids: list[int], reference_ids: list[int], adapter: str | None) -> float: ...

    def nll_many(self, rows: list[NllRow]) -> list[float]:
        """`nll` of every (prompt_ids, reference_ids, adapter) row, in order."""
        ...


class Templating:
    """chat_ids and count_tokens from the engine's own `tokenizer` (every engine renders prompts the same way),
    generate as the last step of the engine's own `stream`, and nll_many as `nll` row by row (an engine that
    can batch, the torch engine, overrides it)."""

    tokenizer: object

    def chat_ids(self, messages: list[dict]) -> list[int]:
        return template_ids(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, rows: list[Row], gen: GenSettings) -> list[RowOutput]:
        return last(self.stream(rows, gen))

    def nll_many(self, rows: list[NllRow]) -> list[float]:
        return [self.nll(prompt, reference, adapter) for prompt, reference, adapter in rows]


def template_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a conversation with the model's own chat template, ready for the reply."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def eos_token_ids(tokenizer, config) -> set[int]:
    """The ids that end a reply: the tokenizer's end token and the (generation) config's, an int or a list
    (Llama 3's configs end on several: <|eot_id|>, <|end_of_text|>, ...)."""
    ids = getattr(config, "eos_token_id", None)
    return {i for i in [tokenizer.eos_token_id, *(ids if isinstance(ids, list | tuple) else [ids])]
            if isinstance(i, int)}


def check_rows(rows: list[Row], gen: GenSettings, context_length: int, slots: dict) -> None:
    """Refuse absurd settings and rows naming an adapter that was never loaded."""
    gen.check(context_length)
    for row in rows:
        if row.adapter is not None and row.adapter not in slots:
            raise ArenaError(f"adapter {row.adapter!r} is not loaded; loaded: {sorted(slots) or 'none'}")


def row_text(tokenizer, tokens: list[int]) -> str:
    """A row's text so far; a trailing replacement char is an incomplete multi-byte character (shown once
    complete)."""
    return tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd")


def end_early(out: RowOutput, gen: GenSettings, tokenizer) -> bool:
    """The stop rules on decoded tokens, the same on every engine; True (and the row marked done) when one ends
    the row: its first line is complete (gen.one_line), or its tokens end in a loop
    (foundation.generation.loop_cut), whose repeats are cut."""
    if gen.one_line and first_line_done(out.text):
        out.done = True
        return True
    keep = loop_cut(out.tokens, gen.stop_on_loop)
    if keep is None:
        return False
    out.tokens = out.tokens[:keep]
    out.text = row_text(tokenizer, out.tokens)
    out.done = True
    return True


def last(stream: Iterator):
    """The final item of a stream (an engine's final outputs, an arena's finished answers); [] for none."""
    tail = deque(stream, maxlen=1)
    return tail[0] if tail else []


def adapter_peft_type(path: Path) -> str | None:
    """The peft type of an adapter folder; None for a full model folder."""
    from foundation.models import require_safetensors  # deferred: pulls torch

    require_safetensors(path, "adapter folder")
    cfg = path / "adapter_config.json"
    if cfg.is_file():
        return str(json.loads(cfg.read_text()).get("peft_type", "")).upper() or None
    if (path / "config.json").is_file():
        return None
    raise ArenaError(f"adapter folder {path} has neither adapter_config.json nor config.json")


def pooled_stream(units: list, n_rows: int, workers: int, run_unit, gen: GenSettings, what: str
                  ) -> Iterator[list[RowOutput]]:
    """Run work units (a row, or a batch of rows) `workers` at a time, in order; `run_unit(unit, gen, stop)`
    yields (row index, its RowOutput). Yield all rows' outputs whenever some row advanced; a worker that
    finishes a unit takes the next pending one (continuous across questions)."""
    outputs = [RowOutput() for _ in range(n_rows)]
    if not units:
        yield outputs
        return
    pending, lock, stop = iter(range(len(units))), threading.Lock(), threading.Event()
    events: queue.SimpleQueue = queue.SimpleQueue()  # True: some row advanced; False: a worker ended
    errors: list[BaseException] = []

    def take() -> int | None:
        with lock:
            return None if stop.is_set() else next(pending, None)

    def work() -> None:
        try:
            while (k := take()) is not None:
                for i, out in run_unit(units[k], gen, stop):
                    outputs[i] = out
                    events.put(True)
        except BaseException as exc:  # re-raised in the consumer's thread
            errors.append(exc)
            stop.set()
        finally:
            events.put(False)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(units)))]
    for t in threads:
        t.start()
    try:
        ended = 0
        while ended < len(threads):
            got = [events.get()]  # block, then coalesce what is queued: one yield however many rows advanced
            while not events.empty():  # this thread is the only reader, so a non-empty queue has an item
                got.append(events.get())
            ended += got.count(False)
            if True in got:
                yield outputs
    finally:
        stop.set()  # the consumer stopped early (a closed stream) or a unit failed: let the workers end
        for t in threads:
            t.join()
    if errors:
        error = errors[-1]
        if isinstance(error, ArenaError):
            raise error
        raise ArenaError(f"{what} failed: {error}") from error
    yield outputs
