"""The torch engine: one base model, peft adapters by name, rows decoded one by one (the reference).

Every row is decoded alone with its own KV cache (decoding.decode_row), interleaved one token per row per
turn so all columns stream at once. Nothing is padded or batched, so each row's greedy tokens are exactly
what the row gives alone; speed on CPU comes from the onnxruntime-genai engine (assistant/inference/ortgenai.py).
This engine stays the reference, the GPU path, the NLL scorer and the fallback for adapters the onnx graph
cannot take (DoRA, full model folders, other peft types).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from assistant.inference.base import (
    AdapterSlot,
    NllRow,
    Templating,
    adapter_peft_type,
    check_rows,
    eos_token_ids,
)
from assistant.inference.decoding import batch_reference_nll, decode_row, reference_nll
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row, RowOutput
from foundation.models import LoadedModel

# Padded tokens (rows x longest row) per NLL forward. On a CPU a forward of a few thousand tokens already keeps
# every core busy (its matmuls run at full speed), so a bigger batch gains nothing while its activations grow
# (rows x length x hidden per layer, attention rows x heads x length^2); ~4k tokens keeps them to a few hundred
# MB on a small model. A row longer than this runs alone.
NLL_BATCH_TOKENS = 4096


class Engine(Templating):
    """Generates for (prompt, adapter) rows over one shared base model with peft adapters."""

    name = "torch"

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model  # becomes a PeftModel once the first peft adapter is loaded
        self.slots: dict[str, AdapterSlot] = {}
        self._separate: dict[str, torch.nn.Module] = {}  # at most one extra model, see _separate_model
        # One generation at a time (the KV caches and active adapters are per call). A plain Lock, not an
        # RLock: Gradio advances a streaming generator from different worker threads, and an RLock released by
        # another thread than its owner raises and stays held forever (every later request then hangs).
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        cfg = self.loaded.model.config
        return int(getattr(cfg, "max_position_embeddings", 0) or 2048)

    @property
    def eos_ids(self) -> set[int]:
        return eos_token_ids(self.tokenizer, getattr(self.loaded.model, "generation_config", None))

    def load_adapter(self, name: str, path: Path) -> AdapterSlot:
        """Load an adapter folder under `name` once; later calls with the same name and path are free."""
        path = Path(path)
        with self._lock:
            slot = self.slots.get(name)
            if slot is not None and slot.path == path:
                return slot
            if slot is not None:  # same name, new folder (re-trained or renamed): replace the old weights
                self.slots.pop(name)
                self._separate.pop(name, None)
                if slot.mode != "separate":
                    self.model.delete_adapter(peft_key(name))
                    self._set_active([])
            peft_type = adapter_peft_type(path)
            # LoRA (any variant) lives in the shared model's layers; full models and other peft types (prompt
            # tuning, ...) need their own forward, so they get their own model.
            mode = "mixed" if peft_type == "LORA" else "separate"
            if mode == "mixed":
                self._attach(name, path)
            self.slots[name] = AdapterSlot(name, path, peft_type, mode)
            return self.slots[name]

    def _attach(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=peft_key(name), is_trainable=False)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=peft_key(name),
                                                   is_trainable=False)
        self.model.eval()
        self._set_active([])

    def _separate_model(self, name: str) -> torch.nn.Module:
        """Full-model folders and non-LoRA peft types get their own model; only the latest one is kept."""
        if name in self._separate:
            return self._separate[name]
        from transformers import AutoModelForCausalLM

        slot = self.slots[name]
        self._separate.clear()  # keep memory bounded to base + one extra model
        if slot.peft_type is None:
            model = AutoModelForCausalLM.from_pretrained(slot.path, dtype=self.loaded.dtype, use_safetensors=True)
        else:
            from peft import PeftModel

            if not Path(self.loaded.path, "config.json").is_file():
                raise ArenaError(f"adapter {name!r} ({slot.peft_type}) needs the base model folder, "
                                 f"but the base was not loaded from one ({self.loaded.path})")
            base = AutoModelForCausalLM.from_pretrained(self.loaded.path, dtype=self.loaded.dtype,
                                                        use_safetensors=True)
            model = PeftModel.from_pretrained(base, str(slot.path), is_trainable=False)
        self._separate[name] = model.to(self.loaded.device).eval()
        return self._separate[name]

    def stream(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        """Yield every row's growing output, one token per unfinished row per turn."""
        check_rows(rows, gen, self.context_length, self.slots)
        outputs = [RowOutput() for _ in rows]
        with self._lock:
            # Each sampled row draws from its own seed (the call's seed + its index): rows with one prompt (K
            # paraphrases of a question) would otherwise all sample the same text. Greedy rows ignore the seed.
            live = {i: decode_row(*self._model_for(row.adapter), row, replace(gen, seed=gen.seed + i), self.eos_ids,
                                  self.tokenizer)
                    for i, row in enumerate(rows)}
            while live:
                for i, steps in list(live.items()):
                    outputs[i] = next(steps, outputs[i])
                    if outputs[i].done:
                        del live[i]
                yield outputs
        for out in outputs:  # rows that ended without a final step (none expected) are still marked
            out.done = True
        yield outputs

    def _model_for(self, adapter: str | None):
        """(model, context activating the adapter around each forward) for a row."""
        from peft import PeftModel

        slot = self.slots.get(adapter) if adapter else None
        if slot is not None and slot.mode == "separate":
            return self._separate_model(adapter), nullcontext
        # Calling the wrapped transformers model skips PeftModel.forward's per-call bookkeeping.
        inner = self.model.base_model.model if isinstance(self.model, PeftModel) else self.model
        return inner, (lambda: self._activated([adapter] if adapter else []))

    @contextmanager
    def _activated(self, names: list[str]):
        """Make `names` the active adapters for one forward, then none again (the base stays plain)."""
        if names:
            self._set_active(names)
        try:
            yield
        finally:
            if names:
                self._set_active([])

    def _set_active(self, names: list[str]) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        # With no active adapter the injected layers act as the plain base model, so code that uses
        # runtime.base.model directly (training, comparison) never sees an adapter by accident.
        for module in self.model.modules():
            if isinstance(module, BaseTunerLayer):
                module.set_adapter([peft_key(n) for n in names], inference_mode=True)

    def nll(self, prompt_ids: list[int], reference_ids: list[int], adapter: str | None) -> float:
        """Mean per-token negative log-likelihood of `reference_ids` after `prompt_ids` (teacher forcing)."""
        if not reference_ids:
            raise ArenaError("reference answer is empty")
        check_rows([Row(prompt_ids, adapter)], GenSettings(max_new_tokens=1), self.context_length, self.slots)
        with self._lock:
            model, context = self._model_for(adapter)
            with context():
                return reference_nll(model, prompt_ids, reference_ids)

    def nll_many(self, rows: list[NllRow]) -> list[float]:
        """`nll` of every (prompt_ids, reference_ids, adapter) row, in order, in padded batches: rows grouped by
        adapter (one adapter active per forward), sorted by length so a batch pads little, at most
        NLL_BATCH_TOKENS padded tokens per forward. Rows of a "separate" adapter (own model) run one by one."""
        for prompt, reference, adapter in rows:
            if not reference:
                raise ArenaError("reference answer is empty")
            if not prompt:
                raise ArenaError("a reference NLL needs a prompt before the reference")
            check_rows([Row(prompt, adapter)], GenSettings(max_new_tokens=1), self.context_length, self.slots)
        out: list[float] = [0.0] * len(rows)
        groups: dict[str | None, list[int]] = {}
        for i, (_, _, adapter) in enumerate(rows):
            groups.setdefault(adapter, []).append(i)
        for adapter, indices in groups.items():
            slot = self.slots.get(adapter) if adapter else None
            if slot is not None and slot.mode == "separate":
                for i in indices:
                    out[i] = self.nll(*rows[i])
                continue
            for batch in nll_batches([len(rows[i][0]) + len(rows[i][1]) for i in indices], NLL_BATCH_TOKENS):
                picked = [indices[k] for k in batch]
                with self._lock:
                    model, context = self._model_for(adapter)
                    with context():
                        scores = batch_reference_nll(model, [rows[i][:2] for i in picked])
                for i, score in zip(picked, scores, strict=True):
                    out[i] = score
        return out


def nll_batches(lengths: list[int], budget: int = NLL_BATCH_TOKENS) -> list[list[int]]:
    """Indices of `lengths` in batches of similar length, each at most `budget` padded tokens (rows x longest)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        if batches and (len(batches[-1]) + 1) * lengths[i] <= budget:
            batches[-1].append(i)  # sorted ascending: row i is the batch's longest
        else:
            batches.append([i])
    return batches


def peft_key(name: str) -> str:
    """The peft adapter name of a registry name. peft keys modules by adapter name and a torch module name
    cannot hold '.', while registry names may ("faq.v2"): other characters become '_' plus a hash of the
    name, so "faq.v2" and "faq v2" stay apart; plain names are kept as they are."""
    if re.fullmatch(r"\w+", name, flags=re.ASCII):
        return name
    return re.sub(r"\W", "_", name, flags=re.ASCII) + "__" + hashlib.sha1(name.encode()).hexdigest()[:8]
