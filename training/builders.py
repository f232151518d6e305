"""Training data from what the app already has: documents, chat votes, and RAG answers (distillation)."""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from foundation import records
from foundation.errors import ArenaError
from foundation.generation import GenSettings
from foundation.metrics import retrieval_hit
from foundation.row_cache import RowCache, content_key
from foundation.variants import VariantConfig, display_order, fit_hits, format_passage, rag_messages
from training.data import Example, chat, dedup, normalize
from training.question_form import malformed_reason
from training.questions import clip
from training.tools import RagTeacher

QUESTION_WORDS = ("how", "what", "why", "when", "where", "which", "who", "can", "do", "does", "is", "are",
                  "should", "may", "will")
# "X is a/an/the ...", "X means ...", "X refers to ..." with a short subject: a definition-like sentence.
DEFINITION = re.compile(r"^(?P<term>[A-Z][\w\- ]{1,40}?) (?P<verb>is|are|means|refers to) (?P<rest>.{15,})$")
# "X is" followed by an adverb, participle or adjective ("... is synchronously invoked", "... is false") states
# a property of X, not what X is: only "is a/an/the/one of ..." defines.
DEFINES = re.compile(r"^(?:an?|the|one of)\s", re.IGNORECASE)


@dataclass
class SectionText:
    """The part of a retrieval Section these builders need (retrieval.store.Section has the same fields)."""

    title: str
    text: str
    source: str


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]


def is_question(title: str) -> bool:
    t = title.strip()
    return t.endswith("?") or (t.split(" ", 1)[0].lower() in QUESTION_WORDS and len(t.split()) >= 3)


@dataclass
class Drawn:
    """The heuristic's pairs, and how many it dropped as malformed (fragments such as "What is When a URL?")."""

    kept: list[Example]
    malformed: dict[str, int]  # reason -> count (training/question_form.py)

    @property
    def dropped(self) -> int:
        return sum(self.malformed.values())


def qa_from_sections(sections, min_answer_chars: int = 20, max_answer_chars: int = 1200) -> list[Example]:
    """Question-style headings with their section text, plus definition sentences; malformed ones dropped."""
    return draw_from_sections(sections, min_answer_chars, max_answer_chars).kept


def draw_from_sections(sections, min_answer_chars: int = 20, max_answer_chars: int = 1200) -> Drawn:
    """qa_from_sections with the count of malformed questions it dropped (the plan and report show it)."""
    out = []
    for sec in sections:
        body = " ".join(sec.text.split())
        if is_question(sec.title) and min_answer_chars <= len(body):
            question = sec.title.strip() if sec.title.strip().endswith("?") else sec.title.strip() + "?"
            out.append(chat(question, clip(body, max_answer_chars), origin=f"{sec.source} § {sec.title}"))
        out += _definitions(body, sec.source)
    rows = _filter_qa(dedup(out))
    reasons = [malformed_reason(ex.question()) or (NOT_DEFINITION if ex.origin.endswith(NOT_DEFINITION) else None)
               for ex in rows]
    return Drawn([ex for ex, why in zip(rows, reasons, strict=True) if not why], dict(Counter(filter(None, reasons))))


NOT_DEFINITION = "not a definition"


def _definitions(body: str, source: str) -> list[Example]:
    """'What is X?' for each definition-like sentence; a sentence stating a property of X (no determiner after
    'is') is marked in its origin, so draw_from_sections counts it as malformed instead of losing it silently."""
    out = []
    for sentence in _sentences(body):
        m = DEFINITION.match(sentence)
        if m and len(m.group("term").split()) <= 5:
            verb = "are" if m.group("verb") == "are" else "is"
            term = re.sub(r"^(A|An|The) ", lambda a: a.group(1).lower() + " ", m.group("term").strip())
            defines = m.group("verb") in ("means", "refers to") or DEFINES.match(m.group("rest"))
            origin = source if defines else f"{source}: {NOT_DEFINITION}"
            out.append(chat(f"What {verb} {term}?", sentence, origin=origin))
    return out


def _filter_qa(rows: list[Example]) -> list[Example]:
    """Drop pairs whose answer merely repeats the question or whose question appears twice."""
    seen, out = set(), []
    for ex in rows:
        q = ex.question().lower().strip()
        a = ex.messages[-1]["content"].lower()
        if q in seen or a.strip().rstrip("?") == q.rstrip("?"):
            continue
        seen.add(q)
        out.append(ex)
    return out


def cpt_from_sections(sections) -> list[Example]:
    """Continued pre-training rows: each section's text, titled, as raw text."""
    return dedup([Example("text", text=f"{s.title}\n\n{s.text}".strip() if s.title else s.text.strip(),
                          origin=s.source) for s in sections if s.text.strip()])


def pref_from_votes(votes) -> list[Example]:
    """One preference pair per (winner, loser) answer of each vote; identical answers are skipped."""
    out = []
    for v in votes:
        chosen = v.answers.get(v.winner, "").strip()
        for variant, text in sorted(v.answers.items()):
            if variant != v.winner and text.strip() and text.strip() != chosen and chosen:
                out.append(Example("pref", [{"role": "user", "content": v.question}], chosen=chosen,
                                   rejected=text.strip(), origin=f"vote {v.id}"))
    return dedup(out)


