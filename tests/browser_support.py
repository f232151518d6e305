"""Helpers for real-browser tests: start the app as a subprocess and drive Debian's chromium."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip locally when chromium is absent; in CI (.ci/run installs it) a missing browser is a failure."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} missing: .ci/run should have installed Debian's chromium")
    pytest.skip("chromium not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(model: str, data_dir: Path, log: Path, extra: list[str] | None = None,
              timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Run ``python app.py`` on a free loopback port; return the process and its URL once it answers."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, str(ROOT / "app.py"), "--model", model, "--data-dir", str(data_dir),
           "--port", str(port), *(extra or [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not answer on {url} within {timeout}s:\n{log.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def shot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/browser/ (kept for humans to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def upload(page, elem_id: str, path: Path) -> None:
    """Put a file into a gr.File component and wait until the component lists it (upload finished)."""
    from playwright.sync_api import expect

    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    # Gradio renders the stem and the extension in separate spans, so whitespace may fall between them.
    name = re.compile(re.escape(Path(path).stem) + r"\s*" + re.escape(Path(path).suffix))
    expect(page.locator(f"#{elem_id}")).to_contain_text(name, timeout=30_000)


def pick_option(page, elem_id: str, option: str, timeout: float = 30_000) -> list[str]:
    """Open a gr.Dropdown (its focus handler may refresh the choices), choose `option`; return all options."""
    page.locator(f"#{elem_id} input").click()
    wanted = page.get_by_role("option", name=option, exact=True)
    wanted.wait_for(timeout=timeout)
    names = [t.strip() for t in page.get_by_role("option").all_inner_texts()]
    wanted.click()
    return names


# One point symbol per plotted record: vega draws a hover symbol for every data row of the line plot.
_PLOT_POINTS_JS = "el => el.querySelectorAll('g.mark-symbol.role-mark path').length"


def plot_points(page, elem_id: str) -> int:
    """How many data points a gr.LinePlot currently draws."""
    return page.locator(f"#{elem_id}").evaluate(_PLOT_POINTS_JS)


def watch_training(page, timeout: float = 240.0, on_midway=None) -> list[dict]:
    """Poll the Train tab until the job ends; one {"t", "text", "bar", "points"} per change seen.

    `on_midway(page)` runs once, the first time a step strictly between 0 and the last one is shown
    (used to screenshot the running job).
    """
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = progress_text(page)
        bar = page.locator("#train-progress progress")
        obs = {"t": round(time.monotonic(), 2), "text": text, "points": plot_points(page, "train-plot"),
               "bar": int(bar.get_attribute("value") or 0) if bar.count() else None,
               "step": step_of(text)}
        if not seen or (obs["text"], obs["points"]) != (seen[-1]["text"], seen[-1]["points"]):
            seen.append(obs)
            if on_midway and obs["step"] and obs["step"][0] not in (0, obs["step"][1]):
                on_midway(page)
                on_midway = None
        if any(state in text for state in ("done ·", "failed", "cancelled")):
            return seen
        page.wait_for_timeout(250)
    raise AssertionError(f"training did not finish within {timeout}s; last seen: {seen[-3:]}")


# Gradio's loading overlay ("processing | 0.2/0.1s", "queue: 1/2 | 0.3s", "0.1s") sits inside the component while
# a timer tick is in flight; it is not part of what the app wrote.
_OVERLAY = re.compile(r"^\s*((processing|queue\b).*\|.*s|[\d.]+(/[\d.]+)?s)\s*$")  # or just "0.1s"


def progress_text(page) -> str:
    """The Train tab's progress line as the app wrote it, without Gradio's loading overlay."""
    lines = page.locator("#train-progress").inner_text().splitlines()
    return "\n".join(line for line in lines if line.strip() and not _OVERLAY.match(line)).strip()


def step_of(progress_text: str) -> tuple[int, int] | None:
    """(step, max_steps) from the Train tab's progress line, e.g. 'running · step 3/12 (25 %)'."""
    import re

    m = re.search(r"step (\d+)/(\d+)", progress_text)
    return (int(m.group(1)), int(m.group(2))) if m else None


_FIGURES = re.compile(r"first token ([\d.]+ m?s) · ([\d.]+) tok/s · (\d+) tokens · prompt (\d+) tokens")


def column_figures(page, i: int) -> dict:
    """The figures a Chat column shows under its answer (its own first token, speed, lengths)."""
    stats = page.locator(f"#chat-stats-{i}").inner_text()
    m = _FIGURES.search(stats)
    assert m, f"column {i} shows no figures: {stats!r}"
    return {"first_token": m.group(1), "tokens_per_s": float(m.group(2)), "tokens": int(m.group(3)),
            "prompt_tokens": int(m.group(4))}


# Every element inside (and including) the component that scrolls its own content vertically.
_INNER_SCROLL_JS = """el => [el, ...el.querySelectorAll('*')].filter(e => {
    const y = getComputedStyle(e).overflowY;
    return (y === 'auto' || y === 'scroll') && e.scrollHeight > e.clientHeight + 1;
}).map(e => `${e.tagName}.${e.className} ${e.scrollHeight}>${e.clientHeight}`)"""


def inner_scrolling(page, elem_id: str) -> list[str]:
    """Elements of a component whose content is taller than their box (so a reader would scroll inside)."""
    return page.locator(f"#{elem_id}").evaluate(_INNER_SCROLL_JS)


def ask_chat(page, question: str, turn: int, columns: int = 5, timeout: float = 120_000) -> None:
    """Send one Chat question; wait until every column shows this turn's question and its figures."""
    from playwright.sync_api import expect

    page.locator("#chat-input textarea").fill(question)
    page.locator("#chat-send").click()
    for i in range(columns):
        bot = page.locator(f"#chat-bot-{i}")
        try:
            expect(bot.locator("[data-testid=user]")).to_have_count(turn, timeout=timeout)
        except AssertionError as exc:  # name what the page said instead (an error toast), if anything
            raise AssertionError(f"column {i} never showed the question; page messages: "
                                 f"{page.locator('.toast-body').all_inner_texts()}") from exc
        expect(bot.locator("[data-testid=user]").last).to_contain_text(question)
        expect(page.locator(f"#chat-stats-{i}")).to_contain_text("tokens", timeout=timeout)
    # The input box is cleared once the whole streamed turn has finished.
    expect(page.locator("#chat-input textarea")).to_have_value("", timeout=timeout)


def set_number(page, elem_id: str, value: int) -> None:
    """Fill a gr.Number and commit it (a number box reports its change on blur) before anything is sent."""
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id} input")
    # A box inside an accordion that was just opened can still be mounting: a value typed into it then is
    # replaced by the initial one. Type again until the committed value sticks, as a person would.
    for attempt in range(3):
        box.fill(str(value))
        box.press("Tab")
        try:
            expect(box).to_have_value(str(value), timeout=3000 if attempt < 2 else 5000)
            return
        except AssertionError:
            if attempt == 2:
                raise
