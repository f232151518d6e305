"""Bootstrap resampling of a comparison: intervals, paired draws, their p-value, and P(best).

1. Intervals are percentile bootstraps with a fixed seed, so a run is reproducible. Per-variant means use
   ``N_RESAMPLES``; the paired comparisons ``PAIRED_RESAMPLES`` (their Holm levels reach far into the tails).
2. Paired: every variant answers the same questions, so two variants are compared on the per-question
   differences d_i = a_i - b_i (a question one of them did not score is dropped). All comparisons of one
   verdict share the same resamples: the questions are resampled jointly.
3. Clusters: questions from one source (file, and section when known) succeed or fail together, so when the
   questions carry sources whole sources are resampled (cluster bootstrap: draw clusters with replacement;
   the resampled mean is sum of the drawn clusters' sums / sum of their counts). A question without a
   source is a cluster of its own. With fewer than ``MIN_CLUSTERS`` clusters a cluster bootstrap has too few
   units to be trusted, so questions are resampled one by one and the result says so.
4. Interval and p-value of a paired difference: the percentile interval of the resampled means, widened
   around the observed mean by sqrt(G / (G - 1)) * t(G - 1) / z at its level (G = resampled units, clusters
   or questions), so that for normal data it matches the t-interval -- plain percentile intervals are too
   narrow with few units (benchmarks/verdict.py: 13 % false alarms at a nominal 5 % with 8 sections, 6 %
   widened). It is never narrower than that t-interval, centre +- t(G - 1) x bootstrap SE x sqrt(G / (G - 1)):
   with heavy-tailed differences (many token-F1 scores near 0) the percentiles alone are still too narrow
   (24 questions, Beta-distributed scores, no true difference: 5.9 % false alarms, 4.7 % with the floor, as
   the paired t-test, over 3000 simulated data sets). The p-value is the alpha at which that interval just
   reaches 0; a single unit has no measurable spread and gives p = 1.
5. P(best): the share of the joint paired resamples (the same draws as rules 2-3, every variant resampled on
   the same questions) in which a variant has the best mean; ties are shared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist

import numpy as np

N_RESAMPLES = 2000
PAIRED_RESAMPLES = 4000
MIN_CLUSTERS = 8
P_MIN, P_MAX = 1e-6, 0.999  # range of the p-value search (the interval has no width left at alpha = 1)
TAIL = (1 - 0.95) / 2 * 100  # each tail of a 95 % interval, in percent


def as_array(values) -> np.ndarray:
    """Float array with NaN for None (a metric that does not apply to some questions)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def finite_values(values) -> np.ndarray:
    """Float array without the None/NaN entries."""
    arr = as_array(values)
    return arr[~np.isnan(arr)]


