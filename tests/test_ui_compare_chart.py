"""The Compare tab's native chart: a point-range per variant drawn from a result's summaries."""

from __future__ import annotations

import pytest

from assistant.compare.result import ComparisonResult
from ui.compare import CHART_POINTS, INTERVAL, MEAN, chart_frame, chart_metrics

RESULT = ComparisonResult.from_dict({"per_question": [], "recommendation": {}, "variants": {
    "base": {"f1": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 12}, "ttft_s": {"mean": 0.05, "ci_low": 0.04,
                                                                                     "ci_high": 0.06, "n": 12}},
    "rag": {"f1": {"mean": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 12}, "groundedness": {"mean": 0.8, "ci_low": 0.7,
                                                                                           "ci_high": 0.9, "n": 12}},
}})


def test_chart_frame_is_a_point_range_per_variant():
    frame = chart_frame(RESULT, "f1")
    for name, (low, mean, high) in {"base": (0.1, 0.2, 0.3), "rag": (0.5, 0.6, 0.7)}.items():
        rows = frame[frame["variant"] == name]
        interval = rows[rows["shown"] == INTERVAL]["score"]
        assert len(interval) == CHART_POINTS + 1
        assert interval.min() == pytest.approx(low) and interval.max() == pytest.approx(high)
        assert list(rows[rows["shown"] == MEAN]["score"]) == [pytest.approx(mean)]
        assert set(rows["mean [95 % CI]"]) == {f"{mean:.3f} [{low:.3f}, {high:.3f}]"} and set(rows["questions"]) == {12}
    assert list(frame["shown"][-2:]) == [MEAN, MEAN]  # drawn last, so the dots sit on top of their bars


def test_chart_skips_variants_without_the_metric_and_lists_only_present_metrics():
    assert set(chart_frame(RESULT, "groundedness")["variant"]) == {"rag"}
    assert chart_frame(RESULT, "nll").empty
    assert [m for _, m in chart_metrics(RESULT)] == ["f1", "groundedness", "ttft_s"]
