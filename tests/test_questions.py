"""Questions from documents without Q/A pairs: the heading/definition heuristic (fallback) drops fragments and
says so; the question generator's filters each drop a crafted bad item and keep a good one; decide refuses a
verdict on too few well-formed questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.decide.config import DecideConfig
from assistant.decide.report import questions_lines
from assistant.decide.runner import plan_for, run_decide
from foundation.errors import ArenaError
from foundation.settings import Settings
from training import builders
from training.question_form import malformed_reason, order_aware_similarity, standalone_reason

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


@pytest.mark.parametrize("question", ISSUE_FRAGMENTS + ["Install?", "The server restarts after an update"])
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


def test_order_aware_similarity_tells_swapped_arguments_from_rewordings():
    assert order_aware_similarity("How do I convert a list to a tuple?", "How do I convert a tuple to a list?") == 0
    assert order_aware_similarity("How can I install the package?", "How do I install the package?") == 1


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


def test_report_says_the_heuristic_drew_the_questions():
    lines = questions_lines({"questions_by": "heuristic", "malformed": {"fragment": 5, "vague": 1}})
    assert "drawn by a heuristic" in lines[0] and "6 dropped as malformed (5 fragment, 1 vague)" in lines[0]
    assert questions_lines({"origin": "--eval file"}) == []
