"""Fewer passes over memory for the small layers of a training step: RMSNorm, rotary embedding, cross-entropy.

On CPU these layers are bound by memory traffic, not arithmetic: each element-wise op reads and writes a
whole (tokens x width) tensor, and autograd's generic backward of `weight * x * rsqrt(mean(x^2) + eps)` or of
`x * cos + rotate_half(x) * sin` takes ~8 such passes (zero-filled slices, separate negations, an add per
branch). The hand-written gradients below compute the same formulas in 2-4 passes (as Liger and Unsloth do
with GPU kernels, here in plain PyTorch). Measured per layer at 832 tokens, forward+backward: RMSNorm 1.5 vs
3.0 ms, rotary (queries and keys) 1.7-2.9 vs 4.0-4.9 ms. Results agree with transformers' to ~1e-6.

Only the implementations known to compute exactly these formulas are replaced: an RMSNorm or rotary function
whose bytecode is Llama's (the many "Copied from Llama" modules: Mistral, Qwen2, SmolLM...); anything else keeps
its own forward.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager

import torch


class RMSNormFn(torch.autograd.Function):
    """weight * x / sqrt(mean(x^2) + eps) over the last dimension, in the input's dtype (fp32 here)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        width = x.size(-1)
        # one reading pass for the norm instead of pow (a full write) then mean
        inv = torch.linalg.vector_norm(x, dim=-1, keepdim=True).pow_(2).div_(width).add_(eps).rsqrt_()
        ctx.save_for_backward(x, weight, inv)
        return torch.mul(x, inv).mul_(weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight, inv = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:  # trained norms (full fine-tuning); LoRA keeps them frozen
            grad_weight = (grad * x).mul_(inv).sum(dim=tuple(range(grad.dim() - 1)))
        if ctx.needs_input_grad[0]:
            # d/dx of x * inv: scaled * inv - x * inv^3 * mean(scaled * x)
            scaled = grad * weight
            coef = torch.linalg.vecdot(scaled, x).unsqueeze(-1).mul_(inv.pow(3)).div_(-x.size(-1))
            grad_x = scaled.mul_(inv).addcmul_(x, coef)
        return grad_x, grad_weight, None


class RotaryFn(torch.autograd.Function):
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1) (the halves of the last dimension)."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        half = x.size(-1) // 2
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        half = grad.size(-1) // 2
        grad_x = grad * cos  # the transpose of rotate_half maps (g1, g2) to (g2, -g1)
        grad_x[..., :half].addcmul_(grad[..., half:], sin[..., half:])
        grad_x[..., half:].addcmul_(grad[..., :half], sin[..., :half], value=-1)
        return grad_x, None, None


def rotary(q, k, cos, sin, unsqueeze_dim=1):
    """Drop-in for transformers' Llama `apply_rotary_pos_emb`."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return RotaryFn.apply(q, cos, sin), RotaryFn.apply(k, cos, sin)


class SummedNLLFn(torch.autograd.Function):
    """Summed cross-entropy of fp32 `logits` [positions, vocab] against `target`.

    F.cross_entropy keeps a full log-softmax and its backward zero-fills a one-hot gradient before the
    log-softmax backward: 3 writes of positions x vocab (~100 MB at 500 x 49k). Here the forward only reads
    (log-sum-exp) and the backward turns the saved logits into the softmax in place.
    """

    @staticmethod
    def forward(ctx, logits, target):
        lse = torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(logits, lse, target)
        return (lse - logits.gather(1, target[:, None]).squeeze(1)).sum()

    @staticmethod
    def backward(ctx, grad):
        logits, lse, target = ctx.saved_tensors
        # exp(logits - lse + log g) = g * softmax in one pass more; a zero or negative g goes the plain way
        if grad > 0:
            probs = logits.sub_((lse - grad.log())[:, None]).exp_()
        else:
            probs = logits.sub_(lse[:, None]).exp_().mul_(grad)
        probs.scatter_add_(1, target[:, None], (-grad).expand(target.size(0), 1))
        return probs, None


def summed_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(logits, target, reduction="sum") for targets that are all valid classes."""
    if logits.dtype != torch.float32 or logits.dim() != 2:
        return torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    return SummedNLLFn.apply(logits, target)


def _same_code(fn, reference) -> bool:
    """Whether `fn` compiles to the same bytecode and names as `reference` (a verbatim copy of it)."""
    a, b = getattr(fn, "__code__", None), reference.__code__
    return a is not None and a.co_code == b.co_code and a.co_names == b.co_names


def _rms_forward(self, hidden_states):
    if hidden_states.dtype != torch.float32 or self.weight.dtype != torch.float32:
        return type(self).forward(self, hidden_states)
    return RMSNormFn.apply(hidden_states, self.weight, self.variance_epsilon)


def fuse_rms_norms(model) -> int:
    """Route every Llama-style RMSNorm of `model` through RMSNormFn (fp32 only); returns how many."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    count = 0
    for module in model.modules():
        if "forward" not in vars(module) and _same_code(type(module).forward, LlamaRMSNorm.forward):
            module.forward = types.MethodType(_rms_forward, module)
            count += 1
    return count


def llama_rotary_modules(model) -> list[types.ModuleType]:
    """The modeling modules of `model`'s classes whose `apply_rotary_pos_emb` is Llama's (looked up once: a
    walk over every module of a peft model costs ~10 ms, too much for every step)."""
    from transformers.models.llama import modeling_llama

    found = {sys.modules.get(type(m).__module__) for m in model.modules()}
    return [module for module in found if module is not None
            and _same_code(getattr(module, "apply_rotary_pos_emb", None), modeling_llama.apply_rotary_pos_emb)]


@contextmanager
def fused_rotary(modules: list[types.ModuleType]):
    """Inside the block, these modeling modules (`llama_rotary_modules`) use `rotary`.

    The function is looked up in the module's globals at each call, so this is where it can be swapped
    (Liger patches it the same way); the originals come back on exit.
    """
    swapped = [(module, module.apply_rotary_pos_emb) for module in modules
               if module.apply_rotary_pos_emb is not rotary]  # not again inside a nested block
    for module, _ in swapped:
        module.apply_rotary_pos_emb = rotary
    try:
        yield len(swapped)
    finally:
        for module, fn in swapped:
            module.apply_rotary_pos_emb = fn
