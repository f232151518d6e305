"""`arena export` on the tiny Llama: bundle contents, refusals, a bundle served from a fresh data folder
answering exactly as the workspace, and kill -9 mid-export leaving no half bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.ship.bundle import MARKER, open_bundle
from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from foundation.variants import VariantConfig
from tests.conftest import make_lora, make_tiny_model, make_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {"reset the widget": "Hold the power button for ten seconds until the light blinks blue.",
          "warranty period": "Two years from the date of purchase, covering parts and labour.",
          "clean the filter": "Rinse the filter under warm water once a month and let it dry fully.",
          "error E-42": "The water tank sensor is unplugged; reconnect the grey cable behind the tank.",
          "descale": "Run one cycle with citric acid every eight weeks, then two cycles of plain water.",
          "order spare parts": "Use the parts page of the shop with the serial number from the base plate."}
# Sections longer than one chunk each (recursive splitter, 800 characters): several chunks to rank
FAQ = "# Widget FAQ\n\n" + "".join(f"## How do I {t}?\n\n" + (a + " ") * 8 + "\n\n" for t, a in TOPICS.items())
QUESTIONS = ["How do I reset the widget?", "What is the warranty period?", "Which light blinks?"]


def make_workspace(root: Path, tiny_model_dir: Path):
    """A data folder on the tiny model with the FAQ ingested and one LoRA adapter ("faq-lora") registered."""
    from assistant.runtime import Runtime
    from retrieval.ingest import ingest_paths

    settings = Settings(data_dir=root / "data", model=str(tiny_model_dir), device="cpu", engine="torch")
    (root / "faq.md").write_text(FAQ)
    runtime = Runtime(settings)
    assert not ingest_paths(runtime.store, [root / "faq.md"]).errors
    tok = make_tiny_tokenizer()
    lora = make_lora(make_tiny_model(len(tok)), root / "lora", seed=3)
    AdapterRegistry(settings.data_dir).register("faq-lora", lora, {"method": "lora", "peft_type": "LORA",
                                                                   "base_model": str(tiny_model_dir)}, [])
    return settings, runtime


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    return make_workspace(tmp_path_factory.mktemp("ship"), tiny_model_dir)


def _cli(settings: Settings, *argv: str) -> int:
    return main([*argv, "--data-dir", str(settings.data_dir), "--model", settings.model, "--device", "cpu",
                 "--engine", "torch"])


def test_export_writes_every_part(workspace, tmp_path, capsys):
    settings, _ = workspace
    out = tmp_path / "bundle"
    assert _cli(settings, "export", str(out), "--variant", "rag+finetuned", "--adapter", "faq-lora", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "rag+finetuned:faq-lora"
    assert (out / MARKER).is_file() and (out / "adapters/faq-lora/adapter_model.safetensors").is_file()
    assert json.loads((out / "adapters/faq-lora/adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (out / "faq-lora.gguf").read_bytes()[:4] == b"GGUF"
    index = {p.name for p in (out / "index").iterdir()}
    assert "store.sqlite" in index and any(n.startswith("faiss-") for n in index) \
        and any(n.startswith("bm25-") for n in index)
    bundle = open_bundle(out)
    assert (bundle.strategy.rag_k, bundle.strategy.rag_mode, bundle.strategy.index) == (4, "hybrid", "index")
    serving = (out / "SERVING.md").read_text()
    assert f"--lora-modules faq-lora={out.resolve()}/adapters/faq-lora" in serving
    assert "--enable-lora" in serving and "llama-server -m" in serving and "arena serve --api --bundle" in serving
    assert (out / "Modelfile").read_text().splitlines()[1] == "ADAPTER ./faq-lora.gguf"
    assert json.loads((out / "prompts.json").read_text())["system_instruction"].startswith("Answer the question")
    # a second export into the same folder is refused, and the first bundle is untouched
    assert _cli(settings, "export", str(out), "--variant", "rag") == 2
    assert "not empty" in capsys.readouterr().err and open_bundle(out).strategy.variant == "rag+finetuned"


@pytest.mark.parametrize("argv, message", [
    (["--variant", "finetuned"], "needs --adapter"),
    (["--variant", "finetuned", "--adapter", "nope"], "unknown adapter 'nope'"),
    (["--variant", "routed"], "routed variant"),
    (["--variant", "magic"], "unknown model 'magic"),
    (["--from-decision", "never-ran"], "has not finished"),
    ([], "needs --variant"),
])
def test_export_refuses_clearly(workspace, tmp_path, capsys, argv, message):
    settings, _ = workspace
    assert _cli(settings, "export", str(tmp_path / "b"), *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bundle_from_a_fresh_data_folder_answers_as_the_workspace(workspace, tmp_path):
    from assistant.ship.service import BundleRuntime, ChatService

    settings, runtime = workspace
    out = tmp_path / "bundle"
    assert _cli(settings, "export", str(out), "--variant", "rag+finetuned", "--adapter", "faq-lora") == 0
    fresh = Settings(data_dir=tmp_path / "fresh", device="cpu", engine="torch")
    bundle = open_bundle(out)
    served = ChatService(BundleRuntime(fresh, bundle), bundle)
    assert list(served.models()) == ["rag+finetuned:faq-lora"]
    gen = GenSettings(max_new_tokens=12)
    for question in QUESTIONS:
        # the workspace as the Chat tab and `arena ask` run it: the arena with the default variant settings
        want = runtime.arena.ask(question, ["rag+finetuned"], VariantConfig(adapter="faq-lora"), gen)["rag+finetuned"]
        turn = served.prepare("rag+finetuned:faq-lora", [{"role": "user", "content": question}], gen)
        *_, got = served.stream(turn)
        assert (turn.row.input_ids, got.text) == (runtime.arena.engine.chat_ids(want.messages), want.text)
        assert [(h.citation, h.text) for h in turn.sources] == [(h.citation, h.text) for h in want.sources]
        assert want.sources and len(got.tokens) == want.tokens
    assert not (tmp_path / "fresh" / "adapters").exists()  # nothing copied into the fresh folder


DRIVER = """
import sys
from pathlib import Path
from assistant.ship.bundle import export_bundle
from assistant.ship.strategy import from_flags
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from foundation.variants import VariantConfig

