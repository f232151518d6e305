"""`arena export`: the chosen strategy as one self-describing folder, and reading such a folder back.

OUT/
  strategy.yaml            what is served: variant, adapter, prompts, retrieval settings, origin
  prompts.json             the variant's prompt texts as the comparison served them
  adapters/NAME/           the peft adapter (vLLM --lora-modules NAME=OUT/adapters/NAME)
  NAME.gguf                the same adapter as a GGUF LoRA (llama.cpp --lora, Ollama ADAPTER)
  Modelfile                Ollama: FROM the base GGUF, ADAPTER NAME.gguf
  index/                   RAG variants: the document store (chunks, embeddings, FAISS, BM25) at one generation
  SERVING.md               the exact commands
  arena_bundle.json        written LAST: a folder without it is an interrupted export and is never served

The bundle is built in a temp folder beside OUT and renamed into place after its marker
(foundation.cache_folder), so a crash or kill -9 leaves no half bundle at OUT.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.decide.config import decision_index
from assistant.ship import serving
from assistant.ship.strategy import Strategy
from foundation.cache_folder import publish, temp_folder
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.variants import ADAPTER_VARIANTS, RAG_INSTRUCTION, RAG_VARIANTS
from retrieval.snapshot import snapshot_index
from retrieval.store import app_index, has_index

MARKER = "arena_bundle.json"
STRATEGY = "strategy.yaml"
FORMAT = 1


@dataclass
class Bundle:
    """A complete exported bundle on disk."""

    folder: Path
    strategy: Strategy

    @property
    def index_dir(self) -> Path | None:
        return self.folder / self.strategy.index if self.strategy.index else None


def export_bundle(strategy: Strategy, settings, out: Path, base_gguf: Path | None = None,
                  on_step=None) -> Bundle:
    """Write the bundle for `strategy` (resolved against `settings.data_dir`) to the new folder `out`.

    `on_step(name)` is called before each part is written (progress; tests use it to kill mid-export)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArenaError(f"export folder {out} exists and is not empty")
    step = on_step or (lambda name: None)
    tmp = temp_folder(out)
    try:
        if strategy.variant in ADAPTER_VARIANTS:
            step("adapter")
            _copy_adapter(strategy, settings, tmp)
            step("gguf")
            _write_gguf(strategy, settings, tmp)
        if strategy.variant in RAG_VARIANTS:
            step("index")
            snapshot_index(_index_source(strategy, settings), tmp / "index")
            strategy.index = "index"
        step("prompts")
        (tmp / "prompts.json").write_text(json.dumps(prompts(strategy), indent=1, ensure_ascii=False))
        strategy.to_yaml(tmp / STRATEGY)
        if strategy.gguf:
            (tmp / "Modelfile").write_text(serving.modelfile(strategy, base_gguf))
        (tmp / "SERVING.md").write_text(serving.serving_md(strategy, out, base_gguf))
        step("marker")
        publish(tmp, out, MARKER, {"format": FORMAT, "model": strategy.model_name, "created": time.time()})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_bundle(out)


def _index_source(strategy: Strategy, settings) -> Path:
    """The index the strategy was measured on: its decision's own (decide/<name>/index), else the data
    folder's (a strategy from flags, or a decision made before decisions had their own index)."""
    own = decision_index(settings.data_dir, strategy.decision) if strategy.decision else None
    return own if own and has_index(own) else app_index(settings.data_dir)


def _copy_adapter(strategy: Strategy, settings, tmp: Path) -> None:
    info = AdapterRegistry(settings.data_dir).get(strategy.adapter)
    if info.peft_type is None:
        raise ArenaError(f"adapter {info.name!r} is a fully fine-tuned model, not a peft adapter; serve it as the "
                         "base model (--model FOLDER) instead")
    target = tmp / "adapters" / info.name
    # The registry marker comes along: the bundle's adapters/ is read back with the same AdapterRegistry.
    shutil.copytree(info.path, target)
    strategy.peft = f"adapters/{info.name}"


def _write_gguf(strategy: Strategy, settings, tmp: Path) -> None:
    from foundation.registry import base_path  # deferred: resolving the bundled model pulls torch
    from training.gguf_lora import write_gguf_lora  # deferred: numpy/gguf/safetensors

    info = AdapterRegistry(settings.data_dir).get(strategy.adapter)
    config = json.loads((Path(base_path(info, settings)) / "config.json").read_text())
    write_gguf_lora(info.path, config, tmp / f"{info.name}.gguf")
    strategy.gguf = f"{info.name}.gguf"


def base_gguf(model: str) -> Path | None:
    """The GGUF file of a bundled base model (what llama.cpp and Ollama load under the adapter), else None."""
    from foundation.models import BUNDLED, bundled_gguf  # deferred: pulls torch

    return bundled_gguf(model) if model in BUNDLED else None


def prompts(strategy: Strategy) -> dict:
    """The variant's prompt texts: what the comparison put around each question."""
    body = {"variant": strategy.variant}
    if strategy.variant == "prompt":
        body.update(system_prompt=strategy.system_prompt, few_shot=strategy.few_shot,
                    few_shot_nearest=strategy.dynamic_k,
                    how="system prompt, then the few-shot pairs nearest the question as earlier turns, then the "
                        "conversation")
    elif strategy.variant in RAG_VARIANTS:
        body.update(system_instruction=RAG_INSTRUCTION,
                    how=f"system turn = instruction + 'Context:' + the top {strategy.rag_k} passages "
                        f"({strategy.rag_mode} search) numbered [n], best last; then the conversation")
    else:
        body["how"] = "the conversation as it is, no system turn"
    return body


def open_bundle(folder: Path) -> Bundle:
    """A complete bundle, or ArenaError saying why `folder` is not one."""
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise ArenaError(f"{folder} is not a complete bundle (no {MARKER}; an interrupted export leaves none): "
                         "export it again with arena export")
    meta = json.loads((folder / MARKER).read_text())
    if meta.get("format") != FORMAT:
        raise ArenaError(f"bundle {folder} has format {meta.get('format')}, this arena reads format {FORMAT}")
    strategy = Strategy.from_yaml(folder / STRATEGY)
    return Bundle(folder, strategy)


def bundle_json(bundle: Bundle) -> dict:
    return {"folder": str(bundle.folder), "model": bundle.strategy.model_name, **asdict(bundle.strategy)}
