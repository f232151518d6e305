"""The one place where the library's ArenaError becomes what a person sees: a Gradio error popup, and nothing
covered by it."""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from foundation.errors import ArenaError


def quiet(status=None) -> dict:
    """Keyword arguments for an event whose handler may fail: where its progress is drawn.

    Gradio draws an event's progress over every output and, when the handler raises, leaves a red "Error" badge
    there that hides each output and takes its clicks (a table, a dropdown). The popup already says what went
    wrong, so a quick handler shows no progress at all, and a long one shows it (and a failure's badge) over
    the one status line it reports on, which need not be among its outputs.
    """
    return {"show_progress": "hidden"} if status is None else {"show_progress_on": status}


def shown(fn):
    """Wrap a handler (plain or streaming) so an ArenaError reaches the user as a popup, not a stack trace.

    functools.wraps keeps the handler's name and signature, which Gradio reads: the API endpoint name and the
    `progress=gr.Progress()` default it fills in. A generator stays a generator, so streaming still streams.
    Wire the event with `**quiet(...)` so the failure covers nothing (`raises` marks the handler for that test).
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ArenaError as exc:
                raise gr.Error(str(exc)) from None
        stream.raises = True
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArenaError as exc:
            raise gr.Error(str(exc)) from None
    call.raises = True
    return call
