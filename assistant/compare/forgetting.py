"""Forgetting check: does an adapter make the base model worse at general knowledge and general text?

Both probes are teacher-forced likelihoods (no generation), so the check costs a few forward passes:
the shipped general-knowledge answers under their questions, and the shipped everyday paragraphs as the
reply to a neutral "write a paragraph" request. Per text, the adapter's mean NLL per token minus the base's
(the same weights with the adapter off) is a paired difference; its mean d over a probe gives the relative
perplexity change exp(d) - 1 (perplexity is exp of the mean NLL), with an interval from the paired bootstrap over
the texts (assistant/compare/bootstrap.py: Resampler and Draws, small-sample widened). One interval per probe at
level 1 - ALPHA / 2 (two probes, Bonferroni). The adapter is flagged only when a probe's lower bound exceeds
``margin``: separated from the base, not a point estimate that training noise or float kernels can push over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.compare.bootstrap import Resampler
from assistant.compare.stats import ALPHA
from foundation.metrics import perplexity
from foundation.records import read_jsonl

DATA_DIR = Path(__file__).parent / "data"
TEXT_PROMPT = "Write a short paragraph of everyday English."
DEFAULT_MARGIN = 0.15  # relative perplexity increase the lower bound must exceed
PROBE_SEED = 0  # the bootstrap's seed: a report is reproducible

# scorer(pairs) -> (base NLLs, adapter NLLs), one mean token NLL per (prompt, reply) pair.
Scorer = Callable[[list[tuple[str, str]]], tuple[list[float], list[float]]]


@dataclass
class Probe:
    """General-knowledge QA pairs and general-text paragraphs shipped in assistant/compare/data."""

    qa: list[tuple[str, str]]
    paragraphs: list[str]


def load_probe(data_dir: Path = DATA_DIR) -> Probe:
    qa = [(row["question"], row["answer"]) for row in read_jsonl(data_dir / "general_qa.jsonl")]
    text = (data_dir / "general_text.txt").read_text(encoding="utf-8")
    return Probe(qa, [p.strip() for p in text.split("\n\n") if p.strip()])


@dataclass(frozen=True)
class PairedChange:
    """Mean of per-item paired differences (adapter - base) with its widened bootstrap interval at ``level``."""

    mean: float
    ci_low: float
    ci_high: float
    level: float
    n: int


def paired_change(diffs, alpha: float = ALPHA) -> PairedChange:
    """The paired bootstrap of assistant/compare/bootstrap.py over items (one resampled unit per item)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    draws = Resampler.build(len(diffs), seed=PROBE_SEED).draws(diffs)
    low, high = draws.interval(alpha)
    return PairedChange(draws.center, low, high, 1 - alpha, draws.units)


@dataclass(frozen=True)
class ProbeResult:
    """One probe: perplexities, relative change exp(d) - 1 and its interval, and the NLL change d it maps from."""

    base_ppl: float
    adapter_ppl: float
    relative_change: float
    ci_low: float
    ci_high: float
    nll_change: PairedChange


@dataclass(frozen=True)
class ForgettingReport:
    adapter: str
    margin: float
    probes: dict[str, ProbeResult]
    flagged: bool
    message: str


def probe_result(base: list[float], tuned: list[float], alpha: float) -> ProbeResult:
    change = paired_change(np.asarray(tuned) - np.asarray(base), alpha)
    return ProbeResult(perplexity(float(np.mean(base))), perplexity(float(np.mean(tuned))),
                       float(np.expm1(change.mean)), float(np.expm1(change.ci_low)), float(np.expm1(change.ci_high)),
                       change)


def check_forgetting(adapter: str, scorer: Scorer, margin: float = DEFAULT_MARGIN,
                     probe: Probe | None = None) -> ForgettingReport:
    """Base vs adapter perplexity on both probes; flagged when either's interval lies wholly above ``margin``."""
    probe = probe or load_probe()
    text_pairs = [(TEXT_PROMPT, p) for p in probe.paragraphs]
    base, tuned = scorer(list(probe.qa) + text_pairs)
    n = len(probe.qa)
    alpha = ALPHA / 2  # two probes
    probes = {name: probe_result(base[sl], tuned[sl], alpha)
              for name, sl in (("general_qa", slice(0, n)), ("general_text", slice(n, None)))}
    worst = max(probes, key=lambda k: probes[k].ci_low)
    w = probes[worst]
    flagged = w.ci_low > margin
    message = (f"{'FORGETTING' if flagged else 'ok'}: adapter {adapter!r} perplexity on {worst.replace('_', ' ')} "
               f"{w.adapter_ppl:.2f} vs base {w.base_ppl:.2f} ({w.relative_change:+.1%}, "
               f"{w.nll_change.level:.1%} interval {w.ci_low:+.1%} to {w.ci_high:+.1%} over "
               f"{w.nll_change.n} texts; flagged when the lower bound exceeds {margin:+.0%})")
    return ForgettingReport(adapter, margin, probes, flagged, message)
