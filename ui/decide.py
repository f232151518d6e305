"""Decide tab (the first tab): documents (+ optional Q/A) in, the plan before starting, `arena decide` as a
subprocess with a progress bar, ETA and Cancel, then the report with a way into the Compare tab's run view."""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.decide.config import (
    ALL_VARIANTS,
    AUTO_SEEDS,
    DEFAULT_BUDGET_MINUTES,
    MAX_BUDGET_MINUTES,
    MAX_NEW_TOKENS_ASKED,
    DecideConfig,
)
from assistant.decide.jobs import DecideJob
from assistant.decide.questions import preview_questions
from assistant.decide.runner import plan_for
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.paths import confine, copy_upload
from training.config import MAX_STEPS
from ui.errors import quiet, shown

INTRO = ("Upload your documents (and, if you have them, question/answer pairs). The run ingests them, holds out "
         "evaluation questions, trains the adapter, compares all five strategies with paired statistics and writes "
         "a report. Finished stages are cached: a re-run after a crash or a cancel continues where it stopped.")


@dataclass
class DecideView:
    """What app.py needs to link the finished report into the Compare tab."""

    run_id: gr.State
    open_compare: gr.Button


def _config(runtime: Runtime, docs, qa, evals, generator, seeds, budget, max_steps, max_new, paraphrases, variants,
            forgetting, tune, on_docs, name) -> DecideConfig:
    """The decide config for the tab's inputs; uploads are copied under uploads/decide/<name>/ first."""
    if not docs:
        raise ArenaError("upload one or more documents first")
    name = (name or "decide").strip()
    # uploads/decide/<name>/: the uploaded inputs, kept so a re-run (or resume) reads the same files
    folder = confine(runtime.settings.uploads_dir / "decide", name, "decide name")
    shutil.rmtree(folder / "docs", ignore_errors=True)  # this run's documents only
    (folder / "docs").mkdir(parents=True)
    for f in docs:
        copy_upload(folder / "docs", f)
    extra = {key: copy_upload(folder / key, upload) for key, upload in (("qa", qa), ("eval", evals)) if upload}
    cfg = DecideConfig(docs=[str(folder / "docs")], name=name, **extra, seeds=int(seeds or 0),
                       generator=(generator or "").strip(),
                       budget_minutes=DEFAULT_BUDGET_MINUTES if budget is None else float(budget),
                       max_steps=int(max_steps or -1),
                       max_new_tokens=int(max_new or 0), variants=list(variants or ()), forgetting=bool(forgetting),
                       tune_retrieval=bool(tune), train_on_documents=bool(on_docs),
                       augment=f"paraphrases:{int(paraphrases)}" if paraphrases and int(paraphrases) > 0 else "")
    cfg.validate()
    return cfg.resolved()


def _plan_frame(plan) -> pd.DataFrame:
    return pd.DataFrame([{"stage": s.stage, "what": s.what, "count": s.count,
                          "minutes": "cached" if s.cached else s.minutes} for s in plan.stages])


