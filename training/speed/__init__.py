"""Training speed code, behind one switch: `apply(model, trainer)` or the stock trl/transformers/peft path.

What it does (each module says what it measured): fused LoRA linears (fastlora.py), RMSNorm/rotary/loss
with hand-written gradients (kernels.py), each batch as one packed sequence with packed causal attention
(packing.py, attention.py), the LM head run only at answer positions (loss.py), the Trainer's per-step module
walks done once (walks.py), freed memory kept in the process (memory.py). Together ~2.1x the plain Trainer's
tokens/s on 2 CPU cores with the same validation loss (benchmarks/training.py).

Rules:
- Applied only where it was measured to help: CPU. On a GPU the stock path runs (its kernels are others').
- `ARENA_FAST=0` (Settings.fast) runs the stock path everywhere; every training test passes both ways.
- Several pieces rely on private internals (Trainer._clip_grad_norm, trl's _metrics, attention registries,
  torch._softmax_backward_data). They were written for the version ranges in TESTED; outside them `apply`
  logs one line and leaves the stock path, rather than failing or silently misbehaving.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

from training.speed.memory import retain_freed_memory

log = logging.getLogger(__name__)

# Library -> [lowest, highest) version the speed code was written and tested against.
TESTED = {"torch": ("2.6", "3"), "transformers": ("5.0", "6"), "peft": ("0.17", "1"), "trl": ("1.0", "2")}


def untested_versions(installed: dict[str, str] | None = None) -> list[str]:
    """'lib X.Y (tested lo-hi)' for each library outside its tested range; [] when all are inside."""
    out = []
    for lib, (low, high) in TESTED.items():
        try:
            have = installed[lib] if installed is not None else version(lib)
        except (KeyError, PackageNotFoundError):
            out.append(f"{lib} not installed")
            continue
        if not Version(low) <= Version(Version(have).base_version) < Version(high):
            out.append(f"{lib} {have} (tested {low} to below {high})")
    return out


def why_stock(model, installed: dict[str, str] | None = None) -> str | None:
    """Why the stock path must run for `model` (None: the speed code applies)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"training on {device.type}, where the speed code was not measured"
    outside = untested_versions(installed)
    return "untested library versions: " + ", ".join(outside) if outside else None


def apply(model, trainer, installed: dict[str, str] | None = None) -> bool:
    """Switch a freshly built trl trainer and its model to the measured fast path; False = stock path kept.

    Call before `trainer.train()` (the optimiser is created there, after these patches). SFT trainers get the
    answer-only loss and the cached walks; other trainers (DPO) get the model-level fusions only.
    """
    from trl import SFTTrainer

    # deferred: these pull torch (and transformers)
    from training.speed.fastlora import fuse_lora_linears
    from training.speed.kernels import fuse_rms_norms
    from training.speed.loss import install_answer_only_loss

    reason = why_stock(model, installed)
    if reason is not None:
        log.warning("training speed code off (%s): stock trl/transformers path", reason)
        return False
    fuse_lora_linears(model)  # same LoRA, fewer memory passes per layer (~15-35 % faster fwd+bwd on CPU)
    fuse_rms_norms(model)
    retain_freed_memory()  # no page faults on every step's fresh activations
    if isinstance(trainer, SFTTrainer):
        install_answer_only_loss(trainer)
    return True
