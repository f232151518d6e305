"""End to end: a few LoRA steps on the bundled SmolLM2 model, then chat with the adapter."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from foundation.registry import AdapterRegistry, load_adapter_model
from foundation.settings import Settings
from training.config import JobConfig
from training.job import run_job


@pytest.mark.e2e
def test_bundled_model_trains_a_lora_adapter(bundled_data_dir, tmp_path):
    data = tmp_path / "faq.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is the code for door {i}?",
                                        "answer": f"The code for door {i} is {1000 + i}."}) + "\n" for i in range(12)))
    settings = Settings(data_dir=bundled_data_dir, device="cpu")
    cfg = JobConfig(name="e2e-faq", data=[{"path": str(data)}], max_steps=3, batch_size=2, max_length=64,
                    lora_r=4, lora_alpha=8, eval_steps=3, val_fraction=0.2, learning_rate=1e-3)
    result = run_job(cfg, settings)
    reg = AdapterRegistry(bundled_data_dir)
    try:
        info = reg.get(result["adapter"])
        assert info.base_model == "bundled:smollm2-135m" and result["metrics"]["steps"] == 3
        assert 0 < result["metrics"]["val_loss"] < 20
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(info.path)
        model = load_adapter_model(info, settings)
        ids = tok.apply_chat_template([{"role": "user", "content": "What is the code for door 3?"}],
                                      add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    finally:
        reg.delete(result["adapter"])
        shutil.rmtree(result["job_dir"], ignore_errors=True)
