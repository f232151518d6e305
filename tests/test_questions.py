"""Questions from documents without Q/A pairs: the heading/definition heuristic (fallback) drops fragments and
says so; the question generator's filters each drop a crafted bad item and keep a good one; decide refuses a
verdict on too few well-formed questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.decide.config import DecideConfig
from assistant.decide.runner import plan_for, run_decide
from foundation.errors import ArenaError
from foundation.leakage import is_near_duplicate
from foundation.settings import Settings
from training import builders
from training.doc_questions import describe
from training.question_form import malformed_reason, standalone_reason

# The sentences behind the issue's table (an API reference, no question headings), and what the old heuristic
# made of them: "What is When a URL?" and the like. Only the last is a real definition.
API_SENTENCES = [
    "When a URL is parsed using one of these special protocols, the url.protocol property may be changed.",
    "For EventTargets this is the only way to get the event listeners registered on it.",
    "The value is false in all other cases.",
    "Each item of the iterator is a JavaScript Array.",
    "Each matching test file is executed in a separate child process.",
    "This applies when a directory is specified, and only on supported platforms (See caveats).",
    "The registered event listeners is synchronously invoked in the order they were registered.",
    "The hostname property is the lower-cased host name portion of the host component.",
]
ISSUE_FRAGMENTS = ["What is When a URL?", "What is For EventTargets this?", "What is the value?",
                   "What is Each item of the iterator?", "What is Each matching test file?",
                   "What is This applies when a directory?"]


def test_heuristic_drops_the_fragment_questions_of_the_issue_and_counts_them():
    drawn = builders.draw_from_sections([builders.SectionText("URL", " ".join(API_SENTENCES), "url.md")])
    assert [ex.question() for ex in drawn.kept] == ["What is the hostname property?"]
    assert drawn.dropped == 7 and set(drawn.malformed) == {"fragment", "vague", "not a definition"}
    assert builders.qa_from_sections([builders.SectionText("URL", " ".join(API_SENTENCES), "url.md")]) == drawn.kept


@pytest.mark.parametrize("question", ISSUE_FRAGMENTS + ["Install?", "The server restarts after an update",
                                      "What is the answer to the question: Options have a name?"])
def test_ill_formed_questions_are_dropped(question):
    assert malformed_reason(question)


@pytest.mark.parametrize("question", ["What is the hostname property?", "What is a widget?",
                                      "How do I reset the router?", "Which Python versions does Flask support?"])
def test_well_formed_questions_are_kept(question):
    assert malformed_reason(question) is None and standalone_reason(question) is None


@pytest.mark.parametrize("question", ["According to the passage, what does the parser return?",
                                      "What does the text say about timeouts?",
                                      "What does it return when the URL is invalid?",
                                      "How is this configured on Windows?"])
def test_questions_that_do_not_stand_alone_are_dropped(question):
    assert standalone_reason(question)


def test_the_generator_dedupes_with_the_leakage_rule_that_sees_word_order():
    swapped = ("How do I convert a list to a tuple?", "How do I convert a tuple to a list?")
    assert not is_near_duplicate(0.99, *swapped)  # cosine alone would call them one question
    assert is_near_duplicate(0.95, "Which Python versions does Flask support?",
                             "What Python versions are supported by Flask?")


# ---- decide: the heuristic said plainly, and refused on too few questions --------------------------------

NOTES = "# Release notes\n\n" + "\n".join(
    f"## Version 1.{i}\nThe parser is faster in this release. Each handler is called once per event {i}.\n"
    for i in range(3))


def _docs(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "notes.md").write_text(text)
    return folder


def test_plan_says_the_questions_are_drawn_by_a_heuristic(tmp_path, tiny_model_dir):
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    plan = plan_for(DecideConfig(docs=[str(_docs(tmp_path, NOTES))]).resolved(), settings)
    assert "drawn from the documents by a heuristic" in plan.text() and "0 well-formed, 2 dropped as malformed" in plan.text()


def test_decide_refuses_a_verdict_on_too_few_well_formed_questions(tmp_path, tiny_model_dir):
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = DecideConfig(docs=[str(_docs(tmp_path, NOTES))], variants=["base", "rag"], augment="").resolved()
    with pytest.raises(ArenaError) as err:
        run_decide(cfg, settings, stderr=False)
    message = str(err.value)
    assert "only 0 well-formed evaluation question(s)" in message and "2 dropped as malformed" in message
    assert "--generator" in message and "--qa" in message


FEW = "# Pump\n\n" + "\n".join(f"## How do I reset pump {i}?\nHold its red button for {i + 5} seconds.\n"
                                  for i in range(3))


def test_plan_and_run_agree_that_three_questions_are_too_few(tmp_path, tiny_model_dir):
    """Before: the plan showed '1 eval, 2 train' without a word, and the run stopped on 'cannot hold out a
    section' (one question) or on too few (three)."""
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = DecideConfig(docs=[str(_docs(tmp_path, FEW))], variants=["base", "rag"], augment="").resolved()
    plan = plan_for(cfg, settings)
    assert "3 well-formed" in plan.text()
    assert "note: the run will stop at the evaluation questions: about 1 can be held out" in plan.text()
    with pytest.raises(ArenaError, match=r"only 3 well-formed evaluation question\(s\)"):
        run_decide(cfg, settings, stderr=False)


