"""onnxruntime-genai as the CPU generation engine: a converted graph, LoRA adapters switched per batch.

Rows are decoded in batches, one onnxruntime-genai generator per batch: decode reads the weights once per step
for every row of the batch, so more rows per step are nearly free (benchmarks/compare_throughput.py). A batch
holds rows of one adapter (a generator has one active adapter) whose prompts have similar lengths: padding a
short prompt up to a long RAG prompt makes the short row pay the long one's prefill (measured on a five-variant
workload, one thread: 42.6 s padded vs 21.8 s row by row). Prompts are right-padded with a pad token that never occurs
in a chat prompt (the model's own pad id is often its end-of-turn token, which every chat prompt holds, and
the generator would mask it): measured on the bundled model, fp32, 8 short prompts x 48 tokens, batched greedy
tokens were identical to rows generated alone (8/8; left padding gave 1/8), 2.9-3.1x faster.
Each session runs on every core (intra-op threads = cores) and batches run one after another: two generators
in two Python threads ran no faster than one after the other (6.75 s vs 6.73 s, one thread each; the bindings
keep the GIL while a token is generated), while two intra-op threads made one generator 1.75x faster.
Tokenizer, chat template, NLL scoring and adapters the graph cannot take stay on the torch engine.
"""

from __future__ import annotations

import functools
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
    NllRow,
    Templating,
    adapter_peft_type,
    check_rows,
    end_early,
    pooled_stream,
    template_ids,
)
from assistant.inference.decoding import record_token
from foundation.generation import GenSettings, Row, RowOutput


def available() -> bool:
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return False
    return True


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


MAX_BATCH = 16  # rows per generator; beyond this a step stops being nearly free on a small CPU
LENGTH_SLACK = 1.25  # a batch's longest prompt is at most 1.25x its shortest (+16 tokens): little padding
# Rows grouped at a time (e.g. ~25 questions x 5 variants). On the 165-pair FAQ's 50 questions x 5 variants
# (Zen 4, fp32, interleaved, twice each) windows of 128 rows took 0.92x the time of 64 (187 s vs 202 s), every
# answer identical: fuller groups of similar prompt lengths. The first questions still finish first.
WINDOW = 8 * MAX_BATCH


