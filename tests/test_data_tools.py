"""Training's data sources reach the documents and the model only through narrow callables (training/tools.py)
that the caller composes from its runtime (Runtime.data_tools); a source missing them is refused by name."""

from __future__ import annotations

import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.settings import Settings
from retrieval.ingest import ingest_paths
from training.config import JobConfig
from training.sources import build_split, load_source

FAQ = ("## How do I reset the machine?\nHold the power button for ten seconds until the light blinks.\n\n"
       "## What does error E-42 mean?\nThe water tank sensor is unplugged; push the tank back until it clicks.\n\n"
       "## How long is the warranty?\nThe warranty lasts two years from the date of purchase.\n")
GROUNDED = {"source": "documents", "kind": "grounded"}


@pytest.fixture(scope="module")
def embedder():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2")


@pytest.mark.parametrize("spec", [GROUNDED, {"source": "distill", "questions": "q.jsonl"}])
def test_a_source_needing_the_model_or_index_without_tools_is_refused(spec, tmp_path):
    (tmp_path / "q.jsonl").write_text('{"question": "How?"}\n')
    spec = {k: str(tmp_path / v) if k == "questions" else v for k, v in spec.items()}
    with pytest.raises(ArenaError, match="needs the model and the document index"):
        load_source(spec, Settings(data_dir=tmp_path / "data"), None)


def test_paraphrasing_without_tools_is_refused(tmp_path):
    (tmp_path / "qa.jsonl").write_text("".join(f'{{"question": "Q{i}?", "answer": "A{i}"}}\n' for i in range(4)))
    cfg = JobConfig(data=[{"path": str(tmp_path / "qa.jsonl")}], augment="paraphrases:2")
    with pytest.raises(ArenaError, match="needs the model and the document index"):
        build_split(cfg, Settings(data_dir=tmp_path / "data"))


def test_grounded_rows_come_from_the_real_index_through_the_runtime_tools(tmp_path, embedder):
    # A model path that does not exist: loading the model would fail, so the documents need only the index (no
    # passage token budget here: that one counts tokens with the model's tokenizer, tests/test_grounded.py).
    settings = Settings(data_dir=tmp_path / "data", model=str(tmp_path / "no-such-model"))
    runtime = Runtime(settings, embedder=embedder)
    tools = runtime.data_tools()
    with pytest.raises(ArenaError, match="no documents ingested yet"):
        load_source(GROUNDED, settings, tools)
    (tmp_path / "faq.md").write_text(FAQ)
    assert not ingest_paths(runtime.store, [tmp_path / "faq.md"]).errors
    rows = load_source(GROUNDED, settings, tools, JobConfig(grounded_k=2, oracle_share=1.0,
                                                                    grounded_passage_tokens=0))
    assert len(rows) == 3
    for row in rows:
        shown, target = " ".join(m["content"] for m in row.messages[:-1]), row.messages[-1]["content"]
        assert target.endswith(("[1]", "[2]"))  # the oracle passage is in every row and cited
        assert target[:-4] in shown and f"[{target[-2]}]" in shown  # the answer is among the passages shown
    assert {r.origin.split(" § ")[-1] for r in rows} == {"How do I reset the machine?",
                                                         "What does error E-42 mean?", "How long is the warranty?"}
