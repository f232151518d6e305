"""One decide job's configuration: a dataclass read from YAML and CLI flags, saved next to its artifacts.

Types, choices and bounds are the fields' annotations, checked by pydantic (foundation/config_file.py); the
`arena decide` flags are derived from the same fields (assistant/cli/decide.py), their help from `metadata`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import with_config

from foundation import config_file
from foundation.config_file import check
from foundation.errors import ArenaError
from foundation.generation import LOOP_STOP, STOP_ON_LOOP_HELP, check_stop_on_loop
from foundation.metrics import PRIMARY_METRICS
from foundation.paths import confine
from foundation.variants import ADAPTER_VARIANTS, STRATEGIES
from retrieval.chunking import SPLITTERS
from training.config import Epochs, JobConfig, LearningRate, Method, Steps, check_report_to, parse_augment
from training.doc_questions import MAX_QUESTIONS, QUESTIONS, check_generator

ALL_VARIANTS = STRATEGIES  # decide compares the strategies (the routed variant needs a comparison first)
MIN_TUNING_PAIRS = 5  # fewer training pairs: a hit rate over so few questions would pick settings by chance
# Fewer document-drawn evaluation questions: a verdict's paired intervals would span everything (refused, with
# a pointer to --generator or a Q/A file).
MIN_EVAL_QUESTIONS = 5
MAX_SEEDS = 10  # each seed is a full training run: more is hours on a CPU
# --seeds 0 (the default) under a budget: train up to this many seeds, as many as fit it at one epoch or more each
# (the budget cuts steps to one epoch first, then seeds), so a machine fast enough buys a verdict over seeds, which
# one adapter's training noise cannot flip; without a budget (the fitted plan, hours per seed on a CPU), one.
AUTO_SEEDS = 3
# The default wall-time budget of a whole fresh run, in minutes (the CLI, the Decide tab and the YAML default all
# read it here; 0 = fit the plan to the data). Ten minutes is what a person waits for, and issue 25's target on 2
# cores. More would buy training steps, not a better verdict: there, one epoch (a 20-minute run) gave the clear,
# correct verdict, and a 60-minute plan only added adapter noise. By the plan's own speeds (plan.py: 15 tokens/s
# decoding, 150 tokens/s training) a 5-variant comparison costs ~12 s per held-out question and a training step
# (batch 8, ~150 tokens a row) ~8 s, so 10 minutes holds 20 questions plus ~35 steps, 2-3 epochs of 60 pairs
# without paraphrases; a larger FAQ or 5 paraphrases per question go over it, and the plan then keeps one epoch of
# one seed and says so, instead of planning hours (the fitted plan: 664 steps, ~100 min for 105 training pairs).
DEFAULT_BUDGET_MINUTES = 10.0
MAX_BUDGET_MINUTES = 7 * 24 * 60  # a week; a larger figure is a typo (0 already means "no bound")
MAX_NEW_TOKENS_ASKED = 8192  # a comparison's answers are a few sentences; larger is a typo
Unset = Annotated[int, Ge(0)]  # 0 = the training job's own default
Metric = Literal[PRIMARY_METRICS]
Splitter = Literal[SPLITTERS]


def check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ArenaError(f"name {name!r}: use letters, digits, '.', '_', '-' (at most 64)")


def check_variants(variants: list[str]) -> None:
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown or not variants:
        raise ArenaError(f"unknown variant(s) {unknown or '(none given)'}; choose from {', '.join(ALL_VARIANTS)}")


@with_config(config_file.STRICT)
@dataclass
class DecideConfig(config_file.YamlFile):
    """Everything that defines one decision run: inputs, evaluation split, training and comparison knobs."""

    docs: list[str] = field(default_factory=list)  # files or folders to ingest
    qa: str = field(default="", metadata={"help": "question/answer file (JSONL/CSV): training pairs, and held-out "
                                                  "questions when --eval is not given"})
    eval: str = field(default="", metadata={"help": "evaluation file (question, answer[, source])"})
    name: Annotated[str, check(check_name)] = field(default="decide", metadata={
        "help": "the workspace folder DATA_DIR/decide/NAME and the adapters' name prefix (default 'decide')"})
    # evaluation split
    eval_fraction: Annotated[float, Gt(0), Lt(1)] = 0.3
    limit: Annotated[int, Ge(0)] = field(default=0, metadata={"help": "at most N evaluation questions (0 = all)"})
    seed: int = 0  # split seed; training seeds are seed, seed+1, ...
    splitter: Splitter = field(default="recursive", metadata={
        "help": "chunking for ingestion (default recursive; retrieval tuning may choose another)"})
    # RAG at its best: splitter, k and search mode chosen on the training pairs by retrieval hit rate
    # (retrieval/tuning.py); the documents are re-chunked when another splitter wins.
    tune_retrieval: bool = field(default=True, metadata={
        "help": "choose splitter, k and search mode by hit rate (--no-tune-retrieval: keep --splitter and the "
                "default k and search mode)"})
    # training
    seeds: Annotated[int, Ge(0), Le(MAX_SEEDS)] = field(default=0, metadata={
        "help": f"train the adapter N times with different seeds (default 0 = auto: up to {AUTO_SEEDS} as the "
                "budget allows, one without a budget)"})
    # Wall-time budget of a fresh run (every stage); training gets what the other stages' estimates leave, at
    # least one epoch of one seed. 0 = no bound: the plan fitted to the data (several epochs, hours on a CPU).
    budget_minutes: Annotated[float, Ge(0), Le(MAX_BUDGET_MINUTES)] = field(default=DEFAULT_BUDGET_MINUTES, metadata={
        "help": f"wall-time budget of a fresh run (default {DEFAULT_BUDGET_MINUTES:g}); training gets what the "
                "other stages leave, the plan says what fits; 0 = fit the plan to the data (hours)"})
    method: Method = field(default="lora", metadata={"help": "training method (default lora)"})
    epochs: Epochs = 0.0  # 0 = the training job's own default
    max_steps: Steps = -1
    learning_rate: LearningRate = 0.0  # 0 = the training job's own default
    lora_r: Unset = 0
    batch_size: Unset = 0
    max_length: Unset = 0
    save_steps: Unset = 0
    early_stopping_patience: Annotated[int, Ge(-1)] = -1  # -1 = the training job's own default; 0 = every step asked for
    grounded: bool = field(default=True, metadata={
        "help": "also train on retrieved-context rows, for rag+finetuned (--no-grounded: the Q/A pairs only)"})
    # Also train on the text of every ingested section (continued pre-training rows, none held out): the same
    # knowledge RAG searches. Off by default: the evaluation's held-out sections are then unseen by the adapter.
    train_on_documents: bool = field(default=False, metadata={
        "help": "also fine-tune on the text of every ingested section (what RAG searches)"})
    # Facts are learned when seen in several phrasings (Ovadia et al. 2024): K rewrites of each training question
    # written by the base model inside the training job (training/augment.py, cached by content); "" = none.
    augment: Annotated[str, check(parse_augment)] = field(default="paraphrases:5", metadata={
        "help": "K paraphrases of each training question (default paraphrases:5; '' = none)",
        "metavar": "paraphrases:K"})
    # Questions from documents without Q/A pairs: "" = the heading/definition heuristic; "base", a local model id
    # or folder, or "openai:URL:MODEL" = that model writes `questions` questions (assistant/decide/questions.py).
    generator: Annotated[str, check(check_generator)] = field(default="", metadata={
        "help": "write the questions from the documents with a model: base, a local model id or folder, or "
                "openai:URL:MODEL (a server); default: a heading/definition heuristic", "metavar": "SPEC"})
    questions: Annotated[int, Ge(1), Le(MAX_QUESTIONS)] = field(default=QUESTIONS, metadata={
        "help": f"questions the generator writes (default {QUESTIONS}; the evaluation share is --eval-fraction)"})
    # comparison
    variants: Annotated[list[str], check(check_variants)] = field(default_factory=lambda: list(ALL_VARIANTS), metadata={
        "help": "default: all five", "metavar": "VARIANT"})
    metric: Metric = field(default="f1", metadata={"help": "primary metric (default f1)"})
    # 0 = from the evaluation set's reference lengths; the engine also holds it to half the model's context
    max_new_tokens: Annotated[int, Ge(0), Le(MAX_NEW_TOKENS_ASKED)] = 0
    # stop on repetition, the same for every variant (docs/decoding.md); 0 = off
    stop_on_loop: Annotated[int, check(check_stop_on_loop)] = field(default=LOOP_STOP, metadata={
        "help": STOP_ON_LOOP_HELP, "metavar": "N"})
    forgetting: bool = field(default=True, metadata={
        "help": "check general knowledge after fine-tuning (--no-forgetting: skip it)"})
    report_to: Annotated[str, check(check_report_to)] = field(default="none", metadata={
        "help": "log the training runs and the comparison summary to a tracker: none (default), mlflow, "
                "tensorboard, trackio", "metavar": "TRACKER"})
    # practical-equivalence margin in the metric's units (0 = the metric's default; docs/verdict.md)
    equivalence_margin: Annotated[float, Ge(0)] = field(default=0.0, metadata={
        "help": "practical-equivalence margin in the metric's units: a cheaper variant shown within ±M of the "
                "leader is recommended (default 0.05 for scores in [0, 1], 0.05 nats for NLL)", "metavar": "M"})

    def validate(self) -> None:
        """Raise ArenaError naming the bad values (before any work is done): missing inputs, then those of the
        wrong type, choice or range (pydantic, from the annotations)."""
        if not self.docs:
            raise ArenaError("no documents: pass one or more files or folders (arena decide DOCS...)")
        for label, path in [("document", p) for p in self.docs] + [("--qa", self.qa), ("--eval", self.eval)]:
            if path and not Path(path).exists():
                raise ArenaError(f"{label} {path} does not exist")
        config_file.checked(DecideConfig, asdict(self))

    @property
    def trains(self) -> bool:
        return bool(ADAPTER_VARIANTS & set(self.variants))

    def question_counts(self, hold_out: bool) -> tuple[int, int]:
        """How the generator's `questions` split into evaluation and training questions (the plan and the writer
        read it here): a share held out, never fewer than MIN_EVAL_QUESTIONS; none held out beside --eval."""
        n_eval = max(MIN_EVAL_QUESTIONS, round(self.questions * self.eval_fraction)) if hold_out else 0
        return n_eval, max(0, self.questions - n_eval) if self.trains else 0

    @property
    def seed_count(self) -> int:
        """Seeds asked for: --seeds N, or for 0 (auto) AUTO_SEEDS under a budget (which cuts them to what fits at
        one epoch each) and one without."""
        return self.seeds or (AUTO_SEEDS if self.budget_minutes else 1)

    def resolved(self) -> DecideConfig:
        """A copy with absolute paths and seeds 0 (auto) made a number, so the saved YAML means the same thing
        from any folder and in any version."""
        files = {key: str(Path(getattr(self, key)).resolve()) for key in ("qa", "eval") if getattr(self, key)}
        return replace(self, seeds=self.seed_count, docs=[str(Path(p).resolve()) for p in self.docs], **files)


def workspace(data_dir: Path, name: str) -> Path:
    """Where a decide run keeps its config, stage outputs, progress and report."""
    return confine(Path(data_dir) / "decide", name, "decide name")


def decision_index(data_dir: Path, name: str) -> Path:
    """A decision's own document index: what else the data folder holds (the Documents tab's index, other
    decisions) never reaches its retrieval, its training rows or its exported bundle, and another decision's
    splitter never re-chunks it."""
    return workspace(data_dir, name) / "index"


def config_from_args(args: argparse.Namespace) -> DecideConfig:
    """YAML (if given) overlaid with the flags actually passed; positional DOCS replace the YAML's list."""
    cfg = (DecideConfig.from_yaml(args.config) if args.config else DecideConfig()).with_flags(args, skip=("docs",))
    cfg.docs = args.docs or cfg.docs
    cfg.validate()
    return cfg.resolved()


def job_config(cfg: DecideConfig, **overrides):
    """The training job for this decision: the job's own defaults, with the decide flags that were set."""
    flags = {name: getattr(cfg, name) for name in ("epochs", "learning_rate", "lora_r", "batch_size", "max_length",
                                                   "save_steps", "augment", "report_to") if getattr(cfg, name)}
    if cfg.lora_r and not cfg.learning_rate:
        flags["lora_alpha"] = 2 * cfg.lora_r  # keep the default alpha/r ratio
    if cfg.early_stopping_patience >= 0:  # unset (-1) leaves the job's default, so existing keys stay the same
        flags["early_stopping_patience"] = cfg.early_stopping_patience
    return JobConfig(**{"name": cfg.name, "method": cfg.method, "max_steps": cfg.max_steps, **flags, **overrides})
