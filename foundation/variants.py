"""The variants as small prompt builders over one engine: base, prompt, rag, finetuned, rag+finetuned (and routed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from foundation.errors import ArenaError
from foundation.metrics import unit_rows

# The five strategies, cheapest first (the router and the tie rule rely on this order).
STRATEGIES = ("base", "prompt", "rag", "finetuned", "rag+finetuned")
# "routed" answers with whichever strategy a per-question router picks (assistant/compare/router.py)
ROUTED = "routed"
VARIANTS = (*STRATEGIES, ROUTED)
ADAPTER_VARIANTS = {"finetuned", "rag+finetuned"}
RAG_VARIANTS = {"rag", "rag+finetuned"}

DEFAULT_SYSTEM_PROMPT = ("You are a precise assistant for this team's domain. Answer in a few sentences; "
                         "if you are not sure, say so instead of guessing.")
# A short answer drawn from the passages: long, generic answers were the weakness measured on an FAQ (RAG
# answers ~2.5x longer than the references, below a naive "passages + question" prompt of the same model;
# benchmarks/rag_prompt.py measures the prompt against that baseline).
RAG_INSTRUCTION = ("Answer the question in one short sentence, using only the numbered passages. Copy the "
                   "exact words of the passage that answers it and cite it as [n]. If no passage contains "
                   "the answer, reply: The passages do not say.")
DEFAULT_DYNAMIC_K = 3  # few-shot pairs nearest the question, when the few-shot list is longer than this
# The comparison's max new tokens from the references: room for a full answer, not for rambling.
MAX_NEW_FACTOR, MIN_NEW_TOKENS, MAX_NEW_TOKENS = 1.5, 16, 256
# The most passages one RAG prompt quotes (and the Documents tab's search shows): 20 chunks of ~800 characters
# are already ~4,000 prompt tokens; k = 100000 made a 7,000-token prompt and 100 s to the first token.
MAX_RAG_K = 20
NO_ADAPTER = "no adapter yet — train one in the Train tab"
NO_DOCUMENTS = "no documents yet — add some in the Documents tab"


@dataclass
class VariantConfig:
    """User-editable settings of the prompt and RAG variants and the chosen adapter."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    few_shot: list[dict] = field(default_factory=list)  # [{"question", "answer"}], e.g. the training pairs
    # k > 0: the k pairs nearest the question (the whole list when it has k or fewer); 0: the whole list
    dynamic_k: int = DEFAULT_DYNAMIC_K
    rag_k: int = 4
    rag_mode: str = "hybrid"
    adapter: str | None = None

    def __post_init__(self):
        if not 1 <= self.rag_k <= MAX_RAG_K:
            raise ArenaError(f"RAG passages (k) must be between 1 and {MAX_RAG_K}, got {self.rag_k}")


def parse_variants(text: str) -> list[str]:
    """'base,rag' -> ['base', 'rag'] in canonical order; ArenaError naming an unknown variant."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ArenaError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}" if unknown
                         else f"no variants given; choose from {', '.join(VARIANTS)}")
    return [v for v in VARIANTS if v in names]


def base_messages(question: str, history: list[dict] | None = None) -> list[dict]:
    """The question (after any earlier turns) with nothing added."""
    return list(history or []) + [{"role": "user", "content": question}]


def prompt_messages(question: str, system_prompt: str, shots: list[dict],
                    history: list[dict] | None = None) -> list[dict]:
    """System prompt, few-shot pairs as earlier user/assistant turns, then the conversation."""
    messages = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
    for shot in shots:
        messages += [{"role": "user", "content": shot["question"]},
                     {"role": "assistant", "content": shot["answer"]}]
    return messages + base_messages(question, history)


def check_few_shot(pairs: list[dict]) -> list[dict]:
    """Validate few-shot pairs; ArenaError names the first bad entry."""
    for i, pair in enumerate(pairs, 1):
        if not isinstance(pair, dict) or not str(pair.get("question", "")).strip() \
                or not str(pair.get("answer", "")).strip():
            raise ArenaError(f"few-shot example {i} needs a non-empty 'question' and 'answer', got {pair!r}")
    return pairs


def pick_few_shot(question: str, pairs: list[dict], k: int,
                  embed: Callable[[list[str]], np.ndarray]) -> list[dict]:
    """The k pairs whose questions are nearest the question by embedding (cosine), nearest last."""
    if k <= 0 or len(pairs) <= k:
        return list(pairs)
    vectors = unit_rows(embed([question] + [p["question"] for p in pairs]))
    scores = vectors[1:] @ vectors[0]
    nearest = np.argsort(-scores, kind="stable")[:k]
    # Nearest last: it ends up closest to the question in the prompt.
    return [pairs[i] for i in reversed(nearest)]


def format_passage(n: int, hit) -> str:
    return f"[{n}] ({hit.citation})\n{hit.text.strip()}"


def fit_hits(hits: list, budget: int, count_tokens: Callable[[str], int]) -> tuple[list, str]:
    """Keep hits in rank order while their passages fit `budget` tokens; cut the first that overflows."""
    kept, used = [], 0
    for hit in hits:
        cost = count_tokens(format_passage(len(kept) + 1, hit)) + 2
        if used + cost <= budget:
            kept.append(hit)
            used += cost
            continue
        room = budget - used - count_tokens(format_passage(len(kept) + 1, _Cut(hit, ""))) - 8
        if room > 16:  # a cut passage is still useful when a good part of it fits
            kept.append(_Cut(hit, _cut_text(hit.text, room, count_tokens)))
        dropped = len(hits) - len(kept)
        return kept, f"context trimmed to fit {budget} tokens ({dropped} passage(s) dropped, last one cut)"
    return kept, ""


def _cut_text(text: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The longest prefix of text within `tokens` tokens (binary search on characters)."""
    lo, hi = 0, len(text)
    probe = min(hi, tokens * 64)  # a token rarely spans 64 characters: bound a huge text (1 MB prompt) first
    if probe < hi and count_tokens(text[:probe]) > tokens:
        hi = probe
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[:mid]) <= tokens else (lo, mid - 1)
    return text[:lo].rstrip() + " …"


