"""Generated rows cached by content hash, so a killed or repeated job never generates the same row twice.

Distillation answers and paraphrases are slow model outputs. Each row is stored under the hash of everything
that determines it (prompt, model, generation settings) the moment it is produced, in one SQLite file of the
data folder (`cache/rows.sqlite`); a rerun reads the finished rows and generates only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from foundation.sqlite_store import SqliteStore, rows_in

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY,      -- content_key(...) of the row's inputs
    value TEXT NOT NULL,       -- JSON
    created REAL NOT NULL
)
"""


def content_key(*parts) -> str:
    """SHA-256 of the JSON of `parts` (pass dataclasses as `asdict(...)`: other objects count by their str)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RowCache(SqliteStore):
    """key -> JSON value; one short transaction per row, so a kill loses at most the row being generated."""

    schema = SCHEMA

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> RowCache:
        return cls(Path(data_dir) / "cache" / "rows.sqlite")

    def get_many(self, keys: list[str]) -> dict:
        with self._connect() as db:
            rows = rows_in(db, "SELECT key, value FROM rows WHERE key IN ({marks})", keys)
            return {k: json.loads(v) for k, v in rows}

    def put(self, key: str, value) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO rows (key, value, created) VALUES (?,?,?)",
                       (key, json.dumps(value, ensure_ascii=False), time.time()))

    def fill(self, keys: list[str], generate: Callable[[list[int], Callable[[int, object], None]], None]) -> list:
        """The value of every key, in order: cached ones are read, the others produced by
        `generate(missing_indices, store)`, which must call `store(i, value)` for each index as soon as that
        row is ready (it is written then). Returns values in key order; a row never stored raises KeyError."""
        values = self.get_many(list(dict.fromkeys(keys)))
        missing = [i for i, k in enumerate(keys) if k not in values]

        def store(i: int, value) -> None:
            self.put(keys[i], value)
            values[keys[i]] = value

        if missing:
            generate(missing, store)
        return [values[k] for k in keys]
