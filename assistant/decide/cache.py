"""Stage cache by content: a stage's key is the hash of its inputs and its slice of the config.

Each stage owns one folder, <workspace>/stages/<stage>/, holding its outputs and, written LAST, the marker
``stage.json`` ({"key", "output", "seconds", "finished"}). A stage is reused only when its marker holds the
same key; its key includes the keys of the stages it reads, so one changed flag redoes that stage and every
stage downstream of it, and nothing upstream. Outputs are built in a temp folder and moved in by
foundation.cache_folder (marker written before the rename), so a crash leaves the previous result or a temp
folder nobody reads, never a half-written stage that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from foundation.cache_folder import publish, temp_folder

MARKER = "stage.json"
CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (streamed), so renaming or touching a file does not change its key."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class StageCache:
    """The stage folders of one workspace."""

    def __init__(self, root: Path):
        self.root = Path(root) / "stages"

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def marker(self, stage: str) -> dict | None:
        try:
            return json.loads((self.folder(stage) / MARKER).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def cached(self, stage: str, key: str) -> dict | None:
        """The stage's marker when it finished with this key, else None."""
        marker = self.marker(stage)
        return marker if marker and marker.get("key") == key else None

    def run(self, stage: str, key: str, build: Callable[[Path], dict]) -> tuple[dict, bool]:
        """(output, reused): the cached output, or build(temp folder) -> output published with its marker."""
        hit = self.cached(stage, key)
        if hit is not None:
            return hit["output"], True
        target = self.folder(stage)
        tmp = temp_folder(target)
        started = time.time()
        output = build(tmp)
        info = {"key": key, "output": output, "seconds": round(time.time() - started, 3), "finished": time.time()}
        # A finished stage with another key is stale: drop its marker so publish() replaces the folder.
        (target / MARKER).unlink(missing_ok=True)
        publish(tmp, target, MARKER, info)
        return output, False
