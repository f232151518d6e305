"""The serving engine (--engine openai) and the LLM judge against a REAL OpenAI-compatible server.

llama-cpp-python's server (the [server] extra) serves the bundled SmolLM2 GGUF on 127.0.0.1; a real reverse
proxy in front of it (tests/openai_server.py) forwards every request and can answer 429/503 or count the
requests in flight. Nothing here imitates the server's answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from foundation.errors import ArenaError
from tests.openai_server import BASE_ALIAS, LlamaServer, Proxy, free_port, server_available

_MISSING = server_available()
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)

ADAPTER = "faq-lora"
FAQ = """# Widget FAQ

## How do I reset the widget?

Hold the power button for ten seconds until the light blinks blue, then release it.

## What is the warranty period?

The warranty period is two years from the date of purchase, covering parts and labour.
"""
EVAL = [{"question": "How do I reset the widget?", "answer": "Hold the power button for ten seconds."},
        {"question": "What is the warranty period?", "answer": "two years from the date of purchase"},
        {"question": "What is the capital of France?", "answer": "Paris"}]
VARIANTS = ("base", "prompt", "rag", "finetuned", "rag+finetuned")


@pytest.fixture(scope="module")
def world(bundled_data_dir, tiny_model_dir):
    """A running server + proxy, and a data folder with the FAQ ingested, an adapter registered, an eval file.

    Its own temp folder, not pytest's: concurrent pytest sessions on one machine prune each other's oldest
    basetemp folders, and this module's server and subprocesses run for minutes."""
    from transformers import AutoModelForCausalLM

    from assistant.runtime import Runtime
    from foundation.models import bundled_gguf, resolve_model_path
    from foundation.registry import AdapterRegistry
    from foundation.settings import Settings
    from retrieval.ingest import ingest_paths
    from tests.conftest import make_lora

    model_dir = resolve_model_path("bundled:smollm2-135m", Settings(data_dir=bundled_data_dir))
    root = Path(tempfile.mkdtemp(prefix="arena-served-"))
    server = LlamaServer(bundled_gguf("bundled:smollm2-135m"), root, [ADAPTER]).wait()
    proxy = Proxy(server.url)
    data_dir = root / "arena_data"
    settings = Settings(data_dir=data_dir, model=model_dir, engine="openai", engine_url=proxy.url,
                        engine_concurrency=3)
    runtime = Runtime(settings)
    (root / "faq.md").write_text(FAQ)
    ingest_paths(runtime.store, [root / "faq.md"])
    tiny = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # the served alias stands in for its weights
    AdapterRegistry(data_dir).register(ADAPTER, make_lora(tiny, root / "lora", 1),
                                       {"method": "lora", "base_model": model_dir, "peft_type": "LORA"}, [])
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVAL))
    yield SimpleNamespace(server=server, proxy=proxy, runtime=runtime, settings=settings, root=root,
                          data_dir=data_dir, model_dir=model_dir, eval=root / "eval.jsonl")
    proxy.close()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _rows(engine, questions):
    from foundation.generation import Row

    return [Row(engine.chat_ids([{"role": "user", "content": q}])) for q in questions]


def _engine(world, **cfg):
    """A fresh engine through the proxy, warmed up (its prompt-form probe and one answer done)."""
    from assistant.inference.openai_engine import OpenAIEngine, ServerConfig
    from foundation.generation import GenSettings

    main = world.runtime.engine
    engine = OpenAIEngine(main.tokenizer, SimpleNamespace(max_position_embeddings=main.context_length),
                          ServerConfig(**{"url": world.proxy.url, **cfg}))
    engine.generate(_rows(engine, ["hi"]), GenSettings(max_new_tokens=2))
    return engine


def test_streams_the_served_model_answer(world):
    from foundation.generation import GenSettings

    engine = world.runtime.engine
    assert engine.name == "openai" and engine.base_model == BASE_ALIAS
    texts = [outs[0].text for outs in engine.stream(_rows(engine, ["What is the capital of France?"]),
                                                    GenSettings(max_new_tokens=16))]
    assert "Paris" in texts[-1]  # the bundled model's greedy answer, as in-process
    assert len({t for t in texts if t}) > 2  # streamed token by token, not one final blob


def test_a_config_ending_on_several_tokens_is_read_as_a_list(world):
    """Llama 3's config.json lists its end tokens; the engine once failed on it (an unhashable list in a set)."""
    from assistant.inference.openai_engine import OpenAIEngine, ServerConfig

    main = world.runtime.engine
    eos = main.tokenizer.eos_token_id
    config = SimpleNamespace(max_position_embeddings=main.context_length, eos_token_id=[eos, 7, 9])
    engine = OpenAIEngine(main.tokenizer, config, ServerConfig(url=world.proxy.url))
    assert engine.eos_ids == {eos, 7, 9}


