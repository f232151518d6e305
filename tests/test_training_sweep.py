"""The learning-rate x rank sweep on the tiny model: every trial validated, only the best registered."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file as load_safetensors

from assistant.cli.train import add_train_flags
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from training.callbacks import CancelCallback, read_metrics
from training.config import JobConfig, config_from_args
from training.job import run_job
from training.runner import job_dir, read_status
from training.sweep import run_sweep, trial_grid

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(max_steps=2, batch_size=2, max_length=96, eval_steps=2, save_steps=50, val_fraction=0.2,
            lora_r=4, lora_alpha=8, lr_scheduler="constant")


def sweep_cfg(qa_file, **kw) -> JobConfig:
    return JobConfig(**{"name": "swept", "data": [{"path": str(qa_file)}], **FAST, **kw})


def job_folders(settings) -> list[Path]:
    jobs = settings.data_dir / "jobs"  # also holds the training lock file
    return [p for p in jobs.iterdir() if p.is_dir()] if jobs.is_dir() else []


def test_2x2_sweep_registers_only_the_best_by_val_loss(qa_file, settings):
    cfg = sweep_cfg(qa_file, sweep={"learning_rate": [1e-3, 3e-2], "lora_r": [2, 4]}, job_id="grid")
    result = run_job(cfg, settings)
    rows = result["sweep"]
    assert [(r["learning_rate"], r["lora_r"]) for r in rows] == [(1e-3, 2), (1e-3, 4), (3e-2, 2), (3e-2, 4)]
    assert all(isinstance(r["val_loss"], float) for r in rows) and len({r["val_loss"] for r in rows}) == 4
    assert [r["lora_alpha"] for r in rows] == [4, 8, 4, 8]  # alpha/r kept at the job's 8/4
    best = min(rows, key=lambda r: r["val_loss"])
    assert [r["best"] for r in rows] == [r is best for r in rows]
    folder = job_dir(settings, cfg)
    assert json.loads((folder / "sweep.json").read_text()) == rows
    # each row is its trial's own final validation loss
    for r in rows:
        trial = json.loads((folder / "trials" / str(r["trial"]) / "result.json").read_text())
        assert trial["metrics"]["val_loss"] == r["val_loss"]
    reg = AdapterRegistry(settings.data_dir)
    assert reg.names() == ["swept"] and result["adapter"] == "swept"
    info = reg.get("swept")
    job = JobConfig.from_yaml(info.path / "job.yaml")
    assert (job.learning_rate, job.lora_r, job.sweep) == (best["learning_rate"], best["lora_r"], {})
    registered = load_safetensors(str(info.path / "adapter_model.safetensors"))
    trained = load_safetensors(str(folder / "trials" / str(best["trial"]) / "artifact" / "adapter_model.safetensors"))
    assert registered.keys() == trained.keys() and all((registered[k] == trained[k]).all() for k in trained)
    status = read_status(folder)
    assert status["state"] == "done" and status["adapter"] == "swept" and status["sweep"]["rows"] == rows
    assert result["job_dir"] == str(folder)


def test_cli_sweep_flags_print_the_table(qa_file, settings, tiny_model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "assistant", "train", "--data", str(qa_file), "--name", "cli-sweep",
            "--max-steps", "1", "--batch-size", "2", "--max-length", "96", "--val-fraction", "0.2",
            "--data-dir", str(settings.data_dir), "--model", str(tiny_model_dir)]
    run = subprocess.run(base + ["--sweep-lr", "1e-3,3e-2", "--sweep-rank", "2"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "learning_rate  lora_r  val_loss  best" in run.stdout and "adapter cli-sweep saved" in run.stdout
    table = [line for line in run.stdout.splitlines() if line.startswith(("0.001", "0.03"))]
    assert len(table) == 2 and sum(line.rstrip().endswith("*") for line in table) == 1
    assert AdapterRegistry(settings.data_dir).names() == ["cli-sweep"]
    big = subprocess.run(base + ["--sweep-lr", "1e-4,2e-4,3e-4,4e-4", "--sweep-rank", "2", "4", "8,16"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert big.returncode == 2 and "16 trials; keep it at 12 or fewer" in big.stderr
    assert len(job_folders(settings)) == 1  # the refused sweep wrote no job folder


def test_sweep_flags_and_yaml_values_parse(tmp_path):
    p = argparse.ArgumentParser()
    add_train_flags(p)
    args = p.parse_args(["--data", "x.jsonl", "--sweep-lr", "1e-4,3e-4", "5e-4", "--sweep-r", "4,8"])
    assert config_from_args(args).sweep == {"learning_rate": [1e-4, 3e-4, 5e-4], "lora_r": [4, 8]}
    with pytest.raises(SystemExit):
        p.parse_args(["--sweep-rank", "4,eight"])
    path = tmp_path / "job.yaml"
    path.write_text("data: [{path: x.jsonl}]\nsweep:\n  learning_rate: [1e-4, 3e-4, 1e-4]\n  lora_r: [8]\n")
    cfg = JobConfig.from_yaml(path)  # YAML 1.1 reads 1e-4 as a string
    assert [g["learning_rate"] for g in trial_grid(cfg)] == [1e-4, 3e-4]


@pytest.mark.parametrize("sweep,extra,message", [
    ({"learning_rate": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4], "lora_r": [2, 4, 8]}, {}, "15 trials; keep it at 12"),
    ({"learning_rate": [1e-4, 2e-4]}, {"val_fraction": 0.0}, "set val_fraction > 0"),
    ({"lora_r": [2, 4]}, {"method": "ia3"}, "method 'ia3' has no LoRA rank to sweep"),
    ({"learning_rate": "1e-4"}, {}, "sweep.learning_rate must be a valid list, got '1e-4'"),
    ({"lora_r": [2, 4.5]}, {}, r"sweep.lora_r.1 must be a valid integer, got a number with a fractional part"),
    ({"learning_rate": [-1e-4, 1e-4]}, {}, "sweep.learning_rate.0 must be greater than 0, got -0.0001"),
    ({"momentum": [0.9]}, {}, "unknown setting sweep.momentum"),
])
def test_bad_sweeps_are_refused_before_anything_runs(qa_file, settings, sweep, extra, message):
    with pytest.raises(ArenaError, match=message):
        run_job(sweep_cfg(qa_file, sweep=sweep, **extra), settings)
    assert job_folders(settings) == []


def test_cancel_mid_sweep_then_resume_keeps_finished_trials(qa_file, settings, monkeypatch):
    cfg = sweep_cfg(qa_file, max_steps=3, sweep={"learning_rate": [1e-3, 3e-2]}, job_id="cancel-sweep")
    folder = job_dir(settings, cfg)
    original = CancelCallback.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if self.files[0].parent.name == "1" and state.global_step == 2:
            (folder / "CANCEL").touch()  # what the Train tab's Cancel does: the job folder it launched
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(CancelCallback, "on_step_end", on_step_end)
    result = run_job(cfg, settings)
    monkeypatch.undo()
    assert result["state"] == "cancelled" and result["step"] == 2 and result["job_dir"] == str(folder)
    assert [r["trial"] for r in result["sweep"]] == [0]
    status = read_status(folder)
    assert status["state"] == "cancelled" and status["sweep"]["trial"] == 1
    assert not (folder / "CANCEL").exists()  # else the resume would stop again at once
    assert (folder / "trials" / "1" / "checkpoints" / "checkpoint-2").is_dir()
    assert AdapterRegistry(settings.data_dir).names() == [] and not (folder / "sweep.json").exists()
    first = (folder / "trials" / "0" / "metrics.jsonl").read_text()
    resumed = run_sweep(JobConfig.from_yaml(folder / "config.yaml"), settings, folder, resume=True)
    assert (folder / "trials" / "0" / "metrics.jsonl").read_text() == first  # trial 0 was not trained again
    steps = [r["step"] for r in read_metrics(folder / "trials" / "1" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # trial 1 continued from its checkpoint
    assert len(resumed["sweep"]) == 2 and sum(r["best"] for r in resumed["sweep"]) == 1
    assert AdapterRegistry(settings.data_dir).names() == ["swept"]


def test_cancel_between_trials_starts_no_trial(qa_file, settings):
    cfg = sweep_cfg(qa_file, sweep={"learning_rate": [1e-3, 3e-2]}, job_id="pre-cancelled")
    folder = job_dir(settings, cfg)
    folder.mkdir(parents=True)
    (folder / "CANCEL").touch()
    result = run_job(cfg, settings)
    assert result["state"] == "cancelled" and result["sweep"] == [] and not (folder / "trials").exists()
    assert read_status(folder)["state"] == "cancelled"


def test_fresh_sweep_into_an_old_folder_starts_each_trial_clean(qa_file, settings):
    cfg = sweep_cfg(qa_file, max_steps=1, sweep={"learning_rate": [1e-3, 3e-2]}, job_id="again")
    run_job(cfg, settings)
    run_job(sweep_cfg(qa_file, max_steps=1, sweep={"learning_rate": [1e-3, 3e-2]}, job_id="again"), settings)
    folder = job_dir(settings, cfg)
    for n in (0, 1):
        steps = [r["step"] for r in read_metrics(folder / "trials" / str(n) / "metrics.jsonl") if "loss" in r]
        assert steps == [1]  # not appended to the first run's records


def test_later_trials_train_on_the_first_trials_rows(qa_file, settings, monkeypatch):
    # Rows are built once per sweep: a distillation source would otherwise regenerate every answer per trial.
    import training.sources as sources

    calls = []
    real = sources.build_split
    monkeypatch.setattr(sources, "build_split", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = sweep_cfg(qa_file, sweep={"learning_rate": [1e-3, 3e-2]}, job_id="shared")
    run_job(cfg, settings)
    trials = job_dir(settings, cfg) / "trials"
    assert len(calls) == 1
    for name in ("train.jsonl", "val.jsonl"):
        assert (trials / "1" / name).read_bytes() == (trials / "0" / name).read_bytes()
    results = [json.loads((trials / t / "result.json").read_text()) for t in ("0", "1")]
    assert results[0]["fingerprint"] == results[1]["fingerprint"]
