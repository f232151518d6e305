"""Answer-only LM head: project through the vocabulary only at positions that carry a label.

Chat rows have most of their tokens masked (system line, question, retrieved context), yet a plain forward
projects every position through the 49k-word LM head and trl's fused head on CPU scores every position too
(and recomputes each tile in the backward, plus entropy for logging). Selecting the answer positions from
the hidden states first and running the LM head only there removes most of that work.
"""

from __future__ import annotations

import types

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutput

from training.speed.kernels import fused_rotary, llama_rotary_modules, summed_nll
from training.speed.packing import pack, packed_attention, right_padded_lengths
from training.speed.walks import cache_module_walks
from training.tokenize import IGNORE

# Positions scored in one piece; above this the logits (positions x vocab x 4 bytes, ~800 MB for a 49k vocab)
# are recomputed in the backward instead of being kept, so long raw-text batches stay within memory.
CHUNK = 4096
# Rows at least this fraction of their sub-batch's longest row share it (at most ~15 % padding per row); lower
# means fewer, larger matmuls but more padding.
SLACK = 0.85


def _chunk_nll(hidden: torch.Tensor, weight: torch.Tensor, bias, target: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # fp32 log-softmax even under bf16 autocast
    return summed_nll(logits, target)


def answer_nll(hidden: torch.Tensor, lm_head: torch.nn.Module, target: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL of `hidden` (positions x dim) against `target`, chunked when large."""
    weight, bias = lm_head.weight, lm_head.bias
    if hidden.size(0) <= CHUNK:
        return _chunk_nll(hidden, weight, bias, target)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.size(0), CHUNK):
        end = start + CHUNK
        total = total + checkpoint(_chunk_nll, hidden[start:end], weight, bias, target[start:end],
                                   use_reentrant=False)
    return total


def length_chunks(lengths: list[int], slack: float = SLACK) -> list[list[int]]:
    """Row indices grouped by length, longest first: each row is at least `slack` x its group's longest."""
    chunks: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True):
        if chunks and lengths[i] >= slack * lengths[chunks[-1][0]]:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def unpadded_parts(kwargs: dict, labels: torch.Tensor):
    """Split a right-padded batch into sub-batches of similar length, each trimmed to its longest row.

    Pad-to-longest makes every row as long as the batch's longest (random batches of mixed lengths: ~40 %
    padding); the sub-batches drop nearly all of it. Causal attention never looks right, so the real positions
    see exactly what they saw in the padded batch: the same loss and gradients, on the same random batches.
    Anything but plain right-padded `input_ids` + `attention_mask` is yielded unchanged.
    """
    lengths = right_padded_lengths(kwargs["attention_mask"]) if _plain_right_padded(kwargs) else None
    if lengths is None:
        yield kwargs, labels
        return
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    lengths = lengths.tolist()
    for rows in length_chunks(lengths):
        index, width = torch.tensor(rows, device=ids.device), max(1, lengths[rows[0]])
        yield ({**kwargs, "input_ids": ids[index, :width], "attention_mask": mask[index, :width]},
               labels[index, :width])


def add_answer_head(model) -> None:
    """Patch `model.forward` to accept `answer_only=True`: loss from the labelled positions, no logits.

    Patched on the instance so calls still go through PEFT and DDP wrappers (DDP only syncs gradients of a
    forward called through it). Without the flag the forward is the original one (generation unchanged).
    """
    previous = model.forward
    rotary_modules = llama_rotary_modules(model)

    def forward(self, *args, answer_only=False, labels=None, num_items_in_batch=None, **kwargs):
        if not answer_only:
            extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            return previous(*args, labels=labels, **extra, **kwargs)
        kwargs["use_cache"] = False
        total, count = 0.0, 0
        with fused_rotary(rotary_modules):  # kernels.py: the same rotary embedding in fewer passes
            for hidden, target in _hidden_and_targets(self, args, kwargs, labels):
                mask = target != IGNORE
                total = total + answer_nll(hidden[mask], self.get_output_embeddings(), target[mask])
                count = count + mask.sum()
        denom = num_items_in_batch if num_items_in_batch is not None else torch.as_tensor(count).clamp(min=1)
        return CausalLMOutput(loss=total / denom)

    model.forward = types.MethodType(forward, model)


def _hidden_and_targets(model, args: tuple, kwargs: dict, labels: torch.Tensor):
    """(hidden states, next-token targets) pieces of a batch: one packed sequence where the batch allows it
    (packing.py), else unpadded sub-batches of similar length, else the batch as given."""
    plain = not args and _plain_right_padded(kwargs)
    packed = pack(kwargs["input_ids"], kwargs["attention_mask"], labels) if plain else None
    if packed is not None:
        with packed_attention(model) as active:
            if active:
                inputs, target = packed
                yield model.base_model(**inputs, use_cache=False).last_hidden_state[0], target.to(model.device)
                return
    for part, part_labels in unpadded_parts(kwargs, labels) if not args else [(kwargs, labels)]:
        hidden = model.base_model(*args, **part).last_hidden_state[:, :-1]
        yield hidden, part_labels[:, 1:].to(hidden.device)


def _plain_right_padded(kwargs: dict) -> bool:
    """Only 2-D input_ids + attention_mask given (PEFT passes inputs_embeds=None and the like)."""
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    given = {k for k, v in kwargs.items() if v is not None}
    return ids is not None and mask is not None and ids.dim() == 2 and not given - {"input_ids", "attention_mask",
                                                                                    "use_cache"}


def install_answer_only_loss(trainer) -> None:
    """Give a stock trl SFTTrainer the answer-only loss, cached walks and cached FLOP count (on the instance).

    Instance attributes rather than a subclass, so the trainer stays the library's own class and
    `ARENA_FAST=0` only has to skip this call. Same data handling; loss on labelled positions only, without
    SFTTrainer's per-step entropy/accuracy logs; each batch run as one packed sequence (`packing.py`).
    """
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    add_answer_head(model)
    cache_module_walks(trainer.model)  # walks.py: train()/zero_grad() every step without a tree walk
    trainer._flos_per_token = None
    trainer.floating_point_ops = types.MethodType(_floating_point_ops, trainer)
    trainer._clip_grad_norm = types.MethodType(_clip_grad_norm, trainer)
    trainer.compute_loss = types.MethodType(_compute_loss, trainer)


def _floating_point_ops(self, inputs):
    """The Trainer's estimate (6 x parameters x tokens), with the parameters counted once, not per step."""
    key = getattr(self.model, "main_input_name", "input_ids")
    stock = type(self).floating_point_ops
    if key not in inputs:
        return stock(self, inputs)
    if self._flos_per_token is None:
        self._flos_per_token = stock(self, {key: torch.empty(1)})
    return self._flos_per_token * inputs[key].numel()


def _clip_grad_norm(self, model):
    params = getattr(model, "cached_parameters", None)  # the same list model.parameters() yields
    if params is None or self.args.fp16 or self._has_mixed_mesh_grads(model):
        return type(self)._clip_grad_norm(self, model)
    return self.accelerator.clip_grad_norm_(params, self.args.max_grad_norm)


def _compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
    outputs = model(**inputs, answer_only=True, num_items_in_batch=num_items_in_batch)
    loss = outputs.loss
    # As in SFTTrainer: the token count spans all ranks while DDP averages the gradients.
    if self.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * (self.accelerator.num_processes // self.get_tp_size())
    mode = "train" if self.model.training else "eval"
    if mode == "train":  # real (non-pad) tokens, for tokens/s in the metrics file
        mask = inputs.get("attention_mask")
        local = mask.sum() if mask is not None else torch.tensor(inputs["position_ids"].size(1))
        self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item()
    self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
    return (loss, outputs) if return_outputs else loss
