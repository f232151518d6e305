"""Real-browser end-to-end tests: Debian chromium driven by playwright against the running app."""

from __future__ import annotations

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium, shot, start_app, stop_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tiny_model_dir, tmp_path_factory):
    require_chromium()
    data_dir = tmp_path_factory.mktemp("browser-data")
    proc, url = start_app(str(tiny_model_dir), data_dir, data_dir / "app.log")
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(app_url, wait_until="domcontentloaded")
    pg.wait_for_selector("#arena-header", timeout=60_000)
    yield pg
    context.close()


def test_header_names_model(page):
    header = page.locator("#arena-header").inner_text()
    assert "tiny-llama" in header and "float32" in header
    shot(page, "01-header")
