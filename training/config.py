"""One job configuration: a dataclass loadable from YAML and from CLI flags, saved next to the artifact.

Types, choices and bounds are the fields' annotations, checked by pydantic (foundation/config_file.py); the
`arena train` flags are derived from the same fields (assistant/cli/train.py), their help from `metadata`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, get_args

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from foundation import config_file
from foundation.config_file import check
from foundation.errors import ArenaError
from training.doc_questions import QUESTIONS, check_count, check_generator

Method = Literal["lora", "ia3", "prompt_tuning", "full", "freeze", "qlora", "dpo", "reward", "rloo"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
Precision = Literal["auto", "on", "off"]
METHODS = get_args(Method)
BF16_CHOICES = get_args(Precision)
DOC_KINDS = ("cpt", "qa", "grounded")
LORA_METHODS = ("lora", "qlora", "dpo", "reward", "rloo")  # the methods whose adapter has a LoRA rank
MAX_TRIALS = 12  # a sweep trains every trial in turn: more is hours on a CPU
# The learning rate each method starts from when none is given: the CLI, the Train tab and decide all read it
# here. They differ by orders of magnitude: a LoRA/IA3/prompt-tuning update touches few weights, so it takes
# large steps; full fine-tuning and RL take small ones.
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "ia3": 3e-3, "prompt_tuning": 3e-2, "full": 2e-5, "freeze": 5e-5,
                          "qlora": 2e-4, "dpo": 5e-5, "reward": 1e-4, "rloo": 1e-5}
Count = Annotated[int, Ge(1)]  # a size, a rank or an interval in steps
NonNegative = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]  # a share held out or dropped: all of it would leave nothing
# Above 1 every optimizer here diverges (the defaults above are 1e-5 to 3e-2): a typo, refused before it trains
LearningRate = Annotated[float, Ge(0), Le(1)]
# Past these a job runs for weeks on any machine this tool plans for: a typo, refused before it starts
MAX_EPOCHS, MAX_STEPS = 1_000, 1_000_000
Epochs = Annotated[float, Ge(0), Le(MAX_EPOCHS)]
Steps = Annotated[int, Ge(-1), Le(MAX_STEPS)]  # -1 (or 0): the epochs or the fitted plan decide


@with_config(config_file.STRICT)
class Sweep(TypedDict, total=False):
    """{"learning_rate": [...], "lora_r": [...]}: every combination is trained and the one with the lowest
    validation loss registered; lora_alpha follows the rank (alpha/r kept) so only the rank changes."""

    learning_rate: list[Annotated[float, Gt(0), Le(1)]]
    lora_r: list[Count]


@with_config(config_file.STRICT)
@dataclass
class JobConfig(config_file.YamlFile):
    """Everything that defines one training run (data, method, hyper-parameters, where it goes)."""

    name: str = "adapter"
    method: Method = "lora"
    # Data sources, each {"path": FILE} or {"source": "documents", "kind": cpt|qa|grounded} or
    # {"source": "votes"} or {"source": "distill", "questions": FILE}, with an optional "weight" (default 1)
    # and an optional "val_fraction" of its own (default: the job's). A qa or grounded documents source may
    # name a question "generator" (decide's --generator SPEC) and how many questions it writes ("n_questions").
    data: list[dict] = field(default_factory=list)
    base_model: str = field(default="", metadata={"help": "base model (default: --model)"})
    init_from: str = field(default="", metadata={"help": "registered adapter to continue from"})
    system_prompt: str = field(default="", metadata={"help": "prepended to chat rows that have none"})
    # LoRA family
    lora_r: Count = 16
    lora_alpha: Annotated[int, Ge(0)] = 0  # 0: twice the rank (alpha/r = 2, the LoRA scale every default trains with); see alpha
    # peft's own default; 0 also lets LoRA layers take the fused path (training/speed/fastlora.py), which dropout
    # rules out (the LoRA branch would see other inputs than the base layer). Set > 0 to regularize tiny data.
    lora_dropout: Fraction = 0.0
    target_modules: str = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False
    # other methods
    num_virtual_tokens: Count = 16  # prompt_tuning
    train_layers: Count = 2  # freeze: number of top layers left trainable
    dpo_beta: NonNegative = 0.1
    unfreeze_schedule: str = field(default="", metadata={  # training/unfreeze.py
        "help": "freeze: top N layers trainable from STEP, e.g. 2:0,4:50,all:100 (default: train_layers for the "
                "whole run)", "metavar": "N:STEP,..."})
    # rloo (training/rl.py): the registered reward model to maximise, the KL penalty to the base, and the
    # completions sampled per prompt (RLOO's leave-one-out baseline needs at least 2)
    reward_model: str = field(default="", metadata={"help": "rloo: registered reward model (trained with --method reward)"})
    rl_beta: NonNegative = 0.05
    num_generations: Count = 4
    max_completion_length: Count = 48
    # optimisation
    learning_rate: LearningRate = 0.0  # 0: the method's default, DEFAULT_LEARNING_RATES (set by validate)
    # 0 with max_steps <= 0: the plan fitted to the data (training/plan.py: several epochs, a floor of optimizer
    # steps, the best validation checkpoint, early stopping). A value > 0 trains exactly that many epochs.
    epochs: Epochs = 0.0
    max_steps: Steps = -1  # > 0 overrides epochs
    batch_size: Count = 8
    grad_accum: Count = 1
    lr_scheduler: Scheduler = "cosine"
    warmup_steps: Annotated[int, Ge(0)] = 0
    weight_decay: NonNegative = 0.0
    # Room for a grounded (RAFT) row: k=4 passages of ~800 characters in the served RAG prompt is ~900 tokens.
    # A longer row would be cut before its answer and dropped; short rows cost nothing extra (no padding).
    max_length: Count = 1024
    packing: bool = field(default=False, metadata={
        "help": "padding-free packing instead of random batches run as unpadded sub-batches (faster here)"})
    # auto: bf16 autocast where the hardware does bf16 natively (AVX512-BF16 or AMX on a CPU; a bf16 GPU), fp32
    # elsewhere (emulated bf16 is slower than fp32). The job's saved config.yaml records what was chosen.
    # Older configs hold true/false: read as on/off.
    bf16: Annotated[Precision, BeforeValidator(bf16_choice)] = field(default="auto", metadata={
        "help": "bf16 autocast: auto (default: where the hardware has native bf16), on, off", "nargs": "?", "const": "on"})
    seed: int = 0
    # validation
    val_fraction: Fraction = 0.1
    eval_steps: Count = 20  # the fitted plan (epochs 0) picks its own: about ten evaluations per run
    # evaluations without a lower validation loss before stopping; 0: off
    early_stopping_patience: Annotated[int, Ge(0)] = 3
    keep_best: bool = field(default=True, metadata={
        "help": "register the checkpoint with the lowest validation loss (--no-keep-best: the last one)"})
    augment: Annotated[str, check(parse_augment)] = field(default="", metadata={  # training/augment.py
        "help": "train also on K paraphrases of each training question written by the generator model",
        "metavar": "paraphrases:K"})
    generator_model: str = field(default="", metadata={"help": "model that writes the paraphrases (default: the base model)"})
    # grounded (RAFT) rows: k passages in the served RAG prompt, the answer's passage in this share of them
    grounded_k: Count = 4
    oracle_share: Annotated[float, Ge(0), Le(1)] = 0.8
    # Tokens of passages in one grounded row (0 = all k): the answer's passage is always kept whole, distractors
    # fill the rest in rank order (the one that overflows is cut). k=4 passages of ~180 tokens made a grounded row
    # ~745 tokens and 60 % of all training tokens (issue 25); 360 keeps the oracle and about one distractor, so
    # the row still teaches to ignore a wrong passage (RAFT) at about half the passage tokens.
    grounded_passage_tokens: Annotated[int, Ge(0)] = 360
    save_steps: Count = 50
    logging_steps: Count = 1
    # Experiment tracking through the trainer's own integrations: "none", or e.g. "mlflow", "tensorboard",
    # "trackio" (comma-separated for several); each tool reads its own settings (MLFLOW_TRACKING_URI, ...).
    report_to: Annotated[str, check(check_report_to)] = field(default="none", metadata={
        "help": "log the run to an experiment tracker: none (default), mlflow, tensorboard, trackio, ...",
        "metavar": "TRACKER"})
    sweep: Sweep = field(default_factory=dict)
    job_id: str = ""  # filled on first run (training.runner.job_dir); the job folder is <data_dir>/jobs/<job_id>

    @property
    def rate(self) -> float:
        """The learning rate that trains: the configured one, or the method's default when it is 0 (a config
        built in code need not go through validate first)."""
        return self.learning_rate or DEFAULT_LEARNING_RATES.get(self.method, 0.0)

    @property
    def alpha(self) -> int:
        """The LoRA alpha that trains: the configured one, or twice the rank when it is 0, so the CLI's --lora-r,
        the Train tab's rank and decide all keep the same scale."""
        return self.lora_alpha or 2 * self.lora_r

    @property
    def targets(self) -> str | list[str]:
        """peft's target_modules: "all-linear" as it is, else the comma-separated module names as a list."""
        names = self.target_modules
        return names if names == "all-linear" else [t.strip() for t in names.split(",") if t.strip()]

    def validate(self) -> None:
        """Raise ArenaError naming the bad values: those of the wrong type, choice or range (pydantic, from the
        annotations), then what one field cannot say (method-specific settings, the data, the sweep)."""
        vars(self).update(vars(config_file.checked(JobConfig, asdict(self))))  # bf16 true/false -> on/off
        self.learning_rate = self.rate  # resolved here, so the saved config.yaml holds the rate that trained
        self.lora_alpha = self.alpha  # likewise: the saved config holds the alpha that trained
        self.validate_methods()
        if not self.data:
            raise ArenaError("no training data: pass --data FILE (or --from-documents / --from-votes)")
        for spec in self.data:
            check_document_questions(spec)
        if self.sweep:
            self.validate_sweep()

    def validate_methods(self) -> None:
        """Settings that belong to one method (unfreeze schedule, reward model, RL sampling)."""
        if self.unfreeze_schedule:
            if self.method != "freeze":
                raise ArenaError(f"unfreeze_schedule needs method 'freeze', not {self.method!r}")
            from training.unfreeze import parse_schedule  # deferred: pulls torch, transformers, peft

            parse_schedule(self.unfreeze_schedule)
        if self.method == "rloo":
            if not self.reward_model:
                raise ArenaError("method 'rloo' needs a reward model: train one with --method reward, then pass "
                                 "--reward-model NAME")
            if self.num_generations < 2:
                raise ArenaError(f"num_generations must be >= 2 for rloo (leave-one-out baseline), "
                                 f"got {self.num_generations}")

    def validate_sweep(self) -> None:
        """The sweep part of validate(): its axes (pydantic, also for a config built in code), at most
        MAX_TRIALS, a validation split."""
        self.sweep = config_file.checked(Sweep, self.sweep, "sweep")
        lrs, ranks = sweep_axes(self)
        if len(lrs) * len(ranks) > MAX_TRIALS:
            raise ArenaError(f"sweep has {len(lrs)} learning rates x {len(ranks)} ranks = {len(lrs) * len(ranks)} "
                             f"trials; keep it at {MAX_TRIALS} or fewer on this hardware")
        if self.val_fraction <= 0:
            raise ArenaError("a sweep picks the best run by validation loss: set val_fraction > 0")
        if len(ranks) > 1 and self.method not in LORA_METHODS:
            raise ArenaError(f"method {self.method!r} has no LoRA rank to sweep (use {', '.join(LORA_METHODS)})")
        if len(ranks) > 1 and self.init_from:
            raise ArenaError(f"init_from {self.init_from!r} fixes the LoRA rank: sweep only the learning rate")


