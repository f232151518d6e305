"""Adapter registry: <data_dir>/adapters/<name>/ with peft files (or a full model), job YAML and metrics."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import ArenaError
from foundation.paths import confine

MARKER = "arena_adapter.json"  # written last: a folder without it is incomplete and ignored
QUESTIONS = "training_questions.json"


@dataclass
class AdapterInfo:
    """One complete registered adapter (or full fine-tuned model folder when peft_type is None)."""

    name: str
    path: Path
    method: str
    base_model: str
    created: float
    metrics: dict
    peft_type: str | None
    kind: str = "adapter"  # "reward": a reward model (training/reward.py), never offered as a chat variant


class AdapterRegistry:
    """Reads the adapters folder on every call, so new adapters show up without a restart."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "adapters"

    def list(self) -> list[AdapterInfo]:
        if not self.root.is_dir():
            return []
        infos = [self._read(p) for p in sorted(self.root.iterdir()) if (p / MARKER).is_file()]
        return sorted((i for i in infos if i), key=lambda i: i.created)

    def _read(self, folder: Path) -> AdapterInfo | None:
        try:
            meta = json.loads((folder / MARKER).read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged marker: treat as incomplete rather than break the whole list
        return AdapterInfo(folder.name, folder, meta.get("method", "?"), meta.get("base_model", ""),
                           float(meta.get("created", 0)), meta.get("metrics", {}), meta.get("peft_type"),
                           meta.get("kind", "adapter"))

    def chat_adapters(self) -> list[AdapterInfo]:
        """The adapters a chat or compare variant can use (reward models score answers, they do not write them)."""
        return [i for i in self.list() if i.kind == "adapter"]

    def names(self) -> list[str]:
        return [i.name for i in self.list()]

    def folder(self, name: str) -> Path:
        """Where adapter `name` lives: one entry of adapters/, whatever the name (see foundation.paths)."""
        return confine(self.root, name, "adapter name")

    def get(self, name: str) -> AdapterInfo:
        folder = self.folder(name)
        info = self._read(folder) if (folder / MARKER).is_file() else None
        if info is None:
            raise ArenaError(f"unknown adapter {name!r}; available: {', '.join(self.names()) or 'none'}")
        return info

    def training_questions(self, name: str) -> list[str]:
        path = self.get(name).path / QUESTIONS
        return json.loads(path.read_text()) if path.is_file() else []

    def unique_name(self, name: str) -> str:
        base = self.folder(name).name
        candidate, n = base, 2
        while (self.root / candidate).exists():
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def register(self, name: str, artifact: Path, meta: dict, questions: list[str],
                 extra_files: dict[str, Path] | None = None) -> AdapterInfo:
        """Move a finished artifact folder in under a unique name; the marker is written last."""
        final = self.unique_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{final}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(artifact, tmp)
        for target, src in (extra_files or {}).items():
            if Path(src).is_file():
                shutil.copy2(src, tmp / target)
        (tmp / QUESTIONS).write_text(json.dumps(questions, ensure_ascii=False))
        (tmp / MARKER).write_text(json.dumps({"created": time.time(), **meta}, default=str))
        tmp.rename(self.root / final)
        return self.get(final)

    def delete(self, name: str) -> None:
        info = self.get(name)
        # Remove the marker first so a half-deleted folder is never listed as complete.
        (info.path / MARKER).unlink()
        shutil.rmtree(info.path)

    def rename(self, old: str, new: str) -> AdapterInfo:
        info = self.get(old)
        target = self.folder(new)
        if target.exists():
            raise ArenaError(f"an adapter named {target.name!r} already exists")
        info.path.rename(target)
        return self.get(target.name)

    def merge_export(self, name: str, out_dir: Path, settings) -> Path:
        """Merge a LoRA/IA3 adapter into its base model and save a plain HF model folder."""
        from transformers import AutoTokenizer

        info = self.get(name)
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise ArenaError(f"export folder {out_dir} exists and is not empty")
        if info.peft_type is None:
            shutil.copytree(info.path, out_dir, dirs_exist_ok=True)  # already a full model
            return out_dir
        if info.peft_type not in {"LORA", "IA3"}:
            raise ArenaError(f"adapter {name!r} is {info.peft_type}: only LoRA/DoRA and IA3 adapters can be merged "
                             "into the base weights")
        model = load_adapter_model(info, settings).merge_and_unload()
        model.save_pretrained(out_dir, safe_serialization=True)
        tok_src = info.path if (info.path / "tokenizer_config.json").is_file() else base_path(info, settings)
        AutoTokenizer.from_pretrained(tok_src).save_pretrained(out_dir)
        return out_dir


def base_path(info: AdapterInfo, settings) -> str:
    from foundation.models import resolve_model_path  # deferred: pulls torch

    return resolve_model_path(info.base_model or settings.model, settings)


def load_adapter_model(info: AdapterInfo, settings, dtype=None):
    """The base model with this adapter attached (or the full fine-tuned model), in eval mode."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from foundation.models import require_safetensors  # deferred: pulls torch

    dtype = dtype or torch.float32
    require_safetensors(info.path, f"adapter {info.name!r} folder")
    if info.peft_type is None:
        return AutoModelForCausalLM.from_pretrained(info.path, dtype=dtype, use_safetensors=True).eval()
    base = AutoModelForCausalLM.from_pretrained(base_path(info, settings), dtype=dtype, use_safetensors=True)
    return PeftModel.from_pretrained(base, info.path).eval()
