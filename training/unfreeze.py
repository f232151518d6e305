"""Gradual unfreezing (ULMFiT-style selective fine-tuning): the top layers first, more of the model later.

`--method freeze --unfreeze-schedule "2:0,4:50,all:100"` trains the top 2 transformer blocks (and the final
norm) from step 0, the top 4 from step 50 and every weight (embeddings and LM head included) from step 100.

How the optimizer picks new parameters up: every parameter the schedule will ever unfreeze is handed to the
optimizer when the Trainer builds it, and the ones not yet due are then switched to requires_grad=False.
Such a parameter gets no gradient, and torch's AdamW skips parameters whose .grad is None entirely (no
update, no weight decay, no moment state), so its weights stay exactly as loaded until its step; from then on
it is updated with fresh Adam moments and the run's learning-rate schedule. Keeping one fixed set of
parameter groups (rather than add_param_group at each stage) is what lets a checkpoint's optimizer state load
back on --resume: the groups are the same whatever stage the run had reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from foundation.errors import ArenaError

ALL = "all"


@dataclass(frozen=True)
class Stage:
    """From optimizer step `step` on, the top `layers` blocks are trainable (None: every parameter)."""

    layers: int | None
    step: int


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks (the ModuleList as long as num_hidden_layers)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ArenaError(f"cannot find the {n} transformer layers of {type(model).__name__} for method 'freeze'")


def parse_schedule(text: str) -> list[Stage]:
    """'2:0,4:50,all:100' -> stages; ArenaError naming the bad part (first stage at step 0, both increasing)."""
    stages = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        count, sep, step = part.partition(":")
        count, step = count.strip().lower(), step.strip()
        if not sep or not step.isdigit() or not (count == ALL or count.isdigit() and int(count) >= 1):
            raise ArenaError(f"unfreeze schedule part {part!r}: use LAYERS:STEP with LAYERS a number >= 1 or "
                             "'all' and STEP the optimizer step, e.g. 2:0,4:50,all:100")
        stages.append(Stage(None if count == ALL else int(count), int(step)))
    if not stages:
        raise ArenaError("unfreeze schedule is empty; e.g. 2:0,4:50,all:100")
    if stages[0].step != 0:
        raise ArenaError(f"unfreeze schedule must start at step 0 (got {stages[0].step}): which layers train first?")
    for before, after in zip(stages, stages[1:], strict=False):
        more = before.layers is not None and (after.layers is None or after.layers > before.layers)
        if after.step <= before.step or not more:
            raise ArenaError(f"unfreeze schedule: each stage must come at a later step and unfreeze more layers "
                             f"({before.layers or ALL}:{before.step} then {after.layers or ALL}:{after.step})")
    return stages


def trainable_at(model, stage: Stage) -> set[int]:
    """ids of the parameters stage trains: the top blocks and the final norm, or every parameter."""
    if stage.layers is None:
        return {id(p) for p in model.parameters()}
    layers = decoder_layers(model)
    if stage.layers > len(layers):
        raise ArenaError(f"unfreeze schedule asks for {stage.layers} layers; this model has {len(layers)} "
                         "(use 'all' for the whole model)")
    params = [p for layer in layers[len(layers) - stage.layers:] for p in layer.parameters()]
    norm = getattr(getattr(model, "model", model), "norm", None)
    params += list(norm.parameters()) if norm is not None else []
    return {id(p) for p in params}


def apply_stage(model, stage: Stage) -> int:
    """Freeze everything outside the stage; returns how many parameters are trainable now."""
    wanted = trainable_at(model, stage)
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class UnfreezeCallback(TrainerCallback):
    """Applies the schedule: the stage of the starting step at train begin (a resume lands in its own stage),
    then the next stage at the first step on or after its start. `history` records (step, trainable params)."""

    def __init__(self, model, stages: list[Stage]):
        self.model, self.stages = model, stages
        self.current: Stage | None = None
        self.history: list[tuple[int, int]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        stage = [s for s in self.stages if s.step <= state.global_step][-1]
        if stage != self.current:
            self.current = stage
            self.history.append((state.global_step, apply_stage(self.model, stage)))

    on_train_begin = on_step_begin

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.current is not None and "loss" in logs:
            logs["trainable_layers"] = self.current.layers if self.current.layers is not None else ALL
