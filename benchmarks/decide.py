"""Decide benchmark: the whole `arena decide` on a third-party FAQ, and the old training recipe vs the new.

Corpus: the Django FAQ (docs/faq/*.txt of the Django 5.2.19 source distribution on PyPI; BSD-3-Clause,
copyright the Django Software Foundation and contributors; not written for this project). It is fetched once
with pip (`pip download --no-deps --no-binary :all: django==5.2.19`) into the cache folder and parsed with
docutils. Documents: the FAQ pages (as .rst). Q/A pairs: every section whose title is a question gives one
pair: the title, and as reference answer the section's first sentences (up to MAX_ANSWER_WORDS words), with
the page as `source` so the paired statistics cluster questions of one page.

What runs, on the bundled model: `arena decide` (run_decide, the same code as the CLI) with every variant:
held-out questions from the Q/A file, training pairs + paraphrases + RAFT grounded rows, the adapter,
the comparison with paired statistics, the report. Then, in the same run and on the same held-out questions,
the fine-tuned variants trained with the OLD recipe (1 epoch, no paraphrases, the old grounded format:
"[citation] text" passages in the user turn under its own system line), compared with the new recipe's
adapter on paired per-question differences. Prints per-variant F1 with intervals, the verdict and why,
stage timings, and old vs new.

Run: .venv/bin/python benchmarks/decide.py [--pairs 40] [--questions 12] [--budget-minutes 8] [--paraphrases 3]
(reduced sizes for a 2-core machine; no flags = every FAQ question, 30 % held out, the decide defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DJANGO = "django==5.2.19"
FAQ_PREFIX = "django-5.2.19/docs/faq/"
MAX_ANSWER_WORDS = 40
OLD_SYSTEM = "Answer the question using only the context below. Cite the source in brackets."


def fetch_faq(cache: Path) -> Path:
    """The FAQ pages as .rst files in cache/faq (pip download of the sdist once, then only the FAQ kept)."""
    out = cache / "faq"
    if out.is_dir() and any(out.glob("*.rst")):
        return out
    sdist = cache / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", DJANGO,
                    "-d", str(sdist)], check=True, stdout=subprocess.DEVNULL)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(next(sdist.glob("django-*.tar.gz"))) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix(FAQ_PREFIX)
            if member.name.startswith(FAQ_PREFIX) and name.endswith(".txt") and name != "index.txt":
                (out / name.replace(".txt", ".rst")).write_bytes(tar.extractfile(member).read())
    return out


def faq_pairs(folder: Path) -> list[dict]:
    """(question title, first sentences of its section) per question-titled section, via docutils."""
    from docutils import nodes
    from docutils.core import publish_doctree

    pairs = []
    for page in sorted(folder.glob("*.rst")):
        # Sphinx roles (:doc:, :setting:) are unknown to plain docutils: keep their text, report nothing.
        tree = publish_doctree(page.read_text(encoding="utf-8"),
                               settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": False})
        for section in tree.findall(nodes.section):
            title = section.next_node(nodes.title).astext().strip()
            para = next((p for p in section.findall(nodes.paragraph) if p.parent is section), None)
            if not title.endswith("?") or para is None:
                continue
            answer = _first_words(plain_roles(" ".join(para.astext().split())))
            if len(answer) >= 20:
                pairs.append({"question": title, "answer": answer, "source": page.name})
    return pairs


def plain_roles(text: str) -> str:
    """Sphinx cross-references as a reader sees them: :class:`~a.b.C` -> C, :ref:`text <label>` -> text."""
    def show(m: re.Match) -> str:
        inner = m.group(1)
        if "<" in inner:
            return inner.split("<", 1)[0].strip()
        return inner.rsplit(".", 1)[-1] if inner.startswith("~") else inner
    return re.sub(r":[\w:+-]+:`([^`]*)`", show, text).replace("``", "")


def _first_words(text: str) -> str:
    """Whole sentences up to MAX_ANSWER_WORDS words (at least the first sentence)."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if out and len(" ".join(out + [sentence]).split()) > MAX_ANSWER_WORDS:
            break
        out.append(sentence)
    return " ".join(out)


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
    lines = []
    for v in (v for v in ("finetuned", "rag+finetuned") if v in new_result.variants):
        new = [q.answers[v].scores[metric] for q in new_result.per_question]
        old = [q.answers[v].scores[metric] for q in old_result.per_question]
        d = paired_difference(new, old)
        lines.append(f"  {v:<14} {old_label} {sum(old) / len(old):.3f}  {new_label} {sum(new) / len(new):.3f}  "
                     f"{new_label}-{old_label} {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                     "(paired bootstrap)")
    return lines


def docs_vs_default(default: Path, folder: Path, result, metric: str) -> list[str]:
    """Paired per-question differences (with documents - without) of the fine-tuned variants."""
    if not (default / "compare" / "result.json").is_file():
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
    print("\nstage timings: " + ", ".join(f"{s.stage} {s.seconds:.0f} s" + (" (cached)" if s.cached else "")
                                          for s in summary.stages))


def main() -> None:
    from assistant.decide.config import DecideConfig, workspace
    from assistant.decide.runner import run_decide
    from assistant.runtime import Runtime
    from foundation.settings import Settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=0, help="use the first N FAQ pairs (0 = all)")
    p.add_argument("--questions", type=int, default=0, help="score at most N held-out questions (0 = all)")
    p.add_argument("--budget-minutes", type=float, default=0.0, help="training budget of the new recipe")
    p.add_argument("--paraphrases", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--train-on-documents", dest="train_on_documents", action="store_true",
                   help="workspace bench-docs: also train on the documents' text, then compare its fine-tuned "
                        "variants with the default run's (workspace bench: run without this flag first)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "arena-bench-decide")
    args = p.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    faq = fetch_faq(args.data)
    pairs = faq_pairs(faq)
    pairs = pairs[: args.pairs] if args.pairs else pairs
    qa = args.data / "faq-qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    print(f"Django FAQ (BSD-3-Clause): {len(list(faq.glob('*.rst')))} pages, {len(pairs)} Q/A pairs", flush=True)
    settings = Settings(data_dir=args.data / "arena")
    runtime = Runtime(settings)
    cfg = DecideConfig(docs=[str(faq)], qa=str(qa), name="bench-docs" if args.train_on_documents else "bench",
                       splitter="headers", seeds=args.seeds, limit=args.questions, budget_minutes=args.budget_minutes,
                       augment=f"paraphrases:{args.paraphrases}" if args.paraphrases else "",
                       train_on_documents=args.train_on_documents).resolved()
    started = time.time()
    summary = run_decide(cfg, settings, runtime=runtime)
    folder = workspace(settings.data_dir, cfg.name) / "stages"
    result = load_result(folder / "compare" / "result.json")
    print_result(result, summary, cfg.metric)
    print(f"decide wall time {time.time() - started:.0f} s; report {summary.report.markdown}", flush=True)
    if args.train_on_documents:
        for line in docs_vs_default(workspace(settings.data_dir, "bench") / "stages", folder, result, cfg.metric):
            print(line)
        return
    old, seconds = train_old_recipe(runtime, settings, folder, "bench-old-recipe", cfg.seed)
    new_seconds = result.costs["finetuned"].training_seconds if "finetuned" in result.costs else 0.0
    print("\nold recipe (1 epoch, no paraphrases, old grounded format) vs new (decide defaults), same questions:")
    print(f"  training: old {seconds:.0f} s (job), new {new_seconds:.0f} s")
    for line in old_vs_new(runtime, folder, result, old, cfg.metric):
        print(line)


if __name__ == "__main__":
    main()
