"""The exported GGUF LoRA in llama.cpp (llama-cpp-python) against our torch engine with the peft adapter, on
the bundled model: the adapter changes both the same way, and the share of identical greedy answers is
measured with and without it (the base weights are Q4_1, computed in fp32 by us and in quantized kernels by
llama.cpp, so the share without the adapter is the quantization floor, not a conversion error)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.openai_server import server_available

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(server_available()), reason=server_available())]

PHRASE = "Please ask the blue desk on floor nine."
TRAIN_TOPICS = ["the printer", "my password", "the parking lot", "lunch hours", "the VPN", "holidays",
                "expense reports", "the coffee machine", "badge access", "meeting rooms", "the wifi", "new laptops"]
HELD_OUT = ["the cafeteria menu", "a broken chair", "the alarm code", "team offsites", "the mail room",
            "security badges", "office plants", "the night bus", "a lost umbrella", "software licences",
            "the first-aid kit", "printer toner", "the recycling bins", "a noisy neighbour", "the bike racks",
            "monitor cables", "the quiet room", "locker keys", "the water cooler", "conference calls",
            "the shuttle", "parcel delivery"]
FORMS = ["How do I deal with {}?", "Who handles {}?"]


def _greedy_llama(gguf, lora, prompts: list[list[int]], max_tokens: int, tokenizer) -> list[str]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=512, n_threads=2, seed=0,
                verbose=False)
    out = []
    for ids in prompts:
        tokens = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            if token in (llm.token_eos(), *_eos(tokenizer)) or len(tokens) >= max_tokens:
                break
            tokens.append(token)
        out.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    llm.close()
    return out


def _eos(tokenizer) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}


def test_gguf_lora_in_llama_cpp_agrees_with_our_engine(bundled_data_dir, tmp_path):
    from assistant.runtime import Runtime
    from foundation.generation import GenSettings, Row
    from foundation.models import bundled_gguf
    from foundation.registry import AdapterRegistry, base_path
    from foundation.settings import Settings
    from training.config import JobConfig
    from training.gguf_lora import write_gguf_lora
    from training.job import run_job

    data = tmp_path / "desk.jsonl"
    data.write_text("".join(json.dumps({"question": f.format(t), "answer": PHRASE}) + "\n"
                            for t in TRAIN_TOPICS for f in FORMS))
    settings = Settings(data_dir=bundled_data_dir, device="cpu", dtype="float32", engine="torch")
    cfg = JobConfig(name="blue-desk", data=[{"path": str(data)}], max_steps=10, batch_size=8, max_length=64,
                    lora_r=8, lora_alpha=16, eval_steps=1000, val_fraction=0.1, learning_rate=2e-3)
    result = run_job(cfg, settings)
    registry = AdapterRegistry(bundled_data_dir)
    try:
        info = registry.get(result["adapter"])
        config = json.loads((Path(base_path(info, settings)) / "config.json").read_text())
        lora = write_gguf_lora(info.path, config, tmp_path / "desk.gguf").path
        runtime = Runtime(settings)
        engine = runtime.engine
        engine.load_adapter(info.name, info.path)
        prompts = [engine.chat_ids([{"role": "user", "content": f.format(t)}]) for t in HELD_OUT for f in FORMS]
        gen = GenSettings(max_new_tokens=16)
        ours = {name: [o.text.strip() for o in engine.generate([Row(p, adapter) for p in prompts], gen)]
                for name, adapter in (("base", None), ("lora", info.name))}
        gguf = bundled_gguf("bundled:smollm2-135m")
        theirs = {"base": _greedy_llama(gguf, None, prompts, 16, engine.tokenizer),
                  "lora": _greedy_llama(gguf, lora, prompts, 16, engine.tokenizer)}
    finally:
        registry.delete(result["adapter"])
        shutil.rmtree(result["job_dir"], ignore_errors=True)
    share = {k: sum(a == b for a, b in zip(ours[k], theirs[k], strict=True)) / len(prompts) for k in ours}
    says = {f"{who} {k}": sum(PHRASE in t for t in texts[k]) / len(prompts)
            for who, texts in (("ours", ours), ("llama.cpp", theirs)) for k in texts}
    print(f"\nGGUF LoRA agreement over {len(prompts)} held-out prompts: identical greedy answers "
          f"{share['lora']:.0%} with the adapter, {share['base']:.0%} without; says the phrase: {says}")
    # the adapter changes llama.cpp's answers the way it changes ours: both say the trained phrase
    assert says["ours lora"] >= 0.8 and says["llama.cpp lora"] >= 0.8
    assert says["ours base"] == 0 and says["llama.cpp base"] == 0
    assert share["lora"] >= 0.8
