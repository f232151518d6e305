"""SERVING.md and the Ollama Modelfile of a bundle: the exact commands for each server."""

from __future__ import annotations

import shlex
from pathlib import Path

from assistant.ship.strategy import Strategy
from foundation.variants import RAG_VARIANTS

# The Hugging Face repository a bundled base model's GGUF was made from: what vLLM loads as the base.
HF_BASE = {"bundled:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _q(value) -> str:
    return shlex.quote(str(value))


def modelfile(strategy: Strategy, base_gguf: Path | None) -> str:
    base = str(base_gguf) if base_gguf else "/path/to/base-model.gguf"
    return f"FROM {base}\nADAPTER ./{strategy.gguf}\n"


def serving_md(strategy: Strategy, out: Path, base_gguf: Path | None) -> str:
    out = Path(out).resolve()
    name = strategy.model_name
    parts = [f"# Serving `{name}`", "",
             f"Exported from {'decision ' + repr(strategy.decision) if strategy.decision else 'the data folder'}"
             f"{f' (comparison run #{strategy.run_id})' if strategy.run_id else ''}. Base model: "
             f"`{strategy.base_model}`. `strategy.yaml` lists every setting; `prompts.json` the prompt texts.", "",
             "## Strategy Arena (every variant, RAG included: OpenAI-compatible API)", "", "```sh",
             f"arena serve --api --bundle {_q(out)} --data-dir ./arena_data   # http://127.0.0.1:7860/v1", "```", "",
             "```python", "from openai import OpenAI",
             'client = OpenAI(base_url="http://127.0.0.1:7860/v1", api_key="unused-without---auth")',
             f'reply = client.chat.completions.create(model="{name}", messages=[{{"role": "user", '
             '"content": "..."}])',
             "print(reply.choices[0].message.content, reply.model_extra.get(\"sources\"))", "```", ""]
    if strategy.variant in RAG_VARIANTS:
        parts += ["The servers below run the model only: retrieval (the `index/` folder, "
                  f"{strategy.rag_mode} search, k={strategy.rag_k}) and the RAG prompt are Strategy Arena's; "
                  "use `arena serve --api` for the full strategy, or `--engine openai` to let it call one of them.",
                  ""]
    if strategy.peft:
        base = HF_BASE.get(strategy.base_model, strategy.base_model)
        adapter = out / strategy.peft
        gguf_base = str(base_gguf) if base_gguf else "/path/to/base-model.gguf"
        parts += ["## vLLM (the peft adapter)", "", "```sh",
                  f"vllm serve {_q(base)} --enable-lora --lora-modules {_q(f'{strategy.adapter}={adapter}')}",
                  "```", "",
                  "## llama.cpp (the GGUF LoRA on the base GGUF)", "", "```sh",
                  f"llama-server -m {_q(gguf_base)} --lora {_q(out / strategy.gguf)}", "```", "",
                  "## Ollama", "", "```sh", f"cd {_q(out)} && ollama create {_q(strategy.adapter.lower())} -f Modelfile",
                  f"ollama run {_q(strategy.adapter.lower())}", "```", "",
                  "The Modelfile's FROM must be the same base GGUF the adapter was measured on "
                  f"(`{gguf_base}`)."]
        if not base_gguf:
            parts += ["", "This base model is not a bundled GGUF: convert it with llama.cpp's convert_hf_to_gguf.py "
                          "and put its path in the Modelfile and the llama-server command."]
    return "\n".join(parts) + "\n"
