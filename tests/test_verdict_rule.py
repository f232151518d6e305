"""The three-outcome verdict tested by simulation (issue 24): a trailing variant is never recommended, a truly
equivalent cheaper variant is recommended at the rate the equivalence test promises, false clear winners stay
under 5 %, and the 24-question case of the issue is "inconclusive"; TOST and P(best) against hand computations.

Per-question token F1 is simulated as in benchmarks/verdict.py (f1_scores): Beta-distributed scores (mean as
given, SD 0.27: many questions near 0, as real F1 is) tied together across variants by a Gaussian copula, a
question hard for one variant is hard for all. Fixed seeds; 1000 resamples per verdict keep the file at a few
seconds.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.stats import t as student_t

from assistant.compare.bootstrap import Resampler, p_best
from assistant.compare.equivalence import tost_p_value
from assistant.compare.recommend import Recommendation, headline, recommend
from assistant.compare.stats import holm
from benchmarks.verdict import COSTS, GAP_MEANS, ISSUE_MEANS, f1_scores, tost_power
from foundation.errors import ArenaError

RESAMPLES = 1000


def verdict(scores: dict, seed: int, **kw):
    return recommend({v: list(s) for v, s in scores.items()}, COSTS, "f1", seed=seed, n_resamples=RESAMPLES, **kw)


def test_a_variant_trailing_by_0_1_is_never_recommended():
    """True gap 0.1 F1 on 24 questions, five variants as in the issue: over 120 data sets the verdict is the
    true leader or no variant, never one of the trailing four (the old rule picked the cheapest of them)."""
    rng = np.random.default_rng(24)
    means = GAP_MEANS
    outcomes = {"clear": 0, "equivalent": 0, "inconclusive": 0}
    for i in range(120):
        rec = verdict(f1_scores(rng, means, 24), seed=i)
        assert rec.variant in (None, "rag+finetuned"), f"data set {i}: {rec.variant} recommended ({rec.reason})"
        assert (rec.variant is None) == (rec.outcome == "inconclusive")
        outcomes[rec.outcome] += 1
    # Not vacuous: mostly "no variant yet" at 24 questions, and the leader is sometimes shown a clear winner.
    assert outcomes["inconclusive"] > 60 and outcomes["clear"] > 5, outcomes


def test_a_truly_equivalent_cheaper_variant_is_recommended_at_the_promised_rate():
    """rag and rag+finetuned with identical distributions (60 questions, SD of the paired difference 0.141),
    rag cheaper. The TOST at alpha 0.05 within ±0.05 has power 0.71 here (tost_power); the verdict recommends
    rag when the test shows equivalence, whichever of the two leads, and also on the rare clear win of rag.
    Tolerance 0.1: three binomial SDs of 300 simulations (0.08) plus those rare clear wins (about 0.02)."""
    n, noise = 60, 0.1
    expected = tost_power(0.05, noise * math.sqrt(2), n)
    assert expected == pytest.approx(0.712, abs=0.005)
    rng = np.random.default_rng(7)
    picked, trials = 0, 300
    for i in range(trials):
        difficulty = rng.normal(0.5, 0.25, n)  # the statistic only sees differences: normal scores suffice
        scores = {"rag+finetuned": difficulty + rng.normal(0, noise, n), "rag": difficulty + rng.normal(0, noise, n)}
        rec = verdict(scores, seed=i)
        picked += rec.variant == "rag"
        assert rec.outcome != "equivalent" or rec.variant == "rag"  # equivalent: always the cheaper
    assert abs(picked / trials - expected) < 0.1, (picked / trials, expected)


def test_false_clear_winners_stay_under_5_percent():
    """No true difference, 24 questions. Five variants (Holm: a clear winner must be separated from all four):
    at most 5 %. Two variants, the test at its nominal level, the hardest case: its true rate is 4.7 % on these
    scores (benchmarks/verdict.py, 3000 data sets; the paired t-test's is the same), too close to 5 % for 600 data
    sets to show, so the observed rate must stay within two binomial SDs of 5 % (0.068); the plain percentile
    interval, without rule 4's widening and floor, is further off."""
    rng = np.random.default_rng(5)
    two = sum(verdict(f1_scores(rng, {"base": 0.2, "rag": 0.2}, 24), seed=i).outcome == "clear" for i in range(600))
    assert two / 600 <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 600)
    five = sum(verdict(f1_scores(rng, {v: 0.2 for v in COSTS}, 24), seed=i).outcome == "clear" for i in range(60))
    assert five / 60 <= 0.05


def issue_scores(seed: int) -> dict[str, np.ndarray]:
    """24 questions with exactly the issue's means; the spread of the issue's run (best - base had a Holm-adjusted
    interval -0.017 to +0.330, an SD of the differences near 0.33)."""
    scores = f1_scores(np.random.default_rng(seed), ISSUE_MEANS, 24, sd=0.28, rho=0.3)
    for v, target in ISSUE_MEANS.items():
        x = scores[v]
        for _ in range(50):  # scale to the exact mean, staying inside [0, 1]
            x = np.clip(x * target / x.mean(), 0, 1)
        scores[v] = x
    return scores


