"""Answers per minute of a comparison on the bundled model: per-question torch loops vs batching vs onnx.

Run: .venv/bin/python benchmarks/compare_throughput.py [--questions 40] [--torch-questions 8] [--tokens 128]

A real comparison workload: the espresso-machine FAQ (benchmarks/retrieval_faq.py) ingested into a real
document store, its evaluation questions plus its titles as questions, five variants (base, prompt, rag,
finetuned, rag+finetuned with an r16 LoRA on every projection), greedy, `--tokens` new tokens, all in one
process on this machine. Rows (prompt token ids) are built once by the Arena and given to every engine:
  old loop      the engine before this change (batched LoRA hooks, packed linears), one question at a time,
                run from `git archive --old-rev` in a subprocess, with every core and (--old-one-thread) also
                with one thread, as it ran in a comparison before the thread fix (a search left it on one core)
  torch loop    the torch reference engine, one question at a time
  torch batched peft `generate(adapter_names=...)`, 8 rows per call sorted by length (left padding)
  onnx          onnxruntime-genai (int4 / fp32), every row in one engine call (batches of similar-length rows of
                one adapter; int4 also with one row per generator, for the batching ratio)
The torch modes answer the first --torch-questions questions (their rate is what scales); onnx int4 answers
those and then all --questions. Agreement of int4 with the fp32 torch reference: identical answers and the
per-variant token F1 against the FAQ answers (and whether the best variant stays the same).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.inference import ortgenai  # noqa: E402
from assistant.inference.choose import build_engine  # noqa: E402
from assistant.runtime import Runtime  # noqa: E402
from benchmarks.retrieval_faq import ENTRIES  # noqa: E402
from foundation import metrics as M  # noqa: E402
from foundation.generation import GenSettings, Row  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from foundation.variants import VariantConfig  # noqa: E402

VARIANTS = ["base", "prompt", "rag", "finetuned", "rag+finetuned"]
# Runs inside the archived tree of --old-rev: the module paths are that revision's, not today's.
OLD_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[3]))
from assistant.engine import Engine, GenSettings, Row
from assistant.models import load_model
from assistant.settings import Settings
job = json.load(open(sys.argv[2]))
engine = Engine(load_model(Settings(model=job["model"], dtype="float32", device="cpu")))
engine.load_adapter("bench", job["adapter"])
gen, out, start = GenSettings(max_new_tokens=job["tokens"]), [], time.perf_counter()
for rows in job["questions"]:
    out += [o.text for o in engine.generate([Row(ids, a) for ids, a in rows], gen)]
print(json.dumps({"seconds": time.perf_counter() - start, "texts": out}))
"""


