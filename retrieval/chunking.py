"""Chunking with langchain-text-splitters: recursive (default), header-aware, or token-sized."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from itertools import accumulate

from foundation.errors import ArenaError
from retrieval.loaders import LoadedDocument, Segment

SPLITTERS = ("recursive", "headers", "tokens")
# Characters for recursive/headers, embedder tokens for tokens. 800 characters is ~180 MiniLM word pieces,
# inside its 256-token window so nothing is silently truncated, and about one FAQ answer or manual step;
# the overlap (about one sentence) keeps a fact that straddles a boundary whole in at least one chunk.
DEFAULT_SIZES = {"recursive": (800, 100), "headers": (800, 100), "tokens": (200, 30)}
# A chunk is one passage a RAG prompt quotes, k of them at a time: past this it is a whole document, and a
# few of them overflow any context window the bundled models have.
MAX_SIZE = 10_000
# Pages and records are citation units: a chunk never spans two of them, whatever the splitter.
UNIT_KINDS = {"pdf", "csv", "jsonl"}


@dataclass(frozen=True)
class ChunkConfig:
    splitter: str = "recursive"
    size: int | None = None  # None: the splitter's default from DEFAULT_SIZES
    overlap: int | None = None

    def resolved(self) -> tuple[int, int]:
        """(size, overlap) after defaults; raise ArenaError for impossible values."""
        if self.splitter not in SPLITTERS:
            raise ArenaError(f"unknown splitter {self.splitter!r}; choose one of {', '.join(SPLITTERS)}")
        size = self.size if self.size is not None else DEFAULT_SIZES[self.splitter][0]
        overlap = self.overlap if self.overlap is not None else min(DEFAULT_SIZES[self.splitter][1], size // 4)
        if size < 20:
            raise ArenaError(f"chunk size must be at least 20, got {size}")
        if size > MAX_SIZE:
            raise ArenaError(f"chunk size must be at most {MAX_SIZE} (a chunk is one passage quoted in a prompt), "
                             f"got {size}")
        if not 0 <= overlap < size:
            raise ArenaError(f"chunk overlap must be between 0 and the chunk size ({size}), got {overlap}")
        return size, overlap

    def key(self) -> str:
        """What the stored chunks depend on: "recursive 800/100". Stored per document, so re-ingesting the same
        text with another splitter, size or overlap re-chunks it instead of reporting "unchanged"."""
        size, overlap = self.resolved()
        return f"{self.splitter} {size}/{overlap}"


@dataclass
class Chunk:
    text: str
    position: int
    section: str = ""
    page: int | None = None


def chunk_document(doc: LoadedDocument, cfg: ChunkConfig, tokenizer=None) -> list[Chunk]:
    """Split a loaded document into chunks that remember their section title and page."""
    size, overlap = cfg.resolved()
    tok = tokenizer if cfg.splitter == "tokens" else None
    if cfg.splitter == "tokens" and tokenizer is None:
        raise ArenaError("the tokens splitter needs the embedder's tokenizer")
    if cfg.splitter == "headers" or doc.kind in UNIT_KINDS:
        # A record's title (e.g. a CSV "title" column) belongs to the record, so it always leads its chunk.
        prefix = cfg.splitter == "headers" or doc.kind in {"csv", "jsonl"}
        pieces = _split_by_section(doc.segments, size, overlap, tok, prefix=prefix)
    else:
        pieces = _split_flowing(doc.segments, _splitter(size, overlap, tok))
    return [Chunk(text, i, section, page) for i, (text, section, page) in enumerate(pieces)]


def _splitter(size: int, overlap: int, tokenizer=None):
    """Recursive splitter measuring characters, or the embedder's tokens when a tokenizer is given."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if tokenizer is not None:
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer, chunk_size=size, chunk_overlap=overlap, add_start_index=True)
    return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap, add_start_index=True)


def _split_flowing(segments: list[Segment], splitter) -> list[tuple[str, str, int | None]]:
    """Split the document as one flowing text; each chunk is cited by the segment it starts in."""
    parts = [f"{seg.title}\n{seg.text}" if seg.title and seg.title_in_text else seg.text for seg in segments]
    starts = list(accumulate((len(part) + 2 for part in parts[:-1]), initial=0))  # each part's offset in the text
    pieces = []
    for doc in splitter.create_documents(["\n\n".join(parts)]):
        start = doc.metadata.get("start_index", 0)
        seg = segments[bisect.bisect_right(starts, max(start, 0)) - 1]  # starts[0] is 0: never before the first
        pieces.append((doc.page_content, seg.title, seg.page))
    return pieces


def _split_by_section(segments: list[Segment], size: int, overlap: int, tokenizer,
                      prefix: bool) -> list[tuple[str, str, int | None]]:
    """Never cross a segment boundary; with `prefix`, repeat the section title atop every chunk."""
    pieces = []
    for seg in segments:
        header = f"{seg.title}\n" if prefix and seg.title and seg.title_in_text else ""
        used = len(tokenizer.encode(header, add_special_tokens=False)) if tokenizer and header else len(header)
        room = max(size - used, size // 2)  # a very long title may not starve the body
        splitter = _splitter(room, min(overlap, room // 2), tokenizer)
        pieces += [(header + body, seg.title, seg.page) for body in splitter.split_text(seg.text)]
    return pieces
