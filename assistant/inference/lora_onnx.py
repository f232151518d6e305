"""peft LoRA adapters as run-time inputs of an onnxruntime-genai graph.

The model builder bakes an adapter into the graph as constants. We build once with an all-zero template
adapter over every projection, then turn each LoRA MatMul's weight into a graph input whose default (an
initializer of the same name) is an empty [in, 0] / [0, out] tensor: with no adapter active the LoRA path adds
nothing and the graph is the base model. Each peft adapter becomes an `.onnx_adapter` file (onnxruntime's
adapter format) holding those inputs; `og.Adapters` switches between them per generator at run time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from foundation.errors import ArenaError

PROJECTIONS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "attn",
               "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
# "/model/layers.3/attn/q_proj/lora_A/MatMul" (fp32) or ".../MatMul_Q4" (int4: the builder quantizes it too)
LORA_NODE = re.compile(r"^/(model/layers\.\d+/(?:attn|mlp)/\w+)/lora_([AB])/MatMul(?:_Q4)?$")
# peft key of a Llama projection's LoRA weight
PEFT_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


class UnsupportedAdapter(ArenaError):
    """An adapter this graph cannot take as inputs (it then runs on the torch engine)."""


def param_name(layer: int, block: str, proj: str, ab: str) -> str:
    """The graph input of one LoRA weight (the builder's own initializer name)."""
    return f"model.layers.{layer}.{block}.{proj}.lora_{ab}.MatMul.weight"


def projection_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) features of each Llama projection."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q, kv = config.num_attention_heads * head, config.num_key_value_heads * head
    return {"q_proj": (hidden, q), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (q, hidden),
            "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}


def write_template_adapter(config, folder: Path) -> None:
    """A rank-1, all-zero peft LoRA on every projection: only makes the builder emit the LoRA subgraphs."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for proj, (fan_in, fan_out) in projection_shapes(config).items():
            block = "self_attn" if PROJECTIONS[proj] == "attn" else "mlp"
            key = f"base_model.model.model.layers.{layer}.{block}.{proj}"
            tensors[f"{key}.lora_A.weight"] = np.zeros((1, fan_in), np.float32)
            tensors[f"{key}.lora_B.weight"] = np.zeros((fan_out, 1), np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": sorted(PROJECTIONS),
        "task_type": "CAUSAL_LM", "bias": "none", "base_model_name_or_path": None}))


def expose_lora_inputs(model_file: Path) -> dict[str, list[int]]:
    """Rewrite the LoRA MatMuls of a built graph to take their weights as optional inputs.

    Returns {input name: [in, out]} of the LoRA weights (the graph's adapter interface).
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_file), load_external_data=False)  # weights stay in model.onnx.data
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    params, dropped, nodes = {}, set(), []
    for node in graph.node:
        match = LORA_NODE.match(node.name)
        if not match:
            nodes.append(node)
            continue
        prefix, ab = match.groups()
        name = f"{prefix.replace('/', '.')}.lora_{ab}.MatMul.weight"
        fan_in, fan_out = _matmul_dims(node, inits)
        params[name] = [fan_in, fan_out]
        dropped.update(node.input[1:])
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [node.output[0]],
                                      name=f"/{prefix}/lora_{ab}/MatMul"))
    if not params:
        raise ArenaError(f"{model_file} has no LoRA MatMul nodes to expose")
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for name, (fan_in, fan_out) in params.items():
        shape = [fan_in, "lora_rank"] if ".lora_A." in name else ["lora_rank", fan_out]
        empty = [fan_in, 0] if ".lora_A." in name else [0, fan_out]
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        graph.initializer.append(helper.make_tensor(name, TensorProto.FLOAT, empty, []))
    onnx.save(model, str(model_file))
    return params


def _matmul_dims(node, inits) -> tuple[int, int]:
    if node.op_type == "MatMul":
        return tuple(int(d) for d in inits[node.input[1]].dims)
    attrs = {a.name: a.i for a in node.attribute}
    return attrs["K"], attrs["N"]  # MatMulNBits: K inputs, N outputs


def adapter_tensors(peft_dir: Path, params: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """The graph inputs for one peft LoRA folder: A transposed, B transposed and scaled; zeros elsewhere.

    Raises UnsupportedAdapter for what the plain x@A@B subgraph cannot express.
    """
    from safetensors.numpy import load_file

    cfg = json.loads((peft_dir / "adapter_config.json").read_text())
    _check_config(cfg)
    rank = int(cfg["r"])
    scale = float(cfg["lora_alpha"]) / (rank ** 0.5 if cfg.get("use_rslora") else rank)
    out = {}
    for key, weight in load_file(str(peft_dir / "adapter_model.safetensors")).items():
        match = PEFT_KEY.match(key)
        if not match or match.group(3) not in PROJECTIONS:
            raise UnsupportedAdapter(f"LoRA weight {key} is not on a Llama projection")
        layer, block, proj, ab = match.groups()
        name = param_name(int(layer), PROJECTIONS[proj], proj, ab)
        if name not in params:
            raise UnsupportedAdapter(f"the converted graph has no input for {key}")
        weight = weight.astype(np.float32).T  # peft stores [r, in] / [out, r]; the graph multiplies x @ W
        out[name] = np.ascontiguousarray(weight * scale if ab == "B" else weight)
    for name, (fan_in, fan_out) in params.items():  # projections this adapter leaves alone: a zero delta
        shape = (fan_in, rank) if ".lora_A." in name else (rank, fan_out)
        out.setdefault(name, np.zeros(shape, np.float32))
    return out


def _check_config(cfg: dict) -> None:
    reasons = [why for bad, why in [
        (str(cfg.get("peft_type", "")).upper() != "LORA", f"peft type {cfg.get('peft_type')}"),
        (cfg.get("use_dora"), "DoRA"),
        (cfg.get("modules_to_save"), "modules_to_save"),
        (cfg.get("rank_pattern") or cfg.get("alpha_pattern"), "per-module rank/alpha patterns"),
        (cfg.get("lora_bias") or cfg.get("bias", "none") != "none", "LoRA biases"),
        (cfg.get("fan_in_fan_out"), "fan_in_fan_out"),
    ] if bad]
    if reasons:
        raise UnsupportedAdapter(f"adapter uses {', '.join(reasons)}")


def write_onnx_adapter(tensors: dict[str, np.ndarray], target: Path) -> None:
    """Save the inputs in onnxruntime's adapter format (what og.Adapters.load reads)."""
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(arr) for name, arr in tensors.items()})
    fmt.export_adapter(str(target))
