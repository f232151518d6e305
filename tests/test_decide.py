"""`arena decide`: the stage cache, stage keys, the plan and budget, seeds, and resume after a real kill -9.

The end-to-end runs use the tiny in-process Llama (saved as a folder, as the CLI loads it) and the bundled
MiniLM embedder; the kill test runs `python -m assistant decide` as a subprocess, like a user would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.compare.runs import RunStore
from assistant.decide.cache import MARKER, StageCache
from assistant.decide.config import DecideConfig, workspace
from assistant.decide.plan import budget_fit
from assistant.decide.progress import CANCEL_FILE, DecideCancelled, Reporter, read_progress
from assistant.decide.runner import plan_for, run_decide
from assistant.decide.stages import Decision
from foundation.errors import ArenaError
from foundation.row_cache import content_key
from foundation.settings import Settings
from retrieval.chunking import ChunkConfig

ROOT = Path(__file__).resolve().parents[1]
MANUAL = "# Widget manual\n\n" + "\n".join(
    f"## How do I set dial {i}?\nTurn dial {i} to position {i * 7} and press the green button twice.\n"
    for i in range(8))


@pytest.fixture
def inputs(tmp_path) -> dict:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "manual.md").write_text(MANUAL)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Which position does dial {i} need?",
                                      "answer": f"Position {i * 7}."}) + "\n" for i in range(12)))
    return {"docs": docs, "qa": qa}


def small_config(inputs, **overrides) -> DecideConfig:
    """A decision that runs in seconds on the tiny model: few steps, short answers, two or three variants."""
    cfg = DecideConfig(docs=[str(inputs["docs"])], qa=str(inputs["qa"]), max_steps=6, batch_size=4,
                       max_length=96, save_steps=2, max_new_tokens=4, limit=3, forgetting=False,
                       variants=["base", "rag", "finetuned"], grounded=False, augment="")
    return replace(cfg, **overrides).resolved()


# ---- stage cache ----------------------------------------------------------------------------------------

def test_stage_cache_reuses_same_key_and_rebuilds_changed_or_unfinished(tmp_path):
    cache, calls = StageCache(tmp_path), []

    def build(value):
        def make(folder: Path) -> dict:
            calls.append(value)
            (folder / "out.txt").write_text(value)
            return {"value": value}
        return make

    assert cache.run("a", content_key("x"), build("one")) == ({"value": "one"}, False)
    assert cache.run("a", content_key("x"), build("two")) == ({"value": "one"}, True)
    assert calls == ["one"]
    # A changed key rebuilds and replaces the folder's content.
    assert cache.run("a", content_key("y"), build("three")) == ({"value": "three"}, False)
    assert (cache.folder("a") / "out.txt").read_text() == "three"
    # A folder whose marker is missing (killed before the marker) is not trusted.
    (cache.folder("a") / MARKER).unlink()
    assert cache.cached("a", content_key("y")) is None
    assert cache.run("a", content_key("y"), build("four"))[1] is False
    # A build that fails leaves the previous finished result in place.
    with pytest.raises(RuntimeError):
        cache.run("a", content_key("z"), lambda folder: (_ for _ in ()).throw(RuntimeError("boom")))
    assert (cache.folder("a") / "out.txt").read_text() == "four"
    assert cache.cached("a", content_key("y"))["output"] == {"value": "four"}


def test_keys_change_only_downstream_of_a_changed_input(inputs, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", model="tiny", device="cpu")
    base = Decision(small_config(inputs), settings).keys
    tokens = Decision(small_config(inputs, max_new_tokens=8), settings).keys
    assert [k for k in base if base[k] != tokens[k]] == ["compare", "report"]
    margin = Decision(small_config(inputs, equivalence_margin=0.02), settings).keys  # the verdict is retaken
    assert [k for k in base if base[k] != margin[k]] == ["compare", "report"]
    steps = Decision(small_config(inputs, max_steps=9), settings).keys
    assert [k for k in base if base[k] != steps[k]] == ["trainset", "train-s0", "compare", "report"]
    # New Q/A content (same file name) redoes the split and everything after it, not the ingestion.
    inputs["qa"].write_text(inputs["qa"].read_text() + json.dumps({"question": "New?", "answer": "Yes."}) + "\n")
    qa = Decision(small_config(inputs), settings).keys
    assert qa["ingest"] == base["ingest"] and qa["evalset"] != base["evalset"]
    # More seeds keep seed 0 (no budget): only the new seed trains, then compare again.
    seeds = Decision(small_config(inputs, seeds=3), settings).keys
    assert seeds["train-s0"] == qa["train-s0"] and {"train-s1", "train-s2"} <= set(seeds)


# ---- plan and budget ------------------------------------------------------------------------------------

def test_budget_fit_cuts_steps_then_seeds():
    assert budget_fit(3, 100, 1.0, 0, 20) == (3, 100, [])  # no budget
    assert budget_fit(3, 100, 1.0, 10, 20)[:2] == (3, 100)  # 300 s fit in 600 s
    seeds, steps, notes = budget_fit(3, 100, 1.0, 3, 20)  # 180 s: 60 steps each still above one epoch
    assert (seeds, steps) == (3, 60) and "3 seed(s) × 60 steps fit" in notes[0]
    seeds, steps, notes = budget_fit(3, 100, 1.0, 0.5, 20)  # 30 s: one seed of 30 steps
    assert (seeds, steps) == (1, 30) and "only 1 of 3 seed(s)" in notes[0]


def test_plan_counts_inputs_and_marks_cached_stages(inputs, tmp_path, tiny_model_dir):
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(inputs, seeds=2)
    plan = plan_for(cfg, settings)
    rows = {s["stage"]: s for s in plan.stages}
    assert list(rows) == ["ingest", "evalset", "retrieval", "trainset", "train", "compare", "report"]
    assert rows["retrieval"]["count"] == "36 settings, 8 pairs"
    assert rows["ingest"]["count"].startswith("1 files")
    assert rows["evalset"]["count"] == "3 eval, 8 train"  # 12 Q/A: 4 held out (30 %), --limit 3 scored
    assert rows["train"]["count"].startswith("2 × 6 steps")
    assert not any(s["cached"] for s in plan.stages) and plan.minutes > 0
    assert "total ~" in plan.text()
    tight = plan_for(replace(cfg, budget_minutes=0.01, max_steps=-1), settings)
    assert tight.seeds == 1 and any("only 1 of 2 seed(s)" in n for n in tight.notes)


def test_bad_input_is_named(inputs, tmp_path):
    with pytest.raises(ArenaError, match="no documents"):
        DecideConfig().validate()
    with pytest.raises(ArenaError, match="does not exist"):
        DecideConfig(docs=[str(tmp_path / "missing")]).validate()
    with pytest.raises(ArenaError, match="--seeds must be between"):
        small_config(inputs, seeds=0).validate()
    with pytest.raises(ArenaError, match="augment"):
        small_config(inputs, augment="synonyms:3").validate()
    with pytest.raises(ArenaError, match="unknown variant"):
        small_config(inputs, variants=["rag", "oracle"]).validate()
    with pytest.raises(ArenaError, match="equivalence_margin must be >= 0"):
        small_config(inputs, equivalence_margin=-0.1).validate()


# ---- progress -------------------------------------------------------------------------------------------

def test_reporter_weights_stages_and_cancels(tmp_path):
    rep = Reporter(tmp_path, {"a": 10, "b": 30}, stderr=False)
    rep.begin("a")
    rep.update(0.5, "half")
    assert read_progress(tmp_path)["fraction"] == pytest.approx(5 / 40, abs=1e-3)
    rep.end("a", reused=False)
    rep.begin("b")
    assert read_progress(tmp_path)["fraction"] == pytest.approx(10 / 40, abs=1e-3)
    assert read_progress(tmp_path)["eta_s"] is not None
    (tmp_path / CANCEL_FILE).touch()
    with pytest.raises(DecideCancelled):
        rep.update(0.6, "more")


# ---- end to end on the tiny model -----------------------------------------------------------------------

def _markers(data_dir: Path, cfg: DecideConfig) -> dict[str, float]:
    cache = StageCache(workspace(data_dir, cfg.name))
    return {p.name: cache.marker(p.name)["finished"] for p in cache.root.iterdir() if cache.marker(p.name)}


def test_decide_end_to_end_with_seeds_then_only_changed_stages(inputs, tmp_path, tiny_model_dir):
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(inputs, seeds=2, variants=["base", "rag", "finetuned", "rag+finetuned"], grounded=True)
    result = run_decide(cfg, settings, stderr=False)
    assert [s["stage"] for s in result["stages"]] == ["ingest", "evalset", "retrieval", "trainset", "train-s0",
                                                      "train-s1", "compare", "report"]
    assert not any(s["cached"] for s in result["stages"])
    assert len(result["adapters"]) == 2
    report = json.loads(Path(result["report"]["json"]).read_text())
    # the verdict, or none yet (inconclusive) with the leader in its own field
    assert report["outcome"] in ("clear", "equivalent", "inconclusive") and report["leader"] in cfg.variants
    assert report["verdict"] in (cfg.variants if report["outcome"] != "inconclusive" else [None]) and report["why"]
    assert [p["adapter"] for p in report["seeds"]["per_seed"]] == result["adapters"]
    stored = RunStore(settings.data_dir / "runs.sqlite").get(result["run_id"]).result
    for variant in ("finetuned", "rag+finetuned"):
        spread = report["seeds"]["summary"][variant]
        assert spread["seeds"] == 2 and len(spread["per_seed"]) == 2
        # Seed 0 is the stored run's own adapter; the verdict stored with the run accounts for both seeds.
        assert spread["per_seed"][0] == pytest.approx(report["variants"][variant]["f1"]["mean"])
        assert stored["recommendation"]["seeds"][variant] == spread
    assert "across seeds" in Path(result["report"]["markdown"]).read_text()
    assert Path(result["report"]["html"]).read_text().startswith("<!doctype html>")
    assert read_progress(workspace(settings.data_dir, cfg.name))["state"] == "done"
    grounded = (workspace(settings.data_dir, cfg.name) / "stages" / "trainset" / "grounded.jsonl").read_text()
    assert grounded.count("\n") == report["trainset"]["qa_rows"]
    # Retrieval chosen on the 8 training pairs; the comparison and the grounded rows use it, the index holds
    # the documents chunked by the chosen splitter.
    tuned = StageCache(workspace(settings.data_dir, cfg.name)).marker("retrieval")["output"]
    assert tuned["tuned"] and tuned["questions"] == 8 and 0 <= tuned["hit_rate"] <= 1
    assert (stored["settings"]["rag_k"], stored["settings"]["rag_mode"]) == (tuned["k"], tuned["mode"])
    passages = [len(re.findall(r"^\[\d+\] \(", json.loads(line)["messages"][0]["content"], re.M))
                for line in grounded.splitlines()]
    assert 1 <= max(passages) <= tuned["k"]  # (long passages are cut to fit max_length)
    index = sqlite3.connect(settings.data_dir / "index" / "store.sqlite")
    stored_chunking = index.execute("SELECT DISTINCT splitter FROM documents").fetchall()
    assert stored_chunking == [(ChunkConfig(tuned["splitter"]).key(),)]
    assert f"k={tuned['k']}" in Path(result["report"]["markdown"]).read_text()
    # Same command again: everything comes from the cache.
    before = _markers(settings.data_dir, cfg)
    again = run_decide(cfg, settings, stderr=False)
    assert all(s["cached"] for s in again["stages"]) and _markers(settings.data_dir, cfg) == before
    # One changed comparison flag: only compare and report are redone.
    changed = run_decide(replace(cfg, max_new_tokens=6), settings, stderr=False)
    redone = [s["stage"] for s in changed["stages"] if not s["cached"]]
    assert redone == ["compare", "report"]
    after = _markers(settings.data_dir, cfg)
    assert {k for k in after if after[k] != before[k]} == {"compare", "report"}
    assert "never saw the documents' text" in Path(result["report"]["markdown"]).read_text()
    _then_train_on_documents(replace(cfg, max_new_tokens=6), settings)


def _then_train_on_documents(cfg: DecideConfig, settings: Settings) -> None:
    """Fine-tuning on the documents' text too: new rows, so the seeds train again; every section is trained on."""
    docs_cfg = replace(cfg, train_on_documents=True)
    with_docs = run_decide(docs_cfg, settings, stderr=False)
    redone = [s["stage"] for s in with_docs["stages"] if not s["cached"]]
    assert redone == ["trainset", "train-s0", "train-s1", "compare", "report"]
    texts = [json.loads(line)["text"] for line in (workspace(settings.data_dir, cfg.name) / "stages" / "trainset"
                                                  / "documents.jsonl").read_text().splitlines()]
    sections = [s for s in Decision(docs_cfg, settings).rt.store.sections() if s.text.strip()]
    assert len(texts) == len(sections) > 0
    job_id = StageCache(workspace(settings.data_dir, cfg.name)).marker("train-s0")["output"]["job_id"]
    job = settings.data_dir / "jobs" / job_id
    trained = (job / "train.jsonl").read_text()
    assert all(json.dumps(t)[1:-1] in trained for t in texts)  # none held out for validation
    assert not any(json.loads(line)["kind"] == "text" for line in (job / "val.jsonl").read_text().splitlines())
    assert "document sections (every section's text trained on" in Path(with_docs["report"]["markdown"]).read_text()


