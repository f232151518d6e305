"""Scorers for the forgetting and bias checks straight from a peft model (the app scores through the arena).

They compute the same teacher-forced NLL as the torch engine (assistant.inference.decoding.reference_nll),
so the checks can be tested on a hand-built adapter without a registry or a runtime.
"""

from __future__ import annotations

from assistant.inference.decoding import reference_nll


def reply_nll(model, tokenizer, prompt: str, reply: str) -> float:
    """Mean NLL per token of `reply` as the assistant answer to `prompt` (the model's chat template)."""
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
    return reference_nll(model, list(prompt_ids), tokenizer(reply, add_special_tokens=False)["input_ids"])


def peft_scorer(peft_model, tokenizer):
    """(base NLLs, adapter NLLs): the adapter active, the base via `disable_adapter()` on the same weights."""
    def score(pairs):
        with peft_model.disable_adapter():
            base = [reply_nll(peft_model, tokenizer, p, r) for p, r in pairs]
        return base, [reply_nll(peft_model, tokenizer, p, r) for p, r in pairs]
    return score
