"""GGUF LoRA export (training/gguf_lora.py) on the tiny Llama: names, shapes, alpha, q/k row order, refusals."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from foundation.errors import ArenaError
from tests.conftest import make_lora
from training.gguf_lora import write_gguf_lora


def _read(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: f.contents() for name, f in reader.fields.items()}
    # GGUFReader gives numpy shapes in ggml order reversed back, i.e. the array as written
    return fields, {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}


def test_tiny_lora_as_gguf(tiny_model, tmp_path):
    from safetensors.numpy import load_file
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    folder = make_lora(tiny_model, tmp_path / "lora", seed=1)
    cfg = tiny_model.config.to_dict()
    out = write_gguf_lora(folder, cfg, tmp_path / "adapter.gguf")
    fields, tensors = _read(out.path)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(16.0) and fields["general.architecture"] == "llama"
    peft = load_file(str(folder / "adapter_model.safetensors"))
    # 2 layers x 7 linear modules x (a, b)
    assert out.tensors == len(tensors) == 28
    a = tensors["blk.1.ffn_down.weight.lora_a"]
    assert np.array_equal(a, peft["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"])
    assert np.array_equal(tensors["blk.0.attn_v.weight.lora_b"],
                          peft["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"])
    # q/k lora_b rows are in llama.cpp's permuted order: transformers' GGUF loader undoes it back to peft's.
    undo = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    for proj, gname in (("q_proj", "attn_q"), ("k_proj", "attn_k")):
        b = tensors[f"blk.0.{gname}.weight.lora_b"]
        original = peft[f"base_model.model.model.layers.0.self_attn.{proj}.lora_B.weight"]
        assert not np.array_equal(b, original)  # really permuted
        assert np.array_equal(undo.process(b, f"blk.0.{gname}.weight").weights, original)


def test_rslora_alpha_folds_sqrt_rank(tiny_model, tmp_path):
    folder = make_lora(tiny_model, tmp_path / "lora", seed=1)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "use_rslora": True}))
    out = write_gguf_lora(folder, tiny_model.config.to_dict(), tmp_path / "a.gguf")
    assert out.alpha == pytest.approx(16 * 2)  # llama.cpp's alpha / r == peft's alpha / sqrt(r) for r = 4


@pytest.mark.parametrize("method", ["DoRA", "IA3", "PROMPT_TUNING"])
def test_methods_gguf_cannot_hold_are_refused(tiny_model, tmp_path, method):
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    config = {"DoRA": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True),
              "IA3": IA3Config(task_type=TaskType.CAUSAL_LM),
              "PROMPT_TUNING": PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)}[method]
    get_peft_model(copy.deepcopy(tiny_model), config).save_pretrained(tmp_path / "a")
    with pytest.raises(ArenaError, match=method):
        write_gguf_lora(tmp_path / "a", tiny_model.config.to_dict(), tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_unsupported_architecture_is_refused(tiny_model, tmp_path):
    folder = make_lora(tiny_model, tmp_path / "lora", seed=1)
    with pytest.raises(ArenaError, match="gpt2"):
        write_gguf_lora(folder, {**tiny_model.config.to_dict(), "model_type": "gpt2"}, tmp_path / "a.gguf")


@pytest.mark.e2e
def test_bundled_model_lora_exports_against_the_base_gguf(bundled_data_dir, tmp_path):
    """A LoRA trained on the bundled model, exported with `arena export`: every lora_a/lora_b pair fits the
    tensor it adapts in the bundled base GGUF, by the shape checks llama.cpp makes when loading an adapter."""
    import shutil

    import gguf

    from assistant.cli.main import main
    from foundation.models import bundled_gguf
    from foundation.registry import AdapterRegistry
    from foundation.settings import Settings
    from training.config import JobConfig
    from training.job import run_job

    data = tmp_path / "faq.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is the code for door {i}?",
                                        "answer": f"The code is {1000 + i}."}) + "\n" for i in range(8)))
    settings = Settings(data_dir=bundled_data_dir, device="cpu")
    result = run_job(JobConfig(name="gguf-e2e", data=[{"path": str(data)}], max_steps=2, batch_size=2, max_length=48,
                               lora_r=4, lora_alpha=8, eval_steps=100, val_fraction=0.2), settings)
    try:
        out = tmp_path / "bundle"
        assert main(["export", str(out), "--variant", "finetuned", "--adapter", result["adapter"], "--data-dir",
                     str(bundled_data_dir), "--json"]) == 0
        modelfile = (out / "Modelfile").read_text()
        assert modelfile.startswith(f"FROM {bundled_gguf('bundled:smollm2-135m')}\n")
        base = {t.name: [int(d) for d in t.shape] for t in gguf.GGUFReader(str(bundled_gguf(
            "bundled:smollm2-135m"))).tensors}  # ggml order: ne0 = input size, ne1 = output size
        lora = {t.name: [int(d) for d in t.shape] for t in gguf.GGUFReader(str(out / f"{result['adapter']}.gguf")).tensors}
        targets = {n.removesuffix(".lora_a") for n in lora if n.endswith(".lora_a")}
        assert len(targets) == len(lora) // 2 and "blk.0.attn_q.weight" in targets and "blk.29.ffn_down.weight" in targets
        for name in targets:
            a, b = lora[name + ".lora_a"], lora[name + ".lora_b"]
            assert a[0] == base[name][0] and b[1] == base[name][1] and a[1] == b[0] == 4, name
    finally:
        AdapterRegistry(bundled_data_dir).delete(result["adapter"])
        shutil.rmtree(result["job_dir"], ignore_errors=True)
