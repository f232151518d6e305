"""The verdict explains itself: why-sentences, the report's verdict sections, the adapter's own-training check."""

from __future__ import annotations

import json

import pytest
import torch

from assistant.compare.learned import training_sample
from assistant.compare.recommend import Recommendation, headline
from assistant.compare.report import render_markdown, write_report
from assistant.compare.result import ComparisonResult
from assistant.compare.why import why_sentences
from assistant.decide.result import DecideResult
from tests.conftest import make_lora


def _row(mean, lo, hi, separated, level=0.05, p=0.5, seed_flip=False, equivalent=False):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "level": level, "p_value": p, "p_adjusted": p,
            "test": "bootstrap", "mcnemar": None, "separated": separated, "seed_flip": seed_flip,
            "questions_needed": None if separated else 140, "n": 44, "sd": 0.2, "se": 0.03,
            "tost_p": 0.004 if equivalent else 0.6, "tost_p_adjusted": 0.016 if equivalent else 0.6,
            "tost_level": 0.0125 if equivalent else 0.05, "tost_low": -0.02 if equivalent else lo,
            "tost_high": 0.045 if equivalent else hi, "equivalent": equivalent, "seeds_exceed_margin": False}


def _s(mean):
    return {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05, "n": 44}


def hand_result() -> dict:
    """rag recommended as practically equivalent to rag+finetuned and cheaper; base, prompt and finetuned
    measurably behind."""
    means = {"rag+finetuned": 0.52, "rag": 0.50, "finetuned": 0.30, "prompt": 0.25, "base": 0.20}
    comparisons = {"rag": _row(0.02, -0.03, 0.07, False, equivalent=True), "finetuned": _row(0.22, 0.15, 0.29, True, 0.025, 0.001),
                   "prompt": _row(0.27, 0.2, 0.34, True, 0.0167, 0.001), "base": _row(0.32, 0.25, 0.39, True,
                                                                                    0.0125, 0.001)}
    costs = {"base": {"training_seconds": 0, "extra_prompt_tokens": 0, "memory_mb": 0, "seconds_per_answer": 1.0},
             "prompt": {"training_seconds": 0, "extra_prompt_tokens": 120, "memory_mb": 0, "seconds_per_answer": 1.1},
             "rag": {"training_seconds": 0, "extra_prompt_tokens": 400, "memory_mb": 2.5, "seconds_per_answer": 1.2},
             "finetuned": {"training_seconds": 720, "extra_prompt_tokens": 0, "memory_mb": 4.0,
                           "seconds_per_answer": 1.0},
             "rag+finetuned": {"training_seconds": 720, "extra_prompt_tokens": 400, "memory_mb": 6.5,
                               "seconds_per_answer": 3.0}}
    variants = {v: {"f1": _s(m)} for v, m in means.items()}
    variants["rag"]["retrieval_hit"] = variants["rag+finetuned"]["retrieval_hit"] = _s(0.45)
    change = {"mean": 0.2, "ci_low": 0.15, "ci_high": 0.25, "level": 0.975, "n": 20}
    forgetting = [{"adapter": "faq-lora", "margin": 0.15, "flagged": True, "message": "FORGETTING: ...",
                   "probes": {"general_qa": {"base_ppl": 10.0, "adapter_ppl": 12.3, "relative_change": 0.23,
                                             "ci_low": 0.18, "ci_high": 0.28, "nll_change": change},
                              "general_text": {"base_ppl": 20.0, "adapter_ppl": 21.0, "relative_change": 0.05,
                                               "ci_low": -0.01, "ci_high": 0.1, "nll_change": change}}}]
    learned = {"adapter": "faq-lora", "variant": "finetuned", "n": 16, "train": {"f1": _s(0.85)},
               "heldout": {"f1": _s(0.30)}}
    rec = {"variant": "rag", "reason": "Practically equivalent on token F1: ...", "clear": False, "metric": "f1",
           "outcome": "equivalent", "leader": "rag+finetuned", "p_best": 0.7, "margin": 0.05, "more_questions": None,
           "deciding_cost": "training_seconds", "best": "rag+finetuned", "runner_up": "rag", "n_questions": 44,
           "means": means, "comparisons": comparisons, "seeds": {},
           "stats": {"clustered": True, "clusters": 12, "note": "", "alpha": 0.05, "resamples": 4000,
                     "p_best": {"rag+finetuned": 0.7, "rag": 0.3}}}
    return {"variants": variants, "paired": {}, "costs": costs, "recommendation": rec, "per_question": [],
            "warnings": [], "forgetting": forgetting, "learned": learned, "settings": {"metric": "f1"}}


