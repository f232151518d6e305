"""Strategy comparison: metrics, statistics, leakage and forgetting checks, recommendation, reports, runs."""
