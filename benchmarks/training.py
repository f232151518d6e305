"""Training speed: our path (trl SFT, length-grouped batches, answer-only LM head, no activation
checkpointing) vs plain HF Trainer + peft LoRA.

Same rows, same LoRA (r16, all-linear), same optimiser steps and rows per step, one process, one run:
prints tokens/s (real, non-pad tokens), peak RSS and the final validation loss of both, measured with
the same evaluation function. Usage: python benchmarks/training.py [--data-dir D] [--rows N] [--steps N] [--threads T] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from assistant.models import resolve_model_path  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from training.config import JobConfig  # noqa: E402
from training.data import chat  # noqa: E402
from training.tokenize import IGNORE, tokenize_examples  # noqa: E402

WORDS = ("router reset firmware button light cable port network password admin page update signal channel "
         "antenna guest mode factory setting wireless band power adapter").split()


def make_rows(n: int, seed: int = 0):
    """Support-style QA with a wide spread of lengths (what makes pad-to-longest wasteful)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = f"Question {i}: how do I fix the {' '.join(rng.choices(WORDS, k=rng.randint(3, 12)))}?"
        a = " ".join(rng.choices(WORDS, k=rng.choice([8, 15, 30, 60, 120])))
        rows.append(chat(q, f"To fix it, {a}."))
    return rows


class PeakRSS:
    """Samples this process's RSS every 50 ms; `peak` is the maximum seen since start()."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def start(self):
        self.peak, self._stop = psutil.Process().memory_info().rss, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        return self.peak / 2**20


def lora_model(path: str):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                            target_modules="all-linear"))


@torch.no_grad()
def val_loss(model, val_rows) -> float:
    """Mean token NLL over the validation rows' answer tokens, one row at a time (no padding at all)."""
    model.eval()
    total, count = 0.0, 0
    for row in val_rows:
        ids = torch.tensor([row["input_ids"]])
        labels = torch.tensor([row["labels"]])
        logits = model(input_ids=ids).logits[0, :-1].float()
        target = labels[0, 1:]
        mask = target != IGNORE
        total += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
        count += int(mask.sum())
    return total / count


def run_reference(path, tok, train_rows, val_rows, steps, batch, lr, out):
    """Plain transformers Trainer + peft LoRA, fp32, pad-to-longest random batches."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = lora_model(path)
    args = TrainingArguments(output_dir=str(out / "ref"), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=lr, lr_scheduler_type="constant", logging_steps=steps, seed=0,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=IGNORE)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows), data_collator=collator)
    return timed(trainer, model, val_rows, train_rows)


def run_ours(path, tok, train_examples, val_rows, steps, batch, lr, out, bf16, max_length, packing):
    """Our trainer construction (training.runner.make_trainer) on the same rows."""
    from training.runner import make_trainer

    cfg = JobConfig(name="bench", data=[{"path": "-"}], max_steps=steps, batch_size=batch, learning_rate=lr,
                    lr_scheduler="constant", lora_r=16, lora_alpha=32, lora_dropout=0.0, max_length=max_length,
                    bf16=bf16, val_fraction=0, save_steps=10**6, logging_steps=steps, packing=packing)
    model = lora_model(path)
    trainer = make_trainer(cfg, model, tok, train_examples, [], out / "ours", torch.device("cpu"), [])
    trainer.args.save_strategy = "no"
    rows = [{"input_ids": r["input_ids"]} for r in trainer.train_dataset]
    return timed(trainer, model, val_rows, rows)


def timed(trainer, model, val_rows, rows):
    rss = PeakRSS()
    rss.start()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = rss.stop()
    steps, per_step = trainer.state.global_step, trainer.args.per_device_train_batch_size
    # Real (non-pad) tokens served: mean row length x rows per step x steps (rows are packed windows when
    # packing); the same estimate for both paths.
    tokens = sum(len(r["input_ids"]) for r in rows) / len(rows) * per_step * steps
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "peak_rss_mb": peak,
            "val_loss": val_loss(model, val_rows)}


def compare(argv: list[str]) -> int:
    """Run both paths, each in a fresh process (so peak RSS is not polluted by the other), and report."""
    import subprocess

    report = {}
    for name in ("ours", "reference"):
        proc = subprocess.run([sys.executable, __file__, *argv, "--only", name], capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        report[name] = json.loads(line[len("RESULT "):])
    ours, ref = report["ours"], report["reference"]
    report["tokens_per_s_ratio"] = ours["tokens_per_s"] / ref["tokens_per_s"]
    report["val_loss_diff_pct"] = 100 * (ours["val_loss"] - ref["val_loss"]) / ref["val_loss"]
    print(f"rows: mean {ours['mean_row_tokens']:.0f} tokens; our packed window {ours['packed_window']} tokens")
    for name in ("ours", "reference"):
        r = report[name]
        print(f"{name:<10} {r['tokens_per_s']:8.1f} tok/s  {r['seconds']:6.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB"
              f"  val loss {r['val_loss']:.4f}")
    print(f"ratio ours/reference tokens/s: {report['tokens_per_s_ratio']:.2f}x · val loss diff "
          f"{report['val_loss_diff_pct']:+.2f} %")
    print(json.dumps(report, default=float))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="./arena_data")
    p.add_argument("--model", default="bundled:smollm2-135m")
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for our path (measure before using)")
    p.add_argument("--packing", action="store_true", help="our path with padding-free packing instead")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads for both paths (on a shared, busy machine 1 can beat 2 by 3x)")
    p.add_argument("--only", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.only:
        return compare(sys.argv[1:])
    from transformers import AutoTokenizer

    torch.set_num_threads(max(1, args.threads))
    settings = Settings(data_dir=Path(args.data_dir), model=args.model)
    path = resolve_model_path(args.model, settings)
    tok = AutoTokenizer.from_pretrained(path)
    examples = make_rows(args.rows)
    val_ex, train_ex = examples[:24], examples[24:]
    train_rows, val_rows = (tokenize_examples(tok, x, 1024) for x in (train_ex, val_ex))
    mean_len = sum(len(r["input_ids"]) for r in train_rows) / len(train_rows)
    # Same rows per step for both: one packed window holds about `batch` rows.
    max_length = int(2 ** math.ceil(math.log2(mean_len * args.batch / 2)))
    out = Path(args.data_dir) / "bench-training"
    if args.only == "ours" and args.packing:  # one packed window holds about `batch` rows
        result = run_ours(path, tok, train_ex, val_rows, args.steps, 2, args.lr, out, args.bf16, max_length, True)
    elif args.only == "ours":
        result = run_ours(path, tok, train_ex, val_rows, args.steps, args.batch, args.lr, out, args.bf16, 1024,
                          False)
    else:
        result = run_reference(path, tok, train_rows, val_rows, args.steps, args.batch, args.lr, out)
    print("RESULT " + json.dumps({**result, "mean_row_tokens": mean_len, "packed_window": max_length}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
