"""Real-browser end-to-end tests: Debian chromium driven by playwright against the running app.

One app subprocess (tiny random model) and one browser page (a 1280x800 laptop window) serve the whole
module, and the tests run as one user's session in file order: add documents, train an adapter, chat with
every variant (using that document and adapter), compare, look at every tab. Each step saves a screenshot
under test-artifacts/browser/. The last test starts its own app to watch the loading banner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ask_chat,
    column_figures,
    free_port,
    inner_scrolling,
    pick_option,
    require_chromium,
    set_number,
    shot,
    start_app,
    stop_app,
    upload,
    watch_training,
)

pytestmark = pytest.mark.browser

DOC_NAME = "espresso-manual.md"
DOC = """# Espresso machine manual

## What does error E42 mean?
Error E42 means the water tank is empty. Refill the tank and press the reset button.

## How do I descale the machine?
Fill the tank with descaling solution and hold the steam button for five seconds.

## How do I reset it?
Press and hold the power button for ten seconds until the light turns white.
"""
ADAPTER = "browser-lora"
MAX_STEPS = 64  # the tiny model trains fast: 16 steps could finish between two 1 s UI ticks
TITLES = ["Base", "Prompt-engineered", "RAG", "Fine-tuned", "RAG + fine-tuned"]
RAG_COLUMNS = {2, 4}
RST = Path(__file__).parent / "data" / "markup" / "faq.rst"
VIEWPORT = {"width": 1280, "height": 800}
DONE: set[str] = set()  # steps of the session that succeeded, so a later step names a failed prerequisite


def needs(step: str) -> None:
    if step not in DONE:
        pytest.fail(f"the earlier '{step}' step of this browser session failed; see that test first")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The document, training set and evaluation set the user uploads."""
    folder = tmp_path_factory.mktemp("browser-files")
    (folder / DOC_NAME).write_text(DOC)
    rows = [{"question": f"How many grams of coffee does recipe {i} use?",
             "answer": f"Recipe {i} uses {10 + i} grams of coffee."} for i in range(40)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [{"question": "What does error E42 mean?", "answer": "The water tank is empty."},
             {"question": "How do I reset it?", "answer": "Hold the power button for ten seconds."},
             {"question": "How do I descale the machine?", "answer": "Use descaling solution and the steam button."}]
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return folder


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    require_chromium()
    data_dir = tmp_path_factory.mktemp("browser-data")
    proc, url = start_app(str(tiny_model_dir), data_dir, data_dir / "app.log")
    yield url, data_dir
    stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, app):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(app[0], wait_until="domcontentloaded")
    pg.wait_for_selector("#arena-header", timeout=60_000)
    yield pg
    context.close()


def test_header_names_model(page):
    from playwright.sync_api import expect

    header = page.locator("#arena-header")
    expect(header).to_contain_text("tiny-llama", timeout=60_000)
    assert re.search(r"dtype (float32|bfloat16) · device cpu", header.inner_text()), header.inner_text()
    expect(page.locator("#arena-loading")).to_be_hidden()
    shot(page, "01-header")


def test_upload_document_is_listed(page, files, app):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Documents").click()
    upload(page, "docs-upload", files / DOC_NAME)
    page.locator("#docs-add").click()
    # The embedder loads on the first ingestion, hence the generous timeout. (The progress overlay also
    # names the file, so the table is checked for a cell holding exactly the name, after the status.)
    expect(page.locator("#docs-status")).to_contain_text(f"{DOC_NAME}: added", timeout=120_000)
    expect(page.locator("#docs-status")).to_contain_text("0 file(s) failed")
    expect(page.locator("#docs-table").get_by_role("gridcell", name=DOC_NAME, exact=True)).to_have_count(1)
    assert (app[1] / "uploads" / "documents" / DOC_NAME).read_text() == DOC
    shot(page, "02-documents-listed")
    DONE.add("documents")


