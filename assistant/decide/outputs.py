"""What each stage of `arena decide` hands the next ones, as typed records (assistant/decide/stages.py builds them).

Each is stored as the ``output`` of its stage's marker (cache.py) and read back with every field checked by
pydantic against the annotations (foundation/config_file.py): an unknown or missing field, or a value of the
wrong type, is an ArenaError naming the stage and the file. Dataclasses use slots: a misspelt attribute fails.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from pathlib import Path

from pydantic import with_config

from assistant.compare.recommend import Recommendation
from foundation.config_file import STRICT, checked
from foundation.errors import ArenaError


@with_config(STRICT)
@dataclass(slots=True)
class IngestOutput:
    sources: list[str]  # the documents in the index (added, replaced or unchanged)
    chunks: int
    errors: list[str]  # files that could not be read, by name
    generation: int  # the store generation the ingest committed


@with_config(STRICT)
@dataclass(slots=True)
class EvalsetOutput:
    eval: int  # evaluation questions (eval.jsonl)
    train: int  # training pairs left after the leakage guard (train_pairs.jsonl)
    dropped_leaks: int  # training pairs dropped as copies or near-duplicates of evaluation questions
    origin: str  # where the evaluation questions came from, in words
    questions_by: str = ""  # "heuristic" when the heading/definition heuristic drew them from the documents
    malformed: dict[str, int] = field(default_factory=dict)  # the heuristic's drops, per reason
    generator: dict = field(default_factory=dict)  # what --generator did (training/doc_questions.py's info)


@with_config(STRICT)
@dataclass(slots=True)
class RetrievalChoice:
    """The retrieval settings the RAG variants are served with (tuned on the training pairs, else defaults)."""

    splitter: str
    mode: str
    k: int
    tuned: bool
    reason: str = ""  # why not tuned
    hit_rate: float | None = None  # tuned: the share of training pairs whose answer was retrieved
    questions: int = 0  # tuned: the training pairs it was chosen on


@with_config(STRICT)
@dataclass(slots=True)
class TrainingFit:
    """Seeds and steps per seed that fit the budget (plan.training_fit)."""

    seeds: int
    steps_per_seed: int
    wanted_steps: int  # the training job's own fitted plan
    capped: bool  # the budget cut the steps
    step_s: float
    speed_basis: str
    notes: list[str]
    tokens_per_row: float
    paraphrase_s: float
    bf16: bool
    at_floor: bool  # the other stages left training less than one epoch of one seed
    # What a short budget cut before the floor (plan.training_fit): rewrites per training question (-1: the job's
    # own --augment), the reference NLL of the comparison, and the steps as epochs of the rows the job really
    # builds (0: steps_per_seed as it is), as paraphrases kept by the filters are only known once written.
    paraphrases: int = -1
    reference_nll: bool = True
    epochs: float = 0.0
    evals_s: float = 0.0  # a seed's validation passes (and their checkpoints), planned
    batch_size: int = 0  # rows per step a short budget trains with (plan.SHORT_BATCH; 0: the job's own)


@with_config(STRICT)
@dataclass(slots=True)
class TrainsetOutput:
    qa_rows: int
    grounded_rows: int
    document_rows: int
    rows: int
    fit: TrainingFit | None = None  # None when no variant trains


@with_config(STRICT)
@dataclass(slots=True)
class TrainOutput:
    adapter: str
    job_id: str
    resumed: bool  # continued from a checkpoint
    reused_job: bool = False  # the job had finished, only the stage marker was missing
    metrics: dict = field(default_factory=dict)  # the job's own summary (train_seconds, steps, ...)


@with_config(STRICT)
@dataclass(slots=True)
class CompareOutput:
    run_id: int
    recommendation: Recommendation
    max_new_tokens: int
    questions: int
    seeds: dict  # variant -> spread across seeds (Recommendation.seeds)
    phases: dict[str, float]  # seconds per sub-stage (timings.PhaseClock)


@with_config(STRICT)
@dataclass(slots=True)
class ReportFiles:
    """The decision report's files: names in the report stage's folder, or paths once placed (`under`)."""

    markdown: str
    html: str
    json: str
    comparison: str

    def under(self, folder: Path) -> ReportFiles:
        return ReportFiles(*(str(Path(folder) / name) for name in astuple(self)))


@dataclass(slots=True)
class StageRun:
    """One stage as this run met it: built (seconds) or reused from its cache."""

    stage: str
    seconds: float
    cached: bool
    key: str  # the first 12 characters of its content key


TYPES = {"ingest": IngestOutput, "evalset": EvalsetOutput, "retrieval": RetrievalChoice,
         "trainset": TrainsetOutput, "compare": CompareOutput, "report": ReportFiles}


def read_output(stage: str, data, where: Path):
    """The stage's typed output from its stored JSON; ArenaError naming the stage and the file when it does not
    fit (written by an older version of the tool, or damaged)."""
    cls = TrainOutput if stage.startswith("train-s") else TYPES[stage]
    if not isinstance(data, dict):
        raise ArenaError(f"the {stage} stage's output in {where} is not a mapping")
    try:
        return checked(cls, data)
    except ArenaError as exc:
        raise ArenaError(f"the {stage} stage's output in {where} cannot be read ({exc}); run arena decide again "
                         "to rebuild it") from None
