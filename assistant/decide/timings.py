"""Where a decide run's minutes went: wall time per stage and sub-stage (paraphrases and data, optimizer steps,
answering, reference NLL, router, probes...), next to what the plan estimated, stored with the run and shown in
the report. Cached stages show as cached (0 s): they cost nothing this time.

The comparison's sub-stages are timed from the phase names run_comparison already reports through its progress
callback (PhaseClock), so the comparison code needs no timing of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from assistant.decide.outputs import CompareOutput, StageRun, TrainOutput
from assistant.decide.plan import PlanStage

OVER_BUDGET = 1.3  # the plan's tolerance: a run past this many times its budget says so in its warnings
# run_comparison's progress texts (assistant/comparison.py, compare/resume.py) -> the sub-stage they start
PHASES = (("answering", "answering"), ("reference likelihoods", "reference NLL"), ("scoring", "scoring"),
          ("LLM judge", "judge"), ("router", "router"), ("forgetting check", "probes (forgetting, bias)"),
          ("bias probe", "probes (forgetting, bias)"), ("adapter on", "learned check"))


def _unseeded(text: str) -> str:
    """The decide comparison prefixes a further seed's texts with 'seed K: '."""
    return text.split(": ", 1)[1] if text.startswith("seed ") and ": " in text else text


def phase_of(text: str) -> str | None:
    """The sub-stage a progress text starts or continues ('seed 2: answering: 3/40' -> 'answering')."""
    text = _unseeded(text)
    return next((name for prefix, name in PHASES if text.startswith(prefix)), None)


class PhaseClock:
    """Wall seconds per comparison sub-stage: each progress call with a known phase closes the previous one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.phase, self.since = None, clock()

    def mark(self, text: str) -> None:
        phase = phase_of(text)
        if phase is None and _unseeded(text) != "done":
            return  # a message inside the current phase
        now = self.clock()
        if self.phase:
            self.seconds[self.phase] = round(self.seconds.get(self.phase, 0.0) + now - self.since, 3)
        self.phase, self.since = phase, now

    def wrap(self, progress: Callable[[float, str], None]) -> Callable[[float, str], None]:
        """progress, with every call also marking the clock (before it, so a cancel still counts the time)."""
        def timed(fraction: float, text: str) -> None:
            self.mark(text)
            progress(fraction, text)
        return timed

    def stop(self) -> dict[str, float]:
        self.mark("done")
        return dict(self.seconds)


@dataclass
class Timing:
    """One row: a stage ("train-s0") or a sub-stage ("train-s0 · optimizer steps"); planned_s only on stages
    the plan estimates (the train row covers every seed)."""

    stage: str
    seconds: float
    cached: bool = False
    planned_s: float | None = None
    sub: bool = False


@dataclass
class StageTimings:
    rows: list[Timing] = field(default_factory=list)

    @property
    def took_s(self) -> float:
        return round(sum(r.seconds for r in self.rows if not r.sub), 1)

    @property
    def planned_s(self) -> float:
        """The plan's estimate of the stages that ran (cached ones were planned at 0)."""
        return round(sum(r.planned_s or 0.0 for r in self.rows if not r.sub and not r.cached), 1)

    def ratio(self) -> float | None:
        return round(self.took_s / self.planned_s, 2) if self.planned_s and self.took_s else None

    def headline(self) -> str:
        """'plan said 12.0 min, took 9.5 min (0.79 x the plan)'."""
        ratio = self.ratio()
        return (f"plan said {self.planned_s / 60:.1f} min, took {self.took_s / 60:.1f} min"
                + (f" ({ratio:.2f} × the plan)" if ratio else " (every stage cached)"))

    def over_budget(self, budget_minutes: float) -> str:
        """A warning when the stages took over 1.3 x the budget (the plan's own tolerance), naming the stages that
        ran furthest past their plan; "" within it or without a budget."""
        if not budget_minutes or self.took_s <= OVER_BUDGET * budget_minutes * 60:
            return ""
        late = sorted((r for r in self.rows if not r.sub and not r.cached and r.planned_s
                       and r.seconds > r.planned_s), key=lambda r: r.planned_s / r.seconds)[:2]
        return (f"the run took {self.took_s / 60:.1f} min, {self.took_s / 60 / budget_minutes:.1f} × its "
                f"{budget_minutes:g} min budget"
                + ("; furthest past their plan: " if late else "")
                + ", ".join(f"{r.stage} {r.seconds:.0f} s (planned {r.planned_s:.0f} s)" for r in late)
                + " (a busy machine, or stages that cannot shrink to the budget: see the plan's notes)")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows for the report's table helpers."""
        rows = []
        for r in self.rows:
            took = "cached" if r.cached else f"{r.seconds:.1f}"
            planned = "" if r.planned_s is None else "cached" if r.cached else f"{r.planned_s:.0f}"
            ratio = f"{r.seconds / r.planned_s:.2f}" if r.planned_s and not r.cached and r.seconds else ""
            rows.append([r.stage, took, planned, ratio])
        return ["stage", "took s", "planned s", "took / planned"], rows

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "took_s": self.took_s, "planned_s": self.planned_s,
                "ratio": self.ratio()}


def collect(stages: list[StageRun], plan_stages: list[PlanStage], outputs: dict[str, object]) -> StageTimings:
    """The run's timings: `stages` as run, the plan's rows (fresh "seconds" per stage; "train" covers every seed),
    and the stage outputs holding sub-stage times: a training seed's job metrics ("train_seconds": the optimizer
    loop; the rest is paraphrases, data, model load and save) and the comparison's phases."""
    planned = {s.stage: s.seconds for s in plan_stages}
    trains = [s for s in stages if s.stage.startswith("train-s")]
    out = StageTimings()
    for s in stages:
        seconds = 0.0 if s.cached else float(s.seconds)
        plan_s = planned.get("train", 0.0) / max(1, len(trains)) if s.stage.startswith("train-s") \
            else planned.get(s.stage)
        out.rows.append(Timing(s.stage, round(seconds, 1), s.cached, None if plan_s is None else round(plan_s, 1)))
        if not s.cached:
            out.rows += _subs(s.stage, seconds, outputs.get(s.stage))
    return out


def _subs(name: str, seconds: float, output) -> list[Timing]:
    if isinstance(output, TrainOutput) and output.metrics.get("train_seconds") is not None:
        steps = float(output.metrics["train_seconds"])
        return [Timing(f"{name} · paraphrases, data, model load and save", round(max(0.0, seconds - steps), 1),
                       sub=True),
                Timing(f"{name} · optimizer steps{_steps_done(output.metrics)}", round(steps, 1), sub=True)]
    phases = output.phases if isinstance(output, CompareOutput) else {}
    return [Timing(f"{name} · {phase}", round(s, 1), sub=True) for phase, s in phases.items()]


def _steps_done(metrics: dict) -> str:
    """' (80 of 160 steps, stopped early)': early stopping is what a plan cannot foresee, so the table says it."""
    done, planned = metrics.get("steps"), metrics.get("max_steps")
    if not done or not planned:
        return ""
    return f" ({done} of {planned} steps{', stopped early' if metrics.get('early_stopped_at') else ''})"