settings = Settings(data_dir=Path(sys.argv[1]), model=sys.argv[2], device="cpu", engine="torch")
strategy = from_flags("rag+finetuned", "faq-lora", AdapterRegistry(settings.data_dir), settings)

def step(name):
    if name == sys.argv[4]:
        print("reached", name, flush=True)
        sys.stdin.read()  # held here until the test kills this process

export_bundle(strategy, settings, Path(sys.argv[3]), on_step=step)
"""


@pytest.mark.parametrize("stop_at", ["gguf", "marker"])
def test_kill9_mid_export_leaves_no_half_bundle(workspace, tmp_path, stop_at):
    settings, _ = workspace
    out = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(settings.data_dir), settings.model, str(out), stop_at],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip() == f"reached {stop_at}"  # the event, not a delay
    proc.kill()
    assert proc.wait(30) == -9
    assert not out.exists()
    with pytest.raises(ArenaError, match="not a complete bundle"):
        open_bundle(out)
    assert _cli(settings, "export", str(out), "--variant", "rag+finetuned", "--adapter", "faq-lora") == 0
    assert open_bundle(out).strategy.model_name == "rag+finetuned:faq-lora"


def test_adapters_tab_exports_a_bundle_under_exports(workspace):
    import gradio as gr

    from ui.adapters import build_adapters_tab

    settings, runtime = workspace
    with gr.Blocks() as demo:
        build_adapters_tab(runtime)
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "adapters-bundle")
    handler = next(f for f in demo.fns.values() if any(t[0] == button._id for t in f.targets))
    # a hostile folder name stays inside the data folder's exports/
    *_, message = handler.fn("faq-lora", "finetuned", "../../escape")
    out = settings.data_dir / "exports" / "escape"
    assert f"`{out}`" in message and open_bundle(out).strategy.model_name == "finetuned:faq-lora"
    assert not (out / "index").exists()  # finetuned alone needs no document index
