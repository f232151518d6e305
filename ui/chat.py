"""Chat tab: one question, one column per variant (own history, stats, sources), votes and blind mode."""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from foundation.errors import ArenaError
from foundation.generation import LOOP_STOP, GenSettings
from foundation.records import jsonl_rows
from foundation.variants import (
    ADAPTER_VARIANTS,
    DEFAULT_SYSTEM_PROMPT,
    MAX_RAG_K,
    VARIANTS,
    VariantConfig,
    format_passage,
)
from ui.adapters import adapter_choices
from ui.errors import quiet, shown

TITLES = {"base": "Base", "prompt": "Prompt-engineered", "rag": "RAG", "finetuned": "Fine-tuned",
          "rag+finetuned": "RAG + fine-tuned", "routed": "Routed (per-question router)"}
BLIND_TITLES = [f"Answer {c}" for c in "ABCDEF"]
COLUMN_MIN_WIDTH = 380


def new_session() -> dict:
    """Per-browser-tab chat state: histories per variant and the last turn (for votes)."""
    return {"histories": {v: [] for v in VARIANTS}, "order": list(VARIANTS), "blind": False,
            "question": "", "answers": {}, "context": "", "voted": False}


@dataclass
class ColumnView:
    """What one column shows."""

    title: str
    messages: list[dict]
    stats: str
    sources: str
    visible: bool


def stats_line(answer, extra: str = "") -> str:
    """This column's own figures: its first-token time, decode speed, answer and prompt length."""
    if answer.error:
        return f"⚠️ {answer.error}"
    parts = [f"first token {seconds_text(answer.ttft_s)} · {answer.tokens_per_s:.1f} tok/s · "
             f"{answer.tokens} tokens · prompt {answer.prompt_tokens} tokens"]
    parts += [f"ℹ️ {answer.notice}"] if answer.notice else []
    parts += [extra] if extra else []
    return "  \n".join(parts)


