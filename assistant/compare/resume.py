"""A comparison's answers and reference NLLs stored per question as they complete, so a killed run resumes.

The runner asks `PartialRun` for every question's answers and NLLs; questions already stored (by an earlier,
interrupted process) are read back instead of generated again. The unit is "one question, all variants":
whatever way the engine batches questions, the answering function reports each question once all its variants
are done (`on_answer`), and that is when it is written (one SQLite transaction in runs.sqlite).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

from assistant.compare.config import CompareConfig
from assistant.compare.evalset import EvalItem
from assistant.compare.runs import RunStore
from foundation.generation import Answer
from foundation.variants import VariantConfig
from retrieval.store import Hit

ANSWERED, SCORED = 0.7, 0.8  # progress fractions at the end of answering and of reference likelihoods
HIT_FIELDS = ("text", "source", "score", "chunk_id", "citation", "section", "page")  # retrieval.store.Hit


def answer_json(answer) -> dict:
    """What scoring and the report read from an Answer (the prompt messages are rebuilt when needed)."""
    return {"variant": answer.variant, "text": answer.text, "ttft_s": answer.ttft_s, "tokens": answer.tokens,
            "tokens_per_s": answer.tokens_per_s, "prompt_tokens": answer.prompt_tokens,
            "adapter": answer.adapter, "notice": answer.notice, "error": answer.error,
            "sources": [{k: getattr(h, k, None) for k in HIT_FIELDS} for h in answer.sources]}


def answer_from_json(data: dict):
    return Answer(data["variant"], data["text"], [Hit(**h) for h in data["sources"]], data["ttft_s"],
                  data["tokens"], data["tokens_per_s"], data["prompt_tokens"], [], data["adapter"],
                  data["notice"], data["error"], True)


def plan_json(items, compare_cfg, variant_cfg) -> dict:
    return {"items": [asdict(it) for it in items], "compare": asdict(compare_cfg),
            "variant_config": asdict(variant_cfg)}


def plan_from_json(plan: dict):
    """(items, CompareConfig, VariantConfig) as the interrupted run had them."""
    def build(cls, data: dict):
        known = {f.name for f in fields(cls)}  # a field added since: its default
        return cls(**{k: v for k, v in data.items() if k in known})

    # A run stored before stop-on-loop existed was answered without it: resume it the same way.
    compare_cfg = build(CompareConfig, {"stop_on_loop": 0, **plan["compare"]})
    compare_cfg.variants = tuple(compare_cfg.variants)
    return [build(EvalItem, it) for it in plan["items"]], compare_cfg, build(VariantConfig, plan["variant_config"])


class PartialRun:
    """One comparison's stored progress (or none, when the run is not stored)."""

    def __init__(self, store: RunStore | None, run_id: int | None, answers=None, scores=None):
        self.store, self.run_id = store, run_id
        self.done_answers: dict[int, dict] = answers or {}
        self.done_scores: dict[int, dict] = scores or {}

    @classmethod
    def begin(cls, data_dir: Path, items, compare_cfg, variant_cfg, resume: int | None = None,
              store: bool = True) -> PartialRun:
        """A new stored run, the stored progress of run `resume`, or (store=False) nothing stored."""
        if not store:
            return cls(None, None)
        runs = RunStore(Path(data_dir) / "runs.sqlite")
        if resume is not None:
            _, answers, scores = runs.partial(resume)
            print(f"resuming comparison run {resume}: {len(answers)} of {len(items)} questions answered, "
                  f"{len(scores)} scored", file=sys.stderr, flush=True)
            return cls(runs, int(resume), answers, scores)
        run_id = runs.start(plan_json(items, compare_cfg, variant_cfg), compare_cfg.label)
        print(f"comparison run {run_id}: if it is interrupted, continue it with `arena compare --resume "
              f"{run_id}`", file=sys.stderr, flush=True)
        return cls(runs, run_id)

    def answers(self, answer_many: Callable, questions: list[str], variants, check: Callable,
                progress: Callable[[float, str], None]) -> list[dict]:
        """Every question's answers; missing ones are generated and stored one question at a time.
        `answer_many(questions, on_answer, progress)` answers with every variant and calls
        `on_answer(j, {variant: Answer})` once question j is complete."""
        done = {i: {v: answer_from_json(a) for v, a in per.items()} for i, per in self.done_answers.items()
                if set(per) >= set(variants)}
        todo = [i for i in range(len(questions)) if i not in done]

        def keep(j: int, per_variant: dict) -> None:
            check([per_variant])  # a variant that cannot run stops the run before anything is stored
            done[todo[j]] = per_variant
            if self.store:
                self.store.save_answers(self.run_id, todo[j], {v: answer_json(a) for v, a in per_variant.items()})

        if todo:
            answer_many([questions[i] for i in todo], keep,
                        lambda n, total: progress(ANSWERED * (len(done) / len(questions)),
                                                  f"answering: {len(done)}/{len(questions)}"))
        return [done[i] for i in range(len(questions))]

    def nlls(self, reference_nll_many: Callable[[list], list[dict]], items, variants,
             progress: Callable[[float, str], None]) -> list[dict]:
        """Every question's reference NLL per variant; the missing ones are scored in one call
        (`reference_nll_many(items) -> [{variant: NLL}]`, which batches) and stored per question."""
        done = {i: s for i, s in self.done_scores.items() if not set(s) < set(variants)}
        todo = [i for i in range(len(items)) if i not in done]
        progress(ANSWERED, f"reference likelihoods: {len(done)}/{len(items)} stored, {len(todo)} to score")
        if todo:
            for i, scores in zip(todo, reference_nll_many([items[i] for i in todo]), strict=True):
                done[i] = scores
                if self.store:
                    self.store.save_scores(self.run_id, i, scores)
        progress(SCORED, f"reference likelihoods: {len(items)}/{len(items)}")
        return [done[i] for i in range(len(items))]

    def finish(self, settings: dict, result) -> int | None:
        return self.store.finish(self.run_id, settings, result) if self.store else None
