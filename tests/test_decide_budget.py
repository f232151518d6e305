"""The default time budget of `arena decide`: one constant read by the config, the CLI and the Decide tab; the plan
fits training into what the other stages leave, says when the budget cut it, and `--budget-minutes 0` still
fits the plan to the data. Plans only: nothing is trained (the plan reads the inputs and this data folder)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.cli.main import build_parser
from assistant.decide.config import DEFAULT_BUDGET_MINUTES, DecideConfig, config_from_args
from assistant.decide.runner import plan_for
from foundation.settings import Settings


def faq(folder: Path, pairs: int) -> dict:
    """A FAQ page and its Q/A file with `pairs` questions (one section each)."""
    docs = folder / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("# FAQ\n\n" + "\n".join(
        f"## How do I set dial {i}?\nTurn dial {i} to position {i * 7} and press the green button twice.\n"
        for i in range(pairs)))
    qa = folder / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Which position does dial {i} need?",
                                      "answer": f"Position {i * 7}."}) + "\n" for i in range(pairs)))
    return {"docs": str(docs), "qa": str(qa)}


def parse(argv: list[str]) -> DecideConfig:
    return config_from_args(build_parser("decide").parse_args(["decide", *argv]))


def train_row(plan):
    return next(s for s in plan.stages if s.stage == "train")


def test_default_budget_is_one_constant_for_config_cli_and_tab(tmp_path):
    inputs = faq(tmp_path, 10)
    assert 0 < DEFAULT_BUDGET_MINUTES <= 20 and DecideConfig().budget_minutes == DEFAULT_BUDGET_MINUTES
    assert parse([inputs["docs"], "--qa", inputs["qa"]]).budget_minutes == DEFAULT_BUDGET_MINUTES
    assert parse([inputs["docs"], "--budget-minutes", "0"]).budget_minutes == 0  # 0 = fit to the data
    assert parse([inputs["docs"], "--budget-minutes", "25"]).budget_minutes == 25
    gr = pytest.importorskip("gradio")
    from ui.decide import _input_controls

    with gr.Blocks():
        controls = _input_controls()
    budget = next(c for c in controls if getattr(c, "elem_id", "") == "decide-budget")
    assert budget.value == DEFAULT_BUDGET_MINUTES


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    return Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")


def test_default_plan_fits_the_budget_and_says_what_it_cut(tmp_path, settings):
    inputs = faq(tmp_path, 150)
    # few questions, no paraphrases: the other stages leave training room within the budget
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"], limit=8, augment="").resolved()
    fitted = plan_for(replace(cfg, budget_minutes=0), settings)
    plan = plan_for(cfg, settings)
    wanted = train_row(fitted).count.split(" steps")[0].split("× ")[1]
    assert plan.steps_per_seed < int(wanted) == fitted.steps_per_seed  # the fitted plan is what the budget cut
    cut = next(n for n in plan.notes if "cut training" in n)
    # at most two epochs run in batches of 4 rows instead of the job's 8 (more optimizer steps on the same rows)
    assert re.search(rf"budget {DEFAULT_BUDGET_MINUTES:g} min cut training from {wanted} (steps of 8 rows )?to "
                     rf"{plan.steps_per_seed} steps", cut)
    assert plan.notes[0].startswith(f"budget {DEFAULT_BUDGET_MINUTES:g} min for a fresh run")
    assert "over budget" not in plan.notes[0]
    fresh = sum(s.seconds for s in plan.stages) / 60  # every stage, as a fresh run does them
    assert DEFAULT_BUDGET_MINUTES * 0.8 <= fresh <= DEFAULT_BUDGET_MINUTES * 1.02
    assert fitted.minutes > 3 * DEFAULT_BUDGET_MINUTES  # the data-fitted plan is the one nobody waits for
    assert not any("budget" in n for n in fitted.notes)


def test_budget_pays_the_other_stages_first_and_keeps_one_epoch_when_they_fill_it(tmp_path, settings):
    inputs = faq(tmp_path, 150)
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"], limit=8, augment="").resolved()
    roomy, more_questions = plan_for(cfg, settings), plan_for(replace(cfg, limit=20), settings)
    assert more_questions.steps_per_seed < roomy.steps_per_seed  # a longer comparison leaves less for training
    assert more_questions.other_s > roomy.other_s
    # All defaults on 200 pairs: 60 questions x 5 variants and 5 paraphrases of 140 questions fill the budget by
    # themselves: the reference NLL goes, then rewrites down to one per question, and training keeps one epoch of
    # one seed.
    (tmp_path / "big").mkdir()
    big = faq(tmp_path / "big", 200)
    full = plan_for(DecideConfig(docs=[big["docs"]], qa=big["qa"]).resolved(), settings)
    assert full.notes[0].endswith("training keeps its floor (one epoch of one seed)")
    assert any("fill the 10 min budget" in n for n in full.notes)
    assert any("leaves out the comparison's reference NLL" in n for n in full.notes) and not full.reference_nll
    assert any("cut the rewrites per training question from 5 to 1" in n for n in full.notes)
    rows = int(train_row(full).count.split(" on ")[1].split()[0])
    q = rows // 2  # Q/A rows (+ as many grounded rows); 55 % of the sampled rewrites are kept (PARAPHRASE_KEPT)
    one_epoch = -(-round((q + round(q * 0.55) + q) * 0.9) // 8)  # batch 8, 10 % validation
    assert (full.seeds, full.steps_per_seed) == (1, 2 * one_epoch)  # run in batches of 4: twice the steps
    assert any(f"to {2 * one_epoch} steps of 4 rows per seed (1 epoch(s), the floor" in n for n in full.notes)
    assert "no reference NLL" in next(s for s in full.stages if s.stage == "compare").what
    assert full.minutes > DEFAULT_BUDGET_MINUTES  # said, not hidden: the plan shows the real total


def _costs(k: int, q: int = 50, short: float = 80.0, long: float = 500.0) -> tuple[float, float, float, float]:
    """By hand: (one epoch of one seed, writing the rewrites, what a seed costs besides its steps, one step of 8
    rows) in seconds
    for q Q/A + q grounded rows with k rewrites per question (55 % kept; 5 rows decoded in the time of one), batch
    8, 10 % validation, the assumed fp32 150 tokens/s; per seed 20 s and two validations, a validation token at
    half a training token's cost."""
    shorts = q + round(q * k * 0.55)
    rows = shorts + q
    epoch = -(-round(rows * 0.9) // 8)
    per_row = (shorts * short + q * long) / rows
    seed = 20 + 2 * round(rows * 0.1) * per_row * 0.5 / 150
    return epoch * 8 * per_row / 150 + seed, q * k * 30 / 15 / 5, seed, 8 * per_row / 150


def test_a_short_budget_drops_the_reference_nll_then_rewrites_then_keeps_the_floor(tmp_path, settings):
    from assistant.decide.config import job_config
    from assistant.decide.plan import training_fit

    inputs = faq(tmp_path, 10)
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"]).resolved()  # 10 min, 5 rewrites per question
    # fp32 on every CPU: the hand computation assumes its speed (a native-bf16 CPU would plan bf16's)
    job, budget, nll_s = replace(job_config(cfg), bf16="off"), DEFAULT_BUDGET_MINUTES * 60, 100.0

    def fit(other_s: float):
        return training_fit(cfg, settings, 100, job, other_s, 0.0, (80.0, 500.0), nll_s)

    roomy = fit(0.0)
    assert (roomy.reference_nll, roomy.paraphrases, roomy.at_floor) == (True, -1, False)
    floor5, write5, seed5, step5 = _costs(5)
    # the 8-row steps the budget allows, as epochs of the real rows
    assert roomy.epochs == pytest.approx((budget - write5 - seed5) // step5 / ((floor5 - seed5) / step5), abs=0.01)
    no_nll = fit(budget - write5 - floor5 + nll_s / 2)  # one epoch fits only without the reference NLL
    assert (no_nll.reference_nll, no_nll.paraphrases, no_nll.at_floor) == (False, -1, False)
    floor3, write3, _, _ = _costs(3)
    three = fit(budget + nll_s - write3 - floor3 - 1)  # ... and three rewrites per question, not four
    assert (three.reference_nll, three.paraphrases, three.at_floor) == (False, 3, False)
    assert any("from 5 to 3" in n for n in three.notes)
    floor = fit(10 * budget)
    assert (floor.reference_nll, floor.paraphrases, floor.at_floor, floor.epochs) == (False, 1, True, 1.0)
    # one epoch of 8-row steps runs as twice as many steps of 4 rows, each half as long; --batch-size keeps its own
    # k=1: 78 short rows (50 + 28 rewrites) of 80 tokens and 50 grounded of 500: 244.1 tokens a row, 4 per step
    assert floor.batch_size == 4 and floor.step_s == pytest.approx(4 * (78 * 80 + 50 * 500) / 128 / 150, abs=0.01)
    own = training_fit(replace(cfg, batch_size=8), settings, 100, replace(job, batch_size=8),
                       10 * budget, 0.0, (80.0, 500.0), nll_s)
    assert own.batch_size == 0 and floor.steps_per_seed == 2 * own.steps_per_seed
    assert floor.step_s == pytest.approx(own.step_s / 2, abs=0.01)
    assert roomy.batch_size == (4 if roomy.epochs <= 2 else 0)
    needs_nll = training_fit(cfg, settings, 100, job, 10 * budget, 0.0, (80.0, 500.0), nll_s=0.0)  # metric nll
    assert needs_nll.reference_nll and needs_nll.paraphrases == 1


def test_training_estimate_weights_rows_by_their_counts_after_paraphrases(tmp_path, settings):
    """The cause of issue 25's 4,600 s planned vs 683 s taken: every row was costed as the mean of a Q/A and a
    grounded row, although 5 paraphrases make the short rows 6 of every 7."""
    from assistant.decide.config import job_config
    from assistant.decide.plan import training_fit
    from training.plan import DEFAULT_BF16_TOKENS_PER_S, DEFAULT_TOKENS_PER_S

    inputs = faq(tmp_path, 10)
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"], budget_minutes=0).resolved()  # 5 paraphrases
    job = replace(job_config(cfg), bf16="off")
    fit = training_fit(cfg, settings, 100, job, row_tokens=(80.0, 500.0))  # 50 Q/A + 50 grounded rows
    # 50 Q/A rows and 55 % of their 250 rewrites kept: 188 short rows beside 50 grounded ones
    assert fit.tokens_per_row == pytest.approx((188 * 80 + 50 * 500) / 238, abs=0.1)  # 168.2
    assert fit.tokens_per_row < 0.7 * (80 + 500) / 2  # the per-source-row mean it replaces: 290
    assert fit.step_s == pytest.approx(job.batch_size * fit.tokens_per_row / DEFAULT_TOKENS_PER_S, abs=0.01)
    in_bf16 = training_fit(cfg, settings, 100, replace(job, bf16="on"), row_tokens=(80.0, 500.0))
    assert in_bf16.bf16 and not fit.bf16  # nothing trained here yet: each precision's own assumed speed
    assert in_bf16.step_s == pytest.approx(job.batch_size * fit.tokens_per_row / DEFAULT_BF16_TOKENS_PER_S, abs=0.01)
    alone = training_fit(replace(cfg, augment=""), settings, 100, replace(job, augment=""),
                         row_tokens=(80.0, 500.0))
    assert alone.tokens_per_row == pytest.approx(290.0)  # without paraphrases the halves are equal
    # before the rows exist: the constants, with the grounded passages bounded by the job's passage budget
    budgeted, unbounded = training_fit(cfg, settings, 100, job), training_fit(
        cfg, settings, 100, replace(job, grounded_passage_tokens=0))
    assert budgeted.tokens_per_row < unbounded.tokens_per_row


def test_a_run_at_the_floor_trains_one_epoch_of_its_real_rows_with_fewer_rewrites_and_no_reference_nll(
        tmp_path, settings):
    """End to end on the tiny model: a budget nothing fits. The job is asked for one epoch of the rows it builds
    (not the plan's step estimate), one rewrite per question instead of two, and the comparison scores no
    reference NLL while its verdict stands."""
    from assistant.compare.runs import RunStore
    from assistant.decide.runner import run_decide
    from tests.test_decide import make_inputs, small_config
    from training.config import JobConfig

    # the job's own batch (8): a budget-cut run trains in batches of 4
    cfg = small_config(make_inputs(tmp_path), max_steps=-1, budget_minutes=0.01, augment="paraphrases:2",
                       batch_size=0)
    result = run_decide(cfg, settings, stderr=False)
    fit = result.trainset.fit
    assert (fit.at_floor, fit.paraphrases, fit.reference_nll, fit.epochs, fit.batch_size) == (True, 1, False, 1.0, 4)
    folder = next((settings.data_dir / "jobs").glob(f"decide-{cfg.name}-s0-*"))
    job_cfg = JobConfig.from_yaml(folder / "config.yaml")
    assert (job_cfg.epochs, job_cfg.max_steps, job_cfg.augment, job_cfg.batch_size) == (1.0, -1, "paraphrases:1", 4)
    rows = len((folder / "train.jsonl").read_text().splitlines())
    last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["max_steps"] == -(-rows // 4)  # one epoch of the rows it built, 4 per step
    assert job_cfg.eval_steps == -(-fit.steps_per_seed // 2)  # validated twice
    stored = RunStore(settings.data_dir / "runs.sqlite").get(result.compare.run_id).result
    assert all(a.scores["nll"] is None and a.scores["f1"] is not None
               for q in stored.per_question for a in q.answers.values())
    assert result.compare.recommendation.metric == "f1" and result.compare.recommendation.reason
    assert any("leaves out the comparison's reference NLL" in n for n in result.plan.notes)


def test_the_adapter_probes_are_a_fixed_cost_of_the_comparison(tmp_path, settings):
    """The forgetting check and the bias probe score fixed item sets: planned the same for 5 questions as for
    50, and not at all without them (before, a share of answering: seconds for a few questions)."""
    from assistant.decide.plan import PROBES_S

    inputs = faq(tmp_path, 150)
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"], augment="", budget_minutes=0).resolved()

    def compare_s(**changes) -> float:
        return next(s for s in plan_for(replace(cfg, **changes), settings).stages if s.stage == "compare").seconds

    for limit in (5, 50):
        assert compare_s(limit=limit) - compare_s(limit=limit, forgetting=False) == pytest.approx(PROBES_S, abs=0.2)
    assert compare_s(limit=5, variants=["base", "rag"]) < compare_s(limit=5) - PROBES_S  # no adapter, no probes
