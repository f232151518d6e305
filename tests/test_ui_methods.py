"""Train tab additions for gradual unfreezing and RLHF, without a browser: the tab builds, the method settings
reach the job config, reward models are listed for rloo (and never as chat adapters), the RL plot's frame."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from tests.ui_wiring import click_inputs
from training.config import JobConfig
from ui.chat import adapter_choices
from ui.train import _method_settings, _reward_models, _rl_frame, _summary_md, build_train_tab


def test_method_settings_reach_the_job_and_are_validated(qa_file):
    cfg = JobConfig(name="x", method="freeze", data=[{"path": str(qa_file)}])
    cfg = _method_settings(cfg, " 1:0,all:10 ", None, 0.1, 6)
    assert (cfg.unfreeze_schedule, cfg.reward_model, cfg.rl_beta, cfg.num_generations) == ("1:0,all:10", "", 0.1, 6)
    cfg.validate()
    with pytest.raises(ArenaError, match="must start at step 0"):
        _method_settings(cfg, "2:5", None, 0.1, 4).validate()
    rl = _method_settings(JobConfig(name="p", method="rloo", data=[{"source": "votes"}]), "", "rm", 0.05, 4)
    rl.validate()
    assert rl.reward_model == "rm"


def test_reward_models_listed_for_rloo_not_for_chat(data_dir, tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "adapter_model.safetensors").write_bytes(b"")
    reg = AdapterRegistry(data_dir)
    reg.register("rm", art, {"method": "reward", "kind": "reward", "peft_type": "LORA"}, [])
    reg.register("chat-lora", art, {"method": "lora", "kind": "adapter", "peft_type": "LORA"}, [])
    runtime = Runtime(Settings(data_dir=data_dir, model=str(data_dir / "none")))
    assert _reward_models(runtime) == ["rm"]
    assert adapter_choices(runtime) == ["chat-lora"]
    with gr.Blocks() as demo:
        build_train_tab(runtime)
    by_label = {getattr(b, "label", None): b for b in demo.blocks.values()}
    assert [c[0] for c in by_label["Reward model (rloo)"].choices] == ["rm"]
    # Every method control reaches the job: it is an input of the Start button's handler.
    assert {"Unfreeze schedule (freeze)", "Reward model (rloo)", "KL penalty to the base (rloo)",
            "Completions per prompt (rloo)"} <= click_inputs(demo, "Start training")


def test_rl_frame_and_reward_summary():
    records = [{"step": 1, "loss": 0.0, "reward": 0.2, "kl": 0.0, "completion_length": 12.0},
               {"step": 2, "loss": 0.0, "reward": 0.5, "kl": 0.01, "completion_length": 9.5}]
    frame = _rl_frame(records)
    assert list(frame[frame.series == "reward"].value) == [0.2, 0.5]
    assert set(frame.series) == {"reward", "KL to base", "length (tokens)"}
    done = {"state": "done", "status": {"adapter": "rm", "metrics": {"pairwise_accuracy": 0.8, "steps": 3}}}
    assert "held-out pairwise accuracy 0.8000" in _summary_md(done)
    # The plot gets plain JSON values (numpy scalars would not serialise)
    assert json.loads(json.dumps(frame.to_dict(orient="records")))[:2] == [
        {"step": 1, "value": 0.2, "series": "reward"}, {"step": 1, "value": 0.0, "series": "KL to base"}]
