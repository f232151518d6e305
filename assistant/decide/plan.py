"""The plan shown before a decide run starts: stages, counts, estimated minutes, what the budget lets fit.

Counts come from the inputs themselves (documents parsed without embedding, Q/A files counted) or, for a
stage already cached, from its output. Minutes are estimates from speeds measured on a 2-vCPU machine
(docs/benchmarks.md) unless this data folder has trained adapters on the same base model, whose measured training
tokens/s are used instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from assistant.compare.evalset import load_eval_set
from assistant.decide.config import MIN_EVAL_QUESTIONS, MIN_TUNING_PAIRS, DecideConfig, job_config
from assistant.decide.outputs import TrainingFit
from foundation.errors import ArenaError
from retrieval.ingest import collect_files
from retrieval.loaders import load_file
from retrieval.tuning import KS, MODES, SPLITTERS
from training import plan as training_plan
from training.builders import SectionText, draw_from_sections
from training.config import bf16_choice, parse_augment
from training.questions import QuestionSettings

EMBED_CHUNKS_PER_S = 30.0  # MiniLM on 800-character chunks, 2 cores: 24 chunks/s fp32, 59 bf16
DECODE_TOKENS_PER_S = 15.0  # one row, bundled model, fp32 (measured 13-17)
BATCH_COST = 0.3  # each extra variant in one batched call costs ~0.3 of a row (measured: 5 rows ~1.6x one)
CHAT_OVERHEAD_TOKENS = 24  # the chat template's role markers around one Q/A row
QA_TOKENS = 60  # one question and its answer
GROUNDED_PASSAGES = 4  # grounded rows: k retrieved passages plus a distractor
PASSAGE_TOKENS = 180  # one retrieved passage with its citation (~800 characters)
RAG_INSTRUCTION_TOKENS = 60  # the RAG instruction above the passages
SEED_OVERHEAD_S = 20  # per seed: model load, save
# A budget-cut job validates (and checkpoints) this many times: half way and at the end. Each took ~22-27 s on the
# 165-pair PyPI FAQs' 24 validation rows in fp32 (twelve of them were 37 % of a 702 s one-epoch job), ~9 s in bf16.
# Three (a third, two thirds, the end) never found a better checkpoint than the last in the four default one-epoch
# runs on a Zen 4; in the 1.5-epoch --budget-minutes 20 run the best (step 50 of 182) beat the half-way one (91)
# by 0.004 in validation loss.
BUDGET_EVALS = 2
# When the budget leaves at most SHORT_EPOCHS epochs, the job trains in batches of SHORT_BATCH rows (unless
# --batch-size is given): the same rows and tokens (the cost: rows run packed, without padding) give Adam twice
# the steps of the default 8. On the 165-pair PyPI FAQs one epoch in batches of 8 (32 steps) scored
# rag+finetuned 0.084 token F1 below 91 steps, paired interval -0.188 to +0.011 (docs/benchmarks.md).
SHORT_EPOCHS, SHORT_BATCH = 2.0, 4
REPORT_S = 3
PARAPHRASE_TOKENS = 30  # one sampled rewrite of a question, with its end token
GENERATOR_TOKENS = QuestionSettings(model="").max_new_tokens  # per question: an upper bound, small models ramble
# Rows decoded in the time of one: each engine call samples 16 rewrites (training/augment.py BATCH_ROWS). On the
# 165-pair PyPI FAQs' 103 questions x 1 (fresh default decides, idle, 2 cores) the rewrites with the data, model
# load and save took 38 s on a Zen 4 and 52 s on an AVX2 EPYC, where one row at a time plans 206 s. (At 4 rows a
# call it was 3.)
BATCHED_ROWS = 5
# Share of the sampled rewrites the paraphrase filters keep: 67 of 135 on the Django FAQ, 295 of 515 on the
# 165-pair PyPI FAQs (docs/benchmarks.md). Counting every sample made the one-epoch floor 91 steps where the
# real epoch was 63.
PARAPHRASE_KEPT = 0.55
# A short budget cuts rewrites per question down to this many before training falls to its floor.
MIN_PARAPHRASES = 1
# The comparison's seconds as multiples of the answering estimate (answer_s below), measured on fresh default
# decides of the 165-pair PyPI FAQs (50 questions x 5 variants, idle, 2 cores): answering, probes, learned check and
# scoring 326 s on an AVX2 EPYC and 268-269 s on a Zen 4; since the graph computes only the last token's logits
# (inference/ort_build.py) 233 s on the Zen 4, answering 0.85x. The AVX2 figure is from before that change: with
# the same 0.85x on its answering it would be ~285 s (not measured); 30 s + 0.50 x answer_s (264 s) was planned,
# between the two. The reference NLL of every variant: 195 s (AVX2).
# The forgetting check and the bias probe score a fixed set of items whatever the question count (35, 48 and 43 s
# in the Zen 4 runs 9-11), so they are a fixed PROBES_S: as a share of answering they were planned at seconds for
# a decide of a few questions, where they took 154 s (a busy machine). 30 + PROBES_S + 0.40 x answer_s keeps the
# 50-question figure.
COMPARE_SHARE, NLL_SHARE, PROBES_S = 0.40, 0.42, 45


@dataclass(slots=True)
class PlanStage:
    """One row of the plan: `seconds` is the fresh estimate, `minutes` the same rounded for display."""

    stage: str
    what: str
    count: str
    minutes: float
    seconds: float
    cached: bool


@dataclass
class Plan:
    """What a run will do, one `PlanStage` per stage."""

    stages: list[PlanStage] = field(default_factory=list)
    seeds: int = 1  # seeds that fit the budget
    steps_per_seed: int = 0
    train_rows: int = 0
    notes: list[str] = field(default_factory=list)
    other_s: float = 0.0  # the stages besides training, fresh (what a budget pays before training)
    seed_compare_s: float = 0.0  # what each further seed adds to the comparison
    at_floor: bool = False  # the budget left training less than its floor (one epoch of one seed)
    nll_s: float = 0.0  # the comparison's reference NLL in other_s: the first thing a short budget drops
    reference_nll: bool = True  # the budget left room for it

    @property
    def minutes(self) -> float:
        """The stages still to run, from their seconds (summing rounded minutes drifted from the run's own
        'plan said' figure)."""
        return round(sum(s.seconds for s in self.stages if not s.cached) / 60, 1)

    def estimates(self) -> dict[str, float]:
        """Seconds per stage, for the progress bar's weights: cached stages weigh nothing, training is split
        evenly over its seeds (train-s0, train-s1, ...)."""
        out = {}
        for s in self.stages:
            seconds = 0.0 if s.cached else s.minutes * 60
            if s.stage == "train":
                out.update({f"train-s{i}": seconds / self.seeds for i in range(self.seeds)})
            else:
                out[s.stage] = seconds
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "minutes": self.minutes}

    def text(self) -> str:
        lines = [f"{'stage':<9} {'count':<28} {'minutes':>8}"]
        lines += [f"{s.stage:<9} {s.count:<28} {'cached' if s.cached else s.minutes:>8}" for s in self.stages]
        return "\n".join(lines + [f"total ~{self.minutes} min"] + [f"note: {n}" for n in self.notes])


def doc_stats(paths: list[str]) -> tuple[int, int, int, int]:
    """(files, characters, QA pairs the heuristic draws, malformed ones it drops) without embedding anything."""
    files, _ = collect_files([Path(p) for p in paths])
    chars = pairs = malformed = 0
    for path, source in files:
        try:
            doc = load_file(path, source=source)
        except ArenaError:
            continue  # ingestion reports the bad file by name
        chars += len(doc.text)
        drawn = draw_from_sections([SectionText(s.title, s.text, source) for s in doc.segments])
        pairs, malformed = pairs + len(drawn.kept), malformed + drawn.dropped
    return len(files), chars, pairs, malformed


def budget_fit(seeds: int, steps: int, step_s: float, budget_minutes: float,
               min_steps: int, per_seed_s: float = 0.0, shown: str = "") -> tuple[int, int, list[str]]:
    """(seeds, steps per seed, notes) within the budget: steps are cut down to `min_steps` first, then seeds.
    `per_seed_s`: what each seed costs besides its steps (model load and save, its own comparison); `shown`:
    how the notes name the budget (default "budget M min")."""
    if budget_minutes <= 0 or seeds * (steps * step_s + per_seed_s) <= budget_minutes * 60:
        return seeds, steps, []
    shown = shown or f"budget {budget_minutes:g} min"
    budget_s = budget_minutes * 60
    fit_steps = int((budget_s / seeds - per_seed_s) / step_s)
    if fit_steps >= min_steps:
        return seeds, fit_steps, [f"{shown} cut training from {steps} to {fit_steps} steps "
                                  f"per seed ({seeds} seed(s))"]
    fit_seeds = max(1, int(budget_s / (max(min_steps, 1) * step_s + per_seed_s)))
    fit_steps = max(1, min(steps, int((budget_s / fit_seeds - per_seed_s) / step_s)))
    which = f"only {fit_seeds} of {seeds} seed(s)" if fit_seeds < seeds else f"{seeds} seed(s)"
    return fit_seeds, fit_steps, [f"{shown} cut training from {steps} to {fit_steps} steps: "
                                  f"{which} × {fit_steps} steps fit"
                                  f"{', less than one epoch' if fit_steps < min_steps else ''}"]


def _evalset_stage(cfg: DecideConfig, plan: Plan, n_eval: int, n_train: int, split: bool, doc_pairs: int,
                   malformed: int) -> tuple[int, int]:
    """The evaluation-questions row (from --eval, --qa, a generator or the heuristic, with its notes; `split`:
    the stage is cached); returns the evaluation and training counts, the generator's planned ones when it
    writes the questions."""
    origin = "--eval file" if cfg.eval else "held out from --qa" if cfg.qa else "held-out document sections"
    generate_s = 0.0
    if cfg.generator and not cfg.qa:
        if not split:  # the generator's planned counts (before filtering); beside --eval, the file's count
            written_eval, n_train = cfg.question_counts(hold_out=not cfg.eval)
            n_eval = n_eval if cfg.eval else written_eval
        origin += f", {cfg.questions} questions written by {cfg.generator}, then filtered"
        generate_s = cfg.questions * GENERATOR_TOKENS / DECODE_TOKENS_PER_S
        plan.notes.append(f"{cfg.questions} questions are written by the generator {cfg.generator} and filtered (the "
                          "counts above are before filtering); the time assumes the bundled model's speed on this "
                          "machine" + (" (a server may be faster)" if cfg.generator.startswith("openai:") else ""))
    elif not cfg.qa:  # the documents give the questions (all of them, or the training pairs beside --eval)
        origin += ", questions drawn by a heuristic" if not cfg.eval else ""
        plan.notes.append(f"the questions are drawn from the documents by a heuristic (question headings and "
                          f"'X is a ...' sentences): {doc_pairs} well-formed, {malformed} dropped as malformed; "
                          "--generator writes questions a user would ask")
        if n_eval < MIN_EVAL_QUESTIONS and not cfg.eval:
            plan.notes.append(f"the run will stop at the evaluation questions: about {n_eval} can be held out "
                              f"and a verdict needs at least {MIN_EVAL_QUESTIONS}; pass --generator or --qa")
    plan.stages.append(_row("evalset", f"evaluation questions ({origin})", f"{n_eval} eval, {n_train} train",
                            2 + generate_s, split))
    return n_eval, n_train


def _budget_note(cfg: DecideConfig, plan: Plan) -> str:
    fresh = sum(s.seconds for s in plan.stages) / 60
    return (f"budget {cfg.budget_minutes:g} min for a fresh run (--budget-minutes 0 = fit the plan to the data): "
            f"~{fresh:.1f} min planned" + (", over budget: the other stages leave too little, training keeps its "
                                           "floor (one epoch of one seed)" if plan.at_floor else ""))


def make_plan(cfg: DecideConfig, settings, cache=None, keys: dict | None = None) -> Plan:
    """The plan for `cfg`; `cache`/`keys` (stage -> key) mark stages whose result is already cached."""

    def cached(stage):
        return bool(cache and keys and keys.get(stage) and cache.cached(stage, keys[stage]))

    files, chars, doc_pairs, malformed = doc_stats(cfg.docs)
    chunks = max(1, round(chars / 700))
    # Q/A rows of the JSONL/CSV files, read with the evaluation-set reader, which checks them
    qa_rows, eval_rows = (len(load_eval_set(Path(path))) if path else 0 for path in (cfg.qa, cfg.eval))
    pool = qa_rows or doc_pairs
    held = eval_rows or max(1, round(pool * cfg.eval_fraction))
    n_eval = min(held, cfg.limit) if cfg.limit else held  # --limit scores fewer; the held-out rest stays out
    n_train = pool if eval_rows else max(0, pool - held)
    split = cache.cached("evalset", keys["evalset"]) if cache and keys else None
    if split:  # the real counts, once the split is made
        n_eval, n_train = split.eval, split.train
    plan = Plan()
    plan.stages.append(_row("ingest", "read, chunk and embed the documents", f"{files} files, ~{chunks} chunks",
                            chunks / EMBED_CHUNKS_PER_S + 5, cached("ingest")))
    n_eval, n_train = _evalset_stage(cfg, plan, n_eval, n_train, bool(split), doc_pairs, malformed)
    plan.stages.append(_retrieval_row(cfg, n_train, chunks, cached("retrieval")))
    rows = n_train * (2 if cfg.grounded and "rag+finetuned" in cfg.variants else 1) if cfg.trains else 0
    rows += chunks if cfg.trains and cfg.train_on_documents else 0  # about one text row per section
    what = "; document text" if cfg.train_on_documents else ""
    plan.stages.append(_row("trainset", f"training rows (Q/A pairs; grounded rows for rag+finetuned{what})",
                            f"{rows} rows", 2 + n_train * 0.05, cached("trainset")))
    n_variants = len(cfg.variants)
    new_tokens = cfg.max_new_tokens or 64
    answer_s = n_eval * new_tokens * (1 + BATCH_COST * (n_variants - 1)) / DECODE_TOKENS_PER_S
    plan.nll_s = round(answer_s * NLL_SHARE, 1) if cfg.metric not in ("nll", "ppl") else 0.0  # droppable part
    compare_s = 30 + answer_s * (COMPARE_SHARE + NLL_SHARE) + (PROBES_S if cfg.trains and cfg.forgetting else 0)
    plan.other_s = round(sum(s.seconds for s in plan.stages) + compare_s + REPORT_S, 1)
    # each further seed answers every question again with its adapter variants
    plan.seed_compare_s = seed_compare_s = round(n_eval * new_tokens * 1.3 / DECODE_TOKENS_PER_S, 1)
    if cfg.trains:
        # Once the trainset stage is cached, its recorded rows and fit are what training will use.
        done = cache.cached("trainset", keys["trainset"]) if cache and keys else None
        plan.train_rows = done.rows if done else rows
        plan.stages.append(_train_row(cfg, settings, plan, cached, done and done.fit))
    compare_s -= 0 if plan.reference_nll else answer_s * NLL_SHARE
    plan.stages.append(_row("compare", f"{n_variants} variants answer every question, paired statistics"
                            + ("" if plan.reference_nll else " (no reference NLL: budget)"),
                            f"{n_eval} questions × {n_variants} variants",
                            compare_s + max(0, plan.seeds - 1) * seed_compare_s, cached("compare")))
    plan.stages.append(_row("report", "verdict, reasons and costs (Markdown, HTML, JSON)", "3 files", REPORT_S,
                            cached("report")))
    if cfg.budget_minutes:
        plan.notes.insert(0, _budget_note(cfg, plan))
    if n_train < 4 and cfg.trains:
        plan.notes.append(f"only {n_train} training pairs: the fine-tuned variants will say little")
    return plan


class _Estimate(NamedTuple):
    """Training's cost with `k` rewrites per question: the job's own plan, one optimizer step, one epoch, the
    rewrites' generation."""

    k: int
    tokens_per_row: float
    job_plan: training_plan.TrainingPlan
    step_s: float
    one_epoch: int
    paraphrase_s: float
    eval_s: float  # one validation pass with its checkpoint


