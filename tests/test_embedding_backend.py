"""The Embedder's ONNX Runtime int8 backend: export once, cache, reload, stay close to torch, fall back."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from foundation.models import resolve_dtype  # noqa: E402
from foundation.settings import Settings, add_settings_flags, load_settings  # noqa: E402
from retrieval import onnx_embedder  # noqa: E402
from retrieval.embedder import resolve_embedder_path  # noqa: E402
from retrieval.embedding import Embedder  # noqa: E402

BUNDLED = "bundled:all-minilm-l6-v2"
# Not the export's probe texts: the check must hold on text the quality gate never saw.
TEXTS = [
    "Step 4: check the heater near the relay and tighten it every 12 weeks (ref 7-2-3). Step 5: check the "
    "filter near the drawer and rinse it every 30 cycles (ref 7-2-4). Step 6: check the nozzle near the tray.",
    "Why does my coffee taste sour?",
    "Hold the menu button for five seconds to restore the factory settings; your saved recipes are erased.",
    "grinder noise",
    "The steam wand sputters when the boiler has not reached temperature yet; wait until the light stops blinking.",
    "Invoice INV-2024-0113 is overdue by 45 days; a reminder fee of EUR 12.50 has been added to the balance.",
]


def never_export(*args, **kwargs):
    raise AssertionError("export_model ran although a finished export was cached")


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory):
    """The bundled MiniLM exported once for this module (the slow part: export, fusion, int8 plans)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    return Embedder.load(BUNDLED, backend="onnx", cache_dir=cache), cache


