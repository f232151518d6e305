"""What a person sees on the bundled model (SmolLM2-135M), first start included, in a real browser.

One session on a fresh data folder: the loading banner during the one-time conversion, a reST FAQ and a
Markdown manual ingested, a small adapter trained, one question asked with all five variants at 64 new
tokens, a short comparison, then a screenshot of every tab under test-artifacts/browser/bundled-*.png.
Slow (minutes): marked e2e and browser.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ask_chat,
    column_figures,
    pick_option,
    require_chromium,
    set_number,
    shot,
    start_app,
    stop_app,
    upload,
    watch_training,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MARKUP = Path(__file__).parent / "data" / "markup"
ADAPTER = "espresso-lora"
QUESTION = "How do I connect the machine to the app?"
FACTS = [("What does error E42 mean?", "Error E42 means the water tank is empty: refill it and press Reset."),
         ("How do I connect the machine to the app?", "Put MACHINE_HOST and MACHINE_PORT in a .env file."),
         ("Which grind setting is the default?", "The default grind setting is 12."),
         ("What is the default dose?", "The default dose is 18 g.")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundled-files")
    rows = [{"question": q, "answer": a} for q, a in FACTS * 4]
    (folder / "espresso-qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [{"question": q, "answer": a} for q, a in FACTS[:2]]
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return folder


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    require_chromium()
    from playwright.sync_api import sync_playwright

    data_dir = tmp_path_factory.mktemp("bundled-first-start")  # fresh: the model is converted on this start
    with sync_playwright() as pw:
        # The browser is up before the app starts, so the page is open while the conversion runs.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        proc, url = start_app("bundled:smollm2-135m", data_dir, data_dir / "app.log", timeout=300)
        try:
            pg.goto(url, wait_until="domcontentloaded")
            yield pg
        finally:
            browser.close()
            stop_app(proc)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_dir / "app.log", ARTIFACTS / "bundled-app.log")  # kept for a person to read
            print(f"screenshots and app log: {ARTIFACTS}")


def test_first_start_shows_the_conversion(page):
    from playwright.sync_api import expect

    banner = page.locator("#arena-loading")
    expect(banner).to_be_visible(timeout=60_000)
    expect(banner).to_contain_text("Converting the bundled model")
    shot(page, "bundled-00-first-start-loading")
    expect(banner).to_be_hidden(timeout=600_000)
    expect(page.locator("#arena-header")).to_contain_text("smollm2-135m")
    shot(page, "bundled-01-ready")


def test_documents_tab_with_rst_and_markdown(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Documents").click()
    for name in ("faq.rst", "guide.md"):
        upload(page, "docs-upload", MARKUP / name)
    page.locator("#docs-add").click()
    expect(page.locator("#docs-status")).to_contain_text("0 file(s) failed", timeout=300_000)
    page.locator("#docs-query textarea").fill("connect the machine to the app")
    page.locator("#docs-query textarea").press("Enter")
    expect(page.locator("#docs-hits")).to_contain_text("MACHINE_HOST", timeout=60_000)
    assert ".. code-block" not in page.locator("#docs-hits").inner_text()
    shot(page, "bundled-02-documents")


def test_train_tab_trains_a_small_adapter(page, files):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    upload(page, "train-files", files / "espresso-qa.jsonl")
    page.get_by_role("button", name="Preview data").click()
    expect(page.locator("#train-preview")).to_contain_text("espresso-qa.jsonl", timeout=60_000)
    page.locator("#train-name textarea").fill(ADAPTER)
    page.get_by_label("Max steps (-1 = use epochs)").fill("8")
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Validate every N steps").fill("4")
    page.locator("#train-start").click()
    seen = watch_training(page, timeout=900)
    assert seen[-1]["text"].startswith("done"), seen[-3:]
    shot(page, "bundled-03-train-done")


def test_chat_columns_show_their_own_figures(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Chat").click()
    pick_option(page, "chat-adapter", ADAPTER)
    page.get_by_role("button", name="System prompt, few-shot and generation settings").click()
    set_number(page, "chat-max-new", 64)
    ask_chat(page, QUESTION, turn=1, timeout=600_000)
    figures = [column_figures(page, i) for i in range(5)]
    answers = [page.locator(f"#chat-bot-{i} [data-testid=bot]").last.inner_text() for i in range(5)]
    for f, a in zip(figures, answers, strict=True):
        print(f, repr(a[:300]))
    prompts = [f["prompt_tokens"] for f in figures]
    assert prompts[0] < prompts[1] and prompts[0] < prompts[2] and prompts[3] == prompts[0], figures
    assert len({f["first_token"] for f in figures}) > 1, figures
    assert not any(".. code-block" in a for a in answers), answers
    page.locator("#chat-col-2").get_by_role("button", name="Sources").click()
    expect(page.locator("#chat-sources-2")).to_contain_text("faq.rst")
    shot(page, "bundled-04-chat")


def test_compare_tab_chart(page, files):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Compare").click()
    upload(page, "compare-eval-file", files / "eval.jsonl")
    page.locator("#compare-run").click()
    expect(page.locator("#compare-recommendation")).to_contain_text("Recommendation:", timeout=900_000)
    expect(page.locator("#compare-chart g.mark-symbol.role-mark path").first).to_be_attached()
    shot(page, "bundled-05-compare")


def test_every_tab(page):
    names = [t.strip() for t in page.get_by_role("tab").all_inner_texts()]
    for n, name in enumerate(names):
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(800)
        shot(page, f"bundled-10-tab-{n}-{name.lower()}")
