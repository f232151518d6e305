"""Turning a sentence-transformers model into the int8 ONNX graph the ONNX backend runs (see onnx_embedder)."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch


class _Pipeline(torch.nn.Module):
    """The whole sentence-transformers pipeline (transformer, pooling, dense, normalize) as positional tensors."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors):
        return self.model(dict(zip(self.names, tensors, strict=True)))["sentence_embedding"]


def tokenize(model, texts: list[str]) -> dict:
    """The model's own tokenization (sentence-transformers >= 5 calls it preprocess)."""
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def export_fp32(model, path: Path) -> None:
    """Trace the fp32 pipeline to ONNX with dynamic batch and sequence axes."""
    # Two texts of different length, so the traced graph keeps the padding-mask path.
    features = tokenize(model, ["short text", "a somewhat longer text, so that the first one is padded"])
    names = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    axes = {n: {0: "batch", 1: "sequence"} if features[n].dim() > 1 else {0: "batch"} for n in names}
    with _eager_attention(model), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer warns about shape-dependent Python branches; they are constant for a padded batch.
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pipeline(model, names).eval(), tuple(features[n] for n in names), str(path),
                          dynamo=False, input_names=names, output_names=["sentence_embedding"],
                          dynamic_axes=axes | {"sentence_embedding": {0: "batch"}}, opset_version=17)


def fuse(src: Path, dst: Path) -> Path:
    """ORT's transformer fusions (SkipLayerNorm, BiasGelu), about 5% faster; the source graph if they fail.

    Attention fusion stays off: ORT's fused CPU Attention measured slower than the plain matmul/softmax graph.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_attention = False
    try:
        with _quiet():
            optimizer.optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0,
                                     optimization_options=options).save_model_to_file(str(dst))
    except Exception as exc:  # noqa: BLE001 - an unfusable architecture still exports, just unfused
        logging.getLogger(__name__).info("ONNX fusion skipped (%s: %s)", type(exc).__name__, exc)
        return src
    return dst


def weight_matmuls(path: Path) -> tuple[list[str], list[str]]:
    """MatMul node names in graph order that a plan may keep fp32: down-projections and activation-only ones."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    downs, activations = [], []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        shape = shapes.get(node.input[1])
        if shape is None:
            activations.append(node.name)
        elif len(shape) == 2 and shape[0] > shape[1]:
            downs.append(node.name)  # e.g. the FFN's 1536 -> 384: its GELU outputs have the widest ranges
    return downs, activations


def plans(n_downs: int) -> list[int]:
    """How many of the first down-projections to keep fp32, cheapest first."""
    return sorted({0, math.ceil(n_downs / 3), math.ceil(n_downs / 2), n_downs})


def quantize(src: Path, dst: Path, exclude: list[str]) -> None:
    """Dynamic int8 (uint8 activations per tensor, int8 weights per channel) of every MatMul not excluded."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; 0 where either row is zero or not finite (such a graph cannot be trusted)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.nan_to_num(sims, nan=0.0, posinf=0.0, neginf=0.0)


@contextlib.contextmanager
def _eager_attention(model):
    """Trace the eager attention: the SDPA export adds NaN guards on every score tensor, ~15% slower under ORT."""
    from transformers import PreTrainedModel

    changed = []
    for module in model.modules():
        current = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if isinstance(module, PreTrainedModel) and current not in (None, "eager"):
            try:
                module.set_attn_implementation("eager")
                changed.append((module, current))
            except (ValueError, AttributeError):  # this architecture has no eager path: export as it is
                pass
    try:
        yield
    finally:
        for module, previous in changed:
            module.set_attn_implementation(previous)


@contextlib.contextmanager
def _quiet():
    """Silence the quantizer's and optimizer's advice printed through the root logger and warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
