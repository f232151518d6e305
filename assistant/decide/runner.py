"""Run a decision: the stages in order, each reused from its cache when its key is unchanged."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import asdict
from pathlib import Path

from assistant.compare.recommend import Recommendation
from assistant.compare.result import ComparisonResult
from assistant.decide.comparison import run_compare
from assistant.decide.config import DecideConfig
from assistant.decide.plan import make_plan
from assistant.decide.progress import CANCEL_FILE, DecideCancelled, Reporter
from assistant.decide.report import write_decision_report
from assistant.decide.stages import DecideRun
from assistant.decide.timings import collect
from assistant.decide.tracking import log_decision


def plan_for(cfg: DecideConfig, settings):
    """The plan of `cfg`, marking the stages this data folder already holds."""
    decide_run = DecideRun(cfg, settings)
    return make_plan(cfg, settings, decide_run.cache, decide_run.keys)


def _estimates(plan, seeds: int) -> dict[str, float]:
    """Seconds per stage for the progress weights; training is split evenly over its seeds."""
    est = plan.estimates()
    train = est.pop("train", 0.0)
    out = {}
    for stage, seconds in est.items():
        out[stage] = seconds
        if stage == "trainset":
            out.update({f"train-s{i}": train / max(seeds, 1) for i in range(seeds)})
    return out


def _on_sigterm(folder: Path):
    def handler(signum, frame):
        (folder / CANCEL_FILE).touch()  # acted on at the next progress update (training: at its next step)
    return handler


def _install_cancel_signal(folder: Path) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm(folder))


def run_decide(cfg: DecideConfig, settings, runtime=None, stderr: bool = True) -> dict:
    """ingest → evalset → trainset → train (per seed) → compare → report; returns the summary dict."""
    decide_run = DecideRun(cfg, settings, runtime)
    folder = decide_run.folder
    folder.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(folder / "decide.yaml")
    (folder / CANCEL_FILE).unlink(missing_ok=True)
    plan = make_plan(cfg, settings, decide_run.cache, decide_run.keys)
    rep = Reporter(folder, _estimates(plan, plan.seeds if cfg.trains else 0), stderr=stderr)
    rep.write({"state": "starting", "plan": plan.to_dict(), "pid": os.getpid()})
    _install_cancel_signal(folder)
    stages: list[dict] = []
    outputs: dict[str, dict] = {}  # stage -> output, for the sub-stage timings

    def step(stage: str, build) -> dict:
        rep.begin(stage)
        output, reused = decide_run.cache.run(stage, decide_run.keys[stage], lambda tmp: build(tmp))
        outputs[stage] = output
        marker = decide_run.cache.marker(stage) or {}
        stages.append({"stage": stage, "seconds": marker.get("seconds", 0.0), "cached": reused,
                       "key": decide_run.keys[stage][:12]})
        rep.end(stage, reused)
        return output

    try:
        ingest = step("ingest", lambda tmp: decide_run.ingest(rep, tmp))
        evalset = step("evalset", lambda tmp: decide_run.evalset(rep, tmp, ingest["sources"]))
        retrieval = step("retrieval", lambda tmp: decide_run.retrieval(rep, tmp))
        trainset = step("trainset", lambda tmp: decide_run.trainset(rep, tmp, plan.other_s, plan.seed_compare_s))
        adapters = _train_all(decide_run, rep, step, trainset) if cfg.trains else []
        compare = step("compare", lambda tmp: run_compare(decide_run, rep, tmp, adapters))
        timings = collect(stages, plan.stages, outputs)  # before the report: the report shows them
        info = {"config": asdict(cfg), "plan": plan.to_dict(), "stages": list(stages), "evalset": evalset,
                "retrieval": retrieval, "trainset": trainset, "adapters": adapters, "timings": timings.to_dict()}
        report = step("report", lambda tmp: write_decision_report(_result(decide_run), info, tmp))
    except DecideCancelled as exc:
        rep.finish("cancelled", error=str(exc))
        raise
    except Exception as exc:
        rep.finish("failed", error=str(exc))
        raise
    paths = {k: str(decide_run.cache.folder("report") / v) for k, v in report.items()}
    summary = {"state": "done", "workspace": str(folder), "plan": plan.to_dict(), "stages": stages,
               "recommendation": compare["recommendation"], "run_id": compare["run_id"], "seeds": compare["seeds"],
               "adapters": adapters, "report": paths,
               "timings": collect(stages, plan.stages, outputs).to_dict()}  # with the report stage's own time
    summary["tracked"] = log_decision(cfg.report_to, Recommendation.from_dict(compare["recommendation"]), asdict(cfg),
                                      folder)
    rep.finish("done", run_id=compare["run_id"], report=paths, recommendation=compare["recommendation"])
    return summary


def _result(decide_run: DecideRun) -> ComparisonResult:
    path = decide_run.cache.folder("compare") / "result.json"
    return ComparisonResult.from_dict(json.loads(path.read_text(encoding="utf-8")), f"the comparison in {path}")


def _train_all(decide_run: DecideRun, rep: Reporter, step, trainset: dict) -> list[str]:
    """Train the seeds that fit the budget; a cached seed whose adapter was deleted is trained again."""
    registry = decide_run.runtime.registry
    adapters = []
    for i in range(decide_run.seeds_to_train(trainset)):
        stage = f"train-s{i}"
        hit = decide_run.cache.cached(stage, decide_run.keys[stage])
        if hit and hit["output"]["adapter"] not in registry.names():
            (decide_run.cache.folder(stage) / "stage.json").unlink()
        out = step(stage, lambda tmp, i=i: decide_run.train(rep, tmp, i, trainset))
        _install_cancel_signal(decide_run.folder)  # the training job installed its own handler
        adapters.append(out["adapter"])
    return adapters
