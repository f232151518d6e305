"""Training runs on the tiny model: SFT LoRA, every method, cancel/resume, DPO from votes, registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file as load_safetensors

from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry, load_adapter_model
from foundation.votes import VoteStore
from training.config import JobConfig
from training.job import run_job
from training.runner import job_dir, read_status

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(max_steps=3, batch_size=2, max_length=96, eval_steps=2, save_steps=50, val_fraction=0.2,
            lora_r=4, lora_alpha=8)


def cfg_for(qa_file, **kw) -> JobConfig:
    return JobConfig(**{"name": "t", "data": [{"path": str(qa_file)}], **FAST, **kw})


def generate_ids(model, tokenizer) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Color of item 1?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()


def generate(model, tokenizer) -> str:
    return tokenizer.decode(generate_ids(model, tokenizer))


def greedy(model, tokenizer, steps: int = 4) -> list[int]:
    """Greedy tokens computed from the model's own forward logits, one step at a time."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Color of item 1?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = []
    with torch.inference_mode():
        for _ in range(steps):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def last_logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0, -1]


def assert_base_unchanged(model, tiny_model_dir: Path) -> None:
    """Every base weight inside a PEFT model equals the saved base model's (only the adapter trained)."""
    base = load_safetensors(str(tiny_model_dir / "model.safetensors"))
    compared = 0
    for name, tensor in model.get_base_model().state_dict().items():
        clean = name.replace("base_layer.", "")
        if "lora_" not in name and clean in base:
            assert torch.equal(tensor, base[clean]), f"base weight {name} changed"
            compared += 1
    assert compared >= len(base) - 1  # (lm_head may be tied or renamed)


