"""The document store: SQLite for documents and chunks, FAISS + BM25 for search, one generation number."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foundation.errors import ArenaError
from foundation.sqlite_store import rows_in
from retrieval.indexes import SearchIndex, reciprocal_rank_fusion, stale_files

MODES = ("dense", "bm25", "hybrid")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS documents(id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT UNIQUE NOT NULL,
    kind TEXT, content_hash TEXT, size INTEGER, added REAL, n_chunks INTEGER, splitter TEXT);
CREATE TABLE IF NOT EXISTS segments(doc_id INTEGER NOT NULL, position INTEGER, title TEXT, page INTEGER,
    text TEXT);
CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id INTEGER NOT NULL,
    position INTEGER, text TEXT, section TEXT, page INTEGER, text_hash TEXT, vector BLOB);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(text_hash);
CREATE INDEX IF NOT EXISTS segments_doc ON segments(doc_id);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(content_hash);
"""


@dataclass
class Hit:
    """One retrieved chunk."""

    text: str
    source: str
    score: float
    chunk_id: int
    citation: str
    section: str = ""
    page: int | None = None

    def to_dict(self) -> dict:
        return {"text": self.text, "source": self.source, "score": round(self.score, 6),
                "chunk_id": self.chunk_id, "citation": self.citation}


@dataclass
class Section:
    """Document text grouped by section or page (for QA drawing and continued pre-training)."""

    source: str
    title: str
    text: str
    doc_id: int


@dataclass
class DocumentInfo:
    id: int
    source: str
    kind: str
    chunks: int
    size: int
    added: float


@dataclass
class PendingDocument:
    """A loaded, chunked and embedded document waiting to be committed."""

    source: str
    kind: str
    content_hash: str
    size: int
    splitter: str  # ChunkConfig.key(): splitter, size and overlap (the documents.splitter column)
    segments: list = field(default_factory=list)  # retrieval.loaders.Segment
    chunks: list = field(default_factory=list)  # retrieval.chunking.Chunk
    text_hashes: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None


def citation(source: str, section: str = "", page: int | None = None) -> str:
    """Human citation: "manual.pdf p.3", "faq.rst § How do I reset?" or just "notes.txt"."""
    text = source + (f" p.{page}" if page else "")
    return text + (f" § {section}" if section else "")


DB_FILE = "store.sqlite"  # documents, chunks and vectors; the FAISS/BM25 files sit beside it


def app_index(data_dir: Path) -> Path:
    """The data folder's own index (the Documents tab's, chat's); a decision keeps another in its workspace."""
    return Path(data_dir) / "index"


def has_index(folder: Path) -> bool:
    return (Path(folder) / DB_FILE).is_file()