def _estimate(cfg: DecideConfig, settings, rows: int, job, k: int, bf16: bool,
              row_tokens: tuple[float, float] | None) -> _Estimate:
    grounded = cfg.grounded and "rag+finetuned" in cfg.variants
    questions = round(rows / 2) if grounded else rows  # plain Q/A rows: the ones paraphrased
    long_rows = rows - questions  # grounded (and document) rows: never paraphrased
    short_rows = questions + round(questions * k * PARAPHRASE_KEPT)
    tokens_per_row = mean_row_tokens(short_rows, long_rows, job, row_tokens)
    speed, basis = training_plan.measured_tokens_per_s(settings.data_dir, settings.model, bf16)
    train_rows = max(1, round((short_rows + long_rows) * (1 - job.val_fraction)))
    tp = training_plan.plan(job, train_rows, tokens_per_row, speed, basis, bf16=bf16)
    step_s = job.batch_size * job.grad_accum * tokens_per_row / tp.tokens_per_s
    one_epoch = min(tp.steps, training_plan.steps_per_epoch(job, train_rows))
    paraphrase_s = questions * k * PARAPHRASE_TOKENS / DECODE_TOKENS_PER_S / BATCHED_ROWS
    val_rows = round((short_rows + long_rows) * job.val_fraction)
    eval_s = training_plan.validation_tokens(val_rows, tokens_per_row) / tp.tokens_per_s
    return _Estimate(k, tokens_per_row, tp, step_s, one_epoch, paraphrase_s, eval_s)


