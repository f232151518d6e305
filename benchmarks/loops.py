"""Loop benchmark: answers that degenerate into repetition, with and without the stop on repetition.

Corpus: the Django FAQ from the Django sdist on PyPI (third-party, BSD-3-Clause), fetched and parsed exactly
as benchmarks/decide.py does; held-out questions, few-shot pairs and the tuned retrieval come from a real
`arena decide` run (run_decide, the same code as the CLI) on the bundled SmolLM2-135M with the default
engine. That decide run answers with the new default decoding (GenSettings.stop_on_loop); then, in the same
process and on the same questions, prompts and max new tokens, run_comparison answers again with the stop off
(the old decoding), and optionally with a repetition penalty instead (--penalty, engines' own mechanism).

Prints per variant: the loop share (answers whose word 4-grams are < 60 % distinct, assistant.compare.metrics
.loops) old vs new, how many answers the stop cut, and token F1 old vs new with the paired bootstrap interval
of new - old (assistant.compare.stats.paired_difference). With --adapter-steps N the decide run also trains a
LoRA for N steps (no paraphrases) so finetuned and rag+finetuned are measured too.

The FAQ has 44 question-titled sections, so 70 % of them (whole pages) are held out by default.

Run: .venv/bin/python benchmarks/loops.py [--questions 40] [--eval-fraction 0.7] [--adapter-steps 0] [--penalty 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def decide_run(args, faq: Path, qa: Path):
    """The new decoding, as `arena decide` runs it; returns (runtime, result, stage folder)."""
    from assistant.decide.config import DecideConfig, workspace
    from assistant.decide.runner import run_decide
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    settings = Settings(data_dir=args.data / "arena")
    runtime = Runtime(settings)
    variants = ["base", "prompt", "rag"] + (["finetuned", "rag+finetuned"] if args.adapter_steps else [])
    cfg = DecideConfig(docs=[str(faq)], qa=str(qa), name=f"loops-{args.adapter_steps}", splitter="headers",
                       eval_fraction=args.eval_fraction, limit=args.questions, variants=variants, forgetting=False, augment="",
                       max_steps=args.adapter_steps or -1).resolved()
    started = time.time()
    summary = run_decide(cfg, settings, runtime=runtime, stderr=False)
    folder = workspace(settings.data_dir, cfg.name) / "stages"
    result = json.loads((folder / "compare" / "result.json").read_text())
    print(f"decide ({', '.join(variants)}) {time.time() - started:.0f} s; engine {runtime.engine.name}; "
          f"report {summary['report']['markdown']}", flush=True)
    return runtime, result, folder


def plan(result: dict, folder: Path):
    """(items, VariantConfig, CompareConfig) of the decide comparison: its questions, prompts and settings."""
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from foundation.variants import VariantConfig

    items = [EvalItem(**json.loads(line)) for line in (folder / "evalset" / "eval.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (folder / "evalset" / "train_pairs.jsonl").read_text().splitlines()]
    s = result["settings"]
    cfg = VariantConfig(few_shot=[{"question": p["question"], "answer": p["answer"]} for p in pairs],
                        rag_k=s["rag_k"], rag_mode=s["rag_mode"])
    cc = CompareConfig(variants=tuple(s["variants"]), metric=s["metric"], adapter=s["adapter"], seed=s["seed"],
                       max_new_tokens=s["generation"]["max_new_tokens"], forgetting=False, learned_sample=0,
                       stop_on_loop=s["generation"]["stop_on_loop"])
    return items, cfg, cc


def old_decoding(runtime, result: dict, folder: Path) -> dict:
    """The decide comparison again (run_comparison) on its own questions and prompts, with the stop off."""
    from assistant.compare.runner import run_comparison

    items, cfg, cc = plan(result, folder)
    started = time.time()
    out = run_comparison(runtime, items, replace(cc, stop_on_loop=0), cfg=cfg, store=False)
    print(f"old decoding (stop off) {time.time() - started:.0f} s", flush=True)
    return out


def penalty_decoding(runtime, result: dict, folder: Path, penalty: float) -> dict:
    """The same rows answered with the engine's repetition penalty instead of the stop (text metrics only)."""
    from assistant.compare.metrics import loops, token_f1
    from foundation.generation import GenSettings

    items, cfg, cc = plan(result, folder)
    gen = GenSettings(max_new_tokens=cc.max_new_tokens, temperature=0.0, seed=cc.seed, repetition_penalty=penalty,
                      stop_on_loop=0)
    started = time.time()
    answers = runtime.arena.ask_many([it.question for it in items], list(cc.variants), replace(cfg, adapter=cc.adapter),
                                     gen)
    print(f"repetition penalty {penalty:g} {time.time() - started:.0f} s", flush=True)
    return {"variants": list(cc.variants), "per_question": [
        {"answers": {v: {"text": a[v].text, "scores": {"f1": token_f1(a[v].text, it.answer), "loops": loops(a[v].text)}}
                     for v in cc.variants}} for it, a in zip(items, answers, strict=True)]}