def make_tiny_bert(folder):
    """A 2-layer random BERT as a sentence-transformers folder: exports in a few seconds."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    raw = folder / "raw"
    raw.mkdir(parents=True)
    words = "the a pump valve boiler water tank clean check near every days display error code".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,:-", *words]
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(raw)
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(raw)
    transformer = models.Transformer(str(raw), max_seq_length=64)
    pooling = models.Pooling(transformer.get_embedding_dimension())
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(folder / "st"))
    return folder / "st"


def make_lstm_model(folder):
    """A word-embedding + LSTM sentence-transformers model: it exports, but its graph does not match torch."""
    from sentence_transformers import SentenceTransformer, models
    from sentence_transformers.models.tokenizer import WhitespaceTokenizer

    vocab = "the a pump valve boiler water tank clean replace every days check".split()
    weights = np.random.default_rng(0).standard_normal((len(vocab) + 1, 16)).astype(np.float32)
    words = models.WordEmbeddings(WhitespaceTokenizer(vocab), weights)
    lstm = models.LSTM(16, 8)
    modules = [words, lstm, models.Pooling(lstm.get_embedding_dimension()), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def test_bundled_export_is_close_to_torch_fp32(bundled_onnx):
    embedder, cache = bundled_onnx
    assert embedder.backend == "onnx-int8" and embedder.backend_note == ""
    reference = Embedder.load(BUNDLED, backend="torch", dtype="float32")
    assert reference.backend == "torch-float32"
    ours, ref = embedder.encode(TEXTS), reference.encode(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = (ours * ref).sum(axis=1)  # row i against row i: a reordering bug would show up here
    assert cosine.mean() >= 0.995 and cosine.min() >= 0.98, cosine
    # One text alone (a search query) takes the batch-of-one path with no padding.
    assert float(embedder.encode(TEXTS[1:2])[0] @ ref[1]) >= 0.98
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_second_load_reuses_the_cached_export(bundled_onnx, monkeypatch):
    embedder, cache = bundled_onnx
    folder = onnx_embedder.cache_folder(cache, resolve_embedder_path(BUNDLED))
    info = json.loads((folder / onnx_embedder.CACHE_MARKER).read_text())
    assert info["ok"] and (folder / "model.onnx").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.onnx"]  # no intermediates left
    monkeypatch.setattr(onnx_embedder, "export_model", never_export)
    again = Embedder.load(BUNDLED, backend="onnx", cache_dir=cache)
    assert again.backend == "onnx-int8"
    np.testing.assert_allclose(again.encode(TEXTS), embedder.encode(TEXTS), atol=1e-6)


def test_interrupted_export_is_redone(tmp_path):
    model = make_tiny_bert(tmp_path / "tiny")
    cache = tmp_path / "cache"
    folder = onnx_embedder.cache_folder(cache, str(model))
    folder.mkdir(parents=True)  # what a crash mid-export could leave: a graph, but no marker
    (folder / "model.onnx").write_bytes(b"truncated")
    embedder = Embedder.load(str(model), backend="onnx", cache_dir=cache)
    assert embedder.backend == "onnx-int8", embedder.backend_note
    assert json.loads((folder / onnx_embedder.CACHE_MARKER).read_text())["ok"]
    assert (folder / "model.onnx").stat().st_size > 1000
    reference = Embedder.load(str(model), backend="torch").encode(TEXTS)
    assert (embedder.encode(TEXTS) * reference).sum(axis=1).min() >= 0.98


def test_unsupported_model_falls_back_to_torch_with_the_reason(tmp_path, monkeypatch, caplog):
    model = make_lstm_model(tmp_path / "lstm")
    with caplog.at_level("WARNING", logger="retrieval.embedding"):
        embedder = Embedder.load(str(model), backend="onnx", cache_dir=tmp_path / "cache")
    assert embedder.backend == "torch-float32"
    assert "ONNX backend not used" in embedder.backend_note and "quality gate" in embedder.backend_note
    assert embedder.backend_note in caplog.text
    vectors = embedder.encode(["check the pump", "water tank"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The verdict is cached: the next start does not pay for the export again, and says how to retry.
    monkeypatch.setattr(onnx_embedder, "export_model", never_export)
    start = time.perf_counter()
    # (backend onnx: on a CPU with native bf16, auto keeps torch bf16 and never consults the export)
    again = Embedder.load(str(model), backend="onnx", cache_dir=tmp_path / "cache")
    assert again.backend == "torch-float32" and "delete it to retry" in again.backend_note
    assert time.perf_counter() - start < 30


def test_auto_without_cache_dir_and_explicit_torch_stay_on_torch(tmp_path):
    model = make_tiny_bert(tmp_path / "tiny")
    # auto: torch in the dtype auto picks (bf16 on CPUs with native bf16), as there is nowhere to cache an export
    torch_auto = f"torch-{str(resolve_dtype('auto', torch.device('cpu'))).removeprefix('torch.')}"
    assert Embedder.load(str(model)).backend == torch_auto
    assert Embedder.load(str(model), backend="torch", cache_dir=tmp_path).backend == torch_auto
    assert not (tmp_path / "embedders").exists()
    with pytest.raises(ValueError, match="auto, torch, onnx"):
        Embedder.load(str(model), backend="tensorrt")


def test_embedder_backend_setting_env_and_flag():
    import argparse

    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    assert Settings().embedder_backend == "auto"
    assert load_settings(None, {"ARENA_EMBEDDER_BACKEND": "torch"}).embedder_backend == "torch"
    args = parser.parse_args(["--embedder-backend", "onnx"])
    assert load_settings(args, {"ARENA_EMBEDDER_BACKEND": "torch"}).embedder_backend == "onnx"
    with pytest.raises(ValueError, match="auto, torch or onnx"):
        load_settings(None, {"ARENA_EMBEDDER_BACKEND": "fast"})


def test_from_settings_caches_under_the_data_dir(tmp_path):

    model = make_tiny_bert(tmp_path / "tiny")
    settings = Settings(data_dir=tmp_path / "data", embedder=str(model))  # embedder_backend: auto
    embedder = Embedder.from_settings(settings)
    native_bf16 = resolve_dtype("auto", torch.device("cpu")) != torch.float32  # auto keeps torch bf16 there
    assert embedder.backend == ("torch-bfloat16" if native_bf16 else "onnx-int8"), embedder.backend_note
    if not native_bf16:
        assert list((settings.models_dir / "embedders").glob("*/export.json"))
