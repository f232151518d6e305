"""Generated questions for `arena decide --generator SPEC` (training/questions.py does the asking and filtering,
training/doc_questions.py the writing and the fallback rule that `arena train --from-documents` shares).

SPEC is `base` (the loaded base model through the runtime's batched engine), a local Hugging Face id or
folder (loaded like `--model`), or `openai:URL:MODEL` (a larger instruct model on an OpenAI-compatible
server: llama.cpp, Ollama, vLLM; the judge's spelling); Runtime.question_generator turns it into a generate
callable. The leakage guard comes first:
the document sections are split into held-out and training sections BEFORE any question is written, evaluation
questions are written only from held-out sections and training questions only from the others (a two-chunk
question pairs chunks of one side). Near-duplicates are removed over both sides at once, evaluation first, so
a training question repeating an evaluation question is dropped too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant.decide.config import MIN_EVAL_QUESTIONS
from foundation.errors import ArenaError
from foundation.leakage import section_key, split_by_section
from foundation.row_cache import RowCache
from foundation.variants import VariantConfig
from training.doc_questions import write_questions
from training.questions import (
    PROMPT_VERSION,
    FilterCounts,
    GeneratedQuestion,
    QuestionSettings,
    ask,
    chunks_of,
    filter_replies,
    sample_tasks,
)


def settings_for(cfg) -> QuestionSettings:
    return QuestionSettings(model=cfg.generator, seed=cfg.seed)


def key_parts(cfg) -> list:
    """What the generated questions depend on beyond the documents (the evalset stage key adds these)."""
    return [cfg.generator, cfg.questions, PROMPT_VERSION, vars(settings_for(cfg))] if cfg.generator else []


@dataclass
class GeneratedSets:
    """Evaluation items and training pairs (dicts of question, answer, source, section) and the report's facts."""

    evals: list[dict]
    pool: list[dict]
    info: dict = field(default_factory=dict)


def generated_sets(cfg, runtime, sections, hold_out: bool = True, progress=None,
                   generate: Callable | None = None) -> GeneratedSets:
    """Split sections (held out / training), write cfg.questions questions over both sides, filter them.
    `generate` replaces the model named by cfg.generator (benchmarks time one generator against another)."""
    sections = list(sections)
    if not sections:
        raise ArenaError("the documents have no text to write questions from")
    groups = [{"source": s.source, "section": s.title} for s in sections]
    _, eval_groups = split_by_section(groups, cfg.eval_fraction, cfg.seed) if hold_out else (groups, [])
    held = {section_key(g) for g in eval_groups}
    n_eval, n_train = cfg.question_counts(hold_out)
    side = {True: [s for s in sections if (s.source, s.title) in held],
            False: [s for s in sections if (s.source, s.title) not in held]}
    written = write_questions([(side[True], n_eval), (side[False], n_train)], settings_for(cfg),
                              generate or runtime.question_generator(cfg.generator), runtime.embedder.encode,
                              RowCache.in_data_dir(runtime.settings.data_dir), progress=progress)
    eval_qs = [q for q in written.kept if (q.source, q.section) in held]
    train_qs = [q for q in written.kept if (q.source, q.section) not in held]
    info = {**written.info, "held_out_sections": sorted(held)}
    if hold_out:
        info["round_trip"] = round_trip(eval_qs, runtime.store)
    return GeneratedSets([q.to_pair() for q in eval_qs], [q.to_pair() for q in train_qs], info)


def round_trip(questions: list[GeneratedQuestion], store, k: int | None = None) -> float | None:
    """Share of questions whose own chunk comes back in the top k of the served retrieval (a difficulty
    statistic: low means questions phrased unlike their chunk, hard for RAG). Never used to filter: keeping only
    questions retrieval finds would rig the test for RAG."""
    if not questions:
        return None
    k = k or VariantConfig().rag_k
    hits = store.search_many([q.question for q in questions], k=k)
    found = sum(any(h.source == c.source and (h.text in c.text or c.text[:200] in h.text or h.section == c.section)
                    for h in row for c in q.chunks) for q, row in zip(questions, hits, strict=True))
    return found / len(questions)


def too_few(n_eval: int) -> str:
    """Why generated questions cannot carry a verdict ("" when they can)."""
    return f"only {n_eval} evaluation question(s) passed the filters" if n_eval < MIN_EVAL_QUESTIONS else ""


@dataclass
class Preview:
    """Questions the generator writes for these documents, before the long run (the Decide tab shows them)."""

    questions: list[GeneratedQuestion]
    counts: FilterCounts
    seconds: float


def preview_questions(cfg, runtime, n: int = 10, progress=None) -> Preview:
    """Up to n kept questions written from cfg.docs (read, not ingested), with the filter counts. The replies
    land in the row cache, so the run itself does not ask for the same chunks again."""
    import time

    from retrieval.ingest import collect_files
    from retrieval.loaders import load_file
    from training.builders import SectionText

    if not cfg.generator:
        raise ArenaError("choose a generator first (base, a local model id or folder, or openai:URL:MODEL)")
    files, missing = collect_files([Path(p) for p in cfg.docs])
    if not files:
        raise ArenaError("; ".join(m.message for m in missing) or "no documents to write questions from")
    sections = [SectionText(s.title, s.text, source) for path, source in files
                for s in load_file(path, source=source).segments]
    qs = settings_for(cfg)
    tasks = sample_tasks(chunks_of(sections, qs.max_chunk_chars), n, qs)
    started = time.time()
    replies = ask(tasks, qs, runtime.question_generator(cfg.generator),
                  RowCache.in_data_dir(runtime.settings.data_dir), progress=progress)
    kept, counts = filter_replies(tasks, replies, runtime.embedder.encode)
    return Preview(kept[:n], counts, round(time.time() - started, 1))
