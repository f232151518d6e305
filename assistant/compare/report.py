"""Comparison reports: a bar chart with error bars (PNG), a Markdown file and a self-contained HTML file."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from assistant.compare.judge import report_lines as judge_lines
from assistant.compare.recommend import headline, outcome_of
from foundation.metrics import METRIC_LABELS

CHART_METRICS = ("f1", "rougeL", "contains", "semantic", "judge", "nll", "groundedness", "retrieval_hit")
UNIT_METRICS = {"f1", "rougeL", "exact", "contains", "semantic", "groundedness", "retrieval_hit",
                "judge"}  # in [0, 1]
TABLE_METRICS = ("f1", "rougeL", "exact", "contains", "semantic", "judge", "nll", "ppl", "groundedness",
                 "retrieval_hit", "loops", "ttft_s", "tokens_per_s")  # loops: share of answers that loop


def chart_png(variants: dict[str, dict[str, dict]], metrics=CHART_METRICS) -> bytes:
    """One small bar panel per metric, a bar per variant, whiskers = the 95 % bootstrap interval."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, safe on worker threads

    shown = [m for m in metrics if any(v.get(m, {}).get("mean") is not None for v in variants.values())]
    cols = min(4, max(1, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows), dpi=90, layout="constrained")
    names = list(variants)
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        means, low, high = [], [], []
        for name in names:
            s = variants[name].get(metric) or {}
            mean = s.get("mean")
            means.append(mean or 0.0)
            low.append(0.0 if mean is None else mean - s["ci_low"])
            high.append(0.0 if mean is None else s["ci_high"] - mean)
        ax.bar(range(len(names)), means, yerr=[low, high], capsize=3, color=[f"C{j}" for j in range(len(names))])
        for j, name in enumerate(names):
            if (variants[name].get(metric) or {}).get("mean") is None:  # e.g. groundedness without retrieval
                ax.text(j, 0, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
        if metric in UNIT_METRICS:
            ax.set_ylim(min(0.0, min(m - lo for m, lo in zip(means, low, strict=True))), 1.05)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def ci_cell(summary: dict | None) -> str:
    """'mean [ci_low, ci_high]' of one metric summary, or a dash when it has no value."""
    if not summary or summary.get("mean") is None:
        return "–"
    return f"{summary['mean']:.3f} [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"


def _rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Results table: one row per variant, one column per metric that has any value."""
    variants = result["variants"]
    metrics = [m for m in TABLE_METRICS if any(v.get(m, {}).get("mean") is not None for v in variants.values())]
    header = ["variant"] + [METRIC_LABELS[m] for m in metrics]
    return header, [[name] + [ci_cell(v.get(m)) for m in metrics] for name, v in variants.items()]


def _cost_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "adapter training (s)", "extra prompt tokens", "extra memory (MB)", "seconds per answer"]
    rows = [[v, f"{c.get('training_seconds', 0):g}", f"{c.get('extra_prompt_tokens', 0):.1f}",
             f"{c.get('memory_mb', 0):.1f}",
             "–" if c.get("seconds_per_answer") is None else f"{c['seconds_per_answer']:.2f}"]
            for v, c in result.get("costs", {}).items()]
    return header, rows


def _paired_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    metric = result["recommendation"].get("metric", "f1")
    header = ["variant", f"{METRIC_LABELS.get(metric, metric)} minus base [95 % CI]"]
    return header, [[v, ci_cell(d.get(metric))] for v, d in result.get("paired", {}).items()]


def _verdict_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The verdict's paired comparisons: best minus each other variant, Holm-adjusted (see stats.py)."""
    rec = result["recommendation"]
    best, label = rec.get("best") or "best", METRIC_LABELS.get(rec.get("metric", "f1"), rec.get("metric", "f1"))
    margin = rec.get("margin")
    header = ["variant", f"{best} minus variant, {label} [adjusted CI]", "Holm level", "test", "p (adjusted)",
              "separated", "questions for 80 % power"]
    header += [f"within ±{margin:g}: TOST p (adjusted) [adjusted CI]"] if margin is not None else []
    rows = []
    for v, c in (rec.get("comparisons") or {}).items():
        rows.append([v, f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]", f"{c['level']:.4g}",
                     c["test"], f"{c['p_value']:.3g} ({c['p_adjusted']:.3g})",
                     "yes" if c["separated"] else ("no (seeds disagree)" if c.get("seed_flip") else "no"),
                     str(c["questions_needed"] or "–")] + ([_equivalence_cell(c)] if margin is not None else []))
    return header, rows


def _equivalence_cell(c: dict) -> str:
    """'yes: 0.004 (0.012) [-0.021, +0.035]' -- the equivalence test of rule 8 in stats.py."""
    if "tost_p" not in c:
        return "–"
    verdict = "yes" if c["equivalent"] else ("no (seeds differ by the margin)" if c.get("seeds_exceed_margin")
                                             else "no")
    return (f"{verdict}: {c['tost_p']:.3g} ({c['tost_p_adjusted']:.3g}) [{c['tost_low']:+.3f}, "
            f"{c['tost_high']:+.3f}]")


