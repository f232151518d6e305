"""Pre-packed MKL weights for the small fp32 batches of a side-by-side decode on CPU.

A decode step multiplies a handful of rows (one per variant) by every weight matrix. For 4-8 rows, plain
`F.linear` (MKL sgemm) repacks the whole weight on every call and, on two threads, measured 3-14x slower than
for one row (576x576: 22 us for 1-3 rows, 308 us for 5). MKL's packed GEMM packs the weight once per batch
size and then costs about what a single row does (51 us), so five variants decode for little more than one.
Only calls inside `decode_steps()` (the batched decode loop) take this path; everything else (prefill, one
row, scoring, training, autograd, other dtypes/devices) is plain `F.linear`, bit for bit as before.
"""

from __future__ import annotations

import threading
import types
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

MIN_ROWS, MAX_ROWS = 2, 16  # one row: sgemv is already fast; above 16 rows sgemm packing amortizes itself
_local = threading.local()  # per thread: Gradio runs other requests on other threads


@contextmanager
def decode_steps():
    """Let patched layers use packed weights for forwards made by this thread inside the block."""
    previous = getattr(_local, "on", False)
    _local.on = True
    try:
        yield
    finally:
        _local.on = previous


def available() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def install(model: nn.Module) -> int:
    """Route every fp32 CPU nn.Linear of `model` through `_forward`; returns how many were patched."""
    if not available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and "forward" not in vars(module) and _eligible(module.weight):
            module.forward = types.MethodType(_forward, module)
            count += 1
    return count


def _eligible(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.float32


def _packable(self: nn.Linear, x: torch.Tensor, rows: int) -> bool:
    """Inside decode_steps, a small inference batch of fp32 rows on an fp32 CPU weight."""
    return (getattr(_local, "on", False) and MIN_ROWS <= rows <= MAX_ROWS and not torch.is_grad_enabled()
            and x.dtype == torch.float32 and _eligible(self.weight))


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if not _packable(self, x, rows):
        return F.linear(x, self.weight, self.bias)
    packed = _packed(self, rows)
    out = torch.ops.mkl._mkl_linear(x.reshape(rows, x.shape[-1]), packed, self.weight, self.bias, rows)
    return out.view(*x.shape[:-1], out.shape[-1])


def _packed(module: nn.Linear, rows: int) -> torch.Tensor:
    """The weight packed for `rows`; one packing is kept per layer (a new row count or new weights repack)."""
    weight = module.weight
    # In-place edits (e.g. a merged adapter) bump the version; inference tensors carry none.
    key = (rows, weight.data_ptr(), 0 if weight.is_inference() else weight._version)
    cached = getattr(module, "_arena_packed", None)
    if cached is None or cached[0] != key:
        cached = (key, torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows))
        module._arena_packed = cached
    return cached[1]
