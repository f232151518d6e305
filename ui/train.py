"""Train tab: pick data, method and a few numbers, start `arena train` as a subprocess, watch it learn."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.paths import copy_upload
from training.config import (
    DEFAULT_LEARNING_RATES,
    DOC_KINDS,
    LORA_METHODS,
    MAX_STEPS,
    MAX_TRIALS,
    METHODS,
    JobConfig,
)
from training.jobs import JobManager
from training.plan import plan_job
from training.sources import preview
from ui.errors import quiet, shown

LR_STEPS = (0.25, 0.5, 1, 2, 4)  # sweep learning rates, as multiples of the method's default
RANKS = (4, 8, 16, 32, 64)
PREVIEW_HEADERS = ["source", "rows", "kinds", "first rows"]


def _specs(runtime: Runtime, files, use_docs: bool, doc_kind: str, use_votes: bool, questions=None,
           generator: str = "", copy: bool = True) -> list[dict]:
    """Data-source specs; uploads are copied into uploads/ so the job can re-read them on resume (copy=False:
    the uploads where they are, for a plan that starts nothing)."""
    uploads = runtime.settings.uploads_dir / "training"
    place = copy_upload if copy else lambda _, f: str(Path(getattr(f, "name", f)).resolve())
    specs = [{"path": place(uploads, f)} for f in files or []]
    if use_docs:
        gen = (generator or "").strip() if doc_kind != "cpt" else ""
        specs.append({"source": "documents", "kind": doc_kind, **({"generator": gen} if gen else {})})
    if use_votes:
        specs.append({"source": "votes"})
    if questions:
        specs.append({"source": "distill", "questions": place(uploads / "questions", questions)})
    return specs


def _preview_frame(runtime: Runtime, specs: list[dict]) -> pd.DataFrame:
    """Count, kinds and first rows per source (distillation: its questions, see training.sources.preview)."""
    rows = preview(specs, runtime.settings, runtime.data_tools())
    return pd.DataFrame([[r["source"], r["rows"], ", ".join(r["kinds"]), "\n".join(r["first"])] for r in rows],
                        columns=PREVIEW_HEADERS)


def _grid(lr, rank, lrs, ranks) -> tuple[float, int, dict]:
    """The job's learning rate, rank and sweep: checked values replace the field's; two or more
    combinations make the job a sweep."""
    lrs = sorted({float(v) for v in lrs or []}) or [float(lr)]
    ranks = sorted({int(v) for v in ranks or []}) or [int(rank)]
    sweep = {"learning_rate": lrs, "lora_r": ranks} if len(lrs) * len(ranks) > 1 else {}
    return lrs[0], ranks[0], sweep


def method_learning_rate(method: str) -> float:
    """The learning-rate field follows the method to its default, the one `arena train` uses without a flag."""
    return DEFAULT_LEARNING_RATES[method]


def _lr_choices(method: str) -> list[tuple[str, float]]:
    """Learning rates around the method's default (they differ by orders of magnitude between methods)."""
    values = [float(f"{DEFAULT_LEARNING_RATES[method] * k:.2g}") for k in LR_STEPS]
    return [(f"{v:g}", v) for v in values]


def _sweep_choices(method: str):
    """Method changed: learning rates around its default; ranks only for LoRA methods."""
    return (gr.CheckboxGroup(choices=_lr_choices(method), value=[]),
            gr.CheckboxGroup(value=[], interactive=method in LORA_METHODS))


def _plot_frame(records: list[dict]) -> pd.DataFrame:
    rows = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in records if "loss" in r]
    rows += [{"step": r["step"], "loss": r["val_loss"], "series": "validation"} for r in records if "val_loss" in r]
    return pd.DataFrame(rows or [{"step": 0, "loss": None, "series": "train"}])


def _rl_frame(records: list[dict]) -> pd.DataFrame:
    """Per RL step (training/rl.py): mean reward, KL to the base and mean completion length in tokens."""
    series = (("reward", "reward"), ("kl", "KL to base"), ("completion_length", "length (tokens)"))
    rows = [{"step": r["step"], "value": r[key], "series": name} for r in records for key, name in series if key in r]
    return pd.DataFrame(rows or [{"step": 0, "value": None, "series": "reward"}])


def _reward_models(runtime: Runtime) -> list[str]:
    return [i.name for i in runtime.registry.list() if i.kind == "reward"]  # (a damaged entry is left out)


