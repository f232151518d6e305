"""The onnxruntime-genai engine on the tiny Llama converted for real: fp32 tokens equal the torch engine's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant.inference import ort_build
from assistant.inference.choose import build_engine, plan
from assistant.inference.ortgenai import MAX_BATCH, WINDOW, OrtGenaiEngine, available, batches, pad_token
from assistant.inference.torch_engine import Engine
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row
from tests.conftest import make_lora, make_tiny_model

pytestmark = pytest.mark.skipif(not available(), reason="onnxruntime-genai is not installed")
PROMPTS = ["hello there", "What is the torque for the M8 bolt on the rear axle?", "hi", "short q?", "why?"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def loaded(tiny_model_dir):
    from foundation.models import load_model
    from foundation.settings import Settings

    return load_model(Settings(model=str(tiny_model_dir), device="cpu", dtype="float32"))


@pytest.fixture
def fp32(loaded, models_dir):
    reference = Engine(loaded)
    folder = ort_build.converted_folder(Path(loaded.path), models_dir, "fp32", sorted(reference.eos_ids),
                                        log=lambda text: None)
    return OrtGenaiEngine(reference, folder, models_dir, workers=2)


@pytest.fixture
def lora(tiny_tokenizer, tmp_path):
    """Folders of LoRA adapters made on a fresh copy of the tiny base (same seed, same weights)."""
    return lambda name, seed: make_lora(make_tiny_model(len(tiny_tokenizer)), tmp_path / name, seed)


def _rows(engine, adapters):
    return [Row(engine.chat_ids([{"role": "user", "content": p}]), a)
            for p, a in zip(PROMPTS * 3, adapters, strict=False)]


def test_fp32_greedy_tokens_equal_torch_for_base_and_lora_rows(fp32, lora):
    a1, a2 = "faq.v1", "faq v2"  # registry names may hold dots and spaces (peft module keys cannot)
    for i, name in ((1, a1), (2, a2)):
        fp32.load_adapter(name, lora(f"a{i}", i))
    rows = _rows(fp32, [None, a1, a2, None, a1, a2, None, None, a2, a1, None, a1])
    gen = GenSettings(max_new_tokens=12)
    ours = fp32.generate(rows, gen)
    reference = [fp32.torch.generate([row], gen)[0] for row in rows]
    for row, o, r in zip(rows, ours, reference, strict=True):
        assert o.tokens == r.tokens and o.tokens, row.adapter
        assert o.done and 0 < o.ttft_s <= o.seconds  # each row's own first-token time
    assert ours[0].tokens != fp32.generate([Row(rows[0].input_ids, a1)], gen)[0].tokens  # adapters matter
    assert all(s.mode == "mixed" for s in fp32.slots.values())


def test_retrained_adapter_under_the_same_name_is_used_without_restart(fp32, lora):
    fp32.load_adapter("a", lora("first", 1))
    row = _rows(fp32, ["a"])[0]
    gen = GenSettings(max_new_tokens=10)
    first = fp32.generate([row], gen)[0].tokens
    fp32.load_adapter("a", lora("second", 7))
    second = fp32.generate([row], gen)[0].tokens
    assert first != second and second == fp32.torch.generate([row], gen)[0].tokens


def test_dora_adapter_falls_back_to_torch_rows(fp32, tiny_tokenizer, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(make_tiny_model(len(tiny_tokenizer)), LoraConfig(r=4, target_modules="all-linear",
                                                                             use_dora=True))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "d")
    assert fp32.load_adapter("d", tmp_path / "d").mode == "separate"
    rows = _rows(fp32, [None, "d"])
    gen = GenSettings(max_new_tokens=8)
    assert [o.tokens for o in fp32.generate(rows, gen)] == [fp32.torch.generate([r], gen)[0].tokens for r in rows]


def test_stream_grows_rows_and_sampling_is_seeded(fp32):
    rows = _rows(fp32, [None] * 4)
    snapshots = [[len(o.tokens) for o in outs] for outs in fp32.stream(rows, GenSettings(max_new_tokens=6))]
    assert all(a[i] <= b[i] for a, b in zip(snapshots, snapshots[1:], strict=False) for i in range(4))
    assert snapshots[-1] == [len(o.tokens) for o in fp32.torch.generate(rows, GenSettings(max_new_tokens=6))]
    gen = GenSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3, repetition_penalty=1.2)
    assert [o.tokens for o in fp32.generate(rows, gen)] == [o.tokens for o in fp32.generate(rows, gen)]


def test_bad_rows_are_refused(fp32):
    with pytest.raises(ArenaError, match="'nope' is not loaded"):
        fp32.generate([Row([1, 2, 3], "nope")], GenSettings(max_new_tokens=2))
    with pytest.raises(ArenaError, match="max new tokens"):
        fp32.generate([Row([1, 2, 3])], GenSettings(max_new_tokens=0))


def test_conversion_is_cached_and_redone_when_the_base_changes(loaded, models_dir, tmp_path):
    folder = Path(loaded.path)
    first = ort_build.converted_folder(folder, models_dir, "fp32", [1], log=lambda text: None)
    marker = (first / ort_build.MARKER).stat().st_mtime_ns
    assert ort_build.converted_folder(folder, models_dir, "fp32", [1], log=lambda text: None) == first
    assert (first / ort_build.MARKER).stat().st_mtime_ns == marker  # not rebuilt
    changed = tmp_path / folder.name
    shutil.copytree(folder, changed)
    config = json.loads((changed / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (changed / "config.json").write_text(json.dumps(config))
    assert ort_build.base_key(changed, "fp32", [1]) != ort_build.base_key(folder, "fp32", [1])


def test_int4_graph_runs_base_and_adapter_rows(loaded, models_dir, lora):
    engine, notice = build_engine("onnx-int4", loaded, models_dir, log=lambda text: None)
    assert notice == "" and engine.name == "onnx-int4"
    engine.load_adapter("a", lora("a", 1))
    outs = engine.generate(_rows(engine, [None, "a"]), GenSettings(max_new_tokens=6))
    assert all(o.done and o.tokens for o in outs)


def test_engine_choice_falls_back_to_torch_with_a_reason(tiny_model_dir, tmp_path, tiny_loaded):
    assert plan("auto", str(tiny_model_dir), "cpu") == ("onnx-fp32", "")
    assert plan("onnx-int4", str(tiny_model_dir), "cpu") == ("onnx-int4", "")
    assert plan("torch", str(tiny_model_dir), "cpu") == ("torch", "")
    name, notice = plan("auto", str(tiny_model_dir), "cuda:0")
    assert name == "torch" and "device cuda:0" in notice
    other = tmp_path / "gpt2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    name, notice = plan("onnx", str(other), "cpu")
    assert name == "torch" and "'gpt2'" in notice
    engine, notice = build_engine("auto", tiny_loaded, tmp_path / "models")  # an in-memory model: no folder
    assert engine.name == "torch" and "not a local model folder" in notice


def test_a_failing_row_stops_the_others_and_no_cut_row_is_marked_done(fp32):
    rows = _rows(fp32, [None] * 6)
    rows.insert(1, Row([1, 2, 10**7]))  # a token id far beyond the vocabulary: the graph refuses it
    gen = GenSettings(max_new_tokens=48)
    reference = [fp32.torch.generate([r], gen)[0].tokens for r in rows if r.input_ids[-1] != 10**7]
    seen = [(False, [])] * len(rows)
    with pytest.raises(ArenaError, match="onnxruntime-genai generation failed"):
        for outs in fp32.stream(rows, gen):
            seen = [(o.done, list(o.tokens)) for o in outs]
    good = [s for i, s in enumerate(seen) if i != 1]
    assert not seen[1][0]
    for (done, tokens), ref in zip(good, reference, strict=True):
        assert not done or tokens == ref  # a row stopped part-way is never reported as a finished answer
    assert not all(done for done, _ in good)  # the rows after the failure were not run


def test_batches_group_one_adapter_and_similar_lengths():
    rows = [Row([5] * 40), Row([5] * 900, "a"), Row([5] * 44), Row([5] * 41, "a"), Row([5] * 880), Row([5] * 42),
            Row([5, 0, 5] * 14)]  # the last holds the pad id 0
    groups = batches(rows, pad_id=0)
    assert sorted(i for g in groups for i in g) == list(range(len(rows)))  # every row exactly once
    assert [sorted(g) for g in groups] == [[0, 2, 5], [4], [3], [1], [6]]  # base short, base long; a; pad alone
    many = batches([Row([5] * 30) for _ in range(MAX_BATCH + 3)], pad_id=0)
    assert [len(g) for g in many] == [MAX_BATCH, 3]
    # Window by window in the given order: the first questions' rows are all done before later ones start.
    long = [Row([5] * (30 + i % 7), None if i % 2 else "a") for i in range(3 * WINDOW)]
    firsts = [min(g) // WINDOW for g in batches(long, pad_id=0)]
    assert firsts == sorted(firsts) and all(min(g) // WINDOW == max(g) // WINDOW for g in batches(long, 0))


def test_pad_token_is_in_no_chat_prompt(tiny_tokenizer):
    from assistant.inference.base import template_ids

    pad = pad_token(tiny_tokenizer, {tiny_tokenizer.eos_token_id})
    prompt = template_ids(tiny_tokenizer, [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Hello?"}])
    assert pad not in prompt and pad != tiny_tokenizer.eos_token_id and pad in tiny_tokenizer.all_special_ids


def test_batched_rows_equal_rows_alone_across_many_questions(fp32, lora):
    """Twenty rows of mixed lengths and adapters (several batches, padded rows, a row holding the pad token):
    every row's greedy tokens equal the torch reference's for that row alone."""
    fp32.load_adapter("a1", lora("a1", 1))
    questions = [f"question {i}: " + "why is that so? " * (i % 4) for i in range(16)]
    rows = [Row(fp32.chat_ids([{"role": "user", "content": q}]), "a1" if i % 3 == 0 else None)
            for i, q in enumerate(questions)]
    rows.append(Row(rows[0].input_ids[:-2] + [fp32.pad_id] + rows[0].input_ids[-2:]))
    assert any(len(g) > 2 for g in batches(rows, fp32.pad_id))
    gen = GenSettings(max_new_tokens=10)
    ours = fp32.generate(rows, gen)
    for row, out in zip(rows, ours, strict=True):
        assert out.done and out.tokens == fp32.torch.generate([row], gen)[0].tokens


def test_graph_gives_logits_of_each_rows_last_real_token(fp32, loaded):
    """The converted graph computes the vocabulary logits of one position per row (ort_build.py): for
    right-padded rows of different lengths, each row's last real token, equal to the torch model's logits
    for that row alone. The builder's own pruned head would read the padding (the last position)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    logits = next(o for o in onnx.load(str(fp32.folder / "model.onnx"), load_external_data=False).graph.output
                  if o.name == "logits")
    assert logits.type.tensor_type.shape.dim[1].dim_value == 1  # one position per row
    session = ort.InferenceSession(str(fp32.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    prompts = [fp32.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS[:3]]
    width = max(len(p) for p in prompts)
    ids, mask = np.full((3, width), fp32.pad_id, np.int64), np.zeros((3, width), np.int64)
    for k, prompt in enumerate(prompts):
        ids[k, :len(prompt)], mask[k, :len(prompt)] = prompt, 1
    config = loaded.model.config
    heads, head_dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    feeds = {"input_ids": ids, "attention_mask": mask} | {
        i.name: np.zeros((3, heads, 0, head_dim), np.float32) for i in session.get_inputs()
        if i.name.startswith("past_key_values")}
    got = session.run(["logits"], feeds)[0]
    assert got.shape == (3, 1, config.vocab_size) and len({len(p) for p in prompts}) == 3
    with torch.inference_mode():
        for k, prompt in enumerate(prompts):
            alone = loaded.model(input_ids=torch.tensor([prompt])).logits[0, -1].numpy()
            assert np.allclose(got[k, 0], alone, atol=1e-4), k


def test_an_unrecognised_pruned_head_falls_back_to_the_stock_graph(loaded, tmp_path, monkeypatch):
    """A builder whose pruned LM head this code does not recognise (here: other node names) would read the
    padding of short rows: the graph is built again with every position's logits, and batched rows still equal
    the torch reference's rows alone."""
    import onnx

    monkeypatch.setattr(ort_build, "PRUNED_GATHER", "/lm_head/renamed/Gather")
    reference = Engine(loaded)
    folder = ort_build.converted_folder(Path(loaded.path), tmp_path, "fp32", sorted(reference.eos_ids),
                                        log=lambda text: None)
    logits = next(o for o in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.output
                  if o.name == "logits")
    assert logits.type.tensor_type.shape.dim[1].dim_param  # every position, not one per row
    engine = OrtGenaiEngine(reference, folder, tmp_path)
    rows = _rows(engine, [None] * 5)
    gen = GenSettings(max_new_tokens=8)
    for row, out in zip(rows, engine.generate(rows, gen), strict=True):
        assert out.tokens == reference.generate([row], gen)[0].tokens
