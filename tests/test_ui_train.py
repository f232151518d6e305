"""Train tab handlers without a browser: distillation upload and preview, sweep choices, the sweep summary."""

from __future__ import annotations

import json

import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from tests.test_chat import HITS, ListStore
from tests.test_training_jobs import wait_for
from training.config import JobConfig
from training.job import run_job
from training.jobs import JobManager
from training.runner import job_dir
from training.sweep import trial_grid
from ui.train import (
    _grid,
    _job_config,
    _lr_choices,
    _preview_frame,
    _progress_md,
    _specs,
    _summary_md,
    _sweep_choices,
)

HYPER = dict(name="My Adapter", method="lora", lr=2e-4, rank=16, epochs=1, max_steps=2, batch=2, eval_steps=2,
             patience=0, dora=False, rslora=False, seed=0)


@pytest.fixture
def questions(tmp_path):
    path = tmp_path / "questions.jsonl"
    rows = [{"question": f"How tight is bolt {i}?"} for i in range(5)] + [{"question": "How tight is bolt 0?"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "answer": f"answer {i}."}) + "\n" for i in range(12)))
    return path


def config(runtime, files=None, questions=None, lrs=(), ranks=(), **kw) -> JobConfig:
    """What the Start button hands _job_config: data inputs, hyper-parameters, sweep checkboxes, in order."""
    hyper = {**HYPER, **kw}
    return _job_config(runtime, files, False, "qa", False, questions, "", *hyper.values(), list(lrs), list(ranks))


def test_distill_upload_is_kept_and_preview_only_counts_questions(questions, qa_file, data_dir):
    # a model path that does not exist: the preview must not load (or generate with) any model
    runtime = Runtime(Settings(data_dir=data_dir, model=str(data_dir / "no-such-model")))
    specs = _specs(runtime, [str(qa_file)], False, "qa", False, str(questions))
    kept = runtime.settings.uploads_dir / "training" / "questions" / "questions.jsonl"
    assert specs[-1] == {"source": "distill", "questions": str(kept.resolve())}
    assert kept.read_text() == questions.read_text()  # a copy: the job re-reads it on resume
    frame = _preview_frame(runtime, specs)
    assert list(frame["source"]) == ["qa.jsonl", "distill: questions.jsonl"]
    assert list(frame["rows"]) == [12, 5]  # the repeated question counts once
    assert frame["first rows"][1].splitlines() == ["How tight is bolt 0?", "How tight is bolt 1?",
                                                   "How tight is bolt 2?"]


def test_distill_spec_trains_on_the_rag_answers(tmp_path, tiny_loaded, tiny_model_dir, data_dir):
    questions = tmp_path / "two.jsonl"  # each question is answered (256 new tokens) before training starts
    questions.write_text("".join(json.dumps({"question": f"How tight is bolt {i}?"}) + "\n" for i in range(2)))
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    runtime = Runtime(settings, tiny_loaded, store=ListStore(HITS))
    cfg = config(runtime, questions=str(questions), name="distilled", max_steps=1)
    result = run_job(cfg, settings, tools=runtime.data_tools())
    rows = [json.loads(line) for name in ("train.jsonl", "val.jsonl")
            for line in (job_dir(settings, cfg) / name).read_text().splitlines()]
    assert sorted(r["messages"][0]["content"] for r in rows) == ["How tight is bolt 0?", "How tight is bolt 1?"]
    assert all(r["origin"] == "distilled from rag" and r["messages"][-1]["content"] for r in rows)
    assert result["adapter"] == "distilled" and AdapterRegistry(data_dir).names() == ["distilled"]


