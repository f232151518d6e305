"""Comparison runs stored in SQLite (runs.sqlite) with their settings, so past runs can be shown side by side.

A run is inserted when it starts (state 'running', with its plan: evaluation items and configs) and every
question's answers for all variants, and its reference NLLs, are stored as they complete; `finish` writes the
result and drops those partial rows in one transaction. A killed comparison is thus an unfinished run that
`arena compare --resume ID` (or the Compare tab's Resume) continues; it is never listed as a finished run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from dataclasses import dataclass

from assistant.compare.result import ComparisonResult
from foundation.errors import ArenaError
from foundation.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    label TEXT NOT NULL,
    settings TEXT NOT NULL,     -- JSON: eval set, variants, adapter, metric, generation settings, model
    result TEXT NOT NULL,       -- JSON: ComparisonResult.to_dict() (assistant/compare/result.py), as --json
    state TEXT NOT NULL DEFAULT 'done',   -- 'running' until finished (killed runs stay 'running')
    plan TEXT NOT NULL DEFAULT '{}'       -- JSON: what a resume needs (items, compare and variant configs)
);
CREATE TABLE IF NOT EXISTS partial_answers (
    run INTEGER NOT NULL, question INTEGER NOT NULL, variant TEXT NOT NULL,
    answer TEXT NOT NULL,       -- JSON of one variant's answer (text, sources, timings)
    PRIMARY KEY (run, question, variant)
);
CREATE TABLE IF NOT EXISTS partial_scores (
    run INTEGER NOT NULL, question INTEGER NOT NULL,
    scores TEXT NOT NULL,       -- JSON: {variant: reference NLL}
    PRIMARY KEY (run, question)
);
"""


@dataclass(frozen=True)
class Run:
    """One stored comparison run."""

    id: int
    created: float
    label: str
    settings: dict
    result: ComparisonResult


class RunStore(SqliteStore):
    """Log of comparison runs in one SQLite file; finished runs are never changed."""

    schema = SCHEMA

    def migrate(self, db) -> None:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        # runs.sqlite from before resumable runs: all of its runs are finished
        for column in ("state TEXT NOT NULL DEFAULT 'done'", "plan TEXT NOT NULL DEFAULT '{}'"):
            if column.split()[0] not in columns:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column}")

    def start(self, plan: dict, label: str = "") -> int:
        """An unfinished run holding its plan; answers and scores are added as they complete."""
        label = label or time.strftime("%Y-%m-%d %H:%M:%S")
        with self._connect() as db:
            cur = db.execute("INSERT INTO runs (created, label, settings, result, state, plan) "
                             "VALUES (?,?,'{}','{}','running',?)", (time.time(), label, json.dumps(plan)))
            return int(cur.lastrowid)

    def save_answers(self, run_id: int, question: int, answers: dict[str, dict]) -> None:
        """All variants' answers to one question, in one transaction."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO partial_answers VALUES (?,?,?,?)",
                           [(run_id, question, v, json.dumps(a, default=str)) for v, a in answers.items()])

    def save_scores(self, run_id: int, question: int, scores: dict) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO partial_scores VALUES (?,?,?)", (run_id, question, json.dumps(scores)))

    def partial(self, run_id: int) -> tuple[dict, dict[int, dict[str, dict]], dict[int, dict]]:
        """(plan, {question: {variant: answer}}, {question: scores}) of an unfinished run."""
        with self._connect() as db:
            row = db.execute("SELECT state, plan FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if row is None or row[0] != "running":
                raise ArenaError(f"no unfinished comparison run with id {run_id} in {self.path}"
                                 + (" (it is finished: open it instead)" if row else ""))
            answers: dict[int, dict[str, dict]] = {}
            for q, v, a in db.execute("SELECT question, variant, answer FROM partial_answers WHERE run = ?",
                                      (int(run_id),)):
                answers.setdefault(q, {})[v] = json.loads(a)
            scores = {q: json.loads(s) for q, s in db.execute(
                "SELECT question, scores FROM partial_scores WHERE run = ?", (int(run_id),))}
        return json.loads(row[1]), answers, scores

    def finish(self, run_id: int, settings: dict, result: ComparisonResult) -> int:
        """Store the result and drop the run's partial rows, in one transaction."""
        with self._connect() as db:
            db.execute("UPDATE runs SET settings = ?, result = ?, state = 'done' WHERE id = ?",
                       (json.dumps(settings, default=str), json.dumps(result.to_dict(), default=str), int(run_id)))
            db.execute("DELETE FROM partial_answers WHERE run = ?", (int(run_id),))
            db.execute("DELETE FROM partial_scores WHERE run = ?", (int(run_id),))
        return int(run_id)

    def unfinished(self) -> list[tuple[int, str, int]]:
        """(id, label, questions answered so far) of every unfinished run, newest first."""
        with self._connect() as db:
            return [tuple(r) for r in db.execute(
                "SELECT r.id, r.label, (SELECT COUNT(DISTINCT question) FROM partial_answers WHERE run = r.id) "
                "FROM runs r WHERE r.state = 'running' ORDER BY r.id DESC")]

    def add(self, settings: dict, result: ComparisonResult, label: str = "") -> int:
        """A finished run in one go: started without a plan (nothing to resume) and finished at once."""
        return self.finish(self.start({}, label), settings, result)

    def get(self, run_id: int) -> Run:
        with self._connect() as db:
            row = db.execute("SELECT id, created, label, settings, result FROM runs WHERE id = ? AND state = 'done'",
                             (int(run_id),)).fetchone()
        if row is None:
            unfinished = [r[0] for r in self.unfinished()]
            raise ArenaError(f"no comparison run with id {run_id} in {self.path}" + (
                f" (it is unfinished: arena compare --resume {run_id})" if int(run_id) in unfinished else ""))
        return self._run(row)

    def list(self, limit: int = 50) -> list[Run]:
        """Newest first; a run this version cannot read is left out, with a note naming it (get() says why)."""
        with self._connect() as db:
            rows = db.execute("SELECT id, created, label, settings, result FROM runs WHERE state = 'done' "
                              "ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        runs = []
        for row in rows:
            try:
                runs.append(self._run(row))
            except ArenaError as exc:
                print(f"note: {exc}", file=sys.stderr, flush=True)
        return runs

    def _run(self, row) -> Run:
        origin = f"comparison run {row[0]} in {self.path}"
        return Run(row[0], row[1], row[2], json.loads(row[3]), ComparisonResult.from_dict(json.loads(row[4]), origin))
