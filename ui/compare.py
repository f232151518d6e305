"""Compare tab: run the measured comparison, show results with CIs, chart, recommendation and per-question view."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.compare import views
from assistant.compare.config import CompareConfig
from assistant.compare.equivalence import UNIT_METRICS
from assistant.compare.recommend import headline
from assistant.compare.report import TABLE_METRICS, ci_cell, measured, write_report
from assistant.compare.result import ComparisonResult
from assistant.compare.runs import RunStore
from assistant.comparison import eval_items, resume_comparison, run_comparison
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.metrics import METRIC_LABELS, PRIMARY_METRICS
from foundation.paths import confine
from foundation.variants import VARIANTS
from ui import errors
from ui.adapters import adapter_choices


def _runs(runtime: Runtime) -> RunStore:
    return RunStore(Path(runtime.settings.data_dir) / "runs.sqlite")


def _unfinished(runtime: Runtime) -> list[tuple[str, int]]:
    return [(f"run {i} · {label} · {answered} answered", i) for i, label, answered in _runs(runtime).unfinished()]


CHART_POINTS = 40  # dots along each 95 % interval; drawn touching, they read as one bar
INTERVAL, MEAN, CI = "95 % interval", "mean", "mean [95 % CI]"


def chart_frame(result: ComparisonResult, metric: str) -> pd.DataFrame:
    """A point-range per variant: the mean as a dark dot on a light bar spanning its 95 % interval.

    Gradio's native plots have no error-bar mark, so the interval is drawn as a column of dots; every
    point's tooltip carries the variant's mean, interval and question count."""
    rows, means = [], []
    for name, summaries in result.variants.items():
        s = summaries.get(metric)
        if s is None or s.mean is None:
            continue
        hover = {CI: ci_cell(s), "questions": s.n}
        rows += [{"variant": name, "score": s.ci_low + (s.ci_high - s.ci_low) * k / CHART_POINTS, "shown": INTERVAL,
                  **hover} for k in range(CHART_POINTS + 1)]
        means.append({"variant": name, "score": s.mean, "shown": MEAN, **hover})
    return pd.DataFrame(rows + means, columns=["variant", "score", "shown", CI, "questions"])  # means on top


def chart_metrics(result: ComparisonResult) -> list[tuple[str, str]]:
    """(label, metric) for every metric this run has values for, in the results table's order."""
    return [(METRIC_LABELS[m], m) for m in measured(result.variants)]


def _chart(result: ComparisonResult, metric: str) -> gr.ScatterPlot:
    frame = chart_frame(result, metric)
    return gr.ScatterPlot(value=frame, y_title=METRIC_LABELS.get(metric, metric), visible=True,
                          y_lim=[0, 1] if metric in UNIT_METRICS else None, sort=list(result.variants))


@dataclass
class CompareView:
    """Handles other tabs use to open a stored run here (the Decide tab's report links into it)."""

    run_id: gr.Number
    outputs: list
    open: Callable[[int], tuple]


def _run_inputs(runtime: Runtime) -> tuple[list, gr.Dropdown, gr.Button]:
    """The comparison's inputs in start()'s argument order, the adapter dropdown and its refresh button."""
    with gr.Row():
        eval_file = gr.File(label="Evaluation set (JSONL/CSV: question, answer[, source])",
                            file_types=[".jsonl", ".csv"], elem_id="compare-eval-file")
        with gr.Column():
            from_docs = gr.Checkbox(label="Draw from the ingested documents (held-out sections)", value=False)
            limit = gr.Number(label="Max questions (0 = all)", value=0, precision=0)
    with gr.Row():
        variants = gr.CheckboxGroup(list(VARIANTS), value=["base", "prompt", "rag"], label="Variants",
                                    elem_id="compare-variants")
        adapter = gr.Dropdown(adapter_choices(runtime), label="Adapter", allow_custom_value=False)
        refresh = gr.Button("↻ adapters", size="sm")
        metric = gr.Dropdown([(METRIC_LABELS[m], m) for m in PRIMARY_METRICS], value="f1", label="Primary metric")
        max_new = gr.Slider(16, 512, value=128, step=16, label="Max new tokens")
    with gr.Accordion("Serving engine and LLM judge", open=False):
        with gr.Row():
            engine_url = gr.Textbox(runtime.settings.engine_url, label="OpenAI-compatible server URL (empty: "
                                    "in-process engine)", placeholder="http://127.0.0.1:8000/v1",
                                    elem_id="compare-engine-url")
            engine_key = gr.Textbox(runtime.settings.engine_key, label="API key environment variable (its name)")
            engine_n = gr.Number(runtime.settings.engine_concurrency, label="Requests in flight", precision=0)
            judge = gr.Textbox("", label="LLM judge: local or openai:URL:MODEL (empty: none)",
                               elem_id="compare-judge")
    inputs = [eval_file, from_docs, limit, variants, adapter, metric, max_new, engine_url, engine_key, engine_n, judge]
    return inputs, adapter, refresh


