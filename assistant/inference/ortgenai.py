"""onnxruntime-genai as the CPU generation engine: a converted graph, LoRA adapters switched per row.

Rows are not padded into one batch: one long RAG prompt beside short ones made every short row pay for the
long one (RECIPES: 42.6 s padded vs 21.8 s row by row on the five-variant workload). Instead a pool of worker
threads each decodes one row at a time with its own single-row generator, and a finished row is replaced by
the next pending one (continuous across questions). Measured on this 2-core box (int4, 8 rows x 64 tokens,
benchmarks/compare_throughput.py compares 1 and N workers on the real workload): one generator with 2 intra-op
threads decoded at 42 tok/s, with 1 thread at 122-160 tok/s, so each session run gets one intra-op thread; the
GIL is released while a token is generated (a Python loop in another thread kept 61 % of its speed on the busy
box), so one worker per core lets rows use every core. On the loaded box 2 workers matched 1 (118-163 vs
95-160 tok/s): there was no idle core to gain.
Tokenizer, chat template, NLL scoring and adapters the graph cannot take stay on the torch engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from assistant.inference import lora_onnx, ort_build
from assistant.inference.base import (
    AdapterSlot,
    Templating,
    adapter_peft_type,
    check_rows,
    last,
    pooled_stream,
)
from assistant.inference.decoding import record_token
from foundation.generation import GenSettings, Row, RowOutput


def available() -> bool:
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return False
    return True


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class OrtGenaiEngine(Templating):
    """Generation on an onnxruntime-genai graph of the torch engine's base model."""

    def __init__(self, torch_engine, graph_folder: Path, models_dir: Path, workers: int | None = None):
        import onnxruntime_genai as og

        self.torch = torch_engine
        self.tokenizer = torch_engine.tokenizer
        self.folder, self.models_dir = Path(graph_folder), Path(models_dir)
        self.precision = json.loads((self.folder / ort_build.MARKER).read_text())["precision"]
        self.name = f"onnx-{self.precision}"
        self.workers = workers or default_workers()
        config = og.Config(str(self.folder))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": 1, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        self.adapters = og.Adapters(self.model)
        self.slots: dict[str, AdapterSlot] = {}
        self._onnx: dict[str, Path] = {}  # adapter name -> loaded .onnx_adapter file
        self._lock = threading.Lock()  # adapter (un)loading vs. generators using them

    @property
    def context_length(self) -> int:
        return self.torch.context_length

    @property
    def eos_ids(self) -> set[int]:
        return self.torch.eos_ids

    def nll(self, prompt_ids: list[int], reference_ids: list[int], adapter: str | None) -> float:
        return self.torch.nll(prompt_ids, reference_ids, adapter)  # scoring stays on the fp32 reference

    def load_adapter(self, name: str, path: Path) -> AdapterSlot:
        """Register an adapter on both engines; converted once per content, so a re-trained one is picked up."""
        path = Path(path)
        slot = self.slots.get(name)
        if slot is not None and slot.path == path:
            return slot
        self.torch.load_adapter(name, path)  # NLL scoring and the fallback path need it too
        with self._lock:
            if name in self._onnx:
                self.adapters.unload(name)
                del self._onnx[name]
            try:
                file = ort_build.adapter_file(path, self.folder, self.models_dir)
            except lora_onnx.UnsupportedAdapter:
                file = None  # e.g. DoRA or a full model folder: the torch engine runs this adapter's rows
            if file is not None:
                self.adapters.load(str(file), name)
                self._onnx[name] = file
            mode = "mixed" if file is not None else "separate"
            self.slots[name] = AdapterSlot(name, path, adapter_peft_type(path), mode)
            return self.slots[name]

    def generate(self, rows: list[Row], gen: GenSettings) -> list[RowOutput]:
        return last(self.stream(rows, gen))

    def stream(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        """Yield all rows' outputs whenever some row advanced; rows run `workers` at a time, in order."""
        check_rows(rows, gen, self.context_length, self.slots)
        yield from pooled_stream(rows, self.workers, self._row_outputs, gen, "onnxruntime-genai generation")

    def _row_outputs(self, row: Row, gen: GenSettings, stop: threading.Event) -> Iterator[RowOutput]:
        if row.adapter is not None and row.adapter not in self._onnx:
            for outs in self.torch.stream([row], gen):  # an adapter the graph cannot take
                if stop.is_set():
                    return
                yield outs[0]
            return
        yield from self._decode(row, gen, stop)

    def _decode(self, row: Row, gen: GenSettings, stop: threading.Event) -> Iterator[RowOutput]:
        import onnxruntime_genai as og

        start, out = time.perf_counter(), RowOutput()
        params = og.GeneratorParams(self.model)
        params.set_search_options(**search_options(gen, len(row.input_ids)))
        generator = og.Generator(self.model, params)
        if row.adapter is not None:
            generator.set_active_adapter(self.adapters, row.adapter)
        generator.append_tokens(np.asarray(row.input_ids, dtype=np.int32))
        while len(out.tokens) < gen.max_new_tokens and not generator.is_done():
            if stop.is_set():  # another row failed or the stream was closed: a cut row is never marked done
                return
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if record_token(out, token, self.tokenizer, self.eos_ids, time.perf_counter() - start):
                break
            yield out
        out.done = True
        yield out


def search_options(gen: GenSettings, prompt_len: int) -> dict:
    """onnxruntime-genai search options for our settings (greedy unless a temperature is set)."""
    options = {"max_length": prompt_len + gen.max_new_tokens, "do_sample": gen.temperature > 0,
               "repetition_penalty": gen.repetition_penalty}
    if gen.temperature > 0:  # top_k 0 = no top-k cut, as in our torch sampler
        options.update(temperature=gen.temperature, top_p=gen.top_p, top_k=0, random_seed=gen.seed)
    return options
