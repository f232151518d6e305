"""Real-browser test of the Decide tab on the tiny model, end to end: upload documents and Q/A pairs, see the
plan, start, watch the progress bar move, read the report, and open its run in the Compare tab."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    require_chromium,
    set_number,
    shot,
    start_app,
    stop_app,
    upload,
)

pytestmark = pytest.mark.browser

DOC = "# Kettle manual\n\n" + "\n".join(
    f"## How do I set program {i}?\nHold the timer button for {i + 2} seconds, then press start.\n" for i in range(6))
STAGES = ["ingest", "evalset", "retrieval", "trainset", "train", "compare", "report"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decide-files")
    (folder / "kettle.md").write_text(DOC)
    (folder / "kettle-qa.jsonl").write_text("".join(
        json.dumps({"question": f"How long do I hold the timer for program {i}?",
                    "answer": f"{i + 2} seconds."}) + "\n" for i in range(12)))
    return folder


@pytest.fixture(scope="module")
def page(tiny_model_dir, tmp_path_factory):
    require_chromium()
    from playwright.sync_api import sync_playwright

    data_dir = tmp_path_factory.mktemp("decide-browser-data")
    proc, url = start_app(str(tiny_model_dir), data_dir, data_dir / "app.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            pg.set_default_timeout(30_000)
            pg.goto(url, wait_until="domcontentloaded")
            pg.wait_for_selector("#arena-header", timeout=60_000)
            yield pg
            browser.close()
    finally:
        stop_app(proc)


def _progress(page) -> tuple[str, int | None]:
    box = page.locator("#decide-progress")
    bar = box.locator("progress")
    value = int(bar.get_attribute("value")) if bar.count() else None
    return box.inner_text(), value


def _watch_progress(page, timeout_s: float = 900) -> list[tuple[str, int | None]]:
    """Every distinct (text, bar value) the progress box showed, until the run ended (or the timeout)."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text, value = _progress(page)
        if not seen or seen[-1] != (text, value):
            seen.append((text, value))
        if text.startswith(("done", "failed", "cancelled")):
            break
        page.wait_for_timeout(300)
    return seen


def test_decide_tab_runs_a_decision_and_links_into_compare(page, files):
    from playwright.sync_api import expect

    # The Decide tab is the first tab and the one shown on arrival.
    assert page.get_by_role("tab").first.inner_text().strip() == "Decide"
    expect(page.locator("#decide-docs")).to_be_visible()
    upload(page, "decide-docs", files / "kettle.md")
    upload(page, "decide-qa", files / "kettle-qa.jsonl")
    page.get_by_role("button", name="Run settings").click()
    set_number(page, "decide-max-steps", 16)
    set_number(page, "decide-max-new", 8)
    set_number(page, "decide-paraphrases", 1)
    page.get_by_label("Forgetting check of the adapter").uncheck()
    page.get_by_label("Also fine-tune on the documents' text (what RAG searches)").check()
    expect(page.locator("#decide-start")).to_be_disabled()
    expect(page.get_by_label("Training seeds")).to_have_value("0")  # auto, as in the CLI
    page.locator("#decide-plan-btn").click()
    plan = page.locator("#decide-plan")
    # auto: three seeds fit the default budget on the tiny model; their steps depend on the CPU's precision (16
    # asked: all of them in bf16, fewer where the CPU has no native bf16 and the plan assumes fp32's speed)
    expect(plan).to_contain_text(re.compile(r"3 × \d+ steps"))
    set_number(page, "decide-seeds", 1)  # one, to keep the run short
    page.locator("#decide-plan-btn").click()
    for stage in STAGES:
        expect(plan.get_by_role("gridcell", name=stage, exact=True)).to_have_count(1)
    expect(plan).to_contain_text("4 eval, 8 train")  # 12 Q/A pairs, 30 % held out
    expect(plan).to_contain_text("1 × 16 steps")
    expect(plan).to_contain_text("document text")
    expect(page.locator("#decide-plan-notes")).to_contain_text("Total ~")
    shot(page, "decide-01-plan")
    expect(page.locator("#decide-start")).to_be_enabled()
    page.locator("#decide-start").click()

    seen = _watch_progress(page)
    text, value = seen[-1]
    assert text.startswith("done"), f"decision ended as {text!r}; seen {seen[-5:]}"
    midway = [(t, v) for t, v in seen if v is not None and 0 < v < 100 and t.startswith("running")]
    assert midway, f"the bar never showed a running state between 0 and 100 %: {seen}"
    assert any("ETA" in t for t, _ in midway)
    assert value == 100
    report = page.locator("#decide-report")
    # a variant to use, or no variant yet (inconclusive) with the leader named: both said in the headline
    expect(report).to_contain_text(re.compile(r"Decision: (Use \S+ \((clear winner|practically equivalent)|No variant "
                                              r"yet \(inconclusive: \S+ leads)"))
    expect(report).to_contain_text("Where the time went")  # the timing table (assistant/decide/timings.py)
    expect(report).to_contain_text("every section's text trained on")  # the documents checkbox reached the run
    expect(page.locator("#decide-files")).to_contain_text(re.compile(r"report\s*\.html"))
    shot(page, "decide-02-report")

    page.locator("#decide-open-compare").click()
    expect(page.get_by_role("tab", name="Compare")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#compare-recommendation")).to_contain_text("Recommendation:", timeout=60_000)
    expect(page.locator("#compare-table")).to_contain_text("finetuned")
    shot(page, "decide-03-compare-run")
