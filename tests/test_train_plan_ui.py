"""The Train tab's plan line and paraphrase control, through its handlers (no browser)."""

from __future__ import annotations

from assistant.runtime import Runtime
from foundation.settings import Settings
from training import plan as P
from training.plan import plan_job
from ui.train import _job_config, _plan_config, plan_line

HYPER = ["My Adapter", "lora", 2e-4, 16, 0, -1, 2, 20, 3, False, False, 0]  # epochs 0: fitted


def values(qa_file, paraphrases=0, **change) -> list:
    hyper = list(HYPER)
    for index, value in change.items():
        hyper[int(index[1:])] = value
    return [[str(qa_file)], False, "qa", False, None, "", *hyper, [], [], paraphrases]


def test_plan_line_shows_steps_minutes_and_follows_the_controls(qa_file, tiny_model_dir, data_dir):
    runtime = Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)))
    fitted = plan_job(_plan_config(runtime, *values(qa_file)), runtime.settings, runtime.data_tools())
    assert fitted.steps == P.MIN_AUTO_STEPS and fitted.fitted  # 14 training rows, batch 2: the floor
    assert "~60 steps" in fitted.text() and "minutes on this machine" in fitted.text()
    assert "assumed" in fitted.basis  # no adapter trained in this data folder yet
    more = plan_job(_plan_config(runtime, *values(qa_file, paraphrases=2)), runtime.settings, runtime.data_tools())
    assert more.steps == 8 * 22  # 16 rows + 2 paraphrases each = 48, 43 for training: 22 steps per epoch
    assert more.minutes > fitted.minutes
    fixed = plan_job(_plan_config(runtime, *values(qa_file, h4=2)), runtime.settings, runtime.data_tools())
    assert not fixed.fitted and fixed.steps == 14  # 2 epochs x 7 steps, as asked
    assert not list(data_dir.glob("uploads/**/*.jsonl"))  # planning copies no upload


def test_start_passes_the_paraphrase_count_to_the_job(qa_file, tiny_model_dir, data_dir):
    runtime = Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)))
    cfg = _job_config(runtime, *values(qa_file, paraphrases=3))
    assert cfg.augment == "paraphrases:3" and cfg.epochs == 0 and cfg.early_stopping_patience == 3
    assert _job_config(runtime, *values(qa_file)).augment == ""


def test_plan_line_tildes_are_not_markdown_strikethrough(qa_file, tiny_model_dir, data_dir):
    """'~60 steps (~30.0 epochs' rendered as <del>60 steps (</del>30.0 epochs in the page: the tildes are
    escaped, so the line reads as the plan says."""
    runtime = Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)))
    line = plan_line(runtime, *values(qa_file))
    assert line.startswith("**Plan:** \\~60 steps (\\~") and "~" not in line.replace("\\~", "")