def _methods_section(runtime: Runtime, method: gr.Dropdown):
    """Settings only some methods read: the unfreezing schedule (freeze) and the RL stage (rloo)."""
    with gr.Accordion("Gradual unfreezing (freeze) · RLHF (reward, then rloo)", open=False, elem_id="train-methods"):
        gr.Markdown("**freeze** with a schedule: top N layers from a step, e.g. `2:0,4:50,all:100`. **reward** "
                    "trains a reward model on preference pairs (files or chat votes); **rloo** then trains an "
                    "adapter to maximise it, with a KL penalty to the base.")
        with gr.Row():
            schedule = gr.Textbox(value="", label="Unfreeze schedule (freeze)", placeholder="2:0,4:50,all:100",
                                  elem_id="train-unfreeze")
            reward = gr.Dropdown(_reward_models(runtime), value=None, label="Reward model (rloo)",
                                 elem_id="train-reward-model")
            beta = gr.Number(value=0.05, label="KL penalty to the base (rloo)", minimum=0, maximum=10)
            generations = gr.Number(value=4, label="Completions per prompt (rloo)", precision=0, minimum=2,
                                    maximum=16)
    method.change(lambda m: gr.Dropdown(choices=_reward_models(runtime)), method, reward)  # a new reward model
    return [schedule, reward, beta, generations]


def _method_settings(cfg: JobConfig, schedule, reward, beta, generations) -> JobConfig:
    return replace(cfg, unfreeze_schedule=(schedule or "").strip(), reward_model=reward or "",
                   rl_beta=0.05 if beta is None else float(beta), num_generations=int(generations or 4))


def _progress_md(p: dict) -> str:
    if p["state"] == "idle":
        return "No job yet."
    sweep = p.get("status", {}).get("sweep", {})
    trial = f"trial {sweep['trial'] + 1}/{sweep['trials']} · " if "trial" in sweep and p["state"] == "running" else ""
    pct = int(100 * p.get("fraction", 0))
    eta = p.get("eta_s")
    eta_text = f" · ETA {int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None and p["state"] == "running" else ""
    bar = f"<progress value='{pct}' max='100' style='width:100%'></progress>"
    return f"**{p['state']}** · {trial}step {p.get('step', 0)}/{p.get('max_steps') or '?'} ({pct} %){eta_text}\n\n{bar}"


def _summary_md(p: dict) -> str:
    status = p.get("status", {})
    table = _sweep_md(status.get("sweep", {}).get("rows") or [])
    if p["state"] == "done" and status.get("metrics"):
        m = status["metrics"]
        return (f"### Adapter **{status.get('adapter')}** is ready\n"
                f"time {m.get('train_seconds')} s · {m.get('tokens_per_s')} tokens/s · train loss "
                f"{_format_metric(m.get('train_loss'))} · val loss {_format_metric(m.get('val_loss'))} · "
                f"steps {m.get('steps')}"
                + (f" · held-out pairwise accuracy {_format_metric(m['pairwise_accuracy'])}"
                   if m.get("pairwise_accuracy") is not None else "")) + table
    if p["state"] == "failed":
        return f"**Failed:** {status.get('error') or 'the process stopped'} — see the log; *Resume* continues " \
               "from the last checkpoint."
    if p["state"] == "cancelled":
        sweep = status.get("sweep", {})
        trial = f" of trial {sweep['trial'] + 1}/{sweep['trials']}" if "trial" in sweep else ""
        return f"Cancelled at step {status.get('step')}{trial}; checkpoint saved. Press *Resume* to continue." + table
    return ""


def _sweep_md(rows: list[dict]) -> str:
    """The sweep's trials so far as a Markdown table; the registered (best) one is starred."""
    if not rows:
        return ""
    lines = ["| learning rate | rank | val loss | best |", "|---|---|---|---|"]
    lines += [f"| {r['learning_rate']:g} | {r['lora_r']} | {_format_metric(r['val_loss'])} | "
              f"{'★' if r['best'] else ''} |" for r in rows]
    return "\n\n**Sweep** (the best by validation loss is the adapter)\n\n" + "\n".join(lines)


