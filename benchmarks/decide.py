"""Decide benchmark: the whole `arena decide` on a third-party FAQ, plans against each other, old recipe vs new.

Corpora (benchmarks/faq_corpora.py: pinned sdists fetched once from PyPI's JSON API into the cache folder, their
sha256 checked, only the FAQ pages kept and parsed with docutils; never written for this project):
- django (default): the Django FAQ, docs/faq/*.txt of Django 5.2.19 (BSD-3-Clause, the Django Software
  Foundation and contributors): 8 pages, 44 pairs.
- pypi-faqs: no single permissively licensed FAQ of 150 or more question sections was found in a PyPI sdist
  (docs/benchmarks.md lists what was checked), so four are combined, each page its own document with `source`
  PROJECT/PAGE: borgbackup 1.4.5 docs/faq.rst (BSD-3-Clause) 58 pairs, docutils 0.23.1 FAQ.rst (public domain)
  37, Cython 3.3.2 docs/src/userguide/faq.rst (Apache-2.0) 35, SQLAlchemy 2.1.9 doc/build/faq/*.rst (MIT)
  35 on 6 of its 8 pages: 165 pairs.
Every section whose title is a question gives one pair: the title (without a section number), and as reference
answer the section's first sentences (up to faq_corpora.MAX_ANSWER_WORDS words), with the page as `source` so the paired
statistics cluster questions of one page.

What runs, on the bundled model: `arena decide` (run_decide, the same code as the CLI) with every variant, once
per plan named in --plans (default: the decide default budget), each in a fresh workspace of its own on the same
held-out questions (same Q/A file, same split seed): held-out questions from the Q/A file, training pairs +
paraphrases + RAFT grounded rows, the adapter, the comparison with paired statistics, the report. Per plan it
prints per-variant F1 with intervals, the verdict and why, the wall time per stage (sub-stages, the plan's
estimate) and in total. With several plans (e.g. --plans default,fitted,20: the decide default, the plan fitted
to the data, a 20-minute budget) it then prints each plan minus the first as paired per-question differences of
the fine-tuned variants' F1 (paired bootstrap, assistant/compare/bootstrap.py). With one plan it trains, in the
same run and on the same held-out questions, the fine-tuned variants with the OLD recipe (1 epoch, no
paraphrases, the old grounded format: "[citation] text" passages in the user turn under its own system line)
and prints old vs new the same way.

Run: .venv/bin/python benchmarks/decide.py [--corpus django|pypi-faqs] [--plans default,fitted,20] [--pairs 40]
[--questions 12] [--budget-minutes 8] [--paraphrases 3] (reduced sizes for a 2-core machine; no flags = the
Django FAQ, every question, 30 % held out, the decide defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # deferred at run time: these pull torch and the models' stack
    from assistant.compare.result import ComparisonResult
    from assistant.decide.config import DecideConfig
    from assistant.decide.result import DecideResult
    from assistant.runtime import Runtime
    from foundation.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.faq_corpora import CORPORA, faq_pairs, fetch_corpus  # noqa: E402

OLD_SYSTEM = "Answer the question using only the context below. Cite the source in brackets."


def old_grounded_rows(pairs: list[dict], store, k: int = 3, distractors: int = 1, seed: int = 0) -> list[dict]:
    """The grounded rows as the project built them before RAFT (training/builders.py until this issue): k
    retrieved chunks plus a random distractor as "[citation] text" in the user turn, under OLD_SYSTEM."""
    rng, found = random.Random(seed), []
    for p in pairs:
        found.append((p, store.search(p["question"], k=k)))
    pool = [h for _, hits in found for h in hits]
    rows = []
    for p, hits in found:
        extra = [h for h in rng.sample(pool, min(len(pool), distractors + len(hits))) if h not in hits][:distractors]
        chunks = hits + extra
        rng.shuffle(chunks)
        context = "\n\n".join(f"[{h.citation}] {h.text}" for h in chunks)
        rows.append({"messages": [{"role": "system", "content": OLD_SYSTEM},
                                  {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {p['question']}"},
                                  {"role": "assistant", "content": p["answer"]}]})
    return rows


def train_old_recipe(runtime, settings, folder: Path, name: str, seed: int) -> tuple[str, float]:
    """The old defaults: 1 epoch, no paraphrases, old grounded format; returns (adapter, seconds)."""
    from training.config import JobConfig
    from training.job import run_job

    pairs = [json.loads(line) for line in (folder / "evalset" / "train_pairs.jsonl").read_text().splitlines()]
    data = folder / "old-recipe"
    data.mkdir(exist_ok=True)
    qa = [{"messages": [{"role": "user", "content": p["question"]}, {"role": "assistant", "content": p["answer"]}]}
          for p in pairs]
    for fname, rows in (("qa.jsonl", qa), ("grounded.jsonl", old_grounded_rows(pairs, runtime.store, seed=seed))):
        (data / fname).write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = JobConfig(name=name, epochs=1, augment="", early_stopping_patience=0, keep_best=False, seed=seed,
                    data=[{"path": str(data / "qa.jsonl")}, {"path": str(data / "grounded.jsonl")}],
                    job_id=f"bench-old-{int(time.time())}")
    started = time.time()
    result = run_job(job, settings, tools=runtime.data_tools())
    return result["adapter"], time.time() - started


def old_vs_new(runtime, folder: Path, result, old_adapter: str, metric: str) -> list[str]:
    """Paired per-question differences new - old on the fine-tuned variants, same questions and prompts."""
    from dataclasses import replace

    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.comparison import run_comparison
    from foundation.variants import VariantConfig

    items = [EvalItem(**json.loads(line)) for line in (folder / "evalset" / "eval.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (folder / "evalset" / "train_pairs.jsonl").read_text().splitlines()]
    tuned = tuple(v for v in ("finetuned", "rag+finetuned") if v in result.variants)
    compare_cfg = CompareConfig(variants=tuned, metric=metric, adapter=old_adapter, forgetting=False,
                                learned_sample=0, max_new_tokens=result.settings["generation"]["max_new_tokens"])
    variant_cfg = VariantConfig(few_shot=[{"question": p["question"], "answer": p["answer"]} for p in pairs])
    old = run_comparison(runtime, items, replace(compare_cfg), variant_cfg=variant_cfg, store=False)
    return paired_lines(result, old, metric, ("old", "new"))


def paired_lines(new_result, old_result, metric: str, labels: tuple[str, str]) -> list[str]:
    """Per fine-tuned variant: both means and the paired bootstrap interval of new - old, same questions."""
    from assistant.compare.bootstrap import paired_difference

    old_label, new_label = labels
    if [q.question for q in new_result.per_question] != [q.question for q in old_result.per_question]:
        return [f"  {old_label} and {new_label} held out other questions: not comparable"]
    lines = []
    for v in (v for v in ("finetuned", "rag+finetuned") if v in new_result.variants and v in old_result.variants):
        new = [q.answers[v].scores[metric] for q in new_result.per_question]
        old = [q.answers[v].scores[metric] for q in old_result.per_question]
        d = paired_difference(new, old)
        lines.append(f"  {v:<14} {old_label} {sum(old) / len(old):.3f}  {new_label} {sum(new) / len(new):.3f}  "
                     f"{new_label}-{old_label} {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                     "(paired bootstrap)")
    return lines


def docs_vs_default(default: Path | None, folder: Path, result, metric: str) -> list[str]:
    """Paired per-question differences (with documents - without) of the fine-tuned variants."""
    if default is None or not (default / "compare" / "result.json").is_file():
        return ["no default run to compare with: run benchmarks/decide.py without --train-on-documents first"]
    if (default / "evalset" / "eval.jsonl").read_text() != (folder / "evalset" / "eval.jsonl").read_text():
        return ["the default run held out other questions (other --pairs/--questions?): not comparable"]
    base = load_result(default / "compare" / "result.json")
    return ["\nwith the documents' text in training vs without (the default run), same questions:",
            *paired_lines(result, base, metric, ("without", "with"))]


def load_result(path: Path):
    from assistant.compare.result import ComparisonResult

    return ComparisonResult.from_dict(json.loads(path.read_text()), str(path))


def print_result(result, summary, metric: str) -> None:
    from assistant.compare.recommend import headline

    rec = result.recommendation
    print(f"\n{metric} per variant (mean [95 % CI]; best - variant, Holm-adjusted paired interval):")
    for v, s in result.variants.items():
        m, row = s[metric], rec.comparisons.get(v)
        gap = (f"  best-{v}: {row['mean']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
               f"{' separated' if row['separated'] else ''}") if row else "  (best)"
        print(f"  {v:<14} {m.mean:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]{gap}")
    print(f"\nverdict: {headline(rec)} — {rec.reason}")
    for v, sentence in result.why.items():
        print(f"  why not {v}: {sentence}")
    print("\nwall time per stage (s; sub-stages indented):")
    for row in summary.timings.rows:
        took = "cached" if row.cached else f"{row.seconds:.0f}"
        planned = f" (planned {row.planned_s:.0f})" if row.planned_s is not None and not row.cached else ""
        print(f"  {'  ' if row.sub else ''}{row.stage:<{30 if row.sub else 32}} {took}{planned}")
    print(f"  stages in total: {summary.timings.headline()}")


@dataclass
class PlanRun:
    """One plan's fresh decide run: what the paired comparisons and the old-recipe check need."""

    plan: str
    cfg: DecideConfig
    settings: Settings
    runtime: Runtime
    summary: DecideResult
    result: ComparisonResult
    folder: Path  # the workspace's stages/
    wall_s: float