def training_fit(cfg: DecideConfig, settings, rows: int, job, other_s: float = 0.0,
                 seed_compare_s: float = 0.0, row_tokens: tuple[float, float] | None = None,
                 nll_s: float = 0.0) -> TrainingFit:
    """Seeds and steps per seed that fit the budget for `rows` training rows (before paraphrases), from the
    training job's own plan (training/plan.py: fitted steps, this machine's measured tokens/s). The budget is
    for the whole fresh run: training gets what `other_s` (the other stages' estimate) leaves. When that is
    less than one epoch of one seed, the cuts go in this order: the comparison's reference NLL (`nll_s` of
    `other_s`, 0 when the metric needs it: it is not part of a token-F1 verdict), then rewrites per question
    down to MIN_PARAPHRASES, then training keeps its floor, one epoch of one seed, over budget. `row_tokens`:
    measured mean tokens of a (short Q/A, long grounded or document) row, once the rows exist (the trainset
    stage); before, estimates from the constants above."""
    from foundation.models import resolve_device, use_bf16  # deferred: pulls torch

    bf16 = use_bf16(bf16_choice(job.bf16), resolve_device(settings.device))
    asked = parse_augment(job.augment)
    options = [(asked, True)]
    if cfg.budget_minutes:  # what a short budget gives up, in order (see the docstring)
        keep_nll = not nll_s  # 0: the metric is the NLL itself
        options += [(asked, False)] * bool(nll_s) + [(k, keep_nll) for k in range(asked - 1, MIN_PARAPHRASES - 1, -1)]
    train_budget, floor = 0.0, False
    for k, nll in options:
        est = _estimate(cfg, settings, rows, job, k, bf16, row_tokens)
        if not cfg.budget_minutes:
            break
        # budget_fit charges every seed its comparison; seed 0's is already in other_s
        left = cfg.budget_minutes * 60 - other_s + (0 if nll else nll_s) - est.paraphrase_s + seed_compare_s
        floor_s = est.one_epoch * est.step_s + SEED_OVERHEAD_S + BUDGET_EVALS * est.eval_s + seed_compare_s
        train_budget, floor = max(left, floor_s) / 60, left < floor_s
        if not floor:
            break
    seeds, steps, notes = budget_fit(cfg.seed_count, est.job_plan.steps, est.step_s, train_budget, est.one_epoch,
                                     SEED_OVERHEAD_S + BUDGET_EVALS * est.eval_s + seed_compare_s,
                                     f"budget {cfg.budget_minutes:g} min")
    steps = max(steps, est.one_epoch) if floor else steps  # the floor's seconds back to steps can round one down
    capped = steps < est.job_plan.steps
    evals = BUDGET_EVALS if capped else math.ceil(est.job_plan.steps / est.job_plan.eval_steps)
    epochs = round(steps / est.one_epoch, 3) if capped else 0.0
    rows_per_step = job.batch_size * job.grad_accum
    batch = SHORT_BATCH if capped and epochs <= SHORT_EPOCHS and not cfg.batch_size \
        and rows_per_step > SHORT_BATCH else 0
    scale = rows_per_step / batch if batch else 1.0  # same rows and tokens, more steps
    if floor or batch:  # the cut in the units the job runs
        notes = [n for n in notes if "cut training" not in n] + [
            f"budget {cfg.budget_minutes:g} min cut training from {est.job_plan.steps} steps of {rows_per_step} rows "
            f"to {round(steps * scale)} steps of {batch or rows_per_step} rows per seed ({epochs:g} epoch(s)"
            + (", the floor: one epoch of one seed" if floor else "")
            + (f", only {seeds} of {cfg.seed_count} seed(s)" if seeds < cfg.seed_count else "")
            + ("; smaller batches give Adam more steps on the same rows, --batch-size sets it" if batch else "")
            + ")"]
    notes += _cut_notes(cfg, nll, asked, est, other_s - (0 if nll else nll_s), floor)
    return TrainingFit(seeds, round(steps * scale), est.job_plan.steps, capped, round(est.step_s / scale, 3),
                       est.job_plan.basis, notes, round(est.tokens_per_row, 1), round(est.paraphrase_s, 1), bf16,
                       floor, paraphrases=est.k if est.k != asked else -1, reference_nll=nll, epochs=epochs,
                       evals_s=round(evals * est.eval_s, 1) if est.job_plan.keeps_best else 0.0, batch_size=batch)


