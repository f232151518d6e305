"""Run a decision: the stages in order, each reused from its cache when its key is unchanged."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import asdict
from pathlib import Path

from assistant.compare.result import ComparisonResult
from assistant.decide.comparison import run_compare
from assistant.decide.config import DecideConfig
from assistant.decide.outputs import StageRun, TrainsetOutput
from assistant.decide.plan import make_plan, seeds_that_fit
from assistant.decide.progress import CANCEL_FILE, DecideCancelled, Reporter
from assistant.decide.report import write_decision_report
from assistant.decide.result import DecideResult
from assistant.decide.stages import DecideRun
from assistant.decide.timings import collect
from assistant.decide.tracking import log_decision


def plan_for(cfg: DecideConfig, settings):
    """The plan of `cfg`, marking the stages this data folder already holds."""
    decide_run = DecideRun(cfg, settings)
    return make_plan(cfg, settings, decide_run.cache, decide_run.keys)


def _install_cancel_signal(folder: Path) -> None:
    """SIGTERM writes the CANCEL file, acted on at the next progress update (training: at its next step)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: (folder / CANCEL_FILE).touch())


def run_decide(cfg: DecideConfig, settings, runtime=None, stderr: bool = True) -> DecideResult:
    """ingest → evalset → trainset → train (per seed) → compare → report."""
    decide_run = DecideRun(cfg, settings, runtime)
    folder = decide_run.folder
    folder.mkdir(parents=True, exist_ok=True)
    decide_run.rebuild_missing_index()
    cfg.to_yaml(folder / "decide.yaml")
    (folder / CANCEL_FILE).unlink(missing_ok=True)
    plan = make_plan(cfg, settings, decide_run.cache, decide_run.keys)
    rep = Reporter(folder, plan.estimates(), stderr=stderr)
    rep.write({"state": "starting", "plan": plan.to_dict(), "pid": os.getpid()})
    _install_cancel_signal(folder)
    stages: list[StageRun] = []
    outputs: dict[str, object] = {}  # stage -> output, for the sub-stage timings

    def step(stage: str, build):
        rep.begin(stage)
        output, ran = decide_run.cache.run(stage, decide_run.keys[stage], build)
        outputs[stage] = output
        stages.append(ran)
        rep.end(stage, ran.cached)
        return output

    try:
        ingest = step("ingest", lambda tmp: decide_run.ingest(rep, tmp))
        evalset = step("evalset", lambda tmp: decide_run.evalset(rep, tmp, ingest.sources))
        retrieval = step("retrieval", lambda tmp: decide_run.retrieval(rep, tmp))
        trainset = step("trainset", lambda tmp: decide_run.trainset(rep, tmp, retrieval, plan.other_s,
                                                                      plan.seed_compare_s, plan.nll_s))
        adapters = _train_all(decide_run, rep, step, trainset) if cfg.trains else []
        nll = not (cfg.trains and trainset.fit and not trainset.fit.reference_nll)  # a short budget drops it
        compare = step("compare", lambda tmp: run_compare(decide_run, rep, tmp, adapters, retrieval, nll))
        # timed before the report (the report shows them), then again with the report stage's own time
        result = DecideResult(cfg, str(folder), plan, stages, evalset, retrieval, trainset, adapters, compare,
                              collect(stages, plan.stages, outputs))
        report = step("report", lambda tmp: write_decision_report(_result(decide_run), result, tmp))
    except Exception as exc:
        rep.finish("cancelled" if isinstance(exc, DecideCancelled) else "failed", error=str(exc))
        raise
    result.report = report.under(decide_run.cache.folder("report"))
    result.timings = collect(stages, plan.stages, outputs)
    result.tracked = log_decision(compare.recommendation, cfg, folder)
    rep.finish("done", run_id=compare.run_id, report=asdict(result.report),
               recommendation=compare.recommendation.to_dict())
    return result


def _result(decide_run: DecideRun) -> ComparisonResult:
    path = decide_run.cache.folder("compare") / "result.json"
    return ComparisonResult.from_dict(json.loads(path.read_text(encoding="utf-8")), f"the comparison in {path}")


def _train_all(decide_run: DecideRun, rep: Reporter, step, trainset: TrainsetOutput) -> list[str]:
    """Train the seeds that fit the budget; a cached seed whose adapter was deleted is trained again."""
    registry = decide_run.runtime.registry
    adapters = []
    for i in range(seeds_that_fit(decide_run.cfg, trainset.fit)):
        stage = f"train-s{i}"
        hit = decide_run.cache.cached(stage, decide_run.keys[stage])
        if hit and hit.adapter not in registry.names():
            (decide_run.cache.folder(stage) / "stage.json").unlink()
        out = step(stage, lambda tmp, i=i: decide_run.train(rep, tmp, i, trainset.fit))
        _install_cancel_signal(decide_run.folder)  # the training job installed its own handler
        adapters.append(out.adapter)
    return adapters
