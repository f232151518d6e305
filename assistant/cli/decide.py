"""`arena decide`: documents (+ optional Q/A) to a verdict in one command (registered in assistant/cli/main.py)."""

from __future__ import annotations

import argparse

from assistant.cli.output import emit
from assistant.compare.recommend import Recommendation, headline
from assistant.decide.config import config_from_args
from assistant.decide.progress import DecideCancelled
from assistant.decide.runner import plan_for, run_decide

EXIT_CANCELLED = 3


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
    lines.append(f"report: {result['report']['markdown']} (also .html, .json); comparison run #{result['run_id']}")
    return "\n".join(lines)
