"""Load benchmark: 8 concurrent gradio_client users asking side-by-side questions while a training job runs.

Starts the app as a subprocess on loopback (tiny random model by default, `--model bundled` for the bundled
SmolLM2), ingests a small manual, starts `arena train` on the same data folder, then runs N clients x M
questions through the app's documented `/ask` API. Prints requests done, errors (target 0) and p50/p95
latency, next to a reference measured in the same run: one client alone, no training. The training job is
then let finish and the same job is trained again alone: both validation losses are printed (they should be
equal: serving must not disturb training). Bounded in count and in time.
Run: .venv/bin/python benchmarks/load.py [--clients 8 --requests 3 --model bundled]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

QUESTIONS = ["What does error E42 mean?", "How do I descale the machine?", "How do I reset it?",
             "Which grind size should I use?", "Why is the coffee too cold?"]
MANUAL = """# Espresso machine manual

## What does error E42 mean?
Error E42 means the water tank is empty. Refill the tank and press the reset button.

## How do I descale the machine?
Fill the tank with descaling solution and hold the steam button for five seconds.

## How do I reset it?
Press and hold the power button for ten seconds until the light turns white.

## Which grind size should I use?
Use a fine grind, about like table salt, and 18 grams of coffee for a double shot.
"""
VARIANTS = ["base", "prompt", "rag"]


def prepare(folder: Path, model_arg: str) -> tuple[str, Path, Path]:
    """The model to serve, plus the manual and a training file written into `folder`."""
    if model_arg == "tiny":
        from tests.conftest import make_tiny_model, make_tiny_tokenizer

        tok = make_tiny_tokenizer()
        make_tiny_model(len(tok)).save_pretrained(folder / "tiny-llama")
        tok.save_pretrained(folder / "tiny-llama")
        model = str(folder / "tiny-llama")
    else:
        model = "bundled:smollm2-135m" if model_arg == "bundled" else model_arg
    (folder / "manual.md").write_text(MANUAL)
    rows = [{"question": f"How many grams of coffee does recipe {i} use?", "answer": f"Recipe {i} uses {10 + i} g."}
            for i in range(64)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model, folder / "manual.md", folder / "train.jsonl"


def arena(*args: str) -> list[str]:
    return [sys.executable, "-m", "assistant", *args]


def ask(url: str, requests: int, max_new: int, deadline: float) -> list[tuple[float, str | None]]:
    """One client: `requests` side-by-side questions in a row; (latency s, error or None) each."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    out = []
    for i in range(requests):
        if time.monotonic() > deadline:
            out.append((0.0, "skipped: time budget spent"))
            continue
        start = time.perf_counter()
        try:
            result = client.predict(message=QUESTIONS[i % len(QUESTIONS)], variants=VARIANTS, adapter_name=None,
                                    param_10=max_new, api_name="/ask")
            out.append((time.perf_counter() - start, check(result)))
        except Exception as exc:  # noqa: BLE001 - every failure counts as an error in the report
            out.append((time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:200]))
    return out


def check(result) -> str | None:
    """An error message unless every variant column shows its answer metrics and RAG lists a source."""
    values = [v.get("value") if isinstance(v, dict) else v for v in result]
    texts = [v for v in values if isinstance(v, str)]
    stats = [t for t in texts if re.search(r"\d+ tokens", t)]
    if any("⚠️" in t for t in texts) or len(stats) != len(VARIANTS):
        return f"expected {len(VARIANTS)} answered columns, got {len(stats)}: {texts[:4]}"
    if not any("manual.md" in t for t in texts):
        return "the RAG column lists no source"
    return None


def run_clients(url: str, clients: int, requests: int, max_new: int, budget: float):
    deadline = time.monotonic() + budget
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: ask(url, requests, max_new, deadline), range(clients)))
    return [r for rs in results for r in rs], time.perf_counter() - start


