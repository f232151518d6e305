"""The UI's job path: `arena train` launched as a subprocess, tailed, cancelled, resumed; tabs build."""

from __future__ import annotations

import json
import time

import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from tests.kill_points import UNREACHABLE_STEPS
from tests.ui_wiring import click_handlers, click_inputs
from training.config import JobConfig
from training.jobs import JobManager


def wait_for(predicate, timeout=240.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_subprocess_job_cancel_resume(tmp_path, tiny_model_dir, data_dir):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": f"answer {i}"}) + "\n" for i in range(12)))
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    # Steps no machine finishes while the test works, early stopping off: the job is still running when the
    # cancel lands, whatever the speed; the resume below sets a short target.
    cfg = JobConfig(name="ui-job", data=[{"path": str(path)}], max_steps=UNREACHABLE_STEPS, batch_size=2,
                    max_length=48, eval_steps=30, save_steps=100, lora_r=2, lora_alpha=4, job_id="ui-job",
                    early_stopping_patience=0)
    jobs = JobManager(settings)
    jobs.start(cfg)
    with pytest.raises(ArenaError, match="still running"):
        jobs.start(cfg)  # one job at a time
    assert wait_for(lambda: any("loss" in r for r in jobs.progress()["records"]), 600), jobs.log_tail()
    jobs.cancel()
    assert jobs.wait(600) == 0, jobs.log_tail()
    p = jobs.progress()
    assert p["state"] == "cancelled" and p["status"]["step"] > 0
    stopped = p["status"]["step"]
    assert (jobs.folder / "checkpoints" / f"checkpoint-{stopped}").is_dir()  # the cancel saved where it stopped
    target = stopped + 5
    saved = JobConfig.from_yaml(jobs.folder / "config.yaml")
    saved.max_steps = target  # a reachable end for the resumed run
    saved.to_yaml(jobs.folder / "config.yaml")
    jobs.resume()
    assert jobs.wait(600) == 0, jobs.log_tail()
    p = jobs.progress()
    assert p["state"] == "done" and p["step"] == target and p["fraction"] == 1.0
    loss_steps = [r["step"] for r in p["records"] if "loss" in r]
    assert loss_steps == list(range(1, target + 1))  # one record per step across the cancel/resume boundary
    assert AdapterRegistry(data_dir).names() == ["ui-job"]


def test_train_and_adapters_tabs_build(data_dir):
    import gradio as gr

    from ui.adapters import build_adapters_tab
    from ui.train import _plot_frame, _progress_md, build_train_tab

    runtime = Runtime(Settings(data_dir=data_dir))
    with gr.Blocks() as demo, gr.Tabs() as tabs:
        with gr.Tab("Train", id="train"):
            build_train_tab(runtime, tabs)
        with gr.Tab("Adapters", id="adapters"):
            build_adapters_tab(runtime)
    # The job buttons are wired: a click on each reaches a handler (a tab can build with a dead button).
    for button in ("Start training", "Cancel", "Resume", "Delete"):
        assert click_handlers(demo, button), f"the {button} button has no handler"
    assert {"Adapter", "New name"} <= click_inputs(demo, "Rename")
    frame = _plot_frame([{"step": 1, "loss": 2.0}, {"step": 1, "val_loss": 2.5}])
    assert sorted(frame["series"]) == ["train", "validation"]
    assert "step 3/10 (30 %)" in _progress_md({"state": "running", "step": 3, "max_steps": 10, "fraction": 0.3,
                                                "eta_s": 70})


def test_two_process_ddp_saves_exactly_one_adapter(tmp_path, tiny_model_dir, data_dir):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and not shutil.which("torchrun"):
        pytest.skip("torchrun is not installed")
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) + "\n" for i in range(20)))
    cfg = JobConfig(name="ddp", data=[{"path": str(path)}], max_steps=3, batch_size=2, max_length=48,
                    eval_steps=2, lora_r=2, lora_alpha=4)
    cfg.to_yaml(tmp_path / "ddp.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "assistant",
                          "train", str(tmp_path / "ddp.yaml"), "--data-dir", str(data_dir), "--model",
                          str(tiny_model_dir), "--device", "cpu", "--json"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    # every rank closed its process group before exiting (a rank that did not could abort in gloo's threads)
    assert "terminate called" not in run.stderr, run.stderr[-3000:]
    reports = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]  # stdout: JSON only
    assert len(reports) == 1 and reports[0]["metrics"]["world_size"] == 2  # only rank 0 reports
    assert AdapterRegistry(data_dir).names() == ["ddp"]
    assert not list((data_dir / "adapters").glob(".tmp-*"))


def test_train_json_stdout_is_one_json_object_and_progress_goes_to_stderr(tmp_path, tiny_model_dir, data_dir):
    """With tqdm off, transformers' PrinterCallback printed every log dict ({'loss': ...}) to stdout."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) + "\n" for i in range(12)))
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "assistant", "train", "--data", str(path), "--name", "quiet",
                          "--max-steps", "4", "--eval-steps", "2", "--batch-size", "2", "--max-length", "48",
                          "--lora-r", "2", "--data-dir", str(data_dir), "--model", str(tiny_model_dir),
                          "--device", "cpu", "--json"], cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, run.stdout[-2000:]
    assert json.loads(lines[0])["adapter"] == "quiet"
    # tqdm's bar; not a TTY: a line every few seconds, each validation, the last step
    steps = [line for line in run.stderr.splitlines() if line.startswith("quiet:") and "|" in line]
    assert steps and "4/4 [" in steps[-1] and "loss " in steps[-1], run.stderr[-2000:]
    assert "<00:00" in steps[-1]  # [elapsed<remaining, rate]
    assert any("val " in line for line in steps)  # validation every 2 steps


def test_adapters_tab_lists_on_load_and_never_picks_for_the_user(data_dir, tmp_path):
    """On page load the dropdown lists what the table lists; after a delete nothing is selected (a second
    Delete must not remove another adapter); Delete or Rename with nothing picked asks for a pick."""
    import gradio as gr

    from tests.ui_wiring import load_handlers
    from ui.adapters import build_adapters_tab

    runtime = Runtime(Settings(data_dir=data_dir))
    (tmp_path / "artifact").mkdir()
    for name in ("first", "second", "third"):
        runtime.registry.register(name, tmp_path / "artifact", {"method": "lora"}, [])
    with gr.Blocks() as demo:
        build_adapters_tab(runtime)
    [on_load] = [fn for fn in load_handlers(demo) if any(o.elem_id == "adapters-choice" for o in fn.outputs)]
    loaded = on_load.fn()
    assert [value for _, value in loaded.choices] == ["first", "second", "third"] and loaded.value is None
    [delete] = click_handlers(demo, "Delete")
    _, choice, message = delete.fn("second")
    assert message == "Deleted second" and choice.value is None
    assert [value for _, value in choice.choices] == ["first", "third"]
    [rename] = click_handlers(demo, "Rename")
    assert rename.fn("third", "renamed")[1].value == "renamed"  # the one just renamed stays picked
    for handler, args in ((delete, (None,)), (rename, ("", "x"))):
        with pytest.raises(gr.Error, match="pick an adapter first"):
            handler.fn(*args)
    assert runtime.registry.names() == ["first", "renamed"]