class OrtGenaiEngine(Templating):
    """Generation on an onnxruntime-genai graph of the torch engine's base model."""

    def __init__(self, torch_engine, graph_folder: Path, models_dir: Path, workers: int = 1):
        import onnxruntime_genai as og

        self.torch = torch_engine
        self.tokenizer = torch_engine.tokenizer
        self.folder, self.models_dir = Path(graph_folder), Path(models_dir)
        self.precision = json.loads((self.folder / ort_build.MARKER).read_text())["precision"]
        self.name = f"onnx-{self.precision}"
        self.workers = workers  # batches decoded at once (1: see the module docstring)
        self.pad_id = pad_token(self.tokenizer, self.torch.eos_ids)
        config = og.Config(str(self.folder))
        config.overlay(json.dumps({"model": {"pad_token_id": self.pad_id, "decoder": {"session_options": {
            "intra_op_num_threads": cores(), "inter_op_num_threads": 1}}}}))
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

    def nll_many(self, rows: list[NllRow]) -> list[float]:
        return self.torch.nll_many(rows)

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

    def stream(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        """Yield all rows' outputs whenever some row advanced; rows run in batches (see batches())."""
        check_rows(rows, gen, self.context_length, self.slots)
        yield from pooled_stream(batches(rows, self.pad_id), len(rows), self.workers,
                                 functools.partial(self._run_batch, rows), gen, "onnxruntime-genai generation")

    def _run_batch(self, all_rows: list[Row], index: list[int], gen: GenSettings, stop: threading.Event
                   ) -> Iterator[tuple[int, RowOutput]]:
        import onnxruntime_genai as og

        rows = [all_rows[i] for i in index]
        adapter = rows[0].adapter
        if adapter is not None and adapter not in self._onnx:
            for outs in self.torch.stream(rows, gen):  # an adapter the graph cannot take
                if stop.is_set():
                    return
                yield from zip(index, outs, strict=True)
            return
        start, outs = time.perf_counter(), [RowOutput() for _ in rows]
        width = max(len(r.input_ids) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)
        for k, row in enumerate(rows):
            ids[k, :len(row.input_ids)] = row.input_ids  # right padding (module docstring)
        params = og.GeneratorParams(self.model)
        params.set_search_options(**search_options(gen, width), batch_size=len(rows))
        generator = og.Generator(self.model, params)
        if adapter is not None:
            generator.set_active_adapter(self.adapters, adapter)
        generator.append_tokens(ids)
        live = list(range(len(rows)))
        while live and not generator.is_done():
            if stop.is_set():  # another batch failed or the stream was closed: a cut row is never marked done
                return
            generator.generate_next_token()
            tokens, now = generator.get_next_tokens(), time.perf_counter() - start
            for k in list(live):
                out = outs[k]
                if record_token(out, int(tokens[k]), self.tokenizer, self.eos_ids, now) or \
                        end_early(out, gen, self.tokenizer) or len(out.tokens) >= gen.max_new_tokens:
                    out.done = True
                    live.remove(k)
                yield index[k], out
        for k in live:  # the generator reached its max length
            outs[k].done = True
            yield index[k], outs[k]


def batches(rows: list[Row], pad_id: int) -> list[list[int]]:
    """Row indices grouped for one generator each, window by window of WINDOW rows in the given order, so the
    first questions finish first (progress, and what a resumed comparison keeps) while batches stay full."""
    return [g for start in range(0, len(rows), WINDOW)
            for g in _groups(rows, range(start, min(len(rows), start + WINDOW)), pad_id)]


def _groups(rows: list[Row], window: range, pad_id: int) -> list[list[int]]:
    """One adapter, similar prompt lengths, at most MAX_BATCH rows per group. A row whose prompt holds the pad
    token runs alone (the generator would mask that token)."""
    order = sorted(window, key=lambda i: (rows[i].adapter or "", len(rows[i].input_ids)))
    groups: list[list[int]] = []
    alone = [[i] for i in order if pad_id in rows[i].input_ids]
    for i in (i for i in order if pad_id not in rows[i].input_ids):
        row, group = rows[i], groups[-1] if groups else None
        if group and len(group) < MAX_BATCH and rows[group[0]].adapter == row.adapter \
                and len(row.input_ids) <= LENGTH_SLACK * len(rows[group[0]].input_ids) + 16:
            group.append(i)
        else:
            groups.append([i])
    return groups + alone


def pad_token(tokenizer, eos_ids: set[int]) -> int:
    """A special token no chat prompt holds: not an end token, not in the chat template's own markers."""
    turns = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
             {"role": "user", "content": "v"}]
    try:
        used = set(template_ids(tokenizer, [{"role": "system", "content": "s"}, *turns]))
    except Exception:  # noqa: BLE001 - some chat templates refuse a system turn
        used = set(template_ids(tokenizer, turns))
    used |= set(eos_ids)
    candidates = [tokenizer.pad_token_id, tokenizer.unk_token_id, *sorted(tokenizer.all_special_ids)]
    return next((t for t in candidates if t is not None and t not in used), len(tokenizer) - 1)


def search_options(gen: GenSettings, prompt_len: int) -> dict:
    """onnxruntime-genai search options for our settings (greedy unless a temperature is set)."""
    options = {"max_length": prompt_len + gen.max_new_tokens, "do_sample": gen.temperature > 0,
               "repetition_penalty": gen.repetition_penalty}
    if gen.temperature > 0:  # top_k 0 = no top-k cut, as in our torch sampler
        options.update(temperature=gen.temperature, top_p=gen.top_p, top_k=0, random_seed=gen.seed)
    return options