def typed(result: dict) -> ComparisonResult:
    return ComparisonResult.from_dict(result)


def test_why_sentences_from_a_hand_made_result():
    why = why_sentences(typed(hand_result()))
    assert set(why) == {"rag+finetuned", "finetuned", "prompt", "base"}  # one per losing variant
    assert all(s[0].isupper() and s.endswith(".") and s.count(".") <= 8 for s in why.values())
    top = why["rag+finetuned"]
    assert "scored highest on token F1 (0.520), but rag (0.500) is within the ±0.05 equivalence margin of it" in top
    assert "needs 720 s of adapter training instead of 0 s for rag" in top
    assert "held the reference answer for 45 % of the questions, so retrieval, not the model, caps" in top
    ft = why["finetuned"]
    assert "token F1 of 0.300 is measurably below rag+finetuned's 0.520 (by 0.220)" in ft
    assert "scores 0.85 token F1 against 0.30 on held-out ones" in ft and "do not carry over" in ft
    assert "perplexity on the general qa probe rose +23 % (interval +18 to +28 %)" in ft
    assert ft.count(";") == 2 and "min to train" not in ft  # the standing and the two most telling measurements
    assert why["prompt"] == ("Its token F1 of 0.250 is measurably below rag+finetuned's 0.520 (by 0.270); its "
                             "instructions and examples add 120 prompt tokens to every question.")
    assert "from pretraining alone" in why["base"]


def test_why_sentence_for_an_adapter_that_did_not_learn_and_a_slow_variant():
    result = hand_result()
    result["learned"]["train"] = {"f1": _s(0.12)}
    result["forgetting"] = []
    result["costs"]["rag+finetuned"].update(training_seconds=0, memory_mb=2.5)  # now costs the same as rag
    result["costs"]["prompt"]["seconds_per_answer"] = 2.5
    why = why_sentences(typed(result))
    assert "did not learn its training facts" in why["finetuned"]
    assert "its adapter took 12.0 min to train" in why["finetuned"]
    assert "at the same cost, and it ranked lower" in why["rag+finetuned"]
    assert why["prompt"].endswith("to every question; an answer takes 2.5 s against 1.2 s for rag.")
    assert why_sentences(typed({**hand_result(), "recommendation": {"variant": None}})) == {}


def test_why_sentence_names_each_cost_once_and_a_rag_that_had_the_answer():
    result = hand_result()
    result["recommendation"]["comparisons"]["prompt"] = _row(0.27, -0.05, 0.5, False)  # tied, and costlier:
    result["costs"]["prompt"]["extra_prompt_tokens"] = 500  # a long few-shot prompt
    result["variants"]["rag+finetuned"].update(retrieval_hit=_s(0.9), groundedness=_s(0.4))
    why = why_sentences(typed(result))
    assert why["prompt"].count("prompt tokens") == 1 and "adds 500 prompt tokens per question instead of 400" \
        in why["prompt"]
    assert ("held the reference answer for 90 % of the questions, so the answers, not retrieval, fall short "
            "(40 % of its answers' content words come from them)") in why["rag+finetuned"]


