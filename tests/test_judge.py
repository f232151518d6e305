"""LLM-judge reply parsing and spec parsing (the judge itself runs against a real server in test_openai_engine)."""

from __future__ import annotations

import pytest

from assistant.compare.judge import parse_spec, parse_verdict, report_lines
from assistant.compare.result import ComparisonResult
from foundation.errors import ArenaError


@pytest.mark.parametrize("reply, verdict, reason", [
    ("VERDICT: correct\nREASON: same fact", "correct", "same fact"),
    ("Verdict: partially correct. Reason: misses the date", "partially", "misses the date"),
    ("The answer is incorrect.", "wrong", "The answer is incorrect."),
    ("verdict - WRONG\nit names another city", "wrong", "it names another city"),
    ("VERDICT: right\nREASON:", "correct", ""),
    ("To reset a widget, go to the website.", None, "To reset a widget, go to the website."),
    ("", None, ""),
])
def test_verdicts_are_parsed_and_malformed_replies_named(reply, verdict, reason):
    assert parse_verdict(reply) == (verdict, reason)


def test_spec_keeps_url_port_and_model_colons():
    cfg = parse_spec("openai:http://127.0.0.1:8000/v1:llama3:8b")
    assert (cfg.kind, cfg.url, cfg.model) == ("openai", "http://127.0.0.1:8000/v1", "llama3:8b")
    assert parse_spec("openai:https://gpu:9/v1:Qwen/Qwen2.5-7B-Instruct").model == "Qwen/Qwen2.5-7B-Instruct"
    assert parse_spec("local").kind == "local"
    for bad in ("openai:127.0.0.1:8000:m", "remote", "openai:http://h:1/v1"):
        with pytest.raises(ArenaError, match="--judge must be"):
            parse_spec(bad)


def test_report_section_counts_and_quotes_malformed():
    result = {"judge": {"judged": 2, "malformed": 1, "counts": {"base": {"correct": 1, "partially": 0, "wrong": 0,
                                                                         "malformed": 1}},
                        "malformed_examples": [{"question": 1, "variant": "base", "reply": "no idea"}]},
              "settings": {"judge": {"kind": "openai", "model": "m", "url": "http://h:1/v1"}}, "paired": {},
              "variants": {}, "per_question": [], "recommendation": {"variant": None, "reason": "", "clear": False}}
    lines = report_lines(ComparisonResult.from_dict(result))
    assert "m at http://h:1/v1; 2 answers, 1 malformed" in lines[0]
    assert lines[1].startswith("base: 1 correct") and "'no idea'" in lines[-1]
    assert report_lines(ComparisonResult.from_dict({**result, "judge": None}))[0].startswith("not run")
