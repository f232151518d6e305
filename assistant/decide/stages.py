"""The stages of `arena decide`, each calling the same code as the individual command it stands for:
ingest (`arena ingest`), evalset (the comparison's evaluation-set readers and leakage guard), trainset
(training/builders), train (`arena train`'s run_job, one job per seed), compare (`arena compare`'s
run_comparison), report (assistant/decide/report.py). Keys are computed up front from the config and the
input files' contents, so the plan can say which stages are already cached.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
from pathlib import Path
from statistics import fmean

from assistant.compare.evalset import draw_eval_set, load_eval_set
from assistant.decide import outputs, questions
from assistant.decide.cache import StageCache, file_digest
from assistant.decide.config import (
    MIN_EVAL_QUESTIONS,
    MIN_TUNING_PAIRS,
    DecideConfig,
    decision_index,
    job_config,
    workspace,
)
from assistant.decide.plan import BUDGET_EVALS, training_fit
from assistant.decide.progress import DecideCancelled, Reporter
from foundation.errors import ArenaError
from foundation.leakage import find_overlaps, split_by_section
from foundation.records import read_jsonl, write_jsonl
from foundation.row_cache import content_key
from foundation.variants import VariantConfig
from retrieval.chunking import ChunkConfig
from retrieval.ingest import collect_files, ingest_paths
from retrieval.store import has_index
from retrieval.tuning import choose_retrieval
from training.builders import cpt_from_sections, draw_from_sections, grounded_examples, qa_from_sections
from training.data import chat
from training.doc_questions import generated_or_fallback


class DecideRun:
    """One decide run over a workspace: its config, stage cache, keys and (lazily) the shared runtime."""

    def __init__(self, cfg: DecideConfig, settings, runtime=None):
        self.cfg, self.settings = cfg, settings
        self.folder = workspace(self.settings.data_dir, self.cfg.name)
        if runtime is not None:
            self.runtime = runtime.with_index(self.index_dir)
        self.cache = StageCache(self.folder)
        self.keys = self.stage_keys()

    @property
    def index_dir(self) -> Path:
        return decision_index(self.settings.data_dir, self.cfg.name)

    @functools.cached_property
    def runtime(self):
        from assistant.runtime import Runtime  # deferred: pulls torch

        return Runtime(self.settings, index_dir=self.index_dir)

    def rebuild_missing_index(self) -> None:
        """A workspace made before decisions had their own index (or whose index was deleted): its ingest and
        retrieval stages run again to fill it; their keys, and so every later stage, stay cached."""
        if not has_index(self.index_dir) and self.cache.cached("ingest", self.keys["ingest"]):
            for stage in ("ingest", "retrieval"):
                (self.cache.folder(stage) / "stage.json").unlink(missing_ok=True)

    # ---- keys: what each stage's result depends on --------------------------------------------------
    def doc_files(self) -> list[tuple[str, str]]:
        files, missing = collect_files([Path(p) for p in self.cfg.docs])
        if missing and not files:
            raise ArenaError("; ".join(m.message for m in missing))
        return sorted((source, file_digest(path)) for path, source in files)

    def stage_keys(self) -> dict[str, str]:
        c, s = self.cfg, self.settings
        keys = {"ingest": content_key("ingest", self.doc_files(), c.splitter, s.embedder)}
        digest = {k: file_digest(Path(getattr(c, k))) if getattr(c, k) else "" for k in ("qa", "eval")}
        # the generator joins the key only when set, so workspaces made before the option stay cached
        keys["evalset"] = content_key("evalset", keys["ingest"], digest, c.eval_fraction, c.seed, c.limit,
                                      *questions.key_parts(c))
        job = job_config(c) if c.trains else None
        # The seed count matters to the rows only through the budget (what fits): without one, adding seeds
        # keeps the trainset and the seeds already trained.
        budget = (c.budget_minutes, c.seed_count) if c.budget_minutes else None
        keys["retrieval"] = content_key("retrieval", keys["evalset"], c.tune_retrieval, s.embedder)
        # train_on_documents joins the key only when set, so workspaces made before the option stay cached
        keys["trainset"] = content_key("trainset", keys["retrieval"], c.trains, c.grounded, c.variants, budget,
                                       job and vars(job), s.model, *(["documents"] if c.train_on_documents else []))
        trains = [content_key("train", keys["trainset"], c.seed + i) for i in range(c.seed_count)] if c.trains else []
        keys.update({f"train-s{i}": k for i, k in enumerate(trains)})
        keys["compare"] = content_key("compare", keys["retrieval"], trains, c.variants, c.metric,
                                      c.max_new_tokens, c.forgetting, s.model, s.embedder, c.stop_on_loop,
                                      *([c.equivalence_margin] if c.equivalence_margin else []))  # the verdict's margin
        keys["report"] = content_key("report", keys["compare"], keys["trainset"], keys["ingest"])
        return keys

    # ---- stages -------------------------------------------------------------------------------------
    def ingest(self, rep: Reporter, tmp: Path) -> outputs.IngestOutput:
        def progress(done, total, chunks, message):
            rep.update(0.5 * done / max(total, 1) + (0.4 if chunks else 0.0), f"{message} ({chunks} chunks)")

        report = ingest_paths(self.runtime.store, [Path(p) for p in self.cfg.docs], ChunkConfig(self.cfg.splitter),
                              progress=progress)
        ok = [r.source for r in report.results if r.status in ("added", "replaced", "unchanged")]
        if not ok:
            raise ArenaError("no document could be ingested: " + "; ".join(r.message for r in report.errors))
        (tmp / "ingest.json").write_text(json.dumps(report.to_dict(), indent=1))
        return outputs.IngestOutput(ok, report.chunks, [r.message for r in report.errors], report.generation)

    def evalset(self, rep: Reporter, tmp: Path, sources: list[str]) -> outputs.EvalsetOutput:
        """Evaluation items: --eval, else held out from --qa, else held-out document sections; the rest trains."""
        c = self.cfg
        sections = [s for s in self.runtime.store.sections() if s.source in set(sources)]
        heuristic = None  # malformed counts when the document heuristic drew the questions
        generated, generator_info = self._generated(rep, tmp, sections) if c.generator and not c.qa else (None, {})
        if c.eval:
            evals, origin = [it.to_dict() for it in load_eval_set(Path(c.eval))], "--eval file"
            pool = (generated.pool if generated else [it.to_dict() for it in load_eval_set(Path(c.qa))] if c.qa
                    else self._doc_pairs(sections))
        elif generated:
            evals, pool, origin = generated.evals, generated.pool, "held-out document sections"
        elif c.qa:
            pairs = [{**it.to_dict(), "section": it.source or it.question} for it in load_eval_set(Path(c.qa))]
            # Questions sharing a source are held out together (one section must not feed both sides);
            # without a source column each question is its own group.
            pool, evals = split_by_section(pairs, eval_fraction=c.eval_fraction, seed=c.seed)
            for p in pool + evals:  # the grouping key only: the statistics cluster by source, not by question
                p["section"] = ""
            origin = "held out from --qa"
        else:
            heuristic = draw_from_sections(sections).malformed
            failed = generator_info.get("fallback", "")
            if len(drawable := qa_from_sections(sections)) < MIN_EVAL_QUESTIONS:  # before a split can fail
                refuse_too_few(len(drawable), sum(heuristic.values()), c.generator, failed)
            drawn, rest = draw_eval_set(sections, eval_fraction=c.eval_fraction, seed=c.seed, limit=10**6)
            evals, pool = [it.to_dict() for it in drawn], [it.to_dict() for it in rest]
            origin = "held-out document sections"
            refuse_too_few(len(evals), sum(heuristic.values()), c.generator, failed)
        evals = evals[: c.limit] if c.limit else evals
        # Leakage guard: a training pair that copies an evaluation question, exactly or as a near-duplicate, is
        # dropped; the same detector (leakage.find_overlaps) warns in the comparison report.
        leaked = {o.eval_index for o in find_overlaps([p["question"] for p in pool], [e["question"] for e in evals],
                                                      embedder=self.runtime.embedder)}
        train = [p for i, p in enumerate(pool) if i not in leaked]
        if not evals:
            raise ArenaError("the evaluation set is empty: give --eval, a larger --qa, or more documents")
        write_jsonl(tmp / "eval.jsonl", evals)
        write_jsonl(tmp / "train_pairs.jsonl", train)
        return outputs.EvalsetOutput(len(evals), len(train), len(leaked), origin,
                                     # drawn from the documents by the heading/definition heuristic
                                     questions_by="" if heuristic is None else "heuristic", malformed=heuristic or {},
                                     generator=generator_info)

    def _generated(self, rep: Reporter, tmp: Path, sections) -> tuple[questions.GeneratedSets | None, dict]:
        """Questions written by --generator (held-out sections -> evaluation, the rest -> training), or None
        when the generator failed or too few questions passed its filters: the heuristic then draws them, and
        the report says why; with what the generator did (the evalset stage records it)."""
        c = self.cfg

        def progress(done: int, total: int) -> None:
            rep.update(0.95 * done / total, f"questions written by {c.generator}: {done}/{total}")

        def shortfall(got: questions.GeneratedSets) -> str:
            write_jsonl(tmp / "generated.jsonl", [{**p, "side": "eval"} for p in got.evals] +
                        [{**p, "side": "train"} for p in got.pool])  # kept for inspection, used or not
            return "" if c.eval else questions.too_few(len(got.evals))

        return generated_or_fallback(c.generator, lambda: questions.generated_sets(
            c, self.runtime, sections, hold_out=not c.eval, progress=progress), shortfall)

    def retrieval(self, rep: Reporter, tmp: Path) -> outputs.RetrievalChoice:
        """Splitter, k and search mode by retrieval hit rate on the training pairs (never the evaluation set);
        the documents are re-chunked in the real index when another splitter wins."""
        c, default = self.cfg, VariantConfig()
        pairs = read_jsonl(self.cache.folder("evalset") / "train_pairs.jsonl")
        if not c.tune_retrieval or len(pairs) < MIN_TUNING_PAIRS:
            why = "turned off" if not c.tune_retrieval else f"only {len(pairs)} training pairs"
            return outputs.RetrievalChoice(c.splitter, default.rag_mode, default.rag_k, tuned=False, reason=why)
        docs = [Path(p) for p in c.docs]
        store = self.runtime.store  # the ingest stage's index: its chunks' vectors are reused, not recomputed
        choice = choose_retrieval(docs, pairs, store.embedder, self.settings.data_dir,
                                  progress=lambda n, total, text: rep.update(0.9 * n / total, text),
                                  known=store.cached_vectors)
        if choice.splitter != c.splitter:
            rep.update(0.9, f"re-chunking the documents with the {choice.splitter} splitter")
            report = ingest_paths(store, docs, ChunkConfig(choice.splitter))
            if report.errors:
                raise ArenaError("re-chunking failed: " + "; ".join(r.message for r in report.errors))
        (tmp / "table.json").write_text(json.dumps(choice.table, indent=1))
        return outputs.RetrievalChoice(choice.splitter, choice.mode, choice.k, tuned=True,
                                       hit_rate=choice.hit_rate, questions=choice.questions)

    def _doc_pairs(self, sections) -> list[dict]:
        return [{"question": ex.question(), "answer": ex.messages[-1]["content"], "source": ex.origin}
                for ex in qa_from_sections(sections)]

    def trainset(self, rep: Reporter, tmp: Path, got: outputs.RetrievalChoice, other_s: float = 0.0,
                 seed_compare_s: float = 0.0, nll_s: float = 0.0) -> outputs.TrainsetOutput:
        """Chat rows from the training pairs (+ grounded rows with passages retrieved as `got` serves them) and
        the training plan; `other_s`, `seed_compare_s`, `nll_s`: the run plan's estimates that a budget pays
        before training (plan.training_fit)."""
        pairs = read_jsonl(self.cache.folder("evalset") / "train_pairs.jsonl")
        if self.cfg.trains and len(pairs) < 2:
            raise ArenaError(f"only {len(pairs)} training pair(s) left after holding out the evaluation set: "
                             "give a --qa file or documents with more question-style sections")
        qa = [chat(p["question"], p["answer"], origin=p.get("source", "")) for p in pairs]
        write_jsonl(tmp / "qa.jsonl", [{"messages": ex.messages} for ex in qa])
        grounded = []
        if self.cfg.trains and self.cfg.grounded and "rag+finetuned" in self.cfg.variants:
            rep.update(0.3, f"retrieving passages for {len(qa)} grounded rows")
            store = self.runtime.store
            job = job_config(self.cfg)  # RAFT settings: passages per row, share of rows holding the answer
            grounded = grounded_examples(qa, lambda q, k: store.search(q, k=k, mode=got.mode), k=got.k,
                                         oracle_share=job.oracle_share, seed=self.cfg.seed,
                                         passage_tokens=job.grounded_passage_tokens,
                                         count_tokens=self.runtime.engine.count_tokens)
        write_jsonl(tmp / "grounded.jsonl", [{"messages": ex.messages} for ex in grounded])
        documents = cpt_from_sections(self.runtime.store.sections()) \
            if self.cfg.trains and self.cfg.train_on_documents else []
        write_jsonl(tmp / "documents.jsonl", [{"text": ex.text} for ex in documents])
        rows = len(qa) + len(grounded) + len(documents)
        fit = training_fit(self.cfg, self.settings, rows, job_config(self.cfg), other_s, seed_compare_s,
                           self._row_tokens(qa, grounded + documents), nll_s) if self.cfg.trains else None
        return outputs.TrainsetOutput(len(qa), len(grounded), len(documents), rows, fit)

    def _row_tokens(self, short: list, long: list) -> tuple[float, float]:
        """Mean tokens of the short (Q/A) and long (grounded, document) rows, in the model's chat template: the
        training estimate then counts the real rows (up to 200 of each), not typical sizes. `short` is never
        empty: a run that trains has two training pairs or more (trainset refuses fewer)."""
        engine = self.runtime.engine

        def mean(rows: list) -> float:
            return fmean(len(engine.chat_ids(ex.messages)) if ex.kind == "chat" else engine.count_tokens(ex.text)
                         for ex in rows[:200])

        q = mean(short)
        return round(q, 1), round(mean(long) if long else q, 1)

    def data_specs(self) -> list[dict]:
        folder = self.cache.folder("trainset")
        specs = [{"path": str(folder / "qa.jsonl")}]
        if (folder / "grounded.jsonl").stat().st_size:
            specs.append({"path": str(folder / "grounded.jsonl")})
        documents = folder / "documents.jsonl"
        if documents.is_file() and documents.stat().st_size:  # every section is trained on: none validates
            specs.append({"path": str(documents), "val_fraction": 0.0})
        return specs

    def seed_job(self, i: int, fit: outputs.TrainingFit):
        """Seed i's training job. Within budget it keeps its own plan (fitted steps, best checkpoint, early
        stopping); over it, the epochs the budget allows of the rows the job builds (how many rewrites its filters
        keep is known only then), validated BUDGET_EVALS times; a budget that cut the rewrites asks fewer."""
        evals = -(-fit.steps_per_seed // BUDGET_EVALS)
        cut = {"max_steps": -1, "epochs": fit.epochs, "eval_steps": max(1, evals)} if fit.capped else {}
        if fit.paraphrases >= 0:
            cut["augment"] = f"paraphrases:{fit.paraphrases}" if fit.paraphrases else ""
        if fit.batch_size:
            cut.update(batch_size=fit.batch_size, grad_accum=1)
        return job_config(self.cfg, name=f"{self.cfg.name}-s{i}", seed=self.cfg.seed + i, data=self.data_specs(),
                          job_id=f"decide-{self.cfg.name}-s{i}-{self.keys[f'train-s{i}'][:12]}", **cut)

    def train(self, rep: Reporter, tmp: Path, i: int, fit: outputs.TrainingFit) -> outputs.TrainOutput:
        """One seed's adapter through run_job (`arena train`); a job folder with a checkpoint is resumed."""
        # deferred: these pull torch, transformers and peft
        from training.job import run_job
        from training.runner import job_dir, last_checkpoint, read_status

        job = self.seed_job(i, fit)
        folder = job_dir(self.settings, job)
        status = read_status(folder)
        done = status.get("adapter") if status.get("state") == "done" else None
        # trained and registered, but the stage marker was not written (a crash right after)
        if done and done in self.runtime.registry.names():
            return outputs.TrainOutput(done, job.job_id, resumed=False, reused_job=True)
        resume = last_checkpoint(folder) is not None
        if folder.exists() and not resume:
            shutil.rmtree(folder)  # started but killed before its first checkpoint: start it over
        with _watching(folder, rep, i):
            result = run_job(job, self.settings, resume=resume, tools=self.runtime.data_tools())
        if result["state"] == "cancelled":
            raise DecideCancelled(f"training cancelled at step {result['step']}; run again to resume it")
        return outputs.TrainOutput(result["adapter"], job.job_id, resume, metrics=result.get("metrics", {}))


