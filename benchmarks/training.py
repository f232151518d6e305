"""Training speed: our path (trl SFT, packed batches, fused LoRA, answer-only LM head, no activation
checkpointing) vs plain HF Trainer + peft LoRA.

Same rows, same LoRA (r16, all-linear), same optimiser steps and rows per step: both train exactly one epoch
over the same `steps x batch` rows, so both serve the same real (non-pad) tokens. Each path runs in its own
process (clean peak RSS). The two processes run in lockstep: they take turns, one optimiser step each, so
whatever else loads this machine hits both alike (on a shared VM the speed drifts by up to ~1.7x over minutes,
which made whole runs taken one after the other disagree by 1.5-2.3x); each counts only its own turns. Prints
tokens/s, peak RSS and the final validation loss of both (same evaluation function), the ratio per pair
(`--repeat`) and the median ratio, the arithmetic each path does per real token, then the fp32 compute
ceiling of this CPU: the least arithmetic a frozen-base LoRA step needs per real token, at the rate MKL
reaches on this model's own layer shapes.
Usage: python benchmarks/training.py [--data-dir D] [--steps N] [--batch N] [--threads T] [--repeat N]
[--seed S] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from foundation.models import resolve_model_path  # noqa: E402
from foundation.settings import Settings  # noqa: E402
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


def run_reference(path, tok, train_rows, val_rows, steps, batch, lr, out, seed):
    """Plain transformers Trainer + peft LoRA, fp32, pad-to-longest random batches."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = lora_model(path)
    args = TrainingArguments(output_dir=str(out / "ref"), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=lr, lr_scheduler_type="constant", logging_steps=steps, seed=seed,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    pad = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=IGNORE)
    padded = []

    def collator(features):
        batch = pad(features)
        padded.append(batch["input_ids"].numel())  # positions computed, padding included
        return batch

    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows), data_collator=collator)
    return {**timed(trainer, model, val_rows, train_rows), "padded_tokens": sum(padded)}


def run_ours(path, tok, train_examples, val_rows, steps, batch, lr, out, seed, bf16):
    """Our trainer construction (training.runner.make_trainer) on the same rows."""
    from training.runner import make_trainer

    cfg = JobConfig(name="bench", data=[{"path": "-"}], max_steps=steps, batch_size=batch, learning_rate=lr,
                    lr_scheduler="constant", lora_r=16, lora_alpha=32, lora_dropout=0.0, max_length=1024,
                    bf16=bf16, val_fraction=0, save_steps=10**6, logging_steps=steps, seed=seed)
    model = lora_model(path)
    trainer = make_trainer(cfg, model, tok, train_examples, [], out / "ours", torch.device("cpu"), [])
    trainer.args.save_strategy = "no"
    rows = [{"input_ids": r["input_ids"]} for r in trainer.train_dataset]
    return timed(trainer, model, val_rows, rows)


class Turns:
    """This process's side of the lockstep: hand the machine over after each optimiser step, and wait for it
    back. `waited` is the time spent waiting, which the timing leaves out."""

    def __init__(self, active: bool):
        self.active, self.waited = active, 0.0

    def wait(self):
        """Block until the parent says it is this process's turn (a no-op outside lockstep)."""
        if self.active:
            start = time.perf_counter()
            if sys.stdin.readline().strip() != "GO":
                raise SystemExit("lockstep: the parent went away")
            self.waited += time.perf_counter() - start

    def pass_on(self):
        if self.active:
            print("TURN", flush=True)
            self.wait()

    def callback(self):
        from transformers import TrainerCallback

        turns = self

        class PassOn(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                turns.pass_on()

        return PassOn()


TURNS = Turns(False)


def timed(trainer, model, val_rows, rows):
    rss = PeakRSS()
    trainer.add_callback(TURNS.callback())
    rss.start()
    waited, start = TURNS.waited, time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start - (TURNS.waited - waited)  # this process's own turns only
    peak = rss.stop()
    served = trainer.state.global_step * trainer.args.per_device_train_batch_size
    if served != len(rows):  # the token count below assumes every row was served exactly once
        raise RuntimeError(f"served {served} rows, expected one epoch of {len(rows)}")
    tokens = sum(len(r["input_ids"]) for r in rows)  # real (non-pad) tokens; the same rows for both paths
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "peak_rss_mb": peak,
            "val_loss": val_loss(model, val_rows)}


