"""Online RL from votes (`--method rloo`), the second stage of RLHF: an adapter optimised against a reward model.

Why RLOO (trl's RLOOTrainer) rather than PPO or GRPO on a CPU:
- PPO needs a value model as large as the policy and a second optimiser; trl moved it to `trl.experimental`
  and it does not take a peft adapter as the policy with the base as reference. Two extra 135M models and
  their backward passes are the largest cost on 2 cores.
- RLOO and GRPO both sample k completions per prompt and use the other k-1 as the baseline (no critic). RLOO
  is the plain REINFORCE estimator with a leave-one-out baseline (Ahmadian et al. 2024), unbiased and without
  GRPO's per-group std normalisation, which on a small preference set of near-identical answers divides by
  a near-zero std and blows single steps up.
- With a LoRA policy trl takes the reference log-probs from the same weights with the adapter disabled: the
  KL penalty (beta) is to the base model at no extra memory.

The prompts are the user turns of the job's data (chat votes' questions, a preference file's prompts, or any
training file's questions). Per step trl logs the mean reward, the KL to the base and the completion length;
training/callbacks.MetricsCallback writes them to metrics.jsonl, which the Train tab plots while it runs.
"""

from __future__ import annotations

import math
from pathlib import Path

from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from training.config import JobConfig
from training.data import Example
from training.trainer_args import common_args


def prompts_of(rows: list[Example]) -> list[list[dict]]:
    """The distinct conversations up to the last user turn: what the policy is asked to answer."""
    first: dict[tuple, list[dict]] = {}
    for ex in rows:
        msgs = list(ex.messages)
        while msgs and msgs[-1]["role"] != "user":
            msgs.pop()
        if msgs:
            first.setdefault(tuple((m["role"], m["content"]) for m in msgs), msgs)
    return list(first.values())


def rloo_trainer(cfg: JobConfig, model, tokenizer, train, val, folder: Path, device, callbacks: list,
                 settings=None, reward=None):
    """trl RLOOTrainer on the LoRA policy `model`. `reward`: trl reward function(s); default the job's reward
    model from the registry of `settings` (kind "reward"), loaded as a plain sequence classifier."""
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    prompts = prompts_of(list(train) + list(val))  # no validation loss in RL: every prompt is a training prompt
    if not prompts:
        raise ArenaError("method 'rloo' needs prompts: chat votes (--from-votes), preference pairs or any "
                         "training file with questions")
    reward_tokenizer = None
    if reward is None:  # the job's registered reward model
        from training.reward import load_reward_model  # deferred: pulls torch

        if settings is None:
            raise ArenaError("method 'rloo' needs the app settings to find its reward model")
        reward, reward_tokenizer = load_reward_model(AdapterRegistry(settings.data_dir).get(cfg.reward_model),
                                                     settings)
    common = common_args(cfg, folder, device, has_val=False)
    common.pop("max_length")
    # the per-device batch in completions: a whole number of prompt groups of num_generations each
    groups = max(1, math.ceil(cfg.batch_size / cfg.num_generations))
    common["per_device_train_batch_size"] = common["per_device_eval_batch_size"] = groups * cfg.num_generations
    args = RLOOConfig(beta=cfg.rl_beta, num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_completion_length, temperature=1.0,
                      activation_checkpointing=False, log_completions=False, **common)
    return RLOOTrainer(model=model, reward_funcs=reward, args=args,
                       train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                       processing_class=tokenizer, reward_processing_classes=reward_tokenizer,
                       callbacks=callbacks)
