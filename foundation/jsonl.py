"""JSON-lines reading shared by the CLI commands: errors name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from foundation.errors import ArenaError


def jsonl_rows(text: str, name: str, error: type[ArenaError] = ArenaError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `error` (an ArenaError) for bad JSON or a non-object."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{name} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{name} line {n}: expected a JSON object")
        yield n, row


def read_questions(path: str | Path) -> list[str]:
    """Questions from a JSONL file with one {"question": ...} per line."""
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"questions file {path} does not exist")
    questions = []
    for n, row in jsonl_rows(path.read_text(encoding="utf-8"), str(path)):
        if not str(row.get("question", "")).strip():
            raise ArenaError(f'{path} line {n}: expected {{"question": "..."}} with a non-empty question')
        questions.append(str(row["question"]))
    if not questions:
        raise ArenaError(f"{path} holds no questions")
    return questions