def workload(n: int) -> list[tuple[str, str]]:
    """(question, reference answer): the FAQ's evaluation questions, then its titles, repeated as needed."""
    pairs = [(eq, ans) for _, _, eq, ans in ENTRIES] + [(title, ans) for title, _, _, ans in ENTRIES]
    return (pairs * (n // len(pairs) + 1))[:n]


def setup(work: Path, models_dir: Path) -> Runtime:
    """A data dir with the FAQ ingested and a registered LoRA adapter; the model cache is shared."""
    from peft import LoraConfig, get_peft_model

    from retrieval.chunking import ChunkConfig
    from retrieval.ingest import ingest_paths

    data = work / "data"
    data.mkdir()
    models_dir.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(models_dir.resolve())
    runtime = Runtime(Settings(data_dir=data, dtype="float32", device="cpu", engine="torch"))
    docs = work / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("# Aquila A2 FAQ\n\n" + "\n\n".join(f"## {q}\n{b}" for q, b, _, _ in ENTRIES))
    ingest_paths(runtime.store, [docs], ChunkConfig())
    peft = get_peft_model(copy.deepcopy(runtime.base.model), LoraConfig(r=16, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    peft.save_pretrained(work / "lora")
    runtime.registry.register("bench", work / "lora", {"base_model": runtime.settings.model}, [])
    return runtime


def question_rows(runtime: Runtime, questions: list[str], tokens: int) -> list[list[Row]]:
    arena, gen = runtime.arena, GenSettings(max_new_tokens=tokens)
    cfg = VariantConfig(adapter="bench")
    out = []
    for q in questions:
        prepared = arena.prepare(q, VARIANTS, cfg, None, gen)
        out.append(arena._rows(prepared, VARIANTS, gen))
    return out


def run_engine(engine, per_question: list[list[Row]], gen: GenSettings, at_once: bool) -> tuple[float, list[str]]:
    start = time.perf_counter()
    if at_once:
        texts = [o.text for o in engine.generate([r for rows in per_question for r in rows], gen)]
    else:
        texts = [o.text for rows in per_question for o in engine.generate(rows, gen)]
    return time.perf_counter() - start, texts


def run_peft_batched(engine, per_question: list[list[Row]], gen: GenSettings, batch: int = 8):
    """peft's mixed-adapter generate over left-padded batches of similar-length rows."""
    rows = [r for rows in per_question for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    texts, tok, model = [""] * len(rows), engine.tokenizer, engine.model
    tok.padding_side = "left"
    start = time.perf_counter()
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        enc = tok.pad({"input_ids": [rows[i].input_ids for i in idx]}, return_tensors="pt")
        names = [rows[i].adapter or "__base__" for i in idx]
        with torch.inference_mode():
            out = model.generate(**enc, adapter_names=names, max_new_tokens=gen.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        for j, i in enumerate(idx):
            texts[i] = tok.decode(out[j, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - start, texts


def run_old(rev: str, runtime: Runtime, per_question: list[list[Row]], tokens: int, work: Path, threads: int):
    tree = work / "old"
    tree.mkdir(exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "assistant"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    job = work / "old-job.json"
    job.write_text(json.dumps({"model": runtime.base.path, "adapter": str(runtime.registry.get("bench").path),
                               "tokens": tokens,
                               "questions": [[(r.input_ids, r.adapter) for r in rows] for rows in per_question]}))
    done = subprocess.run([sys.executable, "-c", OLD_CHILD, str(tree), str(job), str(threads)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["texts"]


def f1_by_variant(texts: list[str], refs: list[str]) -> dict[str, float]:
    scores = {v: [] for v in VARIANTS}
    for k, text in enumerate(texts):
        scores[VARIANTS[k % len(VARIANTS)]].append(M.answer_scores(text, refs[k // len(VARIANTS)], [])["f1"])
    return {v: sum(s) / len(s) for v, s in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--torch-questions", dest="torch_questions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--models-dir", type=Path, default=ROOT / ".pytest_cache/d/arena-bundled-data/models")
    parser.add_argument("--old-rev", default="8dbab95~1", help="commit holding the engine before this change")
    parser.add_argument("--skip", nargs="*", default=[], choices=["old", "loop", "batched", "fp32", "unbatched"])
    parser.add_argument("--fp32-full", dest="fp32_full", action="store_true",
                        help="also answer every question with the fp32 graph: int4 agreement on all of them")
    parser.add_argument("--old-one-thread", dest="old_one_thread", action="store_true",
                        help="also run the old loop on one thread, as the thread bug left it")
    parser.add_argument("--out", type=Path, default=None, help="write results and answers here after each mode")
    parser.add_argument("--report-from", dest="report_from", type=Path, default=None,
                        help="print the report of a (possibly interrupted) run's --out file and exit")
    args = parser.parse_args()
    # Every engine gets every core: torch here and in the old child, onnxruntime-genai its intra-op threads
    # (ortgenai.cores()). Run it on an otherwise idle machine: OpenMP spin-waiting on a busy one slows torch a lot.
    torch.set_num_threads(ortgenai.cores())
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        report({k: tuple(v) for k, v in saved["results"].items()}, saved["texts"], saved["refs"], saved["n_sub"])
        return
    proc = psutil.Process()
    gen = GenSettings(max_new_tokens=args.tokens)
    pairs = workload(args.questions)
    results, texts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runtime = setup(Path(tmp), args.models_dir)
        rows = question_rows(runtime, [q for q, _ in pairs], args.tokens)
        sub, refs = rows[:args.torch_questions], [a for _, a in pairs]
        lengths = [len(r.input_ids) for r in rows[0]]
        print(f"{len(rows)} questions x {len(VARIANTS)} variants, {args.tokens} new tokens; prompt tokens of the "
              f"first question: {dict(zip(VARIANTS, lengths, strict=True))}; cores {len(os.sched_getaffinity(0))}",
              flush=True)
        rss0 = proc.memory_info().rss

        def record(label, n_questions, fn):
            seconds, out = fn()
            results[label] = (n_questions, seconds, (proc.memory_info().rss - rss0) / 1e6)
            texts[label] = out
            if args.out:  # after every mode, so an interrupted run can still be reported (--report-from)
                args.out.write_text(json.dumps({"results": results, "texts": texts, "refs": refs, "n_sub": len(sub)}))
            print(f"  {label}: {n_questions * len(VARIANTS)} answers in {seconds:.1f} s = "
                  f"{n_questions * len(VARIANTS) * 60 / seconds:.1f} answers/min", flush=True)

        run_modes(args, runtime, rows, sub, gen, record, Path(tmp))
    report(results, texts, refs, len(sub))


def run_modes(args, runtime: Runtime, rows: list[list[Row]], sub: list[list[Row]], gen: GenSettings, record,
              work: Path) -> None:
    """Every mode not in --skip, in order; `record(label, n_questions, fn)` times and stores each."""
    torch_engine = runtime.engine
    if "old" not in args.skip:
        for threads in [torch.get_num_threads()] + ([1] if args.old_one_thread else []):
            record(f"old loop ({threads} thread{'s' * (threads > 1)}, per question)", len(sub),
                   lambda t=threads: run_old(args.old_rev, runtime, sub, args.tokens, work, t))
    if "loop" not in args.skip:
        record("torch loop (per question)", len(sub), lambda: run_engine(torch_engine, sub, gen, False))
    torch_engine.load_adapter("bench", runtime.registry.get("bench").path)
    if "batched" not in args.skip:
        record("torch batched (peft adapter_names)", len(sub), lambda: run_peft_batched(torch_engine, sub, gen))
    for precision in ["int4"] + (["fp32"] if "fp32" not in args.skip else []):
        engine, notice = build_engine(f"onnx-{precision}", runtime.base, runtime.settings.models_dir)
        assert not notice, notice
        engine.load_adapter("bench", runtime.registry.get("bench").path)
        record(f"onnx {precision} (all rows, batched)", len(sub), lambda e=engine: run_engine(e, sub, gen, True))
        if precision == "fp32" and args.fp32_full:  # token-identical to torch: the reference on every question
            record(f"onnx fp32 full comparison ({len(rows)} questions)", len(rows),
                   lambda e=engine: run_engine(e, rows, gen, True))
        if precision == "int4":
            if "unbatched" not in args.skip:  # the same engine with one row per generator
                ortgenai.MAX_BATCH, batch = 1, ortgenai.MAX_BATCH
                record("onnx int4 (all rows, one row per generator)", len(sub),
                       lambda e=engine: run_engine(e, sub, gen, True))
                ortgenai.MAX_BATCH = batch
            record(f"onnx int4 full comparison ({len(rows)} questions)", len(rows),
                   lambda e=engine: run_engine(e, rows, gen, True))


def report(results: dict, texts: dict, refs: list[str], n_sub: int) -> None:
    rate = {k: n * len(VARIANTS) * 60 / s for k, (n, s, _) in results.items()}
    print("\nanswers per minute (same machine, same run):")
    base = next((k for k in rate if k.startswith("old")), next(iter(rate)))
    for k, r in rate.items():
        n, s, mb = results[k]
        print(f"  {k:<45} {r:7.1f}/min  {r / rate[base]:5.2f}x {base.split(' (')[0]}  "
              f"({n} q in {s:.0f} s; process RSS +{mb:.0f} MB)")
    full = [k for k in texts if "full comparison" in k]
    if len(full) == 2:  # int4 vs the fp32 graph (token-identical to torch) on every question
        print(f"\nagreement of int4 with the fp32 graph on all {len(refs)} questions:")
        agreement(texts[full[0]], texts[full[1]], refs, f"{full[0]} vs {full[1]}")
    ref = "torch loop (per question)"
    if ref in texts:
        print(f"\nagreement with the fp32 torch reference on the first {n_sub} questions:")
        for k, out in texts.items():
            if k == ref or len(out) != len(texts[ref]):
                continue
            agreement(out, texts[ref], refs, k)


def agreement(out: list[str], ref: list[str], refs: list[str], label: str) -> None:
    """Identical answers, per-variant token F1 (and its difference) and the best variant of both."""
    same = sum(a == b for a, b in zip(out, ref, strict=True))
    f1, f1_ref = f1_by_variant(out, refs), f1_by_variant(ref, refs)
    best, best_ref = max(f1, key=f1.get), max(f1_ref, key=f1_ref.get)
    print(f"  {label}: identical answers {same}/{len(out)}; F1 " + ", ".join(
        f"{v} {f1[v]:.3f} ({f1[v] - f1_ref[v]:+.3f})" for v in VARIANTS) + f"; best variant {best} "
          f"(reference: {best_ref})")


if __name__ == "__main__":
    main()