def seconds_text(seconds: float) -> str:
    """Milliseconds below a second (a small model's first token), else seconds."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def sources_table(sources: list) -> str:
    if not sources:
        return ""
    rows = ["| # | file | section / page | score |", "|---|---|---|---|"]
    for i, hit in enumerate(sources, 1):
        where = getattr(hit, "section", "") or (f"p.{hit.page}" if getattr(hit, "page", None) else "")
        rows.append(f"| {i} | {hit.source} | {where} | {float(hit.score):.3f} |")
    return "\n".join(rows)


def views(session: dict, answers: dict, question: str, extras: dict | None = None,
          committed: bool = False) -> list[ColumnView]:
    """The five columns for the current state; answers may still be growing. `committed`: the turn is over and
    the histories already hold it, so only stats and sources come from the answers."""
    out = []
    for i, name in enumerate(session["order"]):
        title = BLIND_TITLES[i] if session["blind"] and not session["voted"] else TITLES[name]
        history = list(session["histories"][name])
        answer = answers.get(name)
        if answer is not None and not answer.error and not committed:
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
        stats = stats_line(answer, (extras or {}).get(name, "")) if answer else ""
        out.append(ColumnView(title, history, stats, sources_table(answer.sources) if answer else "", True))
    return out + [ColumnView("", [], "", "", False) for _ in range(len(VARIANTS) - len(out))]  # unused columns


def stream_turn(arena, session: dict, question: str, variants: list[str], cfg: VariantConfig,
                gen: GenSettings, blind: bool = False, rng: random.Random | None = None):
    """Run one question through the arena, yielding (session, column views) as the answers grow."""
    if not variants:
        raise ArenaError("select at least one variant")
    order = [v for v in VARIANTS if v in variants]  # display order: canonical, or shuffled when blind
    if blind:
        (rng or random.Random()).shuffle(order)
    session.update(order=order, blind=blind, voted=False, question=question, answers={}, context="")
    histories = {v: session["histories"][v] for v in variants}
    extras = separate_call_notes(arena, cfg, variants)
    answers = {}
    for answers in arena.stream(question, variants, cfg, gen, histories):
        yield session, views(session, answers, question, extras)
    _commit(session, question, answers)
    yield session, views(session, answers, question, extras, committed=True)


def _commit(session: dict, question: str, answers: dict) -> None:
    for name, answer in answers.items():
        if not answer.error:
            session["histories"][name] += [{"role": "user", "content": question},
                                           {"role": "assistant", "content": answer.text}]
    session["answers"] = {n: a.text for n, a in answers.items() if not a.error}
    rag = answers.get("rag") or answers.get("rag+finetuned")
    session["context"] = "\n\n".join(format_passage(i, h) for i, h in enumerate(rag.sources, 1)) if rag else ""


def separate_call_notes(arena, cfg: VariantConfig, variants: list[str]) -> dict[str, str]:
    """A note for adapter columns whose adapter cannot join the batched call."""
    slot = arena.engine.slots.get(cfg.adapter or "")
    if slot is None or slot.mode == "mixed":
        return {}
    why = "full model folder" if slot.peft_type is None else slot.peft_type
    note = f"generated in a separate call after the batched columns ({why} cannot share the batch)"
    return {v: note for v in variants if v in ADAPTER_VARIANTS}


def record_vote(votes, session: dict, column: int) -> str:
    """Store the vote for the variant shown in `column`; returns the message to show."""
    if not session.get("answers"):
        raise ArenaError("ask a question before voting")
    if session.get("voted"):
        raise ArenaError("this turn already has a vote; ask another question")
    if column >= len(session["order"]) or session["order"][column] not in session["answers"]:
        raise ArenaError("that column has no answer to vote for")
    winner = session["order"][column]
    votes.add(session["question"], session["answers"], winner, session["context"], session["blind"])
    session["voted"] = True
    return f"Vote stored: **{TITLES[winner]}** was best" + (" (blind)." if session["blind"] else ".")


def build_chat(runtime) -> None:
    """The Chat tab: controls, five variant columns, votes."""
    session = gr.State(new_session())
    with gr.Row():
        box = gr.Textbox(placeholder="Ask one question; every selected variant answers it…", show_label=False,
                         elem_id="chat-input", scale=6)
        send = gr.Button("Ask", variant="primary", scale=1, elem_id="chat-send")
    with gr.Row():
        picked = gr.CheckboxGroup(list(VARIANTS), value=list(VARIANTS), label="Variants", elem_id="chat-variants")
        adapter = gr.Dropdown(adapter_choices(runtime), label="Adapter (fine-tuned columns)", value=None,
                              allow_custom_value=False, elem_id="chat-adapter")
        blind = gr.Checkbox(False, label="Blind mode (shuffle, hide names until the vote)", elem_id="chat-blind")
        clear = gr.Button("New conversation", size="sm")
    settings = _settings_accordion()
    status = gr.Markdown(elem_id="chat-status")
    columns = _columns()
    outputs = [session, status] + [c for col in columns for c in col[:6]]
    inputs = [box, session, picked, adapter, blind] + settings

    @shown
    def respond(message, state, variants, adapter_name, blind_on, *values):
        cfg, gen = _configs(adapter_name, *values)
        for new_state, views_now in stream_turn(runtime.arena, state, message, list(variants or []), cfg, gen,
                                                bool(blind_on)):
            yield [new_state, ""] + _render(views_now)

    send.click(respond, inputs, outputs, api_name="ask", **quiet(status)).then(lambda: "", None, box)
    box.submit(respond, inputs, outputs, **quiet(status)).then(lambda: "", None, box)
    adapter.focus(lambda: gr.update(choices=adapter_choices(runtime)), None, adapter)
    clear.click(lambda: [new_session(), ""] + _render(views(new_session(), {}, "")), None, outputs)
    for i, col in enumerate(columns):
        col[6].click(_voter(runtime, i), [session], [session, status] + [c[1] for c in columns], **quiet())


def _voter(runtime, column: int):
    @shown
    def vote(state):
        message = record_vote(runtime.votes, state, column)
        titles = [TITLES[v] for v in state["order"]] + [""] * (len(VARIANTS) - len(state["order"]))
        return [state, message] + [gr.update(value=f"### {t}") for t in titles]
    return vote


def _settings_accordion() -> list:
    with gr.Accordion("System prompt, few-shot and generation settings", open=False):
        system = gr.Textbox(DEFAULT_SYSTEM_PROMPT, label="System prompt (prompt variant)", lines=3,
                            elem_id="chat-system")
        shots = gr.Textbox("", label='Few-shot examples, one JSON per line: {"question": ..., "answer": ...}',
                           lines=4, elem_id="chat-fewshot")
        with gr.Row():
            dynamic_k = gr.Number(0, label="Dynamic few-shot k (0 = use the whole list)", precision=0)
            rag_k = gr.Number(4, label=f"RAG passages (k, 1 to {MAX_RAG_K})", precision=0, minimum=1,
                              maximum=MAX_RAG_K, elem_id="chat-rag-k")
            rag_mode = gr.Dropdown(["hybrid", "dense", "bm25"], value="hybrid", label="Retrieval mode")
        with gr.Row():
            max_new = gr.Number(256, label="Max new tokens", precision=0, elem_id="chat-max-new")
            temperature = gr.Number(0.0, label="Temperature (0 = greedy)", elem_id="chat-temperature")
            top_p = gr.Number(1.0, label="Top-p")
            seed = gr.Number(0, label="Seed", precision=0)
            penalty = gr.Number(1.0, label="Repetition penalty")
            stop_loop = gr.Number(LOOP_STOP, label="Stop on repetition (tokens copied; 0 = off)", precision=0,
                                  elem_id="chat-stop-loop")
    return [system, shots, dynamic_k, rag_k, rag_mode, max_new, temperature, top_p, seed, penalty, stop_loop]


def _configs(adapter_name, system, shots, dynamic_k, rag_k, rag_mode, max_new, temperature, top_p, seed,
             penalty, stop_loop=LOOP_STOP) -> tuple[VariantConfig, GenSettings]:
    # few-shot pairs from JSON lines ({"question": ..., "answer": ...}); errors name the line
    pairs = [row for _, row in jsonl_rows(shots or "", "few-shot")]
    cfg = VariantConfig(system or "", pairs, int(dynamic_k or 0), int(rag_k or 4), rag_mode or "hybrid",
                        adapter_name or None)
    gen = GenSettings(int(max_new or 0), float(temperature or 0), float(top_p if top_p is not None else 1),
                      int(seed or 0), float(penalty if penalty is not None else 1),
                      stop_on_loop=int(stop_loop if stop_loop is not None else LOOP_STOP))
    return cfg, gen


def _columns() -> list[tuple]:
    """Five columns: (column, title, chatbot, stats, sources accordion, sources table, vote button)."""
    cols = []
    # A wrapping grid: 380 px minimum puts 3 columns per row on a 1280-1400 px window (3 + 2 for five), and
    # chat boxes with no fixed height grow with the answer, so the page scrolls instead of each box.
    with gr.Row(equal_height=False, elem_id="chat-columns"):
        for i, name in enumerate(VARIANTS):
            with gr.Column(min_width=COLUMN_MIN_WIDTH, elem_id=f"chat-col-{i}") as column:
                title = gr.Markdown(f"### {TITLES[name]}", elem_id=f"chat-title-{i}")
                bot = gr.Chatbot(height=None, min_height=240, max_height=None, layout="panel", show_label=False,
                                 elem_id=f"chat-bot-{i}")
                stats = gr.Markdown(elem_id=f"chat-stats-{i}")
                with gr.Accordion("Sources", open=False) as panel:
                    table = gr.Markdown(elem_id=f"chat-sources-{i}")
                vote = gr.Button("👍 Best answer", size="sm", elem_id=f"chat-vote-{i}")
            cols.append((column, title, bot, stats, panel, table, vote))
    return cols


def _render(shown: list[ColumnView]) -> list:
    """Gradio updates for the five columns: visibility, title, chatbot, stats, sources panel and table."""
    return [update for view in shown for update in (
        gr.update(visible=view.visible), gr.update(value=f"### {view.title}"), gr.update(value=view.messages),
        gr.update(value=view.stats), gr.update(visible=bool(view.sources)), gr.update(value=view.sources))]
