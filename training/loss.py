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

IGNORE = -100
# Positions scored in one piece; above this the logits (positions x vocab x 4 bytes, ~800 MB for a 49k vocab)
# are recomputed in the backward instead of being kept, so long raw-text batches stay within memory.
CHUNK = 4096


def _chunk_nll(hidden: torch.Tensor, weight: torch.Tensor, bias, target: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # fp32 log-softmax even under bf16 autocast
    return F.cross_entropy(logits, target, reduction="sum")


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


def add_answer_head(model) -> None:
    """Patch `model.forward` to accept `answer_only=True`: loss from the labelled positions, no logits.

    Patched on the instance so calls still go through PEFT and DDP wrappers (DDP only syncs gradients of a
    forward called through it). Without the flag the forward is the original one (generation unchanged).
    """
    previous = model.forward

    def forward(self, *args, answer_only=False, labels=None, num_items_in_batch=None, **kwargs):
        if not answer_only:
            extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            return previous(*args, labels=labels, **extra, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        target = labels[:, 1:].to(hidden.device)
        mask = target != IGNORE
        total = answer_nll(hidden[mask], self.get_output_embeddings(), target[mask])
        count = mask.sum()
        denom = num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1)
        return CausalLMOutput(loss=total / denom)

    model.forward = types.MethodType(forward, model)


def answer_only_sft_trainer():
    """trl's SFTTrainer with the loss from `add_answer_head` (built lazily: trl is slow to import)."""
    from trl import SFTTrainer

    class AnswerOnlySFTTrainer(SFTTrainer):
        """Same data handling as SFTTrainer; loss on labelled positions only, without entropy/accuracy logs."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            add_answer_head(model)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
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

    return AnswerOnlySFTTrainer