def plan_budgets(text: str, default_minutes: float) -> dict[str, float]:
    """--plans 'default,fitted,20' -> {'default': 10.0, 'fitted': 0.0, '20': 20.0} (budget minutes; 0 = fitted)."""
    budgets = {}
    for plan in (p.strip() for p in text.split(",") if p.strip()):
        if plan in ("default", "fitted"):
            budgets[plan] = default_minutes if plan == "default" else 0.0
            continue
        try:
            budgets[plan] = float(plan)
        except ValueError:
            raise SystemExit(f"--plans: {plan!r} is none of default, fitted or a budget in minutes") from None
        if not 0 < budgets[plan] < 24 * 60:
            raise SystemExit(f"--plans: {plan!r} minutes is no budget (use fitted for an unbounded plan)")
    if not budgets:
        raise SystemExit("--plans: name at least one plan")
    return budgets


def run_plan(args, docs: Path, qa: Path, plan: str, minutes: float, stamp: str) -> PlanRun:
    """run_decide in a workspace of its own, named for the plan and the start time: no stage and no finished
    training job of an earlier run is reused (both are keyed under the workspace name)."""
    from assistant.decide.config import DecideConfig, workspace
    from assistant.decide.runner import run_decide
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    label = plan if plan in ("default", "fitted") else f"{plan}min"
    name = f"bench-{args.corpus}-{label}{'-docs' if args.train_on_documents else ''}-{stamp}"
    settings = Settings(data_dir=args.data / "arena")
    runtime = Runtime(settings)  # one per plan: each plan's timings include loading the models
    cfg = DecideConfig(docs=[str(docs)], qa=str(qa), name=name, splitter="headers", seeds=args.seeds,
                       limit=args.questions, budget_minutes=minutes,
                       augment=f"paraphrases:{args.paraphrases}" if args.paraphrases else "",
                       train_on_documents=args.train_on_documents).resolved()
    shutil.rmtree(workspace(settings.data_dir, name), ignore_errors=True)
    started = time.time()
    summary = run_decide(cfg, settings, runtime=runtime)
    wall = time.time() - started
    folder = workspace(settings.data_dir, name) / "stages"
    return PlanRun(plan, cfg, settings, runtime, summary, load_result(folder / "compare" / "result.json"),
                   folder, wall)


