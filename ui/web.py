"""Strategy Arena web UI: wires the core library into Gradio tabs (the CLI's `arena serve` and app.py start it)."""

from __future__ import annotations

import gradio as gr

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.settings import Settings, check_bind_policy
from ui.adapters import build_adapters_tab
from ui.chat import build_chat
from ui.compare import build_compare_tab
from ui.decide import build_decide_tab
from ui.documents import build_documents_tab
from ui.errors import quiet
from ui.loading import build_header
from ui.train import build_train_tab

# The only event handlers a script may call through gradio_client (documented in docs/scripting.md). Every other
# handler is internal: api_visibility "private" hides it from /gradio_api/info and the client refuses it
# (the browser still reaches it by its index: this is a smaller surface, not an access control — --auth is).
PUBLIC_API = ("ask", "search", "compare", "train_start", "train_status")


def restrict_api(demo: gr.Blocks) -> None:
    """Deny by default: mark every handler not named in PUBLIC_API private, including ones added later."""
    for fn in demo.fns.values():
        if fn.api_name not in PUBLIC_API:
            fn.api_visibility = "private"
    missing = set(PUBLIC_API) - {fn.api_name for fn in demo.fns.values()}
    if missing:  # a renamed handler would silently drop out of the documented API
        raise ArenaError(f"documented API endpoint(s) {sorted(missing)} are not wired to any handler")


def build_app(settings: Settings, runtime: Runtime | None = None) -> gr.Blocks:
    """Build the whole UI for one Settings; the base model loads in the background under a loading banner."""
    runtime = runtime or Runtime(settings)
    with gr.Blocks(title="Strategy Arena") as demo:
        build_header(demo, runtime, settings)
        with gr.Tabs() as tabs:
            with gr.Tab("Decide", id="decide"):
                decide = build_decide_tab(runtime)
            with gr.Tab("Chat", id="chat"):
                build_chat(runtime)
            with gr.Tab("Documents", id="documents"):
                build_documents_tab(runtime)
            with gr.Tab("Compare", id="compare"):
                compare = build_compare_tab(runtime)
            with gr.Tab("Train", id="train"):
                build_train_tab(runtime, tabs)
            with gr.Tab("Adapters", id="adapters"):
                build_adapters_tab(runtime)
        # The Decide report's button opens its comparison run in the Compare tab.
        decide.open_compare.click(lambda i: (gr.Tabs(selected="compare"), i), decide.run_id,
                                  [tabs, compare.run_id]).then(compare.open, compare.run_id, compare.outputs, **quiet())
    restrict_api(demo)
    return demo


def _served(settings: Settings, runtime: Runtime | None = None) -> tuple[gr.Blocks, dict]:
    """The queued app and what serving it takes: the password, and uploads/ as the only folder it serves."""
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    demo = build_app(settings, runtime).queue(default_concurrency_limit=2)
    return demo, {"auth": list(settings.auth) or None, "allowed_paths": [str(settings.uploads_dir)],
                  "show_error": True}


def launch(settings: Settings) -> None:
    check_bind_policy(settings)
    demo, serving = _served(settings)
    demo.launch(server_name=settings.host, server_port=settings.port, **serving)


def mount_on(api, settings: Settings, runtime: Runtime):
    """The UI mounted at / of `api` (the FastAPI app serving /v1), sharing its runtime and engine."""
    demo, serving = _served(settings, runtime)
    return gr.mount_gradio_app(api, demo, path="/", **serving)
