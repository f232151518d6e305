"""Store + ingestion on the real bundled MiniLM, FAISS, bm25s and SQLite: dedup, delete, reload, crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from foundation.errors import ArenaError
from retrieval.chunking import ChunkConfig
from retrieval.ingest import ingest_paths
from retrieval.store import DocumentStore

FAQ = {
    "reset.md": "## Factory settings\nHold the power button for ten seconds to restore factory settings; "
                "personal data is erased.",
    "parts.md": "## Spare parts\nPart ZK-4471 is the pump relay sold separately for service technicians.",
    "shipping.md": "## Shipping\nOrders leave our warehouse within two business days and arrive in three to five days.",
    "returns.md": "## Returns\nYou can return an unopened product within 30 days for a full refund.",
    "battery.md": "## Battery\nA full charge lasts about fourteen hours of normal use.",
    "cleaning.md": "## Cleaning\nWipe the housing with a dry cloth. Never use solvents.",
    "warranty.md": "## Warranty\nThe warranty covers manufacturing defects for two years from purchase.",
    "wifi.md": "## Wi-Fi\nThe device connects to 2.4 GHz networks only; 5 GHz is not supported.",
    "account.md": "## Account\nCreate an account in the app with your email address and a password.",
    "noise.md": "## Noise\nA humming sound during charging is normal and stops when the battery is full.",
    "mounting.md": "## Mounting\nUse the two screws in the box to mount the bracket on a wall.",
    "updates.md": "## Updates\nFirmware updates install automatically at night when the device is idle.",
}
QUERIES = ["how long does the battery last", "ZK-4471", "can I send it back for my money", "screws wall"]


@pytest.fixture(scope="module")
def embedder():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2")


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in FAQ.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def store(tmp_path, embedder, corpus) -> DocumentStore:
    store = DocumentStore.open(tmp_path / "data", embedder)
    report = ingest_paths(store, [corpus])
    assert not report.errors and report.chunks == len(FAQ)
    return store


def snapshot(store: DocumentStore) -> list:
    return [[(h.chunk_id, h.source, h.text, round(h.score, 5)) for h in store.search(q, k=4, mode=mode)]
            for q in QUERIES for mode in ("dense", "bm25", "hybrid")]


def test_embedder_vectors_are_normalized_float32(embedder):
    vectors = embedder.encode(["hello world", "a much longer sentence about warranty terms"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_hits_carry_citations_and_modes_differ(store):
    top = store.search("how long does the battery last", k=1, mode="dense")[0]
    assert (top.source, top.section, top.citation) == ("battery.md", "Battery", "battery.md § Battery")
    assert store.search("ZK-4471", k=3, mode="bm25")[0].source == "parts.md"
    assert store.search("zzzqqq", k=3, mode="bm25") == []  # no keyword match at all: nothing, not noise
    assert store.search_many(QUERIES, k=3) == [store.search(q, k=3) for q in QUERIES]


def test_hybrid_ranks_keyword_only_and_paraphrase_only_matches(store):
    query = "ZK-4471 or how do I get my machine back to its original out-of-box state?"
    keyword_hits = [h.source for h in store.search(query, k=5, mode="bm25")]
    assert keyword_hits[0] == "parts.md" and "reset.md" not in keyword_hits  # reset.md shares no keyword
    assert {h.source for h in store.search(query, k=2, mode="hybrid")} == {"parts.md", "reset.md"}


def test_same_file_twice_and_same_content_renamed_do_not_duplicate(store, corpus, tmp_path):
    before = snapshot(store)
    again = ingest_paths(store, [corpus])
    assert {r.status for r in again.results} == {"unchanged"}
    copy = tmp_path / "copy-of-battery.md"
    copy.write_text(FAQ["battery.md"])
    dup = ingest_paths(store, [copy]).results[0]
    assert dup.status == "duplicate" and "battery.md" in dup.message
    assert len(store.documents()) == len(FAQ) and snapshot(store) == before


def test_same_content_with_another_splitter_is_rechunked(store, corpus):
    before = {d.source: d.chunks for d in store.documents()}
    report = ingest_paths(store, [corpus], ChunkConfig(splitter="tokens", size=20, overlap=0))
    assert {r.status for r in report.results} == {"replaced"}  # same text, new chunking: not "unchanged"
    after = {d.source: d for d in store.documents()}
    assert set(after) == set(before) and all(store.document_state(s)[1] == "tokens 20/0" for s in after)
    again = ingest_paths(store, [corpus], ChunkConfig(splitter="tokens", size=20, overlap=0))
    assert {r.status for r in again.results} == {"unchanged"}


def test_same_content_with_another_chunk_size_or_overlap_is_rechunked(store, corpus):
    """The splitter alone is not the chunking: a new size or overlap must not be reported "unchanged"."""
    counts = {}
    for size, overlap in [(60, 0), (60, 0), (30, 0), (30, 10)]:
        report = ingest_paths(store, [corpus], ChunkConfig(splitter="recursive", size=size, overlap=overlap))
        statuses = {r.status for r in report.results}
        assert statuses == ({"unchanged"} if (size, overlap) in counts else {"replaced"}), (size, overlap)
        counts[(size, overlap)] = sum(d.chunks for d in store.documents())
    assert counts[(30, 0)] > counts[(60, 0)]  # the new size was really applied


def test_changed_file_replaces_its_chunks_everywhere(store, corpus):
    (corpus / "battery.md").write_text("## Battery\nThe quartz cell powers the clock for seven winters.")
    report = ingest_paths(store, [corpus])
    assert [(r.source, r.status) for r in report.results if r.status != "unchanged"] == [("battery.md", "replaced")]
    texts = store.chunk_texts()
    assert len(texts) == len(FAQ) and not any("fourteen" in t for t in texts)
    assert store.search("fourteen hours", k=5, mode="bm25") == []
    assert all("fourteen" not in h.text for h in store.search("fourteen hours of use", k=12, mode="dense"))
    assert store.search("quartz winters", k=1, mode="hybrid")[0].source == "battery.md"


def test_delete_removes_document_from_every_index(store):
    assert store.delete("parts.md") and not store.delete("parts.md")
    assert "parts.md" not in {d.source for d in store.documents()}
    assert store.search("ZK-4471", k=5, mode="bm25") == []
    for mode in ("dense", "hybrid"):
        assert all(h.source != "parts.md" for h in store.search("ZK-4471 pump relay", k=20, mode=mode))
    assert all(s.source != "parts.md" for s in store.sections())


def test_reload_gives_identical_results(store, embedder):
    before = snapshot(store)
    store.close()
    reopened = DocumentStore.open(store.folder.parent, embedder)
    assert snapshot(reopened) == before
    assert sorted(s.title for s in reopened.sections()) == sorted(t.split("\n")[0][3:] for t in FAQ.values())


def test_bad_files_are_reported_by_name_and_do_not_stop_others(tmp_path, embedder):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("## Returns\nThirty days.")
    (folder / "empty.txt").write_text("")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n%garbage")
    (folder / "huge.txt").write_text("words " * 400)
    store = DocumentStore.open(tmp_path / "data", embedder)
    report = ingest_paths(store, [folder, tmp_path / "missing.txt"], max_bytes=1000)
    status = {Path(r.source).name: (r.status, r.message) for r in report.results}
    assert status["good.md"][0] == "added"
    for name, words in [("empty.txt", "empty"), ("photo.png", "binary"), ("broken.pdf", "PDF"),
                        ("huge.txt", "limit"), ("missing.txt", "no such file")]:
        assert status[name][0] == "error" and name in status[name][1] and words in status[name][1], name
    assert [d.source for d in store.documents()] == ["good.md"]


CRASH_SCRIPT = """
import os, sys
import numpy as np
import retrieval.indexes as indexes
from retrieval.chunking import Chunk
from retrieval.loaders import Segment
from retrieval.store import DocumentStore, PendingDocument