def _past_runs(runtime: Runtime) -> tuple:
    """The stored runs table, open-by-id, reload, and the interrupted runs with their Resume button."""
    with gr.Accordion("Past runs", open=False):
        past = gr.Dataframe(value=lambda: _past(runtime), interactive=False, elem_id="compare-past")
        with gr.Row():
            run_id = gr.Number(label="Run id to open", precision=0)
            open_run = gr.Button("Open run")
            reload_runs = gr.Button("↻ runs")
        with gr.Row():
            unfinished = gr.Dropdown(_unfinished(runtime), label="Interrupted runs (answers so far are kept)",
                                     allow_custom_value=False, elem_id="compare-unfinished")
            resume = gr.Button("Resume", elem_id="compare-resume")
    return past, run_id, open_run, reload_runs, unfinished, resume


def build_compare_tab(runtime: Runtime) -> CompareView:
    """Inputs, a run button with progress, results, chart, recommendation, per-question view, past runs."""
    state = gr.State({})
    inputs, adapter, refresh = _run_inputs(runtime)
    run = gr.Button("Run comparison", variant="primary", elem_id="compare-run")
    recommendation = gr.Markdown(elem_id="compare-recommendation")
    # Hidden until a run fills them: an empty table would show placeholder headers "1 2 3".
    table = gr.Dataframe(label="Results: mean [95 % bootstrap CI]", interactive=False, elem_id="compare-table",
                         visible=False)
    chart_metric = gr.Dropdown([(METRIC_LABELS[m], m) for m in TABLE_METRICS], value="f1", label="Chart",
                               visible=False, elem_id="compare-chart-metric")
    chart = gr.ScatterPlot(x="variant", y="score", color="shown", color_map={INTERVAL: "#93c5fd", MEAN: "#1d4ed8"},
                           tooltip=[CI, "questions"], label="Mean and 95 % bootstrap interval per variant",
                           x_title="variant", color_title="", visible=False, elem_id="compare-chart")
    warnings = gr.Markdown()
    with gr.Accordion("Per question", open=False):
        only_disagree = gr.Checkbox(label="Only questions where the variants disagree", value=False)
        pick = gr.Dropdown([], label="Question", elem_id="compare-question")
        detail = gr.HTML()
    export = gr.File(label="Export (Markdown, HTML, PNG, JSON)", file_count="multiple", interactive=False)
    past, run_id, open_run, reload_runs, unfinished, resume = _past_runs(runtime)

    # Gradio finds the progress tracker by this default value, so the call in the signature is intended.
    @errors.shown
    def start(file, draw, lim, chosen, adapter_name, metric_name, tokens, url, key, n, judge_spec,
              progress=gr.Progress()):  # noqa: B008
        result = _run(served(runtime, url, key, n), file, draw, int(lim or 0), chosen, adapter_name, metric_name,
                      int(tokens), lambda f, text: progress(f, desc=text), judge_spec)
        return _show(runtime, result, only=False) + (_past(runtime),)

    @errors.shown
    def resume_run(chosen, progress=gr.Progress()):  # noqa: B008
        if chosen is None:
            raise gr.Error("pick an interrupted run to resume")
        result = resume_comparison(runtime, int(chosen), lambda f, text: progress(f, desc=text))
        return _show(runtime, result, only=False) + (_past(runtime), gr.update(choices=_unfinished(runtime),
                                                                               value=None))

    shown = [state, recommendation, table, chart, warnings, pick, detail, export]
    run.click(start, inputs, shown + [past], api_name="compare", **errors.quiet(recommendation))
    resume.click(resume_run, unfinished, shown + [past, unfinished], **errors.quiet(recommendation))
    unfinished.focus(lambda: gr.update(choices=_unfinished(runtime)), None, unfinished)
    refresh.click(lambda: gr.update(choices=adapter_choices(runtime)), None, adapter)
    only_disagree.change(lambda r, only: gr.update(choices=views.question_choices(r, only), value=None)
                         if r else gr.update(), [state, only_disagree], pick)
    pick.change(lambda r, i: views.question_html(r, -1 if i is None else int(i)) if r else "", [state, pick],
                detail)
    reload_runs.click(lambda: _past(runtime), None, past)
    # Whatever shows a result (run, resume, open) redraws the chart for its primary metric; the dropdown follows.
    state.change(lambda r: gr.update(choices=chart_metrics(r), value=r.metric, visible=True) if r
                 else gr.update(), state, chart_metric)
    chart_metric.input(lambda r, m: _chart(r, m) if r else gr.update(), [state, chart_metric], chart)
    open_run.click(lambda i: _open(runtime, i), run_id, shown, **errors.quiet())
    return CompareView(run_id=run_id, outputs=shown, open=lambda i: _open(runtime, i))


