"""Decoding that does not loop: the loop metric, the stop on repetition on every in-process engine, the flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from foundation.errors import ArenaError
from foundation.generation import LOOP_STOP, GenSettings, Row, loop_cut
from foundation.metrics import answer_scores, distinct_ngram_share, loops
from tests.looping_model import CYCLE, make_looping_model, save_looping_model


def test_loop_metric_on_hand_examples():
    looping = "The answer is: The answer is: The answer is: The answer is: The answer is:"
    assert distinct_ngram_share(looping) == pytest.approx(3 / 12)  # 15 words, 12 4-grams, 3 distinct
    assert loops(looping) == 1.0
    assert loops("Django is a high-level Python web framework that encourages rapid development.") == 0.0
    assert loops("yes yes yes") == 0.0 and distinct_ngram_share("yes yes yes") is None  # under 4 words
    assert loops("") == 0.0
    # the 60 % bound: 10 4-grams, 6 distinct is not a loop; 5 distinct is
    assert distinct_ngram_share("a b c d e f a b c d e f a") == pytest.approx(6 / 10)
    assert loops("a b c d e f a b c d e f a") == 0.0
    assert distinct_ngram_share("a b c d e a b c d e a b c") == pytest.approx(5 / 10)
    assert loops("a b c d e a b c d e a b c") == 1.0
    assert loops("Cat, dog. CAT dog! cat; dog cat dog") == 1.0  # words: case and punctuation do not matter
    assert answer_scores(looping, "The answer is 42.")["loops"] == 1.0


def test_loop_cut_keeps_the_text_before_the_loop_and_one_copy_of_the_block():
    block = [7, 8, 9, 10]
    tokens = [1, 2, 3] + block * 5  # 20 tokens repeat the block: a loop at 16
    assert loop_cut(tokens, 16) == 7 and tokens[:7] == [1, 2, 3] + block
    assert loop_cut(tokens, 0) is None  # off
    assert loop_cut(tokens, 24) is None  # not yet long enough
    assert loop_cut([5] * 17, 16) == 1 and loop_cut([5] * 16, 16) is None
    assert loop_cut(list(range(200)), 16) is None
    sentence = list(range(30, 60))  # a 30-token sentence said again: cut once 16 of its tokens are repeated
    assert loop_cut([1] + sentence + sentence[:16], 16) == 31 and loop_cut([1] + sentence + sentence[:15], 16) is None
    assert loop_cut([1] + sentence + [2] + sentence[5:21], 16) == 32  # a variant of it: the copied part is cut
    far = list(range(100, 170))  # 70 tokens apart: beyond the 64-token window
    assert loop_cut(sentence[:16] + far + sentence[:16], 16) is None


def test_bad_stop_on_loop_is_refused():
    for bad in (-1, 3, 5000):
        with pytest.raises(ArenaError, match="stop on loop"):
            GenSettings(stop_on_loop=bad).check(2048)
    GenSettings(stop_on_loop=0).check(2048)
    assert GenSettings().stop_on_loop == LOOP_STOP > 0  # on by default, for every caller


@pytest.fixture
def looping_torch(tiny_tokenizer):
    from assistant.inference.torch_engine import Engine
    from foundation.models import LoadedModel

    model = make_looping_model(tiny_tokenizer)
    return Engine(LoadedModel(model, tiny_tokenizer, "looping", "<memory>", torch.float32, torch.device("cpu")))


def _rows(engine) -> list[Row]:
    return [Row(engine.chat_ids([{"role": "user", "content": q}])) for q in ("hello there", "What is it?", "hi")]


def _check_stops(engine, max_new_tokens: int = 48):
    """The crafted model loops with the stop off; with it on every row ends after one copy of the cycle."""
    rows = _rows(engine)
    off = engine.generate(rows, GenSettings(max_new_tokens=max_new_tokens, stop_on_loop=0))
    for out in off:  # the premise: without the setting the answer loops to the token limit
        assert out.done and len(out.tokens) == max_new_tokens and loops(out.text) == 1.0, out.text
    on = engine.generate(rows, GenSettings(max_new_tokens=max_new_tokens))
    for o, f in zip(on, off, strict=True):
        assert o.done and o.text == CYCLE and loops(o.text) == 0.0, o.text
        assert o.tokens == f.tokens[:len(o.tokens)]  # the same tokens, cut: nothing else changed
    return on


def test_torch_engine_stops_a_loop(looping_torch):
    _check_stops(looping_torch)
    texts = [outs[0].text for outs in looping_torch.stream(_rows(looping_torch)[:1], GenSettings(max_new_tokens=48))]
    # streamed as it grows; the token that makes LOOP_STOP repeated tokens (one byte each here) ends and cuts it
    assert texts[-1] == CYCLE and max(len(t) for t in texts) == len(CYCLE) + LOOP_STOP - 1


def _check_one_line(engine, max_new_tokens: int = 40) -> list:
    """A model repeating the line "cat dog.\\n": with one_line every row ends at its first line break, with
    the same tokens as without it, cut; the loop stop is off so only the line stop can end a row early."""
    rows = _rows(engine)
    off = engine.generate(rows, GenSettings(max_new_tokens=max_new_tokens, stop_on_loop=0))
    on = engine.generate(rows, GenSettings(max_new_tokens=max_new_tokens, stop_on_loop=0, one_line=True))
    for o, f in zip(on, off, strict=True):
        assert len(f.tokens) == max_new_tokens and f.text.count("\n") > 3  # the premise: many lines without it
        assert o.done and o.text == CYCLE + "\n" and o.tokens == f.tokens[:len(CYCLE) + 1], o.text
    return on


def test_one_line_ends_a_row_at_its_first_line_break(tiny_tokenizer):
    from assistant.inference.torch_engine import Engine
    from foundation.generation import first_line_done
    from foundation.models import LoadedModel

    assert not first_line_done("") and not first_line_done("\n\n  ") and not first_line_done("\nHow do I")
    assert first_line_done("\nHow do I?\n") and first_line_done("How?\nMore")
    model = make_looping_model(tiny_tokenizer, CYCLE + "\n")
    _check_one_line(Engine(LoadedModel(model, tiny_tokenizer, "lines", "<memory>", torch.float32,
                                       torch.device("cpu"))))


def test_ortgenai_engine_stops_a_loop_like_torch(tmp_path):
    from assistant.inference import ort_build
    from assistant.inference.ortgenai import OrtGenaiEngine, available
    from assistant.inference.torch_engine import Engine
    from foundation.models import load_model
    from foundation.settings import Settings

    if not available():
        pytest.skip("onnxruntime-genai is not installed")
    folder = save_looping_model(tmp_path / "looping")
    reference = Engine(load_model(Settings(model=str(folder), device="cpu", dtype="float32")))
    graph = ort_build.converted_folder(Path(folder), tmp_path / "models", "fp32", sorted(reference.eos_ids),
                                       log=lambda text: None)
    engine = OrtGenaiEngine(reference, graph, tmp_path / "models")
    on = _check_stops(engine)
    assert [o.tokens for o in on] == [o.tokens for o in _check_stops(reference)]  # the same rule on both engines
    lines = save_looping_model(tmp_path / "lines", CYCLE + "\n")
    graph = ort_build.converted_folder(Path(lines), tmp_path / "models", "fp32", sorted(reference.eos_ids),
                                       log=lambda text: None)
    _check_one_line(OrtGenaiEngine(Engine(load_model(Settings(model=str(lines), device="cpu", dtype="float32"))),
                                   graph, tmp_path / "models"))


@pytest.fixture(scope="module")
def looping_dir(tmp_path_factory) -> Path:
    return save_looping_model(tmp_path_factory.mktemp("looping"))


def _cli_json(capsys, argv: list[str]) -> dict:
    import json

    from assistant.cli.main import main

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_compare_reports_the_loop_share_and_stores_the_setting(looping_dir, tmp_path, capsys):
    """On by default; --stop-on-loop 0 brings the loops back; the share per variant is in the JSON and report."""
    import json

    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"question": q, "answer": "cat dog."}) + "\n"
                                 for q in ("hello there", "What is it?", "hi")))
    common = ["compare", "--eval", str(eval_file), "--variants", "base", "prompt", "--no-forgetting",
              "--max-new-tokens", "40", "--data-dir", str(tmp_path / "data"), "--model", str(looping_dir),
              "--engine", "torch", "--json"]
    runs = {}
    for flag in ([], ["--stop-on-loop", "0"]):
        report = tmp_path / f"report{len(flag)}.md"
        runs[len(flag)] = _cli_json(capsys, common + flag + ["--report", str(report)])
        assert "answers that loop" in report.read_text()  # the results table has the column
    on, off = runs[0], runs[2]
    assert on["settings"]["generation"]["stop_on_loop"] == 16 and off["settings"]["generation"]["stop_on_loop"] == 0
    for v in ("base", "prompt"):
        assert on["variants"][v]["loops"]["mean"] == 0.0 and off["variants"][v]["loops"]["mean"] == 1.0
        assert on["variants"][v]["f1"]["mean"] > off["variants"][v]["f1"]["mean"]


def test_cli_ask_flag(looping_dir, tmp_path, capsys):
    common = ["ask", "hello there", "--variants", "base", "--max-new-tokens", "40", "--data-dir",
              str(tmp_path / "data"), "--model", str(looping_dir), "--engine", "torch", "--json"]
    assert _cli_json(capsys, common)["base"]["answer"] == CYCLE
    assert _cli_json(capsys, common + ["--stop-on-loop", "0"])["base"]["answer"].count(CYCLE) == 5
    from assistant.cli.main import main

    assert main(common + ["--stop-on-loop", "2"]) == 2 and "stop on loop" in capsys.readouterr().err


def test_decide_flag_reaches_the_comparison_key_and_a_resumed_old_run_keeps_its_decoding(tmp_path):
    from assistant.cli.main import build_parser
    from assistant.compare.resume import plan_from_json
    from assistant.decide.config import config_from_args
    from assistant.decide.stages import DecideRun
    from foundation.settings import Settings

    (tmp_path / "faq.md").write_text("# FAQ\n\n## Q?\n\nA.\n")
    parser = build_parser("decide")
    default = config_from_args(parser.parse_args(["decide", str(tmp_path / "faq.md")]))
    off = config_from_args(parser.parse_args(["decide", str(tmp_path / "faq.md"), "--stop-on-loop", "0"]))
    assert default.stop_on_loop == LOOP_STOP and off.stop_on_loop == 0
    with pytest.raises(ArenaError, match="stop on loop"):
        config_from_args(parser.parse_args(["decide", str(tmp_path / "faq.md"), "--stop-on-loop", "2"]))
    settings = Settings(data_dir=tmp_path / "data")
    assert DecideRun(default, settings).keys["compare"] != DecideRun(off, settings).keys["compare"]
    # a run stored before the setting existed was answered without it: resumed the same way
    _, compare_cfg, _ = plan_from_json({"items": [], "compare": {"variants": ["base"]}, "variant_config": {}})
    assert compare_cfg.stop_on_loop == 0
