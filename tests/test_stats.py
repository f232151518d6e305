"""Paired statistics of the verdict on synthetic data: paired vs unpaired, clusters, Holm, McNemar, power, seeds."""

from __future__ import annotations

from math import comb
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import t as student_t

from assistant.compare.bootstrap import Draws, Resampler, bootstrap_ci
from assistant.compare.paired import compare_to_best
from assistant.compare.recommend import recommend, recommend_from_table
from assistant.compare.stats import holm, mcnemar_exact, mean_over_seeds, questions_needed, seed_spread
from foundation.errors import ArenaError

COSTS = {"base": {}, "rag": {"extra_prompt_tokens": 400}, "finetuned": {"training_seconds": 300},
         "prompt": {"extra_prompt_tokens": 100}}


def _paired_data(n=60, gain=0.05, wobble=0.03, seed=1):
    """Questions of very different difficulty (wide unpaired intervals), the variant a steady `gain` better."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, n)
    return base, base + gain + rng.normal(0, wobble, n)


def test_paired_difference_found_where_unpaired_intervals_overlap():
    base, rag = _paired_data()
    a, b = bootstrap_ci(base), bootstrap_ci(rag)
    assert a["ci_high"] > b["ci_low"]  # the old overlap rule would say "no clear winner"
    rec = recommend({"base": list(base), "rag": list(rag)}, COSTS, "f1")
    assert rec.variant == "rag" and rec.clear
    row = rec.comparisons["base"]
    assert row["ci_low"] > 0 and row["p_adjusted"] < 0.05 and row["test"] == "bootstrap"
    assert row["mean"] == pytest.approx(float(np.mean(rag - base)))


def test_pure_noise_difference_rarely_gives_a_winner():
    rng = np.random.default_rng(5)
    clear = 0
    for _ in range(200):
        base = rng.uniform(0, 1, 30)
        rec = recommend({"base": list(base), "rag": list(base + rng.normal(0, 0.2, 30))}, COSTS, "f1",
                        n_resamples=1000)
        clear += rec.clear
    assert clear / 200 < 0.1  # nominal 5 %; the percentile bootstrap is a little liberal at 30 questions


def test_no_winner_says_how_many_questions_would_settle_it():
    base, _ = _paired_data(n=44)
    rng = np.random.default_rng(3)
    tuned = base + 0.02 + rng.normal(0, 0.2, 44)
    rec = recommend({"rag": list(base + 0.3), "finetuned": list(tuned + 0.3)}, COSTS, "f1")
    closest = [v for v in rec.means if v != rec.best][0]
    needed = rec.comparisons[closest]["questions_needed"]
    assert not rec.clear and needed > 44 and rec.outcome == "inconclusive" and rec.variant is None
    assert f"questions would settle {rec.best} vs {closest}; you have 44" in rec.reason
    same = recommend({"base": [0.1, 0.5, 0.3, 0.7], "prompt": [0.3, 0.3, 0.5, 0.5]}, COSTS, "f1")
    assert same.outcome == "inconclusive" and same.variant is None and "same mean score" in same.reason


def test_clustered_interval_is_wider_when_clusters_are_correlated():
    rng = np.random.default_rng(11)
    clusters, size = 15, 6
    effect = np.repeat(rng.normal(0, 0.15, clusters), size)  # questions of one section move together
    base = rng.uniform(0.2, 0.8, clusters * size)
    rag = base + 0.05 + effect + rng.normal(0, 0.05, clusters * size)
    sources = [f"faq.md#section {i // size}" for i in range(clusters * size)]
    scores = {"rag": list(rag), "base": list(base)}
    flat = compare_to_best(scores, "rag", True)
    grouped = compare_to_best(scores, "rag", True, sources=sources)
    assert grouped["clustered"] and grouped["clusters"] == clusters and not flat["clustered"]
    width = {k: r["comparisons"]["base"]["ci_high"] - r["comparisons"]["base"]["ci_low"]
             for k, r in (("flat", flat), ("grouped", grouped))}
    assert width["grouped"] > 1.5 * width["flat"]
    assert grouped["comparisons"]["base"]["sd"] > 1.5 * flat["comparisons"]["base"]["sd"]  # design effect
    few = compare_to_best(scores, "rag", True, sources=[f"doc{i % 3}" for i in range(clusters * size)])
    assert not few["clustered"] and "only 3 distinct sources" in few["note"]


def test_cluster_bootstrap_mean_is_ratio_of_drawn_sums():
    r = Resampler(ids=np.array([0, 0, 1]), weights=np.array([[2.0, 0.0], [1.0, 1.0]]), clustered=True)
    # draw 1: cluster 0 twice -> (1 + 3) * 2 / 4 = 2; draw 2: both -> (1 + 3 + 8) / 3 = 4; NaN left out
    assert r.means(np.array([1.0, 3.0, 8.0])).tolist() == [2.0, 4.0]
    assert r.means(np.array([1.0, np.nan, 8.0])).tolist() == [1.0, 4.5]


def test_small_sample_widening_keeps_false_alarms_near_nominal():
    """8 sections of 5 correlated questions, no true difference: the plain percentile interval is too narrow."""
    rng = np.random.default_rng(3)
    trials, plain, widened = 300, 0, 0
    for i in range(trials):
        diffs = np.repeat(rng.normal(0, 0.1, 8), 5) + rng.normal(0, 0.1, 40)
        draws = Resampler.build(40, [f"s{j // 5}" for j in range(40)], seed=i, n_resamples=2000).draws(diffs)
        assert draws.units == 8
        low, high = draws.interval(0.05)
        widened += low > 0 or high < 0
        low, high = Draws(draws.means, draws.center, units=1).interval(0.05)  # units < 2: no widening
        plain += low > 0 or high < 0
    assert widened / trials < 0.085 < plain / trials


def test_p_value_is_where_the_interval_reaches_zero():
    rng = np.random.default_rng(1)
    draws = Resampler.build(40, seed=1).draws(rng.normal(0.03, 0.1, 40))
    p = draws.p_value()
    assert 0.001 < p < 0.5
    assert draws.interval(p * 1.02)[0] > 0 > draws.interval(p * 0.98)[0]
    assert Resampler.build(3, seed=0).draws(np.array([0.2, 0.2, 0.2])).p_value() == 0.0  # a constant gain
    assert Resampler.build(3, seed=0).draws(np.array([0.0, 0.0, 0.0])).p_value() == 1.0
    assert Resampler.build(1, seed=0).draws(np.array([0.9])).p_value() == 1.0  # one question proves nothing
    single = recommend({"rag": [0.9], "base": [0.1]}, COSTS, "f1")
    assert not single.clear and "1 question(s) are too few" in single.reason


def test_holm_against_hand_computation():
    steps = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    # ordered: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06 > level 0.025: stop), 0.04 (x1, max -> 0.06)
    assert [s["rank"] for s in steps] == [2, 4, 3, 1]
    assert [s["level"] for s in steps] == pytest.approx([0.05 / 3, 0.05, 0.025, 0.0125])
    assert [s["p_adjusted"] for s in steps] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [s["rejected"] for s in steps] == [True, False, False, True]
    # once a step fails, later ones are not rejected even when their own p is under their level
    assert [s["rejected"] for s in holm([0.04, 0.018, 0.02])] == [False, False, False]


def test_adjusted_intervals_use_holm_levels_in_order():
    base, _ = _paired_data(n=50)
    rng = np.random.default_rng(2)
    scores = {"rag": list(base + 0.3), "prompt": list(base + 0.1 + rng.normal(0, 0.02, 50)),
              "finetuned": list(base + 0.2 + rng.normal(0, 0.1, 50)), "base": list(base + 0.3 + rng.normal(0, .2, 50))}
    out = compare_to_best(scores, "rag", True, seed=4, n_resamples=3000)["comparisons"]
    # prompt has the largest |mean|/SE, then finetuned; base (noise around the best) fails and stops the test.
    assert out["prompt"]["level"] == pytest.approx(0.05 / 3) and out["finetuned"]["level"] == pytest.approx(0.025)
    assert out["base"]["level"] == pytest.approx(0.05) and not out["base"]["separated"]
    assert out["prompt"]["separated"] and out["finetuned"]["separated"]
    diffs = np.array(scores["rag"]) - np.array(scores["finetuned"])
    means = Resampler.build(50, seed=4, n_resamples=3000).means(diffs)
    low, high = np.percentile(means, [1.25, 98.75])
    f = np.sqrt(50 / 49) * student_t.ppf(1 - 0.0125, 49) / NormalDist().inv_cdf(1 - 0.0125)  # rule 4 by hand
    # ... and never inside the t-interval on the bootstrap SE (the floor of rule 4)
    half = student_t.ppf(1 - 0.0125, 49) * np.std(means) * np.sqrt(50 / 49)
    expected = (min(diffs.mean() + (low - diffs.mean()) * f, diffs.mean() - half),
                max(diffs.mean() + (high - diffs.mean()) * f, diffs.mean() + half))
    assert (out["finetuned"]["ci_low"], out["finetuned"]["ci_high"]) == pytest.approx(expected)
    assert out["base"]["ci_low"] <= 0 <= out["base"]["ci_high"]


def test_mcnemar_against_hand_computed_binomial():
    # 7 questions only a gets right, 1 only b, 12 both, 5 neither
    a = [1] * 7 + [0] * 1 + [1] * 12 + [0] * 5
    b = [0] * 7 + [1] * 1 + [1] * 12 + [0] * 5
    # two-sided exact: 2 * P(X <= 1), X ~ Bin(8, 1/2) = 2 * (1 + 8) / 256
    out = mcnemar_exact(a, b)
    assert (out["b"], out["c"]) == (7, 1)
    assert out["p_value"] == pytest.approx(2 * (comb(8, 0) + comb(8, 1)) / 2 ** 8)
    assert mcnemar_exact([1, 0], [1, 0])["p_value"] == 1.0
    assert mcnemar_exact([0.5, 1], [1, 0]) is None  # not a binary metric
    rec = recommend({"rag": a, "base": b}, COSTS, "exact")
    assert rec.comparisons["base"]["test"] == "mcnemar"
    assert rec.comparisons["base"]["p_value"] == pytest.approx(18 / 256) and not rec.clear
    assert "exact McNemar p = 0.0703" in rec.reason


def test_sample_size_gives_80_percent_power_in_simulation():
    delta, sigma, alpha = 0.1, 0.3, 0.05 / 4
    n = questions_needed(delta, sigma, alpha)
    assert n == 101  # ((z(0.99375) + z(0.8)) * 3) ** 2 = 100.4
    rng = np.random.default_rng(0)
    trials, hits = 300, 0
    for i in range(trials):
        diffs = rng.normal(delta, sigma, n)
        low, _ = Resampler.build(n, seed=i, n_resamples=1000).draws(diffs).interval(alpha)
        hits += low > 0
    assert abs(hits / trials - 0.8) < 0.08
    assert questions_needed(0.0, 0.3, alpha) is None


def test_seed_spread_and_mean_over_seeds():
    runs = [[0.2, 0.4, None], [0.4, 0.6, 0.5]]
    assert mean_over_seeds(runs) == pytest.approx([0.3, 0.5, 0.5])
    s = seed_spread(runs)
    assert s["seeds"] == 2 and s["per_seed"] == pytest.approx([0.3, 0.5]) and s["mean"] == pytest.approx(0.4)
    assert s["sd"] == pytest.approx(np.std([0.3, 0.5], ddof=1)) and (s["min"], s["max"]) == pytest.approx((0.3, 0.5))
    with pytest.raises(ValueError, match="equal-length"):
        seed_spread([[0.1], [0.1, 0.2]])


def test_seeds_that_flip_the_order_block_a_clear_win():
    base, _ = _paired_data(n=60)
    steady = [list(base + 0.1 + d) for d in (0.0, 0.01, -0.01)]
    rec = recommend({"base": list(base)}, COSTS, "f1", seed_scores={"finetuned": steady})
    assert rec.variant == "finetuned" and rec.clear and rec.seeds["finetuned"]["seeds"] == 3
    assert "Across 3 training seeds finetuned scored" in rec.reason
    # mean of the seeds +0.1 and the paired interval separates, but one seed is below base
    flipping = [list(base + 0.25), list(base + 0.1), list(base - 0.05)]
    rec = recommend({"base": list(base)}, COSTS, "f1", seed_scores={"finetuned": flipping})
    row = rec.comparisons["base"]
    assert row["ci_low"] > 0 and row["seed_flip"] and not row["separated"] and not rec.clear
    assert rec.outcome == "inconclusive" and rec.variant is None and rec.leader == "finetuned"  # never base
    assert "seeds disagree" in rec.reason


def test_recommend_from_table_with_seed_tables_and_perplexity():
    base, tuned = _paired_data(n=40)
    table = {"base": {"f1": list(base), "nll": list(3 - base)}, "finetuned": {"f1": list(tuned), "nll": list(2 - base)}}
    other_seed = {"finetuned": {"f1": list(tuned + 0.01), "nll": list(2.1 - base)}}
    rec = recommend_from_table(table, COSTS, "f1", seed_tables=[other_seed])
    assert set(rec.seeds) == {"finetuned"} and rec.seeds["finetuned"]["seeds"] == 2
    assert rec.means["finetuned"] == pytest.approx(float(np.mean(tuned)) + 0.005)
    ppl = recommend_from_table(table, COSTS, "ppl")
    assert ppl.metric == "nll" and ppl.variant == "finetuned"  # perplexity is decided on its log
    with pytest.raises(ArenaError, match="3 sources for 2 questions"):
        recommend({"base": [0.1, 0.2], "rag": [0.3, 0.4]}, COSTS, "f1", sources=["a", "b", "c"])
    with pytest.raises(ArenaError, match="per-seed scores need one equal-length list"):
        recommend({"base": [0.1, 0.2]}, COSTS, "f1", seed_scores={"finetuned": [[0.1], [0.1, 0.2]]})
