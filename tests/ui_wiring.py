"""What a built Gradio Blocks wires to a button: for tests that a tab is connected, not merely built."""

from __future__ import annotations


def click_handlers(demo, text: str) -> list:
    """The handlers a click on the one button labelled `text` runs (empty: a dead button)."""
    [target] = [i for i, block in demo.blocks.items()
                if type(block).__name__ == "Button" and getattr(block, "value", None) == text]
    return [fn for fn in demo.fns.values() if (target, "click") in fn.targets]


def click_inputs(demo, text: str) -> set[str]:
    """Labels of the components a click on the button labelled `text` sends to its handlers."""
    return {getattr(c, "label", None) for fn in click_handlers(demo, text) for c in fn.inputs}


def load_handlers(demo) -> list:
    """The handlers that run when a page opens (or is reloaded): Blocks.load and gr.on(None, …) alike."""
    return [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)]
