"""End-to-end comparison on the tiny model: all five variants, real store, real adapter, CLI JSON and report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem, draw_eval_set, load_eval_set
from assistant.compare.report import render_markdown
from assistant.compare.runs import RunStore
from assistant.comparison import run_comparison
from foundation.errors import ArenaError
from foundation.variants import VARIANTS
from tests.conftest import make_lora

FAQ = """# Widget FAQ

## How do I reset the widget?

Hold the power button for ten seconds until the light blinks blue, then release it.

## What is the warranty period?

The warranty period is two years from the date of purchase, covering parts and labour.

## How do I clean the filter?

Rinse the filter under warm water once a month and let it dry completely before refitting it.

## Which batteries does the remote use?

The remote uses two AAA batteries; replace both at the same time.
"""

EVAL = [
    {"question": "How do I reset the widget?", "answer": "Hold the power button for ten seconds."},
    {"question": "What is the warranty period?", "answer": "two years from the date of purchase"},
    {"question": "How do I clean the filter?", "answer": "Rinse the filter under warm water once a month."},
    {"question": "Which batteries does the remote use?", "answer": "two AAA batteries"},
]
TRAINED = ["how do i reset the widget", "What colour is the case?"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    """A data dir with the FAQ ingested, a registered LoRA adapter and an eval file; plus a Runtime on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.runtime import Runtime
    from foundation.models import LoadedModel
    from foundation.registry import AdapterRegistry
    from foundation.settings import Settings
    from retrieval.ingest import ingest_paths

    root = tmp_path_factory.mktemp("compare")
    data_dir = root / "arena_data"
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    loaded = LoadedModel(model, tok, str(tiny_model_dir), str(tiny_model_dir), torch.float32,
                         torch.device("cpu"))
    runtime = Runtime(settings, base=loaded)
    (root / "faq.md").write_text(FAQ)
    ingest_paths(runtime.store, [root / "faq.md"])
    meta = {"method": "lora", "base_model": str(tiny_model_dir), "peft_type": "LORA",
            "metrics": {"train_seconds": 42.0}}
    AdapterRegistry(data_dir).register("faq-lora", make_lora(model, root / "lora", 1), meta, TRAINED)
    eval_file = root / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps(row) for row in EVAL) + "\n")
    return {"runtime": runtime, "data_dir": data_dir, "eval": eval_file, "root": root,
            "model_dir": tiny_model_dir}