def _cut_notes(cfg: DecideConfig, nll: bool, asked: int, est: _Estimate, other_s: float, floor: bool) -> list[str]:
    shown = f"the {cfg.budget_minutes:g} min budget"
    notes = [] if nll else [f"{shown} leaves out the comparison's reference NLL (not part of the verdict on "
                            f"{cfg.metric}; --budget-minutes 0 scores it)"]
    if est.k < asked:
        notes.append(f"{shown} cut the rewrites per training question from {asked} to {est.k} (--augment)")
    if floor:
        notes.append(f"the other stages (~{other_s / 60:.1f} min) and the paraphrases (~{est.paraphrase_s / 60:.1f} "
                     f"min) fill {shown}: training keeps its floor, one epoch of one seed; fewer questions "
                     "(--limit) or variants would fit it")
    return notes


def mean_row_tokens(short_rows: int, grounded_rows: int, job, measured: tuple[float, float] | None = None) -> float:
    """Mean tokens of a training row: the short Q/A and paraphrase rows and the grounded rows weighted by their
    counts (paraphrases multiply only the short ones; a paraphrase is about as long as its question). Averaging
    per source row instead overcounted the long grounded rows ~2x with 5 paraphrases: the plan said 4,600 s
    where training took 683 s (issue 25). `measured`: (short, long) means of the real rows."""
    short = CHAT_OVERHEAD_TOKENS + QA_TOKENS
    passages = min(GROUNDED_PASSAGES * PASSAGE_TOKENS, job.grounded_passage_tokens or math.inf)
    short, long = measured or (short, short + RAG_INSTRUCTION_TOKENS + passages)
    return (short_rows * short + grounded_rows * long) / max(1, short_rows + grounded_rows)


