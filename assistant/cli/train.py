"""`arena train` and `arena adapters` command implementations (registered in assistant/cli/main.py)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from assistant.cli.flags import config_flags, numbers
from assistant.cli.output import emit
from foundation.errors import ArenaError
from foundation.paths import confine
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from training.config import DOC_KINDS, MAX_TRIALS, JobConfig, config_from_args
from training.doc_questions import QUESTIONS


def train_config_flags() -> argparse.ArgumentParser:
    """`arena train`'s flags for the JobConfig settings (each overrides the YAML value when given), except the
    data sources and the sweep, whose flags have a shape of their own (add_train_flags)."""
    return config_flags(JobConfig, skip=("data", "sweep", "job_id"))


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """`arena train [CONFIG] ...`: the job YAML, the data sources and the sweep."""
    p.add_argument("config", nargs="?", help="job YAML (flags below override its values)")
    p.add_argument("--data", action="append", default=None, metavar="FILE[:WEIGHT]",
                   help="training file (.jsonl/.json/.csv); repeat to mix with weights")
    p.add_argument("--from-documents", choices=DOC_KINDS, action="append", default=None,
                   help="build data from the ingested documents")
    p.add_argument("--generator", default=None, metavar="SPEC",
                   help="--from-documents qa/grounded: questions written by a model (base, a local model id or "
                        "folder, or openai:URL:MODEL), filtered as decide does; default: a heading/definition "
                        "heuristic")
    p.add_argument("--questions", type=int, default=None, metavar="N",
                   help=f"questions the --generator writes (default {QUESTIONS})")
    p.add_argument("--from-votes", action="store_true",
                   help="preference pairs from chat votes (for dpo and reward; their questions are rloo prompts)")
    p.add_argument("--distill", metavar="QUESTIONS", default=None,
                   help="file of questions (one per line): the RAG variant's answers become targets")
    p.add_argument("--resume", action="store_true", help="continue the job from its last checkpoint")
    p.add_argument("--sweep-lr", dest="sweep_lr", type=numbers(float), nargs="+", default=None, metavar="LR",
                   help="sweep these learning rates (comma- or space-separated, e.g. 1e-4,3e-4)")
    p.add_argument("--sweep-rank", "--sweep-r", dest="sweep_r", type=numbers(int), nargs="+", default=None,
                   metavar="R", help=f"sweep these LoRA ranks (e.g. 4,8); at most {MAX_TRIALS} combinations")


def _resolve_config(args: argparse.Namespace, settings: Settings) -> JobConfig:
    """A job folder (or its id) with --resume means its saved config.yaml."""
    if args.config and not Path(args.config).suffix:
        folder = Path(args.config)
        try:
            given = folder.is_dir()
        except OSError:  # e.g. a name longer than the file system allows: then it is a job id
            given = False
        if not given:  # a job id: one entry of <data_dir>/jobs, whatever was typed
            folder = confine(Path(settings.data_dir) / "jobs", args.config, "job id")
        if not (folder / "config.yaml").is_file():
            raise ArenaError(f"{args.config}: not a YAML file nor a job folder with config.yaml")
        args.config = str(folder / "config.yaml")
    return config_from_args(args)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    # deferred: these pull torch, transformers and peft
    from assistant.runtime import Runtime
    from training.job import run_job
    from training.runner import is_main_process

    cfg = _resolve_config(args, settings)
    # Lazy: the model and the document index load only if a data source needs them.
    result = run_job(cfg, settings, resume=args.resume, tools=Runtime(settings).data_tools(), progress=True)
    if not is_main_process():
        return 0  # under torchrun/accelerate only rank 0 reports
    if result["state"] == "cancelled":
        emit(args, result, f"cancelled at step {result['step']}; checkpoint saved. Resume with: "
                           f"arena train {result['job_dir']} --resume")
        return 0
    m = result.get("metrics", {})
    text = (f"adapter {result.get('adapter')} saved to {result.get('path')}\n"
            f"steps {m.get('steps')} · train loss {_format_metric(m.get('train_loss'))} · "
            f"val loss {_format_metric(m.get('val_loss'))} · "
            f"{_format_metric(m.get('tokens_per_s'))} tokens/s · {_format_metric(m.get('train_seconds'))} s")
    if "sweep" in result:
        text = sweep_table(result["sweep"]) + "\n" + text
    emit(args, result, text)
    return 0


def _format_metric(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def sweep_table(rows: list[dict]) -> str:
    lines = ["learning_rate  lora_r  val_loss  best"]
    lines += [f"{r['learning_rate']:<14g} {r['lora_r']:<7} {_format_metric(r['val_loss']):<9} "
              f"{'*' if r['best'] else ''}" for r in rows]
    return "\n".join(lines)


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    reg = AdapterRegistry(settings.data_dir)
    if args.action != "list":
        _need(args.target, f"adapters {args.action} needs an adapter name")
    if args.action == "delete":
        reg.delete(args.target)
        emit(args, {"deleted": args.target}, f"deleted {args.target}")
    elif args.action == "rename":
        info = reg.rename(args.target, _need(args.new, "rename needs a NEW name"))
        emit(args, {"renamed": args.target, "to": info.name}, f"renamed {args.target} -> {info.name}")
    elif args.action == "export":
        out = reg.merge_export(args.target, Path(_need(args.out, "export needs --out FOLDER")), settings)
        emit(args, {"exported": args.target, "path": str(out)}, f"merged {args.target} into {out}")
    else:
        infos = reg.list()
        data = [{**asdict(i), "path": str(i.path)} for i in infos]
        rows = [f"{i.name:<24} {i.method:<14} {_format_metric(i.metrics.get('val_loss')):<8} "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(i.created))}" for i in infos]
        emit(args, data, "\n".join(["name                     method         val_loss created"] + rows)
             if rows else "no adapters yet (arena train ...)")
    return 0


def _need(value, message: str):
    if not value:
        raise ArenaError(message)
    return value


def add_adapters_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "delete", "rename", "export"])
    p.add_argument("target", nargs="?", help="adapter name")
    p.add_argument("new", nargs="?", help="new name (rename)")
    p.add_argument("--out", default=None, help="export folder (merge-and-export)")