def _stats_lines(result: dict) -> list[str]:
    rec = result["recommendation"]
    st = rec.get("stats") or {}
    if not st:
        return ["no paired comparison (fewer than two variants scored)"]
    unit = f"{st['clusters']} source clusters" if st.get("clustered") else "single questions"
    lines = [f"{rec.get('n_questions', 0)} questions; paired bootstrap over {unit}, {st['resamples']} resamples; "
             f"Holm correction over {len(rec.get('comparisons') or {})} comparisons at alpha {st['alpha']:g}"]
    if rec.get("margin") is not None:
        lines.append(f"practical equivalence: two one-sided tests (TOST) within ±{rec['margin']:g} of the leader, "
                     "Holm-corrected too (docs/verdict.md)")
    if st.get("p_best"):
        shares = ", ".join(f"{v} {p * 100:.0f} %" for v, p in sorted(st["p_best"].items(), key=lambda kv: -kv[1]))
        lines.append(f"P(best), the share of paired resamples in which a variant has the best mean: {shares}")
    lines += [st["note"]] if st.get("note") else []
    lines += [f"{v}: {s['seeds']} training seeds, {s['mean']:.3f} ± {s['sd']:.3f} (range {s['min']:.3f}–"
              f"{s['max']:.3f})" for v, s in (rec.get("seeds") or {}).items()]
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per_question_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    names = list(result["variants"])
    header = ["#", "question", "reference"] + [f"{n} (F1)" for n in names]
    rows = []
    for i, item in enumerate(result.get("per_question", []), 1):
        cells = []
        for n in names:
            a = item["answers"].get(n, {})
            picked = f"[{a['routed_to']}] " if a.get("routed_to") else ""  # which variant the router picked
            cells.append(f"{picked}{a.get('text', '')} ({a.get('scores', {}).get('f1', 0):.2f})")
        rows.append([str(i), item["question"], item["reference"]] + cells)
    return header, rows


def router_lines(result: dict) -> list[str]:
    """What the routed column picked and how it was trained (assistant/compare/router.py)."""
    router = result.get("router")
    if not router:
        return ["not run (add the routed variant)"]
    picks = ", ".join(f"{v} {n}" for v, n in router["picks"].items())
    return [f"picked per question: {picks}",
            f"{router['folds']}-fold cross-validation over the evaluation questions (never trained on the question "
            f"it answers) plus {router['stored_labels']} stored labels (comparison runs, chat votes); "
            f"{router['backend']} head on the embedder's features; {router['seconds']:.2f} s"]


def why_title(rec: dict) -> str:
    """The why-sentences explain a choice, or (no variant yet) where each variant stands against the leader."""
    return "Where the others stand against the leader" if outcome_of(rec) == "inconclusive" else "Why not the others"


def _sections(result: dict) -> list[tuple[str, tuple[list[str], list[list[str]]] | list[str]]]:
    """Report sections in order: (title, table or list of lines)."""
    forgetting = result.get("forgetting") or []
    return [
        ("Results (mean [95 % bootstrap CI])", _rows(result)),
        (why_title(result["recommendation"]),
         [f"{v}: {text}" for v, text in (result.get("why") or {}).items()] or ["–"]),
        ("Paired difference against the best (Holm-adjusted)", _verdict_rows(result)),
        ("Statistics", _stats_lines(result)),
        ("Paired difference against base", _paired_rows(result)),
        ("Costs", _cost_rows(result)),
        ("Forgetting check", [f["message"] for f in forgetting] or ["not run (no adapter compared)"]),
        ("Bias probe", [f["message"] for f in result.get("bias") or []] or ["not run (no adapter compared)"]),
        ("Router (the routed column)", router_lines(result)),
        ("LLM judge", judge_lines(result)),
        ("Warnings", result.get("warnings") or ["none"]),
        ("Per question", _per_question_rows(result)),
    ]


def render_markdown(result: dict, chart_name: str) -> str:
    rec = result["recommendation"]
    parts = ["# Strategy comparison", "", f"**Recommendation: {headline(rec)}.** {rec['reason']}",
             "", f"![metrics with 95 % intervals]({chart_name})", ""]
    for title, body in _sections(result):
        parts += [f"## {title}", ""]
        parts += [_md_table(*body)] if isinstance(body, tuple) else [f"- {line}" for line in body]
        parts.append("")
    parts += ["## Settings", "", "```", *(f"{k}: {v}" for k, v in result.get("settings", {}).items()), "```", ""]
    return "\n".join(parts)


def render_html(result: dict, png: bytes) -> str:
    rec = result["recommendation"]
    data = base64.b64encode(png).decode()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Strategy comparison</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:"
             "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;"
             "font-size:13px}</style></head><body><h1>Strategy comparison</h1>",
             f"<p><b>Recommendation: {html.escape(headline(rec))}.</b> "
             f"{html.escape(rec['reason'])}</p>",
             f"<img alt='metrics with 95 % intervals' src='data:image/png;base64,{data}'>"]
    for title, body in _sections(result):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(body, tuple):
            parts.append(_html_table(*body))
        else:
            parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in body) + "</ul>")
    settings = "\n".join(f"{k}: {v}" for k, v in result.get("settings", {}).items())
    parts.append(f"<h2>Settings</h2><pre>{html.escape(settings)}</pre></body></html>")
    return "".join(parts)


def write_report(result: dict, path: Path) -> dict[str, Path]:
    """Write <path>.md (chart as a sibling PNG) and <path>.html (chart embedded); return the three paths."""
    path = Path(path)
    md_path = path if path.suffix.lower() == ".md" else path.with_suffix(".md")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    png = chart_png(result["variants"])
    png_path, html_path = md_path.with_suffix(".png"), md_path.with_suffix(".html")
    png_path.write_bytes(png)
    md_path.write_text(render_markdown(result, png_path.name), encoding="utf-8")
    html_path.write_text(render_html(result, png), encoding="utf-8")
    return {"markdown": md_path, "html": html_path, "png": png_path}
