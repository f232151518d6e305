"""Hostile and broken input: each gets a clear message, nothing stored is lost, files stay under the data dir."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

import retrieval.embedding
from assistant.cli.main import main
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.settings import Settings
from foundation.variants import VariantConfig
from retrieval.ingest import ingest_paths
from retrieval.loaders import LoaderError, load_bytes
from retrieval.store import DocumentStore
from tests.test_retrieval_loaders import make_docx, make_pdf


@pytest.fixture(scope="module")
def embedder():
    return retrieval.embedding.Embedder.load("bundled:all-minilm-l6-v2")


def encrypted_pdf(user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Locked text."]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def zip_bomb_docx() -> bytes:
    """A real DOCX plus one member that inflates to 300 MB from about 300 KB (zeros compress ~1000:1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(make_docx())) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            out.writestr(item, src.read(item))
        with out.open("word/media/bomb.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(300):
                member.write(chunk)
    return buf.getvalue()


def test_encrypted_pdf_says_encrypted_and_owner_only_pdf_loads():
    with pytest.raises(LoaderError, match="locked.pdf: PDF is encrypted"):
        load_bytes(encrypted_pdf("secret"), "locked.pdf")
    doc = load_bytes(encrypted_pdf(""), "owner-only.pdf")  # no user password: readable, so it loads
    assert "Locked text." in doc.text


def test_zip_bomb_docx_refused_from_declared_sizes():
    bomb = zip_bomb_docx()
    assert len(bomb) < 2_000_000
    with pytest.raises(LoaderError, match=r"bomb.docx: refused, the archive declares 3\d\d MB uncompressed"):
        load_bytes(bomb, "bomb.docx")


def test_hostile_files_reported_and_stored_documents_kept(tmp_path, data_dir, embedder):
    good = tmp_path / "good"
    good.mkdir()
    (good / "manual.md").write_text("## Reset\nHold the power button for ten seconds.")
    store = DocumentStore.open(data_dir, embedder)
    assert not ingest_paths(store, [good]).errors
    before = [(h.chunk_id, h.source) for h in store.search("reset the machine", k=2)]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.txt").write_bytes(os.urandom(4096))
    (bad / "empty.txt").write_bytes(b"")
    (bad / "locked.pdf").write_bytes(encrypted_pdf("pw"))
    (bad / "bomb.docx").write_bytes(zip_bomb_docx())
    (bad / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    (bad / "big.txt").write_text("word " * 300_000)  # 1.5 MB, over the 1 MB limit given below
    (bad / "rows.jsonl").write_text('{"text": "fine row"}\n{"title": "wrong key"}\nnot json\n')
    (bad / "table.csv").write_text("id,score\n1,2\n")
    (bad / "ok.txt").write_text("The descaler is citric acid.")
    report = ingest_paths(store, [bad], max_bytes=1_000_000)
    status = {r.source: (r.status, r.message) for r in report.results}
    assert status["ok.txt"][0] == "added"  # the good file among the bad ones still goes in
    expected = {"junk.txt": "binary", "empty.txt": "empty", "locked.pdf": "encrypted", "bomb.docx": "zip bomb",
                "broken.pdf": "PDF", "big.txt": "over the 1 MB limit", "rows.jsonl": "line", "table.csv": "column"}
    for name, words in expected.items():
        state, message = status[name]
        assert state == "error" and name in message and words in message, (name, message)
    assert {d.source for d in store.documents()} == {"manual.md", "ok.txt"}
    assert [(h.chunk_id, h.source) for h in store.search("reset the machine", k=2)][:1] == before[:1]


def test_same_named_files_and_control_characters_in_names(tmp_path, data_dir, embedder):
    """Two given files named alike: the first goes in, the second is refused by name (it would have replaced
    the first), the other files of the call still go in; names lose control and format characters."""
    for folder, text in (("x", "The pump is checked weekly."), ("y", "The valve is replaced yearly.")):
        (tmp_path / "same" / folder).mkdir(parents=True)
        (tmp_path / "same" / folder / "notes.txt").write_text(text)
    hostile = tmp_path / "hostile\x1b[31mRED\x1b[0m\nname\u202etxt.md"
    hostile.write_text("## Descaling\nUse citric acid.")
    other = tmp_path / "other.txt"
    other.write_text("The boiler holds two litres.")
    store = DocumentStore.open(data_dir, embedder)
    report = ingest_paths(store, [tmp_path / "same/x/notes.txt", tmp_path / "same/y/notes.txt", hostile, other])
    status = {r.source: (r.status, r.message) for r in report.results}
    assert status["other.txt"][0] == "added" and status["hostile[31mRED[0mnametxt.md"][0] == "added"
    error = [r for r in report.results if r.status == "error"]
    assert len(error) == 1 and error[0].source == "notes.txt"
    assert "would both be stored as 'notes.txt'" in error[0].message and "a folder holding both" in error[0].message
    assert {d.source for d in store.documents()} == {"notes.txt", "other.txt", "hostile[31mRED[0mnametxt.md"}
    assert "weekly" in store.search("pump", k=1)[0].text  # the first file's text, not replaced by the second
    # a folder holding both keeps them apart
    assert {r.source for r in ingest_paths(store, [tmp_path / "same"]).results} == {"x/notes.txt", "y/notes.txt"}


def test_documents_tab_writes_only_under_uploads(tmp_path, data_dir, embedder, tiny_loaded, monkeypatch):
    from ui.documents import upload_files

    monkeypatch.setattr(retrieval.embedding.Embedder, "load", classmethod(lambda cls, *a, **k: embedder))
    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded)
    src = tmp_path / "gradio-tmp" / "..évil\u202e.md"
    src.parent.mkdir()
    src.write_text("## Title\nUnicode names are fine.")
    message = upload_files(runtime, [str(src)], "recursive", 800, 100, lambda *a, **k: None)
    written = [p for p in data_dir.rglob("*.md")]
    assert written == [data_dir / "uploads" / "documents" / "évil.md"], written
    assert "évil.md**: added" in message
    with pytest.raises(ArenaError, match="choose one or more files"):
        upload_files(runtime, [], "recursive", 800, 100, lambda *a, **k: None)


def tiny_embedder(folder: Path):
    """A real sentence-transformers model (random 1-layer BERT, mean pooling), small enough for 10k texts."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "tiny", "note", "."] + [str(d) for d in range(10)]
    (folder / "vocab.txt").write_text("\n".join(vocab + [f"##{d}" for d in range(10)]))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(vocab) + 10, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    return retrieval.embedding.Embedder.load(str(folder))


def test_ten_thousand_tiny_files_in_one_call(tmp_path, data_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(10_000):
        (folder / f"n{i:05d}.txt").write_text(f"Tiny note {i}.")
    for i in range(20):  # per-file errors among them must not stop the rest
        (folder / f"bad{i}.txt").write_bytes(b"\x00\x01\x02" * 50)
    store = DocumentStore.open(data_dir, tiny_embedder(tmp_path / "embedder"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ops this small spend their time in thread hand-offs on a shared 2-core machine
    try:
        report = ingest_paths(store, [folder])
    finally:
        torch.set_num_threads(threads)
    assert len(report.errors) == 20 and all("binary" in r.message for r in report.errors)
    assert report.chunks == 10_000 and len(store.documents()) == 10_000
    assert store.search("Tiny note 4242.", k=1, mode="bm25")[0].source == "n04242.txt"
    assert len(DocumentStore.open(data_dir, store.embedder).search("note 17", k=3, mode="hybrid")) == 3


def test_one_megabyte_prompt_is_truncated_with_notice(tiny_loaded, data_dir):
    arena = Runtime(Settings(data_dir=data_dir), tiny_loaded).arena
    question = ("Why is the sky blue? " * 50_000)[:1_000_000]
    answers = arena.ask(question, ["base", "prompt"], VariantConfig(), GenSettings(max_new_tokens=4))
    limit = arena.engine.context_length // 4
    for answer in answers.values():
        assert answer.error == "" and answer.tokens == 4
        assert f"question truncated from 1000000 to {limit} tokens" in answer.notice


def test_training_data_errors_exit_2_naming_file_and_line(tmp_path, data_dir, tiny_model_dir, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n" + json.dumps({"query": "x"}) + "\n")
    table = tmp_path / "pairs.csv"
    table.write_text("question,comment\nWhat?,none\n")
    for path, where in ((rows, "rows.jsonl line 2"), (table, "pairs.csv")):
        code = main(["train", "--data", str(path), "--name", "x", "--max-steps", "1", "--data-dir", str(data_dir),
                     "--model", str(tiny_model_dir), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and where in err, err
    assert not (data_dir / "adapters").exists() or not any((data_dir / "adapters").iterdir())