def test_sft_lora_logs_loss_changes_adapter_not_base(qa_file, settings, tiny_model_dir, tiny_tokenizer):
    result = run_job(cfg_for(qa_file, learning_rate=5e-3), settings)
    metrics = [json.loads(x) for x in (Path(result["job_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics) and any("val_loss" in m for m in metrics)
    assert metrics[-1]["step"] == 3 and "eta_s" in metrics[0]
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.peft_type == "LORA" and info.metrics["val_loss"] > 0
    assert {"job.yaml", "metrics.jsonl", "adapter_model.safetensors"} <= {p.name for p in info.path.iterdir()}
    model = load_adapter_model(info, settings)
    assert_base_unchanged(model, tiny_model_dir)
    lora_b = [t for n, t in load_safetensors(str(info.path / "adapter_model.safetensors")).items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: non-zero means it trained
    from transformers import AutoModelForCausalLM

    base_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert not torch.allclose(last_logits(model), last_logits(base_model))  # the adapter is applied
    assert AdapterRegistry(settings.data_dir).training_questions(info.name)[0].startswith("Color of item")


@pytest.mark.parametrize("method,extra,peft_type", [
    ("lora", {"use_dora": True, "use_rslora": True}, "LORA"),
    ("ia3", {"learning_rate": 1e-2}, "IA3"),
    ("prompt_tuning", {"num_virtual_tokens": 4, "learning_rate": 3e-2}, "PROMPT_TUNING"),
    ("full", {"learning_rate": 1e-4}, None),
    ("freeze", {"train_layers": 1, "learning_rate": 1e-4}, None),
])
def test_each_method_trains_loads_back_and_generates(method, extra, peft_type, qa_file, settings, tiny_tokenizer,
                                                    tiny_model_dir):
    from transformers import AutoModelForCausalLM

    info_cfg = cfg_for(qa_file, name=method, method=method, max_steps=2, **extra)
    result = run_job(info_cfg, settings)
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.peft_type == peft_type and info.method == method
    model = load_adapter_model(info, settings).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    # Training changed what the model computes (every method starts as the base: LoRA B and IA3 at identity,
    # full and freeze from the base weights; prompt tuning adds virtual tokens); for adapters, only the adapter.
    assert not torch.allclose(last_logits(model), last_logits(base), atol=1e-6), f"{method} did not train"
    if method == "prompt_tuning":  # random virtual tokens differ from the base untrained: compare with their start
        from peft import get_peft_model_state_dict
        from transformers import set_seed

        from training.methods import build_trainable

        set_seed(info_cfg.seed)  # as train_one does right before building the model
        start = get_peft_model_state_dict(build_trainable(info_cfg, str(tiny_model_dir), torch.device("cpu")))
        saved = load_safetensors(str(info.path / "adapter_model.safetensors"))
        assert set(saved) == set(start) and not all(torch.equal(saved[k], start[k]) for k in saved)
    if peft_type in ("LORA", "IA3"):
        assert_base_unchanged(model, tiny_model_dir)
    # Generation goes through the trained model: its greedy tokens are those of the model's own logits.
    made = generate_ids(model, tiny_tokenizer)
    assert made and made == greedy(model, tiny_tokenizer)[: len(made)]  # (generate may stop at end-of-turn)


def test_freeze_trains_only_top_layers(qa_file, settings, tiny_model_dir):
    result = run_job(cfg_for(qa_file, method="freeze", train_layers=1, learning_rate=1e-3, max_steps=2), settings)
    after = load_safetensors(str(Path(result["path"]) / "model.safetensors"))
    before = load_safetensors(str(tiny_model_dir / "model.safetensors"))
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(after["model.layers.1.mlp.up_proj.weight"], before["model.layers.1.mlp.up_proj.weight"])


def test_qlora_on_cpu_refuses_clearly(qa_file, settings):
    with pytest.raises(ArenaError, match="qlora.*CUDA GPU"):
        run_job(cfg_for(qa_file, method="qlora"), settings)


def test_cancel_checkpoint_resume_matches_uninterrupted(qa_file, settings):
    cfg = cfg_for(qa_file, name="resumed", max_steps=4, save_steps=2, job_id="resume-job")
    folder = job_dir(settings, cfg)
    folder.mkdir(parents=True)
    (folder / "CANCEL").touch()  # the job stops (and checkpoints) at its first step boundary
    result = run_job(cfg, settings)
    assert result["state"] == "cancelled" and result["step"] == 1
    assert (folder / "checkpoints" / "checkpoint-1").is_dir() and read_status(folder)["state"] == "cancelled"
    resumed = run_job(JobConfig.from_yaml(folder / "config.yaml"), settings, resume=True)
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert resumed["metrics"]["steps"] == 4
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # continued from step 1, no repeats
    straight = run_job(cfg_for(qa_file, name="straight", max_steps=4, save_steps=2), settings)
    a = load_safetensors(str(Path(resumed["path"]) / "adapter_model.safetensors"))
    b = load_safetensors(str(Path(straight["path"]) / "adapter_model.safetensors"))
    for key, value in a.items():
        assert torch.allclose(value, b[key], atol=1e-4), key


def test_dpo_from_votes(settings):
    votes = VoteStore(settings.data_dir / "votes.sqlite")
    for i in range(6):
        votes.add(f"Question {i}?", {"rag": f"Good answer {i}.", "base": f"bad {i}"}, winner="rag")
    cfg = JobConfig(name="prefs", method="dpo", data=[{"source": "votes"}], **FAST)
    result = run_job(cfg, settings)
    info = AdapterRegistry(settings.data_dir).get(result["adapter"])
    assert info.method == "dpo" and info.peft_type == "LORA" and result["metrics"]["steps"] == 3


def test_registry_round_trip_and_merge_export(qa_file, settings, tmp_path, tiny_tokenizer):
    result = run_job(cfg_for(qa_file, name="my adapter", max_steps=1, val_fraction=0.0), settings)
    reg = AdapterRegistry(settings.data_dir)
    assert result["adapter"] == "my adapter" and reg.names() == ["my adapter"]  # foundation.paths.confine
    (reg.root / ".tmp-half").mkdir()  # an incomplete folder without the marker is ignored
    renamed = reg.rename("my adapter", "renamed")
    assert reg.names() == ["renamed"]
    out = reg.merge_export("renamed", tmp_path / "merged", settings)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(out)
    peft_model = load_adapter_model(renamed, settings)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-4)
    # the exported model answers as the adapter does
    assert generate(merged, AutoTokenizer.from_pretrained(out)) == generate(peft_model, AutoTokenizer.from_pretrained(out))
    reg.delete("renamed")
    assert reg.list() == []
    with pytest.raises(ArenaError, match="unknown adapter 'renamed'"):
        reg.get("renamed")


def test_cli_train_and_adapters_json(qa_file, settings, tiny_model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "assistant"]
    flags = ["--data-dir", str(settings.data_dir), "--model", str(tiny_model_dir), "--json"]
    yaml_path = tmp_path / "job.yaml"
    cfg_for(qa_file, name="cli", max_steps=2).to_yaml(yaml_path)
    run = subprocess.run(base + ["train", str(yaml_path), "--lora-r", "2"] + flags, env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["adapter"] == "cli" and JobConfig.from_yaml(Path(result["path"]) / "job.yaml").lora_r == 2
    listing = subprocess.run(base + ["adapters"] + flags, env=env, cwd=ROOT, capture_output=True, text=True)
    assert [a["name"] for a in json.loads(listing.stdout)] == ["cli"]
    bad = subprocess.run(base + ["train", "--data", str(tmp_path / "missing.jsonl")] + flags, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.jsonl does not exist" in bad.stderr
