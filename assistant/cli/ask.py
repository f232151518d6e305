"""`arena ask`: one question (or a JSONL file of them) through the chosen variants, printed as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from foundation.errors import ArenaError
from foundation.generation import LOOP_STOP, STOP_ON_LOOP_HELP, GenSettings
from foundation.progress_line import percent_line
from foundation.records import read_questions
from foundation.settings import Settings
from foundation.variants import ADAPTER_VARIANTS, VARIANTS, VariantConfig, parse_variants

DEFAULT_VARIANTS = ",".join(VARIANTS)


def add_ask_arguments(p: argparse.ArgumentParser) -> None:
    """The `ask` subcommand's own flags (settings flags are added by the caller)."""
    p.add_argument("question", nargs="?", help="the question (or use --questions FILE.jsonl)")
    p.add_argument("--questions", type=Path, help='JSONL file, one {"question": ...} per line')
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of {DEFAULT_VARIANTS}")
    p.add_argument("--adapter", default=None, help="adapter for finetuned / rag+finetuned")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", dest="top_p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0)
    p.add_argument("--stop-on-loop", dest="stop_on_loop", type=int, default=LOOP_STOP, metavar="N",
                   help=STOP_ON_LOOP_HELP)
    p.add_argument("--system-prompt", dest="system_prompt", default=None, help="prompt variant's system prompt")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    """Answer with every chosen variant; one JSON object per question, in order."""
    from assistant.runtime import Runtime  # deferred: pulls torch (`arena --help` stays light)

    if bool(args.question) == bool(args.questions):
        raise ArenaError("give either a QUESTION or --questions FILE.jsonl (exactly one)")
    questions = read_questions(args.questions) if args.questions else [args.question]
    variants = parse_variants(args.variants)
    asked_for = ADAPTER_VARIANTS.intersection(variants) if args.variants != DEFAULT_VARIANTS else set()
    if asked_for and not args.adapter:  # the default list answers the others and notes the adapter ones
        raise ArenaError(f"{' and '.join(sorted(asked_for))} need an adapter: pass --adapter NAME "
                         "(`arena adapters` lists them)")
    gen = GenSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed, args.repetition_penalty,
                      args.stop_on_loop)
    cfg = VariantConfig(adapter=args.adapter)
    if args.system_prompt is not None:
        cfg.system_prompt = args.system_prompt
    arena = Runtime(settings).arena
    done: dict[int, dict] = {}
    printed = 0

    def on_answer(index: int, answers: dict) -> None:
        """Print finished questions in input order as soon as every earlier one is printed too."""
        nonlocal printed
        done[index] = answers
        while printed in done:
            data = {name: answer.to_json() for name, answer in done.pop(printed).items()}
            print(json.dumps(data) if args.json else _text(questions[printed], data), flush=True)
            printed += 1

    # All questions' rows go to the engine at once (it keeps a pool of rows in flight across questions).
    # stderr, with ETA; stdout stays one JSON object per question with --json
    line = percent_line() if len(questions) > 1 else None
    arena.ask_many(questions, variants, cfg, gen, on_answer=on_answer,
                   progress=(lambda n, total: line(n / total, f"answered {n}/{total} questions")) if line else None)
    if line:
        line.close()
    return 0


def _text(question: str, data: dict) -> str:
    lines = [f"Q: {question}"]
    for name, a in data.items():
        stats = f"{a['tokens']} tokens, {a['tokens_per_s']} tok/s, first token {a['ttft_s']} s"
        lines.append(f"\n[{name}] " + (f"({a['error']})" if a["error"] else f"({stats})"))
        lines += [f"  note: {a['notice']}"] if a["notice"] else []
        lines += [a["answer"]] if not a["error"] else []
        lines += [f"  [{i}] {s['citation']} (score {s['score']})" for i, s in enumerate(a["sources"], 1)]
    return "\n".join(lines)