_SERVED: dict = {}  # Settings -> Runtime on that server, reused across runs


def served(runtime, url: str, key: str, n):
    """The runtime itself, or one sharing its embedder, store and registry whose engine is the server at `url`."""
    url, key = (url or "").strip(), (key or "").strip()
    s = runtime.settings
    if not url or (s.engine, s.engine_url, s.engine_key, s.engine_concurrency) == ("openai", url, key, n):
        return runtime
    settings = replace(s, engine="openai", engine_url=url, engine_key=key, engine_concurrency=int(n or 4))
    if settings not in _SERVED:
        _SERVED[settings] = Runtime(settings, embedder=runtime.embedder, store=runtime.store,
                                    registry=runtime.registry)
    return _SERVED[settings]


def _run(runtime, file, draw, lim, chosen, adapter_name, metric_name, tokens, progress,
         judge="") -> ComparisonResult:
    if not (draw or file):
        raise ArenaError("choose an evaluation file or tick 'draw from the ingested documents'")
    path = None if draw else (file if isinstance(file, str) else file.name)
    items, name = eval_items(runtime, path, adapter_name, limit=lim)
    compare_cfg = CompareConfig(variants=tuple(chosen or ()), metric=metric_name, adapter=adapter_name or None,
                                max_new_tokens=tokens, eval_name=name, judge=(judge or "").strip())
    return run_comparison(runtime, items, compare_cfg, progress=progress)


def _show(runtime, result: ComparisonResult, only: bool) -> tuple:
    header, rows = views.results_table(result)
    rec = result.recommendation
    text = f"### Recommendation: {headline(rec)}\n{rec.reason}\n" + "".join(
        f"\n- **{v}**: {why}" for v, why in result.why.items())
    warn = "\n".join(f"- ⚠️ {w}" for w in result.warnings)
    choices = views.question_choices(result, only)
    first = choices[0][1] if choices else None
    return (result, text, gr.update(value=pd.DataFrame(rows, columns=header), visible=True),
            _chart(result, result.metric), warn,
            gr.update(choices=choices, value=first), views.question_html(result, -1 if first is None else first),
            _export(runtime, result))


def _export(runtime, result: ComparisonResult) -> list[str]:
    """Report files under uploads/ (the only folder the server may serve files from)."""
    folder = runtime.settings.uploads_dir / "compare"
    stem = confine(folder, f"run-{result.run_id or int(time.time())}", "export name")
    paths = write_report(result, stem.with_suffix(".md"))
    stem.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=1, default=str), encoding="utf-8")
    return [str(paths["markdown"]), str(paths["html"]), str(paths["png"]), str(stem.with_suffix(".json"))]


def _past(runtime):
    header, rows = views.runs_table(_runs(runtime).list())
    return pd.DataFrame(rows, columns=header)


@errors.shown
def _open(runtime, run_id) -> tuple:
    return _show(runtime, _runs(runtime).get(int(run_id or 0)).result, only=False)
