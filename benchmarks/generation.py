"""Generation speed on the bundled model: our engine vs plain transformers, and five variants side by side.

Run: .venv/bin/python benchmarks/generation.py [--data-dir DIR] [--tokens 48] [--side-tokens 96]
     [--repeats 3] [--threads N] [--compile]

(a) single-stream decode tok/s, plain `generate` fp32 eager attention (reference) vs our decode loop with
    each lever (SDPA, threads, bf16 weights, int8 dynamic-quantized Linear layers, optionally a static KV
    cache + torch.compile); runs are interleaved and the median kept, because the 2 cores are shared.
(b) wall time of all five variants in one engine call / the slowest variant alone -> `side-by-side ratio`,
    and whether each row's greedy tokens in the batch equal the same row generated alone (the fp32 contract).
    Measured for our batched LoRA hooks and, in the same run, for peft's `adapter_names` path (reference).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant import variants as V  # noqa: E402
from assistant.engine import BASE, Engine, GenSettings, Row, decode  # noqa: E402
from assistant.models import load_model  # noqa: E402
from assistant.settings import Settings  # noqa: E402

QUESTION = "How do I reset the device to factory settings, and what happens to my saved data?"


def passages() -> list:
    """Real prose (this repo's README) cut into chunks, standing in for retrieved passages."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    chunks = [text[i:i + 700] for i in range(0, min(len(text), 2800), 700)]

    class Hit:
        def __init__(self, n, chunk):
            self.text, self.citation, self.source, self.score = chunk, f"README.md part {n}", "README.md", 1.0
    return [Hit(n, c) for n, c in enumerate(chunks, 1)]


def single_stream(model, tok, ids: list[int], n: int) -> float:
    """Decode tokens/s of our loop (prefill excluded), fixed length."""
    for outs in decode(model, tok, [Row(ids)], GenSettings(max_new_tokens=n), set(), None):
        out = outs[0]
    return (len(out.tokens) - 1) / (out.seconds - out.ttft_s)


def reference(model, tok, ids: list[int], n: int) -> float:
    """Decode tokens/s of plain transformers generate (prefill timed separately and excluded)."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=1, do_sample=False, pad_token_id=tok.eos_token_id)
        t1 = time.perf_counter()
        model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.eos_token_id)
        t2 = time.perf_counter()
    return (n - 1) / ((t2 - t1) - (t1 - t0))


def compiled_static(model, tok, ids: list[int], n: int) -> float:
    """Decode tokens/s of generate with a static KV cache and a torch.compile'd forward."""
    x = torch.tensor([ids])
    kw = dict(do_sample=False, pad_token_id=tok.eos_token_id, cache_implementation="static")
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=1, **kw)
        t1 = time.perf_counter()
        model.generate(x, max_new_tokens=n, min_new_tokens=n, **kw)
        t2 = time.perf_counter()
    return (n - 1) / ((t2 - t1) - (t1 - t0))


def levers(settings: Settings, args) -> dict:
    """name -> (callable, model) for every measured configuration."""
    from transformers import AutoModelForCausalLM

    path = load_model(settings).path
    fp32 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eager = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    bf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
    table = {}
    for threads in sorted({args.threads, 1}, reverse=True):  # other processes make 2 threads spin: measure 1 too
        t = f", {threads} thread{'s' * (threads > 1)}"
        table |= {f"transformers generate fp32 eager{t}": (reference, eager, threads),
                  f"transformers generate fp32 sdpa{t}": (reference, fp32, threads),
                  f"ours fp32 sdpa{t}": (single_stream, fp32, threads),
                  f"ours bf16 sdpa{t}": (single_stream, bf16, threads),
                  f"ours int8 dynamic Linear{t}": (single_stream, int8, threads)}
    if args.compile:
        compiled = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        compiled.forward = torch.compile(compiled.forward, dynamic=False)
        table["generate static cache + torch.compile fp32, 2 threads"] = (compiled_static, compiled, 2)
    return table


def part_a(settings: Settings, args) -> None:
    base = load_model(settings)
    tok = base.tokenizer
    ids = Engine(base).chat_ids(V.base_messages(QUESTION))
    table = levers(settings, args)
    for fn, model, _ in table.values():  # warm-up (and compile) outside the timings
        fn(model, tok, ids, 4)
    results: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.repeats):  # interleaved so load from other processes hits every lever alike
        for name, (fn, model, threads) in table.items():
            torch.set_num_threads(threads)
            results[name].append(fn(model, tok, ids, args.tokens))
    torch.set_num_threads(2)
    print(f"(a) single-stream decode, {args.tokens} new tokens, prompt {len(ids)} tokens, "
          f"median of {args.repeats} interleaved runs; reference = generate fp32 eager, same threads")
    for name, values in results.items():
        ref = statistics.median(results["transformers generate fp32 eager" + name[name.rindex(","):]])
        med = statistics.median(values)
        print(f"  {name:48s} {med:7.1f} tok/s   {med / ref:4.2f}x reference")
    ref = statistics.median(results[f"transformers generate fp32 eager, {args.threads} threads"])
    print_weight_floor(base.model, ref, args.threads)
    try:
        import llama_cpp  # noqa: F401
        print("  llama_cpp importable: run it on the bundled GGUF for the ceiling (not wired here)")
    except ImportError:
        print("  llama_cpp not installed: reference ceiling measured earlier on this machine kind = 129 tok/s")