def test_report_says_the_heuristic_drew_the_questions():
    lines = describe({"questions_by": "heuristic", "malformed": {"fragment": 5, "vague": 1}})
    assert "drawn by a heuristic" in lines[0] and "6 dropped as malformed (5 fragment, 1 vague)" in lines[0]
    assert describe({"origin": "--eval file"}) == []
    gen = {"spec": "base", "asked": 20, "kept": 8, "round_trip": 0.75,
           "dropped": {"unparsed": 9, "ill formed": 1, "not standalone": 0, "unsupported": 2, "duplicate": 0}}
    lines = describe({"generator": gen})
    assert lines[0] == ("questions written by the generator base: 8 kept of 20 asked; dropped: 9 unparsed, "
                        "1 ill formed, 0 not standalone, 2 unsupported, 0 duplicate")
    assert "75% of the generated evaluation questions retrieve their own chunk" in lines[1]


# ---- the generator's sampling, cache and filters ------------------------------------------------------------

from foundation.row_cache import RowCache  # noqa: E402
from training import questions as gq  # noqa: E402

CHUNK = gq.Chunk("flask.md", "Installation", "Install Flask with pip install flask. Flask supports Python 3.9 "
                 "and newer. Create a virtual environment first with python -m venv .venv and activate it.")
GOOD = '{"question": "Which Python versions does Flask support?", "answer": "Python 3.9 and newer"}'


@pytest.fixture(scope="module")
def embed():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2").encode


def _kept(replies: list[str], embed) -> tuple[list[str], gq.FilterCounts]:
    tasks = [gq.Task("factual", (CHUNK,)) for _ in replies]
    kept, counts = gq.filter_replies(tasks, replies, embed)
    return [k.question for k in kept], counts


def _reply(question: str, answer: str = "Python 3.9 and newer") -> str:
    return f'{{"question": "{question}", "answer": "{answer}"}}'


def test_replies_are_read_as_json_or_question_answer_lines():
    assert gq.parse_reply(f"Sure! Here it is:\n{GOOD}\nHope it helps.") == (
        "Which Python versions does Flask support?", "Python 3.9 and newer")
    assert gq.parse_reply("Question: How do I install Flask?\nAnswer: Run pip install flask.\nQuestion: x") == (
        "How do I install Flask?", "Run pip install flask.")
    assert gq.parse_reply("**Q:** How do I install Flask?\n**A:** pip install flask") is not None
    assert gq.parse_reply("Flask is a web framework.") is None


@pytest.mark.parametrize(("bad", "reason"), [
    ("I am sorry, I cannot write a question about this.", "unparsed"),
    (_reply("What is When Flask?"), "ill_formed"),
    (_reply("According to the passage, which Python versions are supported?"), "not_standalone"),
    (_reply("Which Python versions does Flask support?", "Flask was created by Armin Ronacher in Austria"),
     "unsupported"),
    (_reply("How do I create a virtual environment?", "How to create a virtual environment."), "unsupported"),
    (_reply("What Python versions are supported by Flask?"), "duplicate"),
])
def test_each_filter_drops_its_bad_item_and_keeps_the_good_one(bad, reason, embed):
    kept, counts = _kept([GOOD, bad], embed)
    assert kept == ["Which Python versions does Flask support?"]
    assert getattr(counts, reason) == 1 and counts.asked == 2 and counts.kept == 1
    assert sum(counts.dropped().values()) == 1


def test_near_duplicates_need_the_same_word_order(embed):
    swapped = [_reply("How do I convert a Flask request to a JSON response?", "pip install flask"),
               _reply("How do I convert a JSON response to a Flask request?", "pip install flask")]
    kept, counts = _kept(swapped, embed)
    assert len(kept) == 2 and counts.duplicate == 0


