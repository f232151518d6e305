"""Cache folders built once and published atomically: a temp folder, a marker file written last, a rename.

A crash leaves either the previous folder or a temp folder nobody reads; a folder without its marker is an
interrupted build and gets redone. Used for the converted bundled model and the ONNX embedder export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def temp_folder(target: Path) -> Path:
    """An empty folder beside `target` to build into (per process, so concurrent builds do not collide)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def publish(tmp: Path, target: Path, marker: str, info: dict) -> None:
    """Write the marker into `tmp`, then move it to `target`, unless another process already published one."""
    (tmp / marker).write_text(json.dumps(info, indent=2))
    if (target / marker).is_file():  # finished elsewhere first: keep that result
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)  # an interrupted build without a marker
    tmp.rename(target)


def weight_files(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of a model folder's *.safetensors, sorted: what a result cached from these weights
    depends on, without reading gigabytes to hash them (a replaced file changes size or time)."""
    return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(folder).glob("*.safetensors"))]
