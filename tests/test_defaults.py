"""One set of defaults: the CLI and the Train tab build the same job for the same choices."""

from __future__ import annotations

import dataclasses

import pytest

from assistant.cli.main import build_parser
from assistant.runtime import Runtime
from foundation.settings import Settings
from training.config import DEFAULT_LEARNING_RATES, JobConfig, config_from_args
from ui.train import _job_config, method_learning_rate


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning", "full", "freeze"])
def test_cli_and_train_tab_build_the_same_job(method, qa_file, tiny_model_dir, data_dir):
    runtime = Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)))
    # The Train tab: choose the method (the learning-rate field follows it), leave the rest as shown.
    ui = _job_config(runtime, [str(qa_file)], False, "qa", False, None, "", "Same", method,
                     method_learning_rate(method), 16, 0, -1, 8, 20, 3, False, False, 0)
    # The CLI: the same choices as flags, no --learning-rate.
    args = build_parser().parse_args(["train", "--data", str(qa_file), "--method", method, "--name", "Same",
                                      "--batch-size", "8", "--eval-steps", "20"])
    cli = config_from_args(args)
    for cfg in (ui, cli):
        cfg.validate()
    ui_fields, cli_fields = dataclasses.asdict(ui), dataclasses.asdict(cli)
    # Uploads are copied into the data folder by the tab; the CLI reads the file where it lies.
    ui_fields.pop("data"), cli_fields.pop("data")
    assert ui_fields == cli_fields
    assert cli.learning_rate == DEFAULT_LEARNING_RATES[method]


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning", "freeze"])
def test_cli_and_train_tab_agree_on_every_choice_a_person_makes(method, qa_file, tiny_model_dir, data_dir):
    """Rank, epochs, batch, evaluation, patience, DoRA, seed and paraphrases chosen, the rate left at the method's
    default: the same job either way, and LoRA's alpha follows the chosen rank in both (alpha = 2 x rank)."""
    runtime = Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)))
    dora = method == "lora"
    ui = _job_config(runtime, [str(qa_file)], False, "qa", False, None, "", "Chosen", method,
                     method_learning_rate(method), 8, 2, -1, 4, 10, 2, dora, False, 7, paraphrases=2)
    flags = ["train", "--data", str(qa_file), "--method", method, "--name", "Chosen", "--lora-r", "8",
             "--epochs", "2", "--batch-size", "4", "--eval-steps", "10", "--early-stopping-patience", "2",
             "--seed", "7", "--augment", "paraphrases:2"] + (["--use-dora"] if dora else [])
    cli = config_from_args(build_parser().parse_args(flags))
    for cfg in (ui, cli):
        cfg.validate()
    ui_fields, cli_fields = dataclasses.asdict(ui), dataclasses.asdict(cli)
    ui_fields.pop("data"), cli_fields.pop("data")
    assert ui_fields == cli_fields
    assert (cli.lora_r, cli.lora_alpha, cli.learning_rate) == (8, 16, DEFAULT_LEARNING_RATES[method])


def test_a_given_learning_rate_is_kept_and_the_saved_config_holds_the_resolved_one(tmp_path):
    cfg = JobConfig(method="ia3", data=[{"path": "x.jsonl"}])
    cfg.validate()
    assert cfg.learning_rate == 3e-3  # not the LoRA default the dataclass used to carry for every method
    cfg.to_yaml(tmp_path / "config.yaml")
    assert JobConfig.from_yaml(tmp_path / "config.yaml").learning_rate == 3e-3
    given = JobConfig(method="ia3", learning_rate=1e-3, data=[{"path": "x.jsonl"}])
    given.validate()
    assert given.learning_rate == 1e-3