def test_rst_passages_read_as_text(page):
    """A reST file's search hits show its text as a reader sees it: code kept, no directives left."""
    from playwright.sync_api import expect

    needs("documents")
    upload(page, "docs-upload", RST)
    page.locator("#docs-add").click()
    expect(page.locator("#docs-status")).to_contain_text(f"{RST.name}: added", timeout=120_000)
    page.locator("#docs-query textarea").fill("MACHINE_HOST address for the app")
    page.locator("#docs-query textarea").press("Enter")
    hits = page.locator("#docs-hits")
    expect(hits).to_contain_text("MACHINE_HOST=192.168.1.20", timeout=60_000)
    text = hits.inner_text()
    assert ".. code-block" not in text and "``" not in text and ":ref:" not in text, text
    shot(page, "02b-documents-rst-search")


def test_a_refused_action_leaves_the_page_usable(page):
    """Delete with nothing picked: the popup says why, and the documents table and the dropdown stay visible
    and clickable (Gradio used to leave an 'Error' badge over every output of the failed event). The chunk
    boxes show the splitter's real defaults, not 0."""
    from playwright.sync_api import expect

    needs("documents")
    expect(page.locator("#docs-chunk-size input")).to_have_value("800")
    expect(page.locator("#docs-chunk-overlap input")).to_have_value("100")
    page.locator("#docs-delete").click()
    expect(page.locator(".toast-body")).to_contain_text("pick a document to delete")
    for elem_id in ("docs-table", "docs-victim", "docs-status"):
        # every component keeps a status tracker (the badge is in it); class "hide" when it covers nothing
        expect(page.locator(f"#{elem_id} [data-testid=status-tracker]:not(.hide)")).to_have_count(0)
    expect(page.locator("#docs-table").get_by_role("gridcell", name=DOC_NAME, exact=True)).to_have_count(1)
    shot(page, "02c-documents-refused-delete")
    page.locator("#docs-victim input").click(timeout=5_000)  # a covered dropdown would not take the click
    expect(page.get_by_role("option", name=DOC_NAME, exact=True)).to_be_visible()
    page.keyboard.press("Escape")

def test_training_shows_progress_and_registers_adapter(page, files, app):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-preview")).to_be_hidden()  # no header-only placeholder table
    upload(page, "train-files", files / "train.jsonl")
    page.get_by_role("button", name="Preview data").click()
    preview = page.locator("#train-preview")
    expect(preview).to_be_visible(timeout=30_000)
    for header in ("source", "rows", "kinds", "first rows"):
        expect(preview.get_by_role("columnheader", name=header, exact=True)).to_have_count(1)
    expect(preview).to_contain_text("train.jsonl")
    page.locator("#train-name textarea").fill(ADAPTER)
    page.get_by_label("Max steps (-1 = use epochs)").fill(str(MAX_STEPS))
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Validate every N steps").fill("4")
    page.locator("#train-start").click()
    seen = watch_training(page, on_midway=_midway_and_reloaded)
    last = seen[-1]
    assert last["text"].startswith("done"), f"job ended as: {last['text']}\n{_log(app)}"
    midway = [o for o in seen if o["step"] and 0 < o["step"][0] < MAX_STEPS]
    assert midway, f"never saw the job between step 0 and {MAX_STEPS}: {[o['text'] for o in seen]}"
    # The bar and the plot moved while the job ran, and ended further on than anything seen midway.
    assert 0 < midway[0]["bar"] < 100 and last["bar"] == 100
    assert midway[0]["points"] >= 1 and last["points"] > midway[0]["points"]
    assert last["step"] == (MAX_STEPS, MAX_STEPS)
    expect(page.locator("#train-summary")).to_contain_text(f"Adapter {ADAPTER} is ready")
    shot(page, "04-train-done")
    assert (app[1] / "adapters" / ADAPTER / "arena_adapter.json").is_file()

    page.get_by_role("tab", name="Chat").click()
    options = pick_option(page, "chat-adapter", ADAPTER)
    assert ADAPTER in options
    assert page.locator("#chat-adapter input").input_value() == ADAPTER
    shot(page, "05-chat-adapter-listed")
    DONE.add("train")


