"""foundation.atomic: the target holds the old content or the new one, never a torn write or a stray temp."""

from __future__ import annotations

import json
import threading

import pytest

from foundation import atomic


def test_writes_replace_whole_files_and_leave_no_temp(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic.write_json(target, {"step": 1})
    atomic.write_json(target, {"step": 2, "when": tmp_path})  # default=str for paths
    assert json.loads(target.read_text()) == {"step": 2, "when": str(tmp_path)}
    atomic.write_text(tmp_path / "a.txt", "é")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "state.json", "sub"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    target.write_text("old\n")

    def half_then_crash(tmp):
        tmp.write_text("new partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic.replace_with(target, half_then_crash)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_concurrent_writers_never_tear_the_file(tmp_path):
    target = tmp_path / "status.json"
    payloads = [{"writer": i, "pad": "x" * 20000} for i in range(8)]
    seen, stop = [], threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                seen.append(json.loads(target.read_text())["writer"])
            except FileNotFoundError:
                pass
            except json.JSONDecodeError:
                seen.append("torn")

    reader = threading.Thread(target=read_loop)
    reader.start()
    writers = [threading.Thread(target=lambda p=p: [atomic.write_json(target, p) for _ in range(20)])
               for p in payloads]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert json.loads(target.read_text())["writer"] in range(8)
    assert seen and "torn" not in seen  # every read parsed whole
