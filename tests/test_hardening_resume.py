"""Long runs survive `kill -9`: a comparison and a distillation continue where they stopped, and end exactly
as an uninterrupted run does (tiny model, real subprocesses, real SQLite)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from assistant.compare.runs import RunStore
from foundation.errors import ArenaError
from foundation.row_cache import RowCache, content_key
from tests.conftest import stored_result
from tests.kill_points import count, park_after, unpark
from tests.test_hardening_crash import arena, kill9, wait_for

TIMINGS = {"ttft_s", "tokens_per_s"}  # wall-clock figures: the only thing allowed to differ between runs
# Each kill lands at a row fixed in advance (tests/kill_points.py), so the run needs only a few more
# questions than that row: the test does not depend on how fast the machine answers.
N_QUESTIONS = 10
N_DISTILLED = 16  # the kill lands at the 4th answer


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
    RunStore(db)  # the product's own schema, so the kill point can be set before the run starts
    park_after(db, "partial_answers", 4, distinct="question")  # the 5th question's answers are never stored
    log = tmp_path / "first.log"
    proc = arena(*args, *common, log=log)
    wait_for(lambda: count(db, "SELECT COUNT(DISTINCT question) FROM partial_answers") >= 4, proc, log, 600)
    kill9(proc)  # parked inside the 5th question's write transaction
    unpark(db)
    runs = RunStore(db)
    [(run_id, _, answered)] = runs.unfinished()
    assert runs.list() == [] and answered == 4  # an unfinished run is never listed as finished
    with pytest.raises(ArenaError, match=f"unfinished: arena compare --resume {run_id}"):
        runs.get(run_id)
    _, stored, _ = runs.partial(run_id)
    # Second life: killed while scoring (reference NLLs), after answering everything.
    park_after(db, "partial_scores", 3)
    log2 = tmp_path / "second.log"
    proc = arena("compare", "--resume", str(run_id), *common, log=log2)
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM partial_scores") >= 3, proc, log2, 600)
    kill9(proc)
    unpark(db)
    assert f"resuming comparison run {run_id}: 4 of {N_QUESTIONS} questions answered" in log2.read_text()
    assert count(db, "SELECT COUNT(DISTINCT question) FROM partial_answers") == N_QUESTIONS
    assert count(db, "SELECT COUNT(*) FROM partial_scores") == 3
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
    assert runs.get(run_id).result.to_dict()["per_question"] == resumed["per_question"]


def test_resume_of_an_unknown_or_finished_run_is_refused(data_dir):
    runs = RunStore(data_dir / "runs.sqlite")
    done = runs.add({"eval": "x"}, stored_result())
    for run_id, words in ((done, "it is finished"), (999, "no unfinished comparison run with id 999")):
        with pytest.raises(ArenaError, match=words):
            runs.partial(run_id)


def test_old_runs_file_gains_the_resume_columns(data_dir):
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / "runs.sqlite")
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, label TEXT NOT NULL,"
               " settings TEXT NOT NULL, result TEXT NOT NULL)")
    old = {"variants": {}, "per_question": [], "recommendation": {"variant": None, "reason": "", "clear": False}}
    db.execute("INSERT INTO runs (created, label, settings, result) VALUES (1, 'old', '{}', ?)", (json.dumps(old),))
    db.commit()
    db.close()
    runs = RunStore(data_dir / "runs.sqlite")
    assert [(r.id, r.label, r.result.variants) for r in runs.list()] == [(1, "old", {})]
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
                                 for i in range(N_DISTILLED)))

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
            RowCache.in_data_dir(data_dir)  # the product's own schema, so the kill point can be set first
            park_after(cache, "rows", 3)  # the 4th answer is never stored
            log = tmp_path / "distill-killed.log"
            proc = run(data_dir, "d", log)
            wait_for(lambda db=cache: count(db, "SELECT COUNT(*) FROM rows") >= 3, proc, log)
            kill9(proc)
            unpark(cache)
            assert count(cache, "SELECT COUNT(*) FROM rows") == 3
            log = tmp_path / "distill-again.log"
            text = finish(run(data_dir, "d", log), log)
            assert f"distillation: 3 of {N_DISTILLED} answers cached, generating {N_DISTILLED - 3}" in text
        else:
            log = tmp_path / "distill-whole.log"
            assert f"0 of {N_DISTILLED} answers cached, generating {N_DISTILLED}" in finish(run(data_dir, "d", log),
                                                                                              log)
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

    RowCache.in_data_dir(data_dir)  # the product's own schema, so the kill point can be set first
    park_after(cache, "rows", 4)  # the 5th question's samples are never stored
    log = tmp_path / "paraphrase-killed.log"
    proc = run(log)
    wait_for(lambda: count(cache, "SELECT COUNT(*) FROM rows") >= 4, proc, log, timeout=600)
    kill9(proc)
    unpark(cache)
    before = dict(sqlite3.connect(cache).execute("SELECT key, value FROM rows").fetchall())
    assert len(before) == 4
    log = tmp_path / "paraphrase-again.log"
    text = finish(run(log), log)
    assert f"paraphrases: {12 - len(before)}/{12 - len(before)} new questions" in text  # only the missing ones
    after = dict(sqlite3.connect(cache).execute("SELECT key, value FROM rows").fetchall())
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())  # stored samples read back as is


N_ASKED = 12  # decide --questions 12: 5 evaluation questions (decide's minimum) and 7 training questions


def test_question_generation_killed_midway_writes_only_the_missing_replies(tmp_path, tiny_model_dir):
    """`arena decide DOCS --generator base` stores each reply in the row cache as its batch returns: killed
    after the first batch, the rerun reads those 4 back and writes only the 8 missing ones, and ends exactly as
    an uninterrupted run does (the tiny random model writes nothing the filters keep, so both runs fall back to
    the heuristic and refuse, with the same message)."""
    from tests.test_questions import GUIDE

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(GUIDE)

    def run(data_dir: Path, log: Path) -> subprocess.Popen:
        return arena("decide", str(docs), "--generator", "base", "--questions", str(N_ASKED), "--variants", "base",
                     "finetuned", "--augment", "", "--data-dir", str(data_dir), "--model", str(tiny_model_dir),
                     "--device", "cpu", "--engine", "torch", log=log)

    def rows(cache: Path) -> dict:
        with sqlite3.connect(cache) as con:
            found = {k: (v, t) for k, v, t in con.execute("SELECT key, value, created FROM rows")}
        con.close()
        return found

    data_dir = tmp_path / "killed"
    cache = data_dir / "cache" / "rows.sqlite"
    RowCache.in_data_dir(data_dir)  # the product's own schema, so the kill point can be set first
    park_after(cache, "rows", 4)  # the first batch (4 replies) is stored; the 5th reply's write never returns
    log = tmp_path / "questions-killed.log"
    proc = run(data_dir, log)
    wait_for(lambda: count(cache, "SELECT COUNT(*) FROM rows") >= 4, proc, log)
    kill9(proc)
    unpark(cache)
    before = rows(cache)
    assert len(before) == 4
    log = tmp_path / "questions-again.log"
    proc = run(data_dir, log)
    code, text = proc.wait(600), log.read_text()
    # Progress counts tasks; a task repeating another's prompt (a section asked about twice) shares its reply.
    # In a log file the progress line is throttled (foundation/progress_line.py), so not every count is printed;
    # those that are never start from 0: the stored replies count as done from the start.
    shown = [int(n) for n in re.findall(rf"questions written by base: (\d+)/{N_ASKED}", text)]
    assert all(n >= 4 for n in shown) and f"base: 0/{N_ASKED}" not in text
    whole_dir = tmp_path / "whole"
    log = tmp_path / "questions-whole.log"
    proc = run(whole_dir, log)
    whole_code, whole_text = proc.wait(600), log.read_text()
    whole = rows(whole_dir / "cache" / "rows.sqlite")
    after = rows(cache)
    assert len(after) == len(whole) > 4 and all(after[k] == v for k, v in before.items())  # read back as is
    written = [k for k, (_, created) in after.items() if created > max(t for _, t in before.values())]
    assert len(written) == len(whole) - 4  # the second run generated only the replies still missing
    assert {k: v for k, (v, _) in after.items()} == {k: v for k, (v, _) in whole.items()}  # the same replies

    def verdict(out: str) -> str:  # the run's last word: the error (or result) after the progress lines
        return out.rsplit("\r", 1)[-1].strip().splitlines()[-1]
    assert code == whole_code and verdict(text) == verdict(whole_text)
    assert "could not supply the questions" in verdict(text)