def refuse_too_few(n_eval: int, malformed: int, generator: str = "", failed: str = "") -> None:
    """ArenaError when the heuristic left too few well-formed evaluation questions for a verdict (saying why
    the generator, when one was given, did not supply them)."""
    if n_eval < MIN_EVAL_QUESTIONS:
        first = f"the generator {generator} could not supply the questions ({failed}), and " if failed else ""
        raise ArenaError(
            f"{first}only {n_eval} well-formed evaluation question(s) could be drawn from the documents by the "
            f"heading/definition heuristic ({malformed} dropped as malformed); a verdict needs at least "
            f"{MIN_EVAL_QUESTIONS}. Pass --generator (e.g. --generator base, or openai:URL:MODEL for a larger "
            "model on a server) to generate questions from the documents, or give a --qa file of question/answer "
            "pairs")


@contextlib.contextmanager
def _watching(folder: Path, rep: Reporter, i: int):
    """Turns the job's metrics.jsonl into stage progress, and a decide CANCEL into the job's CANCEL file, while
    the `with` block runs."""
    from training.callbacks import CANCEL_FILE, read_metrics  # deferred: pulls torch, transformers, peft

    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            if rep.cancelled() and folder.is_dir():
                (folder / CANCEL_FILE).touch()
            records = read_metrics(folder / "metrics.jsonl")
            last = next((r for r in reversed(records) if "max_steps" in r), None)
            loss = next((f" loss {r['loss']:.3f}" for r in reversed(records) if "loss" in r), "")
            if last and last.get("max_steps"):
                # on a cancel the training loop stops at its next step; run_job then reports "cancelled"
                with contextlib.suppress(DecideCancelled):
                    rep.update(last["step"] / last["max_steps"],
                               f"seed {i}: step {last['step']}/{last['max_steps']}{loss}", job=str(folder))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
