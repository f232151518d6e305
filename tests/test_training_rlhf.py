"""RLHF on the tiny Llama: the reward model (training/reward.py) learns to rank its pairs, RLOO (training/rl.py)
raises the mean reward, and the two chained through `run_job` from chat votes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.votes import VoteStore
from tests.peaked_model import save_peaked_model
from training.config import JobConfig
from training.job import run_job

COLORS = ["red", "blue", "green", "white"]


@pytest.fixture
def pref_file(tmp_path) -> Path:
    """16 pairs: the item's colour as a sentence (chosen) against a wrong colour shouted (rejected)."""
    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": f"Color of item {i}?", "chosen": f"It is {COLORS[i % 4]}.",
             "rejected": f"{COLORS[(i + 1) % 4].upper()}!!"} for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reward_model_ranks_chosen_above_rejected_after_training_not_before(pref_file, settings):
    from transformers import set_seed

    from training.data import load_file
    from training.reward import build_reward_model, load_reward_model, pairwise_accuracy

    cfg = JobConfig(name="rm", method="reward", data=[{"path": str(pref_file)}], max_steps=25, batch_size=8,
                    learning_rate=5e-3, lora_r=8, lora_alpha=16, val_fraction=0.25, eval_steps=5, save_steps=50,
                    max_length=96)
    pairs = load_file(pref_file)
    tok = _tokenizer(settings)
    set_seed(cfg.seed)
    before = build_reward_model(cfg, settings.model).eval()
    before.config.pad_token_id = tok.pad_token_id
    before_acc = pairwise_accuracy(before, tok, pairs)
    result = run_job(cfg, settings)
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.kind == "reward" and info.method == "reward"
    assert info.name not in [i.name for i in AdapterRegistry(settings.data_dir).chat_adapters()]
    model, rtok = load_reward_model(info, settings)
    after_acc = pairwise_accuracy(model, rtok, pairs)
    assert before_acc < 0.75 and after_acc == 1.0, (before_acc, after_acc)
    assert info.metrics["pairwise_accuracy"] is not None and info.metrics["train_pairwise_accuracy"] == 1.0
    records = [json.loads(x) for x in (Path(result["job_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert any("accuracy" in r for r in records) and any("val_accuracy" in r for r in records)


def _tokenizer(settings):
    tok = AutoTokenizer.from_pretrained(settings.model)
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


def letters_share(completions, **kwargs) -> list[float]:
    """Toy reward: the share of a completion's characters that are ASCII letters (a random byte model: ~0.2)."""
    out = []
    for c in completions:
        text = c[0]["content"] if isinstance(c, list) else c
        out.append(sum(ch.isascii() and ch.isalpha() for ch in text) / max(1, len(text)))
    return out


@pytest.fixture(scope="module")
def peaked_model_dir(tmp_path_factory) -> Path:
    return save_peaked_model(tmp_path_factory.mktemp("peaked-llama"))


def test_rloo_steps_raise_the_mean_toy_reward(qa_file, peaked_model_dir, tmp_path):
    from training.callbacks import MetricsCallback, read_metrics
    from training.data import load_file
    from training.methods import build_trainable
    from training.rl import rloo_trainer

    cfg = JobConfig(name="rl", method="rloo", reward_model="toy", data=[{"path": str(qa_file)}], max_steps=5,
                    batch_size=16, num_generations=8, max_completion_length=8, learning_rate=5e-3, lora_r=8,
                    lora_alpha=16, rl_beta=0.01, lr_scheduler="constant", seed=0)
    tok = AutoTokenizer.from_pretrained(peaked_model_dir)
    torch.manual_seed(0)
    model = build_trainable(cfg, str(peaked_model_dir), torch.device("cpu"))
    trainer = rloo_trainer(cfg, model, tok, load_file(qa_file), [], tmp_path, torch.device("cpu"),
                           [MetricsCallback(tmp_path / "metrics.jsonl")], reward=letters_share)
    trainer.train()
    records = read_metrics(tmp_path / "metrics.jsonl")
    rewards = [r["reward"] for r in records if "reward" in r]
    assert len(rewards) == 5
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.2, rewards  # each step's reward is before its own update
    assert all("kl" in r and "completion_length" in r for r in records if "reward" in r)


def test_reward_then_rloo_from_votes_through_run_job(settings):
    votes = VoteStore(Path(settings.data_dir) / "votes.sqlite")
    for i in range(6):
        votes.add(f"Color of item {i}?", {"rag": f"It is {COLORS[i % 4]}.", "base": "No idea!!"}, "rag")
    with pytest.raises(ArenaError, match="needs a reward model"):
        run_job(JobConfig(name="p", method="rloo", data=[{"source": "votes"}]), settings)
    rm = run_job(JobConfig(name="rm", method="reward", data=[{"source": "votes"}], max_steps=2, batch_size=4,
                           lora_r=4, lora_alpha=8, val_fraction=0.2, eval_steps=2, max_length=96), settings)
    with pytest.raises(ArenaError, match="not a reward model"):
        lora = run_job(JobConfig(name="sft", data=[{"source": "votes"}], method="dpo", max_steps=1, batch_size=2,
                                 lora_r=4, lora_alpha=8, val_fraction=0, max_length=96), settings)
        run_job(JobConfig(name="p", method="rloo", reward_model=lora["adapter"], data=[{"source": "votes"}],
                          max_steps=1), settings)
    result = run_job(JobConfig(name="policy", method="rloo", reward_model=rm["adapter"], data=[{"source": "votes"}],
                               max_steps=2, batch_size=4, num_generations=2, max_completion_length=8, lora_r=4,
                               lora_alpha=8), settings)
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.kind == "adapter" and info.peft_type == "LORA" and info.method == "rloo"
    records = [json.loads(x) for x in (Path(result["job_dir"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(isinstance(r["kl"], float) and r["completion_length"] > 0 for r in steps)

    # A plain questions file (no answers: rloo samples them) is enough for the policy; other methods refuse it.
    questions = Path(settings.data_dir).parent / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "Color of item 7?"}, {"prompt": "Color of item 8?"}, {"question": "Color of item 9?"}]))
    result = run_job(JobConfig(name="policy-q", method="rloo", reward_model=rm["adapter"],
                               data=[{"path": str(questions)}], max_steps=1, batch_size=4, num_generations=2,
                               max_completion_length=8, lora_r=4, lora_alpha=8), settings)
    assert AdapterRegistry(settings.data_dir).get(result["adapter"]).method == "rloo"
    with pytest.raises(ArenaError, match=r"questions.jsonl line 1: a question without an answer; method 'lora'"):
        run_job(JobConfig(name="sft-q", data=[{"path": str(questions)}], max_steps=1), settings)