def _lockstep(argv: list[str], first: str) -> dict | None:
    """Run both paths at once, in lockstep (`Turns`), `first` taking the first turn; their RESULT dicts."""
    import subprocess
    import tempfile

    names = [first, "reference" if first == "ours" else "ours"]
    errs = {n: tempfile.TemporaryFile("w+") for n in names}
    procs = {n: subprocess.Popen([sys.executable, __file__, *argv, "--only", n, "--lockstep"], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errs[n]) for n in names}
    results, running, turn = {}, list(names), 0
    _send_go(procs[names[0]])
    while running:
        name = running[turn % len(running)]
        line = procs[name].stdout.readline()
        if line.startswith("RESULT "):
            results[name] = json.loads(line[len("RESULT "):])
        elif line.strip() == "TURN" or not line:  # handed over, or finished
            if not line:
                running.remove(name)
                if name not in results:
                    return _failed(name, procs, errs)
            else:
                turn += 1
            if running:
                _send_go(procs[running[turn % len(running)]])
    return results


def _send_go(proc) -> None:
    proc.stdin.write("GO\n")
    proc.stdin.flush()


def _failed(name: str, procs: dict, errs: dict) -> None:
    for proc in procs.values():
        proc.kill()
    errs[name].seek(0)
    print(f"{name} failed:\n{errs[name].read()[-3000:]}", file=sys.stderr)
    return None


def compare(argv: list[str], repeat: int, threads: int) -> int:
    """Run both paths `repeat` times, each pair as two processes in lockstep (`_lockstep`), and report."""
    runs = {"ours": [], "reference": []}
    for i in range(repeat):
        pair = _lockstep(argv, "ours" if i % 2 == 0 else "reference")
        if pair is None:
            return 1
        for name in ("ours", "reference"):
            result = pair[name]
            runs[name].append(result)
            print(f"{name:<10} {result['tokens_per_s']:8.1f} tok/s  {result['seconds']:6.1f} s  peak RSS "
                  f"{result['peak_rss_mb']:7.0f} MB  val loss {result['val_loss']:.4f}", flush=True)
    ratios = sorted(o["tokens_per_s"] / r["tokens_per_s"] for o, r in zip(runs["ours"], runs["reference"], strict=True))
    ours, ref = runs["ours"][-1], runs["reference"][-1]
    report = {"ours": ours, "reference": ref, "ratios": ratios, "tokens_per_s_ratio": statistics.median(ratios),
              "val_loss_diff_pct": 100 * (ours["val_loss"] - ref["val_loss"]) / ref["val_loss"]}
    print(f"rows: {ours['rows']} x mean {ours['mean_row_tokens']:.0f} tokens = {ours['tokens']} real tokens (both)")
    print(f"ratio ours/reference tokens/s: median {report['tokens_per_s_ratio']:.2f}x (pairs: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}) · val loss diff {report['val_loss_diff_pct']:+.2f} %")
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(ours["model_path"])
    report["arithmetic"] = print_arithmetic(cfg, ours, ref)
    report["ceiling"] = print_ceiling(cfg, ours, statistics.median(r["tokens_per_s"] for r in runs["reference"]),
                                      threads)
    print(json.dumps(report, default=float))
    return 0


def print_arithmetic(cfg, ours: dict, ref: dict) -> dict:
    """FLOPs per real token of each path: ours skips padding and scores answer tokens only; the reference runs
    every padded position through the layers and the LM head. Their ratio is the speed-up at equal FLOP/s."""
    mine = min_flops_per_token(cfg, ours["label_tokens"] / ours["tokens"])
    theirs = ref["padded_tokens"] / ref["tokens"] * min_flops_per_token(cfg, 1.0)
    print(f"arithmetic per real token: ours {mine / 1e6:.0f} MFLOP, reference {theirs / 1e6:.0f} MFLOP "
          f"({ref['padded_tokens']} padded positions for {ref['tokens']} real tokens, LM head at every one) = "
          f"{theirs / mine:.2f}x ours; the rest of the speed-up has to come from more FLOP/s")
    return {"ours_mflop": mine / 1e6, "reference_mflop": theirs / 1e6, "ratio": theirs / mine}


