"""Ingestion: files -> loaded text -> chunks -> vectors -> one committed store generation."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from foundation.errors import ArenaError
from foundation.paths import shown_name
from retrieval.chunking import ChunkConfig, chunk_document
from retrieval.loaders import MAX_FILE_BYTES, load_bytes, read_bytes
from retrieval.store import DocumentStore, PendingDocument

EMBED_SLICE = 256  # chunks per progress update while embedding

# progress(files_done, files_total, chunks_done, message)
Progress = Callable[[int, int, int, str], None]
KnownVectors = Callable[[list[str]], dict[str, np.ndarray]]  # text hashes -> vectors found elsewhere


@dataclass
class FileResult:
    source: str
    status: str  # added | replaced | unchanged | duplicate | error
    chunks: int = 0
    message: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    generation: int = 0
    seconds: float = 0.0
    embedded: int = 0  # chunks run through the embedder
    reused: int = 0  # chunks whose identical text already had a vector

    @property
    def errors(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "error"]

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.results if r.status in {"added", "replaced"})

    def to_dict(self) -> dict:
        return {"files": [asdict(r) for r in self.results], "generation": self.generation,
                "seconds": round(self.seconds, 3), "chunks": self.chunks, "embedded": self.embedded,
                "reused": self.reused, "errors": len(self.errors)}


def collect_files(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """Expand folders recursively (hidden entries skipped); source names are relative to the folder given,
    as shown (foundation.paths.shown_name). Two files that would share a source name: the second is refused
    by name, since a document is stored under its name and it would silently replace the first."""
    found, missing = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            rels = ((child, child.relative_to(path)) for child in sorted(path.rglob("*")) if child.is_file())
            found += [(child, rel) for child, rel in rels if not any(part.startswith(".") for part in rel.parts)]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            missing.append(FileResult(str(raw), "error", message=f"{raw}: no such file or folder"))
    files, taken = [], {}
    for path, rel in found:
        parts = [shown_name(part) for part in rel.parts]
        source = "/".join(parts)
        if not all(parts):
            missing.append(FileResult(repr(str(path)), "error", message="the name has no printable characters"))
        elif source in taken:
            both = f"{shown_name(str(taken[source]))} and {shown_name(str(path))}"
            missing.append(FileResult(source, "error", message=(
                f"{both} would both be stored as {source!r}: ingest a folder holding both (names then keep "
                "their subfolder, e.g. a/notes.txt), or rename one")))
        else:
            taken[source] = path
            files.append((path, source))
    return files, missing


def text_hash(text: str) -> str:
    """A chunk text's identity: identical texts share one vector (within a store, or from `known`)."""
    return hashlib.sha1(text.encode()).hexdigest()


def ingest_paths(store: DocumentStore, paths: list[Path], cfg: ChunkConfig | None = None,
                 max_bytes: int = MAX_FILE_BYTES, progress: Progress | None = None,
                 known: KnownVectors | None = None) -> IngestReport:
    """Ingest files and folders; a bad file is reported by name and never stops the others."""
    files, missing = collect_files(paths)
    report = ingest_files(store, files, cfg, max_bytes, progress, known)
    report.results = missing + report.results
    return report


def ingest_files(store: DocumentStore, files: list[tuple[Path, str]], cfg: ChunkConfig | None = None,
                 max_bytes: int = MAX_FILE_BYTES, progress: Progress | None = None,
                 known: KnownVectors | None = None) -> IngestReport:
    """Ingest (path, source name) pairs into the store as one new generation. `known(text hashes)`: vectors
    computed elsewhere by the same embedder (e.g. another index of the same documents), reused like the
    store's own."""
    cfg = cfg or ChunkConfig()
    cfg.resolved()  # bad sizes fail before any work
    start = time.perf_counter()
    report, pending, seen = IngestReport(), [], {}
    tokenizer = store.embedder.tokenizer if cfg.splitter == "tokens" else None
    for n, (path, source) in enumerate(files):
        result, doc = _prepare(store, path, source, cfg, max_bytes, tokenizer, seen)
        report.results.append(result)
        if doc is not None:
            pending.append(doc)
        if progress:
            progress(n + 1, len(files), 0, f"read {source}")
    if pending:
        report.embedded, report.reused = _embed(store, pending, len(files), progress, known)
        report.generation = store.commit(add=pending)
    else:
        report.generation = store.generation
    report.seconds = time.perf_counter() - start
    return report


def _prepare(store, path, source, cfg, max_bytes, tokenizer, seen) -> tuple[FileResult, PendingDocument | None]:
    try:
        data = read_bytes(path, source, max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        old, chunking = store.document_state(source)
        if old == digest and chunking == cfg.key():  # same text, same chunking
            return FileResult(source, "unchanged", message="already ingested, content unchanged"), None
        twin = seen.get(digest) or store.document_by_hash(digest)
        if twin is not None and twin != source:
            return FileResult(source, "duplicate", message=f"same content as {twin}; skipped"), None
        doc = load_bytes(data, source)
        chunks = chunk_document(doc, cfg, tokenizer)
    except ArenaError as exc:
        return FileResult(source, "error", message=str(exc)), None
    except OSError as exc:
        return FileResult(source, "error", message=f"{source}: cannot read ({exc.strerror or exc})"), None
    seen[digest] = source
    hashes = [text_hash(c.text) for c in chunks]
    pending = PendingDocument(source, doc.kind, digest, len(data), cfg.key(), doc.segments, chunks, hashes)
    return FileResult(source, "replaced" if old else "added", len(chunks)), pending


def _embed(store: DocumentStore, pending: list[PendingDocument], n_files: int, progress,
           known: KnownVectors | None = None) -> tuple[int, int]:
    """Embed every new chunk text once, across all files (fuller, length-sorted batches); reuse the rest."""
    hashes = [h for doc in pending for h in doc.text_hashes]
    texts = dict(zip(hashes, (c.text for doc in pending for c in doc.chunks), strict=True))
    vectors = store.cached_vectors(hashes)
    if known:
        vectors = known([h for h in texts if h not in vectors]) | vectors
    todo = [h for h in texts if h not in vectors]
    reused = len(hashes) - len(todo)
    todo.sort(key=lambda h: len(texts[h]))  # similar lengths share a batch, so little padding
    for start in range(0, len(todo), EMBED_SLICE):
        part = todo[start:start + EMBED_SLICE]
        vectors.update(zip(part, store.embedder.encode([texts[h] for h in part]), strict=True))
        if progress:
            progress(n_files, n_files, reused + start + len(part), "embedding")
    for doc in pending:
        doc.vectors = np.stack([vectors[h] for h in doc.text_hashes]) if doc.text_hashes \
            else np.zeros((0, store.embedder.dim), dtype=np.float32)
    return len(todo), reused