def seeds_that_fit(cfg: DecideConfig, fit: TrainingFit | None) -> int:
    """Seeds that fit the budget (`fit`: the trainset stage's), else all of them."""
    return min(cfg.seed_count, fit.seeds) if cfg.budget_minutes and fit else cfg.seed_count


def _train_row(cfg, settings, plan: Plan, cached, fit: TrainingFit | None = None) -> PlanStage:
    """The training row, for plan.train_rows rows: from the cached trainset stage's `fit`, else a new one."""
    fit = fit or training_fit(cfg, settings, plan.train_rows, job_config(cfg), plan.other_s, plan.seed_compare_s,
                              nll_s=plan.nll_s)
    plan.reference_nll = fit.reference_nll
    plan.seeds = seeds_that_fit(cfg, fit)
    plan.steps_per_seed = fit.steps_per_seed if cfg.budget_minutes else fit.wanted_steps
    plan.notes += fit.notes
    plan.at_floor = bool(cfg.budget_minutes and fit.at_floor)
    seconds = plan.seeds * (plan.steps_per_seed * fit.step_s + SEED_OVERHEAD_S + fit.evals_s)
    seconds += fit.paraphrase_s  # written once, cached for the other seeds
    return _row("train", f"LoRA adapter × {plan.seeds} seed(s), {'bf16' if fit.bf16 else 'fp32'}",
                f"{plan.seeds} × {plan.steps_per_seed} steps on {plan.train_rows} rows", seconds,
                all(cached(f"train-s{i}") for i in range(plan.seeds)))


def _retrieval_row(cfg: DecideConfig, n_train: int, chunks: int, cached: bool) -> PlanStage:
    if not cfg.tune_retrieval or n_train < MIN_TUNING_PAIRS:
        return _row("retrieval", "default retrieval settings (tuning off or too few training pairs)", "-", 1, cached)
    # each splitter's chunks are embedded once into a throw-away index; the searches are cheap beside that
    return _row("retrieval", "splitter, k and search mode by retrieval hit rate on the training pairs",
                f"{len(SPLITTERS) * len(MODES) * len(KS)} settings, {n_train} pairs",
                len(SPLITTERS) * (chunks / EMBED_CHUNKS_PER_S + 5), cached)


def _row(stage: str, what: str, count: str, seconds: float, cached: bool) -> PlanStage:
    return PlanStage(stage, what, count, round(seconds / 60, 1), round(seconds, 1), cached)