def report(label: str, results, wall: float) -> None:
    ok = sorted(t for t, err in results if err is None)
    errors = [err for _, err in results if err is not None]
    p50 = statistics.median(ok) if ok else float("nan")
    p95 = ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))] if ok else float("nan")
    print(f"{label}: {len(ok)}/{len(results)} requests done, {len(errors)} errors, latency p50 {p50:.2f} s, "
          f"p95 {p95:.2f} s, wall {wall:.1f} s, {len(ok) / wall:.2f} req/s")
    for err in sorted(set(errors))[:5]:
        print(f"  error: {err}")


class TrainingWatch:
    """Samples the training job's step while the load runs, to show it really trained concurrently."""

    def __init__(self, data_dir: Path):
        self.data_dir, self.steps, self._stop = data_dir, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            records = [json.loads(line) for p in self.data_dir.glob("jobs/*/metrics.jsonl")
                       for line in p.read_text().splitlines() if line.strip().endswith("}")]
            self.steps.append(max((r.get("step", 0) for r in records), default=0))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def train(args: list[str], log: Path) -> subprocess.Popen:
    """`arena train ... --json` as its own process; its last stdout line is the JSON result."""
    return subprocess.Popen(arena("train", *args, "--json"), cwd=ROOT, stdout=log.open("w"),
                            stderr=(log.with_suffix(".err")).open("w"))


def val_loss(proc: subprocess.Popen, log: Path, timeout: float) -> float | None:
    """The finished job's final validation loss (None if it failed or ran out of time)."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(60)
        return None
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]).get("metrics", {}).get("val_loss") if proc.returncode == 0 and lines else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (random 2-layer Llama), bundled, or a model id/folder")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="questions per client")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the loaded phase")
    args = parser.parse_args()

    from tests.browser_support import start_app, stop_app

    with tempfile.TemporaryDirectory(prefix="arena-load-") as tmp:
        folder = Path(tmp)
        data_dir = folder / "data"
        model, manual, train_file = prepare(folder, args.model)
        common = ["--data-dir", str(data_dir), "--model", model]
        subprocess.run(arena("ingest", str(manual), *common), check=True, capture_output=True)
        app, url = start_app(model, data_dir, folder / "app.log")
        trainer = None
        try:
            print(f"model {model} · {args.clients} clients x {args.requests} questions · variants "
                  f"{'+'.join(VARIANTS)} · {args.max_new_tokens} new tokens · {os.cpu_count()} CPUs")
            ask(url, 1, args.max_new_tokens, time.monotonic() + 120)  # warm-up: embedder, first forward
            alone, wall = run_clients(url, 1, args.requests, args.max_new_tokens, args.budget)
            report("reference: 1 client, no training", alone, wall)
            job = ["--data", str(train_file), "--max-steps", str(args.train_steps), "--batch-size", "4",
                   "--eval-steps", str(args.train_steps), *common]
            trainer = train(["--name", "load-lora", *job], folder / "train.log")
            time.sleep(5)
            with TrainingWatch(data_dir) as watch:
                loaded, wall = run_clients(url, args.clients, args.requests, args.max_new_tokens, args.budget)
            report(f"loaded: {args.clients} clients while training", loaded, wall)
            running = trainer.poll() is None
            steps = f"steps {watch.steps[0]}→{watch.steps[-1]}" if watch.steps else "no samples"
            print(f"training during the loaded phase: {steps} of {args.train_steps}, "
                  f"{'still running' if running else f'exited {trainer.returncode}'} at its end")
            loaded_loss = val_loss(trainer, folder / "train.log", args.budget * 4)
            alone_loss = val_loss(train(["--name", "load-lora-alone", *job], folder / "alone.log"),
                                  folder / "alone.log", args.budget * 4)
            same = loaded_loss is not None and loaded_loss == alone_loss
            print(f"training validation loss: {loaded_loss} with the load, {alone_loss} alone "
                  f"({'identical' if same else 'DIFFERENT'})")
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.terminate()
                trainer.wait(60)
            stop_app(app)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
