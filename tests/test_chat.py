"""The Arena and the Chat tab's handlers on the tiny model: five columns stream, votes, blind mode, CLI."""

from __future__ import annotations

import json
import random

import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.settings import Settings
from foundation.variants import NO_ADAPTER, NO_DOCUMENTS, VARIANTS, VariantConfig
from retrieval.store import Hit
from tests.conftest import make_lora
from ui import chat


class ListStore:
    """A document store over a fixed list of hits (the retrieval part is tested on its own)."""

    def __init__(self, hits):
        self.hits = hits

    def is_empty(self):
        return not self.hits

    def search(self, query, k=5, mode="hybrid"):
        return self.hits[:k]


def chat_runtime(settings, base, hits) -> Runtime:
    """Runtime with a fixed document store; the adapter registry is the real one under the data dir."""
    return Runtime(settings, base, store=ListStore(hits))


HITS = [Hit("The M8 bolt takes 25 Nm.", "manual.pdf", 0.91, 1, "manual.pdf p.3", page=3),
        Hit("Hold reset for 5 s.", "faq.rst", 0.42, 2, "faq.rst § Reset", section="Reset")]


@pytest.fixture
def runtime(tiny_loaded, data_dir, tmp_path):
    from foundation.registry import AdapterRegistry

    folder = make_lora(tiny_loaded.model, tmp_path / "lora", 1)
    AdapterRegistry(data_dir).register("tiny-lora", folder, {"method": "lora", "peft_type": "LORA"}, ["q"])
    return chat_runtime(Settings(data_dir=data_dir), tiny_loaded, HITS)


CFG = VariantConfig(system_prompt="Be brief.", few_shot=[{"question": "q1", "answer": "a1"}], adapter="tiny-lora")


def test_stream_turn_grows_every_column(runtime):
    session = chat.new_session()
    steps = list(chat.stream_turn(runtime.arena, session, "torque for M8?", list(VARIANTS), CFG,
                                  GenSettings(max_new_tokens=6)))
    assert len(steps) >= 6
    for col in range(5):
        replies = [views[col].messages[-1]["content"] for _, views in steps[:-1] if views[col].messages]
        assert replies and all(b.startswith(a) for a, b in zip(replies, replies[1:], strict=False))
    final = steps[-1][1]
    assert [v.title for v in final] == ["Base", "Prompt-engineered", "RAG", "Fine-tuned", "RAG + fine-tuned",
                                       "Routed (per-question router)"]  # no stored runs or votes: says so
    assert "manual.pdf" in final[2].sources and "0.910" in final[2].sources and "tok/s" in final[0].stats
    assert session["histories"]["rag"][-2] == {"role": "user", "content": "torque for M8?"}
    assert "[2] (manual.pdf p.3)" in session["context"]  # the best passage is shown last, next to the question


def test_prepared_prompts_per_variant(runtime):
    prep = runtime.arena.prepare("torque?", list(VARIANTS), CFG)
    assert prep["base"].messages == [{"role": "user", "content": "torque?"}] and prep["base"].adapter is None
    assert prep["prompt"].messages[0]["content"] == "Be brief." and prep["prompt"].messages[1]["content"] == "q1"
    assert "The M8 bolt takes 25 Nm." in prep["rag"].messages[0]["content"] and prep["rag"].sources == HITS[::-1]
    assert prep["finetuned"].adapter == "tiny-lora" and prep["finetuned"].messages == prep["base"].messages
    assert prep["rag+finetuned"].adapter == "tiny-lora" and prep["rag+finetuned"].sources == HITS[::-1]
    assert prep["routed"].error.startswith("no router yet")  # nothing stored to learn from
    nll = runtime.arena.reference_nll(prep, "25 Nm")
    assert set(nll) == set(VARIANTS) - {"routed"} and nll["base"] != nll["finetuned"]


def test_missing_documents_and_adapters_show_messages(tiny_loaded, data_dir):
    runtime = chat_runtime(Settings(data_dir=data_dir), tiny_loaded, [])
    answers = runtime.arena.ask("hi", list(VARIANTS), VariantConfig(), GenSettings(max_new_tokens=3))
    assert answers["rag"].error == NO_DOCUMENTS and answers["finetuned"].error == NO_ADAPTER
    assert answers["rag+finetuned"].error and not answers["base"].error and answers["base"].tokens > 0


def test_unknown_adapter_and_bad_settings_are_refused(runtime):
    with pytest.raises(ArenaError, match="unknown adapter 'nope'; available: tiny-lora"):
        runtime.arena.ask("hi", ["finetuned"], VariantConfig(adapter="nope"), GenSettings(max_new_tokens=2))
    with pytest.raises(ArenaError, match="temperature"):
        runtime.arena.ask("hi", ["base"], CFG, GenSettings(temperature=-1))
    history = {"base": [{"role": "user", "content": "x" * 1500}, {"role": "assistant", "content": "ok"}]}
    with pytest.raises(ArenaError, match="base prompt .* exceeds the model's context of 2048"):
        list(runtime.arena.stream("hi", ["base"], CFG, GenSettings(max_new_tokens=1000), history))
    long_q = "why " * 2000
    answer = runtime.arena.ask(long_q, ["base"], CFG, GenSettings(max_new_tokens=2))["base"]
    assert "question truncated" in answer.notice