def test_report_shows_verdict_why_and_statistics(tmp_path):
    result = hand_result()
    result["why"] = why_sentences(typed(result))
    md = render_markdown(typed(result), "chart.png")
    assert "## Why not the others" in md and "- finetuned: " + result["why"]["finetuned"] in md
    assert "## Paired difference against the best (Holm-adjusted)" in md
    assert md.startswith("# Strategy comparison\n\n**Recommendation: rag (practically equivalent: within ±0.05 "
                         "token F1 of the leader rag+finetuned, and cheaper).**")
    assert ("| rag | +0.020 [-0.030, +0.070] | 0.05 | bootstrap | 0.5 (0.5) | no | 140 | yes: 0.004 (0.016) "
            "[-0.020, +0.045] |") in md
    assert "P(best), the share of paired resamples in which a variant has the best mean: rag+finetuned 70 %" in md
    assert "44 questions; paired bootstrap over 12 source clusters, 4000 resamples; Holm correction over 4" in md
    assert "| rag+finetuned | 720 | 400.0 | 6.5 | 3.00 |" in md  # costs with seconds per answer
    page = write_report(typed(result), tmp_path / "r.md")["html"].read_text()
    assert "Why not the others" in page and "caps what it can score" in page


def test_an_inconclusive_verdict_is_said_plainly_everywhere(tmp_path):
    from assistant.cli.compare import summary_text
    from assistant.compare.views import recommended
    from assistant.decide.report import headline as decision_headline
    from assistant.decide.report import write_decision_report

    result = hand_result()
    rec = result["recommendation"]
    rec.update(variant=None, outcome="inconclusive", more_questions=96, reason="No variant yet: inconclusive ...")
    rec["comparisons"]["rag"] = _row(0.02, -0.03, 0.07, False)  # neither separated nor shown equivalent
    result["why"] = why = why_sentences(typed(result))
    assert set(why) == {"rag", "finetuned", "prompt", "base"}  # every variant but the leader
    assert "trails the leader rag+finetuned (0.520) by 0.020, not measurably" in why["rag"]
    md = render_markdown(typed(result), "c.png")
    assert "**Recommendation: no variant yet (inconclusive: rag+finetuned leads, P(best) 70 %).**" in md
    assert "## Where the others stand against the leader" in md and "Why not the others" not in md
    assert decision_headline(typed(result)) == "No variant yet (inconclusive: rag+finetuned leads, P(best) 70 %)"
    write_decision_report(typed(result), _decision(tmp_path), tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# Decision: No variant yet (inconclusive: rag+finetuned")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verdict"] is None and data["outcome"] == "inconclusive" and data["leader"] == "rag+finetuned"
    assert data["p_best"] == 0.7 and data["more_questions"] == 96 and data["margin"] == 0.05
    assert "recommendation: no variant yet (inconclusive: rag+finetuned leads" in summary_text(typed(result))
    assert recommended(Recommendation.from_dict(rec)) == "none yet (leader rag+finetuned)"
    rec.update(variant="rag", outcome="equivalent")
    assert decision_headline(typed(result)).startswith("Use rag (practically equivalent: within ±0.05 token F1 of the leader")
    assert recommended(Recommendation.from_dict(rec)) == "rag (equivalent)"


def _decision(folder) -> DecideResult:
    """A finished decision around the hand-made result: 44 questions from a Q/A file, no stages run here."""
    from assistant.decide.config import DecideConfig
    from assistant.decide.outputs import EvalsetOutput
    from assistant.decide.plan import Plan
    from assistant.decide.timings import StageTimings
    from tests.test_decide_outputs import SAMPLES

    return DecideResult(DecideConfig(docs=["faq.md"]), str(folder), Plan(), [], EvalsetOutput(44, 0, 0, "qa"),
                        SAMPLES["retrieval"], SAMPLES["trainset"], ["faq-s0"], SAMPLES["compare"], StageTimings())


def _write_job(data_dir, job_id, rows):
    folder = data_dir / "jobs" / job_id
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")


def _chat(q, a, system=""):
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"kind": "chat", "messages": msgs, "text": "", "chosen": "", "rejected": "", "origin": ""}


