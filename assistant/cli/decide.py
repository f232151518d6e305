"""`arena decide`: documents (+ optional Q/A) to a verdict in one command (registered in assistant/cli/main.py)."""

from __future__ import annotations

import argparse

from assistant.cli.flags import config_flags
from assistant.cli.output import emit
from assistant.compare.recommend import headline
from assistant.decide.config import DecideConfig, config_from_args
from assistant.decide.progress import DecideCancelled
from assistant.decide.result import DecideResult
from assistant.decide.runner import plan_for, run_decide

EXIT_CANCELLED = 3


def decide_config_flags() -> argparse.ArgumentParser:
    """`arena decide`'s flags: one per DecideConfig setting (each overrides the --config YAML value when given)
    but the documents, which are its positional arguments (add_decide_args)."""
    return config_flags(DecideConfig, skip=("docs",))


def add_decide_args(p: argparse.ArgumentParser) -> None:
    """`arena decide DOCS... [--config FILE] [--plan]`, plus decide_config_flags."""
    p.add_argument("docs", nargs="*", help="document files or folders (folders recurse)")
    p.add_argument("--config", default=None, help="decide YAML (flags override its values)")
    p.add_argument("--plan", action="store_true", help="print the plan (stages, counts, minutes) and stop")


def cmd_decide(args: argparse.Namespace, settings) -> int:
    cfg = config_from_args(args)
    if args.plan:
        plan = plan_for(cfg, settings)
        emit(args, plan.to_dict(), plan.text())
        return 0
    try:
        result = run_decide(cfg, settings, stderr=not args.json)
    except DecideCancelled as exc:
        emit(args, {"state": "cancelled", "message": str(exc)}, f"cancelled: {exc}")
        return EXIT_CANCELLED
    emit(args, result.to_dict(), summary_text(result))
    return 0


def summary_text(result: DecideResult) -> str:
    rec = result.compare.recommendation
    lines = [f"recommendation: {headline(rec)} — {rec.reason}"]
    lines += [f"  {variant} across {s['seeds']} seeds: {s['mean']:.3f} ± {s['sd']:.3f}"
              for variant, s in result.compare.seeds.items() if s.get("seeds", 0) > 1]
    timing = [f"{s.stage} " + ("cached" if s.cached else f"{s.seconds:.0f} s") for s in result.stages]
    lines += ["stages: " + ", ".join(timing), f"time: {result.timings.headline()}",
              f"report: {result.report.markdown} (also .html, .json); comparison run #{result.compare.run_id}"]
    return "\n".join(lines)