def test_chat_with_every_variant(world):
    from foundation.generation import GenSettings
    from foundation.variants import VariantConfig

    answers = world.runtime.arena.ask("How do I reset the widget?", VARIANTS, VariantConfig(adapter=ADAPTER),
                                      GenSettings(max_new_tokens=24))
    assert list(answers) == list(VARIANTS)
    for name, a in answers.items():
        assert a.error == "" and a.done and a.text.strip() and a.tokens > 0 and a.prompt_tokens > 0, name
    assert answers["finetuned"].adapter == ADAPTER and answers["base"].adapter is None
    assert answers["rag"].sources and answers["rag"].sources[0].citation.startswith("faq.md")


def test_stop_on_loop_ends_a_looping_served_answer(world):
    """The bundled model loops on this prompt (greedy); the stop on repetition, applied to the streamed tokens,
    ends and cuts the answer as it does in-process, and the server keeps answering after the closed stream."""
    from foundation.generation import GenSettings
    from foundation.metrics import loops

    engine = world.runtime.engine
    rows = _rows(engine, ["List the numbers one, one, one, one, one, one."])
    # 1.01 is sent (1.0 is not): it overrides llama-cpp-python's own default penalty of 1.1, so the served
    # model loops on this prompt as it does in-process
    off = engine.generate(rows, GenSettings(max_new_tokens=48, stop_on_loop=0, repetition_penalty=1.01))[0]
    assert off.done and loops(off.text) == 1.0, off.text  # the premise: without the setting it loops
    on = engine.generate(rows, GenSettings(max_new_tokens=48, repetition_penalty=1.01))[0]
    assert on.done and loops(on.text) == 0.0 and on.text.strip(), on.text
    assert off.text.startswith(on.text) and len(on.tokens) < len(off.tokens)
    after = engine.generate(_rows(engine, ["What is the capital of France?"]), GenSettings(max_new_tokens=16))[0]
    assert after.done and after.text.strip()


def test_adapter_the_server_does_not_serve_is_refused_clearly(world, tmp_path):
    from tests.conftest import make_lora, make_tiny_model, make_tiny_tokenizer

    folder = make_lora(make_tiny_model(len(make_tiny_tokenizer())), tmp_path / "other", 2)
    with pytest.raises(ArenaError) as err:
        world.runtime.engine.load_adapter("not-served", folder)
    text = str(err.value)
    assert world.proxy.url in text and "'not-served'" in text and "load_lora_adapter" in text
    assert BASE_ALIAS in text and ADAPTER in text  # what the server does serve


def test_requests_go_out_concurrently_up_to_the_bound(world):
    from foundation.generation import GenSettings

    questions = [f"Name {n} colors." for n in range(2, 8)]
    for bound in (3, 1):
        engine = _engine(world, concurrency=bound)
        world.proxy.reset()
        outs = engine.generate(_rows(engine, questions), GenSettings(max_new_tokens=12))
        assert all(o.done and o.text for o in outs)
        assert world.proxy.max_in_flight == bound, bound  # the server saw exactly `bound` at once
        assert world.proxy.forwarded == len(questions)


def test_429_is_retried_with_backoff_then_succeeds(world):
    from foundation.generation import GenSettings

    engine = _engine(world, max_retries=4)
    rows, gen = _rows(engine, ["What is the capital of France?"]), GenSettings(max_new_tokens=8)
    expected = engine.generate(rows, gen)[0].text
    world.proxy.reset()
    world.proxy.reject_next = 2
    out = engine.generate(rows, gen)[0]
    assert world.proxy.statuses == [429, 429, 200] and out.text == expected and out.done


def test_persistent_429_names_the_url_and_status(world):
    from foundation.generation import GenSettings

    engine = _engine(world, max_retries=1)
    world.proxy.reset()
    world.proxy.reject_next = 10
    with pytest.raises(ArenaError) as err:
        engine.generate(_rows(engine, ["hi"]), GenSettings(max_new_tokens=4))
    assert world.proxy.url in str(err.value) and "HTTP 429" in str(err.value)
    assert world.proxy.statuses == [429, 429]  # the first try and one retry
    world.proxy.reset()


def test_judge_on_the_server_grades_and_counts_malformed(world):
    from assistant.compare.judge import judge_all, parse_spec
    from assistant.compare.result import QuestionRecord, VariantAnswer

    cfg = parse_spec(f"openai:{world.server.url}:{BASE_ALIAS}")
    items = [SimpleNamespace(question=r["question"], answer=r["answer"]) for r in EVAL]
    answers = [{"base": SimpleNamespace(text=r["answer"])} for r in EVAL]
    table = {"base": {}}
    per_question = [QuestionRecord(r["question"], r["answer"], "", {"base": VariantAnswer(r["answer"], {})})
                    for r in EVAL]
    summary = judge_all(cfg, None, items, answers, ["base"], table, per_question)  # no local judge needed
    counts = summary.counts["base"]
    assert sum(counts.values()) == len(EVAL) == summary.judged
    assert summary.malformed == counts["malformed"] == sum(v is None for v in table["base"]["judge"])
    for record in per_question:
        judged = record.answers["base"].judge
        assert judged.reply.strip() and judged.verdict in {"correct", "partially", "wrong", None}
        assert record.answers["base"].scores["judge"] in {1.0, 0.5, 0.0, None}


