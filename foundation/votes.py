"""Chat votes ("best answer") stored in SQLite; the training side turns them into preference pairs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from foundation.errors import ArenaError
from foundation.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    question TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '',
    answers TEXT NOT NULL,      -- JSON object: variant -> answer text
    winner TEXT NOT NULL,       -- a key of answers
    blind INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class Vote:
    """One "best answer" choice between the variants' answers to one question."""

    id: int
    created: float
    question: str
    context: str
    answers: dict[str, str]
    winner: str
    blind: bool


class VoteStore(SqliteStore):
    """Append-only vote log in one SQLite file (each write is its own transaction)."""

    schema = SCHEMA

    def add(self, question: str, answers: dict[str, str], winner: str, context: str = "",
            blind: bool = False) -> int:
        if not question.strip():
            raise ArenaError("cannot store a vote without a question")
        if winner not in answers:
            raise ArenaError(f"winner {winner!r} is not one of the answered variants {sorted(answers)}")
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO votes (created, question, context, answers, winner, blind) VALUES (?,?,?,?,?,?)",
                (time.time(), question, context, json.dumps(answers), winner, int(blind)))
            return int(cur.lastrowid)

    def all(self) -> list[Vote]:
        with self._connect() as db:
            rows = db.execute("SELECT id, created, question, context, answers, winner, blind FROM votes "
                              "ORDER BY id").fetchall()
        return [Vote(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], bool(r[6])) for r in rows]

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM votes").fetchone()[0])