def test_the_24_question_case_of_the_issue_is_inconclusive():
    for seed in range(10):
        scores = issue_scores(seed)
        assert {v: s.mean() for v, s in scores.items()} == pytest.approx(ISSUE_MEANS, abs=1e-9)
        rec = verdict(scores, seed=seed)
        assert rec.outcome == "inconclusive" and rec.variant is None and rec.leader == "rag+finetuned", rec.reason
        assert not rec.comparisons["base"]["equivalent"] and 0.5 < rec.p_best <= 1
        assert rec.more_questions and rec.more_questions > 0
        data = rec.to_dict()
        assert data["variant"] is None and data["leader"] == "rag+finetuned" and data["outcome"] == "inconclusive"
        assert headline(Recommendation.from_dict(data)).startswith("no variant yet (inconclusive: rag+finetuned leads, P(best)")
        assert rec.reason.startswith("No variant yet: inconclusive on token F1. rag+finetuned leads with 0.281")
        assert "you have 24 (about " in rec.reason and " more)." in rec.reason
        about, more = re.search(r"About ([\d,]+) questions would settle .*?you have 24 \(about ([\d,]+) more\)",
                                rec.reason).groups()
        assert int(about.replace(",", "")) - 24 == int(more.replace(",", ""))  # the figures add up as read
        assert "generated questions" in rec.reason and "--seeds" in rec.reason


def test_tost_p_value_matches_the_t_based_tost_on_normal_data():
    """Bootstrap TOST against scipy's t distribution: p = max of the two one-sided t-test p-values."""
    margin = 0.05
    for seed in range(4):
        d = np.random.default_rng(seed).normal(0.01, 0.1, 40)
        se = d.std(ddof=1) / math.sqrt(40)
        by_hand = max(student_t.sf((d.mean() + margin) / se, 39), student_t.cdf((d.mean() - margin) / se, 39))
        boot = tost_p_value(Resampler.build(40, seed=seed, n_resamples=20000).draws(d), margin)
        assert boot == pytest.approx(by_hand, rel=0.15, abs=0.001)
    flat = Resampler.build(40, seed=0).draws(np.random.default_rng(0).normal(0.2, 0.1, 40))
    assert tost_p_value(flat, margin) == 1.0  # the difference itself is outside the margin


def test_equivalence_is_holm_corrected_and_needs_the_seeds_within_the_margin():
    rng = np.random.default_rng(3)
    q = rng.normal(0.5, 0.2, 80)
    scores = {"rag+finetuned": q + 0.01, "rag": q + rng.normal(0, 0.05, 80), "prompt": q + rng.normal(0, 0.08, 80),
              "base": q - 0.2 + rng.normal(0, 0.05, 80)}
    rec = verdict(scores, seed=0)
    rows = rec.comparisons
    steps = holm([rows[v]["tost_p"] for v in rows], tiebreak=[abs(rows[v]["mean"]) for v in rows])
    assert [rows[v]["tost_p_adjusted"] for v in rows] == pytest.approx([s["p_adjusted"] for s in steps])
    assert rows["base"]["separated"] and not rows["base"]["equivalent"]  # 0.2 behind: outside the margin
    # prompt is the cheapest variant shown within ±0.05 of the leader (base is cheaper but 0.2 behind)
    assert rec.outcome == "equivalent" and rec.variant == "prompt" and rows["prompt"]["equivalent"], rec.reason
    # the same mean over two seeds whose means are 0.12 apart: training noise larger than the margin
    seeds = {"rag+finetuned": [list(q + 0.07), list(q - 0.05)]}
    wobbly = recommend({"rag": list(scores["rag"])}, COSTS, "f1", seed_scores=seeds, n_resamples=RESAMPLES)
    row = wobbly.comparisons["rag"]
    assert row["seeds_exceed_margin"] and not row["equivalent"] and wobbly.variant != "rag"
    steady = recommend({"rag": list(scores["rag"])}, COSTS, "f1", n_resamples=RESAMPLES,
                       seed_scores={"rag+finetuned": [list(q + 0.02), list(q)]})
    assert steady.outcome == "equivalent" and steady.variant == "rag"
    with pytest.raises(ArenaError, match="--equivalence-margin must be a positive number"):
        recommend({"rag": [0.1, 0.2]}, COSTS, "f1", margin=-0.1)


def test_p_best_is_the_share_of_joint_resamples_with_the_best_mean():
    # three questions, four hand-made draws: all once; q0 three times; q1 three times; q2 three times
    r = Resampler(ids=np.arange(3), weights=np.array([[1.0, 1, 1], [3, 0, 0], [0, 3, 0], [0, 0, 3]]), clustered=False)
    scores = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.5], "c": [1.0, 0.0, 0.0]}
    # draw 1: a 1/3, b 1/2 -> b; draw 2: a = c = 1 -> a, c share; draw 3: b; draw 4: b 0.5 -> b
    assert p_best(scores, True, r) == pytest.approx({"a": 0.125, "b": 0.75, "c": 0.125})
    # lower is better: a and c share draws 1, 3 and 4, b has draw 2
    assert p_best(scores, False, r) == pytest.approx({"a": 0.375, "b": 0.25, "c": 0.375})
