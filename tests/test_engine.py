"""The torch engine: one base model, LoRA adapters by name, rows side by side == each row alone, streaming, NLL."""

from __future__ import annotations

import pytest
import torch

from assistant.inference.torch_engine import Engine
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row
from tests.conftest import make_lora


@pytest.fixture
def engine_with_adapters(tiny_loaded, tmp_path):
    folders = [make_lora(tiny_loaded.model, tmp_path / f"a{i}", i) for i in (1, 2)]
    engine = Engine(tiny_loaded)
    for i, folder in enumerate(folders, 1):
        engine.load_adapter(f"a{i}", folder)
    return engine


def _rows(engine):
    prompts = ["hello there", "What is the torque for the M8 bolt on the rear axle?", "hi", "short q?"]
    adapters = [None, "a1", "a2", None]
    return [Row(engine.chat_ids([{"role": "user", "content": p}]), a) for p, a in zip(prompts, adapters, strict=True)]


def test_batched_greedy_equals_each_row_alone(engine_with_adapters):
    engine = engine_with_adapters
    gen = GenSettings(max_new_tokens=12)
    rows = _rows(engine)
    batched = engine.generate(rows, gen)
    alone = [engine.generate([row], gen)[0] for row in rows]
    for b, a in zip(batched, alone, strict=True):
        assert b.tokens == a.tokens and len(a.tokens) > 0
    # The adapters really change the answer, so the equality above is not vacuous.
    assert batched[0].tokens != engine.generate([Row(rows[0].input_ids, "a1")], gen)[0].tokens


def test_batched_matches_transformers_generate_for_base_rows(engine_with_adapters, tiny_loaded):
    engine = engine_with_adapters
    row = _rows(engine)[1]
    ours = engine.generate([Row(row.input_ids, None), row], GenSettings(max_new_tokens=10))[0].tokens
    with engine.model.disable_adapter(), torch.inference_mode():
        ref = engine.model.generate(input_ids=torch.tensor([row.input_ids]), max_new_tokens=10, do_sample=False,
                                    pad_token_id=tiny_loaded.tokenizer.pad_token_id)
    expected = ref[0, len(row.input_ids):].tolist()
    eos = engine.eos_ids
    assert ours == [t for t in expected[:len(ours)] if t not in eos] and len(ours) > 0


def test_end_tokens_from_the_tokenizer_and_an_int_or_list_config(tiny_loaded):
    from transformers import GenerationConfig

    from assistant.inference.base import eos_token_ids

    tok = tiny_loaded.tokenizer
    assert eos_token_ids(tok, GenerationConfig(eos_token_id=[5, 7])) == {tok.eos_token_id, 5, 7}
    assert eos_token_ids(tok, GenerationConfig(eos_token_id=5)) == {tok.eos_token_id, 5}
    assert eos_token_ids(tok, None) == {tok.eos_token_id}


def test_stream_yields_growing_text_for_every_row(engine_with_adapters):
    engine = engine_with_adapters
    snapshots = [[o.text for o in outs] for outs in engine.stream(_rows(engine), GenSettings(max_new_tokens=8))]
    assert len(snapshots) >= 8
    for col in range(4):
        texts = [s[col] for s in snapshots]
        assert all(b.startswith(a) or len(b) >= len(a) for a, b in zip(texts, texts[1:], strict=False))
    assert all(len(snapshots[-1][c]) >= len(snapshots[0][c]) for c in range(4))


def test_sampling_is_seeded(engine_with_adapters):
    engine = engine_with_adapters
    gen = GenSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7, repetition_penalty=1.2)
    rows = _rows(engine)
    assert [o.tokens for o in engine.generate(rows, gen)] == [o.tokens for o in engine.generate(rows, gen)]


def test_nll_differs_per_adapter_and_is_finite(engine_with_adapters):
    engine = engine_with_adapters
    prompt = engine.chat_ids([{"role": "user", "content": "hi"}])
    ref = engine.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    base, a1 = engine.nll(prompt, ref, None), engine.nll(prompt, ref, "a1")
    assert base > 0 and a1 > 0 and abs(base - a1) > 1e-4


@pytest.mark.parametrize("gen,match", [
    (GenSettings(temperature=-1), "temperature"),
    (GenSettings(max_new_tokens=100000), "max new tokens"),
    (GenSettings(max_new_tokens=0), "max new tokens"),
    (GenSettings(top_p=0), "top-p"),
    (GenSettings(repetition_penalty=0), "repetition penalty"),
])
def test_absurd_settings_are_refused(tiny_loaded, gen, match):
    with pytest.raises(ArenaError, match=match):
        Engine(tiny_loaded).generate([Row([1, 2, 3])], gen)


def test_unknown_adapter_row_is_refused(tiny_loaded):
    with pytest.raises(ArenaError, match="'nope' is not loaded"):
        Engine(tiny_loaded).generate([Row([1, 2, 3], "nope")], GenSettings(max_new_tokens=2))


def test_full_model_folder_runs_in_separate_call(tiny_loaded, tiny_model_dir):
    engine = Engine(tiny_loaded)
    slot = engine.load_adapter("full", tiny_model_dir)
    assert slot.mode == "separate" and slot.peft_type is None
    rows = [Row([5, 6, 7], None), Row([5, 6, 7], "full")]
    outs = engine.generate(rows, GenSettings(max_new_tokens=4))
    assert all(o.done for o in outs)
    assert outs[0].tokens == outs[1].tokens  # the folder holds the same weights as the base


