"""Evaluation sets: load question/answer pairs from JSONL/CSV, or draw them from the ingested documents."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from foundation.errors import ArenaError
from foundation.leakage import split_by_section
from foundation.metrics import normalize
from foundation.records import read_records
from training.builders import qa_from_sections


@dataclass
class EvalItem:
    """One held-out question with its reference answer (and where it came from, when known)."""

    question: str
    answer: str
    source: str = ""
    section: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _item(row: dict, where: str) -> EvalItem:
    if not isinstance(row, dict):
        raise ArenaError(f"{where}: expected an object with question and answer, got {type(row).__name__}")
    q, a = row.get("question"), row.get("answer")
    for key, value in (("question", q), ("answer", a)):
        if not isinstance(value, str) or not value.strip():
            raise ArenaError(f"{where}: missing or empty {key!r} (columns: question, answer, optional source)")
    return EvalItem(q.strip(), a.strip(), str(row.get("source") or "").strip())


def load_eval_set(path: Path) -> list[EvalItem]:
    """Read a .jsonl, .json or .csv (header row) file of question, answer[, source]."""
    items = [_item(row, where) for where, row in read_records(path, "evaluation file")]
    if not items:
        raise ArenaError(f"evaluation file {Path(path).name} has no question/answer rows")
    return items


def draw_eval_set(sections, exclude_questions: list[str] = (), eval_fraction: float = 0.3,
                  seed: int = 0, limit: int = 50) -> tuple[list[EvalItem], list[EvalItem]]:
    """Draw QA pairs per document section (the training QA drawing) and split them by section.

    Sections that produced any question in ``exclude_questions`` (an adapter's training data) never go to
    the evaluation side. Returns (eval items, training-side items)."""
    excluded = {normalize(q) for q in exclude_questions}
    pairs, used_for_training = [], set()
    for sec in sections:
        for ex in qa_from_sections([sec]):
            pair = {"question": ex.question(), "answer": ex.messages[-1]["content"],
                    "source": sec.source, "section": sec.title}
            pairs.append(pair)
            if normalize(pair["question"]) in excluded:
                used_for_training.add((sec.source, sec.title))
    if not pairs:
        raise ArenaError("the ingested documents gave no question/answer pairs (question-style headings or "
                         "definition sentences); upload an evaluation file instead")
    fresh = [p for p in pairs if (p["source"], p["section"]) not in used_for_training]
    held = [p for p in pairs if (p["source"], p["section"]) in used_for_training]
    train, evals = split_by_section(fresh, eval_fraction=eval_fraction, seed=seed)
    if not evals:
        raise ArenaError(f"cannot hold out a section: {len(fresh)} pairs from sections not used for training "
                         "span fewer than two sections")
    return [EvalItem(**p) for p in evals[:limit]], [EvalItem(**p) for p in train + held]
