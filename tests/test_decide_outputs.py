"""The typed stage outputs of `arena decide` (assistant/decide/outputs.py): each round-trips through the JSON of its
stage marker; a marker written by the previous version still reads; an old or damaged output is rebuilt by a run,
counted as not cached by the plan and refused by name (stage and file) by `arena export --from-decision`; a
misspelt attribute raises."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from assistant.compare.recommend import Recommendation
from assistant.decide import outputs
from assistant.decide.cache import MARKER, StageCache
from assistant.decide.outputs import (
    CompareOutput,
    EvalsetOutput,
    IngestOutput,
    ReportFiles,
    RetrievalChoice,
    TrainingFit,
    TrainOutput,
    TrainsetOutput,
    read_output,
)
from assistant.decide.runner import plan_for
from assistant.decide.stages import DecideRun
from assistant.ship.strategy import from_decision
from foundation.errors import ArenaError
from foundation.settings import Settings
from tests.test_decide import inputs, small_config  # noqa: F401 (inputs is a fixture)

REC = Recommendation("rag", "rag leads", True, "f1", best="rag", means={"rag": 0.5, "base": 0.2}, outcome="clear",
                     leader="rag")
FIT = TrainingFit(2, 40, 60, True, 1.5, "measured", ["budget cut"], 120.0, 3.0, False, False)
SAMPLES = {
    "ingest": IngestOutput(["manual.md"], 12, ["bad.pdf: unreadable"], 3),
    "evalset": EvalsetOutput(5, 20, 2, "held-out document sections", questions_by="heuristic",
                             malformed={"fragment": 3}, generator={"spec": "base", "asked": 10, "kept": 4}),
    "retrieval": RetrievalChoice("headers", "hybrid", 4, tuned=True, hit_rate=0.75, questions=20),
    "trainset": TrainsetOutput(20, 20, 0, 40, FIT),
    "train-s0": TrainOutput("decide-s0", "decide-x-s0-abc", resumed=True, metrics={"train_seconds": 12.5}),
    "compare": CompareOutput(7, REC, 32, 5, {"finetuned": {"mean": 0.3, "sd": 0.1, "seeds": 2}},
                             {"answering": 10.0}),
    "report": ReportFiles("report.md", "report.html", "report.json", "comparison.html"),
}
# What the version before the typed outputs wrote in each marker (the same keys, so its workspaces stay cached),
# and its trainset output, whose training fit sat flat beside the row counts (rebuilt, never misread).
PREVIOUS = {
    "ingest": {"sources": ["manual.md"], "chunks": 12, "errors": [], "generation": 1},
    "evalset": {"eval": 3, "train": 8, "dropped_leaks": 0, "origin": "held out from --qa"},
    "retrieval": {"splitter": "recursive", "mode": "dense", "k": 4, "tuned": False, "reason": "turned off"},
    "train-s0": {"adapter": "decide-s0", "job_id": "j", "resumed": False, "metrics": {"train_seconds": 3.0}},
    "compare": {"run_id": 1, "recommendation": REC.to_dict(), "max_new_tokens": 4, "questions": 3, "seeds": {},
                "phases": {"answering": 1.0}},
    "report": {"markdown": "report.md", "html": "report.html", "json": "report.json",
               "comparison": "comparison.html"},
}
OLD_TRAINSET = {"qa_rows": 8, "grounded_rows": 0, "document_rows": 0, "rows": 8, **{
    k: v for k, v in asdict(FIT).items()}}


@pytest.mark.parametrize("stage", list(SAMPLES))
def test_every_stage_output_round_trips_through_its_marker(stage, tmp_path):
    sample = SAMPLES[stage]
    assert read_output(stage, json.loads(json.dumps(asdict(sample))), tmp_path) == sample
    built, ran = StageCache(tmp_path).run(stage, "k1", lambda folder: sample)
    assert built is sample and not ran.cached
    again = StageCache(tmp_path)  # a later run, reading the marker from disk
    assert again.cached(stage, "k1") == sample and again.output(stage) == sample
    assert again.run(stage, "k1", lambda folder: pytest.fail("rebuilt"))[1].cached


@pytest.mark.parametrize("stage", list(PREVIOUS))
def test_markers_of_the_previous_version_still_read(stage, tmp_path):
    got = read_output(stage, PREVIOUS[stage], tmp_path / "stage.json")
    assert {k: v for k, v in asdict(got).items() if k in PREVIOUS[stage]} == PREVIOUS[stage]


def _write_marker(cache: StageCache, stage: str, key: str, output) -> None:
    cache.folder(stage).mkdir(parents=True, exist_ok=True)
    (cache.folder(stage) / MARKER).write_text(json.dumps({"key": key, "output": output, "seconds": 1.0,
                                                          "finished": 0.0}))


DAMAGED = [("trainset", OLD_TRAINSET, "unknown setting seeds"),  # the previous version's flat training fit
           ("retrieval", {**PREVIOUS["retrieval"], "kk": 4}, "kk"),  # an unknown field
           ("train-s1", {"job_id": "j", "resumed": False}, "adapter"),  # a missing one
           ("evalset", {**PREVIOUS["evalset"], "eval": "three"}, "eval"),  # a wrong type
           ("compare", ["not", "a", "mapping"], "not a mapping"),
           ("ingest", None, "not a mapping")]  # a marker without its output


@pytest.mark.parametrize(("stage", "output", "named"), DAMAGED)
def test_an_old_or_damaged_output_is_rebuilt_by_a_run_and_refused_by_name_elsewhere(stage, output, named,
                                                                                       tmp_path):
    cache = StageCache(tmp_path)
    _write_marker(cache, stage, "k1", output)
    with pytest.raises(ArenaError) as err:
        cache.output(stage)
    assert f"the {stage} stage's output in {cache.folder(stage) / MARKER}" in str(err.value)
    assert named in str(err.value)
    assert cache.cached(stage, "k1") is None  # not cached: the plan shows it to do, a run builds it again
    sample = SAMPLES["train-s0" if stage.startswith("train-s") else stage]
    built, ran = cache.run(stage, "k1", lambda folder: sample)
    assert not ran.cached and cache.cached(stage, "k1") == sample


def test_the_plan_counts_an_unreadable_cached_stage_as_to_do(inputs, tmp_path, tiny_model_dir):  # noqa: F811
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu")
    cfg = small_config(inputs)
    decide_run = DecideRun(cfg, settings)
    _write_marker(decide_run.cache, "evalset", decide_run.keys["evalset"], {**PREVIOUS["evalset"], "eval": None})
    _write_marker(decide_run.cache, "trainset", decide_run.keys["trainset"], OLD_TRAINSET)
    _write_marker(decide_run.cache, "ingest", decide_run.keys["ingest"], PREVIOUS["ingest"])
    cached = {s.stage: s.cached for s in plan_for(cfg, settings).stages}
    assert cached["ingest"] and not cached["evalset"] and not cached["trainset"]


def test_export_from_a_decision_with_a_damaged_stage_names_it(tmp_path):
    cache = StageCache(tmp_path / "faq")
    _write_marker(cache, "report", "k", PREVIOUS["report"])
    _write_marker(cache, "compare", "k", {k: v for k, v in PREVIOUS["compare"].items() if k != "run_id"})
    with pytest.raises(ArenaError, match=r"the compare stage's output in .*stage\.json cannot be read.*run_id"):
        from_decision(tmp_path / "faq", registry=None, settings=None)
    _write_marker(cache, "compare", "k", PREVIOUS["compare"])
    _write_marker(cache, "retrieval", "k", {**PREVIOUS["retrieval"], "k": "four"})
    with pytest.raises(ArenaError, match="the retrieval stage's output"):
        from_decision(tmp_path / "faq", registry=None, settings=None)


@pytest.mark.parametrize("sample", [*SAMPLES.values(), FIT, outputs.StageRun("ingest", 1.0, False, "abc")],
                         ids=lambda s: type(s).__name__)
def test_a_misspelt_attribute_raises(sample):
    first = fields(sample)[0].name
    with pytest.raises(AttributeError):
        setattr(sample, first + "s", getattr(sample, first))
    with pytest.raises(AttributeError):
        getattr(sample, first + "s")
