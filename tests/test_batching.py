"""Batching across questions: ask_many gives all rows to the engine at once, answers equal one-by-one asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.inference import ort_build
from assistant.inference.ortgenai import OrtGenaiEngine, available, batches
from assistant.inference.torch_engine import Engine
from assistant.runtime import Runtime
from foundation.generation import GenSettings, Row
from foundation.settings import Settings
from foundation.variants import VariantConfig

QUESTIONS = ["hello there", "What is the torque for the M8 bolt?", "hi", "short q?", "why is the sky blue?"]


class CountingEngine(Engine):
    """The torch engine, recording how many rows each stream() call received."""

    calls: list[int]

    def stream(self, rows, gen):
        self.calls.append(len(rows))
        return super().stream(rows, gen)


def test_ask_many_sends_every_question_at_once_and_equals_asking_one_by_one(tiny_loaded, data_dir):
    engine = CountingEngine(tiny_loaded)
    engine.calls = []
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded, engine=engine).arena
    gen, cfg = GenSettings(max_new_tokens=8), VariantConfig()
    finished = []
    many = arena.ask_many(QUESTIONS, ["base", "prompt"], cfg, gen,
                          on_answer=lambda i, answers: finished.append((i, all(a.done for a in answers.values()))),
                          progress=lambda done, total: None)
    assert engine.calls == [len(QUESTIONS) * 2]
    assert sorted(finished) == [(i, True) for i in range(len(QUESTIONS))]
    for question, answers in zip(QUESTIONS, many, strict=True):
        alone = arena.ask(question, ["base", "prompt"], cfg, gen)
        assert {n: a.text for n, a in answers.items()} == {n: a.text for n, a in alone.items()}
        assert all(a.prompt_tokens > 0 and a.tokens > 0 for a in answers.values())


def test_ask_many_reports_questions_whose_variants_all_failed(tiny_loaded, data_dir):
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).arena
    finished = []
    out = arena.ask_many(["a?", "b?"], ["rag"], VariantConfig(), GenSettings(max_new_tokens=2),
                         on_answer=lambda i, answers: finished.append(i))
    assert sorted(finished) == [0, 1] and all(a["rag"].error for a in out)


@pytest.mark.skipif(not available(), reason="onnxruntime-genai is not installed")
def test_onnx_pool_answers_equal_torch_and_a_closed_stream_stops_its_workers(tiny_model_dir, tmp_path):
    from foundation.models import load_model

    loaded = load_model(Settings(model=str(tiny_model_dir), device="cpu", dtype="float32"))
    reference = Engine(loaded)
    folder = ort_build.converted_folder(Path(loaded.path), tmp_path / "models", "fp32", sorted(reference.eos_ids),
                                        log=lambda text: None)
    engine = OrtGenaiEngine(reference, folder, tmp_path / "models", workers=3)
    arena = Runtime(Settings(data_dir=tmp_path / "data"), loaded, engine=engine).arena
    gen, cfg = GenSettings(max_new_tokens=10), VariantConfig()
    many = arena.ask_many(QUESTIONS, ["base", "prompt"], cfg, gen)
    torch_arena = Runtime(Settings(data_dir=tmp_path / "data"), loaded, engine=reference).arena
    for question, answers in zip(QUESTIONS, many, strict=True):
        alone = torch_arena.ask(question, ["base", "prompt"], cfg, gen)
        assert {n: a.text for n, a in answers.items()} == {n: a.text for n, a in alone.items()}
    started = []
    run_batch = engine._run_batch
    engine._run_batch = lambda rows, batch, gen, stop: started.append(batch) or run_batch(rows, batch, gen, stop)
    rows = [Row(engine.chat_ids([{"role": "user", "content": q}])) for q in QUESTIONS * 40]
    stream = engine.stream(rows, GenSettings(max_new_tokens=200))
    next(stream)
    stream.close()  # e.g. the chat page went away: the workers stop after their current token
    assert len(started) <= 2 * engine.workers < len(batches(rows, engine.pad_id))  # pending batches never started
