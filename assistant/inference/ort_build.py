"""One-time conversion of the local HF base model (and of each peft adapter) for onnxruntime-genai.

Cached under data_dir/models like the GGUF conversion (cache_folder.py: temp folder, marker last). The base
folder's key hashes config.json and each weight file's name, size and modification time, so replacing the
base model (a re-conversion, another folder) builds a new graph instead of reusing a stale one. Adapter files
are keyed by their own content, so a re-trained adapter under the same name is converted again.

The graph computes the vocabulary logits of one position per row (the builder's `prune_lm_head`), not of every
prompt position: on the bundled model's RAG prompts (16 rows x ~450 tokens) the full logits are 1.4 GB per
prefill and the LM head is a fifth of its work. The builder's pruned head reads the last position, which for
our right-padded rows (ortgenai.py) is padding; `gather_last_real_token` makes it read each row's last real
token instead. Measured on the 165-pair FAQ's 25 x 5 answers (Zen 4, fp32): 125/125 answers identical,
answering 0.87x the time (prefill alone 0.82x).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from assistant.inference import lora_onnx
from foundation import atomic
from foundation.cache_folder import publish, temp_folder, weight_files
from foundation.errors import ArenaError

MARKER = "arena_onnx.json"
PRECISIONS = ("int4", "fp32")


def base_key(hf_folder: Path, precision: str, eos_ids: list[int]) -> str:
    """Short hash of what the graph is built from (config + weight files' identity), precision and EOS ids."""
    digest = hashlib.sha256(f"{precision}|{sorted(eos_ids)}|v2".encode())  # v2: last-token logits
    digest.update((hf_folder / "config.json").read_bytes())
    for name, size, mtime_ns in weight_files(hf_folder):
        digest.update(f"{name}|{size}|{mtime_ns}".encode())
    return digest.hexdigest()[:16]


def converted_folder(hf_folder: Path, models_dir: Path, precision: str, eos_ids: list[int],
                     log=print) -> Path:
    """The cached onnxruntime-genai folder for `hf_folder`, building it first when missing."""
    if precision not in PRECISIONS:
        raise ArenaError(f"onnx precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    target = models_dir / "onnx" / f"{hf_folder.name}-{precision}-{base_key(hf_folder, precision, eos_ids)}"
    if not (target / MARKER).is_file():
        log(f"converting {hf_folder} for onnxruntime-genai ({precision}, once) ...")
        start = time.perf_counter()
        tmp = temp_folder(target)
        params = build(hf_folder, tmp, precision, eos_ids)
        publish(tmp, target, MARKER, {"source": str(hf_folder), "precision": precision, "lora_inputs": params,
                                      "seconds": round(time.perf_counter() - start, 1)})
        log(f"converted in {time.perf_counter() - start:.0f} s -> {target}")
    return target


def build(hf_folder: Path, out: Path, precision: str, eos_ids: list[int], prune: bool = True
          ) -> dict[str, list[int]]:
    """Run the model builder (a subprocess: it loads a second copy of the weights) and expose LoRA inputs.
    `prune`: last-token logits (module docstring); a pruned head this code does not recognise (another builder
    version) would read padding, so the graph is then built again the stock way, with every position's logits."""
    from transformers import AutoConfig

    template = out.with_name(out.name + "-template")
    shutil.rmtree(template, ignore_errors=True)
    config = AutoConfig.from_pretrained(hf_folder)
    lora_onnx.write_template_adapter(config, template)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_folder), "-o", str(out),
           "-p", precision, "-e", "cpu", "--extra_options", f"adapter_path={template}"] + \
        (["prune_lm_head=true"] if prune else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        shutil.rmtree(template, ignore_errors=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ArenaError(f"onnxruntime-genai model builder failed for {hf_folder}: {' | '.join(tail)}")
    if prune and not gather_last_real_token(out / "model.onnx", config.hidden_size):
        shutil.rmtree(out)
        out.mkdir()
        return build(hf_folder, out, precision, eos_ids, prune=False)
    params = lora_onnx.expose_lora_inputs(out / "model.onnx")
    _set_eos(out / "genai_config.json", eos_ids)
    return params


PRUNED_GATHER, PRUNED_UNSQUEEZE = "/lm_head/prune/Gather", "/lm_head/prune/Unsqueeze"  # the builder's node names


def gather_last_real_token(model_file: Path, hidden_size: int) -> bool:
    """Make the builder's pruned LM head read each row's last real token, not its last position.

    onnxruntime-genai masks a row's trailing pad tokens (attention_mask 0), so the tokens of this call that are
    real count from the start of its chunk: index = (ones among the mask's last S columns) - 1, S the call's
    length (prefill: the prompt's last token; each later step: 0). Returns False, the graph untouched, when the
    builder's pruned head is not there under these names (build() then builds the stock graph)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_file), load_external_data=False)  # weights stay in model.onnx.data
    graph, p = model.graph, "/lm_head/last_real/"
    found = {n.name: n for n in graph.node if n.name in (PRUNED_GATHER, PRUNED_UNSQUEEZE)}
    if len(found) != 2:
        return False
    hidden, head_input = found[PRUNED_GATHER].input[0], found[PRUNED_UNSQUEEZE].output[0]
    graph.initializer.extend(helper.make_tensor(p + name, TensorProto.INT64, [len(v)], v) for name, v in (
        ("one", [1]), ("zero", [0]), ("end", [2**63 - 1]), ("axis2", [2]), ("shape", [1, 1, hidden_size])))
    gather = [
        helper.make_node("Shape", ["input_ids"], [p + "S"], name=p + "Shape", start=1, end=2),
        helper.make_node("Neg", [p + "S"], [p + "minus_S"], name=p + "Neg"),
        helper.make_node("Slice", ["attention_mask", p + "minus_S", p + "end", p + "one"], [p + "chunk"],
                         name=p + "Slice"),  # [B, S]
        helper.make_node("ReduceSum", [p + "chunk", p + "one"], [p + "real"], name=p + "ReduceSum", keepdims=1),
        helper.make_node("Sub", [p + "real", p + "one"], [p + "last"], name=p + "Sub"),
        helper.make_node("Max", [p + "last", p + "zero"], [p + "row_index"], name=p + "Max"),  # [B, 1]
        helper.make_node("Unsqueeze", [p + "row_index", p + "axis2"], [p + "index3"], name=p + "Unsqueeze"),
        helper.make_node("Expand", [p + "index3", p + "shape"], [p + "indices"], name=p + "Expand"),
        helper.make_node("GatherElements", [hidden, p + "indices"], [head_input], name=p + "GatherElements",
                         axis=1),  # [B, 1, hidden]: what the builder's Gather + Unsqueeze produced
    ]
    nodes = list(graph.node)
    at = min(nodes.index(n) for n in found.values())
    kept = [n for n in nodes if n.name not in found]
    del graph.node[:]
    graph.node.extend(kept[:at] + gather + kept[at:])
    onnx.save(model, str(model_file))
    return True


def _set_eos(config_file: Path, eos_ids: list[int]) -> None:
    """Stop on exactly the tokens the torch engine stops on (the builder adds its own guesses)."""
    config = json.loads(config_file.read_text())
    config["model"]["eos_token_id"] = sorted(eos_ids)
    config_file.write_text(json.dumps(config, indent=4))


def adapter_file(peft_dir: Path, graph_folder: Path, models_dir: Path) -> Path:
    """The cached `.onnx_adapter` of a peft folder for this graph (raises lora_onnx.UnsupportedAdapter)."""
    params = json.loads((graph_folder / MARKER).read_text())["lora_inputs"]
    digest = hashlib.sha256(graph_folder.name.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = peft_dir / name
        if not path.is_file():
            raise lora_onnx.UnsupportedAdapter(f"{peft_dir} has no {name} (not a peft LoRA folder)")
        digest.update(path.read_bytes())
    target = models_dir / "onnx" / "adapters" / f"{digest.hexdigest()[:20]}.onnx_adapter"
    if not target.is_file():
        tensors = lora_onnx.adapter_tensors(peft_dir, params)
        # a single file: the rename is the marker
        atomic.replace_with(target, lambda tmp: lora_onnx.write_onnx_adapter(tensors, tmp))
    return target
