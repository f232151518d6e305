"""The Gradio app builds from Settings, names the model in its header, and guards its bind address."""

from __future__ import annotations

import pytest

from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.settings import Settings, check_bind_policy


def test_build_app_header_names_model(tiny_loaded, tmp_path):
    from ui.web import build_app

    demo = build_app(Settings(data_dir=tmp_path), Runtime(Settings(data_dir=tmp_path), tiny_loaded))
    header = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "arena-header"][0]
    assert "tiny-llama" in header.value and "float32" in header.value and "cpu" in header.value


@pytest.mark.parametrize("host,auth,insecure,ok", [
    ("127.0.0.1", (), False, True),
    ("localhost", (), False, True),
    ("0.0.0.0", (), False, False),
    ("0.0.0.0", (("u", "p"),), False, True),
    ("0.0.0.0", (), True, True),
])
def test_bind_policy(host, auth, insecure, ok, tmp_path):
    settings = Settings(data_dir=tmp_path, host=host, auth=auth, insecure_no_auth=insecure)
    if ok:
        check_bind_policy(settings)
    else:
        with pytest.raises(ArenaError, match="without --auth"):
            check_bind_policy(settings)


def test_a_failing_handler_covers_none_of_its_outputs(tiny_loaded, tmp_path):
    """Gradio left a red 'Error' badge over every output of a failed event, hiding it and taking its clicks
    (the documents table, the adapter dropdown, the answer columns): every handler that can fail (ui.errors.shown)
    draws its progress nowhere or over one status line, and the popup says what went wrong."""
    from ui.web import build_app

    demo = build_app(Settings(data_dir=tmp_path), Runtime(Settings(data_dir=tmp_path), tiny_loaded))
    failing = [fn for fn in demo.fns.values() if getattr(fn.fn, "raises", False)]
    assert len(failing) >= 15
    loud = [fn.name for fn in failing if fn.show_progress != "hidden" and len(fn.show_progress_on or ()) != 1]
    assert not loud, f"handlers whose failure would cover all their outputs: {loud}"