def test_votes_round_trip_and_blind_mode(runtime):
    session = chat.new_session()
    steps = list(chat.stream_turn(runtime.arena, session, "hi", ["base", "prompt", "rag"], CFG,
                                  GenSettings(max_new_tokens=3), blind=True, rng=random.Random(3)))
    titles = [v.title for v in steps[-1][1]]
    assert titles[:3] == ["Answer A", "Answer B", "Answer C"] and not any(v.visible for v in steps[-1][1][3:])
    assert sorted(session["order"]) == ["base", "prompt", "rag"]
    message = chat.record_vote(runtime.votes, session, 1)
    (vote,) = runtime.votes.all()
    assert vote.winner == session["order"][1] and vote.blind and vote.question == "hi"
    assert set(vote.answers) == {"base", "prompt", "rag"} and "manual.pdf p.3" in vote.context
    assert chat.TITLES[vote.winner] in message
    assert chat.views(session, {}, "")[0].title == chat.TITLES[session["order"][0]]  # names revealed
    with pytest.raises(ArenaError, match="already has a vote"):
        chat.record_vote(runtime.votes, session, 0)


def test_chat_tab_builds(runtime):
    import gradio as gr

    with gr.Blocks() as demo:
        chat.build_chat(runtime)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"chat-input", "chat-blind", "chat-adapter", "chat-bot-4", "chat-vote-0"} <= ids


def test_cli_ask_json_and_questions_file(tiny_model_dir, data_dir, tmp_path, capsys):
    from assistant.cli.main import main

    common = ["--data-dir", str(data_dir), "--model", str(tiny_model_dir), "--json", "--max-new-tokens", "4"]
    assert main(["ask", "hello?", "--variants", "base,prompt"] + common) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"base", "prompt"}
    assert {"answer", "sources", "ttft_s", "tokens", "tokens_per_s"} <= set(data["base"])
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "one"}\n{"question": "two"}\n')
    assert main(["ask", "--questions", str(qfile), "--variants", "base"] + common) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("base" in json.loads(line) for line in lines)


@pytest.mark.parametrize("extra,message", [
    (["   "], "question is empty"),
    (["hi", "--temperature", "-1"], "temperature"),
    (["hi", "--max-new-tokens", "999999"], "max new tokens"),
    (["hi", "--variants", "base,nope"], "unknown variant 'nope'"),
    (["hi", "--variants", "base,rag+finetuned,finetuned"], "finetuned and rag+finetuned need an adapter: pass "
                                                           "--adapter NAME"),
])
def test_cli_ask_bad_input_exits_2(tiny_model_dir, data_dir, capsys, extra, message):
    from assistant.cli.main import main

    assert main(["ask", *extra, "--data-dir", str(data_dir), "--model", str(tiny_model_dir)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.e2e
def test_bundled_model_answers_side_by_side(bundled_data_dir, tmp_path):
    runtime = Runtime(Settings(data_dir=bundled_data_dir))
    arena = runtime.arena
    answers = arena.ask("What is the capital of France?", ["base", "prompt"], VariantConfig(),
                        GenSettings(max_new_tokens=12))
    assert "Paris" in answers["base"].text and answers["prompt"].tokens > 0


def test_arena_runs_from_narrow_parts_and_loads_only_what_a_variant_needs(tiny_loaded, data_dir):
    """The Arena gets callables, not the runtime: base alone never touches the documents, adapters or
    embedder; rag asks for the documents and says there are none; finetuned asks the adapter registry."""
    from assistant.arena import Arena
    from assistant.inference.torch_engine import Engine
    from foundation.registry import AdapterRegistry
    from foundation.variants import NO_ADAPTER, NO_DOCUMENTS
    from retrieval.store import DocumentStore

    engine, asked = Engine(tiny_loaded), []
    store = DocumentStore.open(data_dir, embedder=None)  # a real, empty store: nothing ingested, nothing embedded

    def part(name, value):
        def get():
            asked.append(name)
            return value
        return get

    def no_embedder():
        raise AssertionError("the embedder was loaded")

    arena = Arena(engine=lambda: engine, store=part("store", store),
                  registry=part("registry", AdapterRegistry(data_dir)), embedder=no_embedder, data_dir=data_dir,
                  embedder_name="unused")
    gen = GenSettings(max_new_tokens=4)
    answers = arena.ask("What colour is the sky?", ["base"], VariantConfig(), gen)
    assert answers["base"].tokens > 0 and asked == []
    answers = arena.ask("What colour is the sky?", ["base", "rag", "finetuned"], VariantConfig(), gen)
    assert answers["rag"].error == NO_DOCUMENTS and answers["finetuned"].error == NO_ADAPTER
    assert sorted(asked) == ["registry", "store"]
