"""One job configuration: a dataclass loadable from YAML and from CLI flags, saved next to the artifact."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from foundation import config_file
from foundation.errors import ArenaError
from training.doc_questions import QUESTIONS, check_count, check_generator

METHODS = ("lora", "ia3", "prompt_tuning", "full", "freeze", "qlora", "dpo", "reward", "rloo")
BF16_CHOICES = ("auto", "on", "off")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DOC_KINDS = ("cpt", "qa", "grounded")
LORA_METHODS = ("lora", "qlora", "dpo", "reward", "rloo")  # the methods whose adapter has a LoRA rank
MAX_TRIALS = 12  # a sweep trains every trial in turn: more is hours on a CPU
# The learning rate each method starts from when none is given: the CLI, the Train tab and decide all read it
# here. They differ by orders of magnitude: a LoRA/IA3/prompt-tuning update touches few weights, so it takes
# large steps; full fine-tuning and RL take small ones.
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "ia3": 3e-3, "prompt_tuning": 3e-2, "full": 2e-5, "freeze": 5e-5,
                          "qlora": 2e-4, "dpo": 5e-5, "reward": 1e-4, "rloo": 1e-5}


@dataclass
class JobConfig:
    """Everything that defines one training run (data, method, hyper-parameters, where it goes)."""

    name: str = "adapter"
    method: str = "lora"
    # Data sources, each {"path": FILE} or {"source": "documents", "kind": cpt|qa|grounded} or
    # {"source": "votes"} or {"source": "distill", "questions": FILE}, with an optional "weight" (default 1)
    # and an optional "val_fraction" of its own (default: the job's). A qa or grounded documents source may
    # name a question "generator" (decide's --generator SPEC) and how many questions it writes ("n_questions").
    data: list[dict] = field(default_factory=list)
    base_model: str = ""  # empty: the app's configured model
    init_from: str = ""  # continue from this registered adapter (sequential fine-tuning)
    system_prompt: str = ""  # prepended to chat rows that have none
    # LoRA family
    lora_r: int = 16
    lora_alpha: int = 0  # 0: twice the rank (alpha/r = 2, the LoRA scale every default trains with); see alpha
    # peft's own default; 0 also lets LoRA layers take the fused path (training/speed/fastlora.py), which dropout
    # rules out (the LoRA branch would see other inputs than the base layer). Set > 0 to regularize tiny data.
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False
    # other methods
    num_virtual_tokens: int = 16  # prompt_tuning
    train_layers: int = 2  # freeze: number of top layers left trainable
    dpo_beta: float = 0.1
    # freeze: "2:0,4:50,all:100" = top 2 layers from step 0, top 4 from step 50, every weight from step 100
    # (training/unfreeze.py); empty: train_layers for the whole run
    unfreeze_schedule: str = ""
    # rloo (training/rl.py): the registered reward model to maximise, the KL penalty to the base, and the
    # completions sampled per prompt (RLOO's leave-one-out baseline needs at least 2)
    reward_model: str = ""
    rl_beta: float = 0.05
    num_generations: int = 4
    max_completion_length: int = 48
    # optimisation
    learning_rate: float = 0.0  # 0: the method's default, DEFAULT_LEARNING_RATES (set by validate)
    # 0 with max_steps <= 0: the plan fitted to the data (training/plan.py: several epochs, a floor of optimizer
    # steps, the best validation checkpoint, early stopping). A value > 0 trains exactly that many epochs.
    epochs: float = 0.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    # Room for a grounded (RAFT) row: k=4 passages of ~800 characters in the served RAG prompt is ~900 tokens.
    # A longer row would be cut before its answer and dropped; short rows cost nothing extra (no padding).
    max_length: int = 1024
    packing: bool = False  # padding-free packing; off = random batches run as unpadded sub-batches (faster here)
    # auto: bf16 autocast where the hardware does bf16 natively (AVX512-BF16 or AMX on a CPU; a bf16 GPU), fp32
    # elsewhere (emulated bf16 is slower than fp32). The job's saved config.yaml records what was chosen.
    bf16: str = "auto"
    seed: int = 0
    # validation
    val_fraction: float = 0.1
    eval_steps: int = 20  # the fitted plan (epochs 0) picks its own: about ten evaluations per run
    early_stopping_patience: int = 3  # evaluations without a lower validation loss before stopping; 0: off
    keep_best: bool = True  # register the checkpoint with the lowest validation loss, not the last one
    # paraphrases:K = the generator model writes K rephrasings of each training question (training/augment.py)
    augment: str = ""
    generator_model: str = ""  # writes the paraphrases; empty: the app's configured model
    # grounded (RAFT) rows: k passages in the served RAG prompt, the answer's passage in this share of them
    grounded_k: int = 4
    oracle_share: float = 0.8
    # Tokens of passages in one grounded row (0 = all k): the answer's passage is always kept whole, distractors
    # fill the rest in rank order (the one that overflows is cut). k=4 passages of ~180 tokens made a grounded row
    # ~745 tokens and 60 % of all training tokens (issue 25); 360 keeps the oracle and about one distractor, so
    # the row still teaches to ignore a wrong passage (RAFT) at about half the passage tokens.
    grounded_passage_tokens: int = 360
    save_steps: int = 50
    logging_steps: int = 1
    # Experiment tracking through the trainer's own integrations: "none", or e.g. "mlflow", "tensorboard",
    # "trackio" (comma-separated for several); each tool reads its own settings (MLFLOW_TRACKING_URI, ...).
    report_to: str = "none"
    # sweep: {"learning_rate": [...], "lora_r": [...]} runs every combination and registers the one with the
    # lowest validation loss; lora_alpha follows the rank (alpha/r kept) so only the rank changes.
    sweep: dict = field(default_factory=dict)
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

    def validate(self) -> None:
        """Raise ArenaError naming the first bad value."""
        if self.method not in METHODS:
            raise ArenaError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        self.bf16 = bf16_choice(self.bf16)
        if self.learning_rate == 0:  # resolved here, so the saved config.yaml holds the rate that trained
            self.learning_rate = DEFAULT_LEARNING_RATES[self.method]
        self.lora_alpha = self.alpha  # likewise: the saved config holds the alpha that trained
        if self.lr_scheduler not in SCHEDULERS:
            raise ArenaError(f"lr_scheduler {self.lr_scheduler!r} must be one of {', '.join(SCHEDULERS)}")
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "eval_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ArenaError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ArenaError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.learning_rate <= 0:
            raise ArenaError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise ArenaError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.epochs < 0:
            raise ArenaError(f"epochs must be >= 0 (0 = the plan fitted to the data), got {self.epochs}")
        if self.early_stopping_patience < 0:
            raise ArenaError(f"early_stopping_patience must be >= 0 (0 = off), got {self.early_stopping_patience}")
        if not 0 <= self.oracle_share <= 1:
            raise ArenaError(f"oracle_share must be between 0 and 1, got {self.oracle_share}")
        if self.grounded_k < 1:
            raise ArenaError(f"grounded_k must be >= 1, got {self.grounded_k}")
        if self.grounded_passage_tokens < 0:
            raise ArenaError(f"grounded_passage_tokens must be >= 0 (0 = no budget), got "
                             f"{self.grounded_passage_tokens}")
        parse_augment(self.augment)
        check_report_to(self.report_to)
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
            if self.rl_beta < 0 or self.max_completion_length < 1:
                raise ArenaError("rl_beta must be >= 0 and max_completion_length >= 1")

    def validate_sweep(self) -> None:
        """The sweep part of validate(): known axes, numbers, at most MAX_TRIALS, a validation split."""
        unknown = set(self.sweep) - {"learning_rate", "lora_r"}
        if unknown:
            raise ArenaError(f"sweep supports learning_rate and lora_r, not {sorted(unknown)}")
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

    def to_yaml(self, path: Path) -> None:
        config_file.save_yaml(self, path)

    @classmethod
    def from_yaml(cls, path: Path) -> JobConfig:
        return config_file.load_yaml(cls, path)


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
    """The sweep's distinct learning rates and ranks, in the given order (the job's own value if not swept)."""
    lrs = _sweep_list(cfg.sweep, "learning_rate", cfg.rate, float)
    ranks = _sweep_list(cfg.sweep, "lora_r", cfg.lora_r, int)
    if min(lrs) <= 0 or min(ranks) < 1:
        raise ArenaError("sweep learning rates must be > 0 and ranks >= 1")
    return lrs, ranks


def _sweep_list(sweep: dict, key: str, default, kind) -> list:
    values = sweep.get(key) or [default]
    if not isinstance(values, list):
        raise ArenaError(f"sweep {key} must be a list, got {values!r}")
    out = []
    for v in values:
        try:
            num = float(v)  # YAML reads 1e-4 (no dot) as a string
        except (TypeError, ValueError):
            num = math.nan
        if isinstance(v, bool) or not math.isfinite(num) or (kind is int and num != int(num)):
            raise ArenaError(f"sweep {key} must be a list of {'integers' if kind is int else 'numbers'}, "
                             f"got {values!r}")
        out.append(kind(num))
    return list(dict.fromkeys(out))  # a repeated value would only train the same trial twice


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """CLI flags for `arena train`: each overrides the YAML value when given."""
    p.add_argument("config", nargs="?", help="job YAML (flags below override its values)")
    p.add_argument("--data", action="append", default=None, metavar="FILE[:WEIGHT]",
                   help="training file (.jsonl/.json/.csv); repeat to mix with weights")
    p.add_argument("--from-documents", choices=DOC_KINDS, action="append", default=None,
                   help="build data from the ingested documents")
    p.add_argument("--generator", default=None, metavar="SPEC",
                   help="--from-documents qa/grounded: questions written by a model (base, a local model id or "
                        "folder, or openai:URL:MODEL), filtered as decide does; default: a heading/definition "
                        "heuristic")
    p.add_argument("--questions", type=int, default=None, metavar="N",
                   help=f"questions the --generator writes (default {QUESTIONS})")
    p.add_argument("--from-votes", action="store_true",
                   help="preference pairs from chat votes (for dpo and reward; their questions are rloo prompts)")
    p.add_argument("--distill", metavar="QUESTIONS", default=None,
                   help="file of questions (one per line): the RAG variant's answers become targets")
    p.add_argument("--resume", action="store_true", help="continue the job from its last checkpoint")
    p.add_argument("--method", choices=METHODS, default=None)
    p.add_argument("--name", default=None)
    for name, typ in (("lora_r", int), ("lora_alpha", int), ("learning_rate", float), ("epochs", float),
                      ("max_steps", int), ("batch_size", int), ("grad_accum", int), ("max_length", int),
                      ("eval_steps", int), ("save_steps", int), ("early_stopping_patience", int),
                      ("seed", int), ("val_fraction", float), ("num_virtual_tokens", int),
                      ("train_layers", int), ("warmup_steps", int), ("dpo_beta", float),
                      ("lora_dropout", float), ("grounded_k", int), ("oracle_share", float),
                      ("grounded_passage_tokens", int),
                      ("rl_beta", float), ("num_generations", int), ("max_completion_length", int)):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None)
    p.add_argument("--unfreeze-schedule", dest="unfreeze_schedule", default=None, metavar="N:STEP,...",
                   help="freeze: top N layers trainable from STEP, e.g. 2:0,4:50,all:100")
    p.add_argument("--reward-model", dest="reward_model", default=None,
                   help="rloo: registered reward model (trained with --method reward)")
    p.add_argument("--lr-scheduler", dest="lr_scheduler", choices=SCHEDULERS, default=None)
    p.add_argument("--augment", default=None, metavar="paraphrases:K",
                   help="train also on K paraphrases of each training question written by the generator model")
    p.add_argument("--generator-model", dest="generator_model", default=None,
                   help="model that writes the paraphrases (default: the base model)")
    p.add_argument("--no-keep-best", dest="keep_best", action="store_false", default=None,
                   help="register the last checkpoint instead of the one with the lowest validation loss")
    p.add_argument("--report-to", dest="report_to", default=None, metavar="TRACKER",
                   help="log the run to an experiment tracker: none (default), mlflow, tensorboard, trackio, ...")
    p.add_argument("--init-from", dest="init_from", default=None, help="registered adapter to continue from")
    p.add_argument("--base-model", dest="base_model", default=None, help="base model (default: --model)")
    for name in ("use_dora", "use_rslora"):
        p.add_argument("--" + name.replace("_", "-"), dest=name, action="store_true", default=None)
    p.add_argument("--bf16", nargs="?", const="on", choices=BF16_CHOICES, default=None,
                   help="bf16 autocast: auto (default: where the hardware has native bf16), on, off")
    p.add_argument("--packing", dest="packing", action="store_true", default=None,
                   help="padding-free packing instead of unpadded sub-batches")
    p.add_argument("--sweep-lr", dest="sweep_lr", type=_numbers(float), nargs="+", default=None, metavar="LR",
                   help="sweep these learning rates (comma- or space-separated, e.g. 1e-4,3e-4)")
    p.add_argument("--sweep-rank", "--sweep-r", dest="sweep_r", type=_numbers(int), nargs="+", default=None,
                   metavar="R", help=f"sweep these LoRA ranks (e.g. 4,8); at most {MAX_TRIALS} combinations")


def _numbers(kind):
    """argparse type for '1e-4,3e-4': a list of numbers (the flags also take them space-separated)."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None
    parse.__name__ = f"{kind.__name__} list"  # argparse names the type in its error message
    return parse


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """YAML (if given) overlaid with the CLI flags that were actually passed."""
    cfg = JobConfig.from_yaml(args.config) if args.config else JobConfig()
    for f in fields(JobConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "data":
            setattr(cfg, f.name, value)
    cfg.data = list(cfg.data) + _data_flags(args)
    cfg.sweep = dict(cfg.sweep)
    if args.sweep_lr:
        cfg.sweep["learning_rate"] = [v for part in args.sweep_lr for v in part]
    if args.sweep_r:
        cfg.sweep["lora_r"] = [v for part in args.sweep_r for v in part]
    return cfg


def _data_flags(args: argparse.Namespace) -> list[dict]:
    out = []
    for spec in args.data or []:
        path, _, weight = spec.rpartition(":") if _has_weight(spec) else (spec, "", "")
        out.append({"path": str(Path(path).resolve()), "weight": float(weight) if weight else 1.0})
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


def _has_weight(spec: str) -> bool:
    head, sep, tail = spec.rpartition(":")
    try:
        float(tail)
    except ValueError:
        return False
    return bool(sep and head)