def test_loading_adapters_leaves_the_shared_base_model_plain(tiny_loaded, tmp_path):
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        before = tiny_loaded.model(input_ids=ids).logits
    folder = make_lora(tiny_loaded.model, tmp_path / "a", 3)
    engine = Engine(tiny_loaded)
    engine.load_adapter("a", folder)
    engine.generate([Row([5, 6, 7], "a"), Row([5, 6], None)], GenSettings(max_new_tokens=3))
    with torch.inference_mode():
        after = tiny_loaded.model(input_ids=ids).logits
        adapted = engine.model(input_ids=ids, adapter_names=["a"]).logits
    assert torch.allclose(before, after) and not torch.allclose(before, adapted)


def test_dora_adapter_runs_alone_and_matches_peft(tiny_loaded, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(tiny_loaded.model), LoraConfig(r=4, target_modules="all-linear",
                                                                          use_dora=True))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "d")
    engine = Engine(tiny_loaded)
    assert engine.load_adapter("d", tmp_path / "d").mode == "mixed"
    row = Row(engine.chat_ids([{"role": "user", "content": "hi there"}]), "d")
    ours = engine.generate([Row(row.input_ids, None), row], GenSettings(max_new_tokens=8))[1].tokens
    with torch.inference_mode():
        ref = peft.generate(input_ids=torch.tensor([row.input_ids]), max_new_tokens=8, do_sample=False,
                            pad_token_id=tiny_loaded.tokenizer.pad_token_id)[0, len(row.input_ids):].tolist()
    assert ours and ours == [t for t in ref if t not in engine.eos_ids][:len(ours)]


def test_lora_rows_match_peft_own_generate(engine_with_adapters, tiny_loaded, tmp_path):
    """Each adapter row gives peft's own answer, decoded beside a base row and another adapter's row."""
    from peft import PeftModel

    engine = engine_with_adapters
    rows = _rows(engine)
    ours = engine.generate(rows, GenSettings(max_new_tokens=10))
    for row, out in zip(rows[1:3], ours[1:3], strict=True):
        reference = PeftModel.from_pretrained(make_tiny_copy(tiny_loaded), str(engine.slots[row.adapter].path))
        with torch.inference_mode():
            ref = reference.generate(input_ids=torch.tensor([row.input_ids]), max_new_tokens=10, do_sample=False,
                                     pad_token_id=tiny_loaded.tokenizer.pad_token_id)[0, len(row.input_ids):]
        assert out.tokens and out.tokens == [t for t in ref.tolist() if t not in engine.eos_ids][:len(out.tokens)]


def make_tiny_copy(loaded):
    """A fresh copy of the plain base weights (the engine's model carries the injected LoRA layers)."""
    from tests.conftest import make_tiny_model

    model = make_tiny_model(loaded.model.config.vocab_size)
    model.load_state_dict({k.replace("base_model.model.", "").replace(".base_layer", ""): v
                           for k, v in loaded.model.state_dict().items() if "lora_" not in k})
    return model.eval()


def test_embedding_lora_runs_and_changes_the_answer(tiny_loaded, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(tiny_loaded.model), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_embedding_B" in name or "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "e")
    engine = Engine(tiny_loaded)
    assert engine.load_adapter("e", tmp_path / "e").mode == "mixed"
    outs = engine.generate([Row([5, 6, 7], None), Row([5, 6, 7], "e")], GenSettings(max_new_tokens=6))
    assert outs[0].tokens != outs[1].tokens


def test_no_forward_after_the_last_token(tiny_loaded):
    # Per row: one prefill, then one decode forward per token still to choose: n tokens need n - 1 steps.
    engine = _NoEos(tiny_loaded)
    calls = []
    handle = engine.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        rows = [Row([5, 6, 7]), Row([8, 9])]
        engine.generate(rows, GenSettings(max_new_tokens=5))
    finally:
        handle.remove()
    assert len(calls) == len(rows) * (1 + 4)


class _NoEos(Engine):
    eos_ids = set()  # every row runs to max_new_tokens, so the count of forwards is fixed


def test_adapter_names_with_dots_and_spaces_load_and_generate(tiny_loaded, tmp_path):
    """Registry names may hold '.', ' ' or '-' (e.g. "faq.v2"); peft keys its modules by adapter name and a
    module name cannot hold '.', so the engine must not hand registry names to peft as they are."""
    names = ["faq.v2", "faq v2", "faq_v2"]  # distinct names that a naive '.'/' ' -> '_' would collide
    folders = [make_lora(tiny_loaded.model, tmp_path / f"l{i}", i + 1) for i in range(len(names))]
    engine = Engine(tiny_loaded)
    for name, folder in zip(names, folders, strict=True):
        engine.load_adapter(name, folder)
    prompt = engine.chat_ids([{"role": "user", "content": "What is the torque for the M8 bolt?"}])
    gen = GenSettings(max_new_tokens=8)
    outs = engine.generate([Row(prompt, None)] + [Row(prompt, n) for n in names], gen)
    assert len({tuple(o.tokens) for o in outs}) == 4  # each adapter is its own weights, none is the base
    for name, out in zip(names, outs[1:], strict=True):  # and each equals that adapter's row alone
        assert engine.generate([Row(prompt, name)], gen)[0].tokens == out.tokens
    assert all(engine.nll(prompt, [5, 6, 7], n) > 0 for n in names)
    engine.load_adapter("faq.v2", folders[1])  # same name, new folder: replaced, not added twice
    assert engine.generate([Row(prompt, "faq.v2")], gen)[0].tokens == outs[2].tokens
