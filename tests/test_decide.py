"""`arena decide`: the stage cache, stage keys, the plan and budget, seeds, and resume after a real kill -9.

The end-to-end runs use the tiny in-process Llama (saved as a folder, as the CLI loads it) and the bundled
MiniLM embedder; the kill test runs `python -m assistant decide` as a subprocess, like a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant.compare.runs import RunStore
from assistant.decide.cache import MARKER, StageCache
from assistant.decide.config import AUTO_SEEDS, DecideConfig, workspace
from assistant.decide.outputs import ReportFiles
from assistant.decide.plan import budget_fit
from assistant.decide.progress import CANCEL_FILE, DecideCancelled, Reporter, read_progress
from assistant.decide.runner import plan_for, run_decide
from assistant.decide.stages import DecideRun
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.row_cache import content_key
from foundation.settings import Settings
from retrieval.chunking import ChunkConfig
from retrieval.ingest import ingest_paths
from tests.kill_points import UNREACHABLE_STEPS
from training.callbacks import read_metrics
from training.runner import last_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MANUAL = "# Widget manual\n\n" + "\n".join(
    f"## How do I set dial {i}?\nTurn dial {i} to position {i * 7} and press the green button twice.\n"
    for i in range(8))


def make_inputs(folder: Path) -> dict:
    docs = folder / "docs"
    docs.mkdir()
    (docs / "manual.md").write_text(MANUAL)
    qa = folder / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Which position does dial {i} need?",
                                      "answer": f"Position {i * 7}."}) + "\n" for i in range(12)))
    return {"docs": docs, "qa": qa}


@pytest.fixture
def inputs(tmp_path) -> dict:
    return make_inputs(tmp_path)


def small_config(inputs, **overrides) -> DecideConfig:
    """A decision that runs in seconds on the tiny model: few steps, short answers, two or three variants, one
    seed unless asked (auto would train three: the budget fits them)."""
    cfg = DecideConfig(docs=[str(inputs["docs"])], qa=str(inputs["qa"]), max_steps=6, batch_size=4,
                       max_length=96, save_steps=2, max_new_tokens=4, limit=3, forgetting=False,
                       variants=["base", "rag", "finetuned"], grounded=False, augment="", seeds=1)
    return replace(cfg, **overrides).resolved()


# ---- stage cache ----------------------------------------------------------------------------------------

def test_stage_cache_reuses_same_key_and_rebuilds_changed_or_unfinished(tmp_path):
    cache, calls = StageCache(tmp_path), []

    def build(value):
        def make(folder: Path) -> ReportFiles:
            calls.append(value)
            (folder / "out.txt").write_text(value)
            return ReportFiles(value, "report.html", "report.json", "comparison.html")
        return make

    def markdown(ran) -> tuple[str, bool]:
        return ran[0].markdown, ran[1].cached

    assert markdown(cache.run("report", content_key("x"), build("one"))) == ("one", False)
    assert markdown(cache.run("report", content_key("x"), build("two"))) == ("one", True)
    assert calls == ["one"]
    # A changed key rebuilds and replaces the folder's content.
    assert markdown(cache.run("report", content_key("y"), build("three"))) == ("three", False)
    assert (cache.folder("report") / "out.txt").read_text() == "three"
    # A folder whose marker is missing (killed before the marker) is not trusted.
    (cache.folder("report") / MARKER).unlink()
    assert cache.cached("report", content_key("y")) is None
    assert cache.run("report", content_key("y"), build("four"))[1].cached is False
    # A build that fails leaves the previous finished result in place.
    with pytest.raises(RuntimeError):
        cache.run("report", content_key("z"), lambda folder: (_ for _ in ()).throw(RuntimeError("boom")))
    assert (cache.folder("report") / "out.txt").read_text() == "four"
    assert cache.cached("report", content_key("y")).markdown == "four"


def test_keys_change_only_downstream_of_a_changed_input(inputs, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", model="tiny", device="cpu")
    base = DecideRun(small_config(inputs), settings).keys
    tokens = DecideRun(small_config(inputs, max_new_tokens=8), settings).keys
    assert [k for k in base if base[k] != tokens[k]] == ["compare", "report"]
    margin = DecideRun(small_config(inputs, equivalence_margin=0.02), settings).keys  # the verdict is retaken
    assert [k for k in base if base[k] != margin[k]] == ["compare", "report"]
    steps = DecideRun(small_config(inputs, max_steps=9), settings).keys
    assert [k for k in base if base[k] != steps[k]] == ["trainset", "train-s0", "compare", "report"]
    # New Q/A content (same file name) redoes the split and everything after it, not the ingestion.
    inputs["qa"].write_text(inputs["qa"].read_text() + json.dumps({"question": "New?", "answer": "Yes."}) + "\n")
    qa = DecideRun(small_config(inputs), settings).keys
    assert qa["ingest"] == base["ingest"] and qa["evalset"] != base["evalset"]
    # More seeds keep seed 0 (no budget): only the new seed trains, then compare again.
    unbounded = DecideRun(small_config(inputs, budget_minutes=0), settings).keys
    seeds = DecideRun(small_config(inputs, seeds=3, budget_minutes=0), settings).keys
    assert seeds["train-s0"] == unbounded["train-s0"] and {"train-s1", "train-s2"} <= set(seeds)
    # Under a budget (the default) the seeds share it: more seeds may mean fewer steps each, so seed 0 trains again.
    assert DecideRun(small_config(inputs, seeds=3), settings).keys["train-s0"] != qa["train-s0"]


# ---- plan and budget ------------------------------------------------------------------------------------

def test_budget_fit_cuts_steps_then_seeds():
    assert budget_fit(3, 100, 1.0, 0, 20) == (3, 100, [])  # no budget
    assert budget_fit(3, 100, 1.0, 10, 20)[:2] == (3, 100)  # 300 s fit in 600 s
    seeds, steps, notes = budget_fit(3, 100, 1.0, 3, 20)  # 180 s: 60 steps each still above one epoch
    assert (seeds, steps) == (3, 60) and "cut training from 100 to 60 steps per seed (3 seed(s))" in notes[0]
    seeds, steps, notes = budget_fit(3, 100, 1.0, 0.5, 20)  # 30 s: one seed of 30 steps
    assert (seeds, steps) == (1, 30) and "only 1 of 3 seed(s)" in notes[0]
    # each seed's own cost (load, save, its comparison) is paid from the budget too: 180 s / 3 - 20 s = 40 steps
    assert budget_fit(3, 100, 1.0, 3, 20, per_seed_s=20)[:2] == (3, 40)


def test_plan_counts_inputs_and_marks_cached_stages(inputs, tmp_path, tiny_model_dir):
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(inputs, seeds=2)
    plan = plan_for(cfg, settings)
    rows = {s.stage: s for s in plan.stages}
    assert list(rows) == ["ingest", "evalset", "retrieval", "trainset", "train", "compare", "report"]
    assert rows["retrieval"].count == "36 settings, 8 pairs"
    assert rows["ingest"].count.startswith("1 files")
    assert rows["evalset"].count == "3 eval, 8 train"  # 12 Q/A: 4 held out (30 %), --limit 3 scored
    assert rows["train"].count.startswith("2 × 6 steps")
    assert not any(s.cached for s in plan.stages) and plan.minutes > 0
    assert "total ~" in plan.text()
    tight = plan_for(replace(cfg, budget_minutes=0.01, max_steps=-1), settings)
    assert tight.seeds == 1 and any("only 1 of 2 seed(s)" in n for n in tight.notes)


def test_auto_seeds_train_as_many_as_the_budget_allows(inputs, tmp_path, tiny_model_dir):
    """--seeds 0 (the default): up to AUTO_SEEDS under a budget, cut to what fits (one seed at the floor), and
    one for the fitted plan (no budget: hours per seed on a CPU); the saved config says the number."""
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    assert DecideConfig().seeds == 0 and DecideConfig().seed_count == AUTO_SEEDS == 3
    assert DecideConfig(budget_minutes=0).seed_count == 1 and DecideConfig(seeds=2, budget_minutes=0).seed_count == 2
    auto = small_config(inputs, seeds=0)
    assert auto.seeds == AUTO_SEEDS  # resolved: the YAML saved with the run names the number
    roomy = plan_for(auto, settings)
    assert roomy.seeds == 3 and roomy.stages[4].count.startswith("3 × 6 steps")
    tight = plan_for(replace(auto, budget_minutes=0.01, max_steps=-1), settings)
    assert tight.seeds == 1 and any("only 1 of 3 seed(s)" in n for n in tight.notes)
    assert plan_for(small_config(inputs, seeds=0, budget_minutes=0), settings).seeds == 1


def test_bad_input_is_named(inputs, tmp_path):
    with pytest.raises(ArenaError, match="no documents"):
        DecideConfig().validate()
    with pytest.raises(ArenaError, match="does not exist"):
        DecideConfig(docs=[str(tmp_path / "missing")]).validate()
    with pytest.raises(ArenaError, match="seeds must be greater than or equal to 0, got -2"):
        small_config(inputs, seeds=-2).validate()
    with pytest.raises(ArenaError, match="augment"):
        small_config(inputs, augment="synonyms:3").validate()
    with pytest.raises(ArenaError, match="unknown variant"):
        small_config(inputs, variants=["rag", "oracle"]).validate()
    with pytest.raises(ArenaError, match="equivalence_margin must be greater than or equal to 0, got -0.1"):
        small_config(inputs, equivalence_margin=-0.1).validate()
    with pytest.raises(ArenaError, match="max_steps must be greater than or equal to -1, got -5; "
                                         "learning_rate must be less than or equal to 1, got 5.0"):
        small_config(inputs, max_steps=-5, learning_rate=5.0).validate()
    # typos a tester made in the Decide tab: each planned as weeks or years of work, with Start enabled
    with pytest.raises(ArenaError, match="budget_minutes must be less than or equal to 10080, got 1e[+]300; "
                                         "max_new_tokens must be less than or equal to 8192, got 999999999"):
        small_config(inputs, budget_minutes=1e300, max_new_tokens=999_999_999).validate()


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


def test_the_stderr_line_in_a_log_file_is_throttled_and_ends_with_the_finished_run(tmp_path, capsys):
    """Not a terminal (pytest captures stderr): a burst of updates writes the first state and the last, one per
    line, while progress.json (what the Decide tab polls) follows every update."""
    rep = Reporter(tmp_path, {"ingest": 10, "train": 30}, stderr=True)
    rep.begin("ingest")
    for i in range(1, 201):
        rep.update(i / 200, f"file {i}")
    rep.end("ingest", reused=False)
    assert read_progress(tmp_path)["message"] == "done"
    rep.finish("done")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "\r" not in err and len(lines) <= 4, lines
    assert lines[0].startswith("  0%") and lines[-1].startswith(" 25%") and "ingest: done · ETA" in lines[-1]


# ---- end to end on the tiny model -----------------------------------------------------------------------

def _markers(data_dir: Path, cfg: DecideConfig) -> dict[str, float]:
    cache = StageCache(workspace(data_dir, cfg.name))
    return {p.name: cache.marker(p.name)["finished"] for p in cache.root.iterdir() if cache.marker(p.name)}


@pytest.fixture(scope="module")
def decided(tmp_path_factory, tiny_model_dir) -> SimpleNamespace:
    """Four decide runs on one workspace, done once for the tests below: two seeds and every variant; the same
    command again; one changed comparison flag; then training on the documents' text too. What a later run
    overwrites (the report files) is read right after the run that wrote it."""
    root = tmp_path_factory.mktemp("decide-e2e")
    settings = Settings(data_dir=root / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(make_inputs(root), seeds=2, variants=["base", "rag", "finetuned", "rag+finetuned"],
                       grounded=True)
    ws = workspace(settings.data_dir, cfg.name)
    r = SimpleNamespace(cfg=cfg, settings=settings, ws=ws)
    (root / "other.md").write_text(OTHER)  # in the Documents tab's index: never part of the decision
    app_store = Runtime(settings).store
    assert not ingest_paths(app_store, [root / "other.md"]).errors
    r.app_index_before = _index_state(settings.data_dir / "index")
    r.first = run_decide(cfg, settings, stderr=False)
    r.report = json.loads(Path(r.first.report.json).read_text())
    r.markdown = Path(r.first.report.markdown).read_text()
    r.html = Path(r.first.report.html).read_text()
    r.progress = read_progress(ws)
    r.grounded = (ws / "stages" / "trainset" / "grounded.jsonl").read_text()
    r.before = _markers(settings.data_dir, cfg)
    r.again = run_decide(cfg, settings, stderr=False)
    r.after_again = _markers(settings.data_dir, cfg)
    r.changed = run_decide(replace(cfg, max_new_tokens=6), settings, stderr=False)
    r.after_changed = _markers(settings.data_dir, cfg)
    r.docs_cfg = replace(cfg, max_new_tokens=6, train_on_documents=True)
    r.with_docs = run_decide(r.docs_cfg, settings, stderr=False)
    r.docs_markdown = Path(r.with_docs.report.markdown).read_text()
    # a marker whose output this version cannot read (damaged, or an older version's): that stage is built again
    marker = ws / "stages" / "retrieval" / MARKER
    damaged = json.loads(marker.read_text())
    damaged["output"]["top_k"] = damaged["output"].pop("k")
    marker.write_text(json.dumps(damaged))
    r.repaired = run_decide(r.docs_cfg, settings, stderr=False)
    r.app_index_after = _index_state(settings.data_dir / "index")
    r.own_index = _index_state(ws / "index")
    shutil.rmtree(ws / "index")  # as in a workspace made before decisions had their own index
    r.reindexed = run_decide(r.docs_cfg, settings, stderr=False)
    r.own_index_again = _index_state(ws / "index")
    return r


OTHER = "# Boiler\n\nThe zebra valve of the boiler is opened with a brass key on Tuesdays only.\n"


def _index_state(index: Path) -> list[tuple[str, str]]:
    """(source, chunking) of every document in an index."""
    db = sqlite3.connect(index / "store.sqlite")
    try:
        return sorted(db.execute("SELECT source, splitter FROM documents").fetchall())
    finally:
        db.close()


def test_a_decision_keeps_its_own_index_and_never_touches_the_apps(decided):
    """The Documents tab's index keeps its document and chunking (retrieval tuning re-chunks only the
    decision's); the decision's index holds only its documents, so nothing else reaches its RAG answers."""
    assert decided.app_index_after == decided.app_index_before == [("other.md", ChunkConfig().key())]
    assert [source for source, _ in decided.own_index] == ["manual.md"]
    runs = RunStore(decided.settings.data_dir / "runs.sqlite")
    for result in (decided.first, decided.with_docs):
        answers = [a for q in runs.get(result.compare.run_id).result.per_question for a in q.answers.values()]
        cited = [source for a in answers for source in a.sources]
        assert cited and all(s.citation.startswith("manual.md") and "zebra" not in s.text for s in cited)


def test_a_workspace_without_its_own_index_fills_it_and_keeps_every_other_stage(decided):
    assert [s.stage for s in decided.reindexed.stages if not s.cached] == ["ingest", "retrieval"]
    assert decided.own_index_again == decided.own_index
    assert decided.reindexed.compare == decided.repaired.compare


def test_first_run_builds_every_stage_and_one_adapter_per_seed(decided):
    assert [s.stage for s in decided.first.stages] == ["ingest", "evalset", "retrieval", "trainset",
                                                       "train-s0", "train-s1", "compare", "report"]
    assert not any(s.cached for s in decided.first.stages)
    assert len(decided.first.adapters) == 2
    printed = json.loads(json.dumps(decided.first.to_dict()))  # `arena decide --json`: plain JSON throughout
    assert printed["recommendation"] == decided.first.compare.recommendation.to_dict()
    assert printed["trainset"]["fit"]["seeds"] == 2 and printed["report"]["markdown"].endswith("report.md")
    assert decided.progress["state"] == "done"


def test_report_has_a_verdict_with_reasons_in_markdown_and_html(decided):
    report = decided.report  # the verdict, or none yet (inconclusive) with the leader in its own field
    assert report["outcome"] in ("clear", "equivalent", "inconclusive") and report["leader"] in decided.cfg.variants
    assert report["verdict"] in (decided.cfg.variants if report["outcome"] != "inconclusive" else [None])
    assert report["why"]
    assert "across seeds" in decided.markdown
    assert decided.html.startswith("<!doctype html>")
    assert "never saw the documents' text" in decided.markdown


def test_seed_spread_is_in_the_report_and_in_the_stored_verdict(decided):
    report = decided.report
    assert [p["adapter"] for p in report["seeds"]["per_seed"]] == decided.first.adapters
    stored = RunStore(decided.settings.data_dir / "runs.sqlite").get(decided.first.compare.run_id).result
    for variant in ("finetuned", "rag+finetuned"):
        spread = report["seeds"]["summary"][variant]
        assert spread["seeds"] == 2 and len(spread["per_seed"]) == 2
        # Seed 0 is the stored run's own adapter; the verdict stored with the run accounts for both seeds.
        assert spread["per_seed"][0] == pytest.approx(report["variants"][variant]["f1"]["mean"])
        assert stored.recommendation.seeds[variant] == spread


def test_retrieval_is_tuned_on_the_training_pairs_and_served_by_the_comparison(decided):
    tuned = StageCache(decided.ws).output("retrieval")
    assert tuned == decided.first.retrieval
    assert tuned.tuned and tuned.questions == 8 and 0 <= tuned.hit_rate <= 1
    stored = RunStore(decided.settings.data_dir / "runs.sqlite").get(decided.first.compare.run_id).result
    assert (stored.settings["rag_k"], stored.settings["rag_mode"]) == (tuned.k, tuned.mode)
    # the index holds the documents chunked by the chosen splitter
    index = sqlite3.connect(decided.ws / "index" / "store.sqlite")
    stored_chunking = index.execute("SELECT DISTINCT splitter FROM documents").fetchall()
    index.close()
    assert stored_chunking == [(ChunkConfig(tuned.splitter).key(),)]
    assert f"k={tuned.k}" in decided.markdown


def test_grounded_rows_hold_passages_from_the_tuned_retrieval(decided):
    assert decided.grounded.count("\n") == decided.report["trainset"]["qa_rows"]
    passages = [len(re.findall(r"^\[\d+\] \(", json.loads(line)["messages"][0]["content"], re.M))
                for line in decided.grounded.splitlines()]
    assert 1 <= max(passages) <= decided.first.retrieval.k  # (long passages are cut to fit max_length)


def test_same_command_again_takes_every_stage_from_the_cache(decided):
    assert all(s.cached for s in decided.again.stages)
    assert decided.after_again == decided.before


def test_changed_comparison_flag_redoes_only_compare_and_report(decided):
    assert [s.stage for s in decided.changed.stages if not s.cached] == ["compare", "report"]
    after = decided.after_changed
    assert {k for k in after if after[k] != decided.before[k]} == {"compare", "report"}


def test_an_unreadable_cached_stage_is_built_again_and_nothing_downstream(decided):
    assert [s.stage for s in decided.repaired.stages if not s.cached] == ["retrieval"]
    assert decided.repaired.retrieval == decided.with_docs.retrieval
    assert decided.repaired.compare == decided.with_docs.compare


def test_training_on_documents_retrains_every_seed_on_every_section(decided):
    """New rows, so the seeds train again; every section is trained on, none held out for validation."""
    redone = [s.stage for s in decided.with_docs.stages if not s.cached]
    assert redone == ["trainset", "train-s0", "train-s1", "compare", "report"]
    texts = [json.loads(line)["text"] for line in (decided.ws / "stages" / "trainset" / "documents.jsonl")
             .read_text().splitlines()]
    sections = [s for s in DecideRun(decided.docs_cfg, decided.settings).runtime.store.sections() if s.text.strip()]
    assert len(texts) == len(sections) > 0
    job_id = StageCache(decided.ws).output("train-s0").job_id
    job = decided.settings.data_dir / "jobs" / job_id
    trained = (job / "train.jsonl").read_text()
    assert all(json.dumps(t)[1:-1] in trained for t in texts)
    assert not any(json.loads(line)["kind"] == "text" for line in (job / "val.jsonl").read_text().splitlines())
    assert "document sections (every section's text trained on" in decided.docs_markdown


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


def _endless_training_args(inputs, data_dir: Path, model: Path) -> list[str]:
    """A decision whose training cannot end before the test acts, on any machine: steps no machine finishes
    and no early stopping. The tests kill or cancel it at an event (a checkpoint, a logged step)."""
    return [str(inputs["docs"]), "--qa", str(inputs["qa"]), "--data-dir", str(data_dir), "--model", str(model),
            "--device", "cpu", "--max-steps", str(UNREACHABLE_STEPS), "--early-stopping-patience", "0",
            "--save-steps", "4", "--batch-size", "2", "--max-length", "96", "--max-new-tokens", "4", "--limit", "3",
            "--no-forgetting", "--no-grounded", "--augment", "", "--variants", "base", "finetuned", "--json"]


def _job_folder(data_dir: Path) -> Path | None:
    found = sorted((data_dir / "jobs").glob("decide-*")) if (data_dir / "jobs").is_dir() else []
    return found[0] if found else None


def _loss_steps(job: Path) -> list[dict]:
    return [r for r in read_metrics(job / "metrics.jsonl") if "loss" in r]


def test_kill_during_training_then_rerun_resumes_without_reingesting(inputs, tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    args = _endless_training_args(inputs, data_dir, tiny_model_dir)
    log = tmp_path / "first.log"
    proc = _decide_proc(args, log)
    # (older checkpoints are rotated away, so any complete one counts)
    _wait(lambda: (job := _job_folder(data_dir)) is not None and last_checkpoint(job) is not None, proc, log)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup
    assert proc.wait(30) == -9
    job = _job_folder(data_dir)
    checkpoint = int(last_checkpoint(job).rsplit("-", 1)[1])
    folder = workspace(data_dir, "decide")
    stages = StageCache(folder)
    finished = {name: stages.marker(name) for name in ("ingest", "evalset", "retrieval", "trainset")}
    assert all(finished.values()) and stages.marker("train-s0") is None
    assert read_progress(folder)["stage"] == "train-s0"
    first_steps = {r["step"]: r["time"] for r in _loss_steps(job)}
    # The rerun: every finished stage is read back, training continues from the checkpoint. Once it has
    # trained past the checkpoint, the Decide tab's cancel (a CANCEL file) stops it.
    log2 = tmp_path / "second.log"
    started = time.time()
    rerun = _decide_proc(args, log2)
    _wait(lambda: any(r["step"] > checkpoint and r["time"] >= started for r in _loss_steps(job)), rerun, log2)
    (folder / CANCEL_FILE).touch()
    assert rerun.wait(600) == 3, log2.read_text()[-3000:]
    assert {name: stages.marker(name) for name in finished} == finished  # not redone: same markers, same times
    assert stages.marker("train-s0") is None and read_progress(folder)["state"] == "cancelled"
    records = _loss_steps(job)
    steps = [r["step"] for r in records]
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] > checkpoint  # no step repeated or missing
    # Resumed, not restarted: the steps up to the checkpoint are the first run's records.
    assert all(r["time"] == first_steps[r["step"]] for r in records if r["step"] <= checkpoint)
    assert all(r["time"] >= started for r in records if r["step"] > checkpoint)


def test_sigterm_cancels_and_keeps_finished_stages(inputs, tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    args = _endless_training_args(inputs, data_dir, tiny_model_dir)
    log = tmp_path / "cancel.log"
    proc = _decide_proc(args, log)
    folder = workspace(data_dir, "decide")
    _wait(lambda: read_progress(folder).get("stage") == "train-s0"
          and "step" in str(read_progress(folder).get("message")), proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(600) == 3, log.read_text()[-3000:]
    assert read_progress(folder)["state"] == "cancelled"
    assert StageCache(folder).marker("ingest") and StageCache(folder).marker("train-s0") is None
    job = _job_folder(data_dir)
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "cancelled"
    assert last_checkpoint(job).endswith(f"checkpoint-{status['step']}")  # the cancel saved where it stopped


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
    job._proc.wait(600)  # a bound for a hung process only: starting Python under load can take minutes
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


@pytest.mark.parametrize("ended,said", [("done", "finished"), ("cancelled", "been cancelled")])
def test_cancel_after_the_run_ended_says_so(tmp_path, ended, said):
    """The run has written its last record but its process is still exiting: Cancel says the run already
    ended and leaves no CANCEL file (before: the tab showed 'cancelled · … · cancelling…')."""
    import subprocess
    import sys

    from assistant.decide.jobs import DecideJob
    from assistant.decide.progress import CANCEL_FILE, PROGRESS_FILE

    job = DecideJob(Settings(data_dir=tmp_path))
    job.folder = tmp_path / "decide" / "walk"
    job.folder.mkdir(parents=True)
    (job.folder / PROGRESS_FILE).write_text(json.dumps({"state": ended, "stage": "train-s0"}))
    job._proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # still exiting
    try:
        with pytest.raises(ArenaError, match=f"walk has already {said}; nothing to cancel"):
            job.cancel()
        assert not (job.folder / CANCEL_FILE).exists()
    finally:
        job._proc.kill()
        job._proc.wait()


def test_a_reloaded_page_shows_the_running_decision(tmp_path, monkeypatch):
    """The Decide tab said 'Not started.' in a reloaded or second page while a run went on: on page load it now
    reads the app's job and follows it (its timer on), through the real Blocks wiring."""
    import gradio as gr

    import ui.decide
    from assistant.decide.jobs import DecideJob
    from assistant.decide.progress import PROGRESS_FILE
    from assistant.runtime import Runtime
    from tests.ui_wiring import load_handlers

    made = []

    class Recorded(DecideJob):  # the tab's own job, so the test can put a run under way
        def __init__(self, settings):
            super().__init__(settings)
            made.append(self)

    monkeypatch.setattr(ui.decide, "DecideJob", Recorded)
    with gr.Blocks() as demo:
        ui.decide.build_decide_tab(Runtime(Settings(data_dir=tmp_path)))
    [on_load] = [fn for fn in load_handlers(demo) if any(o.elem_id == "decide-progress" for o in fn.outputs)]
    bar, *_, timer = on_load.fn()
    assert bar == "Not started." and timer.active is False  # no run: nothing to poll
    job = made[0]
    job.folder = tmp_path / "decide" / "walk"
    job.folder.mkdir(parents=True)
    (job.folder / PROGRESS_FILE).write_text(json.dumps({"state": "running", "stage": "train-s0", "fraction": 0.4,
                                                        "message": "step 3/16", "eta_s": 90}))
    job._proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        bar, *_, timer = on_load.fn()
        assert "running · train-s0 · step 3/16 · 40 % · ETA 1.5 min" in bar and "value='40'" in bar
        assert timer.active is True  # the reloaded page follows the run from here
    finally:
        job._proc.kill()
        job._proc.wait()
