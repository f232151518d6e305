"""The comparison result as typed records: what a run measured, what it concluded, and how it is stored.

`arena compare` builds one `ComparisonResult` (assistant/compare/scoring.py); every reader (why-sentences,
reports, the Compare and Decide tabs, decide, ship) reads its attributes, so a misspelt field fails at once
instead of reading a missing key as "not measured". `to_dict()` is the JSON of `arena compare --json` and of
runs.sqlite; `from_dict()` reads it back, converting a run stored before the schema had a version.
Dataclasses use slots: assigning a misspelt attribute fails too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from assistant.compare.bias import BiasReport
from assistant.compare.forgetting import ForgettingReport
from assistant.compare.recommend import Recommendation
from foundation.config_file import checked, plain
from foundation.errors import ArenaError

SCHEMA_VERSION = 1
# Keys every stored result has had since runs were first stored; without them there is nothing to show.
CORE_KEYS = ("variants", "recommendation", "per_question")


@dataclass(frozen=True, slots=True)
class Interval:
    """A metric's mean with its 95 % bootstrap interval over ``n`` scored questions (mean None: not scored)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = 0


Summary = dict[str, Interval]  # metric -> interval, one per variant


def mean_of(summary: Summary, metric: str) -> float | None:
    """The metric's mean in one variant's summary; None when it was not measured."""
    interval = summary.get(metric)
    return interval.mean if interval else None


def summaries(data: dict) -> dict[str, Summary]:
    """{variant: {metric: Interval}} from stats.summarize/paired_against's (or stored) dicts."""
    return checked(dict[str, Summary], data, "summaries")


@dataclass(frozen=True, slots=True)
class Source:
    """A retrieved passage an answer was given."""

    citation: str
    text: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """The LLM judge's grade of one answer (verdict None: its reply named none)."""

    verdict: str | None
    reason: str
    reply: str


@dataclass(slots=True)
class VariantAnswer:
    """One variant's answer to one question with its scores (metric -> value, None: not measured)."""

    text: str
    scores: dict[str, float | None]
    adapter: str | None = None
    sources: list[Source] = field(default_factory=list)
    judge: JudgeVerdict | None = None
    routed_to: str | None = None           # the routed column: the variant whose answer it took
    router_probability: float | None = None


@dataclass(slots=True)
class QuestionRecord:
    """One evaluation question, its reference and every variant's answer."""

    question: str
    reference: str
    source: str
    answers: dict[str, VariantAnswer]
    disagree: bool = False


@dataclass(frozen=True, slots=True)
class VariantCost:
    """What a variant costs on this machine (the tie-breakers of the verdict, recommend.COST_ORDER)."""

    training_seconds: float = 0.0
    extra_prompt_tokens: float = 0.0
    memory_mb: float = 0.0
    seconds_per_answer: float | None = None


def cost_table(costs: dict[str, VariantCost]) -> dict[str, dict]:
    """The plain {variant: {cost: value}} mapping the verdict rule (recommend.py) takes."""
    return {v: asdict(c) for v, c in costs.items()}


@dataclass(frozen=True, slots=True)
class RouterSummary:
    """What the routed column picked (variant -> questions) and how its router was trained."""

    picks: dict[str, int]
    folds: int
    stored_labels: int
    seconds: float
    backend: str


@dataclass(frozen=True, slots=True)
class JudgeSummary:
    """The LLM judge over the run: answers judged, malformed replies, verdict counts per variant."""

    judged: int
    malformed: int
    counts: dict[str, dict[str, int]]
    malformed_examples: list[dict]


@dataclass(frozen=True, slots=True)
class LearnedCheck:
    """The finetuned variant on a sample of its own training questions next to its held-out scores."""

    adapter: str
    variant: str
    n: int
    train: Summary
    heldout: Summary


@dataclass(slots=True)
class ComparisonResult:
    """Everything one comparison run measured and concluded.

    variants: per-variant summaries; paired: each variant minus base per metric; per_question: the records the
    summaries come from; recommendation: the verdict (recommend.py); why: a sentence per other variant;
    forgetting/bias: the adapter probes; learned: the adapter on its own training questions; seeds: decide's
    per-seed adapters and their spread ({} outside decide); settings: the run's settings as stored."""

    variants: dict[str, Summary]
    paired: dict[str, Summary]
    per_question: list[QuestionRecord]
    recommendation: Recommendation
    costs: dict[str, VariantCost] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    router: RouterSummary | None = None
    judge: JudgeSummary | None = None
    forgetting: list[ForgettingReport] = field(default_factory=list)
    bias: list[BiasReport] = field(default_factory=list)
    learned: LearnedCheck | None = None
    run_id: int | None = None
    seeds: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def metric(self) -> str:
        """The primary (decision) metric of the run."""
        return self.recommendation.metric

    def to_dict(self) -> dict:
        """The JSON-ready form (runs.sqlite, `arena compare --json`, decide's result.json)."""
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "comparison result") -> ComparisonResult:
        """Read a stored result; `origin` names it in the error when it cannot be read (e.g. 'run 3 in ...').
        pydantic builds the nested records from the annotations above, so a field is declared once."""
        data = upgrade(data, origin)
        try:  # Recommendation.from_dict converts a verdict stored before its outcomes
            rec = asdict(Recommendation.from_dict(data["recommendation"]))
            return checked(cls, {**data, "recommendation": rec, "schema_version": SCHEMA_VERSION}, origin)
        except (ArenaError, TypeError) as exc:  # TypeError: a stored verdict with a field of the wrong shape
            raise ArenaError(f"{origin} cannot be read as a comparison result ({exc}); run the comparison "
                             "again") from None


def upgrade(data: dict, origin: str) -> dict:
    """A stored result in the current schema: a result from before schema_version (version 0) lacks the fields
    added since (router, judge, probes, why, ...); those become "not run". Refused: a result without its core
    (never written by this tool) or from a newer version."""
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ArenaError(f"{origin} has schema version {version!r}, newer than this version of the tool "
                         f"reads ({SCHEMA_VERSION}); upgrade the tool to open it")
    missing = [k for k in CORE_KEYS if not isinstance(data.get(k), (dict, list))]
    if missing:
        raise ArenaError(f"{origin} is not a comparison result this tool can read: no {', '.join(missing)}")
    if version == SCHEMA_VERSION:
        return data
    defaults = {"paired": {}, "costs": {}, "warnings": [], "why": {}, "settings": {}, "router": None,
                "judge": None, "forgetting": [], "bias": [], "learned": None, "run_id": None, "seeds": {}}
    return {**defaults, **{k: v for k, v in data.items() if v is not None or k not in defaults}}
