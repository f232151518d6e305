"""Plain tables and HTML for showing comparison results (used by the Compare tab; no UI imports)."""

from __future__ import annotations

import html

from assistant.compare.recommend import Recommendation
from assistant.compare.report import ci_cell, results_rows
from assistant.compare.result import ComparisonResult
from foundation.metrics import METRIC_LABELS

QUESTION_SCORES = ("f1", "rougeL", "contains", "semantic", "judge", "nll", "groundedness", "retrieval_hit")


def results_table(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the report's results table (mean [95 % CI] per variant and metric) and the gain over base."""
    header, rows = results_rows(result)
    primary = result.metric
    return (header + [f"Δ {METRIC_LABELS[primary]} vs base"],
            [row + [ci_cell(result.paired.get(row[0], {}).get(primary))] for row in rows])


def question_choices(result: ComparisonResult, only_disagree: bool = False) -> list[tuple[str, int]]:
    """(label, index) pairs for the per-question picker, optionally only where the variants disagree."""
    return [(f"#{i + 1} {item.question[:80]}" + (" ⚡" if item.disagree else ""), i)
            for i, item in enumerate(result.per_question) if item.disagree or not only_disagree]


def question_html(result: ComparisonResult, index: int) -> str:
    """One question: reference, every variant's answer side by side with its scores and sources."""
    items = result.per_question
    if not 0 <= index < len(items):
        return "<p>No question selected.</p>"
    item = items[index]
    head = (f"<p><b>Question:</b> {html.escape(item.question)}</p>"
            f"<p><b>Reference:</b> {html.escape(item.reference)}</p>")
    cols = []
    for name, ans in item.answers.items():
        scores = "<br>".join(f"{METRIC_LABELS[m]}: {ans.scores[m]:.3f}" for m in QUESTION_SCORES
                             if ans.scores.get(m) is not None)
        if ans.judge:  # the LLM judge's verdict and reason (or its malformed reply)
            scores += (f"<br>judge: {html.escape(ans.judge.verdict or 'malformed')} — "
                       f"{html.escape(ans.judge.reason)}")
        sources = "".join(f"<li>{html.escape(s.citation)}</li>" for s in ans.sources)
        cols.append(f"<td style='vertical-align:top'><b>{html.escape(name)}</b>"
                    f"<p>{html.escape(ans.text)}</p><small>{scores}</small>"
                    + (f"<ul>{sources}</ul>" if sources else "") + "</td>")
    return head + "<table class='arena-compare-q'><tr>" + "".join(cols) + "</tr></table>"


def recommended(rec: Recommendation) -> str:
    """The past-runs cell: 'rag (clear)', 'rag (equivalent)', 'none yet (leader rag+finetuned)'."""
    if rec.variant is None:
        return f"none yet (leader {rec.leader})" if rec.leader and rec.outcome == "inconclusive" else "none"
    return f"{rec.variant} ({rec.outcome or 'no clear winner'})"


def runs_table(runs) -> tuple[list[str], list[list]]:
    """Past runs side by side: id, label, eval set, primary metric per variant and the recommendation."""
    names = list(dict.fromkeys(v for run in runs for v in run.result.variants))
    header = ["id", "label", "eval", "metric"] + names + ["recommended"]
    rows = []
    for run in runs:
        metric = run.settings.get("metric", "f1")
        cells = [ci_cell(run.result.variants.get(n, {}).get(metric)) for n in names]
        rows.append([run.id, run.label, run.settings.get("eval", ""), metric] + cells
                    + [recommended(run.result.recommendation)])
    return header, rows