def grounded_examples(qa: list[Example], search, k: int = 4, oracle_share: float = 0.8,
                      seed: int = 0, passage_tokens: int = 0,
                      count_tokens: Callable[[str], int] | None = None) -> list[Example]:
    """RAFT-style rows (Zhang et al. 2024) in exactly the prompt the RAG variants are served with.

    Each question gets k passages built by foundation.variants.rag_messages. The oracle is the best-ranked
    retrieved passage holding the answer (foundation.metrics.retrieval_hit); it is present in
    round(oracle_share x n) of the n questions that have one (a seeded choice), at a random position, and the
    target cites it as [n]. The other passages, and all k in the remaining rows, are distractors: retrieved
    passages without the answer, then passages retrieved for other questions. Rows without the oracle keep the
    answer as target (RAFT: it makes the adapter learn the facts, not only copy them).
    search(question, n) -> ranked hits with .text and .citation (retrieval.store.Hit).
    passage_tokens > 0 bounds the passages of a row (counted with count_tokens, e.g. the engine's): the oracle
    is kept whole, the distractors fill what is left in rank order (foundation.variants.fit_hits).
    """
    if passage_tokens and count_tokens is None:
        raise ArenaError("grounded rows with a passage token budget need the model's token counter")
    rng = random.Random(seed)
    found = []  # (example, answer, oracle hit or None, distractors in rank order)
    for ex in qa:
        answer = ex.messages[-1]["content"]
        hits = list(search(ex.question(), 2 * k))
        holds = [bool(retrieval_hit(answer, [h.text])) for h in hits]
        oracle = next((h for h, hold in zip(hits, holds, strict=True) if hold), None)
        found.append((ex, answer, oracle, [h for h, hold in zip(hits, holds, strict=True) if not hold]))
    with_oracle = [i for i, row in enumerate(found) if row[2] is not None]
    keep = set(rng.sample(with_oracle, round(oracle_share * len(with_oracle))))
    pool = [h for row in found for h in row[3]]
    out = []
    for i, (ex, answer, oracle, distractors) in enumerate(found):
        # Shown as served (best-ranked last); the oracle then goes anywhere, so position is no cue.
        chosen = _distractors(distractors, pool, answer, k - 1 if i in keep else k, rng)
        if passage_tokens:
            oracle_cost = count_tokens(format_passage(1, oracle)) + 2 if i in keep else 0
            chosen, _ = fit_hits(chosen, passage_tokens - oracle_cost, count_tokens)
        passages = display_order(chosen)
        target = answer
        if i in keep:
            at = rng.randrange(len(passages) + 1)
            passages.insert(at, oracle)
            target = f"{answer} [{at + 1}]"
        messages = rag_messages(ex.question(), passages) + [{"role": "assistant", "content": target}]
        out.append(Example("chat", messages, origin=ex.origin))
    return out


def _distractors(own: list, pool: list, answer: str, n: int, rng: random.Random) -> list:
    """n passages without the answer: the question's own retrieved ones first, then others from the pool."""
    picked = list(own[:n])
    others = [h for h in pool if all(h is not p for p in picked)]
    rng.shuffle(others)
    for hit in others:
        if len(picked) >= n:
            break
        if not retrieval_hit(answer, [hit.text]) and all(hit.text != p.text for p in picked):
            picked.append(hit)
    return picked


def read_questions(path: Path) -> list[str]:
    """A question list (foundation.records.read_questions); a training row without "question" gives its
    user turn, so any training file works as a distillation question list."""
    return records.read_questions(path, lambda row, where: normalize(row, where).question())


def distill(questions: list[str], teacher: RagTeacher, data_dir: Path) -> list[Example]:
    """Distillation: the RAG variant's answers (the teacher's answer_many) become targets for a plain adapter.

    Each answer is stored in the data folder's row cache (foundation/row_cache.py) under the hash of its exact
    prompt, model and generation settings as soon as it is generated: a killed job, a resume or a rerun
    generates only the answers still missing (changed documents change the prompt, hence the key)."""
    cfg, gen = VariantConfig(system_prompt="", few_shot=[]), GenSettings()
    # the RAG prompt exactly as sent (messages, adapter) with the model and the generation settings
    keys = [content_key("distill/rag", teacher.model, *teacher.prompt(q, cfg, gen), asdict(gen)) for q in questions]

    def generate(missing: list[int], store) -> None:
        print(f"distillation: {len(keys) - len(missing)} of {len(keys)} answers cached, generating "
              f"{len(missing)}", file=sys.stderr, flush=True)
        teacher.answer_many([questions[i] for i in missing], cfg, gen, None,
                            lambda j, text: store(missing[j], text.strip()))

    texts = RowCache.in_data_dir(data_dir).fill(keys, generate)
    return [chat(q, text, origin="distilled from rag") for q, text in zip(questions, texts, strict=True) if text]
