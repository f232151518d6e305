"""Names never escape the data dir, weights load only from safetensors, one server policy, concurrency."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from assistant.cli.main import build_parser
from assistant.inference.torch_engine import Engine
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.models import resolve_model_path
from foundation.registry import AdapterInfo, AdapterRegistry, load_adapter_model
from foundation.settings import Settings, load_settings
from foundation.variants import VariantConfig
from tests.conftest import make_lora
from training.config import JobConfig
from training.jobs import JobManager
from training.lock import TrainingLock


@pytest.fixture
def registry(tiny_model, tmp_path, data_dir):
    reg = AdapterRegistry(data_dir)
    reg.register("good", make_lora(tiny_model, tmp_path / "lora", 1), {"method": "lora", "peft_type": "LORA"}, [])
    return reg


@pytest.mark.parametrize("new, stored", [("../evil", "evil"), ("../../../tmp/x", "x"), ("a/../../b", "b"),
                                         ("/etc/passwd", "passwd"), ("..\\..\\win", "win")])
def test_rename_cannot_leave_the_adapters_folder(registry, data_dir, new, stored):
    info = registry.rename("good", new)
    assert info.name == stored and info.path.parent == data_dir / "adapters"
    assert sorted(p.name for p in (data_dir / "adapters").iterdir()) == [stored]
    assert not (data_dir / "evil").exists() and not (data_dir.parent / "evil").exists()


def test_traversal_names_are_refused_or_contained(registry, data_dir):
    for bad in ("..", "../..", "/", ""):
        with pytest.raises(ArenaError, match="no usable characters"):
            registry.rename("good", bad)
    with pytest.raises(ArenaError, match="unknown adapter"):
        registry.delete("../../arena_data")
    assert data_dir.is_dir() and registry.names() == ["good"]


def pickle_only(folder: Path, source: Path, name: str) -> Path:
    """Copy a weights folder but swap the safetensors file for a (pickle) .bin of the same name."""
    shutil.copytree(source, folder)
    for st in folder.glob("*.safetensors"):
        st.unlink()
    (folder / name).write_bytes(b"\x80\x04pretend pickle")
    return folder


def test_pickle_only_adapter_is_refused_everywhere(tiny_loaded, tmp_path, data_dir):
    folder = pickle_only(tmp_path / "pkl", make_lora(tiny_loaded.model, tmp_path / "lora", 2), "adapter_model.bin")
    with pytest.raises(ArenaError, match=r"holds only pickle weights \(adapter_model.bin\); only .safetensors"):
        Engine(tiny_loaded).load_adapter("pkl", folder)
    info = AdapterInfo("pkl", folder, "lora", "", 0.0, {}, "LORA")
    with pytest.raises(ArenaError, match="only pickle weights"):
        load_adapter_model(info, Settings(data_dir=data_dir))
    from training.methods import build_trainable

    with pytest.raises(ArenaError, match="only pickle weights"):
        build_trainable(JobConfig(name="x", method="lora"), "unused", None, info)


def test_pickle_only_model_folder_is_refused(tiny_model_dir, tmp_path, data_dir):
    folder = pickle_only(tmp_path / "model", tiny_model_dir, "pytorch_model.bin")
    with pytest.raises(ArenaError, match=r"model folder .* holds only pickle weights \(pytorch_model.bin\)"):
        resolve_model_path(str(folder), Settings(data_dir=data_dir))
    assert resolve_model_path(str(tiny_model_dir), Settings(data_dir=data_dir)) == str(tiny_model_dir)


def test_weight_loads_ask_for_safetensors(tiny_model_dir, data_dir, monkeypatch):
    """Base model, full-model adapters and the training base are all loaded with use_safetensors=True."""
    from transformers import AutoModelForCausalLM

    from foundation.models import load_model
    from training.methods import load_base

    calls, real = [], AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs.get("use_safetensors"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    loaded = load_model(settings)
    load_adapter_model(AdapterInfo("full", tiny_model_dir, "full", "", 0.0, {}, None), settings)
    load_base(str(tiny_model_dir), JobConfig(name="x", method="lora"), loaded.device)
    engine = Engine(loaded)
    engine.load_adapter("full", tiny_model_dir)
    engine._separate_model("full")
    assert calls == [True, True, True, True]


def test_remote_code_is_off_unless_asked():
    parse = build_parser().parse_args
    assert load_settings(parse(["info"]), env={}).trust_remote_code is False
    assert load_settings(parse(["info", "--trust-remote-code"]), env={}).trust_remote_code is True


def test_launch_serves_only_uploads_with_a_queue(tiny_model_dir, data_dir, monkeypatch):
    import gradio as gr

    from ui import web as app

    seen, real_queue = {"queue": []}, gr.Blocks.queue

    def queue(self, **kw):
        seen["queue"].append(kw)
        return real_queue(self, **kw)

    monkeypatch.setattr(gr.Blocks, "queue", queue)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.setdefault("launch", kw))
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    app.launch(settings)
    assert {"default_concurrency_limit": 2} in seen["queue"]
    kw = seen["launch"]
    assert kw["allowed_paths"] == [str(settings.uploads_dir)] and kw["server_name"] == "127.0.0.1"
    assert kw["auth"] is None and settings.uploads_dir.is_dir()
    with pytest.raises(ArenaError, match="refusing to listen on 0.0.0.0"):
        app.launch(Settings(data_dir=data_dir, model=str(tiny_model_dir), host="0.0.0.0"))


def test_concurrent_asks_both_complete_correctly(tiny_loaded, data_dir):
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).arena
    cfg, gen = VariantConfig(system_prompt="Be brief."), GenSettings(max_new_tokens=12)
    questions = ["How do I reset it?", "What is the warranty?"]
    expected = {q: {n: (a.text, a.tokens, a.error) for n, a in arena.ask(q, ["base", "prompt"], cfg, gen).items()} for q in questions}
    got, errors = {}, []

    def worker(q):
        try:
            got[q] = {n: (a.text, a.tokens, a.error) for n, a in arena.ask(q, ["base", "prompt"], cfg, gen).items()}
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and got == expected
    assert all(tokens == 12 and not error for answers in got.values() for _, tokens, error in answers.values())


def test_one_training_job_per_data_dir(data_dir, tmp_path):
    holder = TrainingLock(data_dir)
    holder.acquire("ui-job")
    try:
        with pytest.raises(ArenaError, match=r"another training job is running \(job ui-job, pid \d+\)"):
            TrainingLock(data_dir).acquire("cli-job")
        data = tmp_path / "d.jsonl"
        data.write_text('{"prompt": "p", "completion": "c"}\n')
        with pytest.raises(ArenaError, match="another training job is running"):
            JobManager(Settings(data_dir=data_dir)).start(JobConfig(name="x", data=[{"path": str(data)}]))
    finally:
        holder.release()
    assert not TrainingLock(data_dir).busy()
    TrainingLock(data_dir).acquire("next")  # free again once released
