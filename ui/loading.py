"""The page header and, while the base model loads (the first start converts the bundled GGUF, ≈ 35 s), a
banner saying what is happening. The model loads in a background thread so the page is served at once."""

from __future__ import annotations

import sys
import threading
import time

import gradio as gr

from assistant.runtime import Runtime
from foundation.models import BUNDLED, CACHE_MARKER
from foundation.settings import Settings

# A model that is ready within this time (preloaded, or a small cached folder) gets its header straight
# away and no banner at all.
QUICK_LOAD_S = 1.0


def needs_conversion(settings: Settings) -> bool:
    """True when the bundled model has no converted folder yet (the slow first start)."""
    entry = BUNDLED.get(settings.model)
    return entry is not None and not (settings.models_dir / entry[2] / CACHE_MARKER).is_file()


class ModelLoader:
    """Loads `runtime.base` once in a daemon thread (started at once) and remembers what it is doing, how long,
    and any error."""

    def __init__(self, runtime: Runtime, settings: Settings):
        self.runtime = runtime
        self.started = time.monotonic()
        if needs_conversion(settings):
            self.doing = (f"Converting the bundled model **{settings.model}** once into a safetensors folder "
                          f"under `{settings.models_dir}` (≈ 35 s on 2 cores; later starts reuse it)")
        else:
            self.doing = f"Loading the model **{settings.model}**"
        self.error = ""
        self.done = threading.Event()
        threading.Thread(target=self._load, name="arena-model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            _ = self.runtime.base  # the property loads (or converts) the model once
            self.doing = (f"Preparing the generation engine (engine setting **{self.runtime.settings.engine}**; "
                          "the first ONNX start converts the model's graph once, ≈ 40 s)")
            _ = self.runtime.engine  # and the generation engine (the first onnx start converts the graph once)
        except Exception as exc:  # any failure must reach the page and the console, not die with the thread
            self.error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            print(f"error: the model could not be loaded: {self.error}", file=sys.stderr, flush=True)
        finally:
            self.done.set()

    @property
    def ready(self) -> bool:
        return self.done.is_set() and not self.error


def header_text(loader: ModelLoader) -> str:
    if not loader.ready:
        return "# Strategy Arena\nModel: *loading…*"
    base = loader.runtime.base
    notice = f"\n\n{loader.runtime.engine_notice}" if loader.runtime.engine_notice else ""
    return (f"# Strategy Arena\nModel: **{base.model_id}** · dtype **{str(base.dtype).removeprefix('torch.')}**"
            f" · device **{base.device}** · engine **{loader.runtime.engine.name}**{notice}")


def banner_text(loader: ModelLoader) -> str:
    if loader.error:
        return f"⚠️ **The model could not be loaded.** {loader.error}"
    elapsed = int(time.monotonic() - loader.started)
    # A <progress> without a value is the browser's own indeterminate (moving) bar.
    return (f"{loader.doing}… **{elapsed} s** so far. The tabs below work meanwhile; a question asked now "
            "is answered as soon as the model is ready.\n\n<progress style='width:100%'></progress>")


def build_header(demo: gr.Blocks, runtime: Runtime, settings: Settings) -> None:
    """Header naming the model, plus a loading banner polled every second until the model is ready."""
    loader = ModelLoader(runtime, settings)
    loader.done.wait(QUICK_LOAD_S)
    header = gr.Markdown(header_text(loader), elem_id="arena-header")
    banner = gr.Markdown(banner_text(loader), visible=not loader.ready, elem_id="arena-loading")
    timer = gr.Timer(1.0, active=not loader.done.is_set())

    def poll():
        return (header_text(loader), gr.update(value=banner_text(loader), visible=not loader.ready),
                gr.Timer(active=not loader.done.is_set()))

    # show_progress="hidden" alone still draws Gradio's "processing | 0.3s" over the header every second;
    # pointing the (hidden) progress at the timer, which has no box, keeps the header clean.
    quiet = {"show_progress": "hidden", "show_progress_on": timer}
    timer.tick(poll, None, [header, banner, timer], **quiet)
    # A page opened later starts from the build-time state: bring it up to date at once.
    demo.load(poll, None, [header, banner, timer], **quiet)
