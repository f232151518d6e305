"""Model resolution and loading: the bundled GGUF (real weights), local folders, unknown ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from assistant.inference.torch_engine import Engine
from foundation import models
from foundation.generation import GenSettings, Row
from foundation.models import ModelNotFoundError, load_model, resolve_dtype, resolve_model_path
from foundation.settings import Settings


def test_dtype_choice():
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    expected = torch.bfloat16 if models.cpu_supports_bf16() else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == expected


def test_local_folder_loads(tiny_model_dir, tmp_path):
    loaded = load_model(Settings(data_dir=tmp_path, model=str(tiny_model_dir), dtype="float32"))
    assert loaded.model.config.num_hidden_layers == 2
    assert loaded.tokenizer.chat_template


def test_unknown_id_names_what_was_tried(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        load_model(Settings(data_dir=tmp_path, model="no-such-org/no-such-model-xyz"))
    message = str(err.value)
    assert "no-such-org/no-such-model-xyz" in message and "tried" in message


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"), Settings(data_dir=tmp_path))


@pytest.mark.e2e
def test_bundled_model_converts_once_then_reuses_cache(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path, dtype="float32")
    half = settings.models_dir / "smollm2-135m"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # no marker: a conversion killed half-way must be redone
    first = load_model(settings)
    cache = Path(first.path)
    assert (cache / "model.safetensors").is_file() and (cache / models.CACHE_MARKER).is_file()
    text = first.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                               add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")

    def no_gguf(*a, **k):
        raise AssertionError("the cached load must not touch the GGUF")

    monkeypatch.setattr(models, "convert_gguf", no_gguf)
    monkeypatch.setattr(models, "bundled_gguf", no_gguf)
    second = load_model(settings)
    assert second.path == first.path
    engine = Engine(second)
    ids = engine.chat_ids([{"role": "user", "content": "What is the capital of France?"}])
    answer = engine.generate([Row(ids)], GenSettings(max_new_tokens=16))[0].text
    assert "Paris" in answer
