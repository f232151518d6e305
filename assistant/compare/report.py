"""Comparison reports: a bar chart with error bars (PNG), a Markdown file and a self-contained HTML file.

One builder writes the Markdown; the HTML is that Markdown rendered by markdown-it-py (raw HTML in answers is
escaped, not rendered), with the chart embedded. The decision report (assistant/decide/report.py) is built
with the same `markdown_section` / `html_page`.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from assistant.compare.equivalence import UNIT_METRICS
from assistant.compare.judge import report_lines as judge_lines
from assistant.compare.recommend import Recommendation, headline
from assistant.compare.result import ComparisonResult, Interval, Summary, mean_of
from foundation.metrics import METRIC_LABELS

CHART_METRICS = ("f1", "rougeL", "contains", "semantic", "judge", "nll", "groundedness", "retrieval_hit")
TABLE_METRICS = ("f1", "rougeL", "exact", "contains", "semantic", "judge", "nll", "ppl", "groundedness",
                 "retrieval_hit", "loops", "ttft_s", "tokens_per_s")  # loops: share of answers that loop


def chart_png(variants: dict[str, Summary]) -> bytes:
    """One small bar panel per metric, a bar per variant, whiskers = the 95 % bootstrap interval."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, safe on worker threads

    shown = measured(variants, CHART_METRICS)
    cols = min(4, max(1, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows), dpi=90, layout="constrained")
    names = list(variants)
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        cells = [variants[name].get(metric) or Interval(None, None, None) for name in names]
        means = [s.mean or 0.0 for s in cells]
        low = [0.0 if s.mean is None else s.mean - s.ci_low for s in cells]
        high = [0.0 if s.mean is None else s.ci_high - s.mean for s in cells]
        ax.bar(range(len(names)), means, yerr=[low, high], capsize=3, color=[f"C{j}" for j in range(len(names))])
        for j, s in enumerate(cells):
            if s.mean is None:  # e.g. groundedness without retrieval
                ax.text(j, 0, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
        if metric in UNIT_METRICS:
            ax.set_ylim(min(0.0, min(m - lo for m, lo in zip(means, low, strict=True))), 1.05)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def measured(variants: dict[str, Summary], metrics=TABLE_METRICS) -> list[str]:
    """The metrics (in the given order) that any variant has a value for."""
    return [m for m in metrics if any(mean_of(s, m) is not None for s in variants.values())]


def ci_cell(summary: Interval | None) -> str:
    """'mean [ci_low, ci_high]' of one metric summary, or a dash when it has no value."""
    if not summary or summary.mean is None:
        return "–"
    return f"{summary.mean:.3f} [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def results_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    """Results table: one row per variant, one column per metric that has any value."""
    metrics = measured(result.variants)
    header = ["variant"] + [METRIC_LABELS[m] for m in metrics]
    return header, [[name] + [ci_cell(v.get(m)) for m in metrics] for name, v in result.variants.items()]


def _cost_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "adapter training (s)", "extra prompt tokens", "extra memory (MB)", "seconds per answer"]
    rows = [[v, f"{c.training_seconds:g}", f"{c.extra_prompt_tokens:.1f}", f"{c.memory_mb:.1f}",
             "–" if c.seconds_per_answer is None else f"{c.seconds_per_answer:.2f}"]
            for v, c in result.costs.items()]
    return header, rows


def _paired_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    metric = result.metric
    header = ["variant", f"{METRIC_LABELS.get(metric, metric)} minus base [95 % CI]"]
    return header, [[v, ci_cell(d.get(metric))] for v, d in result.paired.items()]


def _verdict_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    """The verdict's paired comparisons: best minus each other variant, Holm-adjusted (see paired.py)."""
    rec = result.recommendation
    best, label, margin = rec.best or "best", METRIC_LABELS.get(rec.metric, rec.metric), rec.margin
    # The interval is at the row's Holm level (stricter than 5 %) and never narrower than the t-interval, so
    # with few questions it is far wider than the 95 % one of the table above: the header says so.
    header = ["variant", f"{best} minus variant, {label} [CI at the Holm level, wider than 95 %]", "Holm level",
              "test", "p (adjusted)",
              "separated", "questions for 80 % power"]
    header += [f"within ±{margin:g}: TOST p (adjusted) [adjusted CI]"] if margin is not None else []
    return header, [[v, f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]", f"{c['level']:.4g}",
                     c["test"], f"{c['p_value']:.3g} ({c['p_adjusted']:.3g})",
                     "yes" if c["separated"] else ("no (seeds disagree)" if c.get("seed_flip") else "no"),
                     str(c["questions_needed"] or "–")] + ([_equivalence_cell(c)] if margin is not None else [])
                    for v, c in rec.comparisons.items()]


def _equivalence_cell(c: dict) -> str:
    """'yes: 0.004 (0.012) [-0.021, +0.035]' -- the equivalence test of equivalence.py."""
    if "tost_p" not in c:
        return "–"
    verdict = "yes" if c["equivalent"] else ("no (seeds differ by the margin)" if c.get("seeds_exceed_margin")
                                             else "no")
    return (f"{verdict}: {c['tost_p']:.3g} ({c['tost_p_adjusted']:.3g}) [{c['tost_low']:+.3f}, "
            f"{c['tost_high']:+.3f}]")