def stream_bandwidth(threads: int, mb: int = 512) -> float:
    """GB/s of reading a tensor far larger than the caches (best of 5), as a decode step reads its weights."""
    torch.set_num_threads(threads)
    big, best = torch.ones(mb * 2**20 // 4), float("inf")
    for _ in range(5):
        start = time.perf_counter()
        big.sum()
        best = min(best, time.perf_counter() - start)
    return big.numel() * 4 / best / 1e9


def print_weight_floor(model, reference_tok_s: float, threads: int) -> None:
    """One decode step reads every weight once; at the measured bandwidth that bounds fp32 tokens/s."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied head counted once
    gbs = stream_bandwidth(threads)
    ceiling = gbs * 1e9 / weight_bytes
    print(f"  fp32 ceiling: {weight_bytes / 1e6:.0f} MB of weights read per token at {gbs:.1f} GB/s (measured "
          f"read bandwidth) = at most {ceiling:.1f} tok/s with zero other work, {ceiling / reference_tok_s:.2f}x "
          f"the reference")


def variant_rows(engine: Engine, adapter: str, max_new: int) -> dict[str, Row]:
    shots = [{"question": "How do I update the firmware?", "answer": "Open Settings › System › Update."},
             {"question": "Where is the serial number?", "answer": "On the label under the battery."}]
    hits, _ = V.fit_hits(passages(), V.rag_budget(engine.context_length, max_new, 80), engine.count_tokens)
    msgs = {"base": V.base_messages(QUESTION), "prompt": V.prompt_messages(QUESTION, V.DEFAULT_SYSTEM_PROMPT, shots),
            "rag": V.rag_messages(QUESTION, hits), "finetuned": V.base_messages(QUESTION),
            "rag+finetuned": V.rag_messages(QUESTION, hits)}
    return {n: Row(engine.chat_ids(m), adapter if n in V.ADAPTER_VARIANTS else None) for n, m in msgs.items()}


class FixedLength(Engine):
    """Ignores end-of-sequence so every run produces exactly max_new_tokens (fair timings)."""

    eos_ids = set()


class PeftMixed(FixedLength):
    """Reference: the same engine routing LoRA rows through peft's own mixed-batch path (`adapter_names`)."""

    def _router(self, names):
        if all(n == BASE for n in names):
            return None
        return lambda idx: self.model.base_model._enable_peft_forward_hooks(adapter_names=[names[i] for i in idx])


def part_b(settings: Settings, args) -> None:
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(args.threads)
    base = load_model(settings)
    with tempfile.TemporaryDirectory() as tmp:
        peft = get_peft_model(copy.deepcopy(base.model), LoraConfig(r=16, target_modules="all-linear"))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.01)
        peft.save_pretrained(tmp)
        del peft
        engine = FixedLength(base)
        engine.load_adapter("bench", Path(tmp))
        rows = variant_rows(engine, "bench", args.side_tokens)
        gen = GenSettings(max_new_tokens=args.side_tokens)
        engine.generate([rows["base"]], GenSettings(max_new_tokens=2))  # warm-up
        engines = [("ours (batched LoRA hooks)", engine)]
        if args.peft_reference:
            reference = PeftMixed(base)  # shares the same PeftModel: peft's hooks instead of ours
            reference.model, reference.slots = engine.model, engine.slots
            engines.append(("peft adapter_names", reference))
        results, exact = {}, {}
        for label, eng in engines:
            alone = {n: _timed(eng, [r], gen) for n, r in rows.items()}
            together = _timed(eng, list(rows.values()), gen)
            results[label] = ({n: s for n, (s, _) in alone.items()}, together[0])
            exact[label] = sum(a[1][0].tokens == b.tokens for a, b in zip(alone.values(), together[1], strict=True))
    print(f"(b) five variants, {args.side_tokens} new tokens each, {args.threads} thread(s); prompt tokens: "
          + ", ".join(f"{n} {len(r.input_ids)}" for n, r in rows.items()))
    for label, (alone, together) in results.items():
        slowest = max(alone, key=alone.get)
        print(f"  {label}: alone " + ", ".join(f"{n} {s:.2f} s" for n, s in alone.items()))
        print(f"  {label}: all five in one call {together:.2f} s; slowest alone {slowest} {alone[slowest]:.2f} s;"
              f" ratio {together / alone[slowest]:.2f}; {exact[label]}/{len(rows)} rows token-exact vs alone")
    alone, together = results["ours (batched LoRA hooks)"]
    print(f"side-by-side ratio: {together / max(alone.values()):.2f}")


def _timed(engine: Engine, rows: list[Row], gen: GenSettings) -> tuple[float, list]:
    start = time.perf_counter()
    outputs = engine.generate(rows, gen)
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".pytest_cache/d/arena-bundled-data"))
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--side-tokens", dest="side_tokens", type=int, default=96,
                        help="new tokens per variant in part b (answers, not just prefill, should dominate)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure static cache + torch.compile")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for part b (1 is faster when other processes load the cores)")
    parser.add_argument("--only", choices=["a", "b"], default=None)
    parser.add_argument("--no-peft-reference", dest="peft_reference", action="store_false",
                        help="part b: skip the same measurement through peft's adapter_names path")
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, dtype="float32")
    if args.only != "b":
        part_a(settings, args)
    if args.only != "a":
        part_b(settings, args)


if __name__ == "__main__":
    main()
