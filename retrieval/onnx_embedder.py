"""ONNX Runtime backend for the Embedder: the sentence-transformers model exported once to ONNX, its weight
matmuls quantized to int8 (dynamic, per-channel: VNNI kernels on x86), checked against torch fp32 and cached.

Why int8 and not fp32 ONNX: on CPUs without native bf16, ORT fp32 measured no faster than torch fp32, while
int8 weight matmuls run ~1.45x faster. Quantizing every one costs too much quality (mean cosine ~0.993 on
MiniLM), most of it from the FFN down-projections of the first layers, so the export tries plans that keep
more of those in fp32 until the probe texts stay within the quality gate (MiniLM: 3 of 6, ~1.3x), else torch.
Why not sentence-transformers' own `backend="onnx"` + `export_dynamic_quantized_onnx_model`: they need
optimum-onnx, whose newest release (0.1.0, checked 2026-12) requires transformers<4.58 while we run 5.x.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

import numpy as np

from foundation.cache_folder import publish, temp_folder
from foundation.errors import ArenaError
from foundation.metrics import unit_rows
from retrieval.onnx_export import cosines, export_fp32, fuse, plans, quantize, tokenize, weight_matmuls

log = logging.getLogger(__name__)

CACHE_MARKER = "export.json"  # written last: a folder without it is an interrupted export and is redone
RECIPE = 1  # bump when the export or quantization recipe changes, so old caches are rebuilt
MIN_MEAN_COSINE, MIN_COSINE = 0.995, 0.98  # probe vectors vs torch fp32, else the plan is rejected
BACKEND = "onnx-int8"

# Text like what gets embedded: manual chunks, prose, tables, short queries, codes (quality is checked on these).
PROBES = [
    "Step 1: check the pump near the boiler and inspect it every 14 days (ref 3-1-0). Step 2: check the "
    "valve near the grinder and replace it every 40 cycles (ref 3-1-1). Step 3: tighten the seal monthly.",
    "## Descaling\nFill the tank with 500 ml of water and one sachet of descaler, then hold the steam and "
    "hot-water keys together for three seconds. The cycle takes 25 minutes and must not be interrupted.",
    "E-07 means the brew unit is not locked in place. Open the side door and push the brew unit until it clicks.",
    "What is the procedure for removing limescale build-up?",
    "display shows E-12",
    "How frequently does the frother need a deep clean?",
    "The warranty covers manufacturing defects for 24 months from the date of purchase, provided the machine "
    "was serviced by an authorised partner and only genuine spare parts and MC-3 cleaning tablets were used.",
    "Termination. Either party may terminate this agreement with ninety (90) days' written notice. Upon "
    "termination, the licensee shall return or destroy all confidential information within thirty days.",
    "The mitochondrion is the powerhouse of the cell: it turns nutrients into ATP through oxidative "
    "phosphorylation, and its own small genome is inherited almost exclusively from the mother.",
    "| setting | default | range |\n| grind size | 5 | 1-9 |\n| water hardness | 3 | 1-4 |\n| auto-off | 30 min | 15-240 min |",
    "def load(path):\n    with open(path) as f:\n        return json.load(f)  # raises ValueError on bad JSON",
    "Quarterly revenue rose 12% to $4.2 billion, driven by services; operating margin narrowed to 18.5% "
    "as the company kept investing in data centres and paid a one-off restructuring charge of $310 million.",
    "Der Wassertank fasst 1,8 Liter. Entkalken Sie die Maschine alle drei Monate mit dem mitgelieferten Mittel.",
    "reset password",
    "Part no. 4471-B (gasket, 38 mm) replaces 4471-A from serial number AQ2-2023-0815 onwards.",
    "After a long storage period, run two hot-water cycles without a cup, then brew and discard the first "
    "espresso. If the display still shows a blocked water circuit, contact service and quote the error code. "
    "Never use vinegar or citric acid: both attack the aluminium boiler and void the warranty.",
]


class OnnxBackendError(ArenaError):
    """The ONNX backend cannot serve this model (not installed, export failed, or quality gate missed)."""


def cache_folder(cache_dir: Path, model_path: str) -> Path:
    """Folder for one model's export: named after the model, keyed by its path, weight files and recipe."""
    local = Path(model_path)
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(local.glob("*"))
             if p.suffix in {".safetensors", ".bin", ".json"}] if local.is_dir() else []
    key = hashlib.sha256(json.dumps([str(local.resolve()) if local.is_dir() else model_path, stamp, RECIPE])
                         .encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", local.name if local.is_dir() else model_path).strip("-.")
    # The bundled package's folder is just "model": its parent names it.
    if local.is_dir() and local.name == "model":
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", local.parent.name)
    return Path(cache_dir) / "embedders" / f"{name[:60]}-{key}"


class OnnxEncoder:
    """Runs the cached int8 graph; tokenization stays with the sentence-transformers model (same ids, same truncation)."""

    def __init__(self, model, onnx_path: Path, threads: int, info: dict):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # follow torch's setting (OMP_NUM_THREADS / set_num_threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.model = model
        self.info = info

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """float32 unit rows in input order; longest first so each batch pads little (as sentence-transformers)."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 0), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            features = tokenize(self.model, [texts[i] for i in idx])
            rows = unit_rows(self.session.run(None, {n: features[n].numpy() for n in self.inputs})[0])
            if out.shape[1] == 0:
                out = np.empty((len(texts), rows.shape[1]), dtype=np.float32)
            out[idx] = rows
        return out


def load_onnx_encoder(model, model_path: str, cache_dir: Path, threads: int) -> OnnxEncoder:
    """The cached int8 export of ``model`` (exported, quantized and checked on first use); OnnxBackendError if not possible."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxBackendError(f"{exc.name or 'onnxruntime'} is not installed (pip install onnxruntime onnx)") from None
    folder = cache_folder(cache_dir, model_path)
    if not (folder / CACHE_MARKER).is_file():
        export_model(model, folder)
    info = json.loads((folder / CACHE_MARKER).read_text())
    if not info.get("ok"):
        raise OnnxBackendError(f"{info.get('reason')} (cached verdict in {folder}; delete it to retry)")
    try:
        return OnnxEncoder(model, folder / "model.onnx", threads, info)
    except Exception as exc:  # noqa: BLE001 - a damaged cache file must not stop the app: torch still works
        raise OnnxBackendError(f"cannot open {folder / 'model.onnx'} ({type(exc).__name__}: {str(exc)[:200]}); "
                               "delete the folder to export again") from exc


def export_model(model, target: Path) -> None:
    """Export, quantize and check in a temp folder, then rename it into place (marker last, so crashes redo it).

    A model that cannot be exported or misses the quality gate gets a marker too (ok: false), so the slow
    attempt is not repeated on every start; deleting the folder retries.
    """
    tmp = temp_folder(target)
    started = time.perf_counter()
    try:
        info = {"ok": True, "backend": BACKEND, **_export_and_quantize(model, tmp)}
    except OnnxBackendError as exc:
        info = {"ok": False, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any exporter failure means "use torch", with the reason kept
        info = {"ok": False, "reason": f"ONNX export failed: {type(exc).__name__}: {str(exc)[:300]}"}
    for leftover in tmp.glob("*"):  # intermediate graphs, and a rejected plan's graph
        if leftover.name != "model.onnx" or not info["ok"]:
            leftover.unlink()
    info.update(recipe=RECIPE, seconds=round(time.perf_counter() - started, 1), created=time.time())
    publish(tmp, target, CACHE_MARKER, info)


def _export_and_quantize(model, folder: Path) -> dict:
    """fp32 export, fusion, then int8 plans keeping more down-projections fp32 until the probes pass."""
    import torch

    export_fp32(model, folder / "fp32.onnx")
    graph = fuse(folder / "fp32.onnx", folder / "fused.onnx")
    with torch.inference_mode():
        reference = model.encode(PROBES, batch_size=8, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
    downs, activations = weight_matmuls(graph)
    tried = []
    for keep in plans(len(downs)):
        # Activation-only matmuls (attention scores) stay fp32: quantizing them was slower and less exact.
        quantize(graph, folder / "model.onnx", activations + downs[:keep])
        mean, low = _check(model, folder / "model.onnx", reference)
        tried.append(f"{keep}/{len(downs)} fp32: mean {mean:.4f} min {low:.4f}")
        if mean >= MIN_MEAN_COSINE and low >= MIN_COSINE:
            return {"fused": graph.name == "fused.onnx", "fp32_down_projections": f"{keep}/{len(downs)}",
                    "probe_cosine_mean": round(mean, 5), "probe_cosine_min": round(low, 5), "tried": tried}
    raise OnnxBackendError(f"int8 ONNX export misses the quality gate (cosine to fp32 mean >= {MIN_MEAN_COSINE}, "
                           f"min >= {MIN_COSINE}) on the probe texts; tried {'; '.join(tried)}")


def _check(model, path: Path, reference: np.ndarray) -> tuple[float, float]:
    """Cosine of the graph's probe vectors to torch fp32; batched (padded) and one text alone both count."""
    encoder = OnnxEncoder(model, path, threads=1, info={})
    sims = np.concatenate([cosines(encoder.encode(PROBES, 8), reference),
                           cosines(encoder.encode(PROBES[:1], 8), reference[:1])])
    return float(sims.mean()), float(sims.min())
