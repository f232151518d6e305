"""From `arena decide` to a bundle: the report's "Ship it" section, `arena export --from-decision`, and the
bundle (served from a fresh data folder) giving the very answers the decision's comparison stored."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.cli.main import main
from assistant.decide.config import workspace
from assistant.decide.runner import run_decide
from assistant.runtime import Runtime
from assistant.ship.bundle import open_bundle
from assistant.ship.service import BundleRuntime, ChatService
from foundation.generation import GenSettings
from foundation.settings import Settings
from retrieval.ingest import ingest_paths
from tests.test_decide import OTHER, _index_state, inputs, small_config  # noqa: F401 (inputs is a fixture)


def test_decision_to_bundle_reproduces_the_comparison(inputs, tmp_path, tiny_model_dir):  # noqa: F811
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu", engine="torch")
    cfg = small_config(inputs, name="faq", variants=["rag+finetuned"], max_new_tokens=6)
    result = run_decide(cfg, settings, stderr=False)
    assert result.compare.recommendation.variant == "rag+finetuned"
    adapter = result.adapters[0]
    report = Path(result.report.markdown).read_text()
    assert "## Ship it" in report and "arena export --from-decision faq ./faq-bundle" in report
    assert f'model="rag+finetuned:{adapter}"' in report

    (tmp_path / "other.md").write_text(OTHER)  # the Documents tab's index: not what the decision measured
    assert not ingest_paths(Runtime(settings).store, [tmp_path / "other.md"]).errors
    out = tmp_path / "faq-bundle"
    assert main(["export", str(out), "--from-decision", "faq", "--data-dir", str(settings.data_dir), "--model",
                 settings.model, "--engine", "torch"]) == 0
    strategy = open_bundle(out).strategy
    chosen = result.retrieval
    assert (strategy.variant, strategy.adapter, strategy.decision) == ("rag+finetuned", adapter, "faq")
    assert (strategy.rag_k, strategy.rag_mode, strategy.splitter) == (chosen.k, chosen.mode, chosen.splitter)
    assert len(strategy.few_shot) == 8 and strategy.run_id == result.compare.run_id
    assert [source for source, _ in _index_state(open_bundle(out).index_dir)] == ["manual.md"]

    stored = json.loads((workspace(settings.data_dir, "faq") / "stages" / "compare" / "result.json").read_text())
    fresh = Settings(data_dir=tmp_path / "fresh", device="cpu", engine="torch")
    service = ChatService(BundleRuntime(fresh, open_bundle(out)), open_bundle(out))
    gen = GenSettings(max_new_tokens=stored["settings"]["generation"]["max_new_tokens"])
    assert strategy.max_new_tokens == gen.max_new_tokens
    for record in stored["per_question"]:
        turn = service.prepare(strategy.model_name, [{"role": "user", "content": record["question"]}], gen)
        *_, out_row = service.stream(turn)
        assert out_row.text == record["answers"]["rag+finetuned"]["text"]
