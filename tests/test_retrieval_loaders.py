"""Loaders (each on a small real file made here), bad inputs, and chunking."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from foundation.errors import ArenaError
from retrieval.chunking import ChunkConfig, chunk_document
from retrieval.loaders import LoaderError, Segment, load_bytes, load_file
from retrieval.store import citation

MARKUP = Path(__file__).parent / "data" / "markup"
ENV_CODE = "    MACHINE_HOST=192.168.1.20\n    MACHINE_PORT=8080"  # a code block: verbatim lines, indented


def make_pdf(pages: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    for text in pages:
        pdf.drawString(72, 750, text)
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Installation", level=1)
    document.add_paragraph("Place the unit on a flat surface.")
    document.add_heading("How do I reset the unit?", level=2)
    document.add_paragraph("Hold the power button for ten seconds.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "model"
    table.rows[0].cells[1].text = "AX-9"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def test_txt(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Warranty is two years.\nKeep the receipt.")
    doc = load_file(path)
    assert (doc.kind, doc.source) == ("txt", "notes.txt")
    assert doc.segments == [Segment("Warranty is two years.\nKeep the receipt.")]


def test_markdown_sections_keep_titles():
    doc = load_bytes(b"# Manual\nIntro text.\n\n## How do I reset?\nHold the button.\n\n## Battery\n14 hours.", "faq.md")
    assert doc.kind == "md"
    assert [(s.title, s.text) for s in doc.segments] == [
        ("Manual", "Intro text."), ("How do I reset?", "Hold the button."), ("Battery", "14 hours.")]


def test_rst_sections():
    text = "Guide\n=====\n\nWelcome.\n\nHow do I reset?\n---------------\n\nHold it.\n\n=====\nFAQ\n=====\n\nAsk us.\n"
    doc = load_bytes(text.encode(), "guide.rst")
    assert [(s.title, s.text) for s in doc.segments] == [
        ("Guide", "Welcome."), ("How do I reset?", "Hold it."), ("FAQ", "Ask us.")]


def test_html_headings_and_no_script():
    html = (b"<html><head><script>var secret = 1;</script><style>p{}</style></head><body>"
            b"<h1>Returns</h1><p>Within <b>30 days</b>.</p><h2>Shipping</h2><ul><li>Two days.</li></ul></body></html>")
    doc = load_bytes(html, "page.htm")
    assert doc.kind == "html"
    assert [(s.title, s.text) for s in doc.segments] == [("Returns", "Within 30 days."), ("Shipping", "- Two days.")]
    assert "secret" not in doc.text


def _sections(name: str) -> dict[str, str]:
    doc = load_file(MARKUP / name)
    return {s.title: s.text for s in doc.segments}


def test_rst_is_rendered_by_docutils():
    sections = _sections("faq.rst")
    assert list(sections) == ["Espresso machine FAQ", "Connecting to the app", "What does error E42 mean?"]
    setup = sections["Connecting to the app"]
    assert setup.startswith("Create a file named .env next to the app")  # ``literal`` markup gone
    assert ENV_CODE in setup  # the `.. code-block:: env` body, kept as code
    assert "\n\n    arena-coffee pair --host $MACHINE_HOST" in setup  # a `::` literal block
    assert "The machine must be on the same network as your phone." in setup  # the note's text, no **
    assert sections["Espresso machine FAQ"] == "This FAQ covers the Arena One machine. See the setup guide for unpacking."
    e42 = sections["What does error E42 mean?"]
    assert e42 == ("Error E42 means the water tank is empty. Refill it and press Reset.\n\n"
                   "1. Lift the tank.\n2. Fill it to the MAX line.")
    text = "\n".join(sections.values())
    for markup in (".. ", "::", "``", ":ref:", ":kbd:", "**", "===", "---", "toctree", "On this page"):
        assert markup not in text, markup
    assert Path("/etc/hostname").read_text().strip() not in text  # `.. include::` never reads local files


def test_markdown_is_rendered_by_markdown_it():
    sections = _sections("guide.md")
    assert list(sections) == ["Espresso machine guide", "Connecting to the app", "What does error E42 mean?"]
    assert sections["Espresso machine guide"] == "Welcome to the Arena One guide. Questions? See the FAQ."
    setup = sections["Connecting to the app"]
    assert setup.startswith("Create a .env file:\n\n" + ENV_CODE + "\n\n")
    assert "- Open the app\n- Tap Pair\n  - wait for the beep" in setup
    assert setup.endswith("setting | default\ngrind | 12\ndose | 18 g")
    assert sections["What does error E42 mean?"] == \
        "Error E42 means the water tank is empty. Refill it and press Reset."
    text = "\n".join(sections.values())
    for markup in ("```", "**", "#", "](", "|---", "internal:"):
        assert markup not in text, markup


def test_html_is_read_as_a_browser_shows_it():
    doc = load_file(MARKUP / "page.html")
    assert doc.kind == "html"
    sections = {s.title: s.text for s in doc.segments}
    assert sections[""] == "Home | Support"
    assert sections["Connecting to the app"] == (
        "Create a .env file next to the app with your machine's address:\n\n" + ENV_CODE)
    assert sections["What does error E42 mean?"] == (
        "Error E42 means the water tank is empty.\nRefill it and press Reset.\n\n"
        "1. Lift the tank.\n2. Fill it to the MAX line.\n\nsetting | default\ngrind | 12")
    for hidden in ("trackingId", "color: red", "Arena One support", "enable JavaScript", "<"):
        assert hidden not in doc.text, hidden


@pytest.mark.parametrize("name", ["faq.rst", "guide.md", "page.html"])
def test_markup_chunks_cite_their_sections(name):
    doc = load_file(MARKUP / name)
    chunks = chunk_document(doc, ChunkConfig("headers", 150, 0))
    e42 = [c for c in chunks if "water tank is empty" in c.text]
    assert e42 and all(citation(name, c.section) == f"{name} § What does error E42 mean?" for c in e42)
    assert e42[0].text.startswith("What does error E42 mean?\n")  # the title leads its section's text
    code = [c for c in chunks if "MACHINE_HOST=192.168.1.20" in c.text]
    assert code and code[0].section == "Connecting to the app" and ENV_CODE in code[0].text
    # The recursive splitter cites each chunk by the section it starts in.
    sections = {s.title: f"{s.title}\n{s.text}" for s in doc.segments}
    for chunk in chunk_document(doc, ChunkConfig("recursive", 150, 20)):
        assert chunk.text.splitlines()[0].strip() in sections[chunk.section]


def test_pdf_pages(tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(["First page about setup.", "Second page about the battery."]))
    doc = load_file(path)
    assert doc.kind == "pdf"
    assert [s.page for s in doc.segments] == [1, 2]
    assert "battery" in doc.segments[1].text
    chunks = chunk_document(doc, ChunkConfig())
    assert citation("manual.pdf", chunks[-1].section, chunks[-1].page) == "manual.pdf p.2"


def test_docx_headings_and_tables(tmp_path):
    path = tmp_path / "guide.docx"
    path.write_bytes(make_docx())
    doc = load_file(path)
    assert doc.kind == "docx"
    titles = {s.title: s.text for s in doc.segments}
    assert titles["Installation"] == "Place the unit on a flat surface."
    assert "ten seconds" in titles["How do I reset the unit?"]
    assert any("AX-9" in s.text for s in doc.segments)


def test_jsonl_and_csv_text_columns():
    rows = [{"title": "Reset", "text": "Hold the button."}, {"title": "Battery", "text": "14 hours."}]
    doc = load_bytes("\n".join(json.dumps(r) for r in rows).encode(), "kb.jsonl")
    assert [(s.title, s.text) for s in doc.segments] == [("Reset", "Hold the button."), ("Battery", "14 hours.")]
    assert chunk_document(doc, ChunkConfig())[1].text == "Battery\n14 hours."  # a record keeps its title
    faq = load_bytes(b"question,answer\nHow long is the warranty?,Two years.\n", "faq.csv")
    assert faq.kind == "csv"
    assert faq.segments[0].title == "How long is the warranty?"
    assert "Two years." in faq.segments[0].text
    plain = load_bytes(b"id;content\n1;First row\n2;Second row\n", "rows.csv")
    assert [(s.title, s.text) for s in plain.segments] == [("row 1", "First row"), ("row 2", "Second row")]
    assert chunk_document(plain, ChunkConfig())[0].text == "First row"  # a row label is not document text


def test_detected_by_content_not_only_extension():
    assert load_bytes(make_pdf(["Misnamed but real PDF."]), "report.txt").kind == "pdf"
    assert load_bytes(make_docx(), "guide").kind == "docx"
    assert load_bytes(b"# Title\nbody", "README").kind == "md"
    assert load_bytes(b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "page").kind == "html"
    assert load_bytes(b'{"text": "a"}\n{"text": "b"}\n', "export").kind == "jsonl"


@pytest.mark.parametrize("name, data, message", [
    ("empty.txt", b"", "empty"),
    ("blank.md", b"  \n\n ", "empty"),
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary"),
    ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "binary"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage without xref", "corrupt PDF"),
    ("fake.pdf", b"this is plain text pretending", "no %PDF header"),
    ("fake.docx", b"not a zip at all", "corrupt DOCX"),
    ("bad.jsonl", b'{"text": "ok"}\n{not json}\n', "line 2"),
    ("nocol.csv", b"id,score\n1,2\n", "no text column"),
])
def test_bad_inputs_name_the_file(name, data, message):
    with pytest.raises(LoaderError) as err:
        load_bytes(data, name)
    assert name in str(err.value) and message in str(err.value)


def test_zip_that_is_not_docx_and_size_limit(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    with pytest.raises(LoaderError, match="archive.zip: unsupported type"):
        load_bytes(buf.getvalue(), "archive.zip")
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    with pytest.raises(LoaderError, match=r"big.txt: file is 0.0 MB, over the 0 MB limit"):
        load_file(big, max_bytes=1000)


def test_recursive_chunks_respect_size_and_overlap():
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(200))
    doc = load_bytes(text.encode(), "long.txt")
    chunks = chunk_document(doc, ChunkConfig("recursive", 300, 60))
    assert len(chunks) > 5 and all(len(c.text) <= 300 for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].text[-30:].split()[-1] in chunks[1].text  # neighbours share the overlap


def test_headers_splitter_repeats_title_and_never_crosses_sections():
    body = " ".join(["Hold the power button for ten seconds."] * 30)
    doc = load_bytes(f"## How do I reset?\n{body}\n\n## Battery\nIt lasts 14 hours.".encode(), "faq.md")
    chunks = chunk_document(doc, ChunkConfig("headers", 200, 20))
    reset = [c for c in chunks if c.section == "How do I reset?"]
    assert len(reset) > 2 and all(c.text.startswith("How do I reset?\n") for c in reset)
    assert all("14 hours" not in c.text for c in reset)
    assert chunks[-1].section == "Battery" and chunks[-1].text == "Battery\nIt lasts 14 hours."
    assert citation("faq.md", chunks[-1].section) == "faq.md § Battery"


def test_token_splitter_uses_the_tokenizer():
    from transformers import AutoTokenizer

    from retrieval.embedder import resolve_embedder_path

    tok = AutoTokenizer.from_pretrained(resolve_embedder_path("bundled:all-minilm-l6-v2"))
    doc = load_bytes(" ".join(f"word{i} alpha beta" for i in range(400)).encode(), "t.txt")
    chunks = chunk_document(doc, ChunkConfig("tokens", 64, 8), tokenizer=tok)
    counts = [len(tok.encode(c.text, add_special_tokens=False)) for c in chunks]
    assert len(chunks) > 5 and max(counts) <= 64 and max(counts) > 40


@pytest.mark.parametrize("cfg, message", [
    (ChunkConfig("sentences"), "unknown splitter"),
    (ChunkConfig("recursive", 10), "at least 20"),
    (ChunkConfig("recursive", 100, 100), "overlap"),
])
def test_bad_chunk_config(cfg, message):
    with pytest.raises(ArenaError, match=message):
        cfg.resolved()
