"""Every user-supplied name that becomes a path stays inside the data folder (assistant.paths.confine).

The fuzz tests go through the real entry points: the `arena` CLI in a subprocess, job YAML files, and the
web UI's handlers called over HTTP on 127.0.0.1 against the running app. Each snapshots the whole temp
folder around the data folder before and after and asserts nothing appeared outside the data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import ArenaError
from assistant.paths import MAX_BYTES, confine

ROOT = Path(__file__).resolve().parents[1]

# Traversal, absolute paths, NUL, very long, Unicode look-alikes of '/' and '..', reserved and empty names.
HOSTILE = ["../../../escaped", "../../../../../../tmp/escaped", "/tmp/escaped-abs", "..\\..\\escaped-win",
           "a\x00b/../../escaped-nul", "x" * 600, "日本" * 200 + ".md", "‥/‥/‥/escaped-leader",
           "..／..／..／escaped-fullwidth", "．．/．．/escaped-fullstop", "CON", "con.txt", ".", "..", "", " ",
           "\u202eevil", "-rf"]


@pytest.mark.parametrize("raw, entry", [
    ("../../etc/passwd", "passwd"), ("..\\..\\boot.ini", "boot.ini"), (".bashrc", "bashrc"),
    ("résumé — 日本.md", "résumé — 日本.md"), ("invoice\u202etxt.exe", "invoicetxt.exe"), ("a\x00b\n.txt", "ab.txt"),
    ("‥/‥/x", "x"), ("..／..／y", "y"), ("/etc/passwd", "passwd"), ("a/../../b", "b"), ("CON", "_CON"),
    ("lpt1.log", "_lpt1.log"), ("my adapter  v2", "my adapter v2"), ("-rf", "rf"), ("name. ", "name"),
])
def test_confine_reduces_names_to_one_entry(tmp_path, raw, entry):
    assert confine(tmp_path, raw, "name") == tmp_path / entry


@pytest.mark.parametrize("raw", ["", " ", ".", "..", "../..", "/", "‥", "\x00", "\u202e", None])
def test_confine_refuses_names_with_nothing_usable(tmp_path, raw):
    with pytest.raises(ArenaError, match="upload name .* has no usable characters"):
        confine(tmp_path, raw, "upload name")


def test_confine_cuts_long_names_in_bytes_and_keeps_the_extension(tmp_path):
    for raw in ("x" * 600, "日本" * 200 + ".pdf", "é" * 400):
        entry = confine(tmp_path, raw, "name").name
        assert len(entry.encode()) <= MAX_BYTES and entry[:1] == raw[:1]
        assert entry.endswith(".pdf") == raw.endswith(".pdf")
        (tmp_path / entry).write_text("fits")  # the file system accepts it


def test_confine_refuses_a_symlink_leading_out(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to(tmp_path)
    with pytest.raises(ArenaError, match="would leave"):
        confine(tmp_path / "inside", "link", "adapter name")


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def outside(before: set[str], after: set[str], data: str) -> list[str]:
    """Entries created during the test that are not inside the data folder."""
    return sorted(p for p in after - before if p != data and not p.startswith(data + os.sep))


def arena(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "assistant", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