def _midway_and_reloaded(page) -> None:
    """Screenshot the running job, then open the app in a second page: its Train tab shows the same job (it
    said 'No job yet.' before the tab re-attached on page load)."""
    from playwright.sync_api import expect

    shot(page, "03-train-running")
    other = page.context.new_page()
    try:
        other.goto(page.url, wait_until="domcontentloaded")
        other.get_by_role("tab", name="Train").click()
        expect(other.locator("#train-progress")).to_contain_text(re.compile(rf"(running|done) · step \d+/{MAX_STEPS}"),
                                                                timeout=30_000)
        shot(other, "03b-train-reloaded-page")
    finally:
        other.close()


def _column_tokens(page, i: int) -> int:
    stats = page.locator(f"#chat-stats-{i}").inner_text()
    m = re.search(r"(\d+) tokens", stats)
    assert m and "⚠️" not in stats, f"column {i} ({TITLES[i]}) has no answer metrics: {stats!r}"
    return int(m.group(1))


def _ask(page, question: str, turn: int) -> None:
    ask_chat(page, question, turn, len(TITLES))


def test_chat_fills_every_column_and_lists_rag_sources(page):
    from playwright.sync_api import expect

    needs("documents"), needs("train")
    page.get_by_role("button", name="System prompt, few-shot and generation settings").click()
    set_number(page, "chat-max-new", 48)  # the tiny model rarely stops early: keep turns short
    _ask(page, "What does error E42 mean?", turn=1)
    figures = [column_figures(page, i) for i in range(len(TITLES))]
    # Each column shows its own figures: the prompt lengths follow what each variant sends (the fine-tuned
    # columns send the same messages as base / RAG), and the first-token times are not one shared number.
    prompts = [f["prompt_tokens"] for f in figures]
    assert prompts[0] < prompts[1] and prompts[0] < prompts[2], figures  # system prompt / passages added
    assert prompts[3] == prompts[0] and prompts[4] == prompts[2], figures
    assert len({f["first_token"] for f in figures}) > 1, f"every column shows the same first-token time: {figures}"
    for i, title in enumerate(TITLES):
        expect(page.locator(f"#chat-title-{i}")).to_have_text(title)
        assert _column_tokens(page, i) >= 1
        sources = page.locator(f"#chat-col-{i}").get_by_role("button", name="Sources")
        if i in RAG_COLUMNS:
            sources.click()
            expect(page.locator(f"#chat-sources-{i}")).to_contain_text(DOC_NAME)
        else:
            expect(sources).to_be_hidden()
    shot(page, "06-chat-answers-and-sources")
    # A second turn in the same session: every column answers again (the engine is free after a stream).
    _ask(page, "How do I reset it?", turn=2)
    for i in range(len(TITLES)):
        assert 1 <= _column_tokens(page, i) <= 48
    shot(page, "07-chat-second-turn")
    DONE.add("chat")


def test_long_answer_is_read_without_inner_scrolling(page):
    """At 1280x800 the columns wrap three to a row and each chat box grows with its answer."""

    needs("chat")
    set_number(page, "chat-max-new", 400)
    set_number(page, "chat-stop-loop", 0)  # the tiny random model repeats itself: let it run to the limit
    _ask(page, "Tell me everything about descaling, step by step.", turn=3)
    lengths = [len(page.locator(f"#chat-bot-{i} [data-testid=bot]").last.inner_text()) for i in range(len(TITLES))]
    assert max(lengths) >= 300, f"no long answer to look at: {lengths}"
    for i in range(len(TITLES)):
        assert inner_scrolling(page, f"chat-bot-{i}") == [], f"column {i} scrolls inside its box"
    tops = [page.locator(f"#chat-col-{i}").bounding_box()["y"] for i in range(len(TITLES))]
    assert tops[0] == tops[1] == tops[2] < tops[3] == tops[4], f"not three columns per row: {tops}"
    shot(page, "07b-chat-long-answers")

