"""`arena compare`: run the strategy comparison headless and write the report."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from assistant.cli.flags import config_flags
from assistant.cli.output import emit
from assistant.compare.config import CompareConfig
from assistant.compare.recommend import headline
from assistant.compare.report import write_report
from assistant.compare.result import ComparisonResult
from assistant.comparison import eval_items, resume_comparison, run_comparison
from foundation.errors import ArenaError
from foundation.generation import check_stop_on_loop
from foundation.metrics import METRIC_LABELS
from foundation.progress_line import percent_line
from foundation.variants import STRATEGIES, VariantConfig

# The settings with a flag of their own, derived from the field (type, default, help); the others are set by the
# run (eval_name), kept at their defaults (the probes' margins and sample) or, for variants, hand-written below.
FLAG_FIELDS = tuple(f.name for f in fields(CompareConfig) if "help" in f.metadata)


def add_compare_args(p: argparse.ArgumentParser) -> None:
    """The question source and the outputs (the FLAG_FIELDS settings come from compare_config_flags). --variants
    stays hand-written: HfArgumentParser turns a tuple[str, ...] field into one value split into characters, and
    its default depends on --adapter."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--eval", dest="eval_file", help="JSONL or CSV with question, answer[, source]")
    src.add_argument("--from-documents", action="store_true",
                     help="draw QA pairs from the ingested documents (held-out sections only)")
    src.add_argument("--resume", type=int, default=None, metavar="RUN",
                     help="continue the interrupted comparison run RUN with its own questions and settings")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help=f"any of {', '.join(STRATEGIES)}, routed (default: all but routed, or those without "
                        "adapter); routed picks per question among the others, cross-validated")
    p.add_argument("--report", default=None, help="write Markdown report here (plus .html and .png)")
    p.add_argument("--system-prompt", dest="system_prompt", default=None, help="system prompt of 'prompt'")
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions")


def compare_config_flags() -> argparse.ArgumentParser:
    """The FLAG_FIELDS flags, derived from CompareConfig (assistant/cli/flags.py), as a parent parser."""
    return config_flags(CompareConfig, skip=tuple(f.name for f in fields(CompareConfig) if f.name not in FLAG_FIELDS))


def compare_config(args: argparse.Namespace) -> CompareConfig:
    """CompareConfig from the flags actually given (the others keep the field's default)."""
    given = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    default = STRATEGIES if given.get("adapter") else ("base", "prompt", "rag")  # the adapter variants need one
    return CompareConfig(**given, variants=tuple(args.variants or default))


def cmd_compare(args: argparse.Namespace, settings) -> int:
    from assistant.runtime import Runtime  # deferred: pulls torch

    check_args(args)
    runtime = Runtime(settings)
    progress = percent_line()  # `42%|####| text · ETA 03:05` on stderr: stdout stays JSON
    if args.resume is not None:
        result = resume_comparison(runtime, args.resume, progress)
    else:
        compare_cfg = compare_config(args)
        items, compare_cfg.eval_name = eval_items(runtime, args.eval_file, compare_cfg.adapter, compare_cfg.seed,
                                                  args.limit or 0)
        variant_cfg = VariantConfig() if args.system_prompt is None else VariantConfig(system_prompt=args.system_prompt)
        result = run_comparison(runtime, items, compare_cfg, variant_cfg=variant_cfg, progress=progress)
    progress.close()
    report = {k: str(v) for k, v in write_report(result, Path(args.report)).items()} if args.report else None
    emit(args, {**result.to_dict(), **({"report": report} if report else {})}, summary_text(result, report))
    return 0


def summary_text(result: ComparisonResult, report: dict | None = None) -> str:
    """A short human summary: primary metric per variant, the recommendation, warnings and the report files."""
    rec, metric = result.recommendation, result.metric
    lines = [f"{METRIC_LABELS[metric]} (mean [95 % CI]):"]
    for name, summary in result.variants.items():
        s = summary.get(metric)
        if s and s.mean is not None:
            lines.append(f"  {name:<14} {s.mean:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]")
    lines.append(f"recommendation: {headline(rec)} — {rec.reason}")
    lines += [f"warning: {w}" for w in result.warnings]
    if report:
        lines.append(f"report: {report['markdown']} and {report['html']}")
    return "\n".join(lines)


def check_args(args) -> None:
    if args.limit is not None and args.limit < 1:
        raise ArenaError(f"--limit must be at least 1, got {args.limit}")
    if args.equivalence_margin is not None and not args.equivalence_margin > 0:
        raise ArenaError(f"--equivalence-margin must be a positive number in the metric's units, got "
                         f"{args.equivalence_margin}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ArenaError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.stop_on_loop is not None:
        check_stop_on_loop(args.stop_on_loop)