def print_ceiling(cfg, ours: dict, reference_tok_s: float, threads: int) -> dict:
    """Upper bound on fp32 training tokens/s here: minimum FLOPs per token / measured GEMM rate."""
    rows_per_step = ours["tokens"] / ours["steps"]
    flops = min_flops_per_token(cfg, ours["label_tokens"] / ours["tokens"])
    rate = gemm_rate(cfg, int(rows_per_step), threads)  # the threads both paths trained with
    ceiling = rate / flops
    print(f"fp32 ceiling: >= {flops / 1e6:.0f} MFLOP per real token (forward + input gradients of the frozen "
          f"linears, LM head on answer tokens only, attention ignored) at {rate / 1e9:.0f} GFLOP/s (MKL fp32 "
          f"GEMMs of these layer shapes, {rows_per_step:.0f} rows) = at most {ceiling:.0f} tok/s = "
          f"{ceiling / reference_tok_s:.2f}x the reference median")
    return {"mflop_per_token": flops / 1e6, "gflops": rate / 1e9, "tok_s": ceiling,
            "x_reference": ceiling / reference_tok_s}


def layer_shapes(cfg) -> list[tuple[int, int]]:
    """(in, out) of one decoder layer's linears: q, k, v, o, gate, up, down."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    kv = h // cfg.num_attention_heads * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    return [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]


def min_flops_per_token(cfg, answer_fraction: float) -> float:
    """2 FLOPs per weight forward, 2 for the input gradient (a frozen weight needs no weight gradient)."""
    linear = sum(i * o for i, o in layer_shapes(cfg)) * cfg.num_hidden_layers
    return 4 * linear + 4 * cfg.vocab_size * cfg.hidden_size * answer_fraction


def gemm_rate(cfg, rows: int, threads: int) -> float:
    """Best-of-5 FLOP/s of one layer's forward and input-gradient GEMMs with `rows` token rows."""
    torch.set_num_threads(threads)
    weights = [torch.randn(o, i) for i, o in layer_shapes(cfg)]
    xs = [torch.randn(rows, i) for i, _ in layer_shapes(cfg)]
    grads = [torch.randn(rows, o) for _, o in layer_shapes(cfg)]
    flops = 4 * rows * sum(w.numel() for w in weights)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for w, x, g in zip(weights, xs, grads, strict=True):
            torch.mm(x, w.t())
            torch.mm(g, w)
        best = min(best, time.perf_counter() - start)
    return flops / best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="./arena_data")
    p.add_argument("--model", default="bundled:smollm2-135m")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0, help="data and training seed (both paths)")
    p.add_argument("--repeat", type=int, default=1, help="ours/reference pairs, alternating order")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for our path (measure before using)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads for both paths (on a shared, busy machine 1 can beat 2 by 3x)")
    p.add_argument("--only", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.only:
        argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("only", "repeat", "bf16", "lockstep")]
        return compare(argv + (["--bf16"] if args.bf16 else []), max(1, args.repeat), max(1, args.threads))
    from transformers import AutoTokenizer

    TURNS.active = args.lockstep
    TURNS.wait()  # nothing heavy before the first turn: loading would slow the other process's steps
    torch.set_num_threads(max(1, args.threads))
    settings = Settings(data_dir=Path(args.data_dir), model=args.model)
    path = resolve_model_path(args.model, settings)
    tok = AutoTokenizer.from_pretrained(path)
    n_train = args.steps * args.batch  # one epoch: every row served exactly once by both paths
    examples = make_rows(24 + n_train, seed=args.seed)
    val_ex, train_ex = examples[:24], examples[24:]
    train_rows, val_rows = (tokenize_examples(tok, x, 1024) for x in (train_ex, val_ex))
    mean_len = sum(len(r["input_ids"]) for r in train_rows) / len(train_rows)
    out = Path(args.data_dir) / "bench-training"
    common = (path, tok)
    if args.only == "ours":
        result = run_ours(*common, train_ex, val_rows, args.steps, args.batch, args.lr, out, args.seed, args.bf16)
    else:
        result = run_reference(*common, train_rows, val_rows, args.steps, args.batch, args.lr, out, args.seed)
    labels = sum(sum(t != IGNORE for t in r["labels"][1:]) for r in train_rows)  # positions the loss scores
    print("RESULT " + json.dumps({**result, "mean_row_tokens": mean_len, "rows": len(train_rows),
                                  "label_tokens": labels, "steps": args.steps, "model_path": str(path)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
