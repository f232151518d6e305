"""What generation takes and gives, shared by every engine and every caller: settings, rows, outputs, answers.

The engines (assistant/inference) fill a RowOutput per row -- its own first-token time, speed and tokens -- and
the arena turns it into a variant's Answer; training (distillation, paraphrases), the comparison and the UI
only ever see these types, never an engine's internals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from foundation.errors import ArenaError

# Stop on repetition (docs/decoding.md): a row ends once its newest `stop_on_loop` tokens copy verbatim tokens
# said at most LOOP_MAX_PERIOD tokens earlier, and the copy is cut (what was said once is kept). It runs on the
# decoded tokens, so every engine -- torch, onnxruntime-genai, an OpenAI-compatible server -- applies exactly
# the same rule, unlike the engines' penalties.
LOOP_STOP = 16
LOOP_MAX_PERIOD = 64
STOP_ON_LOOP_HELP = (f"end an answer once its newest N tokens copy, verbatim, what it said at most {LOOP_MAX_PERIOD} "
                     "tokens earlier, and cut the copy (the same for every variant and engine; default "
                     f"{LOOP_STOP}, 0 = off)")


def check_stop_on_loop(value: int) -> None:
    if value != 0 and not 4 <= value <= 1024:
        raise ArenaError(f"stop on loop must be 0 (off) or 4-1024 repeated tokens, got {value}")


@dataclass
class GenSettings:
    """Generation settings shared by all variants so the comparison is fair."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.0
    stop_on_loop: int = LOOP_STOP  # repeated tokens that end a row (see LOOP_STOP); 0 = never stop on a loop
    # End a row at the line break after its first text: for callers that read only the first line (a paraphrase),
    # so decoding stops where the reader stops reading. Decided on the decoded text, like the loop stop.
    one_line: bool = False

    def check(self, context_length: int) -> None:
        """Raise ArenaError naming the first absurd value."""
        if not 1 <= self.max_new_tokens <= context_length // 2:
            raise ArenaError(f"max new tokens must be 1-{context_length // 2} (half the model's context "
                             f"of {context_length}), got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 5:
            raise ArenaError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ArenaError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 0.5 <= self.repetition_penalty <= 3:
            raise ArenaError(f"repetition penalty must be between 0.5 and 3, got {self.repetition_penalty}")
        check_stop_on_loop(self.stop_on_loop)


def first_line_done(text: str) -> bool:
    """True once `text` holds some non-blank text followed by a line break."""
    return "\n" in text.lstrip()


def loop_cut(tokens: list[int], min_repeat: int, max_period: int = LOOP_MAX_PERIOD) -> int | None:
    """How many tokens to keep when `tokens` end in a loop, else None (min_repeat 0: never a loop).

    A loop: for some distance p <= max_period, each of the last r >= min_repeat tokens equals the token p
    places before it -- the newest min_repeat tokens copy, verbatim, tokens said at most max_period earlier:
    a block repeated (p <= r), or a sentence said again (p > r; on a real FAQ the loops that escaped a
    whole-block rule were sentences said again, cut short by the token limit). The kept prefix ends where the
    copy starts, so it holds everything said once. Checked after every token, so the newest token almost
    always rules a distance out at once (cost ~ max_period comparisons per token)."""
    n = len(tokens)
    if not min_repeat or n <= min_repeat:
        return None
    for p in range(1, min(max_period, n - min_repeat) + 1):
        if any(tokens[n - k] != tokens[n - k - p] for k in range(1, min_repeat + 1)):
            continue
        run = min_repeat
        while run + p < n and tokens[n - run - 1] == tokens[n - run - 1 - p]:
            run += 1
        return n - run
    return None


@dataclass
class Row:
    """One sequence to continue: prompt token ids and the adapter to use (None = base weights)."""

    input_ids: list[int]
    adapter: str | None = None


@dataclass
class RowOutput:
    """The growing output of one row."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    ttft_s: float = 0.0
    seconds: float = 0.0
    done: bool = False

    @property
    def tokens_per_s(self) -> float:
        decode = self.seconds - self.ttft_s
        return (len(self.tokens) - 1) / decode if len(self.tokens) > 1 and decode > 0 else 0.0


@dataclass
class Answer:
    """One variant's (possibly still growing) answer with its timings."""

    variant: str
    text: str
    sources: list
    ttft_s: float
    tokens: int
    tokens_per_s: float
    prompt_tokens: int
    messages: list[dict]
    adapter: str | None
    notice: str = ""   # e.g. truncated question or trimmed context
    error: str = ""    # the column could not run (no adapter, no documents, ...)
    done: bool = False

    def to_json(self) -> dict:
        """This variant's own figures (its first token, speed, answer and prompt lengths) and its answer."""
        return {"answer": self.text, "sources": [source_json(h) for h in self.sources], "ttft_s": self.ttft_s,
                "tokens": self.tokens, "tokens_per_s": self.tokens_per_s, "prompt_tokens": self.prompt_tokens,
                "notice": self.notice, "error": self.error, "adapter": self.adapter}


def source_json(hit) -> dict:
    return {"citation": hit.citation, "source": hit.source, "section": getattr(hit, "section", ""),
            "page": getattr(hit, "page", None), "score": round(float(hit.score), 4)}


# A model on a server, as the judge (--judge) and the question generator (--generator) name it: the URL has a
# path such as /v1 (so its port is no model), MODEL may hold colons.
SERVER_MODEL = re.compile(r"^openai:(https?://[^/\s]+/[^:\s]*):(\S+)$")


def parse_server_model(spec: str) -> tuple[str, str] | None:
    """(URL without trailing slash, MODEL) of `openai:URL:MODEL`, or None when `spec` is not of that form."""
    match = SERVER_MODEL.match(spec.strip())
    return (match.group(1).rstrip("/"), match.group(2)) if match else None