def compare_plans(runs: list[PlanRun], metric: str) -> None:
    """Each plan against the first (the default), paired on the same held-out questions."""
    from assistant.compare.recommend import headline

    first = runs[0]
    print(f"\nplans compared (each minus {first.plan}; token F1 of the fine-tuned variants):")
    for run in runs:
        print(f"  plan {run.plan:<8} wall {run.wall_s:.0f} s, stages {run.summary.timings.took_s:.0f} s; "
              f"verdict: {headline(run.result.recommendation)}")
    for run in runs[1:]:
        for line in paired_lines(run.result, first.result, metric, (first.plan, run.plan)):
            print(line)


def parse_args() -> argparse.Namespace:
    from assistant.decide.config import DEFAULT_BUDGET_MINUTES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=sorted(CORPORA), default="django",
                   help="django: the Django FAQ (44 pairs); pypi-faqs: four projects' FAQs combined (165 pairs)")
    p.add_argument("--pairs", type=int, default=0,
                   help="use N FAQ pairs (0 = all): django the first N, pypi-faqs N spread over its pages")
    p.add_argument("--questions", type=int, default=0, help="score at most N held-out questions (0 = all)")
    p.add_argument("--budget-minutes", type=float, default=DEFAULT_BUDGET_MINUTES,
                   help=f"budget of the 'default' plan (default {DEFAULT_BUDGET_MINUTES:g}, the decide default)")
    p.add_argument("--plans", default="default",
                   help="comma list of plans, each run fresh on the same held-out questions: default "
                        "(--budget-minutes), fitted (budget 0: the plan fitted to the data, hours), or N "
                        "(an N-minute budget); e.g. default,fitted,20. One plan: then the old recipe vs new")
    p.add_argument("--paraphrases", type=int, default=5)
    p.add_argument("--seeds", type=int, default=0, help="training seeds (default 0: the decide default, auto)")
    p.add_argument("--train-on-documents", dest="train_on_documents", action="store_true",
                   help="also train on the documents' text, then compare its fine-tuned variants with the last "
                        "default run's on this corpus (run without this flag first)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "arena-bench-decide")
    p.add_argument("--pair", nargs=2, type=Path, metavar=("A", "B"),
                   help="run nothing: pair two finished decide runs on the same questions (each a result.json "
                        "of a decide workspace's stages/compare/, e.g. `arena decide` runs with other settings "
                        "or code) and print B - A of the fine-tuned variants")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.pair:
        a, b = (load_result(path) for path in args.pair)
        print(f"token F1, B - A on the same questions (A {args.pair[0]}, B {args.pair[1]}):")
        for line in paired_lines(b, a, a.settings.get("metric", "f1"), ("A", "B")):
            print(line)
        return
    budgets = plan_budgets(args.plans, args.budget_minutes)
    if args.train_on_documents and len(budgets) > 1:
        raise SystemExit("--train-on-documents runs one plan: name one in --plans")
    args.data.mkdir(parents=True, exist_ok=True)
    faq = fetch_corpus(args.corpus, args.data)
    corpus = CORPORA[args.corpus]
    pairs = faq_pairs(faq, corpus.by_group)
    if args.pairs:  # Django: the first N, as before; a combined corpus: N spread over its projects and groups
        pairs = [pairs[i * len(pairs) // args.pairs] for i in range(min(args.pairs, len(pairs)))] \
            if corpus.by_group else pairs[: args.pairs]
    qa = args.data / ("faq-qa.jsonl" if args.corpus == "django" else f"faq-qa-{args.corpus}.jsonl")
    qa.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    print(f"{corpus.title} ({corpus.describe()}): {len(list(faq.rglob('*.rst')))} pages, {len(pairs)} Q/A pairs",
          flush=True)
    stamp, runs = time.strftime("%Y%m%d-%H%M%S"), []
    for plan, minutes in budgets.items():
        print(f"\n=== plan {plan}: budget {f'{minutes:g} min' if minutes else 'none (fitted to the data)'} ===",
              flush=True)
        runs.append(run_plan(args, faq, qa, plan, minutes, stamp))
        print_result(runs[-1].result, runs[-1].summary, runs[-1].cfg.metric)
        print(f"decide wall time {runs[-1].wall_s:.0f} s; report {runs[-1].summary.report.markdown}", flush=True)
    first, metric = runs[0], runs[0].cfg.metric
    latest = args.data / f"latest-default-{args.corpus}.txt"  # where --train-on-documents finds the default run
    if args.train_on_documents:
        default = Path(latest.read_text()) if latest.is_file() else None
        for line in docs_vs_default(default, first.folder, first.result, metric):
            print(line)
        return
    if "default" in budgets:
        latest.write_text(str(next(r for r in runs if r.plan == "default").folder))
    if len(runs) > 1:
        compare_plans(runs, metric)
        return
    old, seconds = train_old_recipe(first.runtime, first.settings, first.folder, "bench-old-recipe", first.cfg.seed)
    new_seconds = first.result.costs["finetuned"].training_seconds if "finetuned" in first.result.costs else 0.0
    print("\nold recipe (1 epoch, no paraphrases, old grounded format) vs new (decide defaults), same questions:")
    print(f"  training: old {seconds:.0f} s (job), new {new_seconds:.0f} s")
    for line in old_vs_new(first.runtime, first.folder, first.result, old, metric):
        print(line)


if __name__ == "__main__":
    main()
