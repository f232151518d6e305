"""Early stopping across cancel/resume: its patience counter and best loss travel in the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.callbacks import CancelCallback, EarlyStopping, cancel_files
from training.config import JobConfig
from training.job import run_job
from training.runner import job_dir

# A high constant learning rate makes the tiny model's validation loss stop improving after a few steps;
# evaluating every step makes early stopping fire well before max_steps.
STOPPING = dict(max_steps=16, batch_size=2, max_length=96, eval_steps=1, save_steps=100, val_fraction=0.2,
                lora_r=4, lora_alpha=8, learning_rate=0.05, lr_scheduler="constant",
                early_stopping_patience=2)


def cancel_at(monkeypatch, step: int) -> None:
    """Cancel (as SIGTERM would) at the end of training step `step`."""
    original = CancelCallback.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == step:
            self.requested = True
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(CancelCallback, "on_step_end", on_step_end)


def test_resumed_run_stops_where_the_uninterrupted_one_did(qa_file, settings, monkeypatch):
    data = [{"path": str(qa_file)}]
    straight = run_job(JobConfig(name="straight", data=data, **STOPPING), settings)["metrics"]
    stop = straight["early_stopped_at"]
    assert stop is not None and 3 <= stop < STOPPING["max_steps"] and straight["steps"] == stop
    # Cancel one evaluation before the stop: the patience counter is 1 there, and a resumed run that forgot
    # it (and the best loss) would need two more bad evaluations after its first one.
    cfg = JobConfig(name="resumed", data=data, job_id="early-stop-job", **STOPPING)
    cancel_at(monkeypatch, stop - 1)
    cancelled = run_job(cfg, settings)
    monkeypatch.undo()
    assert cancelled["state"] == "cancelled" and cancelled["step"] == stop - 1
    folder = job_dir(settings, cfg)
    saved = json.loads((folder / "checkpoints" / f"checkpoint-{stop - 1}" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["EarlyStopping"]["attributes"]["early_stopping_patience_counter"] == 1
    resumed = run_job(JobConfig.from_yaml(folder / "config.yaml"), settings, resume=True)["metrics"]
    assert resumed["early_stopped_at"] == stop and resumed["steps"] == stop
    assert resumed["best_val_loss"] == pytest.approx(straight["best_val_loss"], rel=1e-4)


def test_state_round_trips_through_trainer_restore():
    """The Trainer's own restore (restore_callback_states_from_checkpoint) rebuilds it from state()."""
    stopper = EarlyStopping(early_stopping_patience=3, early_stopping_threshold=0.01)
    stopper.early_stopping_patience_counter, stopper.stopped_at = 2, 7
    saved = json.loads(json.dumps(stopper.state()))  # what trainer_state.json holds
    rebuilt = EarlyStopping(**saved["args"])
    for key, value in saved["attributes"].items():
        setattr(rebuilt, key, value)
    assert (rebuilt.early_stopping_patience, rebuilt.early_stopping_threshold,
            rebuilt.early_stopping_patience_counter, rebuilt.stopped_at) == (3, 0.01, 2, 7)


def test_nan_validation_loss_counts_as_no_improvement():
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    args = SimpleNamespace(metric_for_best_model="eval_loss", greater_is_better=False)
    stopper, state, control = EarlyStopping(early_stopping_patience=2), TrainerState(), TrainerControl()
    for step, loss in enumerate([2.0, float("nan"), float("nan")], 1):
        state.global_step = step
        stopper.on_evaluate(args, state, control, metrics={"eval_loss": loss})
        state.best_metric = 2.0  # what the Trainer's _determine_best_metric keeps (NaN is never lower)
    assert stopper.stopped_at == 3 and control.should_training_stop


def test_sweep_trial_obeys_its_sweep_cancel_file(tmp_path):
    trial = tmp_path / "job" / "trials" / "1"
    assert cancel_files(trial) == [trial / "CANCEL", tmp_path / "job" / "CANCEL"]
    assert cancel_files(tmp_path / "job") == [tmp_path / "job" / "CANCEL"]
    from transformers import TrainerControl, TrainerState

    trial.mkdir(parents=True)
    (tmp_path / "job" / "CANCEL").touch()  # what the UI's Cancel writes for the job it launched
    control = CancelCallback(trial).on_step_end(None, TrainerState(global_step=2), TrainerControl())
    assert control.should_training_stop and control.should_save
    assert Path(trial).is_dir()


def test_progress_in_a_log_file_is_throttled_but_keeps_validations_and_the_last_step():
    """Not a terminal: a fast job (hundreds of steps a second) writes a handful of lines, not one per step."""
    import io

    from transformers import TrainerState

    from training.callbacks import StderrProgress

    out = io.StringIO()
    progress, state = StderrProgress("fast", out), TrainerState(max_steps=300)
    progress.on_train_begin(None, state, None)
    for step in range(1, 301):
        state.global_step = step
        progress.on_log(None, state, None, logs={"loss": 1.0 / step})
        if step % 100 == 0:
            progress.on_log(None, state, None, logs={"eval_loss": 2.0 / step})
    progress.on_train_end(None, state, None)
    text = out.getvalue()
    assert "\r" not in text  # tqdm's in-place redraws become lines of their own in a file
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("fast:   0%") and "0/300" in lines[0]  # the bar is shown at once
    validations = [line.split("|")[2].split()[0] for line in lines if "val " in line]
    assert validations[:2] == ["100/300", "200/300"] and "300/300" in validations  # every one shown
    assert "300/300" in lines[-1] and "loss 0.003 · val 0.007" in lines[-1]
    assert len(lines) <= 6, lines
