"""What `run_decide` returns: the finished decision, typed (the CLI prints it, the report is written from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from assistant.decide import outputs
from assistant.decide.config import DecideConfig
from assistant.decide.plan import Plan
from assistant.decide.timings import StageTimings


@dataclass(slots=True)
class DecideResult:
    """A finished decision: its config and plan, every stage as run with its output, and the report's files."""

    config: DecideConfig
    workspace: str
    plan: Plan
    stages: list[outputs.StageRun]
    evalset: outputs.EvalsetOutput
    retrieval: outputs.RetrievalChoice
    trainset: outputs.TrainsetOutput
    adapters: list[str]  # one per seed trained, seed 0's first (the one the full comparison scored)
    compare: outputs.CompareOutput
    timings: StageTimings
    report: outputs.ReportFiles | None = None  # paths; None while the report is being written
    tracked: list[str] = field(default_factory=list)  # the experiment trackers the summary was logged to

    def to_dict(self) -> dict:
        """The JSON of `arena decide --json` (and, less the paths, of report.json)."""
        data = asdict(self)
        data.update(data.pop("compare"), plan=self.plan.to_dict(), timings=self.timings.to_dict())
        return {"state": "done", **data}