def _stats_lines(result: ComparisonResult) -> list[str]:
    rec = result.recommendation
    st = rec.stats
    if not st:
        return ["no paired comparison (fewer than two variants scored)"]
    unit = f"{st['clusters']} source clusters" if st.get("clustered") else "single questions"
    lines = [f"{rec.n_questions} questions; paired bootstrap over {unit}, {st['resamples']} resamples; "
             f"Holm correction over {len(rec.comparisons)} comparisons at alpha {st['alpha']:g}"]
    if rec.margin is not None:
        lines.append(f"practical equivalence: two one-sided tests (TOST) within ±{rec.margin:g} of the leader, "
                     "Holm-corrected too (docs/verdict.md)")
    if st.get("p_best"):
        shares = ", ".join(f"{v} {p * 100:.0f} %" for v, p in sorted(st["p_best"].items(), key=lambda kv: -kv[1]))
        lines.append(f"P(best), the share of paired resamples in which a variant has the best mean: {shares}")
    lines += [st["note"]] if st.get("note") else []
    lines += [f"{v}: {s['seeds']} training seeds, {s['mean']:.3f} ± {s['sd']:.3f} (range {s['min']:.3f}–"
              f"{s['max']:.3f})" for v, s in rec.seeds.items()]
    return lines


def _per_question_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    names = list(result.variants)
    header = ["#", "question", "reference"] + [f"{n} (F1)" for n in names]
    rows = []
    for i, item in enumerate(result.per_question, 1):
        cells = []
        for n in names:
            a = item.answers.get(n)
            picked = f"[{a.routed_to}] " if a and a.routed_to else ""  # which variant the router picked
            cells.append(f"{picked}{a.text} ({a.scores.get('f1') or 0:.2f})" if a else "")
        rows.append([str(i), item.question, item.reference] + cells)
    return header, rows


def router_lines(result: ComparisonResult) -> list[str]:
    """What the routed column picked and how it was trained (assistant/compare/router.py)."""
    router = result.router
    if not router:
        return ["not run (add the routed variant)"]
    picks = ", ".join(f"{v} {n}" for v, n in router.picks.items())
    return [f"picked per question: {picks}",
            f"{router.folds}-fold cross-validation over the evaluation questions (never trained on the question "
            f"it answers) plus {router.stored_labels} stored labels (comparison runs, chat votes); "
            f"{router.backend} head on the embedder's features; {router.seconds:.2f} s"]


def why_title(rec: Recommendation) -> str:
    """The why-sentences explain a choice, or (no variant yet) where each variant stands against the leader."""
    return "Where the others stand against the leader" if rec.outcome == "inconclusive" else "Why not the others"


Section = tuple[str, "tuple[list[str], list[list[str]]] | list[str]"]


def _sections(result: ComparisonResult) -> list[Section]:
    """Report sections in order: (title, table or list of lines)."""
    return [
        ("Results (mean [95 % bootstrap CI])", results_rows(result)),
        (why_title(result.recommendation), [f"{v}: {text}" for v, text in result.why.items()] or ["–"]),
        ("Paired difference against the best (Holm-adjusted)", _verdict_rows(result)),
        ("Statistics", _stats_lines(result)),
        ("Paired difference against base", _paired_rows(result)),
        ("Costs", _cost_rows(result)),
        ("Forgetting check", [f.message for f in result.forgetting] or ["not run (no adapter compared)"]),
        ("Bias probe", [b.message for b in result.bias] or ["not run (no adapter compared)"]),
        ("Router (the routed column)", router_lines(result)),
        ("LLM judge", judge_lines(result)),
        ("Warnings", result.warnings or ["none"]),
        ("Per question", _per_question_rows(result)),
    ]


def _md_cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_section(title: str, body) -> list[str]:
    """One report section as Markdown lines: a heading, then a table (header, rows) or a bullet list."""
    lines = [f"## {title}", ""]
    if isinstance(body, tuple):
        header, rows = body
        lines += ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    else:
        lines += [f"- {_md_cell(line)}" for line in body]
    return lines + [""]


def html_page(title: str, markdown: str) -> str:
    """A self-contained HTML page of the report's Markdown (tables on; raw HTML in the text is escaped)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
            "margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
            f"padding:4px 8px;vertical-align:top;font-size:13px}}</style></head><body>{body}</body></html>")


def render_markdown(result: ComparisonResult, chart_src: str) -> str:
    """The report in Markdown; ``chart_src`` is the chart's link (a sibling file, or a data: URI for HTML)."""
    rec = result.recommendation
    parts = ["# Strategy comparison", "", f"**Recommendation: {_md_cell(headline(rec))}.** {_md_cell(rec.reason)}",
             "", f"![metrics with 95 % intervals]({chart_src})", ""]
    for title, body in _sections(result):
        parts += markdown_section(title, body)
    parts += ["## Settings", "", "```", *(f"{k}: {v}" for k, v in result.settings.items()), "```", ""]
    return "\n".join(parts)


def write_report(result: ComparisonResult, path: Path) -> dict[str, Path]:
    """Write <path>.md (chart as a sibling PNG) and <path>.html (chart embedded); return the three paths."""
    path = Path(path)
    md_path = path if path.suffix.lower() == ".md" else path.with_suffix(".md")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    png = chart_png(result.variants)
    png_path, html_path = md_path.with_suffix(".png"), md_path.with_suffix(".html")
    png_path.write_bytes(png)
    md_path.write_text(render_markdown(result, png_path.name), encoding="utf-8")
    embedded = "data:image/png;base64," + base64.b64encode(png).decode()
    html_path.write_text(html_page("Strategy comparison", render_markdown(result, embedded)), encoding="utf-8")
    return {"markdown": md_path, "html": html_path, "png": png_path}