def _format_metric(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _data_section():
    with gr.Row():
        files = gr.File(label="Training files (JSONL / JSON / CSV)", file_count="multiple",
                        file_types=[".jsonl", ".json", ".csv"], elem_id="train-files")
        with gr.Column():
            use_docs = gr.Checkbox(label="Build from ingested documents", value=False)
            doc_kind = gr.Dropdown(list(DOC_KINDS), value="qa", label="Document data",
                                   info="cpt = continued pre-training, qa = drawn Q&A, grounded = Q&A with context")
            generator = gr.Textbox(label="Question generator (qa / grounded): empty = heading/definition "
                                   "heuristic; base, a local model id or folder, or openai:URL:MODEL",
                                   value="", elem_id="train-generator")
            use_votes = gr.Checkbox(label="Preference pairs from chat votes (method dpo)", value=False)
            preview_btn = gr.Button("Preview data", size="sm")
        # distillation: the RAG variant answers these questions when the job runs; the adapter learns its answers
        questions = gr.File(label='Distillation questions (JSONL, {"question": ...} per line)',
                            file_types=[".jsonl"], elem_id="train-questions")
    # Hidden until "Preview data" fills it: an empty table would show placeholder headers "1 2 3".
    data_table = gr.Dataframe(headers=PREVIEW_HEADERS, label="Sources", interactive=False, wrap=True,
                              column_widths=["22%", "8%", "12%", "58%"], visible=False, elem_id="train-preview")
    return [files, use_docs, doc_kind, use_votes, questions, generator], preview_btn, data_table


def _hyper_section():
    """Numeric inputs with bounds (not free text), in the order do_start takes them."""
    with gr.Row():
        name = gr.Textbox(value="my-adapter", label="Adapter name", elem_id="train-name")
        method = gr.Dropdown(list(METHODS), value="lora", label="Method", elem_id="train-method")
        lr = gr.Number(value=DEFAULT_LEARNING_RATES["lora"], label="Learning rate", minimum=1e-7, maximum=1.0)
        rank = gr.Number(value=16, label="LoRA rank", precision=0, minimum=1, maximum=256)
    with gr.Row():
        epochs = gr.Number(value=0, label="Epochs (0 = fitted to the data)", minimum=0, maximum=100)
        max_steps = gr.Number(value=-1, label="Max steps (-1 = use epochs)", precision=0, minimum=-1,
                              maximum=MAX_STEPS)
        batch = gr.Number(value=8, label="Batch size", precision=0, minimum=1, maximum=256)
        eval_steps = gr.Number(value=20, label="Validate every N steps", precision=0, minimum=1)
        patience = gr.Number(value=3, label="Early-stopping patience (0 = off)", precision=0, minimum=0)
    with gr.Row():
        dora = gr.Checkbox(label="DoRA", value=False)
        rslora = gr.Checkbox(label="rsLoRA", value=False)
        seed = gr.Number(value=0, label="Seed", precision=0)
    method.change(method_learning_rate, method, lr)
    return [name, method, lr, rank, epochs, max_steps, batch, eval_steps, patience, dora, rslora, seed]


def _sweep_section(method: gr.Dropdown):
    """Learning rates x ranks to try, as fixed numeric choices; in the order do_start takes them."""
    with gr.Accordion("Sweep: learning rate × LoRA rank", open=False, elem_id="train-sweep"):
        gr.Markdown(f"Check two or more combinations (at most {MAX_TRIALS}) to train each one and keep the one "
                    "with the lowest validation loss. Unchecked: the values above.")
        with gr.Row():
            lrs = gr.CheckboxGroup(_lr_choices("lora"), label="Learning rates", elem_id="train-sweep-lr")
            ranks = gr.CheckboxGroup(list(RANKS), label="LoRA ranks", elem_id="train-sweep-rank")
    method.change(_sweep_choices, method, [lrs, ranks])
    return [lrs, ranks]


def _job_config(runtime: Runtime, files, use_docs, doc_kind, use_votes, questions, generator, name, method, lr, rank,
                epochs, max_steps, batch, eval_steps, patience, dora, rslora, seed, lrs=(), ranks=(),
                paraphrases=0) -> JobConfig:
    """The job the Start button runs; its job id (timestamp + confined name) is set when it starts
    (training.runner.job_dir)."""
    lr, rank, sweep = _grid(lr, rank, lrs, ranks)
    return JobConfig(name=name or "", method=method, learning_rate=lr, lora_r=rank, epochs=float(epochs),
                     max_steps=int(max_steps), batch_size=int(batch), eval_steps=int(eval_steps),
                     early_stopping_patience=int(patience), use_dora=dora, use_rslora=rslora, seed=int(seed),
                     sweep=sweep, augment=f"paraphrases:{int(paraphrases)}" if paraphrases else "",
                     data=_specs(runtime, files, use_docs, doc_kind, use_votes, questions, generator))


def _plan_config(runtime: Runtime, *values) -> JobConfig:
    """The job the Start button would run, without copying uploads or naming a job folder."""
    specs = _specs(runtime, *values[:6], copy=False)
    method, epochs, max_steps, batch, eval_steps, patience = values[7], *values[10:15]
    return JobConfig(name="plan", method=method, epochs=float(epochs or 0), max_steps=int(max_steps or -1),
                     batch_size=max(1, int(batch or 1)), eval_steps=max(1, int(eval_steps or 1)),
                     early_stopping_patience=int(patience or 0), data=specs,
                     augment=f"paraphrases:{int(values[-1])}" if values[-1] else "")


def plan_line(runtime: Runtime, *values) -> str:
    """The plan line (Markdown): steps and minutes on this machine, before anything starts."""
    cfg = _plan_config(runtime, *values)
    if not cfg.data:
        return "Add training data to see the plan."
    try:
        text = plan_job(cfg, runtime.settings, runtime.data_tools()).text()
    except (ArenaError, OSError, ValueError) as exc:
        return f"Plan unavailable: {exc}"
    # "~60 steps (~30.0 epochs" would be read as Markdown strikethrough between the two tildes
    return "**Plan:** " + text.replace("~", "\\~")


def _paraphrases_box() -> gr.Number:
    return gr.Number(value=0, label="Paraphrases per training question (0 = none)", precision=0,
                     minimum=0, maximum=20, elem_id="train-augment",
                     info="the base model rewrites each question K times; rewrites too close to a copy "
                          "or off-topic are dropped; cached, so a re-run does not regenerate them")


def _job_buttons() -> tuple[gr.Button, gr.Button, gr.Button]:
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        cancel = gr.Button("Cancel", elem_id="train-cancel")
        resume = gr.Button("Resume", elem_id="train-resume")
    return start, cancel, resume


def _progress_section() -> tuple:
    """Progress line, loss and RL plots, summary, the chat button and the log of the running job."""
    progress = gr.Markdown("No job yet.", elem_id="train-progress")
    # A fixed color map: otherwise the legend and colors keep the series of the first frame (train only),
    # and the validation curve that appears later is drawn unlabeled in the same color.
    plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss", elem_id="train-plot",
                       color_map={"train": "#2563eb", "validation": "#ea580c"})
    rl_plot = gr.LinePlot(x="step", y="value", color="series", label="RL (rloo): reward, KL to base, length",
                          elem_id="train-rl-plot",
                          color_map={"reward": "#16a34a", "KL to base": "#dc2626", "length (tokens)": "#6b7280"})
    summary = gr.Markdown(elem_id="train-summary")
    chat_btn = gr.Button("Chat with it", visible=False)
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=10, show_label=False, interactive=False)
    return progress, plot, rl_plot, summary, chat_btn, log


