"""Paraphrase augmentation (`--augment paraphrases:K`): each training question in K rephrasings, same answer.

Fine-tuning learns a fact far better when it sees it in several phrasings (Ovadia et al. 2024: 0.50 -> 0.59
with 10 paraphrases). The generator model (the base model unless `generator_model` is set) samples K
rewrites per question through a generation engine's public generate(); a rewrite is kept when its embedding
cosine to the original lies in BAND: above the upper bound it is a copy (adds nothing), below the lower one it
drifted off the question (it would teach the answer to a different question). Near-identical rewrites are
deduplicated. The raw samples are cached by content hash (question, generator model, sampling settings) in the
data folder's row cache (foundation/row_cache.py), so a sweep, a resume or a second job never regenerates them;
the band is applied after the cache, so changing it costs no generation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from foundation.generation import GenSettings, Row
from foundation.metrics import unit_rows
from foundation.row_cache import content_key
from foundation.variants import RAG_INSTRUCTION
from training.data import Example

# Cosine to the original question (MiniLM). Measured on "How do I descale the espresso machine?": a real
# paraphrase ("What is the way to remove limescale from ...") 0.60, "... descale my espresso machine?" 0.99
# (a copy), a different question of the same manual ("How do I clean the milk frother?") 0.40, an unrelated
# one 0.09. 0.5 keeps the first and drops the other three.
BAND = (0.5, 0.97)
PROMPT = ("Rewrite this question in different words. Keep its meaning and every name, number and code. "
          "Reply with the rewritten question only.\n\nQuestion: {question}")
PROMPT_VERSION = 1  # part of the cache key: a new prompt must not reuse old samples
# Rows (K samples of each question) per engine call: a full batch whatever K, as a decode step costs about the
# same for 1 or 16 rows (assistant/inference/ortgenai.py MAX_BATCH). Four questions per call whatever K left
# K=1 runs at 4 rows a step.
BATCH_ROWS = 16


@dataclass
class ParaphraseSettings:
    """How the K rewrites of a question are sampled (all of it is in the cache key)."""

    k: int
    model: str
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 48
    seed: int = 0


def clean(text: str) -> str:
    """The first line of a sample without quotes or a 'Question:' label."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(rewritten question|question|q)\s*[:\-]\s*", "", line, flags=re.I)
    return line.strip().strip("\"'“”").strip()


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def keep_paraphrases(question: str, samples: list[str], embed: Callable[[list[str]], np.ndarray],
                     band: tuple[float, float] = BAND) -> list[str]:
    """Cleaned samples, deduplicated (and never the question itself), whose cosine to the question is in band."""
    seen, unique = {_norm(question)}, []
    for sample in samples:
        text = clean(sample)
        if text and _norm(text) not in seen:
            seen.add(_norm(text))
            unique.append(text)
    if not unique:
        return []
    vectors = unit_rows(embed([question] + unique))
    cosines = vectors[1:] @ vectors[0]
    return [t for t, c in zip(unique, cosines, strict=True) if band[0] <= c <= band[1]]


def questions_per_call(k: int) -> int:
    """Questions whose K samples go to the engine in one call: BATCH_ROWS rows."""
    return max(1, BATCH_ROWS // max(1, k))


def sample_paraphrases(questions: list[str], ps: ParaphraseSettings, generate, cache,
                       progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """K raw samples per question, read from `cache` (a RowCache) or generated and stored as they finish.

    generate(list of messages, GenSettings) -> list of texts (one engine call for all rows).
    """
    asked = questions
    questions = list(dict.fromkeys(questions))  # a repeated question is sampled once
    keys = [content_key("paraphrases", PROMPT_VERSION, q, asdict(ps)) for q in questions]
    # one_line: keep_paraphrases reads only a sample's first line, so decoding stops at its line break.
    gen = GenSettings(max_new_tokens=ps.max_new_tokens, temperature=ps.temperature, top_p=ps.top_p, seed=ps.seed,
                      one_line=True)

    per_call = questions_per_call(ps.k)

    def run(missing: list[int], store) -> None:
        for start in range(0, len(missing), per_call):
            batch = missing[start:start + per_call]
            prompts = [[{"role": "user", "content": PROMPT.format(question=questions[i])}]
                       for i in batch for _ in range(ps.k)]
            texts = generate(prompts, gen)
            for n, i in enumerate(batch):
                store(i, texts[n * ps.k:(n + 1) * ps.k])
            if progress:
                progress(min(start + per_call, len(missing)), len(missing))

    found = dict(zip(questions, cache.fill(keys, run), strict=True))
    return [found[q] for q in asked]


def engine_generate(engine) -> Callable:
    """generate() over a generation engine's public API: one batched call, base weights."""
    def generate(prompts: list[list[dict]], gen) -> list[str]:
        return [out.text for out in engine.generate([Row(engine.chat_ids(m), None) for m in prompts], gen)]
    return generate


def augment_rows(rows: list[Example], ps: ParaphraseSettings, generate, embed, cache,
                 band: tuple[float, float] = BAND, progress=None) -> tuple[list[Example], dict]:
    """rows plus a copy of each plain one-question chat row per kept paraphrase (same system turn and answer).
    Grounded rows (a RAG system turn with passages) and multi-turn rows are left as they are."""
    plain = [ex for ex in rows if ex.kind == "chat" and sum(m["role"] == "user" for m in ex.messages) == 1
             and not ex.messages[0]["content"].startswith(RAG_INSTRUCTION)]
    samples = sample_paraphrases([ex.question() for ex in plain], ps, generate, cache, progress)
    extra = []
    for ex, found in zip(plain, samples, strict=True):
        for text in keep_paraphrases(ex.question(), found, embed, band):
            messages = [dict(m, content=text) if m["role"] == "user" else dict(m) for m in ex.messages]
            extra.append(Example("chat", messages, origin=f"{ex.origin} (paraphrase)"))
    stats = {"questions": len(plain), "samples": sum(len(s) for s in samples), "kept": len(extra)}
    return rows + extra, stats


