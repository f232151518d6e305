"""Adapters tab: list trained adapters, delete, rename, merge-and-export to a plain model folder, export a bundle."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.runtime import Runtime
from assistant.ship.bundle import base_gguf, export_bundle
from assistant.ship.strategy import from_flags
from foundation.errors import ArenaError
from foundation.paths import confine
from ui.errors import quiet, shown


def adapter_choices(runtime: Runtime) -> list[str]:
    """Names for the adapter dropdowns of the Chat and Compare tabs (reward models are not chat variants)."""
    return [a.name for a in runtime.registry.chat_adapters()]


def _table(runtime: Runtime) -> pd.DataFrame:
    rows = [{"name": i.name, "method": i.method, "type": i.peft_type or "full model",
             "val loss": i.metrics.get("val_loss"), "steps": i.metrics.get("steps"),
             "tokens/s": i.metrics.get("tokens_per_s"),
             "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(i.created))}
            for i in runtime.registry.list()]
    return pd.DataFrame(rows or [{"name": "(none yet)"}])


def build_adapters_tab(runtime: Runtime) -> None:
    """A table of adapters plus delete / rename / export actions on the chosen one."""
    table = gr.Dataframe(value=lambda: _table(runtime), interactive=False, elem_id="adapters-table")
    with gr.Row():
        choice = gr.Dropdown(choices=[], label="Adapter", elem_id="adapters-choice")
        refresh = gr.Button("↻ Refresh", size="sm")
    with gr.Row():
        new_name = gr.Textbox(label="New name")
        rename = gr.Button("Rename")
        delete = gr.Button("Delete", variant="stop")
    with gr.Row():
        export_name = gr.Textbox(label="Export name (a folder under the data folder's exports/; empty = adapter name)",
                                 value="")
        export = gr.Button("Merge and export")
    with gr.Row():
        bundle_variant = gr.Dropdown(choices=["finetuned", "rag+finetuned"], value="rag+finetuned",
                                     label="Bundle variant")
        bundle = gr.Button("Export bundle (peft + GGUF adapter, index, SERVING.md)", elem_id="adapters-bundle")
    message = gr.Markdown(elem_id="adapters-message")

    # The selection is only ever one the user made: after a delete, a second Delete must not remove another one.
    def refreshed(msg: str = "", selected: str | None = None):
        names = runtime.registry.names()
        return _table(runtime), gr.Dropdown(choices=names, value=selected if selected in names else None), msg

    def act(fn):
        def run(name, *args):
            if not name:  # the registry would say "adapter name '' has no usable characters"
                raise ArenaError("pick an adapter first")
            return refreshed(*fn(name, *args))
        return shown(run)

    def do_rename(name, new):
        renamed = runtime.registry.rename(name, new or "").name
        return f"Renamed {name} → {renamed}", renamed

    def do_delete(name):
        runtime.registry.delete(name)
        return f"Deleted {name}", None

    def do_export(name, folder_name):
        out = confine(Path(runtime.settings.data_dir) / "exports", folder_name or name, "export name")
        runtime.registry.merge_export(name, out, runtime.settings)
        return f"Exported {name} (merged) to `{out}`", name

    def do_bundle(name, variant, folder_name):
        out = confine(Path(runtime.settings.data_dir) / "exports", folder_name or f"{name}-bundle", "export name")
        strategy = from_flags(variant, name, runtime.registry, runtime.settings)
        exported = export_bundle(strategy, runtime.settings, out, base_gguf=base_gguf(runtime.settings.model))
        return f"Exported bundle `{exported.strategy.model_name}` to `{out}` (commands in SERVING.md)", name

    outputs = [table, choice, message]
    # triggers=None and no inputs: on page load, so the dropdown lists what the table lists from the start
    gr.on(None, lambda: gr.Dropdown(choices=runtime.registry.names(), value=None), None, choice)
    refresh.click(lambda picked: refreshed("", picked), choice, outputs)
    # an export runs for a while: its progress (or failure) is drawn over the message line only
    rename.click(act(do_rename), [choice, new_name], outputs, **quiet(message))
    delete.click(act(do_delete), [choice], outputs, **quiet(message))
    export.click(act(do_export), [choice, export_name], outputs, **quiet(message))
    bundle.click(act(do_bundle), [choice, bundle_variant, export_name], outputs, **quiet(message))
