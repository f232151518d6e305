"""The decision report: verdict, why, scores with paired intervals, seeds, costs and stage timings, written
as Markdown, HTML and JSON next to the comparison's own full report (per-question answers)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from assistant.compare.recommend import headline as verdict_headline
from assistant.compare.report import ci_cell, html_page, markdown_section, write_report
from assistant.compare.result import ComparisonResult, Interval
from assistant.decide.outputs import ReportFiles, RetrievalChoice, TrainsetOutput
from assistant.decide.result import DecideResult
from foundation.metrics import METRIC_LABELS
from foundation.variants import ADAPTER_VARIANTS, ROUTED, served_name
from training.doc_questions import describe


def _why(result: ComparisonResult) -> list[str]:
    """The why-sentences of the comparison, else its reason."""
    return [f"{k}: {v}" for k, v in result.why.items()] or [result.recommendation.reason]


def _score_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    metric = result.metric
    seeds = result.seeds.get("summary", {})
    header = ["variant", f"{METRIC_LABELS[metric]} [95 % CI]", "best − variant [Holm-adjusted paired CI]",
              "paired diff vs base [95 % CI]", "across seeds"]
    rows = []
    for v, summary in result.variants.items():
        paired = result.paired.get(v, {}).get(metric)
        s = seeds.get(v)
        spread = f"{s['mean']:.3f} ± {s['sd']:.3f} ({s['seeds']} seeds)" if s and s.get("mean") is not None else ""
        rows.append([v, ci_cell(summary.get(metric)), _gap(result.recommendation.comparisons.get(v)),
                     ci_cell(paired) if paired else "", spread])
    return header, rows


def _gap(row: dict | None) -> str:
    if not row:
        return "best"
    mark = " separated" if row.get("separated") else ""
    return f"{row['mean']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]{mark}"


def _cost_rows(result: ComparisonResult) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "training min", "extra prompt tokens", "extra memory MB", "time to first token s",
              "tokens/s"]
    return header, [[v, f"{c.training_seconds / 60:.1f}", f"{c.extra_prompt_tokens:.0f}", f"{c.memory_mb:.1f}",
                     *(_mean(result.variants.get(v, {}).get(m)) for m in ("ttft_s", "tokens_per_s"))]
                    for v, c in result.costs.items()]


def _mean(summary: Interval | None) -> str:
    return f"{summary.mean:.2f}" if summary and summary.mean is not None else "–"


def sections(result: ComparisonResult, decision: DecideResult) -> list[tuple[str, object]]:
    evalset, budget = decision.evalset, decision.config.budget_minutes
    # the plan and its budget against the time taken (assistant/decide/timings.py)
    said = f"budget {budget:g} min" if budget else "no budget (--budget-minutes 0: the plan fitted to the data)"
    return [("Why", _why(result)),
            ("Scores", _score_rows(result)),
            ("Costs on this machine", _cost_rows(result)),
            ("Time", [f"{said}; {decision.timings.headline()}", *decision.plan.notes]),
            ("Where the time went (seconds; sub-stages under their stage)", decision.timings.table()),
            ("Warnings", [*result.warnings, *filter(None, [decision.timings.over_budget(budget)])] or ["none"]),
            # each probe's message names its interval and when it flags
            ("Adapter checks (forgetting, bias; paired intervals)",
             [p.message for p in result.forgetting + result.bias] or ["not run"]),
            ("Inputs", [f"documents: {', '.join(decision.config.docs)}",
                        f"evaluation: {evalset.origin}, {evalset.eval} questions; training pairs: {evalset.train} "
                        f"({evalset.dropped_leaks} dropped as copies or near-duplicates of evaluation questions)",
                        *describe(asdict(evalset)),  # how the questions were made (`arena train` says it too)
                        _retrieval_line(decision.retrieval),
                        *_training_line(decision.trainset),
                        f"comparison run #{result.run_id} (Compare tab → Past runs); per-question answers "
                        "in comparison.html"]),
            ("Ship it", ship_lines(result, decision))]


def ship_lines(result: ComparisonResult, decision: DecideResult) -> list[str]:
    """The two commands from this decision to an application calling the winner (docs/shipping.md)."""
    variant = result.recommendation.variant
    if not variant or variant == ROUTED:
        return ["no single strategy to ship: export one yourself with arena export --variant VARIANT"]
    name = decision.config.name
    adapter = (decision.adapters or [None])[0] if variant in ADAPTER_VARIANTS else None
    return [f"export the winner: arena export --from-decision {name} ./{name}-bundle",
            f"serve it: arena serve --api --bundle ./{name}-bundle (OpenAI-compatible, http://127.0.0.1:7860/v1)",
            f"call it: OpenAI(base_url=\"http://127.0.0.1:7860/v1\", api_key=\"...\").chat.completions.create("
            f"model=\"{served_name(variant, adapter)}\", messages=[...]); SERVING.md in the bundle has the vLLM, "
            "llama.cpp and Ollama commands"]


def _training_line(t: TrainsetOutput) -> list[str]:
    """What the adapter trained on, and what that means for questions about held-out material."""
    if not t.rows:
        return []
    line = f"fine-tuning rows: {t.qa_rows} Q/A, {t.grounded_rows} grounded, {t.document_rows} document sections"
    if t.document_rows:
        return [line + " (every section's text trained on, none held out)"]
    return [line + "; the adapter never saw the documents' text, so it can answer questions about held-out "
                   "sections only from the base model's own knowledge (--train-on-documents trains on it)"]


def _retrieval_line(r: RetrievalChoice) -> str:
    chosen = f"retrieval: {r.splitter} splitter, {r.mode} search, k={r.k}"
    if r.tuned:
        return f"{chosen} (chosen on {r.questions} training pairs: answer retrieved for {r.hit_rate:.0%})"
    return f"{chosen} (defaults: {r.reason or 'not tuned'})"


def headline(result: ComparisonResult) -> str:
    """'Use rag (clear winner)', 'Use rag (practically equivalent: ...)' or 'No variant yet (inconclusive: ...)'."""
    text = verdict_headline(result.recommendation)
    return f"Use {text}" if result.recommendation.variant else text[0].upper() + text[1:]


def render_markdown(result: ComparisonResult, decision: DecideResult) -> str:
    parts = [f"# Decision: {headline(result)}", "", result.recommendation.reason, ""]
    for title, body in sections(result, decision):
        parts += markdown_section(title, body)
    parts += ["Full comparison report: [comparison.md](comparison.md) · [comparison.html](comparison.html)", ""]
    return "\n".join(parts)


def write_decision_report(result: ComparisonResult, decision: DecideResult, folder: Path) -> ReportFiles:
    """report.md, report.html, report.json (+ the comparison's comparison.md/.html/.png) in `folder`."""
    folder = Path(folder)
    write_report(result, folder / "comparison.md")
    markdown = render_markdown(result, decision)
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    (folder / "report.html").write_text(html_page("Decision", markdown), encoding="utf-8")
    rec, data, facts = result.recommendation, result.to_dict(), decision.to_dict()
    # verdict: the variant to use, null when the outcome is "inconclusive" (no variant yet; leader names the
    # variant ahead, p_best its bootstrap probability of being best, more_questions what would settle it).
    data = {"verdict": rec.variant, "outcome": rec.outcome or None, "leader": rec.leader, "p_best": rec.p_best,
            "margin": rec.margin, "more_questions": rec.more_questions, "clear": rec.clear, "reason": rec.reason,
            "why": _why(result), "metric": rec.metric, **{k: data[k] for k in ("variants", "paired", "seeds",
                                                                             "costs", "warnings", "run_id")},
            **{k: facts[k] for k in ("config", "plan", "stages", "evalset", "retrieval", "trainset", "adapters",
                                     "timings")}}
    (folder / "report.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return ReportFiles("report.md", "report.html", "report.json", "comparison.html")
