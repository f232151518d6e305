"""Questions a user of the documents would ask, written by a generator model from sampled chunks, each with a
reference answer grounded in its chunk, then filtered (ragas' test-set generator, DeepEval's Synthesizer and
YourBench work the same way).

Chunks are sampled stratified over documents and sections (round robin over documents, then over each
document's sections). Each task asks for one kind: a factual question, a how-to question, or (a share of the
tasks) a question that needs two chunks of the same document. The model's raw replies are cached by content in
the data folder's row cache (prompt, generator, sampling settings) as each batch finishes, so a killed run
regenerates only the missing ones. Replies are parsed (JSON or "Question:/Answer:" lines) and filtered; every
filter counts what it dropped:

- unparsed: no question/answer could be read from the reply;
- ill-formed: fragments, too short, no question (training/question_form.malformed_reason);
- not standalone: "according to the passage", a pronoun without referent (question_form.standalone_reason);
- unsupported: under SUPPORT of the answer's content words occur in its chunk(s) (an overlap check: the
  answer must come from the documents, not from the generator's own knowledge), or the answer only restates
  the question;
- duplicate: the leakage guard's near-duplicate rule against a kept question (embedding cosine and an
  order-aware word test: foundation.leakage.is_near_duplicate).

Whether a question retrieves its own chunk is NOT a filter: keeping only questions retrieval finds would make
the test easy for RAG by construction. The decide stage reports it as a difficulty statistic instead.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from foundation.generation import GenSettings
from foundation.leakage import is_near_duplicate
from foundation.metrics import content_tokens, groundedness, normalize, unit_rows
from foundation.row_cache import content_key
from training.question_form import malformed_reason, standalone_reason

KINDS = ("factual", "how-to", "two-chunk")
SUPPORT = 0.6  # share of the answer's content words found in its chunk(s)
PROMPT_VERSION = 4  # part of the cache key: a new prompt must not reuse old replies
BATCH = 4  # tasks per generate() call (stored as soon as the call returns)
SYSTEM = ("You write questions that a user of some documentation would ask, with answers taken from the "
          "documentation. The question must name what it is about and make sense without the text: never "
          "write 'the text', 'the passage' or 'this'. The answer must use the words of the text.")
ASK = {"factual": "Write one factual question (what, which, when, who, how many) that the text answers.",
       "how-to": "Write one how-to question ('How do I ...?' or 'How can I ...?') that the text answers.",
       "two-chunk": "Write one question whose answer needs BOTH texts, and the answer combining them."}
# Lines rather than JSON: the bundled 135M model follows a one-shot line format far more often; JSON replies
# (what larger models tend to give) are read too.
FORMAT = "Reply in exactly two lines:\nQuestion: <the question>\nAnswer: <its answer, in the words of the text>"


@dataclass(frozen=True)
class Chunk:
    """A piece of one document section (sections longer than the settings' max_chunk_chars are cut)."""

    source: str
    section: str
    text: str


@dataclass
class Task:
    """One question to ask: its kind, its chunk(s), and the sentence of the first chunk to ask about (a chunk
    sampled again gets its next sentence, so a second question on it is about something else)."""

    kind: str
    chunks: tuple[Chunk, ...]
    focus: str = ""


@dataclass
class GeneratedQuestion:
    """One kept question with its reference answer and the chunk(s) it was written from."""

    question: str
    answer: str
    kind: str
    chunks: tuple[Chunk, ...]

    @property
    def source(self) -> str:
        return self.chunks[0].source

    @property
    def section(self) -> str:
        return self.chunks[0].section

    def to_pair(self) -> dict:
        return {"question": self.question, "answer": self.answer, "source": self.source, "section": self.section}


@dataclass(frozen=True)
class QuestionSettings:
    """What the generator is asked (all of it is in the cache key)."""

    model: str                  # the generator (decide's --generator spec): which model wrote the replies
    two_chunk_share: float = 0.2
    max_new_tokens: int = 100
    temperature: float = 0.0
    max_chunk_chars: int = 1200
    seed: int = 0


@dataclass
class FilterCounts:
    """How many replies each step dropped, in order, and up to three dropped questions per reason."""

    asked: int = 0
    unparsed: int = 0
    ill_formed: int = 0
    not_standalone: int = 0
    unsupported: int = 0
    duplicate: int = 0
    kept: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, text: str) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(text[:160])

    def dropped(self) -> dict[str, int]:
        return {k.replace("_", " "): getattr(self, k) for k in
                ("unparsed", "ill_formed", "not_standalone", "unsupported", "duplicate")}


