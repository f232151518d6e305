"""Long runs survive `kill -9`: a comparison and a distillation continue where they stopped, and end exactly
as an uninterrupted run does (tiny model, real subprocesses, real SQLite)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from assistant.compare.runs import RunStore
from foundation.errors import ArenaError
from foundation.row_cache import RowCache, content_key
from tests.test_hardening_crash import arena, kill9, wait_for

TIMINGS = {"ttft_s", "tokens_per_s"}
# Enough questions that the kill lands mid-run even when the onnx engine answers the tiny model's rows in
# milliseconds on an idle machine (60 were all answered within one 0.1 s poll).
N_QUESTIONS = 400  # wall-clock figures: the only thing allowed to differ between runs


def count(db: Path, sql: str) -> int:
    if not db.is_file():
        return 0
    try:
        return sqlite3.connect(db, timeout=5).execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def finish(proc: subprocess.Popen, log: Path) -> str:
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    return log.read_text()


def json_out(text: str) -> dict:
    """The --json result printed on stdout (the log also holds the stderr progress lines)."""
    return json.loads(next(line for line in reversed(text.splitlines()) if line.startswith("{")))


def without_timings(result: dict) -> dict:
    per_question = [{**q, "answers": {v: {**a, "scores": {m: s for m, s in a["scores"].items() if m not in TIMINGS}}
                                      for v, a in q["answers"].items()}} for q in result["per_question"]]
    variants = {v: {m: s for m, s in metrics.items() if m not in TIMINGS} for v, metrics in result["variants"].items()}
    return {"per_question": per_question, "variants": variants, "recommendation": result["recommendation"]}


def test_comparison_killed_twice_resumes_to_the_uninterrupted_result(tmp_path, data_dir, tiny_model_dir):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"question": f"What is item {i}?", "answer": f"item {i} is a part"})
                                 + "\n" for i in range(N_QUESTIONS)))
    common = ["--data-dir", str(data_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--json"]
    args = ["compare", "--eval", str(eval_file), "--variants", "base", "prompt", "--no-forgetting",
            "--max-new-tokens", "48"]
    db = data_dir / "runs.sqlite"
    log = tmp_path / "first.log"
    proc = arena(*args, *common, log=log)
    wait_for(lambda: count(db, "SELECT COUNT(DISTINCT question) FROM partial_answers") >= 4, proc, log, 600)
    kill9(proc)
    runs = RunStore(db)
    [(run_id, _, answered)] = runs.unfinished()
    assert runs.list() == [] and 4 <= answered < N_QUESTIONS  # an unfinished run is never listed as finished
    with pytest.raises(ArenaError, match=f"unfinished: arena compare --resume {run_id}"):
        runs.get(run_id)
    _, stored, _ = runs.partial(run_id)
    # Second life: killed while scoring (reference NLLs), after answering everything.
    log2 = tmp_path / "second.log"
    proc = arena("compare", "--resume", str(run_id), *common, log=log2)
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM partial_scores") >= 3, proc, log2, 600)
    kill9(proc)
    assert f"resuming comparison run {run_id}: {answered} of {N_QUESTIONS} questions answered" in log2.read_text()
    log3 = tmp_path / "third.log"
    text = finish(arena("compare", "--resume", str(run_id), *common, log=log3), log3)
    assert f"{N_QUESTIONS} of {N_QUESTIONS} questions answered" in text
    resumed = json_out(text)
    assert resumed["run_id"] == run_id and [r.id for r in runs.list()] == [run_id] and runs.unfinished() == []
    assert count(db, "SELECT COUNT(*) FROM partial_answers") == 0  # finished: the partial rows are gone
    # Answers stored before the first kill were read back, not generated again: same timings to the digit.
    for q, per_variant in stored.items():
        for v, answer in per_variant.items():
            assert resumed["per_question"][q]["answers"][v]["scores"]["ttft_s"] == answer["ttft_s"]
    log4 = tmp_path / "whole.log"
    whole = json_out(finish(arena(*args, *common, log=log4), log4))
    assert whole["run_id"] != run_id
    assert without_timings(resumed) == without_timings(whole)
    assert runs.get(run_id).result["per_question"] == resumed["per_question"]


def test_resume_of_an_unknown_or_finished_run_is_refused(data_dir):
    runs = RunStore(data_dir / "runs.sqlite")
    done = runs.add({"eval": "x"}, {"variants": {}})
    for run_id, words in ((done, "it is finished"), (999, "no unfinished comparison run with id 999")):
        with pytest.raises(ArenaError, match=words):
            runs.partial(run_id)


def test_old_runs_file_gains_the_resume_columns(data_dir):
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / "runs.sqlite")
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, label TEXT NOT NULL,"
               " settings TEXT NOT NULL, result TEXT NOT NULL)")
    db.execute("INSERT INTO runs (created, label, settings, result) VALUES (1, 'old', '{}', '{\"variants\": {}}')")
    db.commit()
    db.close()
    runs = RunStore(data_dir / "runs.sqlite")
    assert [(r.id, r.label, r.result) for r in runs.list()] == [(1, "old", {"variants": {}})]
    assert runs.unfinished() == []


def test_row_cache_generates_only_missing_rows(data_dir):
    cache = RowCache.in_data_dir(data_dir)
    keys = [content_key("t", i) for i in range(5)]
    calls = []

    def generate(missing, store):
        calls.append(list(missing))
        for i in missing:
            store(i, {"row": i})
            if i == 2:
                raise RuntimeError("killed")  # rows 0-2 were stored before the failure

    with pytest.raises(RuntimeError):
        cache.fill(keys, generate)
    assert cache.fill(keys, generate) == [{"row": i} for i in range(5)]
    assert calls == [[0, 1, 2, 3, 4], [3, 4]]
    assert cache.fill(keys, generate) == [{"row": i} for i in range(5)] and len(calls) == 2


def test_distillation_killed_midway_regenerates_only_missing_answers(tmp_path, tiny_model_dir):
    manual = tmp_path / "manual.md"
    manual.write_text("# Bolts\n\n" + "".join(f"## Bolt {i}\nBolt {i} is tightened to {10 + i} Nm.\n\n"
                                                for i in range(6)))
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"How tight is bolt {i % 6} in case {i}?"}) + "\n"
                                 for i in range(400)))  # many batches: the kill lands between two

    def run(data_dir: Path, name: str, log: Path) -> subprocess.Popen:
        return arena("train", "--distill", str(questions), "--name", name, "--max-steps", "1", "--batch-size", "2",
                     "--data-dir", str(data_dir), "--model", str(tiny_model_dir), "--device", "cpu", log=log)

    rows = {}
    for label in ("killed", "whole"):
        data_dir = tmp_path / label
        ing = tmp_path / f"{label}-ingest.log"
        assert arena("ingest", str(manual), "--data-dir", str(data_dir), log=ing).wait(300) == 0, ing.read_text()
        cache = data_dir / "cache" / "rows.sqlite"
        if label == "killed":
            log = tmp_path / "distill-killed.log"
            proc = run(data_dir, "d", log)
            wait_for(lambda db=cache: count(db, "SELECT COUNT(*) FROM rows") >= 3, proc, log)
            kill9(proc)
            cached = count(cache, "SELECT COUNT(*) FROM rows")
            assert 3 <= cached < 400
            log = tmp_path / "distill-again.log"
            text = finish(run(data_dir, "d", log), log)
            assert f"distillation: {cached} of 400 answers cached, generating {400 - cached}" in text
        else:
            log = tmp_path / "distill-whole.log"
            assert "0 of 400 answers cached, generating 400" in finish(run(data_dir, "d", log), log)
        [job] = [p for p in (data_dir / "jobs").iterdir() if (p / "train.jsonl").is_file()]
        rows[label] = sorted((job / f).read_text() for f in ("train.jsonl", "val.jsonl"))
    assert rows["killed"] == rows["whole"]


def test_paraphrase_generation_killed_midway_keeps_its_samples(tmp_path, tiny_model_dir):
    """`--augment paraphrases:K` stores each question's samples as they finish: after `kill -9` the rerun reads
    them back unchanged and samples only the questions still missing."""
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"How tight is bolt {i}?", "answer": f"{10 + i} Nm."}) + "\n"
                            for i in range(12)))
    data_dir = tmp_path / "data"
    cache = data_dir / "cache" / "rows.sqlite"

    def run(log: Path) -> subprocess.Popen:
        return arena("train", "--data", str(data), "--augment", "paraphrases:2", "--name", "p", "--max-steps", "1",
                     "--batch-size", "2", "--val-fraction", "0", "--data-dir", str(data_dir),
                     "--model", str(tiny_model_dir), "--device", "cpu", "--engine", "torch", log=log)

    log = tmp_path / "paraphrase-killed.log"
    proc = run(log)
    wait_for(lambda: count(cache, "SELECT COUNT(*) FROM rows") >= 4, proc, log, timeout=600)
    kill9(proc)
    before = dict(sqlite3.connect(cache).execute("SELECT key, value FROM rows").fetchall())
    assert 4 <= len(before) < 12
    log = tmp_path / "paraphrase-again.log"
    text = finish(run(log), log)
    assert f"paraphrases: {12 - len(before)}/{12 - len(before)} new questions" in text  # only the missing ones
    after = dict(sqlite3.connect(cache).execute("SELECT key, value FROM rows").fetchall())
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())  # stored samples read back as is