class DocumentStore:
    """Documents, chunks and their indexes under one folder; every change commits a new generation."""

    def __init__(self, folder: Path, embedder, index_type: str = "auto"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.index_type = index_type
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.folder / DB_FILE, check_same_thread=False, timeout=60,
                                   isolation_level=None)  # explicit BEGIN/COMMIT below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._index: SearchIndex | None = None
        self._loaded_generation = -1
        self._check_embedder()

    @classmethod
    def open(cls, data_dir: Path, embedder, index_type: str = "auto") -> DocumentStore:
        """Open (or create) the store under ``data_dir/index``."""
        return cls(app_index(data_dir), embedder, index_type)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----- reading -------------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        with self._lock:
            return int(self._meta("generation") or 0)

    def is_empty(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None

    def documents(self) -> list[DocumentInfo]:
        return list_documents(self.folder)

    def document_by_hash(self, content_hash: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT source FROM documents WHERE content_hash=?", (content_hash,)).fetchone()
        return row[0] if row else None

    def document_state(self, source: str) -> tuple[str | None, str | None]:
        """(content hash, chunking as ChunkConfig.key()) of a stored `source`, (None, None) if it is not stored."""
        with self._lock:
            row = self._db.execute("SELECT content_hash, splitter FROM documents WHERE source=?",
                                   (source,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def cached_vectors(self, text_hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already computed for identical chunk texts (same embedder), keyed by text hash."""
        with self._lock:
            rows = rows_in(self._db, "SELECT text_hash, vector FROM chunks WHERE text_hash IN ({marks})",
                           sorted(set(text_hashes)))
            return {h: np.frombuffer(blob, dtype=np.float32) for h, blob in rows}

    def sections(self) -> list[Section]:
        with self._lock:
            rows = self._db.execute(
                "SELECT d.source, s.title, s.page, s.text, d.id FROM segments s JOIN documents d "
                "ON d.id = s.doc_id ORDER BY d.id, s.position").fetchall()
        return [Section(src, title or (f"p.{page}" if page else ""), text, doc_id)
                for src, title, page, text, doc_id in rows]

    def chunk_texts(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT text FROM chunks ORDER BY id")]

    # ----- search --------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        """Top-k chunks for one query; mode is dense, bm25 or hybrid (reciprocal-rank fusion of both)."""
        return self.search_many([query], k=k, mode=mode)[0]

    def search_many(self, queries: list[str], k: int = 5, mode: str = "hybrid") -> list[list[Hit]]:
        """Search several queries with one embedding batch and one index load."""
        if mode not in MODES:
            raise ArenaError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if k < 1:
            raise ArenaError(f"k must be at least 1, got {k}")
        index = self._current_index()
        if index is None or not queries:
            return [[] for _ in queries]
        qvecs = self.embed_queries(queries) if mode != "bm25" else None
        return self.search_encoded(index, queries, qvecs, k, mode)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        if self.embedder is None:
            raise ArenaError("dense and hybrid search need an embedder; use mode 'bm25' or load one")
        return self.embedder.encode(queries)

    def search_encoded(self, index: SearchIndex, queries: list[str], qvecs, k: int, mode: str):
        """Search with query vectors already computed (the benchmark times this part on its own)."""
        pool = k if mode != "hybrid" else max(4 * k, 20)  # fusion needs candidates beyond the top k
        dense = index.search_dense(qvecs, pool) if mode != "bm25" else None
        keyword = index.search_keyword(queries, pool) if mode != "dense" else None
        if mode != "hybrid":
            return self._hits([row[:k] for row in (dense if mode == "dense" else keyword)])
        ranked = []
        for by_vector, by_word in zip(dense, keyword, strict=True):
            specific = [cid for cid, score in by_word if score >= index.specific_score]
            ranked.append(reciprocal_rank_fusion([[cid for cid, _ in by_vector], specific])[:k])
        return self._hits(ranked)

    def _hits(self, ranked: list[list[tuple[int, float]]]) -> list[list[Hit]]:
        wanted = sorted({cid for row in ranked for cid, _ in row})
        with self._lock:
            rows = {row[0]: row for row in rows_in(
                self._db, "SELECT c.id, c.text, d.source, c.section, c.page FROM chunks c JOIN documents d "
                "ON d.id = c.doc_id WHERE c.id IN ({marks})", wanted)}
        return [[Hit(rows[cid][1], rows[cid][2], score, cid, citation(*rows[cid][2:5]), rows[cid][3] or "",
                     rows[cid][4]) for cid, score in row_ids if cid in rows] for row_ids in ranked]

    def _current_index(self) -> SearchIndex | None:
        """The committed generation's index, reloaded when another writer (CLI, UI) committed a newer one."""
        with self._lock:
            for _ in range(3):
                generation = self.generation
                if generation == self._loaded_generation:
                    return self._index
                try:
                    index = None if self.is_empty() else SearchIndex.load(self.folder, generation)
                except (OSError, RuntimeError):
                    time.sleep(0.05)  # files of that generation were just replaced by a newer commit
                    continue
                self._index, self._loaded_generation = index, generation
                return index
            raise ArenaError(f"index files for generation {self.generation} in {self.folder} are missing; "
                             "re-run `arena ingest` to rebuild them")

    # ----- writing -------------------------------------------------------------------------------------
    def commit(self, add: list[PendingDocument] = (), delete: list[str] = (),
               progress: Callable[[str], None] | None = None) -> int:
        """Apply adds/replacements and deletions in one transaction and one new index generation."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for source in [*delete, *(d.source for d in add)]:
                    self._delete_rows(source)
                for doc in add:
                    self._insert(doc)
                generation = self.generation + 1
                if progress:
                    progress("building indexes")
                index = self._build_and_save(generation)
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
                self._set_embedder_meta()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._index, self._loaded_generation = index, generation
            self._remove_stale(generation)
            return generation

    def delete(self, source: str) -> bool:
        """Remove a document and its chunks from SQLite, FAISS and BM25; False if it was not there."""
        if self.document_state(source)[0] is None:
            return False
        self.commit(delete=[source])
        return True

    def _delete_rows(self, source: str) -> None:
        row = self._db.execute("SELECT id FROM documents WHERE source=?", (source,)).fetchone()
        if row:
            for table, column in (("chunks", "doc_id"), ("segments", "doc_id"), ("documents", "id")):
                self._db.execute(f"DELETE FROM {table} WHERE {column}=?", (row[0],))

    def _insert(self, doc: PendingDocument) -> None:
        cur = self._db.execute(
            "INSERT INTO documents(source, kind, content_hash, size, added, n_chunks, splitter) "
            "VALUES (?,?,?,?,?,?,?)",
            (doc.source, doc.kind, doc.content_hash, doc.size, time.time(), len(doc.chunks), doc.splitter))
        doc_id = cur.lastrowid
        self._db.executemany(
            "INSERT INTO segments(doc_id, position, title, page, text) VALUES (?,?,?,?,?)",
            [(doc_id, i, s.title, s.page, s.text) for i, s in enumerate(doc.segments)])
        vectors = np.ascontiguousarray(doc.vectors, dtype=np.float32)
        self._db.executemany(
            "INSERT INTO chunks(doc_id, position, text, section, page, text_hash, vector) VALUES (?,?,?,?,?,?,?)",
            [(doc_id, c.position, c.text, c.section, c.page, h, vectors[i].tobytes())
             for i, (c, h) in enumerate(zip(doc.chunks, doc.text_hashes, strict=True))])

    def _build_and_save(self, generation: int) -> SearchIndex | None:
        rows = self._db.execute("SELECT id, text, vector FROM chunks ORDER BY id").fetchall()
        if not rows:
            return None
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        index = SearchIndex.build(ids, vectors, [r[1] for r in rows], self.index_type)
        index.save(self.folder, generation)
        return index

    def _remove_stale(self, keep: int) -> None:
        for path in stale_files(self.folder, keep):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # ----- embedder bookkeeping ------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_embedder_meta(self) -> None:
        if self.embedder is not None:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (self.embedder.embedder_id,))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(self.embedder.dim),))

    def _check_embedder(self) -> None:
        """Vectors from another embedder are meaningless to this one: refuse instead of returning noise."""
        built_with = self._meta("embedder")
        if self.embedder is None or built_with is None or self.is_empty():
            return
        if built_with != self.embedder.embedder_id:
            raise ArenaError(
                f"the index in {self.folder} was built with embedder {built_with!r} but {self.embedder.embedder_id!r} "
                f"is configured; pass --embedder {built_with} or delete {self.folder} and ingest again")


def list_documents(index_dir: Path) -> list[DocumentInfo]:
    """The document table of ``index_dir`` (data_dir/index) without loading the embedder or indexes."""
    if not has_index(index_dir):
        return []
    path = Path(index_dir) / DB_FILE
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        try:
            rows = db.execute("SELECT id, source, kind, n_chunks, size, added FROM documents "
                              "ORDER BY added DESC, id DESC").fetchall()
        except sqlite3.OperationalError:  # created but schema not written yet
            rows = []
    return [DocumentInfo(*row) for row in rows]
