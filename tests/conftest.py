"""Shared fixtures: a tiny random Llama with a byte-level tokenizer (fast tests) and the bundled model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# Tests never reach a model hub: everything comes from packages or is built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_tiny_tokenizer():
    """Byte-level BPE without merges: every byte is a token, so any text round-trips exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=None, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", chat_template=CHATML)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    return tok


def make_tiny_model(vocab_size: int, seed: int = 0):
    """A random 2-layer Llama: small enough for CPU unit tests, same code paths as real models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def stored_result(variants: dict | None = None):
    """A small finished comparison result to store (runs.sqlite tests): variant -> {metric: mean}."""
    from assistant.compare.recommend import Recommendation
    from assistant.compare.result import ComparisonResult, Interval

    summaries = {v: {m: Interval(mean, mean, mean, 1) for m, mean in per.items()} for v, per in (variants or {}).items()}
    return ComparisonResult(summaries, {}, [], Recommendation(None, "", False, "f1"))


def make_lora(model, folder, seed: int):
    """Save a LoRA adapter for `model` whose B weights are non-zero (so it really changes outputs)."""
    import copy

    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return make_tiny_model(len(tiny_tokenizer))


@pytest.fixture
def tiny_loaded(tiny_model, tiny_tokenizer):
    from foundation.models import LoadedModel

    tiny_tokenizer.pad_token = tiny_tokenizer.pad_token or tiny_tokenizer.eos_token
    return LoadedModel(tiny_model, tiny_tokenizer, "tiny-llama", "<memory>", torch.float32,
                       torch.device("cpu"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model saved as a normal HF folder, for code that loads by path (CLI, subprocesses)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = make_tiny_tokenizer()
    make_tiny_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "arena_data"


@pytest.fixture(scope="session")
def bundled_data_dir(pytestconfig) -> Path:
    """A data dir that keeps the converted bundled model between test runs (pytest's cache folder)."""
    return Path(pytestconfig.cache.mkdir("arena-bundled-data"))


def pytest_collection_modifyitems(config, items):
    skip_e2e = os.environ.get("ARENA_SKIP_E2E") == "1"
    skip_browser = os.environ.get("ARENA_SKIP_BROWSER") == "1"
    for item in items:
        if skip_e2e and "e2e" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="ARENA_SKIP_E2E=1"))
        if skip_browser and "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="ARENA_SKIP_BROWSER=1"))


@pytest.fixture
def qa_file(tmp_path) -> Path:
    """16 tiny question/answer rows (three colors) for training tests."""
    path = tmp_path / "qa.jsonl"
    colors = ["red", "blue", "green"]
    path.write_text("".join(json.dumps({"question": f"Color of item {i}?", "answer": f"{colors[i % 3]}."}) + "\n"
                            for i in range(16)))
    return path


@pytest.fixture
def settings(tiny_model_dir, data_dir):
    """Settings on the tiny model in a fresh data dir (training tests)."""
    from foundation.settings import Settings, load_settings

    # ARENA_FAST=0 make test runs every training test on the stock library path.
    fast = load_settings(env={"ARENA_FAST": os.environ.get("ARENA_FAST", "1")}).fast
    # torch engine: the onnx engine has its own tests (test_ortgenai.py, e2e on the bundled model), and
    # converting the tiny model once per test data dir would cost seconds in every training test.
    return Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu", fast=fast, engine="torch")