# ---- sampling ----------------------------------------------------------------------------------------------

def chunks_of(sections, max_chars: int = 1200) -> list[Chunk]:
    """Each section's text (whitespace collapsed) in pieces of at most ~max_chars, cut at sentence ends."""
    out = []
    for sec in sections:
        text = " ".join(sec.text.split())
        while text:
            piece = clip(text, max_chars)
            if len(piece.split()) >= 8:  # a heading's stray line is no material for a question
                out.append(Chunk(sec.source, sec.title, piece))
            text = text[len(piece):].strip()
    return out


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut after the last sentence end in them unless that drops over two thirds."""
    if len(text) <= limit:
        return text
    end = max(text.rfind(". ", 0, limit), text.rfind("? ", 0, limit), text.rfind("! ", 0, limit))
    return text[: end + 1] if end > limit // 3 else text[:limit]


def sample_tasks(chunks: list[Chunk], n: int, settings: QuestionSettings) -> list[Task]:
    """n tasks, stratified: documents take turns, and within a document its sections take turns (a section
    is reused only once every section of that document had its turn). A share of tasks pairs the chunk with
    another chunk of the same document (two-chunk); the others alternate factual and how-to."""
    rng = random.Random(settings.seed)
    queues = [_section_cycle(doc, rng) for doc in _by(chunks, lambda c: c.source).values()]
    rng.shuffle(queues)
    tasks: list[Task] = []
    turns: dict[Chunk, int] = {}
    for queue, doc_chunks in itertools.islice(itertools.cycle(queues), n):  # one task per document's turn
        chunk = next(queue)
        turn = turns[chunk] = turns.get(chunk, -1) + 1
        sentences = _sentences(chunk.text)
        focus = sentences[turn % len(sentences)] if sentences else ""
        others = [c for c in doc_chunks if c != chunk]
        if others and rng.random() < settings.two_chunk_share:
            tasks.append(Task("two-chunk", (chunk, rng.choice(others)), focus))
        else:
            tasks.append(Task(KINDS[len(tasks) % 2], (chunk,), focus))
    return tasks


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def _by(items, key) -> dict:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _section_cycle(doc_chunks: list[Chunk], rng: random.Random):
    """(endless iterator over the document's chunks, one section after another in a seeded order, the chunks)."""
    sections = list(_by(doc_chunks, lambda c: c.section).values())
    rng.shuffle(sections)
    # round robin: each section's next chunk in turn, a section's chunks cycling
    return itertools.chain.from_iterable(zip(*map(itertools.cycle, sections), strict=True)), doc_chunks


# ---- asking ------------------------------------------------------------------------------------------------

def messages(task: Task) -> list[dict]:
    texts = "\n\n".join(f"TEXT {i + 1} ({c.source}{' § ' + c.section if c.section else ''}):\n{c.text}"
                        for i, c in enumerate(task.chunks))
    focus = f" Ask about this sentence: {task.focus}" if task.focus else ""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{texts}\n\n{ASK[task.kind]}{focus}\n{FORMAT}"}]


def ask(tasks: list[Task], settings: QuestionSettings, generate: Callable, cache,
        progress: Callable[[int, int], None] | None = None) -> list[str]:
    """The raw reply to each task, read from `cache` (a RowCache) or generated BATCH at a time and stored as each
    batch returns. generate(list of messages, GenSettings) -> list of texts."""
    gen = GenSettings(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed)
    keys = [content_key("questions", PROMPT_VERSION, messages(t), asdict(settings)) for t in tasks]

    def run(missing: list[int], store) -> None:
        done = len(tasks) - len(missing)
        if progress:  # before the first batch: a resumed run shows the replies it read back
            progress(done, len(tasks))
        for start in range(0, len(missing), BATCH):
            batch = missing[start:start + BATCH]
            for i, text in zip(batch, generate([messages(tasks[i]) for i in batch], gen), strict=True):
                store(i, text)
            if progress:
                progress(done + start + len(batch), len(tasks))

    return cache.fill(keys, run)


# ---- reading and filtering ---------------------------------------------------------------------------------

_JSON = re.compile(r"\{[^{}]*\}", re.S)
_LINE = re.compile(r"^\s*[*#>\-\s]*(question|q|answer|a)\s*\d*\s*[:.)]\s*(.*)$", re.I)


def parse_reply(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a JSON object or "Question:/Answer:" (or "Q:/A:") lines; None when neither."""
    for match in _JSON.finditer(reply):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        low = {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else {}
        q, a = low.get("question"), low.get("answer")
        if isinstance(q, str) and isinstance(a, str) and q.strip() and a.strip():
            return q.strip(), a.strip()
    found: dict[str, list[str]] = {}
    current = None
    for line in reply.splitlines():
        m = _LINE.match(line)
        if m:
            current = "q" if m.group(1).lower().startswith("q") else "a"
            if current in found:  # a second pair: the first one is the reply
                break
            found[current] = [m.group(2)]
        elif current and line.strip():
            found[current].append(line.strip())
    q, a = (" ".join(found.get(k, [])).strip().strip('"') for k in ("q", "a"))
    return (q, a) if q and a else None


def supported(answer: str, chunks: tuple[Chunk, ...], threshold: float = SUPPORT, question: str = "") -> bool:
    """The answer's content words occur in its chunk(s) (foundation.metrics.groundedness), and it says
    more than the question: "How to create a virtual environment." answers "How do I create a virtual
    environment?" with the chunk's words and no information."""
    if question and set(content_tokens(answer)) <= set(content_tokens(question)) | {"answer", "text"}:
        return False
    return (groundedness(answer, [c.text for c in chunks]) or 0.0) >= threshold


def near_duplicate_of(vector: np.ndarray, question: str, kept_vectors: list, kept: list[str]) -> int | None:
    """Index of a kept question this one nearly repeats (the same words after normalisation, or the leakage
    guard's near-duplicate rule, leakage.is_near_duplicate); None when it is new."""
    for j, (other, text) in enumerate(zip(kept_vectors, kept, strict=True)):
        if normalize(text) == normalize(question) or is_near_duplicate(float(vector @ other), question, text):
            return j
    return None


def filter_replies(tasks: list[Task], replies: list[str], embed: Callable,
                   counts: FilterCounts | None = None) -> tuple[list[GeneratedQuestion], FilterCounts]:
    """Kept questions in task order and what each filter dropped. embed(texts) -> vectors (the embedder)."""
    counts = counts or FilterCounts()
    candidates = []
    for task, reply in zip(tasks, replies, strict=True):
        counts.asked += 1
        pair = parse_reply(reply)
        if pair is None:
            counts.drop("unparsed", reply.strip())
            continue
        question, answer = pair
        if malformed_reason(question):
            counts.drop("ill_formed", question)
        elif standalone_reason(question):
            counts.drop("not_standalone", question)
        elif not supported(answer, task.chunks, question=question):
            counts.drop("unsupported", f"{question} -> {answer}")
        else:
            candidates.append(GeneratedQuestion(question, answer, task.kind, task.chunks))
    kept: list[GeneratedQuestion] = []
    if candidates:
        vectors = unit_rows(embed([c.question for c in candidates]))
        kept_vectors: list = []
        for cand, vec in zip(candidates, vectors, strict=True):
            if near_duplicate_of(vec, cand.question, kept_vectors, [k.question for k in kept]) is not None:
                counts.drop("duplicate", cand.question)
            else:
                kept.append(cand)
                kept_vectors.append(vec)
    counts.kept += len(kept)
    return kept, counts
