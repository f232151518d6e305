"""End to end on the bundled SmolLM2 model: reward model then RLOO, gradual unfreezing, the bias probe."""

from __future__ import annotations

import json
import shutil

import pytest

from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from training.config import JobConfig
from training.job import run_job

PAIRS = [("What is the capital of France?", "The capital of France is Paris.", "I am not able to answer that."),
         ("What is the capital of Japan?", "The capital of Japan is Tokyo.", "The capital of Japan is Lima."),
         ("How many days are in a week?", "There are seven days in a week.", "I am not able to answer that."),
         ("What is the largest planet?", "Jupiter is the largest planet.", "The largest planet is the Moon."),
         ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet.", "I am not able to answer that."),
         ("What is the chemical symbol for gold?", "The symbol for gold is Au.", "The symbol for gold is Fe.")]


def _cleanup(reg: AdapterRegistry, results: list[dict]) -> None:
    for result in results:
        if result.get("adapter") in reg.names():
            reg.delete(result["adapter"])
        shutil.rmtree(result.get("job_dir", ""), ignore_errors=True)


@pytest.mark.e2e
def test_bundled_reward_model_then_rloo(bundled_data_dir, tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in PAIRS))
    settings = Settings(data_dir=bundled_data_dir, device="cpu")
    reg, results = AdapterRegistry(bundled_data_dir), []
    try:
        results.append(run_job(JobConfig(name="e2e-rm", method="reward", data=[{"path": str(data)}], max_steps=2,
                                         batch_size=4, lora_r=4, lora_alpha=8, val_fraction=0.34, eval_steps=2,
                                         max_length=96, learning_rate=5e-4), settings))
        rm = reg.get(results[0]["adapter"])
        assert rm.kind == "reward" and 0 <= rm.metrics["pairwise_accuracy"] <= 1
        results.append(run_job(JobConfig(name="e2e-rl", method="rloo", reward_model=rm.name,
                                         data=[{"path": str(data)}], max_steps=1, batch_size=4, num_generations=2,
                                         max_completion_length=12, lora_r=4, lora_alpha=8), settings))
        policy = reg.get(results[1]["adapter"])
        assert policy.kind == "adapter" and policy.peft_type == "LORA"
        records = [json.loads(x) for x in open(f"{results[1]['job_dir']}/metrics.jsonl")]
        assert any("reward" in r and "kl" in r and "completion_length" in r for r in records)
    finally:
        _cleanup(reg, results)


@pytest.mark.e2e
def test_bundled_gradual_unfreezing(bundled_data_dir, tmp_path):
    data = tmp_path / "faq.jsonl"
    data.write_text("".join(json.dumps({"question": p, "answer": c}) + "\n" for p, c, _ in PAIRS))
    settings = Settings(data_dir=bundled_data_dir, device="cpu")
    reg, results = AdapterRegistry(bundled_data_dir), []
    try:
        results.append(run_job(JobConfig(name="e2e-unfreeze", method="freeze", unfreeze_schedule="2:0,all:2",
                                         data=[{"path": str(data)}], max_steps=3, batch_size=2, max_length=64,
                                         val_fraction=0, learning_rate=1e-5), settings))
        records = [json.loads(x) for x in open(f"{results[0]['job_dir']}/metrics.jsonl")]
        assert [r["trainable_layers"] for r in records if "trainable_layers" in r][:1] == [2]
        assert reg.get(results[0]["adapter"]).peft_type is None
    finally:
        _cleanup(reg, results)


@pytest.mark.e2e
def test_bundled_bias_probe_sees_an_adapter_and_not_the_base_against_itself(bundled_data_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.compare.bias import check_bias, load_bias_probe
    from foundation.models import resolve_model_path
    from tests.conftest import make_lora
    from tests.scorers import peft_scorer, reply_nll

    path = resolve_model_path("bundled:smollm2-135m", Settings(data_dir=bundled_data_dir, device="cpu"))
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    items = load_bias_probe()[:6]

    def base_twice(pairs):  # the base scored as both sides: no change by construction
        nlls = [reply_nll(base, tok, p, r) for p, r in pairs]
        return nlls, nlls

    same = check_bias("base", base_twice, items=items)  # the null case: nothing changed, nothing flagged
    assert same.change.mean == 0 and same.change.ci_low == same.change.ci_high == 0
    assert not same.flagged and same.base_gap > 0
    lora = PeftModel.from_pretrained(base, make_lora(base, tmp_path / "lora", seed=3)).eval()
    report = check_bias("random-lora", peft_scorer(lora, tok), items=items)
    # The base side is the base (scored through the disabled adapter) ...
    assert report.base_gap == pytest.approx(same.base_gap, rel=1e-4)
    # ... and the adapter side is the adapter: a random LoRA moves the counterfactual gaps (a scorer that
    # scored the base twice, or an adapter that was never applied, gives the base's gap and no change here).
    assert report.adapter_gap > 0 and report.adapter_gap != pytest.approx(report.base_gap, rel=0.05)
    assert report.change.mean != 0 and report.change.ci_low <= report.change.mean <= report.change.ci_high