def _decide_proc(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "assistant", "decide", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait(predicate, proc, log: Path, timeout: float = 600.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        assert proc.poll() is None, f"decide ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")


def test_kill_during_training_then_rerun_resumes_without_reingesting(inputs, tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    args = [str(inputs["docs"]), "--qa", str(inputs["qa"]), "--data-dir", str(data_dir), "--model",
            str(tiny_model_dir), "--device", "cpu", "--max-steps", "300", "--save-steps", "4", "--batch-size", "2",
            "--max-length", "96", "--max-new-tokens", "4", "--limit", "3", "--no-forgetting", "--no-grounded",
            "--augment", "",
            "--variants", "base", "finetuned", "--json"]
    jobs = data_dir / "jobs"

    def checkpoint_written():
        # (older checkpoints are rotated away, so any complete one counts)
        return any(jobs.glob("decide-*/checkpoints/checkpoint-*/trainer_state.json")) if jobs.is_dir() else False

    log = tmp_path / "first.log"
    proc = _decide_proc(args, log)
    _wait(checkpoint_written, proc, log)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup
    assert proc.wait(30) == -9
    cfg = DecideConfig(name="decide")
    stages = StageCache(workspace(data_dir, cfg.name))
    ingested = stages.marker("ingest")
    assert ingested and stages.marker("trainset") and stages.marker("train-s0") is None
    assert read_progress(workspace(data_dir, cfg.name))["stage"] == "train-s0"
    log2 = tmp_path / "second.log"
    rerun = _decide_proc(args, log2)
    assert rerun.wait(900) == 0, log2.read_text()[-3000:]  # generous: CI machines are shared
    result = json.loads(log2.read_text().strip().splitlines()[-1])
    cached = {s["stage"]: s["cached"] for s in result["stages"]}
    assert cached["ingest"] and cached["evalset"] and cached["trainset"] and not cached["train-s0"]
    assert stages.marker("ingest") == ingested  # not redone: same marker, same finish time
    assert stages.marker("train-s0")["output"]["resumed"] is True
    job = next(jobs.glob("decide-*"))
    losses = [json.loads(line)["step"] for line in (job / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    # resumed after the checkpoint: no step repeated or missing (early stopping may end it before step 300)
    assert losses == list(range(1, losses[-1] + 1)) and losses[-1] > 4
    assert result["recommendation"]["leader"] in ("base", "finetuned")
    assert result["recommendation"]["variant"] in (None, "base", "finetuned")


def test_sigterm_cancels_and_keeps_finished_stages(inputs, tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    args = [str(inputs["docs"]), "--qa", str(inputs["qa"]), "--data-dir", str(data_dir), "--model",
            str(tiny_model_dir), "--device", "cpu", "--max-steps", "400", "--save-steps", "50", "--batch-size", "2",
            "--max-length", "96", "--no-grounded", "--augment", "", "--variants", "base", "finetuned", "--json"]
    log = tmp_path / "cancel.log"
    proc = _decide_proc(args, log)
    folder = workspace(data_dir, "decide")
    _wait(lambda: read_progress(folder).get("stage") == "train-s0"
          and "step" in str(read_progress(folder).get("message")), proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(600) == 3, log.read_text()[-3000:]
    assert read_progress(folder)["state"] == "cancelled"
    assert StageCache(folder).marker("ingest") and StageCache(folder).marker("train-s0") is None
    job = next((data_dir / "jobs").glob("decide-*"))
    assert json.loads((job / "status.json").read_text())["state"] == "cancelled"
    assert any(job.glob("checkpoints/checkpoint-*"))  # the cancel saved a checkpoint to resume from


def test_cli_plan_prints_the_stages_without_running_them(inputs, tmp_path, tiny_model_dir, capsys):
    from assistant.cli.main import main

    data_dir = tmp_path / "data"
    code = main(["decide", str(inputs["docs"]), "--qa", str(inputs["qa"]), "--seeds", "2", "--data-dir",
                 str(data_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--plan", "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["stage"] for s in plan["stages"]][0] == "ingest" and plan["seeds"] == 2
    assert not (data_dir / "index").exists()  # planning ingests nothing
    assert main(["decide", str(tmp_path / "nowhere"), "--data-dir", str(data_dir), "--plan"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_job_launcher_reports_a_dead_process_as_failed_with_its_log(inputs, tmp_path):
    from assistant.decide.jobs import DecideJob

    settings = Settings(data_dir=tmp_path / "data", model=str(tmp_path / "no-such-model"), device="cpu")
    job = DecideJob(settings)
    folder = job.start(small_config(inputs))
    with pytest.raises(ArenaError, match="still running"):
        job.start(small_config(inputs))
    job._proc.wait(120)
    state = job.progress()  # the run reported its own failure, naming the model it could not load
    assert state["state"] == "failed" and "no-such-model" in state["error"]
    assert (folder / "decide.yaml").is_file() and DecideConfig.from_yaml(folder / "decide.yaml").docs
    with pytest.raises(ArenaError, match="no decision is running"):
        job.cancel()
    job.start(small_config(inputs))  # killed before it can report anything: the launcher says so
    job._proc.kill()
    job._proc.wait(30)
    state = job.progress()
    assert state["state"] == "failed" and "ended (exit -9)" in state["error"]