def report_targets(text: str) -> list[str]:
    """'mlflow, tensorboard' -> ['mlflow', 'tensorboard']; 'none' or '' -> []."""
    names = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    return [] if names in ([], ["none"]) else names


def check_report_to(text: str) -> None:
    """ArenaError naming a tracker the trainer does not know or whose package is not installed."""
    targets = report_targets(text)
    if not targets:
        return
    from transformers.integrations import get_available_reporting_integrations  # deferred: pulls transformers
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    for name in targets:
        if name not in INTEGRATION_TO_CALLBACK:
            raise ArenaError(f"report_to {name!r} is not a tracker the trainer knows; choose from "
                             f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))} or none")
        if name not in get_available_reporting_integrations():
            raise ArenaError(f"report_to {name!r}: its package is not installed (pip install {name})")


def bf16_choice(value) -> str:
    """'auto', 'on' or 'off' (a YAML true/false, as older configs hold, reads as on/off); ArenaError otherwise."""
    text = str(value).strip().lower()
    choice = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(text, text)
    if choice not in BF16_CHOICES:
        raise ArenaError(f"bf16 must be one of {', '.join(BF16_CHOICES)}, got {value!r}")
    return choice


def check_document_questions(spec: dict) -> None:
    """A data source's question generator: only on qa/grounded documents sources, a well-formed SPEC, a sane
    count (ArenaError naming the problem)."""
    if "generator" not in spec and "n_questions" not in spec:
        return
    if spec.get("source") != "documents" or spec.get("kind", "qa") == "cpt":
        raise ArenaError("a question generator writes Q/A pairs from documents: use it with --from-documents qa "
                         f"or grounded, not on {spec!r}")
    check_generator(str(spec.get("generator", "")))
    n = spec.get("n_questions", QUESTIONS)
    check_count(n if isinstance(n, int) and not isinstance(n, bool) else -1)


