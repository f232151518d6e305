"""Experiment tracking the field's way: --report-to passes through to the trainer's integrations, and a decide
run logs its comparison summary to the same tracker (MLflow's local file store: no server)."""

from __future__ import annotations

import pytest

from assistant.compare.recommend import Recommendation, recommend
from assistant.decide.config import DecideConfig
from assistant.decide.tracking import log_decision
from foundation.errors import ArenaError
from training.config import JobConfig, report_targets
from training.job import run_job

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for the opt-in; no server needed
    mlflow.set_tracking_uri(uri)
    yield mlflow.tracking.MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def _runs(client):
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_training_job_logs_its_losses_to_mlflow(qa_file, settings, store):
    cfg = JobConfig(name="tracked", data=[{"path": str(qa_file)}], max_steps=4, batch_size=2, max_length=96,
                    eval_steps=2, save_steps=50, val_fraction=0.2, lora_r=4, lora_alpha=8, report_to="mlflow")
    run_job(cfg, settings)
    runs = _runs(store)
    assert [r.info.run_name for r in runs] == ["tracked"]
    history = store.get_metric_history(runs[0].info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4] and all(m.value > 0 for m in history)
    assert store.get_metric_history(runs[0].info.run_id, "eval_loss")


def test_decide_summary_goes_to_the_same_tracker(store, tmp_path):
    scores = {"base": [0.1, 0.2, 0.15, 0.1] * 10, "rag": [0.6, 0.7, 0.65, 0.8] * 10}
    rec = recommend(scores, {"base": {}, "rag": {"extra_prompt_tokens": 300}}, "f1")
    cfg = DecideConfig(name="faq", variants=["base", "rag"], metric="f1", report_to="mlflow")
    assert log_decision(rec, cfg, tmp_path) == ["mlflow"]
    (run,) = _runs(store)
    assert run.info.run_name == "decide:faq"
    assert run.data.metrics == pytest.approx({"f1/base": 0.1375, "f1/rag": 0.6875})
    assert run.data.tags["arena.recommended"] == "rag" and run.data.tags["arena.name"] == "faq"


def test_no_tracker_by_default_and_unknown_ones_are_named(store, tmp_path):
    assert report_targets("none") == [] and report_targets("") == [] and JobConfig().report_to == "none"
    assert log_decision(Recommendation("rag", "", True, "f1", means={"rag": 0.5}), DecideConfig(), tmp_path) == [] and _runs(store) == []
    with pytest.raises(ArenaError, match="report_to 'spreadsheet' is not a tracker the trainer knows"):
        JobConfig(report_to="spreadsheet", data=[{"path": "x.jsonl"}]).validate()
