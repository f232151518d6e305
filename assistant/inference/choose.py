"""Which engine generates: onnxruntime-genai on CPU for Llama-architecture models, torch otherwise.

fp32 is the default onnx precision, chosen by measurement (benchmarks/compare_throughput.py, docs/benchmarks.md,
"Generation figures"): the fp32 graph gives torch's greedy tokens exactly (40/40 answers on the bundled model) at
3.1x the previous engine's comparison throughput (both on every core), while int4 (another 1.1-1.2x) kept 2 of
200 answers and changed the best variant of a 40-question comparison. A comparison must not change its verdict
with the engine, so int4 stays opt-in (`--engine onnx-int4`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.inference.ort_build import converted_folder
from foundation.errors import ArenaError

DEFAULT_PRECISION = "fp32"
SUPPORTED_TYPES = {"llama"}  # what our LoRA graph surgery (lora_onnx.py) knows the projections of


def plan(engine: str, model_path: str, device: str) -> tuple[str, str]:
    """(engine to build, notice why it is not the requested one or "") without loading anything."""
    if engine != "auto" and not engine.startswith("onnx"):
        return engine, ""  # torch, or an engine chosen outright (openai: a server the user runs)
    precision = engine.removeprefix("onnx-") if engine.startswith("onnx-") else DEFAULT_PRECISION
    reason = _unsupported(model_path, device)
    if reason:
        return "torch", f"generation engine: torch ({reason}; onnx needs a local Llama-architecture model on CPU)"
    return f"onnx-{precision}", ""


def _unsupported(model_path: str, device: str) -> str:
    from assistant.inference.ortgenai import available  # deferred: pulls torch

    if not str(device).startswith("cpu"):
        return f"device {device}"
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return f"{model_path} is not a local model folder"
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type!r} is not supported by the onnx conversion"
    if not available():
        return "onnxruntime-genai is not installed"
    return ""


def build_engine(engine: str, loaded, models_dir: Path, log=None):
    """(engine, notice): the planned engine, or the torch engine with a notice when onnx cannot be built."""
    from assistant.inference.torch_engine import Engine  # deferred: pulls torch

    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    reference = Engine(loaded)
    name, notice = plan(engine, loaded.path, str(loaded.device))
    if name == "torch":
        return reference, notice
    from assistant.inference.ortgenai import OrtGenaiEngine  # deferred: pulls torch

    try:
        folder = converted_folder(Path(loaded.path), models_dir, name.removeprefix("onnx-"),
                                  sorted(reference.eos_ids), log=log)
        return OrtGenaiEngine(reference, folder, models_dir), ""
    except (ArenaError, OSError, RuntimeError) as exc:  # RuntimeError: onnxruntime-genai's load errors
        return reference, f"generation engine: torch (onnx conversion failed: {exc})"