def test_tasks_are_stratified_over_documents_and_sections():
    chunks = [gq.Chunk(doc, f"{doc} section {s}", f"text {doc} {s}") for doc in ("a.md", "b.md") for s in range(3)]
    tasks = gq.sample_tasks(chunks, 6, gq.QuestionSettings("base", two_chunk_share=0.0))
    firsts = [t.chunks[0] for t in tasks]
    assert sorted(set(firsts), key=chunks.index) == chunks  # every section of every document once
    assert [c.source for c in firsts[:2]] in (["a.md", "b.md"], ["b.md", "a.md"])  # documents take turns
    assert {t.kind for t in tasks} == {"factual", "how-to"}
    pairs = gq.sample_tasks(chunks, 40, gq.QuestionSettings("base", two_chunk_share=0.5))
    two = [t for t in pairs if t.kind == "two-chunk"]
    assert two and all(len({c.source for c in t.chunks}) == 1 and t.chunks[0] != t.chunks[1] for t in two)


def test_replies_are_cached_as_generated_and_a_killed_run_resumes(tmp_path):
    chunks = [gq.Chunk("a.md", f"s{i}", f"text number {i}") for i in range(6)]
    settings = gq.QuestionSettings("base", two_chunk_share=0.0)
    tasks = gq.sample_tasks(chunks, 6, settings)
    cache, asked = RowCache(tmp_path / "rows.sqlite"), []

    def generate(prompts, gen):
        asked.extend(p[-1]["content"] for p in prompts)
        if len(asked) > gq.BATCH:
            raise KeyboardInterrupt  # the process dies during its second batch
        return [f"reply {len(asked)}-{i}" for i in range(len(prompts))]

    with pytest.raises(KeyboardInterrupt):
        gq.ask(tasks, settings, generate, cache)
    again: list = []
    replies = gq.ask(tasks, settings, lambda prompts, gen: again.extend(prompts) or ["new"] * len(prompts), cache)
    assert replies == [f"reply {gq.BATCH}-{i}" for i in range(gq.BATCH)] + ["new"] * (6 - gq.BATCH)
    assert len(again) == 6 - gq.BATCH  # only the batch the kill interrupted is asked again


# ---- decide with generated questions: the leakage guard ------------------------------------------------------

GUIDE = "# Kettle user guide\n\n" + "\n".join(
    f"## Part {name}\nThe {name} setting of the kettle keeps the water at {60 + 5 * i} degrees for {i + 2} minutes. "
    f"Press the {name} button twice to start the {name} programme on the base.\n"
    for i, name in enumerate(["green", "black", "white", "oolong", "herbal", "rooibos", "mate", "matcha"]))


def _extractive(prompts, gen) -> list[str]:
    """A deterministic writer for the split and leakage checks: asks about the sentence it is told to."""
    out = []
    for messages in prompts:
        focus = messages[-1]["content"].split("Ask about this sentence: ", 1)[1].split("\n", 1)[0]
        name = messages[-1]["content"].split("§ Part ", 1)[1].split(")", 1)[0]
        out.append(f'{{"question": "How long does the {name} setting keep the water hot?", "answer": "{focus}"}}')
    return out