calls = {"n": 0}
real_replace = os.replace
def crashing_replace(src, dst):
    calls["n"] += 1
    if calls["n"] == int(sys.argv[2]):
        os._exit(9)  # the process dies here: no cleanup, no rollback code runs
    real_replace(src, dst)
indexes.os.replace = crashing_replace
store = DocumentStore(sys.argv[1], None)
vec = np.load(sys.argv[3])
doc = PendingDocument("new.md", "md", "h-new", 10, "recursive", [Segment("Kiwi fruit policy.")],
                      [Chunk("Kiwi fruit policy.", 0)], ["t-new"], vec)
store.commit(add=[doc])
"""


@pytest.mark.parametrize("crash_at", [1, 2])
def test_crash_between_write_and_rename_leaves_previous_state(store, embedder, tmp_path, crash_at):
    before = snapshot(store)
    np.save(tmp_path / "vec.npy", embedder.encode(["Kiwi fruit policy."]))
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(script), str(store.folder), str(crash_at), str(tmp_path / "vec.npy")],
                          cwd=root, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root)})
    assert proc.returncode == 9, proc.stderr
    reopened = DocumentStore.open(store.folder.parent, embedder)
    assert snapshot(reopened) == before
    assert "new.md" not in {d.source for d in reopened.documents()}
    # The next commit reuses the half-written generation's names and cleans up the leftovers.
    (tmp_path / "later.md").write_text("## Kiwi\nKiwi fruit policy.")
    assert not ingest_paths(reopened, [tmp_path / "later.md"]).errors
    assert reopened.search("kiwi", k=1, mode="bm25")[0].source == "later.md"
    names = sorted(p.name for p in reopened.folder.iterdir() if p.name.startswith(("faiss", "bm25")))
    assert names == [f"bm25-{reopened.generation}", f"faiss-{reopened.generation}.index"]


def test_other_writer_is_picked_up_and_hnsw_matches_flat(store, embedder, tmp_path):
    other = DocumentStore.open(store.folder.parent, embedder)
    (tmp_path / "kiwi.md").write_text("## Kiwi\nKiwi fruit policy.")
    ingest_paths(other, [tmp_path / "kiwi.md"])
    assert store.search("kiwi", k=1, mode="bm25")[0].source == "kiwi.md"  # reloaded the new generation
    hnsw = DocumentStore(tmp_path / "hnsw", embedder, index_type="hnsw")
    ingest_paths(hnsw, [tmp_path / "kiwi.md", *sorted((store.folder.parent.parent / "docs").glob("*.md"))])
    for q in QUERIES:
        assert hnsw.search(q, k=1, mode="dense")[0].text == store.search(q, k=1, mode="dense")[0].text


def test_bad_arguments_and_embedder_mismatch(store, tmp_path):
    with pytest.raises(ArenaError, match="unknown search mode 'fuzzy'"):
        store.search("x", mode="fuzzy")
    with pytest.raises(ArenaError, match="k must be at least 1"):
        store.search("x", k=0)
    with pytest.raises(ArenaError, match="need an embedder"):
        DocumentStore.open(store.folder.parent, None).search("battery", mode="dense")

    class OtherEmbedder:
        embedder_id, dim = "some/other-model", 384

    with pytest.raises(ArenaError, match="built with embedder 'bundled:all-minilm-l6-v2'"):
        DocumentStore.open(store.folder.parent, OtherEmbedder())
    assert DocumentStore.open(tmp_path / "empty", None).search("x", mode="bm25") == []
    assert ChunkConfig("headers").resolved() == (800, 100)
