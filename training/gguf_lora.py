"""A peft LoRA adapter as a GGUF LoRA that llama.cpp (`--lora`) and Ollama (`ADAPTER`) load.

No maintained PyPI package converts peft LoRA to GGUF (llama.cpp's convert_lora_to_gguf.py ships only in its
source tree), so this writes the format with the `gguf` library's writer and tensor-name map, as that script
does:
- general.type = "adapter", adapter.type = "lora", adapter.lora.alpha; llama.cpp scales by alpha / rank;
- for every adapted base weight `W` (GGUF name, e.g. `blk.0.attn_q.weight`) two tensors `W.lora_a` (peft's
  lora_A, rank x in) and `W.lora_b` (peft's lora_B, out x rank), float32;
- llama.cpp's HF -> GGUF conversion permutes the rows of a Llama's q and k projections (rotary halves
  interleaved), so the base GGUF holds permuted q/k weights: lora_b of q_proj/k_proj gets the same row
  permutation, or the adapter would add its update to the wrong rows.
Adapters GGUF cannot express (DoRA's magnitude vector, prompt tuning's virtual tokens, IA3's scaling vectors,
trained copies of whole modules) are refused with an ArenaError naming the method.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foundation.atomic import replace_with
from foundation.errors import ArenaError

PEFT_PREFIX = "base_model.model."
# model_type -> (gguf architecture, whether q/k rows are permuted by llama.cpp's conversion)
ARCHS = {"llama": ("LLAMA", True), "mistral": ("LLAMA", True)}


@dataclass
class GgufLora:
    """One written GGUF LoRA file and what it holds."""

    path: Path
    alpha: float
    rank: int
    tensors: int  # lora_a + lora_b tensors
    arch: str


def lora_config(adapter_dir: Path) -> dict:
    """The adapter's peft config, or ArenaError naming why GGUF cannot hold this adapter."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise ArenaError(f"{adapter_dir} is not a peft adapter (no adapter_config.json): a fully fine-tuned model "
                         "has no LoRA to convert; serve it as a model instead")
    cfg = json.loads(path.read_text())
    method = cfg.get("peft_type", "?")
    if method != "LORA":
        raise ArenaError(f"adapter method {method} cannot be written as a GGUF LoRA (llama.cpp loads only "
                         "LoRA adapters); export the peft folder for vLLM or merge it (arena adapters export)")
    if cfg.get("use_dora"):
        raise ArenaError("adapter method DoRA cannot be written as a GGUF LoRA (llama.cpp has no DoRA magnitude "
                         "vector); merge it instead (arena adapters export)")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ArenaError("a LoRA with per-module rank_pattern/alpha_pattern cannot be written as a GGUF LoRA "
                         "(GGUF holds one alpha)")
    if cfg.get("modules_to_save") or cfg.get("bias", "none") != "none":
        raise ArenaError("a LoRA that also trains whole modules or biases (modules_to_save / bias) cannot be "
                         "written as a GGUF LoRA")
    return cfg


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute over `n_head` heads (k: the kv heads), each head's rows from (2, dim/2)
    halves to interleaved; transformers' GGUF loader undoes it (LlamaTensorProcessor._reverse_permute_weights)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _arch(base_config: dict) -> tuple[str, bool]:
    model_type = base_config.get("model_type", "?")
    if model_type not in ARCHS:
        raise ArenaError(f"GGUF LoRA export supports {', '.join(ARCHS)} base models, not {model_type!r}")
    return ARCHS[model_type]


def gguf_tensors(adapter_dir: Path, base_config: dict) -> dict[str, np.ndarray]:
    """{gguf tensor name: float32 array} for every lora_A/lora_B pair of the adapter."""
    import gguf
    from safetensors.numpy import load_file

    arch, permuted = _arch(base_config)
    n_layers = int(base_config["num_hidden_layers"])
    n_head = int(base_config["num_attention_heads"])
    n_kv = int(base_config.get("num_key_value_heads") or n_head)
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), n_layers)
    weights_file = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise ArenaError(f"{adapter_dir} has no adapter_model.safetensors (only safetensors adapters are read)")
    out = {}
    for key, value in load_file(str(weights_file)).items():
        lora = re.fullmatch(r"(.*)\.lora_([AB])\.weight", key)
        if lora is None:
            raise ArenaError(f"adapter tensor {key!r} is not a LoRA A/B matrix; GGUF cannot hold it")
        module, half = lora.group(1).removeprefix(PEFT_PREFIX), lora.group(2)
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise ArenaError(f"adapter tensor {key!r} targets {module!r}, which has no GGUF tensor name")
        data = value.astype(np.float32)
        if half == "B" and permuted and target.endswith((".attn_q.weight", ".attn_k.weight")):
            data = permute_rows(data, n_kv if ".attn_k." in target else n_head)
        out[f"{target}.lora_{half.lower()}"] = np.ascontiguousarray(data)
    if not out:
        raise ArenaError(f"adapter {adapter_dir} holds no LoRA tensors")
    return out


def write_gguf_lora(adapter_dir: Path, base_config: dict, out: Path) -> GgufLora:
    """Write the adapter at `adapter_dir` as a GGUF LoRA at `out` (atomically: a crash leaves no half file)."""
    import gguf

    cfg = lora_config(adapter_dir)
    tensors = gguf_tensors(adapter_dir, base_config)
    arch = gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, _arch(base_config)[0])]
    # llama.cpp scales by alpha / r: peft's alpha / r as it is, rsLoRA's alpha / sqrt(r) as (alpha * sqrt(r)) / r
    alpha = float(cfg["lora_alpha"]) * (math.sqrt(int(cfg["r"])) if cfg.get("use_rslora") else 1)

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, data in sorted(tensors.items()):
            writer.add_tensor(name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    replace_with(out, write)
    return GgufLora(Path(out), alpha, int(cfg["r"]), len(tensors), arch)
