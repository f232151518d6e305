"""Comparison throughput through an OpenAI-compatible server vs in-process, same rows, one run, this machine.

Run: .venv/bin/python benchmarks/openai_throughput.py [--questions 8] [--tokens 48] [--concurrency 4]

The espresso-machine FAQ questions (benchmarks/retrieval_faq.py) as the base and prompt variants of a
comparison (prompt token ids built once by the Arena), greedy, `--tokens` new tokens, answered by:
  torch          the in-process reference engine (fp32)
  onnx-int4      the in-process CPU engine (onnxruntime-genai, one worker per core)
  served         --engine openai against llama.cpp's server (llama-cpp-python, the bundled Q4_1 GGUF, 2
                 threads) started here on 127.0.0.1, `--concurrency` requests in flight
Reports seconds, answers per minute and generated tokens per second, as ratios to torch. needs the [server]
extra (make test installs it). The server shares the machine's 2 cores with nothing else of this script:
each engine runs alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.inference.choose import build_engine  # noqa: E402
from assistant.inference.openai_engine import OpenAIEngine, ServerConfig  # noqa: E402
from assistant.runtime import Runtime  # noqa: E402
from benchmarks.retrieval_faq import ENTRIES  # noqa: E402
from foundation.generation import GenSettings, Row  # noqa: E402
from foundation.models import bundled_gguf, load_model  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from foundation.variants import VariantConfig  # noqa: E402
from tests.openai_server import LlamaServer  # noqa: E402

VARIANTS = ["base", "prompt"]


def rows_for(runtime: Runtime, n: int, tokens: int) -> list[Row]:
    questions = [eq for _, _, eq, _ in ENTRIES][:n]
    cfg, gen = VariantConfig(), GenSettings(max_new_tokens=tokens)
    rows = []
    for q in questions:
        prepared = runtime.arena.prepare(q, VARIANTS, cfg, None, gen)
        rows += runtime.arena._rows(prepared, VARIANTS, gen)
    return rows


def timed(engine, rows: list[Row], tokens: int) -> dict:
    gen = GenSettings(max_new_tokens=tokens)
    engine.generate(rows[:1], GenSettings(max_new_tokens=4))  # warm-up (graph load, server model load)
    start = time.perf_counter()
    outs = engine.generate(rows, gen)
    seconds = time.perf_counter() - start
    generated = sum(len(o.tokens) for o in outs)
    return {"seconds": round(seconds, 2), "answers_per_min": round(60 * len(rows) / seconds, 1),
            "tokens_per_s": round(generated / seconds, 1), "texts": [o.text for o in outs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--models-dir", type=Path, default=ROOT / ".pytest_cache/d/arena-bundled-data/models",
                    help="converted models to reuse (the test suite's cache by default)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arena-openai-bench-"))
    args.models_dir.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir()
    (work / "data" / "models").symlink_to(args.models_dir.resolve())
    settings = Settings(data_dir=work / "data", dtype="float32", device="cpu")
    loaded = load_model(settings)
    runtime = Runtime(settings, base=loaded)
    rows = rows_for(runtime, args.questions, args.tokens)
    print(f"{len(rows)} rows ({args.questions} questions x {VARIANTS}), {args.tokens} new tokens", file=sys.stderr)
    results = {}
    torch_engine, _ = build_engine("torch", loaded, settings.models_dir)
    results["torch"] = timed(torch_engine, rows, args.tokens)
    onnx_engine, notice = build_engine("onnx-int4", loaded, settings.models_dir)
    if not notice:
        results["onnx-int4"] = timed(onnx_engine, rows, args.tokens)
    del onnx_engine
    server = LlamaServer(bundled_gguf(settings.model), work, [], n_ctx=2048, threads=2).wait()
    try:
        served = OpenAIEngine(loaded.tokenizer, loaded.model.config,
                              ServerConfig(server.url, concurrency=args.concurrency))
        results[f"served (llama.cpp, {args.concurrency} in flight)"] = timed(served, rows, args.tokens)
    finally:
        server.stop()
    ref, ref_texts = results["torch"], results["torch"]["texts"]
    for name, r in results.items():
        same = sum(a == b for a, b in zip(r.pop("texts"), ref_texts, strict=True))
        r["x_torch_answers_per_min"] = round(r["answers_per_min"] / ref["answers_per_min"], 2)
        if name != "torch":
            r["identical_answers_to_torch"] = f"{same}/{len(rows)}"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()  # its temp folder (data, onnx graph) is left for inspection: /tmp/arena-openai-bench-*
