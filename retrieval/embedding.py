"""The Embedder: a sentence-transformers model that returns float32, L2-normalized vectors.

Two backends compute them: torch (the model as loaded) and ONNX Runtime int8 (retrieval/onnx_embedder.py),
~1.2-1.3x faster on CPUs without native bf16 (AVX-512 VNNI here) and within cosine 0.995 of torch fp32. Both give the same model's
vectors for the store (its identity check and chunk-vector cache key on the model id): a store ingested
with one backend and searched with the other measured the same recall@5 / MRR on the FAQ benchmark.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch

from foundation.models import resolve_dtype
from retrieval.embedder import load_embedder, resolve_embedder_path
from retrieval.onnx_embedder import OnnxBackendError, load_onnx_encoder

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")

# sentence-transformers' own default; 16/64/128 measured no faster on 2 CPU cores (encode length-sorts each
# call, and ingestion sends all files' chunks in one call, so padding stays small either way). The ONNX
# backend too: 8-16 gained ~5% on one thread but lost ~8% on two.
BATCH_SIZE = 32


class Embedder:
    """Wraps one SentenceTransformer; bf16 only where the hardware has native bf16 (else fp32 or ONNX int8)."""

    def __init__(self, model, embedder_id: str, dtype: torch.dtype = torch.float32, onnx=None):
        self.model = model
        self.embedder_id = embedder_id
        self.dtype = dtype
        self.onnx = onnx  # an OnnxEncoder when the ONNX backend serves encode()
        self.backend_note = ""  # why torch serves a request for onnx/auto (empty when nothing to say)
        self._lock = threading.Lock()  # one encode at a time: torch / ORT already use every core

    @classmethod
    def load(cls, embedder_id: str, device: str = "cpu", dtype: str = "auto", backend: str = "auto",
             cache_dir: Path | None = None) -> Embedder:
        """Load by id (bundled:..., hub id or folder); dtype auto = bf16 on CUDA or native-bf16 CPUs.

        backend: torch, onnx (int8 ONNX Runtime, exported once into cache_dir/embedders) or auto (onnx on
        CPUs where torch would run fp32, when onnxruntime is installed). onnx falls back to torch, with the
        reason logged and kept in ``backend_note``, when it cannot serve this model.
        """
        if backend not in BACKENDS:
            raise ValueError(f"embedder backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        model = load_embedder(embedder_id, device=device)
        # The export traces the fp32 model, so an explicit onnx request keeps it fp32 unless a dtype is forced.
        on_cpu = model.device.type == "cpu"
        # resolve_dtype's auto never picks emulated bf16 (slower than fp32) or fp16 on a CPU
        chosen = torch.float32 if backend == "onnx" and dtype == "auto" and on_cpu else resolve_dtype(dtype, model.device)
        if chosen != torch.float32:
            model = model.to(chosen)
        embedder = cls(model, embedder_id, chosen)
        if backend != "torch":
            embedder._try_onnx(backend, cache_dir)
        return embedder

    @classmethod
    def from_settings(cls, settings, device: str = "cpu") -> Embedder:
        """settings.embedder with settings.embedder_backend; ONNX exports are cached under data_dir/models."""
        return cls.load(settings.embedder, device, backend=settings.embedder_backend, cache_dir=settings.models_dir)

    def _try_onnx(self, backend: str, cache_dir: Path | None) -> None:
        """Switch encode() to the ONNX backend when it applies; otherwise note (and log) why not."""
        if self.model.device.type != "cpu" or self.dtype != torch.float32:
            reason = f"torch {str(self.dtype).removeprefix('torch.')} on {self.model.device} is the faster path"
        elif cache_dir is None:
            reason = "no cache folder for the ONNX export was given"
        else:
            try:  # OnnxBackendError also when onnxruntime is not installed
                self.onnx = load_onnx_encoder(self.model, resolve_embedder_path(self.embedder_id), Path(cache_dir),
                                              torch.get_num_threads())
                return
            except OnnxBackendError as exc:
                reason = str(exc)
        self.backend_note = f"ONNX backend not used for {self.embedder_id}: {reason}"
        (log.warning if backend == "onnx" else log.info)("%s; using torch", self.backend_note)

    @property
    def backend(self) -> str:
        """What computes the vectors: onnx-int8 or torch-<dtype>."""
        return self.onnx.info.get("backend", "onnx") if self.onnx else f"torch-{str(self.dtype).removeprefix('torch.')}"

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def encode(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Embed texts as float32 rows of unit length (so inner product = cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.onnx is not None:
            with self._lock:
                return self.onnx.encode(list(texts), batch_size)
        with self._lock, torch.inference_mode():
            vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=False,
                                        convert_to_tensor=True, show_progress_bar=False)
            # Normalised in fp32: a bf16 model's own normalisation leaves norms off by up to ~0.4 %.
            vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
        return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)
