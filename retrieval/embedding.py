"""The Embedder: a sentence-transformers model that returns float32, L2-normalized vectors."""

from __future__ import annotations

import threading

import numpy as np
import torch

from retrieval.embedder import load_embedder

# sentence-transformers' own default; 16/64/128 measured no faster on 2 CPU cores (encode length-sorts each
# call, and ingestion sends all files' chunks in one call, so padding stays small either way).
BATCH_SIZE = 32


class Embedder:
    """Wraps one SentenceTransformer; bf16 only where the hardware has native bf16 (else fp32)."""

    def __init__(self, model, embedder_id: str, dtype: torch.dtype = torch.float32):
        self.model = model
        self.embedder_id = embedder_id
        self.dtype = dtype
        self._lock = threading.Lock()  # one encode at a time: torch already uses every core

    @classmethod
    def load(cls, embedder_id: str, device: str = "cpu", dtype: str = "auto") -> Embedder:
        """Load by id (bundled:..., hub id or folder); dtype auto = bf16 on CUDA or native-bf16 CPUs."""
        model = load_embedder(embedder_id, device=device)
        chosen = pick_dtype(dtype, model.device)
        if chosen != torch.float32:
            model = model.to(chosen)
        return cls(model, embedder_id, chosen)

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length or 512)

    def encode(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Embed texts as float32 rows of unit length (so inner product = cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=False,
                                        convert_to_tensor=True, normalize_embeddings=True,
                                        show_progress_bar=False)
        return np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)


def pick_dtype(choice: str, device: torch.device) -> torch.dtype:
    """Resolve the embedder dtype: emulated bf16 (no avx512_bf16/AMX) is slower than fp32, so avoid it."""
    from assistant.models import resolve_dtype

    if choice == "auto":
        dtype = resolve_dtype("auto", device)
        return torch.float32 if dtype == torch.float16 and device.type == "cpu" else dtype
    return getattr(torch, choice)
