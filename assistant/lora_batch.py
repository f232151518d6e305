"""Batched multi-adapter LoRA: the base linear once for the whole batch, each adapter's delta on its rows only.

peft's mixed-adapter path (`adapter_names=`) rebuilds index lists and masks in every layer on every token,
which roughly doubled the cost of a LoRA row. Here the peft layers stay inactive (they compute the plain base
linear) and one forward hook per LoRA Linear adds `scale * B(A(x) * row_mask)` to the output, with row masks
computed once per generation.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F

BASE = "__base__"  # peft's name for "no adapter" rows in a mixed batch


class LoraRouter:
    """Forward hooks on a peft model's LoRA Linear layers, routed per call through a thread-local plan."""

    def __init__(self):
        self._local = threading.local()  # other threads using the same model (training, compare) see no plan
        self._hooked: set[int] = set()
        self._handles: list = []

    def install(self, model: torch.nn.Module) -> None:
        """Hook every LoRA Linear of `model` not hooked yet (call again after loading another adapter)."""
        from peft.tuners.lora.layer import Linear

        for module in model.modules():
            if isinstance(module, Linear) and id(module) not in self._hooked:
                self._hooked.add(id(module))
                self._handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module, args, output):
        plan = getattr(self._local, "plan", None)
        if not plan:
            return None
        x, out = args[0], output.view(-1, output.shape[-1])
        for name, rows in plan:
            if name not in module.lora_A:
                continue  # this adapter does not target this layer
            a, b = module.lora_A[name].weight, module.lora_B[name].weight
            low = F.linear(x.to(a.dtype), a)
            if rows is not None:  # [batch, 1, 1] of 0/1: other rows' share is zeroed, no gather/scatter
                low.mul_(rows)
            # The scaled B product is accumulated into the base output inside the GEMM: three small ops per
            # layer and adapter, which is what a decode step of a few rows costs (each op, not its FLOPs).
            out.addmm_(low.view(-1, low.shape[-1]).to(out.dtype), b.t().to(out.dtype), alpha=module.scaling[name])
        return output

    def plan(self, names: list[str], device) -> list[tuple[str, torch.Tensor | None]]:
        """[(adapter, None for all rows or a [batch, 1, 1] 0/1 row mask)] for a batch whose row i uses names[i]."""
        plan = []
        for name in dict.fromkeys(names):
            if name == BASE:
                continue
            mask = torch.tensor([float(n == name) for n in names], device=device).view(-1, 1, 1)
            plan.append((name, None if bool(mask.all()) else mask))
        return plan

    @contextmanager
    def routed(self, plan: list):
        """Apply `plan` to forwards made by this thread inside the block."""
        self._local.plan = plan
        try:
            yield
        finally:
            self._local.plan = None


def lora_linear_only(model: torch.nn.Module, name: str) -> bool:
    """True when adapter `name` lives only in plain LoRA Linear layers (what the hooks can apply)."""
    from peft.tuners.lora.layer import Linear, LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer) and name in getattr(module, "lora_variant", {}):
            return False  # DoRA and other variants change the base output, not just add a delta
        in_lora = isinstance(module, LoraLayer) and (name in module.lora_A or name in module.lora_embedding_A)
        if in_lora and not isinstance(module, Linear):
            return False
        if type(module).__name__ == "ModulesToSaveWrapper" and name in getattr(module, "modules_to_save", {}):
            return False
    return True
