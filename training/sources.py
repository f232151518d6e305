"""Resolve a job's data sources (files, documents, votes, distillation) into one seeded train/val split."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from foundation import atomic, progress_line
from foundation.errors import ArenaError
from foundation.records import read_jsonl, write_jsonl
from foundation.row_cache import RowCache
from foundation.settings import Settings
from foundation.votes import VoteStore
from training import builders
from training.augment import ParaphraseSettings, augment_rows
from training.builders import read_questions
from training.config import JobConfig, parse_augment
from training.data import Example, dedup, fingerprint, load_file, mix, refuse_prompts, split
from training.doc_questions import QUESTIONS, describe, document_pairs
from training.tools import DataTools, need


def source_label(spec: dict) -> str:
    if "path" in spec:
        return Path(spec["path"]).name
    return "+".join(str(spec.get(k)) for k in ("source", "kind") if spec.get(k))


def load_source(spec: dict, settings: Settings, tools: DataTools | None = None,
                cfg: JobConfig | None = None) -> list[Example]:
    """Rows of one data source spec (see JobConfig.data); `cfg` sets the grounded rows' k and oracle share."""
    kind = spec.get("source", "file" if "path" in spec else None)
    if kind == "file":
        return load_file(Path(spec["path"]))
    if kind == "votes":
        return builders.pref_from_votes(VoteStore(Path(settings.data_dir) / "votes.sqlite").all())
    if kind == "documents":
        return _from_documents(spec, need(tools, "sections", "search"), cfg or JobConfig(), settings)
    if kind == "distill":
        questions = builders.read_questions(Path(spec["questions"]))
        return builders.distill(questions, need(tools, "teacher").teacher, settings.data_dir)
    raise ArenaError(f"unknown data source {spec!r}: use path, or source documents / votes / distill")


def _from_documents(spec: dict, tools: DataTools, cfg: JobConfig, settings: Settings) -> list[Example]:
    kind = spec.get("kind", "qa")
    sections = tools.sections()
    if not sections:
        raise ArenaError("no documents ingested yet: add documents before building training data from them")
    if kind == "cpt":
        return builders.cpt_from_sections(sections)
    gen = spec.get("generator", "")
    qa = document_qa(sections, gen, int(spec.get("n_questions", QUESTIONS)),
                     need(tools, "questions", "encode").questions(gen) if gen else None, tools.encode,
                     settings.data_dir, cfg.seed)
    if kind == "grounded":
        # The RAG variants' own retrieval (hybrid), in the served prompt format (builders.grounded_examples).
        return builders.grounded_examples(qa, tools.search, k=cfg.grounded_k,
                                          oracle_share=cfg.oracle_share, seed=cfg.seed,
                                          passage_tokens=cfg.grounded_passage_tokens,
                                          count_tokens=need(tools, "count_tokens").count_tokens)
    return qa


def document_qa(sections, generator: str, n: int, generate, embed, data_dir: Path, seed: int) -> list[Example]:
    """Q/A rows from document sections: n questions written by the generator SPEC and filtered (decide's path,
    training/doc_questions.py; generate(messages, GenSettings) -> texts, embed(texts) -> vectors), else the
    heading/definition heuristic's. Progress, the filter counts and any fallback go to stderr."""
    with progress_line.count_line(f"questions written by {generator}", "questions") as progress:
        got = document_pairs(sections, generator, n, generate, embed, RowCache.in_data_dir(data_dir), seed,
                             progress)
    for line in describe(got.info):
        print(f"documents: {line}", file=sys.stderr, flush=True)
    return got.rows


def with_system(rows: list[Example], system: str) -> list[Example]:
    """Add the job's system prompt to chat rows that do not have one."""
    if not system:
        return rows
    for ex in rows:
        if ex.kind == "chat" and ex.messages and ex.messages[0]["role"] != "system":
            ex.messages.insert(0, {"role": "system", "content": system})
    return rows