def parse_augment(text: str) -> int:
    """'paraphrases:K' -> K (0 for no augmentation); ArenaError naming the bad spec."""
    text = (text or "").strip()
    if not text:
        return 0
    kind, _, count = text.partition(":")
    if kind.strip() != "paraphrases" or not count.strip().isdigit() or not 1 <= int(count) <= 20:
        raise ArenaError(f"augment {text!r}: use paraphrases:K with K from 1 to 20 (e.g. paraphrases:5)")
    return int(count)


def sweep_axes(cfg: JobConfig) -> tuple[list[float], list[int]]:
    """The sweep's distinct learning rates and ranks, in the given order (the job's own value if not swept);
    a repeated value would only train the same trial twice."""
    return (list(dict.fromkeys(cfg.sweep.get("learning_rate") or [cfg.rate])),
            list(dict.fromkeys(cfg.sweep.get("lora_r") or [cfg.lora_r])))


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """YAML (if given) overlaid with the CLI flags that were actually passed."""
    cfg = (JobConfig.from_yaml(args.config) if args.config else JobConfig()).with_flags(args, skip=("data",))
    cfg.data = list(cfg.data) + _data_flags(args)
    cfg.sweep = dict(cfg.sweep)
    if args.sweep_lr:
        cfg.sweep["learning_rate"] = [v for part in args.sweep_lr for v in part]
    if args.sweep_r:
        cfg.sweep["lora_r"] = [v for part in args.sweep_r for v in part]
    return cfg


def _data_flags(args: argparse.Namespace) -> list[dict]:
    out = [{"path": str(Path(path).resolve()), "weight": weight} for path, weight in map(_path_weight, args.data or [])]
    asked = {k: v for k, v in (("generator", getattr(args, "generator", None)),
                               ("n_questions", getattr(args, "questions", None))) if v is not None}
    out += [{"source": "documents", "kind": kind, **(asked if kind != "cpt" else {})}
            for kind in args.from_documents or []]
    if asked and not any(kind != "cpt" for kind in args.from_documents or []):
        raise ArenaError("--generator and --questions write Q/A pairs from documents: add --from-documents qa "
                         "(or grounded)")
    if args.from_votes:
        out.append({"source": "votes"})
    if args.distill:
        out.append({"source": "distill", "questions": str(Path(args.distill).resolve())})
    return out


def _path_weight(spec: str) -> tuple[str, float]:
    """'FILE:WEIGHT' -> (FILE, WEIGHT); without a number after a last ':' the whole spec is the file, weight 1."""
    head, sep, tail = spec.rpartition(":")
    try:
        return (head, float(tail)) if sep and head else (spec, 1.0)
    except ValueError:
        return spec, 1.0
