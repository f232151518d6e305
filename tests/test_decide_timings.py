"""The decide report's timing table: wall time per stage and sub-stage (training: paraphrases/data/load vs the
optimizer steps; comparison: answering, reference NLL, probes...), the plan's estimate beside it, stored with the
run (summary, report.json) and shown in report.md / report.html; a cached stage shows as cached.

The end-to-end test runs decide twice on the tiny in-process Llama (the second run takes everything from the
cache). No test asserts a speed: only that the times are measured, consistent and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.cli.decide import summary_text
from assistant.compare.recommend import Recommendation
from assistant.decide.cache import StageCache
from assistant.decide.outputs import CompareOutput, StageRun, TrainOutput
from assistant.decide.plan import PlanStage
from assistant.decide.runner import run_decide
from assistant.decide.timings import PhaseClock, collect, phase_of
from foundation.settings import Settings
from tests.test_decide import make_inputs, small_config


class Ticks:
    """A clock that advances only when told, so phase boundaries give exact seconds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_phase_clock_attributes_time_to_the_phase_each_progress_text_names():
    ticks = Ticks()
    clock = PhaseClock(ticks)
    seen = []
    progress = clock.wrap(lambda fraction, text: seen.append(text))
    for advance, text in ((0, "answering 3 questions × 2 variants"), (5, "answering: 1/3"), (2, "reference "
                          "likelihoods"), (3, "scoring"), (1, "forgetting check"), (4, "bias probe"),
                          (2, "done"), (0, "seed 1: answering 3 questions × 1 variants"), (6, "seed 1: done")):
        ticks.now += advance
        progress(0.5, text)
    ticks.now += 9  # after the last "done" (the verdict over seeds): no sub-stage's time
    assert clock.stop() == {"answering": 7.0 + 6.0, "reference NLL": 3.0, "scoring": 1.0,
                            "probes (forgetting, bias)": 6.0}
    assert seen[1] == "answering: 1/3"  # the wrapped progress still gets every call
    assert phase_of("seed 2: router (cross-validated over the questions)") == "router"
    assert phase_of("answering: 2/5") == "answering" and phase_of("starting") is None


