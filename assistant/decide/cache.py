"""Stage cache by content: a stage's key is the hash of its inputs and its slice of the config.

Each stage owns one folder, <workspace>/stages/<stage>/, holding its outputs and, written LAST, the marker
``stage.json`` ({"key", "output", "seconds", "finished"}; the output is the stage's typed record in
assistant/decide/outputs.py, as JSON). A stage is reused only when its marker holds the
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
from dataclasses import asdict
from pathlib import Path

from assistant.decide.outputs import StageRun, read_output
from foundation.cache_folder import publish, temp_folder
from foundation.errors import ArenaError

MARKER = "stage.json"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (streamed), so renaming or touching a file does not change its key."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class StageCache:
    """The stage folders of one workspace."""

    def __init__(self, root: Path):
        self.root = Path(root) / "stages"

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def marker(self, stage: str) -> dict | None:
        try:
            marker = json.loads((self.folder(stage) / MARKER).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return marker if isinstance(marker, dict) else None

    def output(self, stage: str):
        """The stage's typed output whatever its key; None when it never finished, ArenaError (naming the stage
        and the file) when its output cannot be read."""
        marker = self.marker(stage)
        return None if marker is None else read_output(stage, marker.get("output"), self.folder(stage) / MARKER)

    def cached(self, stage: str, key: str):
        """The stage's typed output when it finished with this key, else None. An output this version cannot
        read (an older version's, or damaged) counts as not cached: the stage is built again."""
        marker = self.marker(stage)
        try:
            return self.output(stage) if marker and marker.get("key") == key else None
        except ArenaError:
            return None

    def run(self, stage: str, key: str, build: Callable[[Path], object]) -> tuple[object, StageRun]:
        """(output, how it ran): the cached output, or build(temp folder) -> output published with its marker."""
        hit = self.cached(stage, key)
        if hit is not None:
            return hit, StageRun(stage, float(self.marker(stage).get("seconds") or 0.0), True, key[:12])
        target = self.folder(stage)
        tmp = temp_folder(target)
        started = time.time()
        output = build(tmp)
        seconds = round(time.time() - started, 3)
        info = {"key": key, "output": asdict(output), "seconds": seconds, "finished": time.time()}
        # A finished stage with another key is stale: drop its marker so publish() replaces the folder.
        (target / MARKER).unlink(missing_ok=True)
        publish(tmp, target, MARKER, info)
        return output, StageRun(stage, seconds, False, key[:12])
