"""One-time conversion of the local HF base model (and of each peft adapter) for onnxruntime-genai.

Cached under data_dir/models like the GGUF conversion (cache_folder.py: temp folder, marker last). The base
folder's key hashes config.json and each weight file's name, size and modification time, so replacing the
base model (a re-conversion, another folder) builds a new graph instead of reusing a stale one. Adapter files
are keyed by their own content, so a re-trained adapter under the same name is converted again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from assistant.inference import lora_onnx
from foundation import atomic
from foundation.cache_folder import publish, temp_folder, weight_files
from foundation.errors import ArenaError

MARKER = "arena_onnx.json"
PRECISIONS = ("int4", "fp32")


def base_key(hf_folder: Path, precision: str, eos_ids: list[int]) -> str:
    """Short hash of what the graph is built from (config + weight files' identity), precision and EOS ids."""
    digest = hashlib.sha256(f"{precision}|{sorted(eos_ids)}|v1".encode())
    digest.update((hf_folder / "config.json").read_bytes())
    for name, size, mtime_ns in weight_files(hf_folder):
        digest.update(f"{name}|{size}|{mtime_ns}".encode())
    return digest.hexdigest()[:16]


def converted_folder(hf_folder: Path, models_dir: Path, precision: str, eos_ids: list[int],
                     log=print) -> Path:
    """The cached onnxruntime-genai folder for `hf_folder`, building it first when missing."""
    if precision not in PRECISIONS:
        raise ArenaError(f"onnx precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    target = models_dir / "onnx" / f"{hf_folder.name}-{precision}-{base_key(hf_folder, precision, eos_ids)}"
    if not (target / MARKER).is_file():
        log(f"converting {hf_folder} for onnxruntime-genai ({precision}, once) ...")
        start = time.perf_counter()
        tmp = temp_folder(target)
        params = build(hf_folder, tmp, precision, eos_ids)
        publish(tmp, target, MARKER, {"source": str(hf_folder), "precision": precision, "lora_inputs": params,
                                      "seconds": round(time.perf_counter() - start, 1)})
        log(f"converted in {time.perf_counter() - start:.0f} s -> {target}")
    return target


def build(hf_folder: Path, out: Path, precision: str, eos_ids: list[int]) -> dict[str, list[int]]:
    """Run the model builder (a subprocess: it loads a second copy of the weights) and expose LoRA inputs."""
    from transformers import AutoConfig

    template = out.with_name(out.name + "-template")
    shutil.rmtree(template, ignore_errors=True)
    lora_onnx.write_template_adapter(AutoConfig.from_pretrained(hf_folder), template)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_folder), "-o", str(out),
           "-p", precision, "-e", "cpu", "--extra_options", f"adapter_path={template}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        shutil.rmtree(template, ignore_errors=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ArenaError(f"onnxruntime-genai model builder failed for {hf_folder}: {' | '.join(tail)}")
    params = lora_onnx.expose_lora_inputs(out / "model.onnx")
    _set_eos(out / "genai_config.json", eos_ids)
    return params


def _set_eos(config_file: Path, eos_ids: list[int]) -> None:
    """Stop on exactly the tokens the torch engine stops on (the builder adds its own guesses)."""
    config = json.loads(config_file.read_text())
    config["model"]["eos_token_id"] = sorted(eos_ids)
    config_file.write_text(json.dumps(config, indent=4))


def adapter_file(peft_dir: Path, graph_folder: Path, models_dir: Path) -> Path:
    """The cached `.onnx_adapter` of a peft folder for this graph (raises lora_onnx.UnsupportedAdapter)."""
    params = json.loads((graph_folder / MARKER).read_text())["lora_inputs"]
    digest = hashlib.sha256(graph_folder.name.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = peft_dir / name
        if not path.is_file():
            raise lora_onnx.UnsupportedAdapter(f"{peft_dir} has no {name} (not a peft LoRA folder)")
        digest.update(path.read_bytes())
    target = models_dir / "onnx" / "adapters" / f"{digest.hexdigest()[:20]}.onnx_adapter"
    if not target.is_file():
        tensors = lora_onnx.adapter_tensors(peft_dir, params)
        # a single file: the rename is the marker
        atomic.replace_with(target, lambda tmp: lora_onnx.write_onnx_adapter(tensors, tmp))
    return target
