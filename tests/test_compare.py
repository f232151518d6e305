"""Strategy comparison building blocks: metrics, statistics, recommendation, leakage, forgetting, report, runs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from assistant.compare.bootstrap import bootstrap_ci, paired_difference, widening
from assistant.compare.forgetting import check_forgetting, load_probe
from assistant.compare.recommend import recommend
from assistant.compare.report import write_report
from assistant.compare.result import SCHEMA_VERSION, ComparisonResult
from assistant.compare.runs import RunStore
from assistant.compare.stats import exp_summary, paired_against
from foundation.errors import ArenaError
from foundation.leakage import find_overlaps, overlap_warnings, split_by_section
from foundation.metrics import (
    contains,
    exact_match,
    groundedness,
    retrieval_hit,
    rouge_l,
    semantic_similarities,
    token_f1,
)
from tests.scorers import peft_scorer

# ---------------------------------------------------------------- metrics (hand-computed values)


def test_token_f1_hand_computed():
    # "cat sat on mat" vs "cat on mat": P = 3/4, R = 1 -> F1 = 6/7
    assert token_f1("The cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # P = 1, R = 1/3 -> 0.5
    assert token_f1("Paris", "The capital is Paris") == pytest.approx(0.5)
    assert token_f1("Lyon", "Paris") == 0.0
    assert token_f1("", "Paris") == 0.0 and token_f1("", "") == 1.0


def test_rouge_l_hand_computed():
    # LCS "the cat on mat" = 4; P = 4/6, R = 4/4 -> F = 0.8
    assert rouge_l("the cat sat on the mat", "the cat on mat") == pytest.approx(0.8)
    assert rouge_l("completely different", "the cat on mat") == 0.0


def test_exact_and_contains():
    assert exact_match("The Paris!", "paris") == 1.0
    assert exact_match("Paris, France", "paris") == 0.0
    assert contains("It is Paris, France.", "paris") == 1.0
    assert contains("Parisian food", "paris") == 0.0  # whole words only


def test_groundedness_and_retrieval_hit():
    chunks = ["France's capital city is Paris."]
    # content words of the answer: paris, capital, france -> all in the chunk
    assert groundedness("Paris is the capital of France", chunks) == 1.0
    # content words: paris, tower, river -> 1 of 3 supported
    assert groundedness("Paris has a tower and a river", chunks) == pytest.approx(1 / 3)
    assert groundedness("anything", []) is None
    assert retrieval_hit("Paris", ["Lyon is big", "The capital is Paris."]) == 1.0
    assert retrieval_hit("Paris", ["Lyon is big"]) == 0.0
    assert retrieval_hit("Paris", []) is None


class FakeEmbedder:
    """Deterministic vectors per text, to check the cosine arithmetic exactly."""

    VECTORS = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [0.0, 3.0]}

    def encode(self, texts):
        return np.array([self.VECTORS[t] for t in texts], dtype=np.float32)


def test_semantic_similarity_is_cosine():
    sims = semantic_similarities(FakeEmbedder(), ["a", "b", "a"], ["b", "b", "c"])
    assert sims == pytest.approx([1 / math.sqrt(2), 1.0, 0.0], abs=1e-6)


# ---------------------------------------------------------------- statistics


def test_bootstrap_is_reproducible_with_a_seed():
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8]
    a, b = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    assert a == b
    assert a["mean"] == pytest.approx(sum(values) / len(values))
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert bootstrap_ci(values, seed=8) != a
    assert bootstrap_ci([1, 1, 1])["ci_low"] == 1.0 == bootstrap_ci([1, 1, 1])["ci_high"]
    assert bootstrap_ci([None, None])["mean"] is None
    assert bootstrap_ci([None, 2.0, None])["mean"] == 2.0  # a metric that does not apply is skipped


def test_paired_difference_against_base():
    d = paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], seed=0)
    assert d["mean"] == pytest.approx(2.0) and d["ci_low"] >= 1.0 and d["ci_high"] <= 3.0
    scores = {"base": {"f1": [0.1, 0.2]}, "rag": {"f1": [0.5, 0.6]}}
    assert paired_against(scores)["rag"]["f1"]["mean"] == pytest.approx(0.4)
    ppl = exp_summary({"mean": 0.0, "ci_low": 0.0, "ci_high": math.log(2), "n": 3})
    assert ppl["mean"] == 1.0 and ppl["ci_high"] == pytest.approx(2.0)


# ---------------------------------------------------------------- recommendation


def _s(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": 20}


COSTS = {
    "base": {"training_seconds": 0, "extra_prompt_tokens": 0, "memory_mb": 0},
    "prompt": {"training_seconds": 0, "extra_prompt_tokens": 120, "memory_mb": 0},
    "rag": {"training_seconds": 0, "extra_prompt_tokens": 400, "memory_mb": 2.5},
    "finetuned": {"training_seconds": 300, "extra_prompt_tokens": 0, "memory_mb": 4.0},
}


# Per-question scores: a spread of difficulties (what makes unpaired intervals wide) plus a small
# alternating wobble, so paired differences are steady but not constant.
LEVELS = [0.05, 0.35, 0.15, 0.25, 0.1, 0.3, 0.2, 0.2, 0.0, 0.4] * 3  # mean 0.2, 30 questions


def _shift(delta, wobble=0.01):
    return [x + delta + (wobble if i % 2 else -wobble) for i, x in enumerate(LEVELS)]


def _noise(delta, amplitude=0.15):
    """delta plus a large zero-mean pattern: a difference the test cannot tell from noise."""
    pattern = [1, -1, 0.5, -0.5, -1, 1, -0.5, 0.5, 0, 0]
    return [x + delta + amplitude * pattern[i % 10] for i, x in enumerate(LEVELS)]


def test_recommend_clear_win():
    scores = {"base": LEVELS, "prompt": _shift(0.2), "rag": _shift(0.4, 0.02)}
    rec = recommend(scores, COSTS, "f1")
    assert rec.variant == "rag" and rec.clear and rec.deciding_cost is None and rec.runner_up == "prompt"
    assert rec.outcome == "clear" and rec.leader == "rag" and rec.p_best > 0.99
    assert "0.600" in rec.reason and "prompt" in rec.reason and "0.400" in rec.reason
    assert all(c["separated"] for c in rec.comparisons.values())


def test_recommend_not_separated_and_not_equivalent_is_inconclusive():
    """finetuned leads rag by 0.01 with a noisy difference: neither separated nor shown within ±0.05."""
    scores = {"base": LEVELS, "rag": _shift(0.3), "finetuned": _noise(0.31)}
    rec = recommend(scores, COSTS, "f1")
    assert rec.outcome == "inconclusive" and rec.variant is None and not rec.clear
    assert rec.leader == rec.best == "finetuned" and 0.5 < rec.p_best < 1
    row = rec.comparisons["rag"]
    assert not row["separated"] and not row["equivalent"] and rec.comparisons["base"]["separated"]
    assert rec.more_questions == row["questions_needed"] - 30 > 0
    assert "No variant yet: inconclusive on token F1. finetuned leads with 0.510" in rec.reason
    assert "questions would settle finetuned vs rag; you have 30" in rec.reason
    assert "generated questions or train more seeds" in rec.reason  # finetuned is an adapter variant


def test_recommend_equivalent_prefers_cheaper_and_names_the_cost():
    """The same gap with a steadier difference: rag is shown within ±0.05 of finetuned and is cheaper."""
    scores = {"base": LEVELS, "rag": _shift(0.3), "finetuned": _noise(0.31, 0.05)}
    rec = recommend(scores, COSTS, "f1")
    assert rec.outcome == "equivalent" and rec.best == "finetuned" and rec.variant == "rag" and not rec.clear
    assert rec.deciding_cost == "training_seconds" and rec.margin == 0.05
    row = rec.comparisons["rag"]
    assert row["equivalent"] and not row["separated"] and -0.05 < row["tost_low"] < row["tost_high"] < 0.05
    assert "Practically equivalent on token F1: rag (0.500) is within ±0.05 of the leader finetuned" in rec.reason
    assert "Prefer the cheaper: rag, which needs 0 s of adapter training instead of 300 s" in rec.reason
    wider = recommend(scores, COSTS, "f1", margin=0.01)  # a margin the data cannot show: no longer equivalent
    assert wider.outcome == "inconclusive" and wider.variant is None and wider.margin == 0.01
    assert "set with --equivalence-margin" in wider.reason


def test_recommend_equivalent_leader_that_is_also_cheapest():
    rec = recommend({"base": _noise(0.3, 0.05), "prompt": _noise(0.3, -0.05)}, COSTS, "f1")
    assert rec.outcome == "equivalent" and rec.variant == rec.leader == "base"
    assert rec.deciding_cost == "extra_prompt_tokens" and "120" in rec.reason
    assert "so use base, the leader" in rec.reason


def test_recommend_lower_is_better_metric_and_errors():
    scores = {"base": [3.0 + x for x in LEVELS], "finetuned": [1.5 + x for x in _shift(0)]}
    rec = recommend(scores, COSTS, "nll")
    assert rec.variant == "finetuned" and rec.clear and rec.comparisons["base"]["ci_high"] < 0
    with pytest.raises(ArenaError, match="unknown metric 'bleu'"):
        recommend(scores, COSTS, "bleu")
    with pytest.raises(ArenaError, match="same questions"):
        recommend({"base": [0.1, 0.2], "rag": [0.3]}, COSTS, "f1")


# ---------------------------------------------------------------- leakage guard


@pytest.fixture(scope="module")
def minilm():
    from retrieval.embedder import load_embedder

    return load_embedder("bundled:all-minilm-l6-v2")


def test_leakage_catches_exact_and_paraphrase(minilm):
    train = ["How do I reset my password?", "What is the warranty period for the battery?"]
    evals = ["how do I reset my password", "Where do I download the invoice?",
             "How long does the battery warranty last?", "How do I reset the router to factory settings?"]
    overlaps = find_overlaps(evals, train, embedder=minilm)
    assert [(o.eval_index, o.kind) for o in overlaps] == [(0, "exact"), (2, "near-duplicate")]
    assert overlaps[1].train_question == train[1] and overlaps[1].cosine > 0.85 and overlaps[1].order == 1.0
    assert find_overlaps(evals, train)[0].kind == "exact"  # without an embedder: exact only
    lines = overlap_warnings("faq-lora", overlaps, len(evals))
    assert "2 of 4" in lines[0] and "faq-lora" in lines[0]


def test_split_by_section_never_shares_a_section():
    pairs = [{"question": f"q{i}", "answer": "a", "source": f"doc{i % 3}.txt", "section": f"s{i % 5}"}
             for i in range(40)]
    train, evals = split_by_section(pairs, eval_fraction=0.25, seed=3)
    assert len(train) + len(evals) == 40 and evals and train
    train_keys = {(p["source"], p["section"]) for p in train}
    assert not train_keys & {(p["source"], p["section"]) for p in evals}
    assert split_by_section(pairs, 0.25, seed=3) == (train, evals)


# ---------------------------------------------------------------- forgetting check


def _peft_tiny(tiny_model, scale: float, seed: int = 0):
    import torch
    from peft import LoraConfig, get_peft_model

    # lm_head is targeted because the random tiny model's logits are near uniform: only a change at the
    # output layer moves its perplexity, which is what a destructive adapter must do.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"])
    model = get_peft_model(tiny_model, config)
    if scale:  # B = 0 leaves the base unchanged; small B is noise around it, large B destroys it
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn_like(param) * scale)
    return model.eval()


def _small_probe():
    probe = load_probe()
    probe.paragraphs = probe.paragraphs[:3]  # the byte-level tiny tokenizer makes long texts slow
    return probe


def test_forgetting_not_flagged_for_zero_initialized_adapter(tiny_model, tiny_tokenizer):
    fine = check_forgetting("zero", peft_scorer(_peft_tiny(tiny_model, 0.0), tiny_tokenizer), probe=_small_probe())
    assert not fine.flagged and abs(fine.probes["general_qa"].relative_change) < 1e-4
    assert fine.message.startswith("ok") and fine.probes["general_text"].nll_change.n == 3


@pytest.mark.parametrize("seed", range(5))
def test_forgetting_flags_a_destroyed_adapter_and_not_a_noisy_one(tiny_model, tiny_tokenizer, seed):
    import copy

    noisy = check_forgetting("noisy", peft_scorer(_peft_tiny(copy.deepcopy(tiny_model), 0.05, seed), tiny_tokenizer),
                             probe=_small_probe())
    assert not noisy.flagged and noisy.message.startswith("ok"), noisy.message
    bad = check_forgetting("broken", peft_scorer(_peft_tiny(tiny_model, 5.0, seed), tiny_tokenizer),
                           probe=_small_probe())
    assert bad.flagged and bad.message.startswith("FORGETTING"), bad.message
    assert max(p.ci_low for p in bad.probes.values()) > 0.15 and "interval" in bad.message


def test_forgetting_statistic_against_a_hand_computation():
    from assistant.compare.forgetting import probe_result

    base, tuned = [2.0, 2.0, 3.0, 1.0], [2.2, 2.4, 3.1, 1.3]  # NLL changes 0.2, 0.4, 0.1, 0.3: mean 0.25
    result = probe_result(base, tuned, alpha=0.05)
    assert result.nll_change.mean == pytest.approx(0.25)
    assert result.relative_change == pytest.approx(math.exp(0.25) - 1)  # perplexity ratio exp(mean d)
    assert result.base_ppl == pytest.approx(math.exp(2.0)) and result.adapter_ppl == pytest.approx(math.exp(2.25))
    assert result.ci_low == pytest.approx(math.expm1(result.nll_change.ci_low))
    # resampled means lie within [0.1, 0.4]; the small-sample widening stretches the bounds around the mean
    f = widening(0.05, 4)
    assert 0.25 - f * 0.15 <= result.nll_change.ci_low < 0.25 - 0.3 * 0.15
    assert 0.25 + 0.3 * 0.15 < result.nll_change.ci_high <= 0.25 + f * 0.15


def test_shipped_probe_data():
    probe = load_probe()
    assert len(probe.qa) == 20 and len(probe.paragraphs) == 8
    assert all(q.endswith("?") and a for q, a in probe.qa)


# ---------------------------------------------------------------- report and runs store


def synthetic_result() -> ComparisonResult:
    """A result in the stored shape from before schema_version (so it goes through the conversion too)."""
    return ComparisonResult.from_dict(synthetic_dict())


def synthetic_dict() -> dict:
    variants = {"base": {"f1": _s(0.2, 0.1, 0.3), "nll": _s(3.0, 2.8, 3.2)},
                "rag": {"f1": _s(0.6, 0.5, 0.7), "nll": _s(2.0, 1.8, 2.2), "groundedness": _s(0.8, 0.7, 0.9)}}
    rec = recommend({"base": LEVELS, "rag": _shift(0.4)}, COSTS, "f1").to_dict()
    per_q = [{"question": "Q1 | pipe?", "reference": "A1", "source": "", "disagree": True,
              "answers": {"base": {"text": "x", "scores": {"f1": 0.0}, "sources": []},
                          "rag": {"text": "A1", "scores": {"f1": 1.0},
                                  "sources": [{"citation": "faq.md", "text": "A1"}]}}}]
    return {"variants": variants, "paired": {"rag": {"f1": _s(0.4, 0.3, 0.5)}}, "costs": COSTS,
            "recommendation": rec, "per_question": per_q, "warnings": ["a warning"], "forgetting": [],
            "settings": {"metric": "f1"}}


def test_report_files_written(tmp_path):
    paths = write_report(synthetic_result(), tmp_path / "out" / "report.md")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "**Recommendation: rag (clear winner).**" in md and "![metrics" in md and "Q1 \\| pipe?" in md
    assert "0.600 [0.500, 0.700]" in md and "a warning" in md
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "<table>" in page and "Q1 | pipe?" in page


def test_run_store_roundtrip(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    result = synthetic_result()
    first = store.add({"metric": "f1"}, result, label="first")
    second = store.add({"metric": "nll"}, replace(result, per_question=[]))
    assert [r.id for r in store.list()] == [second, first]
    run = store.get(first)
    assert run.label == "first" and run.settings == {"metric": "f1"}
    assert run.result == result and run.result.schema_version == SCHEMA_VERSION  # result -> stored -> loaded
    assert run.result.recommendation.variant == "rag" and run.result.per_question[0].answers["rag"].sources[0].citation == "faq.md"
    with pytest.raises(ArenaError, match="no comparison run with id 99"):
        store.get(99)


def _store_raw(store: RunStore, result: dict) -> int:
    """A run as an older version of the tool stored it: its JSON exactly, no schema_version."""
    import json
    import sqlite3

    with sqlite3.connect(store.path) as db:
        return db.execute("INSERT INTO runs (created, label, settings, result) VALUES (0, 'old', '{}', ?)",
                          (json.dumps(result),)).lastrowid


def test_old_stored_run_converts_or_is_refused_naming_it(tmp_path, capsys):
    store = RunStore(tmp_path / "runs.sqlite")
    old = synthetic_dict()  # no schema_version, no router/judge/bias/learned/why keys, a pre-outcome verdict
    old["recommendation"] = {k: v for k, v in old["recommendation"].items() if k != "outcome"}
    converted = store.get(_store_raw(store, old)).result
    assert converted.schema_version == SCHEMA_VERSION and converted.router is None and converted.bias == []
    assert converted.recommendation.outcome == "clear" and converted.why == {}
    broken = _store_raw(store, {"variants": {}, "recommendation": {}})  # no per_question: nothing to show
    with pytest.raises(ArenaError, match=f"comparison run {broken} in .*runs.sqlite.* no per_question"):
        store.get(broken)
    newer = _store_raw(store, {**synthetic_result().to_dict(), "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ArenaError, match=f"comparison run {newer} .*newer than this version"):
        store.get(newer)
    assert [r.label for r in store.list()] == ["old"]  # the unreadable ones are left out of the list, named
    assert f"comparison run {broken}" in capsys.readouterr().err


def test_result_fields_are_checked():
    result = synthetic_result()
    with pytest.raises(AttributeError):
        result.recomendation  # noqa: B018 -- a misspelt field fails instead of reading as "not measured"
    with pytest.raises(AttributeError):
        result.warning = ["typo"]
    assert ComparisonResult.from_dict(result.to_dict()) == result


# ---------------------------------------------------------------- views and the Compare tab


def test_views_tables_and_question_html(tmp_path):
    from assistant.compare import views

    result = synthetic_result()
    header, rows = views.results_table(result)
    assert header[0] == "variant" and header[-1] == "Δ token F1 vs base"
    assert rows[1][0] == "rag" and rows[1][1] == "0.600 [0.500, 0.700]" and rows[1][-1] == "0.400 [0.300, 0.500]"
    assert views.question_choices(result, only_disagree=True) == [("#1 Q1 | pipe? ⚡", 0)]
    page = views.question_html(result, 0)
    assert "faq.md" in page and "token F1: 1.000" in page and "Reference:</b> A1" in page
    store = RunStore(tmp_path / "runs.sqlite")
    store.add({"metric": "f1", "eval": "e.jsonl"}, result, label="r1")
    header, rows = views.runs_table(store.list())
    assert header == ["id", "label", "eval", "metric", "base", "rag", "recommended"]
    assert rows[0][-1] == "rag (clear)" and rows[0][2] == "e.jsonl"


def test_compare_tab_builds(tiny_loaded, data_dir):
    import gradio as gr

    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from ui.compare import build_compare_tab

    with gr.Blocks() as demo:
        build_compare_tab(Runtime(Settings(data_dir=data_dir), base=tiny_loaded))
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"compare-run", "compare-table", "compare-variants", "compare-question"} <= ids


def test_cli_summary_text():
    from assistant.cli.compare import summary_text

    text = summary_text(synthetic_result())
    assert "token F1 (mean [95 % CI]):" in text and "rag            0.600 [0.500, 0.700]" in text
    assert "recommendation: rag" in text and "warning: a warning" in text


def test_compare_flags_come_from_compare_config():
    """The settings flags are CompareConfig's fields (either spelling); the flags not given keep its defaults."""
    from assistant.cli.compare import compare_config
    from assistant.cli.main import build_parser
    from assistant.compare.config import CompareConfig
    from foundation.variants import STRATEGIES

    def parse(*flags):
        return compare_config(build_parser().parse_args(["compare", "--eval", "q.jsonl", *flags]))

    assert parse() == CompareConfig(variants=("base", "prompt", "rag"))  # no adapter: the variants without one
    given = parse("--adapter", "a", "--metric", "nll", "--no-forgetting", "--max_new_tokens", "6", "--seed", "3",
                  "--equivalence-margin", "0.1", "--stop-on-loop", "0", "--judge", "local")
    assert given == CompareConfig(variants=STRATEGIES, metric="nll", adapter="a", seed=3, max_new_tokens=6,
                                  stop_on_loop=0, forgetting=False, judge="local", equivalence_margin=0.1)
    assert parse("--variants", "base", "rag").variants == ("base", "rag")
    with pytest.raises(SystemExit):
        parse("--metric", "bleu")  # a Literal field: argparse names the choices
