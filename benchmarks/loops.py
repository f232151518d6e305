"""Loop benchmark: answers that degenerate into repetition, with and without the stop on repetition.

Corpus: the Django FAQ from the Django sdist on PyPI (third-party, BSD-3-Clause), fetched and parsed exactly
as benchmarks/decide.py does. The held-out questions, the prompt variant's few-shot pairs and the RAG
variant's tuned splitter, k and search mode come from `arena decide`'s own first stages (ingest, evalset,
retrieval; cached in the workspace). Then the base, prompt and rag variants answer those questions on the
bundled SmolLM2-135M with the default engine, as the comparison does (greedy, max new tokens sized from the
references): first with the stop off (the old decoding), then with the default GenSettings.stop_on_loop;
optionally (--penalty) with the engine's repetition penalty instead of the stop.

Prints per variant: the loop share (answers whose word 4-grams are < 60 % distinct, foundation.metrics
.loops) old vs new, how many answers the stop cut, and token F1 old vs new with the paired bootstrap interval
of new - old (assistant.compare.bootstrap.paired_difference). The adapter variants are not run (training one
costs more than this benchmark on a 2-core machine); the stop is the same code for every variant.

The FAQ has 44 question-titled sections, so 70 % of them (whole pages) are held out by default.

Run: .venv/bin/python benchmarks/loops.py [--questions 40] [--eval-fraction 0.7] [--penalty 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def decide_setup(args, faq: Path, qa: Path):
    """`arena decide`'s own first stages (ingest, held-out split, retrieval tuning; cached in the workspace):
    (runtime, held-out items, the VariantConfig the decide comparison serves)."""
    from assistant.decide.config import DecideConfig
    from assistant.decide.progress import CANCEL_FILE, Reporter
    from assistant.decide.stages import DecideRun
    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from foundation.variants import VariantConfig, check_few_shot

    settings = Settings(data_dir=args.data / "arena")
    runtime = Runtime(settings)
    cfg = DecideConfig(docs=[str(faq)], qa=str(qa), name="loops", splitter="headers",
                       eval_fraction=args.eval_fraction, variants=["base", "prompt", "rag"]).resolved()
    decide_run = DecideRun(cfg, settings, runtime)
    decide_run.folder.mkdir(parents=True, exist_ok=True)
    (decide_run.folder / CANCEL_FILE).unlink(missing_ok=True)  # a killed earlier run's cancel request
    rep = Reporter(decide_run.folder, {}, stderr=False)
    ingest = decide_run.cache.run("ingest", decide_run.keys["ingest"], lambda tmp: decide_run.ingest(rep, tmp))[0]
    decide_run.cache.run("evalset", decide_run.keys["evalset"],
                         lambda tmp: decide_run.evalset(rep, tmp, ingest.sources))
    got = decide_run.cache.run("retrieval", decide_run.keys["retrieval"],
                               lambda tmp: decide_run.retrieval(rep, tmp))[0]
    folder = decide_run.cache.folder("evalset")
    items = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()][: args.questions]
    pairs = [json.loads(line) for line in (folder / "train_pairs.jsonl").read_text().splitlines()]
    # as assistant/decide/comparison.run_compare serves the variants: dynamic few-shot, the tuned retrieval
    vcfg = VariantConfig(few_shot=check_few_shot([{"question": p["question"], "answer": p["answer"]} for p in pairs]),
                         rag_k=got.k, rag_mode=got.mode)
    return runtime, items, vcfg


def answer(runtime, items: list[dict], variants: list[str], vcfg, stop_on_loop: int, penalty: float = 1.0) -> dict:
    """Every variant's answer to every item, scored (token F1, loops), as run_comparison generates them: greedy,
    max new tokens sized from the references (foundation.variants.max_new_tokens_for)."""
    from foundation.generation import GenSettings
    from foundation.metrics import loops, token_f1
    from foundation.variants import max_new_tokens_for

    engine = runtime.engine
    gen = GenSettings(max_new_tokens=max_new_tokens_for([it["answer"] for it in items], engine.count_tokens),
                      temperature=0.0, top_p=1.0, seed=0, repetition_penalty=penalty, stop_on_loop=stop_on_loop)
    started = time.time()
    answers = runtime.arena.ask_many([it["question"] for it in items], variants, vcfg, gen)
    print(f"answered {len(items)} x {len(variants)} with stop_on_loop {stop_on_loop}, penalty {penalty:g}: "
          f"{time.time() - started:.0f} s ({engine.name}, max new tokens {gen.max_new_tokens})", flush=True)
    return {"variants": variants, "per_question": [
        {"answers": {v: {"text": a[v].text, "scores": {"f1": token_f1(a[v].text, it["answer"]),
                                                        "loops": loops(a[v].text)}} for v in variants}}
        for it, a in zip(items, answers, strict=True)]}


def column(result: dict, variant: str, key: str) -> list:
    return [q["answers"][variant]["scores"][key] if key != "text" else q["answers"][variant]["text"]
            for q in result["per_question"]]


def table(old: dict, new: dict, labels: tuple[str, str]) -> list[str]:
    """Per variant: loop share old/new, answers the stop cut, F1 old/new and the paired new - old interval."""
    from assistant.compare.bootstrap import paired_difference

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
    from benchmarks.faq_corpora import faq_pairs, fetch_corpus
    from foundation.generation import LOOP_STOP

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=40, help="at most N held-out questions")
    p.add_argument("--eval-fraction", dest="eval_fraction", type=float, default=0.7,
                   help="share of the FAQ's 44 pairs held out (whole pages); the rest are the few-shot pairs")
    p.add_argument("--penalty", type=float, default=0.0,
                   help="also answer with this repetition penalty and the stop off (0 = skip)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "arena-bench-loops")
    args = p.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    faq = fetch_corpus("django", args.data)
    pairs = faq_pairs(faq)
    qa = args.data / "faq-qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    print(f"Django FAQ (BSD-3-Clause): {len(pairs)} Q/A pairs; CPU: {cpu_name()}", flush=True)
    runtime, items, vcfg = decide_setup(args, faq, qa)
    variants = ["base", "prompt", "rag"]
    old = answer(runtime, items, variants, vcfg, stop_on_loop=0)
    (args.data / "old.json").write_text(json.dumps(old))  # the answers, to read them
    new = answer(runtime, items, variants, vcfg, stop_on_loop=LOOP_STOP)
    (args.data / "new.json").write_text(json.dumps(new))
    print(f"\n{len(items)} held-out questions, greedy; old = stop off, new = stop_on_loop {LOOP_STOP}")
    print("\n".join(table(old, new, ("old", "new"))), flush=True)
    if args.penalty:
        pen = answer(runtime, items, variants, vcfg, stop_on_loop=0, penalty=args.penalty)
        print(f"\nrepetition penalty {args.penalty:g} (stop off) vs old:")
        print("\n".join(table(old, pen, ("old", "pen"))), flush=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    return "unknown"


if __name__ == "__main__":
    main()
