"""`arena decide`: documents (+ optional Q/A) to a verdict in one command (registered in assistant/cli/main.py)."""

from __future__ import annotations

import argparse

from assistant.cli.flags import config_flags
from assistant.cli.output import emit
from assistant.compare.recommend import Recommendation, headline
from assistant.decide.config import DecideConfig, config_from_args
from assistant.decide.progress import DecideCancelled
from assistant.decide.runner import plan_for, run_decide
from assistant.decide.timings import StageTimings

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
    emit(args, result, summary_text(result))
    return 0


def summary_text(result: dict) -> str:
    rec = Recommendation.from_dict(result["recommendation"])  # the decide summary holds it as JSON
    lines = [f"recommendation: {headline(rec)} — {rec.reason}"]
    for variant, s in result.get("seeds", {}).items():
        if s.get("seeds", 0) > 1:
            lines.append(f"  {variant} across {s['seeds']} seeds: {s['mean']:.3f} ± {s['sd']:.3f}")
    timing = [f"{s['stage']} " + ("cached" if s["cached"] else f"{s['seconds']:.0f} s") for s in result["stages"]]
    lines.append("stages: " + ", ".join(timing))
    if result.get("timings"):
        lines.append(f"time: {StageTimings.from_dict(result['timings']).headline()}")
    lines.append(f"report: {result['report']['markdown']} (also .html, .json); comparison run #{result['run_id']}")
    return "\n".join(lines)
