"""A plain single-model chat over the base model."""

from __future__ import annotations

import gradio as gr

from assistant.generation import stream_text
from assistant.runtime import Runtime


def build_plain_chat(runtime: Runtime) -> None:
    """Chatbot + input box; streams the base model's answer with its chat template."""
    chatbot = gr.Chatbot(label="Base model", elem_id="plain-chat", height=420)
    box = gr.Textbox(placeholder="Ask something…", show_label=False, elem_id="plain-chat-input")

    def respond(message: str, history: list[dict]):
        if not message.strip():
            raise gr.Error("Type a question first.")
        history = list(history or []) + [{"role": "user", "content": message}]
        prompt = [{"role": m["role"], "content": _text(m["content"])} for m in history]
        for partial in stream_text(runtime.base, prompt):
            yield "", history + [{"role": "assistant", "content": partial}]

    box.submit(respond, [box, chatbot], [box, chatbot])


def _text(content) -> str:
    # Gradio 6 may hand back message content as a list of typed parts.
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)