def column(result: dict, variant: str, key: str) -> list:
    return [q["answers"][variant]["scores"][key] if key != "text" else q["answers"][variant]["text"]
            for q in result["per_question"]]


def table(old: dict, new: dict, labels: tuple[str, str]) -> list[str]:
    """Per variant: loop share old/new, answers the stop cut, F1 old/new and the paired new - old interval."""
    from assistant.compare.stats import paired_difference

    a, b = labels
    n = len(new["per_question"])
    lines = [f"{'variant':<14} {'loops ' + a:>11} {'loops ' + b:>11} {'cut':>4} {'F1 ' + a:>8} {'F1 ' + b:>8}  "
             f"{b} - {a} F1 [95 % paired CI]"]
    for v in new["variants"]:
        lo, ln = column(old, v, "loops"), column(new, v, "loops")
        fo, fn = column(old, v, "f1"), column(new, v, "f1")
        cut = sum(len(t_new) < len(t_old) for t_new, t_old in zip(column(new, v, "text"), column(old, v, "text"),
                                                                   strict=True))
        d = paired_difference(fn, fo)
        lines.append(f"{v:<14} {int(sum(lo)):>5}/{n:<5} {int(sum(ln)):>5}/{n:<5} {cut:>4} {sum(fo) / n:>8.3f} "
                     f"{sum(fn) / n:>8.3f}  {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    return lines


def main() -> None:
    from benchmarks.decide import faq_pairs, fetch_faq

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=40, help="at most N held-out questions scored")
    p.add_argument("--eval-fraction", dest="eval_fraction", type=float, default=0.7,
                   help="share of the FAQ's 44 pairs held out (whole pages); the rest are few-shot/training pairs")
    p.add_argument("--adapter-steps", dest="adapter_steps", type=int, default=0,
                   help="also train a LoRA for N steps and measure finetuned, rag+finetuned (0 = no adapter)")
    p.add_argument("--penalty", type=float, default=0.0,
                   help="also answer with this repetition penalty and the stop off (0 = skip)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "arena-bench-loops")
    args = p.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    faq = fetch_faq(args.data)
    pairs = faq_pairs(faq)
    qa = args.data / "faq-qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    print(f"Django FAQ (BSD-3-Clause): {len(pairs)} Q/A pairs; CPU: {cpu_name()}", flush=True)
    runtime, new, folder = decide_run(args, faq, qa)
    old = old_decoding(runtime, new, folder)
    gen = new["settings"]["generation"]
    print(f"\n{len(new['per_question'])} held-out questions, max new tokens {gen['max_new_tokens']}, greedy; "
          f"old = stop off, new = stop_on_loop {gen['stop_on_loop']}")
    print("\n".join(table(old, new, ("old", "new"))), flush=True)
    if args.penalty:
        pen = penalty_decoding(runtime, new, folder, args.penalty)
        print(f"\nrepetition penalty {args.penalty:g} (stop off) vs old:")
        print("\n".join(table(old, pen, ("old", "pen"))), flush=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    return "unknown"


if __name__ == "__main__":
    main()
