"""Documents tab: upload files into the index, list and delete documents, try a search."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.paths import confine
from foundation.variants import MAX_RAG_K
from retrieval.chunking import MAX_SIZE, SPLITTERS, ChunkConfig
from retrieval.ingest import ingest_files
from retrieval.store import MODES, list_documents
from ui.errors import quiet, shown

DOC_HEADERS = ["name", "type", "chunks", "size (KB)", "added"]
HIT_HEADERS = ["#", "score", "source", "text"]


def document_rows(runtime: Runtime) -> list[list]:
    """The documents table, read straight from SQLite (no embedder load on page open)."""
    return [[d.source, d.kind, d.chunks, round(d.size / 1024, 1),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(d.added))]
            for d in list_documents(Path(runtime.settings.data_dir) / "index")]


def upload_files(runtime: Runtime, files: list[str], splitter: str, size, overlap, progress) -> str:
    """Copy uploads under data_dir/uploads/documents, ingest them, and describe what happened per file."""
    if not files:
        raise ArenaError("choose one or more files first")
    # None (an API caller leaving a value out) is the splitter's default; 0 is refused, never read as "default"
    cfg = ChunkConfig(splitter, None if size is None else int(size), None if overlap is None else int(overlap))
    cfg.resolved()
    target = Path(runtime.settings.uploads_dir) / "documents"
    target.mkdir(parents=True, exist_ok=True)
    pairs, refused = [], []
    for f in files:
        src = Path(f)
        try:
            dest = confine(target, src.name, "upload name")
        except ArenaError as exc:  # reported with the other files' results; the rest still go in
            refused.append(f"- **{src.name[:80]}**: error — {exc}")
            continue
        n = 2
        while dest.name in {name for _, name in pairs}:  # two uploads reduced to one name: keep both
            # a short stem, so the " (n)" survives confine's length cut
            dest = confine(target, f"{Path(dest.name).stem[:30]} ({n}){Path(dest.name).suffix}", "upload name")
            n += 1
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        pairs.append((dest, dest.name))

    def report(done, total, chunks, message):
        progress(done / max(total, 1) * (0.5 if message != "embedding" else 0.9),
                 desc=f"{done}/{total} files · {chunks} chunks embedded · {message}")

    result = ingest_files(runtime.store, pairs, cfg, progress=report)
    lines = [f"- **{r.source}**: {r.status}" + (f", {r.chunks} chunks" if r.chunks else "")
             + (f" — {r.message}" if r.message else "") for r in result.results]
    summary = (f"{result.chunks} chunks added ({result.embedded} embedded, {result.reused} reused) in "
               f"{result.seconds:.1f} s; {len(result.errors) + len(refused)} file(s) failed.")
    return "\n".join([summary, *lines, *refused])


def search_rows(runtime: Runtime, query: str, k, mode: str) -> list[list]:
    if not query.strip():
        raise ArenaError("type a search query first")
    hits = runtime.store.search(query, k=int(k), mode=mode)
    return [[i, round(h.score, 4), h.citation, h.text] for i, h in enumerate(hits, start=1)]


def build_documents_tab(runtime: Runtime) -> None:
    """Upload with progress, the documents table with delete, and a search box showing top-k chunks."""
    with gr.Row():
        files = gr.File(label="Documents (.txt .md .rst .html .pdf .docx .jsonl .csv)", file_count="multiple",
                        type="filepath", elem_id="docs-upload")
        with gr.Column():
            splitter = gr.Radio(list(SPLITTERS), value="recursive", label="Splitter")
            # The boxes show the splitter's real defaults (an empty number box reads and sends 0).
            default_size, default_overlap = ChunkConfig("recursive").resolved()
            size = gr.Number(label="Chunk size (characters; tokens for the tokens splitter)", value=default_size,
                             precision=0, minimum=20, maximum=MAX_SIZE, elem_id="docs-chunk-size")
            overlap = gr.Number(label="Overlap (characters / tokens shared by neighbouring chunks)",
                                value=default_overlap, precision=0, minimum=0, maximum=MAX_SIZE - 1,
                                elem_id="docs-chunk-overlap")
    add = gr.Button("Add to index", variant="primary", elem_id="docs-add")
    status = gr.Markdown(elem_id="docs-status")
    table = gr.Dataframe(value=lambda: document_rows(runtime), headers=DOC_HEADERS, interactive=False,
                         label="Documents", elem_id="docs-table")
    with gr.Row():
        victim = gr.Dropdown(choices=[r[0] for r in document_rows(runtime)], value=None,
                             label="Document to delete", allow_custom_value=False, elem_id="docs-victim")
        delete = gr.Button("Delete", variant="stop", elem_id="docs-delete")
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="a question…", elem_id="docs-query", scale=4)
        k = gr.Slider(1, MAX_RAG_K, value=5, step=1, label="k")
        mode = gr.Radio(list(MODES), value="hybrid", label="Mode")
    # Fixed widths: left to size itself, the text column outgrows the page and is cut at its right edge.
    hits = gr.Dataframe(headers=HIT_HEADERS, interactive=False, wrap=True, label="Top chunks", elem_id="docs-hits",
                        column_widths=["5%", "8%", "25%", "62%"])

    def refresh():
        rows = document_rows(runtime)
        return rows, gr.update(choices=[r[0] for r in rows], value=None)

    @shown
    def on_add(paths, spl, sz, ov, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        return (upload_files(runtime, paths or [], spl, sz, ov, progress), *refresh())

    @shown
    def on_delete(source):
        if not source:
            raise gr.Error("pick a document to delete")
        removed = runtime.store.delete(source)
        return (f"Deleted **{source}**." if removed else f"{source} was already gone.", *refresh())

    @shown
    def on_search(q, kk, m):
        return search_rows(runtime, q, kk, m)

    splitter.change(lambda chosen: ChunkConfig(chosen).resolved(), splitter, [size, overlap])  # its defaults
    add.click(on_add, [files, splitter, size, overlap], [status, table, victim], **quiet(status))
    delete.click(on_delete, [victim], [status, table, victim], **quiet())
    victim.focus(lambda: gr.update(choices=[r[0] for r in document_rows(runtime)]), None, victim)
    query.submit(on_search, [query, k, mode], hits, api_name="search", **quiet())
