"""`arena ingest` and `arena search` command implementations (registered in assistant/cli/main.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.cli.output import emit
from foundation import progress_line
from foundation.errors import ArenaError
from foundation.records import read_questions
from foundation.settings import Settings
from retrieval.chunking import SPLITTERS, ChunkConfig
from retrieval.ingest import ingest_paths
from retrieval.loaders import MAX_FILE_BYTES
from retrieval.store import MODES, DocumentStore


def add_ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="files or folders (folders recurse)")
    p.add_argument("--splitter", choices=SPLITTERS, default="recursive",
                   help="recursive (default), headers (section-aware, title kept) or tokens; a file already "
                        "ingested with another splitter, size or overlap is re-chunked")
    p.add_argument("--chunk-size", dest="chunk_size", type=int, default=None,
                   help="characters (tokens for --splitter tokens); default 800 (200 tokens)")
    p.add_argument("--chunk-overlap", dest="chunk_overlap", type=int, default=None,
                   help="characters (tokens) shared by neighbouring chunks; default 100 (30 tokens)")
    p.add_argument("--max-mb", dest="max_mb", type=float, default=MAX_FILE_BYTES / 1e6,
                   help="skip files larger than this (default 50)")
    p.add_argument("--index-type", dest="index_type", choices=("auto", "flat", "hnsw"), default="auto",
                   help="FAISS index: flat (exact), hnsw (approximate, large collections), auto = hnsw from 20k")


def add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", nargs="?", help="the question to search for")
    p.add_argument("--queries", help="JSONL file with one {\"question\": ...} per line; prints one JSON list per line")
    p.add_argument("--k", type=int, default=5, help="chunks to return (default 5)")
    p.add_argument("--mode", choices=MODES, default="hybrid", help="dense | bm25 | hybrid (default)")


def _open_store(settings: Settings, need_embedder: bool, index_type: str = "auto"):
    # deferred: these pull torch
    from foundation.models import resolve_device
    from retrieval.embedding import Embedder

    # Keyword-only search never touches vectors, so it skips loading the embedding model.
    embedder = Embedder.from_settings(settings, str(resolve_device(settings.device))) if need_embedder else None
    return DocumentStore.open(settings.data_dir, embedder, index_type=index_type)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest files/folders; exit 1 when some files failed (each is named), 0 when all went in."""
    cfg = ChunkConfig(args.splitter, args.chunk_size, args.chunk_overlap)
    cfg.resolved()
    store = _open_store(settings, need_embedder=True, index_type=args.index_type)
    show = not args.json and sys.stderr.isatty()
    line = None

    def progress(done, total, chunks, message):
        nonlocal line
        if show:
            line = line or progress_line.bar(total, "ingest", unit="file")
            progress_line.advance(line, done, f"{chunks} chunks embedded · {message[:40]}")

    report = ingest_paths(store, [Path(p) for p in args.paths], cfg, int(args.max_mb * 1e6), progress)
    if line is not None:
        line.close()
    lines = [f"{r.status:9} {r.source}" + (f" ({r.chunks} chunks)" if r.chunks else "")
             + (f": {r.message}" if r.message and r.status != "error" else "")
             + (f"  error: {r.message}" if r.status == "error" else "") for r in report.results]
    lines.append(f"{report.chunks} chunks added ({report.embedded} embedded, {report.reused} reused) in "
                 f"{report.seconds:.1f} s; index generation {report.generation}; {len(report.errors)} errors")
    emit(args, report.to_dict(), "\n".join(lines))
    return 1 if report.errors else 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    if (args.query is None) == (args.queries is None):
        raise ArenaError("give either a QUERY or --queries FILE.jsonl")
    if args.k < 1:
        raise ArenaError(f"--k must be at least 1, got {args.k}")
    queries = read_questions(args.queries) if args.queries else [args.query]
    store = _open_store(settings, need_embedder=args.mode != "bm25")
    if store.is_empty():
        print("warning: no documents ingested yet (arena ingest PATH...)", file=sys.stderr)
    results = store.search_many(queries, k=args.k, mode=args.mode)
    if args.queries:
        for hits in results:  # one JSON list per line, in input order
            print(json.dumps([h.to_dict() for h in hits]))
        return 0
    hits = results[0]
    text = "\n".join(f"{i}. [{h.score:.4f}] {h.citation} (chunk {h.chunk_id})\n   {_short(h.text)}"
                     for i, h in enumerate(hits, start=1)) or "no results"
    emit(args, [h.to_dict() for h in hits], text)
    return 0


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
