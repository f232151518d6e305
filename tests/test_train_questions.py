"""`arena train --from-documents qa --generator SPEC`: training pairs written by the same generator, filters,
row cache and heuristic fallback as `arena decide --generator` (training/doc_questions.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from foundation.errors import ArenaError
from tests.test_questions import GUIDE, _extractive
from training.builders import SectionText
from training.sources import document_qa

FAQ = "# Kettle FAQ\n\n## How do I descale the kettle?\nFill it with vinegar and water, boil, and rinse twice.\n"


def _sections(text: str, source: str = "notes.md") -> list[SectionText]:
    parts = [p for p in text.split("\n## ")[1:]]
    return [SectionText(p.split("\n", 1)[0].strip(), p.split("\n", 1)[1], source) for p in parts]


@pytest.fixture(scope="module")
def embed():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2").encode


def test_training_pairs_are_written_by_the_generator_and_the_filters_are_counted(tmp_path, embed, capsys):
    sections = _sections(GUIDE)
    rows = document_qa(sections, "base", 12, _extractive, embed, tmp_path / "data", seed=0)
    questions = [ex.question() for ex in rows]
    # The writer's questions differ by one word from section to section: the leakage guard's near-duplicate
    # rule drops most of them, and says how many.
    assert 2 <= len(questions) < 12 and all(q.startswith("How long does the ") for q in questions)
    assert {ex.origin for ex in rows} <= {f"notes.md § {s.title}" for s in sections}
    assert all(ex.messages[-1]["content"] in s.text for ex in rows for s in sections if ex.origin.endswith(s.title))
    err = capsys.readouterr().err
    assert (f"questions written by the generator base: {len(rows)} kept of 12 asked; dropped: 0 unparsed, "
            f"0 ill formed, 0 not standalone, 0 unsupported, {12 - len(rows)} duplicate") in err
    assert "heuristic" not in err
    cached = sqlite3.connect(tmp_path / "data" / "cache" / "rows.sqlite").execute("SELECT COUNT(*) FROM rows")
    assert cached.fetchone()[0] >= 8  # each reply stored: a rerun or decide on the same chunks asks nothing


def test_a_failing_generator_falls_back_to_the_heuristic_and_says_why(tmp_path, embed, capsys):
    def unreachable(prompts, gen):
        raise ArenaError("cannot reach the server at http://127.0.0.1:9/v1")

    rows = document_qa(_sections(FAQ), "openai:http://127.0.0.1:9/v1:m", 4, unreachable, embed, tmp_path, seed=0)
    assert [ex.question() for ex in rows] == ["How do I descale the kettle?"]  # the heading, as before
    err = capsys.readouterr().err
    assert "the generator openai:http://127.0.0.1:9/v1:m could not supply the questions (cannot reach the " \
           "server at http://127.0.0.1:9/v1); the heuristic drew them instead" in err
    assert "questions drawn by a heuristic" in err and "0 dropped as malformed" in err


def test_arena_train_with_the_tiny_model_as_generator(tmp_path, tiny_model_dir, capsys):
    """The whole command: the tiny random model is really asked (its replies land in the row cache), writes
    nothing the filters keep, and the job trains on the heuristic's pairs, saying so with the counts."""
    from assistant.cli.main import main

    docs = tmp_path / "faq.md"
    docs.write_text(FAQ + "\n## How do I clean the filter?\nRinse the filter under warm water once a week.\n")
    flags = ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--device", "cpu"]
    assert main(["ingest", str(docs), *flags]) == 0
    assert main(["train", "--from-documents", "qa", "--generator", "base", "--questions", "3", "--name", "g",
                 "--max-steps", "1", "--batch-size", "2", "--val-fraction", "0", "--engine", "torch",
                 *flags]) == 0
    err = capsys.readouterr().err
    assert "questions written by the generator base: 0 kept of 3 asked; dropped: " in err
    assert "could not supply the questions (no generated question passed the filters)" in err
    cached = sqlite3.connect(tmp_path / "data" / "cache" / "rows.sqlite").execute("SELECT COUNT(*) FROM rows")
    assert cached.fetchone()[0] >= 1  # the generator was asked
    [job] = [p for p in (tmp_path / "data" / "jobs").iterdir() if (p / "train.jsonl").is_file()]
    trained = [json.loads(line)["messages"][-2]["content"] for line in (job / "train.jsonl").read_text().splitlines()]
    assert sorted(trained) == ["How do I clean the filter?", "How do I descale the kettle?"]
    assert "generator: base" in (job / "config.yaml").read_text()  # a resume asks the same generator


@pytest.mark.parametrize(("args", "words"), [
    (["--from-documents", "cpt", "--generator", "base"], "add --from-documents qa"),
    (["--data", "x.jsonl", "--questions", "5"], "add --from-documents qa"),
    (["--from-documents", "qa", "--generator", "openai:127.0.0.1:model"], "needs a URL with a path"),
    (["--from-documents", "qa", "--generator", "base", "--questions", "0"], "--questions must be between 1"),
])
def test_bad_generator_flags_are_named(tmp_path, tiny_model_dir, capsys, args, words):
    from assistant.cli.main import main

    assert main(["train", *args, "--name", "x", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir)]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.e2e
def test_arena_train_with_the_served_bundled_model_as_generator(tmp_path, tiny_model_dir, capsys):
    """`arena train --from-documents qa --generator openai:URL:MODEL`: the bundled GGUF on llama.cpp's server
    writes the pairs from a non-FAQ document (the heuristic finds none in it), the tiny model trains on them."""
    from assistant.cli.main import main
    from foundation.models import bundled_gguf
    from tests.openai_server import BASE_ALIAS, LlamaServer, server_available

    if server_available():
        pytest.skip(server_available())
    docs = tmp_path / "guide.md"
    docs.write_text(GUIDE)
    flags = ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--device", "cpu"]
    assert main(["ingest", str(docs), *flags]) == 0
    server = LlamaServer(bundled_gguf("bundled:smollm2-135m"), tmp_path, [], threads=2).wait()
    try:
        code = main(["train", "--from-documents", "qa", "--generator", f"openai:{server.url}:{BASE_ALIAS}",
                     "--questions", "8", "--name", "served", "--max-steps", "1", "--batch-size", "2",
                     "--val-fraction", "0", *flags])
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert "kept of 8 asked; dropped: " in err
    if code != 0:  # the 135M writer kept nothing and the heuristic has nothing here either: said so, refused
        assert "could not supply the questions" in err and "produced no rows" in err
        return
    [job] = [p for p in (tmp_path / "data" / "jobs").iterdir() if (p / "train.jsonl").is_file()]
    rows = [json.loads(line) for line in (job / "train.jsonl").read_text().splitlines()]
    assert rows and "heuristic" not in err  # generated pairs, not the heuristic's
