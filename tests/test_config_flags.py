"""Job configs on libraries: flags derived from the dataclass fields, values checked by pydantic, errors named."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from assistant.cli.main import build_parser, main
from assistant.decide.config import DecideConfig
from assistant.decide.config import config_from_args as decide_config
from foundation.errors import ArenaError
from training.config import JobConfig, config_from_args

ROOT = Path(__file__).resolve().parents[1]


def _options(command: str) -> set[str]:
    parser = build_parser()
    parser.parse_args([command])  # a command's flags are added when it parses (assistant/cli/main.py)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}


@pytest.mark.parametrize("command,cls,own_shape", [("train", JobConfig, {"data", "sweep", "job_id"}),
                                                   ("decide", DecideConfig, {"docs"})])
def test_every_setting_has_its_flag(command, cls, own_shape):
    options = _options(command)
    for f in fields(cls):
        if f.name not in own_shape:
            assert "--" + f.name.replace("_", "-") in options, f.name
    assert {"--no-keep-best", "--sweep-rank", "--from-documents"} <= options if command == "train" else \
        {"--no-grounded", "--no-tune-retrieval", "--no-forgetting", "--plan", "--config"} <= options


def test_flags_override_the_yaml_only_where_given(tmp_path):
    (tmp_path / "job.yaml").write_text("lora_r: 8\nuse_dora: true\nbf16: false\ndata: [{path: a.jsonl}]\n")
    args = build_parser().parse_args(["train", str(tmp_path / "job.yaml"), "--lora-r", "4", "--no-keep-best",
                                      "--bf16"])
    cfg = config_from_args(args)
    assert (cfg.lora_r, cfg.use_dora, cfg.keep_best, cfg.bf16, cfg.batch_size) == (4, True, False, "on", 8)
    assert cfg.data == [{"path": "a.jsonl"}]
    kept = config_from_args(build_parser().parse_args(["train", str(tmp_path / "job.yaml")]))
    assert (kept.lora_r, kept.keep_best, kept.bf16) == (8, True, "off")  # older true/false read as on/off


def test_a_bad_flag_value_is_named_with_its_value():
    args = build_parser().parse_args(["train", "--data", "a.jsonl", "--lora-dropout", "1.5", "--lora-r", "0"])
    with pytest.raises(ArenaError, match="lora_r must be greater than or equal to 1, got 0; "
                                         "lora_dropout must be less than 1, got 1.5"):
        config_from_args(args).validate()
    with pytest.raises(SystemExit):  # a choice argparse knows from the Literal type
        build_parser().parse_args(["train", "--method", "magic"])
    # before: trained (and registered) at a learning rate of 1e9, and read --max-steps -5 as "the plan"
    args = build_parser().parse_args(["train", "--data", "a.jsonl", "--learning-rate", "1e9", "--max-steps", "-5"])
    with pytest.raises(ArenaError, match="learning_rate must be less than or equal to 1, got 1000000000.0; "
                                         "max_steps must be greater than or equal to -1, got -5"):
        config_from_args(args).validate()
    args = build_parser().parse_args(["train", "--data", "a.jsonl", "--max-steps", "999999999999", "--epochs",
                                      "5000"])
    with pytest.raises(ArenaError, match="epochs must be less than or equal to 1000, got 5000.0; max_steps must be "
                                         "less than or equal to 1000000, got 999999999999"):
        config_from_args(args).validate()
    args = build_parser().parse_args(["train", "--data", "a.jsonl", "--sweep-lr", "1e-4,2"])
    with pytest.raises(ArenaError, match="sweep.learning_rate.1 must be less than or equal to 1, got 2.0"):
        config_from_args(args).validate()


def test_a_bad_yaml_is_refused_naming_the_file_the_setting_and_the_value(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("val_fraction: 1\naugment: synonyms:3\n")
    with pytest.raises(ArenaError, match="augment 'synonyms:3': use paraphrases:K"):
        JobConfig.from_yaml(path)
    path.write_text("val_fraction: 1\nname: 2024\nlearning_rate: 1e-4\n")
    with pytest.raises(ArenaError, match="job.yaml: val_fraction must be less than 1, got 1"):
        JobConfig.from_yaml(path)
    path.write_text("name: 2024\nlearning_rate: 1e-4\ndata: x.jsonl\n")
    with pytest.raises(ArenaError, match="job.yaml: data must be a valid list, got 'x.jsonl'"):
        JobConfig.from_yaml(path)
    path.write_text("name: 2024\nlearning_rate: 1e-4\n")  # YAML 1.1 reads 1e-4 as text
    assert (JobConfig.from_yaml(path).name, JobConfig.from_yaml(path).learning_rate) == ("2024", 1e-4)


def test_decide_flags_and_their_errors(tmp_path, capsys):
    doc = tmp_path / "faq.md"
    doc.write_text("# FAQ\n\n## Q?\n\nA.\n")
    cfg = decide_config(build_parser().parse_args(["decide", str(doc), "--seeds", "2", "--no-grounded",
                                                   "--variants", "rag", "base", "--budget-minutes", "5"]))
    assert (cfg.seeds, cfg.grounded, cfg.variants, cfg.budget_minutes, cfg.augment) == \
        (2, False, ["rag", "base"], 5.0, "paraphrases:5")
    auto = decide_config(build_parser().parse_args(["decide", str(doc)]))
    fitted = decide_config(build_parser().parse_args(["decide", str(doc), "--budget-minutes", "0"]))
    assert (auto.seeds, fitted.seeds) == (3, 1)  # --seeds 0, the default: up to 3 under a budget, 1 without
    assert main(["decide", str(doc), "--seeds", "11", "--data-dir", str(tmp_path / "d")]) == 2
    assert "seeds must be less than or equal to 10, got 11" in capsys.readouterr().err
    (tmp_path / "d.yaml").write_text(f"docs: [{doc}]\nvariants: [rag, oracle]\n")
    assert main(["decide", "--config", str(tmp_path / "d.yaml"), "--data-dir", str(tmp_path / "d")]) == 2
    assert "unknown variant(s) ['oracle']" in capsys.readouterr().err


def _help_and_imports(*argv: str) -> tuple[str, bool]:
    """`arena ARGV --help` in a fresh interpreter: its help text, and whether transformers was imported."""
    code = ("import sys\nfrom assistant.cli.main import main\ntry:\n    main(sys.argv[1:] + ['--help'])\n"
            "except SystemExit:\n    pass\nprint('transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    text, _, imported = proc.stdout.rstrip().rpartition("\n")
    return text, imported == "True"


def test_a_command_builds_only_its_own_flags():
    # train's flags come from JobConfig through transformers (~2 s to import): another command never pays for it
    text, imported = _help_and_imports("ingest")
    assert "--chunk-size" in text and "--lora-r" not in text and not imported
    text, imported = _help_and_imports("train")
    assert "JobConfig settings (each overrides the YAML value when given)" in text and imported
    assert "--lora-r" in text and "--no-keep-best" in text and "--data" in text


def test_both_job_configs_save_and_load_through_one_yaml_file(tmp_path):
    path = tmp_path / "saved.yaml"
    for cfg in (JobConfig(name="x", lora_r=4, data=[{"path": "a.jsonl"}]), DecideConfig(docs=["a.md"], seeds=2)):
        cfg.to_yaml(path)
        assert type(cfg).from_yaml(path) == cfg
    path.write_text("docs: [a.md]\nseeds: -1\n")
    with pytest.raises(ArenaError, match="saved.yaml: seeds must be greater than or equal to 0, got -1"):
        DecideConfig.from_yaml(path)
