"""Generation speed on the bundled model: onnxruntime-genai vs plain transformers, and the side-by-side ratio.

Run: .venv/bin/python benchmarks/generation.py [--data-dir DIR] [--tokens 64] [--repeats 3]

(a) single-stream decode tok/s (prefill excluded), 1 thread each, of fp32 eager `generate` (the reference),
    the onnx int4 and fp32 graphs, and llama.cpp when `llama_cpp` is importable; each is its own process
    (so its peak RSS is that engine's), runs are interleaved and the median kept (the cores are shared).
(b) onnx int4: wall time of all five variants in one engine call / the slowest variant alone ->
    `side-by-side ratio`, and whether each row's tokens in the shared call equal the row generated alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foundation import variants as V  # noqa: E402
from foundation.generation import GenSettings, Row  # noqa: E402
from foundation.settings import Settings  # noqa: E402

QUESTION = "How do I reset the device to factory settings, and what happens to my saved data?"
LONG = "Write a detailed, step-by-step guide to cleaning and maintaining an espresso machine."
ENGINES = ["torch-eager", "onnx-int4", "onnx-fp32", "llama.cpp"]


def child(engine: str, data_dir: Path, tokens: int) -> dict:
    """One engine's single-stream decode tok/s and the process's peak RSS."""
    import torch

    from assistant.inference.choose import build_engine
    from foundation.models import load_model

    # One thread for every engine (the onnx engine runs one intra-op thread per row): on a shared box, OpenMP
    # spin-waiting with 2 threads made torch and llama.cpp 30-100x slower than their 1-thread speed.
    torch.set_num_threads(1)
    loaded = load_model(Settings(data_dir=data_dir, dtype="float32", device="cpu"))
    messages = [{"role": "user", "content": LONG}]
    if engine == "torch-eager":
        tok_s = eager_generate(loaded, messages, tokens)
    elif engine == "llama.cpp":
        tok_s = llama_cpp(messages, tokens)
    else:
        eng, notice = build_engine(engine, loaded, data_dir / "models")
        assert not notice, notice
        row = Row(eng.chat_ids(messages))
        eng.generate([row], GenSettings(max_new_tokens=4))  # warm-up
        out = eng.generate([row], GenSettings(max_new_tokens=tokens))[0]
        tok_s = (len(out.tokens) - 1) / (out.seconds - out.ttft_s)
    return {"tok_s": tok_s, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def eager_generate(loaded, messages, tokens: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(loaded.path, dtype=torch.float32, attn_implementation="eager")
    ids = torch.tensor([loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                             return_dict=True)["input_ids"]])
    times = []
    with torch.inference_mode():
        for n in (1, tokens):  # the difference excludes the prefill
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=loaded.tokenizer.eos_token_id)
            times.append(time.perf_counter() - start)
    return (tokens - 1) / (times[1] - times[0])


def llama_cpp(messages, tokens: int) -> float | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from foundation.models import bundled_gguf

    llm = Llama(model_path=str(bundled_gguf("bundled:smollm2-135m")), n_threads=1, verbose=False)
    start = time.perf_counter()
    out = llm.create_chat_completion(messages, max_tokens=tokens, temperature=0)
    return out["usage"]["completion_tokens"] / (time.perf_counter() - start)


def part_a(args) -> None:
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for _ in range(args.repeats):
        for engine in ENGINES:
            done = subprocess.run([sys.executable, __file__, "--child", engine, "--data-dir", str(args.data_dir),
                                   "--tokens", str(args.tokens)], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            runs[engine].append(json.loads(done.stdout.strip().splitlines()[-1]))
    ref = statistics.median(r["tok_s"] for r in runs["torch-eager"])
    print(f"(a) single-stream decode, {args.tokens} new tokens, median of {args.repeats} interleaved runs:")
    for engine, rs in runs.items():
        if rs[0]["tok_s"] is None:
            print(f"  {engine}: not importable here (llama-cpp-python has no wheel)")
            continue
        tok_s = statistics.median(r["tok_s"] for r in rs)
        print(f"  {engine:<12} {tok_s:7.1f} tok/s  {tok_s / ref:5.2f}x eager  peak RSS "
              f"{max(r['peak_mb'] for r in rs):.0f} MB")


def part_b(args) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from assistant.inference.choose import build_engine
    from foundation.models import load_model

    loaded = load_model(Settings(data_dir=args.data_dir, dtype="float32", device="cpu"))
    engine, notice = build_engine("onnx-int4", loaded, args.data_dir / "models")
    assert not notice, notice
    with tempfile.TemporaryDirectory() as tmp:
        peft = get_peft_model(copy.deepcopy(loaded.model), LoraConfig(r=16, target_modules="all-linear"))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.01)
        peft.save_pretrained(tmp)
        engine.load_adapter("bench", Path(tmp))
        rows = variant_rows(engine, "bench", args.side_tokens)
        gen = GenSettings(max_new_tokens=args.side_tokens)
        engine.generate([rows["base"]], GenSettings(max_new_tokens=2))  # warm-up
        alone = {n: _timed(engine, [r], gen) for n, r in rows.items()}
        together, outs = _timed(engine, list(rows.values()), gen)
    exact = sum(a[1][0].tokens == b.tokens for a, b in zip(alone.values(), outs, strict=True))
    slowest = max(alone, key=lambda n: alone[n][0])
    print(f"(b) onnx int4, five variants, up to {args.side_tokens} new tokens each; prompt tokens: "
          + ", ".join(f"{n} {len(r.input_ids)}" for n, r in rows.items()))
    print("  alone " + ", ".join(f"{n} {s:.2f} s" for n, (s, _) in alone.items()))
    print(f"  all five in one call {together:.2f} s; slowest alone {slowest} {alone[slowest][0]:.2f} s; "
          f"{exact}/{len(rows)} rows token-exact vs alone")
    print(f"side-by-side ratio: {together / alone[slowest][0]:.2f}")


def variant_rows(engine, adapter: str, max_new: int) -> dict[str, Row]:
    shots = [{"question": "How do I update the firmware?", "answer": "Open Settings › System › Update."},
             {"question": "Where is the serial number?", "answer": "On the label under the battery."}]
    hits, _ = V.fit_hits(passages(), V.rag_budget(engine.context_length, max_new, 80), engine.count_tokens)
    msgs = {"base": V.base_messages(QUESTION), "prompt": V.prompt_messages(QUESTION, V.DEFAULT_SYSTEM_PROMPT, shots),
            "rag": V.rag_messages(QUESTION, hits), "finetuned": V.base_messages(QUESTION),
            "rag+finetuned": V.rag_messages(QUESTION, hits)}
    return {n: Row(engine.chat_ids(m), adapter if n in V.ADAPTER_VARIANTS else None) for n, m in msgs.items()}


def passages() -> list:
    """Real prose (this repo's README) cut into chunks, standing in for retrieved passages."""
    # The first 2,800 characters (intro, the two commands, the decide quick start) were kept byte for byte when
    # the README was shortened, so the prompts, and the figures in docs/benchmarks.md, stay comparable.
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    chunks = [text[i:i + 700] for i in range(0, min(len(text), 2800), 700)]

    class Hit:
        def __init__(self, n, chunk):
            self.text, self.citation, self.source, self.score = chunk, f"README.md part {n}", "README.md", 1.0
    return [Hit(n, c) for n, c in enumerate(chunks, 1)]


def _timed(engine, rows: list[Row], gen: GenSettings) -> tuple[float, list]:
    start = time.perf_counter()
    outputs = engine.generate(rows, gen)
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".pytest_cache/d/arena-bundled-data"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--side-tokens", dest="side_tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["a", "b"], default=None)
    parser.add_argument("--child", choices=ENGINES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.tokens)))
        return
    if args.only != "b":
        part_a(args)
    if args.only != "a":
        part_b(args)


if __name__ == "__main__":
    main()
