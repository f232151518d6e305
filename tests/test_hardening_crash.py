"""Crash safety with real `kill -9`: mid-ingest, mid-training and mid-comparison nothing committed is lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import retrieval.embedding
from assistant.compare.runs import RunStore
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from foundation.votes import VoteStore
from retrieval.ingest import ingest_paths
from retrieval.store import DocumentStore
from tests.conftest import stored_result
from tests.kill_points import UNREACHABLE_STEPS, count, park, park_after, unpark
from training.config import JobConfig
from training.jobs import JobManager
from training.lock import TrainingLock
from training.runner import last_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["how do I reset the machine", "warranty period", "error E-42 water tank"]


@pytest.fixture(scope="module")
def embedder():
    return retrieval.embedding.Embedder.load("bundled:all-minilm-l6-v2")


def arena(*argv: str, log: Path) -> subprocess.Popen:
    """`python -m assistant ...` as its own process (the same command users run), output to a log file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "assistant", *argv], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float = 600.0) -> None:
    """Poll for an event; the timeout is only a bound for a hung process (shared CI machines are slow)."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        assert proc.poll() is None, f"process ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")


def kill9(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the process finished before it could be killed"
    proc.kill()  # SIGKILL: no handler, no cleanup
    assert proc.wait(30) == -9


def snapshot(store: DocumentStore) -> dict:
    return {f"{mode}:{q}": [(h.chunk_id, h.source, round(h.score, 5)) for h in store.search(q, k=3, mode=mode)]
            for q in QUERIES for mode in ("dense", "bm25", "hybrid")}


def test_kill_mid_ingest_keeps_previous_generation(tmp_path, data_dir, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("## How do I reset?\nHold the power button for ten seconds.\n\n"
                                 "## Error E-42\nThe water tank sensor is unplugged.")
    (docs / "warranty.txt").write_text("The warranty lasts two years from the date of purchase.")
    store = DocumentStore.open(data_dir, embedder)
    assert not ingest_paths(store, [docs]).errors
    before, docs_before = snapshot(store), [d.source for d in store.documents()]
    big = tmp_path / "big"
    big.mkdir()
    for i in range(40):
        (big / f"note{i:04d}.txt").write_text(f"Maintenance note {i}: descale the boiler every {i % 9 + 2} weeks "
                                              f"and check gasket {i * 7} for wear. " * 6)
    # The commit writes the new generation's index files, then its number: parked at that last write, the
    # process has done everything but commit when it is killed.
    db, nxt = data_dir / "index" / "store.sqlite", store.generation + 1
    park(db, "meta", "NEW.key = 'generation'")
    log = tmp_path / "ingest.log"
    proc = arena("ingest", str(big), "--data-dir", str(data_dir), "--json", log=log)
    wait_for(lambda: (data_dir / "index" / f"bm25-{nxt}").is_dir(), proc, log)
    kill9(proc)
    unpark(db)
    assert (data_dir / "index" / f"faiss-{nxt}.index").is_file()  # written, never committed
    reopened = DocumentStore.open(data_dir, embedder)
    assert [d.source for d in reopened.documents()] == docs_before
    assert snapshot(reopened) == before
    assert sqlite3.connect(data_dir / "index" / "store.sqlite").execute("PRAGMA integrity_check").fetchone() \
        == ("ok",)
    # The store still takes writes after the crash (no stale lock), and earlier documents survive them.
    (docs / "extra.txt").write_text("Descaling uses citric acid.")
    report = ingest_paths(reopened, [docs / "extra.txt"])
    assert not report.errors and report.generation > 0
    assert {"faq.md", "warranty.txt", "extra.txt"} <= {d.source for d in reopened.documents()}


def _train_config(tmp_path: Path, job_id: str, max_steps: int) -> Path:
    data = tmp_path / f"{job_id}.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i}?", "completion": f"answer number {i}"}) + "\n"
                            for i in range(16)))
    cfg = JobConfig(name=job_id, data=[{"path": str(data)}], max_steps=max_steps, batch_size=2, max_length=48,
                    eval_steps=100, save_steps=4, lora_r=2, lora_alpha=4, job_id=job_id,
                    early_stopping_patience=0)  # with UNREACHABLE_STEPS it cannot end before it is killed
    path = tmp_path / f"{job_id}.yaml"
    cfg.to_yaml(path)
    return path


def test_kill_mid_training_resumes_and_never_lists_half_adapter(tmp_path, data_dir, tiny_model_dir):
    settings = Settings(data_dir=data_dir, model=str(tiny_model_dir), device="cpu")
    common = ["--data-dir", str(data_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--json"]
    folder = data_dir / "jobs" / "crashy"
    log = tmp_path / "train.log"
    # Steps no machine finishes while the test works, early stopping off: the job cannot end before the kill,
    # whatever the speed; the resume below sets a short target.
    proc = arena("train", str(_train_config(tmp_path, "crashy", UNREACHABLE_STEPS)), *common, log=log)
    # Any complete checkpoint: older ones are rotated away (save_total_limit), so a fast machine can be past
    # checkpoint-4 before the first poll sees it.
    wait_for(lambda: last_checkpoint(folder) is not None and '"loss"' in (folder / "metrics.jsonl").read_text(),
             proc, log)
    # While it trains, a second job (UI or another CLI) is refused clearly, across processes.
    other = JobConfig(name="other", data=[{"path": str(tmp_path / "crashy.jsonl")}], max_steps=2, job_id="other")
    with pytest.raises(ArenaError, match="another training job is running .*crashy"):
        JobManager(settings).start(other)
    from training.job import run_job

    with pytest.raises(ArenaError, match="another training job is running"):
        run_job(other, settings)
    assert not (data_dir / "jobs" / "other").exists()  # a refused job leaves nothing behind
    kill9(proc)
    assert not TrainingLock(data_dir).busy()  # the kernel released the dead process's lock
    assert AdapterRegistry(data_dir).list() == []  # nothing half-trained is usable
    # A kill while a checkpoint is being written leaves it without trainer_state.json: never resumed from.
    # (numbered above any step the job could have reached, so it is the newest folder)
    half = folder / "checkpoints" / f"checkpoint-{UNREACHABLE_STEPS}"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"partial")
    complete = last_checkpoint(folder)
    assert complete and complete != str(half)
    steps = [int(complete.rsplit("-", 1)[1])]
    assert steps[0] > 0 and steps[0] % 4 == 0  # a checkpoint the job wrote (save_steps 4)
    # A kill during registration leaves a temp folder / a folder without its marker: never listed.
    (data_dir / "adapters" / ".tmp-crashy-999").mkdir(parents=True)
    (data_dir / "adapters" / "half").mkdir()
    (data_dir / "adapters" / "half" / "adapter_config.json").write_text("{}")
    assert AdapterRegistry(data_dir).names() == []
    # Resume from the last checkpoint with a shorter target so the test stays quick.
    cfg = JobConfig.from_yaml(folder / "config.yaml")
    cfg.max_steps = steps[-1] + 4
    cfg.to_yaml(folder / "config.yaml")
    log2 = tmp_path / "resume.log"
    resumed = arena("train", str(folder), "--resume", *common, log=log2)
    assert resumed.wait(300) == 0, log2.read_text()[-3000:]
    assert AdapterRegistry(data_dir).names() == ["crashy"]
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [r["step"] for r in records if "loss" in r]
    assert loss_steps == list(range(1, steps[-1] + 5))  # resumed after the checkpoint, no gap or repeat
    assert (AdapterRegistry(data_dir).get("crashy").path / "adapter_model.safetensors").is_file()


def test_kill_mid_comparison_keeps_runs_votes_and_adapters(tmp_path, data_dir, tiny_model_dir):
    runs, votes = RunStore(data_dir / "runs.sqlite"), VoteStore(data_dir / "votes.sqlite")
    earlier = stored_result({"base": {"f1": 0.5}})
    run_id = runs.add({"eval": "earlier"}, earlier, label="earlier run")
    votes.add("How do I reset?", {"base": "hold it", "rag": "ten seconds"}, "rag")
    adapter = tmp_path / "artifact"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    AdapterRegistry(data_dir).register("kept", adapter, {"method": "lora", "peft_type": "LORA"}, ["q"])
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"question": f"What is item {i}?", "answer": f"item {i} is a part"})
                                 + "\n" for i in range(8)))
    db = data_dir / "runs.sqlite"
    park_after(db, "partial_answers", 2, distinct="question")  # the 3rd question's answers are never stored
    log = tmp_path / "compare.log"
    proc = arena("compare", "--eval", str(eval_file), "--variants", "base", "prompt", "--no-forgetting",
                 "--max-new-tokens", "24", "--data-dir", str(data_dir), "--model", str(tiny_model_dir),
                 "--device", "cpu", log=log)
    wait_for(lambda: count(db, "SELECT COUNT(DISTINCT question) FROM partial_answers") >= 2, proc, log)
    kill9(proc)  # mid-run: two questions stored, parked inside the third's write
    unpark(db)
    assert [(r[0], r[2]) for r in runs.unfinished()] == [(run_id + 1, 2)]  # kept, to resume
    assert [r.id for r in runs.list()] == [run_id]  # no half-finished run is listed
    assert runs.get(run_id).result == earlier
    assert [(v.question, v.winner) for v in votes.all()] == [("How do I reset?", "rag")]
    assert AdapterRegistry(data_dir).names() == ["kept"]
    for db in ("runs.sqlite", "votes.sqlite"):
        assert sqlite3.connect(data_dir / db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