def build_split(cfg: JobConfig, settings: Settings,
                tools: DataTools | None = None) -> tuple[list[Example], list[Example]]:
    """Per source: load, dedup, split (seeded); then mix the train parts with their weights."""
    parts, val = [], []
    for spec in cfg.data:
        rows = dedup(with_system(load_source(spec, settings, tools, cfg), cfg.system_prompt))
        if not rows:
            raise ArenaError(f"data source {source_label(spec)} produced no rows")
        refuse_prompts(rows, cfg.method)
        tr, va = split(rows, source_val_fraction(spec, cfg), cfg.seed)
        # Only the training side is paraphrased: a paraphrase of a validation question would leak it.
        parts.append((augment(tr, cfg, settings, tools), float(spec.get("weight", 1.0))))
        val += va
    return mix(parts, cfg.seed), val


def source_val_fraction(spec: dict, cfg: JobConfig) -> float:
    """The share of a source held out for validation: the job's, unless the source sets its own (0 for
    knowledge every row of which must be trained on, e.g. decide's document text)."""
    frac = spec.get("val_fraction", cfg.val_fraction)
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac < 1:
        raise ArenaError(f"data source {source_label(spec)}: val_fraction must be in [0, 1), got {frac!r}")
    return float(frac)


def augment(rows: list[Example], cfg: JobConfig, settings: Settings, tools: DataTools | None = None) -> list[Example]:
    """rows plus the paraphrases `cfg.augment` asks for (training/augment.py), progress with ETA on stderr."""
    k = parse_augment(cfg.augment)
    if not k or not rows:
        return rows

    tools = need(tools, "paraphraser", "encode")
    model = cfg.generator_model or settings.model
    with progress_line.count_line("paraphrases", "new questions") as progress:
        out, stats = augment_rows(rows, ParaphraseSettings(k=k, model=model, seed=cfg.seed),
                                  tools.paraphraser(model), tools.encode,
                                  RowCache.in_data_dir(settings.data_dir), progress=progress)
    if stats["questions"]:  # a source of grounded or multi-turn rows has nothing to paraphrase: say nothing
        print(f"paraphrases: kept {stats['kept']} of {stats['samples']} samples for {stats['questions']} "
              "questions", file=sys.stderr, flush=True)
    return out


def prepare_data(cfg: JobConfig, settings: Settings, folder: Path, tools: DataTools | None = None,
                 reuse: bool = False) -> tuple[list[Example], list[Example], str]:
    """The job's final train/val rows, saved in the job folder (a resumed job re-reads exactly those)."""
    train_file, val_file = folder / "train.jsonl", folder / "val.jsonl"
    if reuse and train_file.is_file() and val_file.is_file():
        train, val = ([Example(**row) for row in read_jsonl(path)] for path in (train_file, val_file))
    else:
        train, val = build_split(cfg, settings, tools)
        # Every rank of a multi-process run builds the same rows; each writes atomically.
        for path, rows in ((train_file, train), (val_file, val)):
            atomic.replace_with(path, lambda tmp, rows=rows: write_jsonl(tmp, [asdict(ex) for ex in rows]))
    return train, val, fingerprint(train, val)


def preview(specs: list[dict], settings: Settings, tools: DataTools | None = None, n: int = 3) -> list[dict]:
    """Per source: row count, kinds and the first rows (for the Train tab)."""
    out = []
    for spec in specs:
        if spec.get("source") == "distill":  # its rows are RAG answers generated at training time: too slow here,
            path = Path(spec["questions"])  # so its unique questions are shown (no model is loaded)
            questions = list(dict.fromkeys(read_questions(path)))
            out.append({"source": f"distill: {path.name}", "rows": len(questions),
                        "kinds": ["questions (rag answers them at training time)"], "first": questions[:n]})
        elif spec.get("generator"):  # written when the job runs (the Decide tab's preview shows some first)
            out.append({"source": source_label(spec), "rows": int(spec.get("n_questions", QUESTIONS)),
                        "kinds": [f"questions the generator {spec['generator']} writes when the job runs"],
                        "first": []})
        else:
            rows = dedup(load_source(spec, settings, tools))
            out.append({"source": source_label(spec), "rows": len(rows), "kinds": sorted({ex.kind for ex in rows}),
                        "first": [_row_text(ex) for ex in rows[:n]]})
    return out


def _row_text(ex: Example) -> str:
    if ex.kind == "text":
        return ex.text[:200]
    if ex.kind == "pref":
        return f"Q: {ex.question()[:120]} | chosen: {ex.chosen[:60]} | rejected: {ex.rejected[:60]}"
    return f"Q: {ex.question()[:120]} | A: {ex.messages[-1]['content'][:100]}"
