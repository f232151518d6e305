"""Questions from document sections: written by a generator (training/questions.py), or drawn by the
heading/definition heuristic (training/builders.py) when none is given or it cannot supply them. The one path
`arena decide --generator` and `arena train --from-documents qa --generator` share: the same sampling, filters,
row cache, fallback rule and report lines.

A generator is given as a SPEC: `base`, a local Hugging Face id or folder, or `openai:URL:MODEL`; the caller
(the runtime, which owns the models) turns it into generate(list of messages, GenSettings) -> texts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from foundation.errors import ArenaError
from foundation.generation import parse_server_model
from training.builders import draw_from_sections
from training.data import Example, chat
from training.questions import (
    FilterCounts,
    GeneratedQuestion,
    QuestionSettings,
    Task,
    ask,
    chunks_of,
    filter_replies,
    sample_tasks,
)

QUESTIONS = 60  # questions a generator is asked for by default (decide's and train's --questions)
MAX_QUESTIONS = 2000


def check_generator(spec: str) -> None:
    """ArenaError naming a malformed --generator SPEC (a server spec without a URL path)."""
    if spec.startswith("openai:") and not parse_server_model(spec):
        raise ArenaError(f"--generator openai:URL:MODEL needs a URL with a path, e.g. "
                         f"openai:http://127.0.0.1:8080/v1:qwen2.5-7b-instruct; got {spec!r}")


def check_count(n: int) -> None:
    if not 1 <= n <= MAX_QUESTIONS:
        raise ArenaError(f"--questions must be between 1 and {MAX_QUESTIONS}, got {n}")


@dataclass
class Written:
    """What the generator was asked (tasks), what passed the filters (kept), and the counts per filter."""

    tasks: list[Task]
    kept: list[GeneratedQuestion]
    counts: FilterCounts
    info: dict = field(default_factory=dict)


def write_questions(sides: list[tuple[list, int]], qs: QuestionSettings, generate: Callable, embed: Callable,
                    cache, progress: Callable[[int, int], None] | None = None) -> Written:
    """For each (sections, n): n tasks sampled from those sections' chunks (a side never mixes with another:
    decide passes held-out and training sections apart), asked through `cache` (a RowCache), then filtered
    together, so a near-duplicate across sides is dropped too. embed(texts) -> vectors."""
    tasks = [t for sections, n in sides for t in sample_tasks(chunks_of(sections, qs.max_chunk_chars), n, qs)]
    replies = ask(tasks, qs, generate, cache, progress=progress)
    kept, counts = filter_replies(tasks, replies, embed)
    # the report's facts on a generator run: asked, kept, dropped per filter (with examples), kinds kept
    return Written(tasks, kept, counts, {
        "spec": qs.model, "asked": counts.asked, "kept": counts.kept, "dropped": counts.dropped(),
        "dropped_examples": counts.examples, "kinds": dict(Counter(q.kind for q in kept)),
        "two_chunk_asked": sum(t.kind == "two-chunk" for t in tasks)})


T = TypeVar("T")


def generated_or_fallback(spec: str, write: Callable[[], T], shortfall: Callable[[T], str]) -> tuple[T | None, dict]:
    """(what write() returned, its report facts `.info`), or (None, facts with "fallback": why) when the
    generator failed (an ArenaError: server unreachable, model not loadable) or shortfall(result) names why its
    questions cannot serve: the caller's heuristic then draws the questions, and the report says why."""
    try:
        got = write()
    except ArenaError as exc:
        return None, {"spec": spec, "fallback": str(exc)}
    why = shortfall(got)
    if why:
        got.info["fallback"] = why
        return None, got.info
    return got, got.info


@dataclass
class DocumentPairs:
    """Training pairs from documents and how they were made: {"questions_by": "generator" | "heuristic",
    "generator": the generator's facts (when one was given), "malformed": the heuristic's drops by reason}."""

    rows: list[Example]
    info: dict


def document_pairs(sections, spec: str = "", n: int = QUESTIONS, generate: Callable | None = None,
                   embed: Callable | None = None, cache=None, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> DocumentPairs:
    """Question/answer training rows from `sections`: n questions written by the generator SPEC (generate,
    embed and cache as write_questions takes them), or, without a SPEC or when none passes the filters, the
    heading/definition heuristic's pairs. The settings (and so the cached replies) are decide's for the seed."""
    sections = list(sections)
    info: dict = {}
    if spec:
        qs = QuestionSettings(model=spec, seed=seed)
        got, gen_info = generated_or_fallback(
            spec, lambda: write_questions([(sections, n)], qs, generate, embed, cache, progress),
            lambda w: "" if w.kept else "no generated question passed the filters")
        info["generator"] = gen_info
        if got is not None:
            rows = [chat(q.question, q.answer, origin=f"{q.source} § {q.section}") for q in got.kept]
            return DocumentPairs(rows, {**info, "questions_by": "generator"})
    drawn = draw_from_sections(sections)
    return DocumentPairs(drawn.kept, {**info, "questions_by": "heuristic", "malformed": drawn.malformed})


def describe(info: dict) -> list[str]:
    """How document questions were made, in words (decide's report, `arena train`'s log): the generator's
    filter counts, its difficulty statistic, why the heuristic stood in, and the heuristic said plainly."""
    lines = []
    gen = info.get("generator") or {}
    if gen.get("asked"):
        lines.append(f"questions written by the generator {gen['spec']}: {gen['kept']} kept of {gen['asked']} "
                     "asked; dropped: " + ", ".join(f"{n} {why}" for why, n in gen["dropped"].items()))
    if gen.get("round_trip") is not None:
        lines.append(f"difficulty: {gen['round_trip']:.0%} of the generated evaluation questions retrieve their own "
                     "chunk in the top k (reported, not filtered on: such a filter would favour RAG)")
    if gen.get("fallback"):
        lines.append(f"the generator {gen['spec']} could not supply the questions ({gen['fallback']}); the "
                     "heuristic drew them instead")
    if info.get("questions_by") == "heuristic":
        malformed = info.get("malformed") or {}
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(malformed.items())) or "none"
        lines.append(f"questions drawn by a heuristic (question headings and 'X is a ...' sentences), not written "
                     f"as a user would ask them: {sum(malformed.values())} dropped as malformed ({detail}). Such "
                     "questions partly test (and teach) copying sentence fragments; --generator writes real questions")
    return lines