def _cli(world, *args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, "-m", "assistant", "compare", "--eval", str(world.eval), "--data-dir",
                           str(world.data_dir), "--model", world.model_dir, "--max-new-tokens", "16", "--json",
                           *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=world.root)


def test_cli_comparison_through_the_server_with_judge(world):
    from assistant.compare.runs import RunStore

    report = world.root / "report" / "report.md"
    proc = _cli(world, "--engine", "openai", "--engine-url", world.server.url, "--engine-concurrency", "4",
                "--adapter", ADAPTER, "--judge", "local", "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert list(data["variants"]) == list(VARIANTS)
    for name, summary in data["variants"].items():
        assert summary["f1"]["n"] == len(EVAL), name
        judge = summary["judge"]
        assert judge["n"] + data["judge"]["counts"][name]["malformed"] == len(EVAL)
    assert set(data["paired"]) == set(VARIANTS) - {"base"}
    assert all("judge" in d for d in data["paired"].values())  # paired intervals for the judge score
    settings = data["settings"]
    assert settings["engine"] == {"name": "openai", "url": world.server.url, "concurrency": 4}
    assert settings["judge"]["kind"] == "local" and "VERDICT" in settings["judge"]["system_prompt"]
    # llama-cpp-python offers no prompt log-probabilities for id prompts: NLL skipped with a notice, not faked
    assert data["variants"]["base"]["nll"]["mean"] is None and data["forgetting"] == []
    assert any("reference NLL" in w and world.server.url in w for w in data["warnings"])
    stored = RunStore(world.data_dir / "runs.sqlite").get(data["run_id"])
    assert stored.settings["judge"]["spec"] == "local" and stored.result.to_dict()["judge"] == data["judge"]
    assert "## LLM judge" in report.read_text()


def test_server_down_stops_before_anything_is_stored(world, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    data_dir = tmp_path / "fresh"
    start = time.monotonic()
    proc = _cli(SimpleNamespace(**{**vars(world), "data_dir": data_dir}), "--engine", "openai",
                "--engine-url", dead, "--variants", "base", "prompt")
    assert proc.returncode == 2
    assert f"cannot reach the serving engine at {dead}" in proc.stderr
    assert not (data_dir / "runs.sqlite").exists()
    assert time.monotonic() - start < 120


def test_server_failing_mid_run_keeps_whole_questions_and_resumes(world):
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import load_eval_set
    from assistant.compare.runs import RunStore
    from assistant.comparison import resume_comparison, run_comparison

    items = load_eval_set(world.eval)
    compare_cfg = CompareConfig(variants=("base", "prompt"), max_new_tokens=8, forgetting=False)
    world.proxy.reset()
    world.proxy.fail_after = 3  # question 1 (2 rows) and one row of question 2 get through
    with pytest.raises(ArenaError) as err:
        run_comparison(world.runtime, items, compare_cfg)
    assert "HTTP 503" in str(err.value) and world.proxy.url in str(err.value)
    store = RunStore(world.data_dir / "runs.sqlite")
    run_id = max(run[0] for run in store.unfinished())
    _, answers, _ = store.partial(run_id)
    assert all(set(per) == {"base", "prompt"} for per in answers.values())  # only whole questions stored
    assert len(answers) < len(items)
    world.proxy.reset()
    result = resume_comparison(world.runtime, run_id)
    assert len(result.per_question) == len(items) and result.run_id == run_id



def test_ui_compare_with_server_url_and_judge(world):
    """The Compare tab's own endpoint on the running app, with the serving-engine and judge fields filled."""
    from gradio_client import Client, handle_file

    from assistant.compare.runs import RunStore
    from tests.browser_support import start_app, stop_app

    proc, url = start_app(world.model_dir, world.data_dir, world.root / "app.log")
    try:
        out = Client(url, verbose=False).predict(
            handle_file(str(world.eval)), False, 0, ["base", "finetuned"], ADAPTER, "judge", 16,
            world.server.url, "", 2, f"openai:{world.server.url}:{BASE_ALIAS}", api_name="/compare")
    finally:
        stop_app(proc)
    assert isinstance(out[0], str) and out[0].strip()  # the recommendation shown
    run = RunStore(world.data_dir / "runs.sqlite").list(limit=1)[0]
    assert run.settings["engine"] == {"name": "openai", "url": world.server.url, "concurrency": 2}
    assert run.settings["judge"]["model"] == BASE_ALIAS and run.settings["metric"] == "judge"
    assert set(run.result.variants) == {"base", "finetuned"}
    for name in ("base", "finetuned"):
        judged = run.result.variants[name]["judge"].n + run.result.judge.counts[name]["malformed"]
        assert judged == len(EVAL)
