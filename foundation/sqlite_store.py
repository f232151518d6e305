"""Base for the small append-only SQLite logs (votes, comparison runs), and a query over many keys."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteStore:
    """One SQLite file with its schema; each operation is one short transaction on a fresh connection."""

    schema: str = ""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(self.schema)  # one or more CREATE ... IF NOT EXISTS statements
            self.migrate(db)

    def migrate(self, db: sqlite3.Connection) -> None:
        """Bring a file written by an older version up to this schema (nothing by default)."""

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A fresh connection per call because Gradio handlers run on worker threads; commit on success,
        # roll back on error, and always close so no file handle outlives the call.
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()


def rows_in(db: sqlite3.Connection, sql: str, keys: list) -> Iterator[tuple]:
    """The rows of `sql` for all `keys`, whose IN list is its `{marks}`; 500 keys per query, well under
    SQLite's limit on bound parameters (999 in older builds)."""
    for start in range(0, len(keys), 500):
        batch = keys[start:start + 500]
        yield from db.execute(sql.format(marks=",".join("?" * len(batch))), batch)