def test_training_sample_reads_the_adapters_job_rows(tmp_path):
    data_dir, adapter = tmp_path / "data", tmp_path / "data" / "adapters" / "a"
    adapter.mkdir(parents=True)
    rows = [_chat(f"Question {i}?", f"Answer {i}.") for i in range(30)]
    rows += [_chat("Grounded?", "Yes [1].", system="[1] (faq.md) passage"), {"kind": "text", "text": "raw"}]
    _write_job(data_dir, "job-1", rows)
    (adapter / "arena_adapter.json").write_text(json.dumps({"job_id": "job-1"}))
    sample = training_sample(data_dir, adapter, k=8, seed=3)
    assert len(sample) == 8 and len({it.question for it in sample}) == 8
    assert all(it.answer == it.question.replace("Question", "Answer").replace("?", ".") for it in sample)
    assert sample == training_sample(data_dir, adapter, k=8, seed=3)  # seeded
    assert all(it.question != "Grounded?" for it in training_sample(data_dir, adapter, k=100))
    (adapter / "arena_adapter.json").write_text(json.dumps({"job_id": "../../../jobs/job-1/../x"}))
    assert training_sample(data_dir, adapter) == []  # a marker cannot point outside jobs/
    (adapter / "arena_adapter.json").write_text(json.dumps({"method": "lora"}))
    assert training_sample(data_dir, adapter) == []  # registered without a job: the check is skipped


@pytest.fixture
def tiny_runtime(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.runtime import Runtime
    from foundation.models import LoadedModel
    from foundation.registry import AdapterRegistry
    from foundation.settings import Settings

    data_dir = tmp_path / "arena_data"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    loaded = LoadedModel(model, tok, str(tiny_model_dir), str(tiny_model_dir), torch.float32,
                         torch.device("cpu"))
    _write_job(data_dir, "job-7", [_chat(f"What is item {i}?", f"Item {i} is blue.") for i in range(6)])
    meta = {"method": "lora", "base_model": str(tiny_model_dir), "peft_type": "LORA", "job_id": "job-7",
            "metrics": {"train_seconds": 90.0}}
    AdapterRegistry(data_dir).register("lora", make_lora(model, tmp_path / "lora", 1), meta, ["What is item 0?"])
    return Runtime(Settings(data_dir=data_dir, model=str(tiny_model_dir)), base=loaded)


def test_runner_adds_learned_check_why_and_verdict(tiny_runtime):
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.comparison import run_comparison
    from ui.compare import _show

    items = [EvalItem(f"Which colour is thing {i}?", "It is red.", source="faq.md", section=f"s{i % 2}")
             for i in range(4)]
    compare_cfg = CompareConfig(variants=("base", "finetuned"), adapter="lora", max_new_tokens=4, learned_sample=3,
                                forgetting=False)
    result = run_comparison(tiny_runtime, items, compare_cfg, store=False)
    learned = result.learned
    assert learned.n == 3 and learned.adapter == "lora" and learned.train["f1"].n == 3
    assert learned.heldout == result.variants["finetuned"]
    rec = result.recommendation
    assert set(rec.comparisons) == {"base", "finetuned"} - {rec.best} and rec.n_questions == 4
    assert "only 2 distinct sources" in rec.stats["note"]  # 2 sections: too few to resample by section
    loser = ({"base", "finetuned"} - {rec.variant or rec.leader}).pop()
    assert set(result.why) == {loser} and result.why[loser].endswith(".")
    assert all(c.seconds_per_answer > 0 for c in result.costs.values())
    text = _show(tiny_runtime, result, False)[1]
    assert text.startswith(f"### Recommendation: {headline(rec)}\n") and f"- **{loser}**: " in text
    no_check = run_comparison(tiny_runtime, items, CompareConfig(variants=("base", "finetuned"), adapter="lora",
                                                                 max_new_tokens=2, learned_sample=0,
                                                                 forgetting=False), store=False)
    assert no_check.learned is None