def _bar(p: dict) -> str:
    """The progress line the tab shows: a <progress> bar, stage, message, percentage and ETA."""
    state = p.get("state", "idle")
    if state == "idle":
        return "Not started."
    pct = int(round(100 * float(p.get("fraction") or 0)))
    eta = p.get("eta_s")
    eta_text = f" · ETA {eta / 60:.1f} min" if eta is not None and state == "running" else ""
    text = f"{state} · {p.get('stage', '')} · {p.get('message', '')} · {pct} %{eta_text}"
    if state in ("failed", "cancelled") and p.get("error"):
        text += f"\n{p['error']}"
    return (f"<progress value='{pct}' max='100' style='width:100%'></progress>"
            f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>")


def _report(runtime: Runtime, p: dict) -> tuple[str, list[str]]:
    """The report Markdown and its files copied under uploads/ (the only folder the server may serve)."""
    paths = p.get("report") or {}
    md = Path(paths["markdown"]) if paths.get("markdown") else None
    if md is None or not md.is_file():
        return "", []
    out = runtime.settings.uploads_dir / "decide" / "reports" / md.parent.parent.parent.name
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name in ("report.md", "report.html", "report.json", "comparison.html", "comparison.png"):
        if (md.parent / name).is_file():
            shutil.copy2(md.parent / name, out / name)
            files.append(str(out / name))
    # The per-question answers are in the Compare tab (button below) and in comparison.html among the files.
    text = "\n".join(line for line in md.read_text(encoding="utf-8").splitlines()
                     if not line.startswith("Full comparison report:"))
    return text, files


def _input_controls() -> list:
    """The run's inputs, in _config's argument order."""
    with gr.Row():
        docs = gr.File(label="Documents", file_count="multiple", elem_id="decide-docs")
        qa = gr.File(label="Q/A pairs (optional: JSONL/CSV question, answer[, source])",
                     file_types=[".jsonl", ".csv", ".json"], elem_id="decide-qa")
        evals = gr.File(label="Evaluation set (optional)", file_types=[".jsonl", ".csv"], elem_id="decide-eval")
    generator = gr.Textbox(label="Question generator (without Q/A pairs): empty = heading/definition heuristic; "
                                 "'base' = the loaded model; a local model id or folder; or openai:URL:MODEL",
                           value="", elem_id="decide-generator")
    with gr.Row():
        seeds = gr.Number(label=f"Training seeds (0 = as many as the budget allows, up to {AUTO_SEEDS})", value=0,
                          precision=0, minimum=0, elem_id="decide-seeds")
        budget = gr.Number(label="Time budget of a fresh run, minutes (0 = fit the plan to the data: hours)",
                           value=DEFAULT_BUDGET_MINUTES, minimum=0, maximum=MAX_BUDGET_MINUTES,
                           elem_id="decide-budget")
    with gr.Accordion("Run settings", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name", value="decide", elem_id="decide-name")
            max_steps = gr.Number(label="Max steps per seed (-1 = fitted to the data)", value=-1, precision=0,
                                  minimum=-1, maximum=MAX_STEPS, elem_id="decide-max-steps")
            max_new = gr.Number(label="Max new tokens (0 = from the reference answers)", value=0, precision=0,
                                minimum=0, maximum=MAX_NEW_TOKENS_ASKED, elem_id="decide-max-new")
        paraphrases = gr.Number(label="Paraphrases per training question (0 = none)", value=5, precision=0,
                                minimum=0, maximum=20, elem_id="decide-paraphrases")
        variants = gr.CheckboxGroup(list(ALL_VARIANTS), value=list(ALL_VARIANTS), label="Variants")
        forgetting = gr.Checkbox(label="Forgetting check of the adapter", value=True)
        tune = gr.Checkbox(label="Choose splitter, k and search mode by retrieval hit rate on the training pairs",
                           value=True)
        on_docs = gr.Checkbox(label="Also fine-tune on the documents' text (what RAG searches)", value=False,
                              elem_id="decide-train-on-documents")
    return [docs, qa, evals, generator, seeds, budget, max_steps, max_new, paraphrases, variants, forgetting, tune, on_docs,
            name]


def _preview_view(got) -> tuple:
    """The preview table (question, answer, kind, the chunks it came from) and its filter counts."""
    rows = [{"question": q.question, "answer": q.answer, "kind": q.kind,
             "from": " + ".join(f"{c.source} § {c.section}" for c in q.chunks)} for q in got.questions]
    c = got.counts
    note = (f"{c.kept} of {c.asked} kept in {got.seconds:.0f} s; dropped: "
            + ", ".join(f"{n} {why}" for why, n in c.dropped().items()))
    return gr.Dataframe(value=pd.DataFrame(rows, columns=["question", "answer", "kind", "from"]),
                        visible=True), note


def build_decide_tab(runtime: Runtime) -> DecideView:
    """Inputs, plan, start/cancel, progress, report; returns the handles app.py links to the Compare tab."""
    job = DecideJob(runtime.settings)
    gr.Markdown(INTRO)
    inputs = _input_controls()
    with gr.Row():
        preview_btn = gr.Button("Preview questions", elem_id="decide-preview-btn")
        plan_btn = gr.Button("Show plan", elem_id="decide-plan-btn")
        start = gr.Button("Start", variant="primary", interactive=False, elem_id="decide-start")
        cancel = gr.Button("Cancel", variant="stop", elem_id="decide-cancel")
    plan_table = gr.Dataframe(headers=["stage", "what", "count", "minutes"], label="Plan", interactive=False,
                              elem_id="decide-plan")  # named headers before the plan is shown, not "1 2 3"
    plan_notes = gr.Markdown(elem_id="decide-plan-notes")
    preview = gr.Dataframe(headers=["question", "answer", "kind", "from"], label="Ten generated questions",
                           interactive=False, visible=False, elem_id="decide-preview")
    preview_notes = gr.Markdown(elem_id="decide-preview-notes")
    progress = gr.HTML("Not started.", elem_id="decide-progress")
    report = gr.Markdown(elem_id="decide-report")
    files = gr.File(label="Report files", file_count="multiple", interactive=False, elem_id="decide-files")
    run_id = gr.State(None)
    open_compare = gr.Button("Open this run in the Compare tab", visible=False, elem_id="decide-open-compare")
    timer = gr.Timer(1.0, active=False)

    @shown
    def show_plan(*values):
        plan = plan_for(_config(runtime, *values), runtime.settings)
        notes = [f"**Total ~{plan.minutes} min** on this machine."] + [f"- {n}" for n in plan.notes]
        return _plan_frame(plan), "\n".join(notes), gr.Button(interactive=True)

    @shown
    def show_preview(*values):
        return _preview_view(preview_questions(_config(runtime, *values), runtime))

    @shown
    def do_start(*values):
        job.start(_config(runtime, *values))
        return gr.Timer(active=True), _bar({"state": "starting"}), "", None, gr.Button(visible=False)

    @shown
    def do_cancel():
        job.cancel()
        return _bar({**job.progress(), "message": "cancelling…"})

    def tick():
        p = job.progress()
        finished = p.get("state") in ("done", "failed", "cancelled", "idle")
        text, report_files = _report(runtime, p) if p.get("state") == "done" else ("", [])
        return (_bar(p), text, report_files or None, p.get("run_id"), gr.Button(visible=p.get("state") == "done"),
                gr.Timer(active=not finished))

    plan_btn.click(show_plan, inputs, [plan_table, plan_notes, start], **quiet(plan_notes))
    preview_btn.click(show_preview, inputs, [preview, preview_notes], **quiet(preview_notes))
    start.click(do_start, inputs, [timer, progress, report, files, open_compare], **quiet())
    cancel.click(do_cancel, None, progress, **quiet())
    watched = [progress, report, files, run_id, open_compare, timer]
    timer.tick(tick, None, watched)
    # triggers=None, no inputs: on page load. The job belongs to the app, not the page, so a reloaded or second
    # tab shows the running (or last) run and follows it, as if the page had never been left.
    gr.on(None, tick, None, watched, show_progress="hidden")
    return DecideView(run_id=run_id, open_compare=open_compare)
