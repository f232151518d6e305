"""Comparison runs stored in SQLite (runs.sqlite) with their settings, so past runs can be shown side by side."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from assistant.errors import ArenaError
from assistant.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    label TEXT NOT NULL,
    settings TEXT NOT NULL,     -- JSON: eval set, variants, adapter, metric, generation settings, model
    result TEXT NOT NULL        -- JSON: the full comparison result (same schema as `arena compare --json`)
)
"""


@dataclass(frozen=True)
class Run:
    """One stored comparison run."""

    id: int
    created: float
    label: str
    settings: dict
    result: dict


class RunStore(SqliteStore):
    """Append-only log of comparison runs in one SQLite file."""

    schema = SCHEMA

    def add(self, settings: dict, result: dict, label: str = "") -> int:
        label = label or time.strftime("%Y-%m-%d %H:%M:%S")
        with self._connect() as db:
            cur = db.execute("INSERT INTO runs (created, label, settings, result) VALUES (?,?,?,?)",
                             (time.time(), label, json.dumps(settings, default=str),
                              json.dumps(result, default=str)))
            return int(cur.lastrowid)

    def get(self, run_id: int) -> Run:
        with self._connect() as db:
            row = db.execute("SELECT id, created, label, settings, result FROM runs WHERE id = ?",
                             (int(run_id),)).fetchone()
        if row is None:
            raise ArenaError(f"no comparison run with id {run_id} in {self.path}")
        return Run(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]))

    def list(self, limit: int = 50) -> list[Run]:
        """Newest first."""
        with self._connect() as db:
            rows = db.execute("SELECT id, created, label, settings, result FROM runs ORDER BY id DESC LIMIT ?",
                              (int(limit),)).fetchall()
        return [Run(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4])) for r in rows]