def test_generated_evaluation_questions_come_only_from_held_out_sections(tmp_path, tiny_model_dir):
    from assistant.decide.questions import generated_sets
    from assistant.runtime import Runtime
    from retrieval.ingest import ingest_paths

    rt = Runtime(Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu"))
    ingest_paths(rt.store, [_docs(tmp_path, GUIDE) / "notes.md"])
    cfg = DecideConfig(docs=["x"], generator="base", questions=16, eval_fraction=0.25, variants=["base", "finetuned"])
    got = generated_sets(cfg, rt, rt.store.sections(), generate=_extractive)
    evals = {(p["source"], p["section"]) for p in got.evals}
    train = {(p["source"], p["section"]) for p in got.pool}
    held = {tuple(k) for k in got.info["held_out_sections"]}
    assert evals and train and evals <= held and not train & held  # split first, then written from each side
    assert len(got.evals) == len(evals) >= 2 and got.info["asked"] == 16  # one distinct question per section
    # The writer repeats one question per section: each section's second question is a near-duplicate.
    assert got.info["kept"] + sum(got.info["dropped"].values()) == 16 and got.info["dropped"]["duplicate"] >= 1
    questions = [p["question"] for p in got.evals + got.pool]
    assert len(set(questions)) == len(questions)
    assert got.info["round_trip"] is not None and 0 <= got.info["round_trip"] <= 1


# ---- end to end: documents only, the generator on the llama.cpp server ----------------------------------------

@pytest.mark.e2e
def test_documents_only_decide_with_the_served_bundled_model_as_generator(tmp_path, tiny_model_dir):
    """`arena decide DOCS --generator openai:URL:MODEL` on a non-FAQ Markdown document: the bundled GGUF on
    llama.cpp's server writes the questions (few, short: the test pays for each one)."""
    from foundation.models import bundled_gguf
    from tests.openai_server import BASE_ALIAS, LlamaServer, server_available

    if server_available():
        pytest.skip(server_available())
    server = LlamaServer(bundled_gguf("bundled:smollm2-135m"), tmp_path, [], threads=2).wait()
    try:
        settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
        cfg = DecideConfig(docs=[str(_docs(tmp_path, GUIDE))], generator=f"openai:{server.url}:{BASE_ALIAS}",
                           questions=12, eval_fraction=0.5, variants=["base", "rag"], max_new_tokens=4,
                           forgetting=False, augment="").resolved()
        assert "are written by the generator openai:" in plan_for(cfg, settings).text()
        try:
            result = run_decide(cfg, settings, stderr=False)
        except ArenaError as exc:  # the 135M writer kept too few: the heuristic stood in and refused, saying so
            assert "heuristic" in str(exc) and "--generator" in str(exc)
            return
        report = Path(result.report.markdown).read_text()
        assert "questions written by the generator openai:" in report and "12 asked" in report
        assert "retrieve their own chunk" in report
        again = run_decide(cfg, settings, stderr=False)  # cached by content: nothing is asked again
        assert all(s.cached for s in again.stages)
    finally:
        server.stop()


def test_preview_writes_questions_from_unindexed_documents_and_caches_the_replies(tmp_path, tiny_model_dir):
    """The Decide tab's preview: documents read (not ingested), the base model asked, every reply filtered and
    kept in the row cache for the run (the tiny random model writes nothing usable: all of it is counted)."""
    import sqlite3

    from assistant.decide.questions import preview_questions
    from assistant.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu"))
    cfg = DecideConfig(docs=[str(_docs(tmp_path, GUIDE))], generator="base")
    got = preview_questions(cfg, rt, n=3)
    assert got.counts.asked == 3 and got.counts.kept + sum(got.counts.dropped().values()) == 3
    assert len(got.questions) == got.counts.kept
    rows = sqlite3.connect(tmp_path / "data" / "cache" / "rows.sqlite").execute("SELECT COUNT(*) FROM rows")
    assert rows.fetchone()[0] == 3
    assert not (tmp_path / "data" / "index").exists() or rt.store.is_empty()  # nothing was ingested
    with pytest.raises(ArenaError, match="choose a generator"):
        preview_questions(DecideConfig(docs=cfg.docs), rt)


def test_cli_generator_flag_shows_in_the_plan_with_its_time_and_bad_specs_are_named(tmp_path, tiny_model_dir,
                                                                                      capsys):
    from assistant.cli.main import main

    base = ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir)]
    docs = str(_docs(tmp_path, GUIDE))
    assert main(["decide", docs, "--generator", "base", "--questions", "20", "--plan", *base]) == 0
    out = capsys.readouterr().out
    assert "20 questions are written by the generator base" in out and "6 eval, 14 train" in out
    evalset_minutes = float(next(line for line in out.splitlines() if line.startswith("evalset")).split()[-1])
    assert evalset_minutes > 0.5  # 20 generations are priced in, not the heuristic's seconds
    # fewer questions than the 5 evaluation questions a verdict needs: all of them evaluate, none train (the plan
    # once showed "5 eval, -2 train"; the writer already clamped it)
    assert main(["decide", docs, "--generator", "base", "--questions", "3", "--plan", *base]) == 0
    assert "5 eval, 0 train" in capsys.readouterr().out
    assert main(["decide", docs, "--generator", "openai:127.0.0.1:model", "--plan", *base]) == 2
    assert "--generator openai:URL:MODEL needs a URL with a path" in capsys.readouterr().err


def test_decide_falls_back_to_the_heuristic_when_the_generator_writes_nothing_usable(tmp_path, tiny_model_dir):
    """The tiny random model as generator: every reply is filtered out, the heuristic stands in, finds no
    well-formed question in this document either, and the refusal says all of it."""
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = DecideConfig(docs=[str(_docs(tmp_path, GUIDE))], generator="base", questions=5,
                       variants=["base", "rag"], augment="").resolved()
    with pytest.raises(ArenaError) as err:
        run_decide(cfg, settings, stderr=False)
    message = str(err.value)
    assert "the generator base could not supply the questions (only 0 evaluation question(s) passed the " \
           "filters)" in message
    assert "only 0 well-formed evaluation question(s) could be drawn" in message and "--qa" in message
