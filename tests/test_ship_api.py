"""The `openai` client against a real `arena serve --api` process (tiny Llama, real index, real adapter):
every variant, streaming, sources for RAG, auth, 4xx on bad input, 8 concurrent clients, a bundle served from
a fresh data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.openai_server import free_port
from tests.test_ship_bundle import QUESTIONS, make_workspace

ROOT = Path(__file__).resolve().parents[1]
KEY = "s3cret-key"
MODELS = ["base", "prompt", "rag", "finetuned:faq-lora", "rag+finetuned:faq-lora"]


class Server:
    """`python -m assistant serve --api ...` on a free loopback port, stopped by the fixture that started it."""

    def __init__(self, log: Path, *argv: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--api", *argv,
                                          "--port", str(self.port), "--device", "cpu", "--engine", "torch"],
                                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                                         stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 300.0) -> Server:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()[-3000:]}"
            try:
                httpx.get(self.url + "/models", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.2)  # polling for the port to open: the event is the server answering
        raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=300)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("api")
    settings, _ = make_workspace(root, tiny_model_dir)
    server = Server(root / "server.log", "--no-ui", "--data-dir", str(settings.data_dir), "--model",
                    settings.model, "--auth", f"user:{KEY}").wait()
    yield server, settings, root
    server.stop()


def ask(client, model: str, question: str, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                          max_tokens=kw.pop("max_tokens", 10), **kw)


def test_every_variant_answers_with_sources_for_rag(served):
    server, _, _ = served
    client = server.client()
    assert sorted(m.id for m in client.models.list()) == sorted(MODELS)
    for model in MODELS:
        reply = ask(client, model, QUESTIONS[0])
        assert reply.model == model and reply.choices[0].message.content is not None
        assert reply.choices[0].finish_reason in {"stop", "length"}
        assert reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 5
        sources = reply.model_extra["sources"]
        if model.startswith("rag"):
            assert sources and all(s["citation"].startswith("faq.md") and s["text"] for s in sources)
        else:
            assert sources == []


def test_streaming_matches_the_whole_answer(served):
    server, _, _ = served
    client = server.client()
    for model in ("rag+finetuned:faq-lora", "prompt"):
        whole = ask(client, model, QUESTIONS[1], max_tokens=16)
        chunks = list(ask(client, model, QUESTIONS[1], max_tokens=16, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == whole.choices[0].message.content and len(chunks) >= 3
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
        assert chunks[0].model_extra["sources"] == whole.model_extra["sources"]
    raw = httpx.post(server.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": "base", "stream": True, "max_tokens": 4,
                           "messages": [{"role": "user", "content": "hi"}]}, timeout=300)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_auth_is_required(served):
    server, _, _ = served
    with pytest.raises(openai.AuthenticationError):
        server.client("wrong").models.list()
    assert httpx.get(server.url + "/models").status_code == 401
    basic = httpx.get(server.url + "/models", auth=("user", KEY))
    assert basic.status_code == 200


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "unknown model 'gpt-4'"),
    ({"model": "finetuned:nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "unknown model"),
    ({"model": "base", "messages": []}, 400, "messages"),
    ({"model": "base", "messages": [{"role": "user", "content": "   "}]}, 400, "empty"),
    ({"model": "base", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "end with a user message"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9}, 400, "max_tokens"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, 400,
     "max new tokens"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "temperature": 99}, 400, "temperature"),
    ({"model": "base", "messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ({"model": "base", "messages": [{"role": "user", "content": "x" * 3_000_000}]}, 413, "exceeds"),
    ({"model": "base", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok " * 3000},
                                    {"role": "user", "content": "and?"}]}, 400, "exceeds the model's context"),
])
def test_bad_input_gets_a_clear_4xx(served, body, status, needle):
    server, _, _ = served
    reply = httpx.post(server.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=body,
                       timeout=120)
    assert reply.status_code == status, reply.text
    assert needle in reply.json()["error"]["message"]


def test_eight_concurrent_clients_share_the_engine(served):
    server, _, _ = served
    jobs = [(MODELS[i % len(MODELS)], QUESTIONS[i % len(QUESTIONS)]) for i in range(8)]
    alone = {job: ask(server.client(), *job).choices[0].message.content for job in set(jobs)}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: ask(server.client(), *job).choices[0].message.content, jobs))
    assert together == [alone[job] for job in jobs]  # 0 errors, and batching changes no answer


def test_exported_bundle_served_from_a_fresh_folder_answers_alike(served):
    server, settings, root = served
    bundle = root / "bundle"
    subprocess.run([sys.executable, "-m", "assistant", "export", str(bundle), "--variant", "rag+finetuned",
                    "--adapter", "faq-lora", "--data-dir", str(settings.data_dir), "--model", settings.model,
                    "--json"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                   capture_output=True)
    other = Server(root / "bundle.log", "--bundle", str(bundle), "--data-dir", str(root / "fresh")).wait()
    try:
        client = other.client("no key needed on loopback without --auth")
        assert [m.id for m in client.models.list()] == ["rag+finetuned:faq-lora"]
        for question in QUESTIONS:
            got = ask(client, "rag+finetuned:faq-lora", question, max_tokens=12)
            want = ask(server.client(), "rag+finetuned:faq-lora", question, max_tokens=12)
            assert got.choices[0].message.content == want.choices[0].message.content
            assert json.dumps(got.model_extra["sources"]) == json.dumps(want.model_extra["sources"])
    finally:
        other.stop()


def test_api_beside_the_ui_on_one_server(served):
    _, settings, root = served
    both = Server(root / "both.log", "--data-dir", str(settings.data_dir), "--model", settings.model,
                  "--auth", f"user:{KEY}").wait()
    try:
        assert "rag+finetuned:faq-lora" in [m.id for m in both.client().models.list()]
        base = both.url.removesuffix("/v1")
        assert httpx.get(base + "/config").status_code == 401  # the UI keeps its own login, same --auth
        with httpx.Client() as browser:
            assert browser.post(base + "/login", data={"username": "user", "password": KEY}).status_code == 200
            assert browser.get(base + "/config").status_code == 200
    finally:
        both.stop()
