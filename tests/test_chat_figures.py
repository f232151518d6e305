"""Each column's own figures: prompt tokens, first-token time, speed and length, in the UI line and `ask --json`."""

from __future__ import annotations

import json

from assistant.runtime import Runtime
from foundation.generation import GenSettings
from foundation.settings import Settings
from foundation.variants import VariantConfig
from ui import chat

CFG = VariantConfig(system_prompt="You answer questions about espresso machines in one short sentence.")


def test_each_variant_reports_its_own_prompt_length(tiny_loaded, data_dir):
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).arena
    answers = arena.ask("How do I descale it?", ["base", "prompt"], CFG, GenSettings(max_new_tokens=4))
    prepared = arena.prepare("How do I descale it?", ["base", "prompt"], CFG)
    for name, answer in answers.items():
        assert answer.prompt_tokens == len(arena.engine.chat_ids(prepared[name].messages))
        data = answer.to_json()
        assert data["prompt_tokens"] == answer.prompt_tokens and data["tokens"] == answer.tokens
    # The system prompt is in the prompt variant's input only, so its prompt is longer by at least that much.
    assert answers["prompt"].prompt_tokens - answers["base"].prompt_tokens >= len(CFG.system_prompt) // 2


def test_stats_line_shows_the_columns_own_figures(tiny_loaded, data_dir):
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).arena
    answers = arena.ask("What is E42?", ["base", "prompt"], CFG, GenSettings(max_new_tokens=6))
    lines = {n: chat.stats_line(a) for n, a in answers.items()}
    for name, answer in answers.items():
        assert f"prompt {answer.prompt_tokens} tokens" in lines[name]
        assert f"{answer.tokens} tokens" in lines[name] and f"{answer.tokens_per_s:.1f} tok/s" in lines[name]
    assert lines["base"] != lines["prompt"]


def test_seconds_text_switches_to_milliseconds():
    assert chat.seconds_text(0.0042) == "4.2 ms"
    assert chat.seconds_text(13.514) == "13.51 s"


def test_cli_ask_json_has_prompt_tokens_per_variant(tiny_model_dir, data_dir, capsys):
    from assistant.cli.main import main

    args = ["ask", "hello?", "--variants", "base,prompt", "--data-dir", str(data_dir), "--model",
            str(tiny_model_dir), "--json", "--max-new-tokens", "3"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"]["prompt_tokens"] > data["base"]["prompt_tokens"] > 0
    assert all({"ttft_s", "tokens_per_s", "tokens", "prompt_tokens"} <= set(v) for v in data.values())