def bootstrap_ci(values, seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict:
    """Mean with a 95 % percentile-bootstrap interval: {"mean", "ci_low", "ci_high", "n"}; None when empty."""
    arr = finite_values(values)
    if arr.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    if arr.size == 1:
        value = float(arr[0])
        return {"mean": value, "ci_low": value, "ci_high": value, "n": 1}
    idx = np.random.default_rng(seed).integers(0, arr.size, size=(n_resamples, arr.size))
    low, high = np.percentile(arr[idx].mean(axis=1), [TAIL, 100 - TAIL])
    return {"mean": float(arr.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(arr.size)}


def paired_difference(a, b, seed: int = 0) -> dict:
    """Mean of a - b over questions both scored, with a bootstrap interval resampling whole questions."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    return bootstrap_ci(as_array(a) - as_array(b), seed=seed)


@dataclass
class Resampler:
    """One set of bootstrap draws over clusters (or single questions), shared by every comparison."""

    ids: np.ndarray      # cluster index of each question
    weights: np.ndarray  # (resamples, clusters): how often each cluster is drawn in each resample
    clustered: bool
    note: str = ""

    @classmethod
    def build(cls, n_questions: int, sources: Sequence[str] | None = None, seed: int = 0,
              n_resamples: int = PAIRED_RESAMPLES) -> Resampler:
        ids, clustered, note = np.arange(n_questions), False, ""
        if sources is not None and any(sources):
            if len(sources) != n_questions:
                raise ValueError(f"{len(sources)} sources for {n_questions} questions")
            keys = [s if s else f"\0question {i}" for i, s in enumerate(sources)]
            _, grouped = np.unique(keys, return_inverse=True)
            n_clusters = int(grouped.max()) + 1
            if n_clusters >= MIN_CLUSTERS and n_clusters < n_questions:
                ids, clustered = grouped, True
            elif n_clusters < MIN_CLUSTERS:
                note = (f"only {n_clusters} distinct sources (fewer than {MIN_CLUSTERS}): questions were "
                        "resampled one by one, so the intervals may be too narrow if questions of one source "
                        "succeed or fail together")
        n_clusters = int(ids.max()) + 1 if n_questions else 0
        # Each resample draws n_clusters clusters with replacement; weights[r, c] = how often c was drawn (the
        # multinomial counts, from one bincount: rng.multinomial loops over the rows and is 20x slower).
        drawn = np.random.default_rng(seed).integers(0, max(n_clusters, 1), size=(n_resamples, n_clusters))
        rows = np.arange(n_resamples)[:, None] * n_clusters
        weights = np.bincount((drawn + rows).ravel(), minlength=n_resamples * n_clusters)
        return cls(ids, weights.reshape(n_resamples, n_clusters).astype(np.float64), clustered, note)

    @property
    def n_clusters(self) -> int:
        return self.weights.shape[1]

    def means(self, diffs: np.ndarray) -> np.ndarray:
        """The resampled means of ``diffs`` (NaN = not scored, left out of both sum and count)."""
        ok = ~np.isnan(diffs)
        sums = np.bincount(self.ids[ok], weights=diffs[ok], minlength=self.n_clusters)
        counts = np.bincount(self.ids[ok], minlength=self.n_clusters).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.weights @ sums) / (self.weights @ counts)

    def draws(self, diffs: np.ndarray) -> Draws:
        ok = ~np.isnan(diffs)
        units = np.unique(self.ids[ok]).size  # the clusters (or questions) with a scored difference
        return Draws(self.means(diffs), float(diffs[ok].mean()) if ok.any() else 0.0, units)


def _t(alpha: float, units: int) -> float:
    """The t quantile of level 1 - alpha with units - 1 degrees of freedom."""
    from scipy.special import stdtrit  # what scipy.stats.t.ppf calls, without its overhead

    return float(stdtrit(units - 1, 1 - alpha / 2))


def widening(alpha: float, units: int) -> float:
    """Rule 4's small-sample factor: sqrt(G / (G - 1)) * t(G - 1) / z at level 1 - alpha (1 when G < 2)."""
    if units < 2:
        return 1.0
    return math.sqrt(units / (units - 1)) * _t(alpha, units) / NormalDist().inv_cdf(1 - alpha / 2)


@dataclass
class Draws:
    """The resampled means of one paired difference around its observed mean, over ``units`` resampled units."""

    means: np.ndarray
    center: float
    units: int

    @cached_property
    def _sorted(self) -> np.ndarray:
        return np.sort(self.means[~np.isnan(self.means)])

    @property
    def measurable(self) -> bool:
        """One unit has no spread to measure: nothing can be concluded from it."""
        return self.units >= 2 and self._sorted.size > 0

    def _percentile(self, q: float) -> float:
        """np.nanpercentile's default (linear) on the sorted draws, sorted once: the tests search many levels."""
        draws = self._sorted
        if draws.size < 2:
            return float(draws[0]) if draws.size else math.nan
        pos = q / 100 * (draws.size - 1)
        i = min(int(pos), draws.size - 2)
        return float(draws[i] + (pos - i) * (draws[i + 1] - draws[i]))

    @cached_property
    def _se(self) -> float:
        """The bootstrap SE with the small-sample factor sqrt(G / (G - 1)): the t-interval's standard error."""
        return float(np.std(self._sorted)) * math.sqrt(self.units / (self.units - 1)) if self.units >= 2 else 0.0

    def interval(self, alpha: float) -> tuple[float, float]:
        """Percentile interval at level 1 - alpha, widened around the observed mean, never inside the t-interval
        on the bootstrap SE (rule 4)."""
        low, high = self._percentile(alpha / 2 * 100), self._percentile(100 - alpha / 2 * 100)
        f = widening(alpha, self.units)
        low, high = self.center + (low - self.center) * f, self.center + (high - self.center) * f
        if self.units >= 2:
            half = _t(alpha, self.units) * self._se
            low, high = min(low, self.center - half), max(high, self.center + half)
        return float(low), float(high)

    def p_value(self) -> float:
        """Two-sided p: the alpha at which the interval just stops reaching 0."""
        def excludes_zero(alpha):
            low, high = self.interval(alpha)
            return not low <= 0 <= high

        return smallest_alpha(excludes_zero, P_MAX) if self.measurable else 1.0


def smallest_alpha(holds, top: float) -> float:
    """The smallest alpha in [P_MIN, top] at which ``holds`` (false below it, true above: the interval narrows
    as alpha grows), by bisection on log alpha; 1 when it never holds, 0 when it holds already at P_MIN."""
    if not holds(top):
        return 1.0
    if holds(P_MIN):
        return 0.0
    lo, hi = math.log(P_MIN), math.log(top)  # fails at lo, holds at hi
    for _ in range(25):  # log-alpha range 13.8 / 2^25: far finer than the resampling noise
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if holds(math.exp(mid)) else (mid, hi)
    return math.exp(lo)


def p_best(scores: dict[str, Sequence], higher: bool, resampler: Resampler) -> dict[str, float]:
    """Rule 5: {variant: share of the joint resamples in which its mean is the best} (ties shared)."""
    names = list(scores)
    means = np.column_stack([resampler.means(as_array(scores[v])) for v in names])
    means = np.where(np.isnan(means), -np.inf, means if higher else -means)  # not scored in a draw: last
    top = means == means.max(axis=1, keepdims=True)
    shares = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
    return {v: float(share) for v, share in zip(names, shares, strict=True)}
