"""`arena ingest` / `arena search` and the Documents tab's functions, on the real bundled embedder."""

from __future__ import annotations

import json

import gradio as gr
import pytest

import retrieval.embedding
from assistant.cli.main import main
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.settings import Settings


@pytest.fixture(scope="module")
def embedder():
    return retrieval.embedding.Embedder.load("bundled:all-minilm-l6-v2")


@pytest.fixture
def one_load(embedder, monkeypatch):
    """Each CLI call would load the same MiniLM again; hand it the one already loaded."""
    monkeypatch.setattr(retrieval.embedding.Embedder, "load", classmethod(lambda cls, *a, **k: embedder))


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "faq.md").write_text("## How do I reset?\nHold the power button for ten seconds.\n\n"
                                   "## Error E-42\nThe water tank sensor is unplugged.")
    (folder / "sub" / "notes.txt").write_text("The warranty lasts two years from purchase.")
    (folder / "broken.docx").write_bytes(b"not a zip")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ingest_then_search_json(one_load, docs, data_dir, capsys):
    code, out, _ = run(capsys, "ingest", str(docs), "--data-dir", str(data_dir), "--splitter", "headers",
                       "--chunk-size", "300", "--chunk-overlap", "30", "--json")
    report = json.loads(out)
    assert code == 1  # one file failed; the others went in
    files = {f["source"]: f for f in report["files"]}
    assert files["faq.md"]["status"] == "added" and files["faq.md"]["chunks"] == 2
    assert files["sub/notes.txt"]["status"] == "added"
    assert files["broken.docx"]["status"] == "error" and "broken.docx" in files["broken.docx"]["message"]

    code, out, _ = run(capsys, "search", "what does E-42 mean", "--k", "2", "--data-dir", str(data_dir), "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2
    assert set(hits[0]) >= {"text", "source", "score", "chunk_id"}
    assert hits[0]["source"] == "faq.md" and "tank sensor" in hits[0]["text"]

    same = ["--splitter", "headers", "--chunk-size", "300", "--chunk-overlap", "30"]
    code, out, _ = run(capsys, "ingest", str(docs / "faq.md"), "--data-dir", str(data_dir), *same)
    assert code == 0 and "unchanged" in out
    code, out, _ = run(capsys, "ingest", str(docs / "faq.md"), "--data-dir", str(data_dir), "--splitter", "headers")
    assert code == 0 and "replaced" in out  # the default size, not 300: re-chunked
    code, out, _ = run(capsys, "ingest", str(docs / "faq.md"), "--data-dir", str(data_dir))  # another splitter
    assert code == 0 and "replaced" in out


def test_search_queries_file_prints_one_list_per_line_in_order(one_load, docs, data_dir, tmp_path, capsys):
    assert run(capsys, "ingest", str(docs / "faq.md"), str(docs / "sub"), "--data-dir", str(data_dir))[0] == 0
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"question": "warranty length"}\n\n{"question": "reset the device"}\n')
    code, out, _ = run(capsys, "search", "--queries", str(queries), "--k", "1", "--mode", "dense",
                       "--data-dir", str(data_dir))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line[0]["source"] for line in lines] == ["notes.txt", "faq.md"]


def test_cli_errors_exit_2(data_dir, tmp_path, capsys):
    code, _, err = run(capsys, "search", "--data-dir", str(data_dir), "--mode", "bm25")
    assert code == 2 and "QUERY or --queries" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"q": 1}\n')
    code, _, err = run(capsys, "search", "--queries", str(bad), "--mode", "bm25", "--data-dir", str(data_dir))
    assert code == 2 and "bad.jsonl line 2" in err
    code, _, err = run(capsys, "ingest", str(tmp_path), "--chunk-size", "5", "--data-dir", str(data_dir))
    assert code == 2 and "chunk size must be at least 20" in err
    code, _, err = run(capsys, "ingest", str(tmp_path), "--chunk-size", "99999999999999", "--data-dir",
                       str(data_dir))
    assert code == 2 and "chunk size must be at most 10000" in err


def test_chunk_size_bounds_and_defaults():
    from retrieval.chunking import MAX_SIZE, ChunkConfig

    assert ChunkConfig("recursive").resolved() == (800, 100) and ChunkConfig("tokens").resolved() == (200, 30)
    assert ChunkConfig("recursive", MAX_SIZE).resolved() == (MAX_SIZE, 100)
    with pytest.raises(ArenaError, match=f"chunk size must be at most {MAX_SIZE}.*got {MAX_SIZE + 1}"):
        ChunkConfig("headers", MAX_SIZE + 1).resolved()


def test_documents_tab_upload_search_delete(embedder, docs, data_dir, tiny_loaded):
    from ui.documents import build_documents_tab, document_rows, search_rows, upload_files

    runtime = Runtime(Settings(data_dir=data_dir), base=tiny_loaded, embedder=embedder)
    steps = []
    message = upload_files(runtime, [str(docs / "faq.md"), str(docs / "broken.docx")], "headers", None, None,
                           lambda frac, desc="": steps.append((frac, desc)))
    assert "**faq.md**: added, 2 chunks" in message and "**broken.docx**: error" in message
    assert steps and "files" in steps[-1][1]
    assert (data_dir / "uploads" / "documents" / "faq.md").is_file()
    assert [row[:3] for row in document_rows(runtime)] == [["faq.md", "md", 2]]
    rows = search_rows(runtime, "reset", 1, "hybrid")
    assert rows[0][2] == "faq.md § How do I reset?"
    with gr.Blocks():
        build_documents_tab(runtime)  # wiring builds against the same runtime
    assert runtime.store.delete("faq.md") and document_rows(runtime) == []
