"""`arena compare`: run the strategy comparison headless and write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.cli.output import emit
from assistant.compare.config import CompareConfig
from assistant.compare.evalset import draw_eval_set, load_eval_set
from assistant.compare.recommend import headline
from assistant.compare.report import write_report
from assistant.compare.result import ComparisonResult
from assistant.comparison import resume_comparison, run_comparison
from foundation.errors import ArenaError
from foundation.generation import LOOP_STOP, STOP_ON_LOOP_HELP, check_stop_on_loop
from foundation.metrics import METRIC_LABELS, PRIMARY_METRICS
from foundation.progress_line import percent_line
from foundation.variants import STRATEGIES, VariantConfig


def add_compare_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--eval", dest="eval_file", help="JSONL or CSV with question, answer[, source]")
    src.add_argument("--from-documents", action="store_true",
                     help="draw QA pairs from the ingested documents (held-out sections only)")
    src.add_argument("--resume", type=int, default=None, metavar="RUN",
                     help="continue the interrupted comparison run RUN with its own questions and settings")
    p.add_argument("--adapter", default=None, help="registered adapter for finetuned / rag+finetuned")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help=f"any of {', '.join(STRATEGIES)}, routed (default: all but routed, or those without "
                        "adapter); routed picks per question among the others, cross-validated")
    p.add_argument("--metric", default="f1", choices=PRIMARY_METRICS, help="primary metric (default f1)")
    p.add_argument("--equivalence-margin", dest="equivalence_margin", type=float, default=None, metavar="M",
                   help="practical-equivalence margin in the metric's units: a cheaper variant shown within ±M of "
                        "the leader is recommended (default 0.05 for scores in [0, 1], 0.05 nats for NLL; "
                        "docs/verdict.md)")
    p.add_argument("--report", default=None, help="write Markdown report here (plus .html and .png)")
    p.add_argument("--system-prompt", dest="system_prompt", default=None, help="system prompt of 'prompt'")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None,
                   help="answer length limit (default: 1.5x the 90th percentile of the reference answers' tokens)")
    add_stop_on_loop(p)
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", default="", metavar="local|openai:URL:MODEL",
                   help="LLM judge: grade every answer against the reference (correct / partially / wrong) with "
                        "the local base model or MODEL on an OpenAI-compatible server")
    p.add_argument("--no-forgetting", dest="forgetting", action="store_false",
                   help="skip the general-knowledge forgetting check and the bias probe of the adapter")


def add_stop_on_loop(p: argparse.ArgumentParser) -> None:
    """--stop-on-loop N of ask and compare (docs/decoding.md)."""
    p.add_argument("--stop-on-loop", dest="stop_on_loop", type=int, default=LOOP_STOP, metavar="N",
                   help=STOP_ON_LOOP_HELP)


def default_variants(adapter: str | None) -> tuple[str, ...]:
    return STRATEGIES if adapter else ("base", "prompt", "rag")


def load_items(args, runtime) -> tuple[list, str]:
    """Evaluation items and a name for them, from --eval or drawn from the documents."""
    if args.eval_file:
        items, name = load_eval_set(Path(args.eval_file)), Path(args.eval_file).name
    else:
        trained = runtime.registry.training_questions(args.adapter) if args.adapter else []
        items, _ = draw_eval_set(runtime.store.sections(), exclude_questions=trained, seed=args.seed)
        name = "drawn from documents"
    return (items[: args.limit] if args.limit else items), name


def variant_config(args):
    """The shared VariantConfig of the chat side, with the CLI's overrides."""
    from dataclasses import replace

    variant_cfg = VariantConfig()
    if args.system_prompt is not None:
        variant_cfg = replace(variant_cfg, system_prompt=args.system_prompt)
    return variant_cfg


def cmd_compare(args: argparse.Namespace, settings) -> int:
    from assistant.runtime import Runtime  # deferred: pulls torch

    check_args(args)
    runtime = Runtime(settings)
    progress = percent_line()  # `42%|####| text · ETA 03:05` on stderr: stdout stays JSON
    if args.resume is not None:
        result = resume_comparison(runtime, args.resume, progress)
    else:
        items, name = load_items(args, runtime)
        compare_cfg = CompareConfig(variants=tuple(args.variants or default_variants(args.adapter)),
                                    metric=args.metric, adapter=args.adapter, seed=args.seed, max_new_tokens=args.max_new_tokens,
                                    stop_on_loop=args.stop_on_loop,
                                    forgetting=args.forgetting, eval_name=name, judge=args.judge,
                                    equivalence_margin=args.equivalence_margin or 0.0)
        result = run_comparison(runtime, items, compare_cfg, variant_cfg=variant_config(args), progress=progress)
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
    check_stop_on_loop(args.stop_on_loop)
