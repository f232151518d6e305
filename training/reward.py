"""Reward model (`--method reward`), the first stage of RLHF: a LoRA on the base with a scalar head.

Trained with trl's RewardTrainer on preference pairs (chat votes or prompt/chosen/rejected files): the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)). Its quality figure is the pairwise accuracy on the
held-out pairs (the share where chosen scores above rejected). It is registered with kind "reward": the RL
stage (training/rl.py) optimises an adapter against it; chat and compare never offer it as a variant.
"""

from __future__ import annotations

import torch

from foundation.errors import ArenaError
from foundation.models import require_safetensors
from foundation.registry import base_path
from training.config import JobConfig
from training.data import Example

KIND = "reward"


def build_reward_model(cfg: JobConfig, base_model_path: str, init=None, trust_remote_code: bool = False):
    """The base as a sequence classifier with one output (a fresh `score` head) and a LoRA on its linears;
    the head is trained in full (peft's modules_to_save for SEQ_CLS)."""
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    if init is not None and (init.peft_type is None or getattr(init, "kind", "") != KIND):
        raise ArenaError(f"init_from {init.name!r} is not a reward model; a reward model continues only "
                         "another reward model")
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model_path, num_labels=1, dtype=torch.float32, trust_remote_code=trust_remote_code,
        use_safetensors=True)
    if init is not None:
        return PeftModel.from_pretrained(model, str(init.path), is_trainable=True)
    return get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.alpha,
                                            lora_dropout=cfg.lora_dropout, target_modules=cfg.targets))


def score(model, tokenizer, prompt: list[dict], replies: list[str]) -> list[float]:
    """The reward model's scalar for each reply to `prompt` (one forward pass per reply, no padding)."""
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for reply in replies:  # the conversation as the reward trainer sees it: prompt turns and reply, templated
            messages = list(prompt) + [{"role": "assistant", "content": reply}]
            ids = list(tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"])
            out.append(float(model(input_ids=torch.tensor([ids], device=device)).logits[0, 0]))
    return out


def pairwise_accuracy(model, tokenizer, pairs: list[Example]) -> float | None:
    """Share of preference pairs whose chosen reply scores strictly above the rejected one (None: no pairs)."""
    pairs = [ex for ex in pairs if ex.kind == "pref"]
    if not pairs:
        return None
    scores = (score(model, tokenizer, ex.messages, [ex.chosen, ex.rejected]) for ex in pairs)
    return sum(chosen > rejected for chosen, rejected in scores) / len(pairs)


def final_metrics(model, tokenizer, train: list[Example], val: list[Example]) -> dict:
    """Pairwise accuracy on the held-out pairs (the figure to judge a reward model by) and on its own pairs."""
    was_training = model.training
    model.eval()
    try:
        return {"pairwise_accuracy": pairwise_accuracy(model, tokenizer, val),
                "train_pairwise_accuracy": pairwise_accuracy(model, tokenizer, train)}
    finally:
        model.train(was_training)


def load_reward_model(info, settings):
    """A registered reward model as a plain sequence classifier (LoRA merged) in eval mode, for scoring/RL."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if getattr(info, "kind", "") != KIND:
        raise ArenaError(f"{info.name!r} is a {info.method} adapter, not a reward model; train one with "
                         "--method reward")
    require_safetensors(info.path, f"reward model {info.name!r} folder")
    base = AutoModelForSequenceClassification.from_pretrained(base_path(info, settings), num_labels=1,
                                                              dtype=torch.float32, use_safetensors=True)
    model = PeftModel.from_pretrained(base, info.path).merge_and_unload().eval()
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