def test_all_five_variants_end_to_end(env):
    runtime = env["runtime"]
    items = load_eval_set(env["eval"])
    compare_cfg = CompareConfig(variants=VARIANTS, adapter="faq-lora", max_new_tokens=8, eval_name="eval.jsonl")
    seen = []
    typed = run_comparison(runtime, items, compare_cfg, progress=lambda f, text: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    result = json.loads(json.dumps(typed.to_dict()))  # the JSON `arena compare --json` prints and runs.sqlite keeps
    assert list(result["variants"]) == list(VARIANTS)
    for name, summary in result["variants"].items():
        f1 = summary["f1"]
        assert 0.0 <= f1["ci_low"] <= f1["mean"] <= f1["ci_high"] <= 1.0 and f1["n"] == 4
        assert math.isfinite(summary["nll"]["mean"]) and summary["nll"]["mean"] > 0
        assert summary["ppl"]["mean"] == pytest.approx(math.exp(summary["nll"]["mean"]))
        assert (summary["groundedness"]["mean"] is None) == (name not in {"rag", "rag+finetuned"})
    # The FAQ holds every reference answer, so retrieval finds them.
    assert result["variants"]["rag"]["retrieval_hit"]["mean"] == 1.0
    # Variants run on different prompts/weights: their reference likelihoods differ.
    nll = {v: s["nll"]["mean"] for v, s in result["variants"].items()}
    assert nll["base"] != nll["finetuned"] and nll["base"] != nll["rag"]
    costs = result["costs"]
    assert costs["finetuned"]["training_seconds"] == 42.0 and costs["base"]["training_seconds"] == 0.0
    assert costs["rag"]["extra_prompt_tokens"] > costs["prompt"]["extra_prompt_tokens"] > 0
    assert costs["finetuned"]["memory_mb"] > 0 and costs["rag"]["memory_mb"] > 0
    assert set(result["paired"]) == set(VARIANTS) - {"base"}
    rec = result["recommendation"]  # a variant, or none yet with the leader named (4 questions: most likely)
    assert rec["reason"] and rec["leader"] in VARIANTS and rec["outcome"] in ("clear", "equivalent", "inconclusive")
    assert (rec["variant"] is None) == (rec["outcome"] == "inconclusive") and rec["variant"] in (None, *VARIANTS)
    assert any("faq-lora" in w and "1 of 4" in w for w in result["warnings"])  # exact-overlap leakage
    forgetting = result["forgetting"][0]
    assert forgetting["adapter"] == "faq-lora" and set(forgetting["probes"]) == {"general_qa", "general_text"}
    bias = result["bias"][0]  # both probes carry their paired interval into the JSON and the report's text
    assert bias["change"]["ci_low"] <= bias["change"]["mean"] <= bias["change"]["ci_high"]
    assert "interval" in bias["message"] and "interval" in forgetting["message"]
    assert "interval" in render_markdown(typed, "chart.png").split("## Bias probe")[1].split("##")[0]
    q = result["per_question"][0]
    assert set(q["answers"]) == set(VARIANTS) and q["answers"]["rag"]["sources"][0]["citation"].startswith("faq.md")
    stored = RunStore(env["data_dir"] / "runs.sqlite").get(typed.run_id)
    assert stored.settings["adapter"] == "faq-lora" and stored.result == typed  # stored and loaded back: equal


def test_cli_compare_json_schema_and_report(env, capsys, monkeypatch):
    from assistant.cli.main import main

    monkeypatch.chdir(env["root"])
    report = env["root"] / "out" / "report.md"
    code = main(["compare", "--eval", str(env["eval"]), "--data-dir", str(env["data_dir"]), "--model",
                 str(env["model_dir"]), "--variants", "base", "prompt", "rag", "--metric", "rougeL",
                 "--max-new-tokens", "6", "--report", str(report), "--equivalence-margin", "0.1", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"variants", "recommendation", "per_question", "warnings"} <= set(data)
    assert list(data["variants"]) == ["base", "prompt", "rag"]
    for summary in data["variants"].values():
        assert {"mean", "ci_low", "ci_high"} <= set(summary["rougeL"])
    assert {"variant", "reason"} <= set(data["recommendation"]) and data["recommendation"]["metric"] == "rougeL"
    assert data["recommendation"]["margin"] == 0.1 and data["recommendation"]["outcome"] in ("clear", "equivalent",
                                                                                           "inconclusive")
    assert len(data["per_question"]) == 4 and data["warnings"] == []
    assert report.is_file() and report.with_suffix(".html").is_file() and report.with_suffix(".png").is_file()
    assert data["recommendation"]["reason"] in report.read_text()


def test_cli_errors_name_the_problem(env, capsys, tmp_path):
    from assistant.cli.main import main

    base = ["--data-dir", str(env["data_dir"]), "--model", str(env["model_dir"])]
    assert main(["compare", "--eval", str(env["eval"]), "--variants", "finetuned", *base]) == 2
    assert "need an adapter" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "only a question"}\n')
    assert main(["compare", "--eval", str(bad), *base]) == 2
    assert "bad.jsonl line 2: missing or empty 'answer'" in capsys.readouterr().err
    assert main(["compare", "--eval", str(env["eval"]), "--equivalence-margin", "-0.05", *base]) == 2
    assert "--equivalence-margin must be a positive number in the metric's units, got -0.05" in capsys.readouterr().err


def test_draw_eval_set_holds_out_training_sections(env):
    sections = env["runtime"].store.sections()
    evals, train = draw_eval_set(sections, exclude_questions=TRAINED, eval_fraction=0.5, seed=0)
    assert evals and train
    eval_sections = {(e.source, e.section) for e in evals}
    assert not eval_sections & {(t.source, t.section) for t in train}
    assert all("reset" not in e.question for e in evals)  # its section fed the adapter's training data
    assert isinstance(evals[0], EvalItem)
    with pytest.raises(ArenaError, match="no question/answer pairs"):
        draw_eval_set([])


@pytest.mark.e2e
def test_bundled_model_base_vs_prompt(bundled_data_dir, tmp_path):
    """The real bundled model answers a general question right, and the comparison scores it so."""
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    settings = Settings(data_dir=bundled_data_dir)
    runtime = Runtime(settings)
    items = [EvalItem("What is the capital of France?", "Paris"),
             EvalItem("How many days are there in a week?", "seven")]
    compare_cfg = CompareConfig(variants=("base", "prompt"), max_new_tokens=24, eval_name="general")
    result = run_comparison(runtime, items, compare_cfg, store=False)
    assert result.per_question[0].answers["base"].scores["contains"] == 1.0
    assert result.variants["base"]["contains"].mean >= 0.5
    rec = result.recommendation
    assert rec.leader in {"base", "prompt"} and rec.variant in {None, "base", "prompt"}
    assert result.costs["prompt"].extra_prompt_tokens > 0


def test_compare_tab_handlers_run_show_and_export(env):
    from ui.compare import _past, _run, _show

    runtime = env["runtime"]
    result = _run(runtime, str(env["eval"]), False, 2, ["base", "rag"], None, "f1", 4, lambda f, text: None)
    state, text, table, chart, warn, pick, detail, export = _show(runtime, result, only=False)
    assert "Recommendation" in text and list(table["value"]["variant"]) == ["base", "rag"] and table["visible"]
    plotted = {(row[0], row[2]) for row in chart.value["data"]}  # (variant, mean or interval) per point
    assert {("base", "mean"), ("rag", "mean"), ("rag", "95 % interval")} <= plotted and "Reference:" in detail
    assert all(p.startswith(str(runtime.settings.uploads_dir)) for p in export)
    assert {p.rsplit(".", 1)[1] for p in export} == {"md", "html", "png", "json"}
    assert result.run_id in list(_past(runtime)["id"])
    with pytest.raises(ArenaError, match="choose an evaluation file"):
        _run(runtime, None, False, 0, ["base"], None, "f1", 4, lambda f, text: None)
