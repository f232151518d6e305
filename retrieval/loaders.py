"""Document loaders: bytes in, text segments out (with page or section titles for citations)."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from foundation.errors import ArenaError
from foundation.records import jsonl_rows
from retrieval.markup import html_sections, markdown_to_html, rst_to_html

MAX_FILE_BYTES = 50 * 1024 * 1024  # a larger file is almost always a data dump, not a document
# A DOCX is a zip: its declared uncompressed size is checked before python-docx extracts anything, so a
# zip bomb (kilobytes that inflate to gigabytes) is refused instead of exhausting memory.
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
TEXT_KINDS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".rst": "rst", ".html": "html",
              ".htm": "html", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SUPPORTED = ".txt .md .rst .html .htm .pdf .docx .jsonl .csv"
TEXT_COLUMNS = ("text", "content", "body", "document", "passage", "chunk")


class LoaderError(ArenaError):
    """A file that cannot be turned into text; the message names the file and the reason."""


@dataclass
class Segment:
    """A stretch of document text with where it sits: a section title and/or a page number."""

    text: str
    title: str = ""
    page: int | None = None
    title_in_text: bool = True  # False for labels like "row 12" that cite a row but are not a heading


@dataclass
class LoadedDocument:
    source: str
    kind: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.segments)


def load_file(path: Path, max_bytes: int = MAX_FILE_BYTES, source: str | None = None) -> LoadedDocument:
    """Read one file, detect its type by content and extension, and return its text segments."""
    name = source or Path(path).name
    return load_bytes(read_bytes(path, name, max_bytes), name)


def read_bytes(path: Path, name: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; LoaderError naming `name` when it is no file or over `max_bytes` (checked first)."""
    path = Path(path)
    if not path.is_file():
        raise LoaderError(f"{name}: not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise LoaderError(f"{name}: file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    return path.read_bytes()


def load_bytes(data: bytes, name: str) -> LoadedDocument:
    """Parse raw bytes; binary signatures win over the extension so a misnamed file still loads."""
    if not data.strip():
        raise LoaderError(f"{name}: file is empty")
    kind = detect_kind(data, name)
    segments = PARSERS[kind](data, name)
    segments = [s for s in segments if s.text.strip()]
    if not segments:
        raise LoaderError(f"{name}: no text found in this {kind.upper()} file")
    return LoadedDocument(name, kind, segments)


def detect_kind(data: bytes, name: str) -> str:
    """Return pdf, docx, html, md, rst, jsonl, csv or txt; raise for binary or unsupported files."""
    ext = Path(name).suffix.lower()
    if data.startswith(b"%PDF"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        if _is_docx(data, name):
            return "docx"
        raise LoaderError(f"{name}: unsupported type (a zip archive that is not a .docx); supported: {SUPPORTED}")
    if ext == ".pdf":
        raise LoaderError(f"{name}: corrupt PDF (no %PDF header)")
    if ext == ".docx":
        raise LoaderError(f"{name}: corrupt DOCX (not a zip archive)")
    if _looks_binary(data):
        raise LoaderError(f"{name}: unsupported type (binary content); supported: {SUPPORTED}")
    return TEXT_KINDS.get(ext) or _sniff_text(decode_text(data))


def _is_docx(data: bytes, name: str) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        return False
    declared = sum(i.file_size for i in infos)
    if declared > MAX_UNZIPPED_BYTES:
        raise LoaderError(f"{name}: refused, the archive declares {declared / 1e6:.0f} MB uncompressed "
                          f"(limit {MAX_UNZIPPED_BYTES / 1e6:.0f} MB; possibly a zip bomb)")
    return any(i.filename == "word/document.xml" for i in infos)


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
        return False
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 8 KiB boundary is not binary.
        if exc.start >= len(head) - 4:
            return False
    controls = sum(b < 9 or 13 < b < 32 for b in head)
    return controls > len(head) * 0.05


def decode_text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _sniff_text(text: str) -> str:
    head = text.lstrip()[:2000].lower()
    if head.startswith(("<!doctype html", "<html")) or re.search(r"<(body|p|div|h1)[\s>]", head):
        return "html"
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if lines and all(ln.lstrip().startswith("{") and ln.rstrip().endswith("}") for ln in lines):
        return "jsonl"
    if re.search(r"^#{1,6} \S", text, re.M):
        return "md"
    return "txt"


def parse_txt(data: bytes, name: str) -> list[Segment]:
    return [Segment(decode_text(data))]


def parse_html(data: bytes, name: str, to_html: Callable[[str], str] | None = None) -> list[Segment]:
    """Visible text as a reader sees it, one segment per h1-h6 heading, code kept as code. Markdown and reST
    are rendered to HTML by `to_html` first (markdown-it-py; docutils, directives and roles resolved, never
    left as markup)."""
    text = decode_text(data)
    return [Segment(body, title) for title, body in html_sections(to_html(text) if to_html else text)]


def parse_pdf(data: bytes, name: str) -> list[Segment]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [Segment(page.extract_text() or "", page=i + 1) for i, page in enumerate(reader.pages)]
    except (FileNotDecryptedError, DependencyError) as exc:  # pypdf already tried the empty owner-only password
        raise LoaderError(f"{name}: PDF is encrypted (password-protected); save an unprotected copy first") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise LoaderError(f"{name}: corrupt PDF ({exc})") from exc
    if not any(p.text.strip() for p in pages):
        raise LoaderError(f"{name}: PDF has no extractable text (scanned images need OCR first)")
    return pages


def parse_docx(data: bytes, name: str) -> list[Segment]:
    """Paragraphs grouped under the nearest Heading/Title style; table cells appended at the end."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises assorted zip/xml/key errors for broken files
        raise LoaderError(f"{name}: corrupt DOCX ({exc})") from exc
    segments, title, parts = [], "", []
    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        if style.startswith(("Heading", "Title")) and para.text.strip():
            segments.append(Segment("\n".join(parts), title))
            title, parts = para.text.strip(), []
        elif para.text.strip():
            parts.append(para.text)
    segments.append(Segment("\n".join(parts), title))
    for n, table in enumerate(document.tables, start=1):
        rows = [" | ".join(c.text.strip() for c in row.cells) for row in table.rows]
        segments.append(Segment("\n".join(rows), f"table {n}", title_in_text=False))
    return segments


def rows_to_segments(rows: list[dict], name: str) -> list[Segment]:
    """One segment per row: the text column, or question + answer for FAQ exports."""
    if not rows:
        raise LoaderError(f"{name}: no rows")
    columns = list(rows[0].keys())
    lower = {str(c).lower(): c for c in columns}
    text_col = next((lower[c] for c in TEXT_COLUMNS if c in lower), None)
    title_col = lower.get("title") or lower.get("question")
    if text_col is None and not ("question" in lower and "answer" in lower):
        raise LoaderError(f"{name}: no text column; expected one of {', '.join(TEXT_COLUMNS)} "
                          f"(or question + answer), found: {', '.join(map(str, columns))}")
    segments = []
    for n, row in enumerate(rows, start=1):
        if text_col is not None:
            text = str(row.get(text_col) or "")
        else:
            text = f"{row.get(lower['question']) or ''}\n{row.get(lower['answer']) or ''}"
        title = str(row.get(title_col) or "") if title_col else ""
        segments.append(Segment(text, title) if title else Segment(text, f"row {n}", title_in_text=False))
    return segments


def parse_jsonl(data: bytes, name: str) -> list[Segment]:
    return rows_to_segments([row for _, row in jsonl_rows(decode_text(data), name, LoaderError)], name)


def parse_csv(data: bytes, name: str) -> list[Segment]:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    except csv.Error as exc:
        raise LoaderError(f"{name}: unreadable CSV ({exc})") from exc
    return rows_to_segments(rows, name)


PARSERS = {"txt": parse_txt, "md": partial(parse_html, to_html=markdown_to_html),
           "rst": partial(parse_html, to_html=rst_to_html), "html": parse_html, "pdf": parse_pdf,
           "docx": parse_docx, "jsonl": parse_jsonl, "csv": parse_csv}
