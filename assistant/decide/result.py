"""What `run_decide` returns: the finished decision, typed (the CLI prints it, the report is written from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from assistant.decide.config import DecideConfig
from assistant.decide.outputs import (
    CompareOutput,
    EvalsetOutput,
    ReportFiles,
    RetrievalChoice,
    StageRun,
    TrainsetOutput,
)
from assistant.decide.plan import Plan
from assistant.decide.timings import StageTimings


@dataclass(slots=True)
class DecideResult:
    """A finished decision: its config and plan, every stage as run with its output, and the report's files."""

    config: DecideConfig
    workspace: str
    plan: Plan
    stages: list[StageRun]
    evalset: EvalsetOutput
    retrieval: RetrievalChoice
    trainset: TrainsetOutput
    adapters: list[str]  # one per seed trained, seed 0's first (the one the full comparison scored)
    compare: CompareOutput
    timings: StageTimings
    report: ReportFiles | None = None  # paths; None while the report is being written
    tracked: list[str] = field(default_factory=list)  # the experiment trackers the summary was logged to

    def to_dict(self) -> dict:
        """The JSON of `arena decide --json` (and, less the paths, of report.json)."""
        return {"state": "done", "workspace": self.workspace, "config": asdict(self.config),
                "plan": self.plan.to_dict(), "stages": [asdict(s) for s in self.stages],
                "evalset": asdict(self.evalset), "retrieval": asdict(self.retrieval),
                "trainset": asdict(self.trainset), "adapters": self.adapters, **asdict(self.compare),
                "timings": self.timings.to_dict(), "report": self.report and asdict(self.report),
                "tracked": self.tracked}