def build_train_tab(runtime: Runtime, tabs: gr.Tabs | None = None) -> None:
    """Data sources + preview, method and hyper-parameters, start/cancel/resume, live progress and loss plot."""
    jobs = JobManager(runtime.settings)
    data_inputs, preview_btn, data_table = _data_section()
    hyper_inputs = _hyper_section()
    sweep_inputs = _sweep_section(method=hyper_inputs[1])
    method_inputs = _methods_section(runtime, hyper_inputs[1])
    paraphrases = _paraphrases_box()
    plan = gr.Markdown(elem_id="train-plan")
    start, cancel, resume = _job_buttons()
    progress, plot, rl_plot, summary, chat_btn, log = _progress_section()
    timer = gr.Timer(1.0, active=False)

    def do_preview(*values):
        specs = _specs(runtime, *values)
        if not specs:
            raise gr.Error("Add a training file or questions, or pick documents / votes first.")
        return gr.Dataframe(value=_preview_frame(runtime, specs), visible=True)

    def do_plan(*values):
        return plan_line(runtime, *values)

    def do_start(*values):
        n = len(method_inputs)
        jobs.start(_method_settings(_job_config(runtime, *values[:-n]), *values[-n:]))
        return gr.Timer(active=True), "Starting…", gr.Button(visible=False)

    def do_cancel():
        jobs.cancel()
        return "Cancelling: saving a checkpoint at the next step…"

    def do_resume():
        jobs.resume()
        return gr.Timer(active=True), "Resuming…"

    def tick():
        p = jobs.progress()
        finished = p["state"] == "idle" or p["state"] in {"done", "failed", "cancelled"} and not jobs.running()
        return (_progress_md(p), _plot_frame(p["records"]), _rl_frame(p["records"]), _summary_md(p),
                p.get("log", ""), gr.Button(visible=p["state"] == "done"), gr.Timer(active=not finished))

    preview_btn.click(shown(do_preview), data_inputs, data_table, **quiet(plan))  # the table is hidden until then
    plan_inputs = data_inputs + hyper_inputs + sweep_inputs + [paraphrases]
    preview_btn.click(do_plan, plan_inputs, plan)
    for box in [*hyper_inputs[4:9], paraphrases]:  # epochs, max steps, batch, eval steps, patience; K
        box.change(do_plan, plan_inputs, plan)
    start.click(shown(do_start), plan_inputs + method_inputs, [timer, progress, chat_btn],
                api_name="train_start", **quiet())
    cancel.click(shown(do_cancel), None, progress, **quiet())
    resume.click(shown(do_resume), None, [timer, progress], **quiet())
    watched = [progress, plot, rl_plot, summary, log, chat_btn, timer]
    timer.tick(tick, None, watched, api_name="train_status")
    # triggers=None, no inputs: on page load. The job belongs to the app, not the page, so a reloaded or second
    # tab shows the running (or last) job and follows it, as if the page had never been left.
    gr.on(None, tick, None, watched, show_progress="hidden")
    if tabs is not None:
        chat_btn.click(lambda: gr.Tabs(selected="chat"), None, tabs)
