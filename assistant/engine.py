"""One base model in memory, peft adapters loaded by name, and a batched streaming decode loop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from assistant import attention, packed_linear
from assistant.decoding import GenSettings, Row, RowOutput, decode
from assistant.errors import ArenaError
from assistant.lora_batch import BASE, LoraRouter, lora_linear_only
from assistant.models import LoadedModel

__all__ = ["Engine", "GenSettings", "Row", "RowOutput", "BASE"]  # settings/rows live in decoding

MIXABLE_TYPES = {"LORA"}  # peft tuners our batched hooks can apply (plain LoRA Linear layers)


@dataclass
class AdapterSlot:
    """How a loaded adapter is run: in the mixed batch, alone on the shared model, or on its own model."""

    name: str
    path: Path
    peft_type: str | None
    mode: str  # "mixed" | "solo" (same weights, own call: DoRA) | "separate" (own model: full/prompt tuning/...)


def adapter_peft_type(path: Path) -> tuple[str | None, bool]:
    """(peft type, uses DoRA) of an adapter folder; (None, False) for a full model folder."""
    from assistant.models import require_safetensors

    require_safetensors(path, "adapter folder")
    cfg = path / "adapter_config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        return str(data.get("peft_type", "")).upper() or None, bool(data.get("use_dora"))
    if (path / "config.json").is_file():
        return None, False
    raise ArenaError(f"adapter folder {path} has neither adapter_config.json nor config.json")


class Engine:
    """Generates for many (prompt, adapter) rows at once over one shared base model."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model  # becomes a PeftModel once the first mixable adapter is loaded
        # Side-by-side decode costs: weights packed for small batches, attention over each row's real keys.
        packed_linear.install(self.model)
        attention.install(self.model)
        self.slots: dict[str, AdapterSlot] = {}
        self._separate: dict[str, torch.nn.Module] = {}  # at most one extra model, see _separate_model
        # One generation at a time (the KV cache and hooks are per call). A plain Lock, not an RLock: Gradio
        # advances a streaming generator from different worker threads, and an RLock released by another
        # thread than its owner raises and stays held forever (every later request then hangs).
        self._lock = threading.Lock()
        self.router = LoraRouter()  # our batched LoRA application (lora_batch.py), not peft's masked loop

    @property
    def context_length(self) -> int:
        cfg = self.loaded.model.config
        return int(getattr(cfg, "max_position_embeddings", 0) or 2048)

    @property
    def eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        cfg_eos = getattr(getattr(self.loaded.model, "generation_config", None), "eos_token_id", None)
        ids.update(cfg_eos if isinstance(cfg_eos, list) else [cfg_eos])
        return {i for i in ids if i is not None}

    def chat_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of a conversation with the model's own chat template, ready for the reply."""
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(out["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def load_adapter(self, name: str, path: Path) -> AdapterSlot:
        """Load an adapter folder under `name` once; later calls with the same name and path are free."""
        path = Path(path)
        with self._lock:
            slot = self.slots.get(name)
            if slot is not None and slot.path == path:
                return slot
            if slot is not None:  # same name, new folder (re-trained or renamed): replace the old weights
                self._unload(slot)
            peft_type, dora = adapter_peft_type(path)
            mode = "separate" if peft_type not in MIXABLE_TYPES else ("solo" if dora else "mixed")
            if mode != "separate":
                self._attach(name, path)
                self.router.install(self.model)
                if mode == "mixed" and not lora_linear_only(self.model, name):
                    mode = "solo"  # e.g. LoRA on embeddings or modules_to_save: peft's own path, alone
            self.slots[name] = AdapterSlot(name, path, peft_type, mode)
            return self.slots[name]

    def _unload(self, slot: AdapterSlot) -> None:
        self.slots.pop(slot.name)
        self._separate.pop(slot.name, None)
        if slot.mode != "separate":
            self.model.delete_adapter(slot.name)
            self._set_active([])

    def _attach(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name, is_trainable=False)
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
        """Yield every row's growing output: mixed rows in one batched call, then solo/separate rows."""
        gen.check(self.context_length)
        for row in rows:
            if row.adapter is not None and row.adapter not in self.slots:
                raise ArenaError(f"adapter {row.adapter!r} is not loaded; loaded: {sorted(self.slots) or 'none'}")
        outputs = [RowOutput() for _ in rows]
        with self._lock:
            for group in self._groups(rows):
                start = time.perf_counter()
                for step in self._run_group([rows[i] for i in group], gen):
                    for i, out in zip(group, step, strict=True):
                        outputs[i] = out
                    yield outputs
                self._finish([outputs[i] for i in group], start)
        yield outputs

    @staticmethod
    def _finish(outputs: list[RowOutput], start: float) -> None:
        for out in outputs:
            out.done = True
            out.seconds = out.seconds or time.perf_counter() - start

    def _groups(self, rows: list[Row]) -> list[list[int]]:
        """Indices of rows that can share one forward: all mixable rows together, every other row alone."""
        mixed = [i for i, r in enumerate(rows) if r.adapter is None or self.slots[r.adapter].mode == "mixed"]
        others = [[i] for i in range(len(rows)) if i not in mixed]
        return ([mixed] if mixed else []) + others

    def _run_group(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        adapter = rows[0].adapter
        slot = self.slots.get(adapter) if adapter else None
        if slot is not None and slot.mode == "separate":
            return decode(self._separate_model(adapter), self.tokenizer, rows, gen, self.eos_ids, None)
        if slot is not None and slot.mode == "solo":
            return decode(self._inner(), self.tokenizer, rows, gen, self.eos_ids,
                          lambda idx: self._activated([adapter]))
        names = [r.adapter or BASE for r in rows]
        return decode(self._inner(), self.tokenizer, rows, gen, self.eos_ids, self._router(names))

    @contextmanager
    def _activated(self, names: list[str]):
        """Make `names` the active adapters for one call, then none again (the base stays plain)."""
        self._set_active(names)
        try:
            yield
        finally:
            self._set_active([])

    def _set_active(self, names: list[str]) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        # With no active adapter the injected layers act as the plain base model, so code that uses
        # runtime.base.model directly (training, comparison) never sees an adapter by accident.
        for module in self.model.modules():
            if isinstance(module, BaseTunerLayer):
                module.set_adapter(names, inference_mode=True)

    def _inner(self) -> torch.nn.Module:
        from peft import PeftModel

        # Calling the wrapped transformers model skips PeftModel.forward's per-call bookkeeping.
        return self.model.base_model.model if isinstance(self.model, PeftModel) else self.model

    def _router(self, names: list[str]):
        """Row indices -> a context routing those rows to their adapters (None without any adapter)."""
        if all(n == BASE for n in names):
            return None  # no adapter active: the injected layers already compute the plain base model
        plans: dict[tuple, list] = {}  # the decode loop asks for the same rows every token: plan once
        device = self.loaded.device

        def route(idx):
            key = tuple(idx)
            if key not in plans:
                plans[key] = self.router.plan([names[i] for i in idx], device)
            return self.router.routed(plans[key])
        return route

    def generate(self, rows: list[Row], gen: GenSettings) -> list[RowOutput]:
        """The final outputs of stream()."""
        last: list[RowOutput] = []
        for outputs in self.stream(rows, gen):
            last = outputs
        return last

    def nll(self, prompt_ids: list[int], reference_ids: list[int], adapter: str | None) -> float:
        """Mean per-token negative log-likelihood of `reference_ids` after `prompt_ids` (teacher forcing)."""
        if not reference_ids:
            raise ArenaError("reference answer is empty")
        ids = torch.tensor([prompt_ids + reference_ids], device=self.loaded.device)
        with self._lock, torch.inference_mode():
            slot = self.slots.get(adapter) if adapter else None
            if slot is not None and slot.mode == "separate":
                logits = self._separate_model(adapter)(input_ids=ids).logits
            else:
                route = (lambda idx: self._activated([adapter])) if slot is not None and slot.mode == "solo" \
                    else self._router([adapter or BASE])
                with route([0]) if route else nullcontext():
                    logits = self._inner()(input_ids=ids).logits
        logits = logits[0, len(prompt_ids) - 1:-1].float()
        return float(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids):]))