def test_collect_splits_training_and_comparison_and_compares_with_the_plan():
    stages = [StageRun("ingest", 4.0, True, ""), StageRun("train-s0", 50.0, False, ""),
              StageRun("train-s1", 30.0, False, ""), StageRun("compare", 20.0, False, "")]
    plan = [PlanStage("ingest", "", "", 0.1, 6.0, False), PlanStage("train", "", "", 2.0, 120.0, False),
            PlanStage("compare", "", "", 0.7, 40.0, False)]
    rec = Recommendation("rag", "", True, "f1")
    outputs = {"train-s0": TrainOutput("a0", "j0", False, metrics={"train_seconds": 35.0, "steps": 80,
                                                                     "max_steps": 160, "early_stopped_at": 80}),
               "train-s1": TrainOutput("a1", "j1", False, metrics={"train_seconds": 30.0, "steps": 60,
                                                                     "max_steps": 60}),
               "compare": CompareOutput(1, rec, 8, 3, {}, {"answering": 15.0, "reference NLL": 4.0})}
    t = collect(stages, plan, outputs)
    by = {r.stage: r for r in t.rows}
    assert by["ingest"].cached and by["ingest"].seconds == 0.0
    assert by["train-s0"].planned_s == 60.0
    assert by["train-s0 · optimizer steps (80 of 160 steps, stopped early)"].seconds == 35.0
    assert by["train-s1 · optimizer steps (60 of 60 steps)"].seconds == 30.0
    assert by["train-s0 · paraphrases, data, model load and save"].seconds == 15.0
    assert by["compare · answering"].sub and by["compare · reference NLL"].seconds == 4.0
    assert (t.took_s, t.planned_s, t.ratio()) == (100.0, 160.0, 0.62)  # cached ingest: neither planned nor taken
    assert t.headline() == "plan said 2.7 min, took 1.7 min (0.62 × the plan)"
    header, rows = t.table()
    assert header[0] == "stage" and ["ingest", "cached", "cached", ""] in rows
    assert t.over_budget(0) == t.over_budget(100 / 60 / 1.3) == ""  # no budget; exactly 1.3 x the budget
    assert t.over_budget(1.0) == ("the run took 1.7 min, 1.7 × its 1 min budget (a busy machine, or stages that "
                                  "cannot shrink to the budget: see the plan's notes)")  # none ran past its plan
    by["train-s1"].seconds, by["compare"].seconds = 90.0, 130.0  # 1.5 x and 3.25 x their plans
    assert t.over_budget(1.0).startswith("the run took 4.5 min, 4.5 × its 1 min budget; furthest past their "
                                         "plan: compare 130 s (planned 40 s), train-s1 90 s (planned 60 s) (")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("decide-timings")
    settings = Settings(data_dir=root / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(make_inputs(root), forgetting=True)
    first = run_decide(cfg, settings, stderr=False)
    report = {k: Path(getattr(first.report, k)).read_text() for k in ("markdown", "html", "json")}
    again = run_decide(cfg, settings, stderr=False)
    return first, report, again, Path(first.workspace), tiny_model_dir


def test_report_shows_the_timing_table_with_sub_stages(two_runs):
    first, report, *_ = two_runs
    timings = first.timings
    names = [r.stage for r in timings.rows]
    assert [n for n in names if " · " not in n] == ["ingest", "evalset", "retrieval", "trainset", "train-s0",
                                                    "compare", "report"]
    assert any(n.startswith("train-s0 · optimizer steps (") and " of 6 steps" in n for n in names)
    for sub in ("train-s0 · paraphrases, data, model load and save",
                "compare · answering", "compare · reference NLL", "compare · probes (forgetting, bias)"):
        assert sub in names
    by = {r.stage: r for r in timings.rows}
    for stage in ("train-s0", "compare"):  # the sub-stages are parts of their stage's wall time
        parts = sum(r.seconds for r in timings.rows if r.stage.startswith(f"{stage} · "))
        assert 0 < parts <= by[stage].seconds + 0.2
    assert all(not r.cached and r.planned_s for r in timings.rows if not r.sub and r.stage != "report")
    stored = json.loads(report["json"])["timings"]
    assert [r["stage"] for r in stored["rows"]] == names[:-1]  # the report stage runs after its own report
    assert stored["planned_s"] > 0 and stored["took_s"] > 0
    assert "## Time" in report["markdown"] and "plan said " in report["markdown"]
    assert "| compare · answering |" in report["markdown"] and "compare · reference NLL" in report["html"]
    assert f"budget {first.plan.notes[0].split()[1]} min" in report["markdown"]


def test_cached_stages_show_as_cached_and_the_cli_says_plan_against_actual(two_runs):
    first, _, again, *_ = two_runs
    timings = again.timings
    assert all(r.cached and r.seconds == 0 for r in timings.rows)
    assert timings.headline().endswith("(every stage cached)")
    assert "time: plan said " in summary_text(first) and "× the plan" in summary_text(first)


def test_training_estimate_counts_the_real_rows_tokens(two_runs):
    """Once the rows exist, the plan's tokens per row are theirs, in the model's chat template (not typical sizes)."""
    from transformers import AutoTokenizer

    *_, folder, model_dir = two_runs
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainset = StageCache(folder).output("trainset")
    rows = [json.loads(line)["messages"] for line in (folder / "stages" / "trainset" / "qa.jsonl").read_text()
            .splitlines()]
    real = [len(tokenizer.apply_chat_template(m, add_generation_prompt=True, return_dict=True)["input_ids"])
            for m in rows]
    assert trainset.fit.tokens_per_row == pytest.approx(sum(real) / len(real), abs=0.1)  # Q/A only: no paraphrases