def test_compare_shows_table_and_chart(page, files):
    from playwright.sync_api import expect

    needs("documents")
    page.get_by_role("tab", name="Compare").click()
    upload(page, "compare-eval-file", files / "eval.jsonl")
    page.locator("#compare-run").click()
    expect(page.locator("#compare-recommendation")).to_contain_text("Recommendation:", timeout=180_000)
    table = page.locator("#compare-table")
    for variant in ("base", "prompt", "rag"):
        expect(table).to_contain_text(variant)
    expect(table).to_contain_text("token F1")
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", table.inner_text()), "no 'mean [CI]' cells"
    # The native chart: per variant 41 interval dots and one mean dot; hovering a point shows its figures.
    points = page.locator("#compare-chart g.mark-symbol.role-mark path")  # not the legend's symbols
    expect(points).to_have_count(3 * 42, timeout=30_000)
    points.last.hover(force=True)
    expect(page.locator("#vg-tooltip-element")).to_contain_text("mean [95 % CI]", timeout=10_000)
    expect(page.locator("#compare-chart-metric")).to_be_visible()
    expect(page.locator("#compare-chart g.role-legend-label text")).to_have_text(["95 % interval", "mean"])
    shot(page, "08-compare-results")


def test_every_tab_screenshot(page):
    """One screenshot per tab at the end of the session, for a person to look at."""
    names = [t.strip() for t in page.get_by_role("tab").all_inner_texts()]
    assert {"Chat", "Documents", "Compare", "Train", "Adapters"} <= set(names)
    for n, name in enumerate(names):
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(500)
        shot(page, f"10-tab-{n}-{name.lower()}")
    print(f"screenshots: {ARTIFACTS}")


def test_loading_banner_until_the_model_is_ready(browser, tiny_model_dir, tmp_path, monkeypatch):
    """While the model loads the page is served and says so; the other tabs' resources are not held up; the
    banner goes and the header names the model once it is ready."""
    import threading

    from playwright.sync_api import expect

    import assistant.runtime
    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from ui import web as app

    go = threading.Event()
    real_load = assistant.runtime.load_model

    def slow_load(settings):  # the real load, held back as a slow first conversion is
        go.wait(300)
        return real_load(settings)

    monkeypatch.setattr(assistant.runtime, "load_model", slow_load)
    settings = Settings(data_dir=tmp_path, model=str(tiny_model_dir), device="cpu", engine="torch")
    runtime = Runtime(settings)
    built: list = []
    builder = threading.Thread(target=lambda: built.append(app.build_app(settings, runtime)), daemon=True)
    builder.start()
    builder.join(60)  # generous: building takes a few seconds, the held-back load is released only below
    if not built:
        go.set()
        pytest.fail("build_app waited for the model load instead of serving the page meanwhile")
    demo, context = built[0], browser.new_context(viewport=VIEWPORT)
    try:
        assert runtime.registry.list() == []  # another resource is usable while the model loads
        port = free_port()
        demo.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        banner = page.locator("#arena-loading")
        expect(banner).to_be_visible(timeout=60_000)
        expect(banner).to_contain_text("Loading the model")
        expect(banner).to_contain_text(re.compile(r"\d+ s so far"))
        expect(page.locator("#arena-header")).to_contain_text("loading")
        shot(page, "00-loading-banner")
        go.set()
        expect(banner).to_be_hidden(timeout=60_000)
        expect(page.locator("#arena-header")).to_contain_text("tiny-llama")
    finally:
        go.set()
        context.close()
        demo.close()


def _log(app) -> str:
    log = app[1] / "app.log"
    return log.read_text(errors="replace")[-3000:] if log.is_file() else ""
