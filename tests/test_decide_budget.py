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
    assert re.search(rf"budget {DEFAULT_BUDGET_MINUTES:g} min cut training from {wanted} to "
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
    # All defaults: 45 questions x 5 variants and 5 paraphrases of 105 questions fill the budget by themselves.
    full = plan_for(DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"]).resolved(), settings)
    assert full.notes[0].endswith("training keeps its floor (one epoch of one seed)")
    assert any("fill the 10 min budget" in n for n in full.notes)
    rows = int(train_row(full).count.split(" on ")[1].split()[0])
    one_epoch = -(-round((rows // 2 * 6 + rows // 2) * 0.9) // 8)  # Q/A x (1 + 5 paraphrases) + grounded, batch 8
    assert (full.seeds, full.steps_per_seed) == (1, one_epoch)
    assert full.minutes > DEFAULT_BUDGET_MINUTES  # said, not hidden: the plan shows the real total


def test_training_estimate_weights_rows_by_their_counts_after_paraphrases(tmp_path, settings):
    """The cause of issue 25's 4,600 s planned vs 683 s taken: every row was costed as the mean of a Q/A and a
    grounded row, although 5 paraphrases make the short rows 6 of every 7."""
    from assistant.decide.config import job_config
    from assistant.decide.plan import training_fit
    from training.plan import DEFAULT_TOKENS_PER_S

    inputs = faq(tmp_path, 10)
    cfg = DecideConfig(docs=[inputs["docs"]], qa=inputs["qa"], budget_minutes=0).resolved()  # 5 paraphrases
    job = job_config(cfg)
    fit = training_fit(cfg, settings, 100, job, row_tokens=(80.0, 500.0))  # 50 Q/A + 50 grounded rows
    assert fit.tokens_per_row == pytest.approx((50 * 6 * 80 + 50 * 500) / 350, abs=0.1)  # 194.3
    assert fit.tokens_per_row < 0.7 * (80 + 500) / 2  # the per-source-row mean it replaces: 290
    assert fit.step_s == pytest.approx(job.batch_size * fit.tokens_per_row / DEFAULT_TOKENS_PER_S, abs=0.01)
    alone = training_fit(replace(cfg, augment=""), settings, 100, job_config(replace(cfg, augment="")),
                         row_tokens=(80.0, 500.0))
    assert alone.tokens_per_row == pytest.approx(290.0)  # without paraphrases the halves are equal
    # before the rows exist: the constants, with the grounded passages bounded by the job's passage budget
    budgeted, unbounded = training_fit(cfg, settings, 100, job), training_fit(
        cfg, settings, 100, replace(job, grounded_passage_tokens=0))
    assert budgeted.tokens_per_row < unbounded.tokens_per_row
