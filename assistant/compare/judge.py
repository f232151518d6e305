"""LLM judge: each answer graded against its reference as correct / partially / wrong with a one-line reason.

`--judge local` asks the product's own base model through the configured engine; `--judge
openai:URL:MODEL` asks MODEL on an OpenAI-compatible server (its own chat template, /v1/chat/completions).
Scores are 1 / 0.5 / 0 per answer and join the metrics table as "judge", so they get the same bootstrap and
paired intervals as every other metric. A reply that names no verdict is counted as malformed, shown, and
scored None (left out of the means), never an error. The prompt and settings are stored with the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from assistant.compare.result import JudgeSummary, JudgeVerdict
from assistant.inference.openai_engine import ServerClient
from foundation.errors import ArenaError
from foundation.generation import parse_server_model

if TYPE_CHECKING:
    from assistant.compare.result import ComparisonResult, QuestionRecord

SCORES = {"correct": 1.0, "partially": 0.5, "wrong": 0.0}
SYSTEM = ("You grade answers. Compare the ANSWER with the REFERENCE answer to the QUESTION. Reply with exactly "
          "two lines:\nVERDICT: correct | partially | wrong\nREASON: one short sentence")
USER = "QUESTION: {question}\nREFERENCE: {reference}\nANSWER: {answer}"
_WORDS = re.compile(r"\b(partially|partial|partly|incorrect|wrong|correct|right)\b")
_SYNONYMS = {"partial": "partially", "partly": "partially", "incorrect": "wrong", "right": "correct"}
_REASON = re.compile(r"reason\s*:\s*(.*)", re.IGNORECASE)
MALFORMED_SHOWN = 5  # malformed replies quoted in the result


@dataclass(frozen=True)
class JudgeConfig:
    """Who judges and how; stored with the run (settings.judge)."""

    spec: str
    kind: str            # "local" | "openai"
    url: str = ""
    model: str = ""
    key_env: str = ""
    max_tokens: int = 48
    temperature: float = 0.0
    concurrency: int = 4

    def stored(self) -> dict:
        return {**asdict(self), "system_prompt": SYSTEM, "user_prompt": USER, "scores": SCORES}


def parse_spec(spec: str, key_env: str = "", concurrency: int = 4) -> JudgeConfig:
    """`local` or `openai:URL:MODEL`; URL has a path such as /v1 (so its port is no model), MODEL may hold colons."""
    spec = spec.strip()
    if spec == "local":
        return JudgeConfig(spec, "local", concurrency=concurrency)
    server = parse_server_model(spec)
    if not server:
        raise ArenaError(f"--judge must be 'local' or 'openai:URL:MODEL' (e.g. openai:http://127.0.0.1:8000/v1:"
                         f"judge-model), got {spec!r}")
    return JudgeConfig(spec, "openai", *server, key_env, concurrency=concurrency)


def parse_verdict(reply: str) -> tuple[str | None, str]:
    """(verdict or None when the reply names none, one-line reason). Looks at a VERDICT: line first."""
    text = reply.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    verdict_line = next((ln for ln in lines if ln.lower().startswith("verdict")), lines[0] if lines else "")
    match = _WORDS.search(verdict_line.lower()) or _WORDS.search(text.lower()[:200])
    verdict = _SYNONYMS.get(match.group(1), match.group(1)) if match else None
    stated = _REASON.search(text)
    rest = [ln for ln in lines if ln is not verdict_line and not _REASON.match(ln)]
    reason = stated.group(1).strip() if stated else (rest[0] if rest else verdict_line)
    return verdict, reason[:200]


def messages(question: str, reference: str, answer: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(question=question, reference=reference, answer=answer)}]


def judge_all(cfg: JudgeConfig, local: Callable[[list[list[dict]]], list[str]], items, answers: list[dict],
              variants: list[str], table: dict, per_question: list[QuestionRecord]) -> JudgeSummary:
    """Grade every (question, variant) answer; adds table[v]["judge"] and per-question verdicts in place.

    ``local(conversations) -> replies`` answers a local judge (the run's own engine, given by the caller); any
    other judge is the configured server. Returns the summary shown with the run: verdict counts per variant and
    the malformed replies."""
    pairs = [(i, v) for i in range(len(items)) for v in variants]
    conversations = [messages(items[i].question, items[i].answer, answers[i][v].text) for i, v in pairs]
    replies = local(conversations) if cfg.kind == "local" else ServerClient(cfg.url, cfg.key_env).chat_many(
        cfg.model, conversations, cfg.max_tokens, cfg.temperature, cfg.concurrency)
    counts = {v: {**dict.fromkeys(SCORES, 0), "malformed": 0} for v in variants}
    malformed = []
    for v in variants:
        table[v]["judge"] = [None] * len(items)
    for (i, v), reply in zip(pairs, replies, strict=True):
        verdict, reason = parse_verdict(reply)
        counts[v][verdict or "malformed"] += 1
        score = SCORES[verdict] if verdict else None
        table[v]["judge"][i] = score
        record = per_question[i].answers[v]
        record.scores["judge"] = score
        record.judge = JudgeVerdict(verdict, reason, reply[:500])
        if verdict is None and len(malformed) < MALFORMED_SHOWN:
            malformed.append({"question": i, "variant": v, "reply": reply[:200]})
    return JudgeSummary(len(pairs), sum(c["malformed"] for c in counts.values()), counts, malformed)


def malformed_warning(summary: JudgeSummary) -> str:
    if not summary.malformed:
        return ""
    return (f"LLM judge: {summary.malformed} of {summary.judged} replies named no verdict (malformed); "
            "they are left out of the judge score")


def report_lines(result: ComparisonResult) -> list[str]:
    """The report's LLM-judge section: who judged, verdicts per variant, paired judge score vs base."""
    summary, stored = result.judge, result.settings.get("judge")
    if not summary or not stored:
        return ["not run (pass --judge local or --judge openai:URL:MODEL)"]
    who = "the local base model" if stored["kind"] == "local" else f"{stored['model']} at {stored['url']}"
    lines = [f"judge: {who}; {summary.judged} answers, {summary.malformed} malformed replies"]
    for v, c in summary.counts.items():
        diff = result.paired.get(v, {}).get("judge")
        vs_base = (f"; minus base {diff.mean:+.3f} [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]"
                   if diff and diff.mean is not None else "")
        lines.append(f"{v}: {c['correct']} correct, {c['partially']} partially, {c['wrong']} wrong, "
                     f"{c['malformed']} malformed{vs_base}")
    lines += [f"malformed ({m['variant']}, question {m['question'] + 1}): {m['reply']!r}"
              for m in summary.malformed_examples]
    return lines
