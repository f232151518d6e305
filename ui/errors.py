"""The one place where the library's ArenaError becomes what a person sees: a Gradio error popup."""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from foundation.errors import ArenaError


def shown(fn):
    """Wrap a handler (plain or streaming) so an ArenaError reaches the user as a popup, not a stack trace.

    functools.wraps keeps the handler's name and signature, which Gradio reads: the API endpoint name and the
    `progress=gr.Progress()` default it fills in. A generator stays a generator, so streaming still streams.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ArenaError as exc:
                raise gr.Error(str(exc)) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArenaError as exc:
            raise gr.Error(str(exc)) from None
    return call
