"""What generation takes and gives, shared by every engine and every caller: settings, rows, outputs, answers.

The engines (assistant/inference) fill a RowOutput per row -- its own first-token time, speed and tokens -- and
the arena turns it into a variant's Answer; training (distillation, paraphrases), the comparison and the UI
only ever see these types, never an engine's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foundation.errors import ArenaError


@dataclass
class GenSettings:
    """Generation settings shared by all variants so the comparison is fair."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.0

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
