"""Atomic file writes: a reader (or a crash) sees the old content or the new one, never half of it.

Each write goes to a temp file beside the target (same folder, so the rename stays on one file system) and is
renamed over it. The temp name is unique per process and thread, because several training ranks or UI
threads may write the same file at once; the last rename wins with a complete file. Folders are published
the same way by foundation.cache_folder.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path


def replace_with(path: Path | str, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` to fill a temp file, then rename it to `path` (the temp file is removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> None:
    replace_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path | str, data, indent: int | None = None) -> None:
    write_text(path, json.dumps(data, default=str, indent=indent, ensure_ascii=False))
