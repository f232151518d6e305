"""A consistent copy of the document index (SQLite chunks + embeddings, FAISS, BM25) into another folder.

The store commits a new generation in one SQLite transaction and then deletes the previous generation's
index files, so a plain file copy taken while someone ingests could pair the database of one generation with
the FAISS/BM25 files of another. SQLite's online backup gives one consistent database; the index files of the
generation it records are copied next; if a newer commit removed them meanwhile, the copy is taken again.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from foundation.errors import ArenaError
from retrieval.store import DB_FILE, has_index

ATTEMPTS = 5


def snapshot_index(index_dir: Path, dest: Path) -> int:
    """Copy the store under `index_dir` into `dest` (a new folder); returns the generation copied."""
    index_dir, dest = Path(index_dir), Path(dest)
    if not has_index(index_dir):
        raise ArenaError(f"no document index in {index_dir}: ingest documents first (arena ingest ...)")
    for _ in range(ATTEMPTS):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        generation = _backup(index_dir / DB_FILE, dest / DB_FILE)
        try:
            if generation:
                shutil.copy2(index_dir / f"faiss-{generation}.index", dest)
                shutil.copytree(index_dir / f"bm25-{generation}", dest / f"bm25-{generation}")
            return generation
        except FileNotFoundError:
            continue  # a newer generation was committed between the backup and the copy
    raise ArenaError(f"the index in {index_dir} kept changing during {ATTEMPTS} copies; stop ingesting and retry")


def _backup(source: Path, target: Path) -> int:
    with closing(sqlite3.connect(source, timeout=60)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        row = dst.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
    return int(row[0]) if row else 0