class _Cut:
    """A hit whose text was shortened to fit the budget; everything else is the original hit's."""

    def __init__(self, hit, text: str):
        self._hit, self.text = hit, text

    def __getattr__(self, name):
        return getattr(self._hit, name)


def display_order(hits: list) -> list:
    """Passages as the RAG prompt shows them: best-ranked LAST, next to the question. Measured on
    benchmarks/rag_prompt.py's FAQ (bundled 135M model, 20 questions, same 4 passages): token F1 0.156 with the
    best passage last vs 0.059 in rank order; a small model leans on the context nearest the question."""
    return list(reversed(hits))


def rag_messages(question: str, hits: list, history: list[dict] | None = None) -> list[dict]:
    """Instruction plus numbered passages as the system turn, then the conversation."""
    passages = "\n\n".join(format_passage(i, h) for i, h in enumerate(hits, 1))
    system = f"{RAG_INSTRUCTION}\n\nContext:\n{passages or '(no passages found)'}"
    return [{"role": "system", "content": system}] + base_messages(question, history)


def rag_budget(context_length: int, max_new_tokens: int, fixed_tokens: int) -> int:
    """Tokens left for passages after the answer, the question/history and the template (10% margin)."""
    return max(0, int(context_length * 0.9) - max_new_tokens - fixed_tokens)


def truncate_question(question: str, max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, str]:
    """(question, notice): over-long questions are cut to `max_tokens` with a visible notice."""
    question = question.strip()
    if not question:
        raise ArenaError("the question is empty; type a question first")
    tokens = count_tokens(question)
    if tokens <= max_tokens:
        return question, ""
    return _cut_text(question, max_tokens, count_tokens), \
        f"question truncated from {tokens} to {max_tokens} tokens"


def naive_rag_messages(question: str, hits: list) -> list[dict]:
    """The naive RAG baseline: the passages' text pasted before the question, no instruction, no numbering."""
    context = "\n\n".join(h.text.strip() for h in hits)
    return [{"role": "user", "content": f"{context}\n\n{question}" if context else question}]


def max_new_tokens_for(references: list[str], count_tokens: Callable[[str], int]) -> int:
    """A comparison's max new tokens from its reference answers: MAX_NEW_FACTOR x their 90th-percentile token
    count, clamped to [MIN_NEW_TOKENS, MAX_NEW_TOKENS]. One fixed number either cuts long references short or
    lets verbose variants ramble (and lose F1) far past what any reference says."""
    lengths = [count_tokens(r) for r in references if r and r.strip()]
    if not lengths:
        raise ArenaError("cannot size the answers: the evaluation set has no non-empty reference answer")
    p90 = float(np.percentile(lengths, 90))
    return int(min(MAX_NEW_TOKENS, max(MIN_NEW_TOKENS, np.ceil(MAX_NEW_FACTOR * p90))))


def served_name(variant: str, adapter: str | None) -> str:
    """A strategy's model name on the OpenAI-compatible API (assistant/ship): 'rag+finetuned:faq-lora'."""
    return f"{variant}:{adapter}" if variant in ADAPTER_VARIANTS and adapter else variant