def test_checked_values_make_a_sweep_only_from_two_combinations(qa_file, data_dir):
    runtime = Runtime(Settings(data_dir=data_dir))
    cfg = config(runtime, files=[str(qa_file)], lrs=[3e-4, 1e-4], ranks=[8])
    assert cfg.sweep == {"learning_rate": [1e-4, 3e-4], "lora_r": [8]} and cfg.name == "My Adapter"
    cfg.validate()
    assert [(t["learning_rate"], t["lora_r"], t["lora_alpha"]) for t in trial_grid(cfg)] == [
        (1e-4, 8, 16), (3e-4, 8, 16)]
    one = config(runtime, files=[str(qa_file)], lrs=[1e-4], ranks=[8])
    assert one.sweep == {} and (one.learning_rate, one.lora_r, one.alpha) == (1e-4, 8, 16)  # alpha 0 = twice the rank
    assert _grid(2e-4, 16, [], []) == (2e-4, 16, {})
    big = config(runtime, files=[str(qa_file)], lrs=[v for _, v in _lr_choices("lora")], ranks=[4, 8, 16])
    with pytest.raises(ArenaError, match="15 trials; keep it at 12"):
        JobManager(runtime.settings).start(big)
    assert not (runtime.settings.data_dir / "jobs").exists()


def test_sweep_choices_follow_the_method():
    assert [v for _, v in _lr_choices("lora")] == [5e-5, 1e-4, 2e-4, 4e-4, 8e-4]
    assert 3e-3 in [v for _, v in _lr_choices("ia3")]
    lrs, ranks = _sweep_choices("ia3")
    assert ranks.interactive is False and ranks.value == [] and lrs.value == []
    assert _sweep_choices("dpo")[1].interactive is True


def test_summary_shows_the_sweep_table_and_progress_the_trial():
    rows = [{"trial": 0, "learning_rate": 1e-4, "lora_r": 8, "val_loss": 2.5, "best": False},
            {"trial": 1, "learning_rate": 3e-4, "lora_r": 8, "val_loss": 2.25, "best": True}]
    done = {"state": "done", "status": {"adapter": "a", "metrics": {"val_loss": 2.25, "steps": 4},
                                        "sweep": {"trials": 2, "rows": rows}}}
    text = _summary_md(done)
    assert "| 0.0001 | 8 | 2.5000 |  |" in text and "| 0.0003 | 8 | 2.2500 | ★ |" in text
    running = {"state": "running", "step": 1, "max_steps": 4, "fraction": 0.25,
               "status": {"sweep": {"trial": 1, "trials": 2, "rows": rows[:1]}}}
    assert "trial 2/2 · step 1/4" in _progress_md(running)
    cancelled = {"state": "cancelled", "status": {"step": 1, "sweep": {"trial": 1, "trials": 2, "rows": rows[:1]}}}
    assert "step 1 of trial 2/2" in _summary_md(cancelled) and "| 0.0001 | 8 |" in _summary_md(cancelled)


def test_sweep_started_like_the_start_button_shows_its_table(qa_file, tiny_model_dir, data_dir):
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    runtime = Runtime(settings)
    jobs = JobManager(settings)
    jobs.start(config(runtime, files=[str(qa_file)], name="ui-sweep", lrs=[1e-3, 3e-2], ranks=[2]))
    assert wait_for(lambda: "trial" in jobs.progress().get("status", {}).get("sweep", {})), jobs.log_tail()
    assert jobs.wait(600) == 0, jobs.log_tail()
    p = jobs.progress()
    assert p["state"] == "done" and p["step"] == 2 and any("loss" in r for r in p["records"])
    summary = _summary_md(p)
    assert "Adapter **ui-sweep** is ready" in summary and summary.count("★") == 1
    assert summary.count("| 2 |") == 2  # both trials, rank 2
    assert AdapterRegistry(data_dir).names() == ["ui-sweep"]


def test_the_question_generator_field_reaches_qa_and_grounded_document_sources(tmp_path, tiny_model_dir):
    """The Train tab's generator field becomes the documents source's generator (cpt has no questions); its
    preview counts the questions asked instead of writing them in the page."""
    from training.sources import preview

    runtime = Runtime(Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir)))
    assert _specs(runtime, None, True, "qa", False, None, " base ") == [
        {"source": "documents", "kind": "qa", "generator": "base"}]
    assert _specs(runtime, None, True, "cpt", False, None, "base") == [{"source": "documents", "kind": "cpt"}]
    assert _specs(runtime, None, True, "grounded", False, None, "") == [{"source": "documents", "kind": "grounded"}]
    [row] = preview([{"source": "documents", "kind": "qa", "generator": "base"}], runtime.settings, runtime)
    assert row["rows"] == 60 and "the generator base writes when the job runs" in row["kinds"][0]
