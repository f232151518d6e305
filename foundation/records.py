"""The one reader of record files (.jsonl, .json, .csv) and of question lists; errors name the file and line.

Training data, evaluation sets, question lists (ask, search, distillation) and JSONL documents all come
through here, so every format is read the same way and every bad row is reported the same way.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from foundation.errors import ArenaError

RECORD_SUFFIXES = (".jsonl", ".json", ".csv")


def jsonl_rows(text: str, name: str, error: type[ArenaError] = ArenaError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; `error` (an ArenaError) for bad JSON or a non-object."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{name} line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise error(f"{name} line {n}: expected a JSON object")
        yield n, row


def read_jsonl(path: Path | str) -> list[dict]:
    """The objects of a JSON-lines file the program wrote itself (a stage's rows, a split, a probe set)."""
    path = Path(path)
    return [row for _, row in jsonl_rows(path.read_text(encoding="utf-8"), str(path))]


def write_jsonl(path: Path | str, rows: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def read_records(path: Path | str, what: str) -> list[tuple[str, dict]]:
    """(where, row) for each record of a .jsonl, .json (a list, or {"data": [...]}) or .csv (header row) file.

    `what` names the file's role in errors ("training data file", "evaluation file"); `where` is
    "<file> line N" for the row's own messages. CSV keys are stripped and empty cells dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"{what} {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in RECORD_SUFFIXES:
        raise ArenaError(f"{what} {path.name}: unsupported extension {suffix or '(none)'!r} "
                         f"(use {', '.join(RECORD_SUFFIXES)})")
    text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV often starts with a BOM
    if suffix == ".jsonl":
        return [(f"{path.name} line {n}", row) for n, row in jsonl_rows(text, path.name)]
    if suffix == ".json":
        return _json_records(text, path.name)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    out = []
    for row in reader:
        clean = {k.strip(): v for k, v in row.items() if k and v not in (None, "")}
        if clean:
            out.append((f"{path.name} line {reader.line_num}", clean))
    return out


def _json_records(text: str, name: str) -> list[tuple[str, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArenaError(f"{name} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        data = data.get("data") if isinstance(data.get("data"), list) else [data]
    if not isinstance(data, list):
        raise ArenaError(f"{name}: expected a JSON list of rows")
    lines = _item_lines(text, len(data))
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ArenaError(f"{name} line {lines[i]} (item {i}): expected a JSON object")
        out.append((f"{name} line {lines[i]} (item {i})", row))
    return out


def _item_lines(text: str, count: int) -> list[int]:
    """Best-effort line number where each top-level list item starts (depth-1 '{' positions)."""
    lines, depth, line, in_str, esc = [], 0, 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:  # skip string contents, honouring backslash escapes
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            if depth == 1:
                lines.append(line)
            depth += 1
        elif ch in "]}":
            depth -= 1
    return lines + [0] * (count - len(lines))


def read_questions(path: Path | str, from_row: Callable[[dict, str], str] | None = None) -> list[str]:
    """Questions: {"question": ...} records (.jsonl/.json/.csv), else one question per line of text.

    `from_row(row, where)` reads a question from a record without a "question" field (training rows: their
    user turn); without it such a record is an error naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"questions file {path} does not exist")
    if path.suffix.lower() not in RECORD_SUFFIXES:
        questions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        questions = []
        for where, row in read_records(path, "questions file"):
            asked = row.get("question")
            if isinstance(asked, str) and asked.strip():
                questions.append(asked.strip())
            elif from_row is not None:
                questions.append(from_row(row, where).strip())
            else:
                raise ArenaError(f'{where}: expected {{"question": "..."}} with a non-empty question')
    questions = [q for q in questions if q]
    if not questions:
        raise ArenaError(f"{path} holds no questions")
    return questions
