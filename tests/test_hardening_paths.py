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


# ---- command line: the issue's own example in a real subprocess, then every name flag through main(argv) ----

@pytest.fixture
def cli_root(tmp_path, tiny_model_dir):
    """tmp/<data>, a training file and the tiny model's flags; the whole tmp folder is snapshotted."""
    data = tmp_path / "sandbox" / "data"
    data.parent.mkdir()
    train = tmp_path / "one.jsonl"
    train.write_text("".join(json.dumps({"question": f"q{i}?", "answer": f"a{i}."}) + "\n" for i in range(4)))
    flags = ["--data-dir", str(data), "--model", str(tiny_model_dir), "--device", "cpu"]
    return tmp_path, data, train, flags


def test_issue_example_job_name_stays_in_jobs(cli_root):
    root, data, train, flags = cli_root
    before = snapshot(root)
    done = arena("train", "--data", str(train), "--name", "../../../escaped", "--max-steps", "1", "--batch-size", "2",
                 *flags, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert outside(before, snapshot(root), "sandbox/data") == []
    [job] = [p for p in (data / "jobs").iterdir() if p.is_dir()]
    assert job.name.endswith("-escaped") and (data / "adapters" / "escaped").is_dir()


def test_every_cli_name_flag_and_yaml_field_stays_in_the_data_folder(cli_root, tiny_model, capsys):
    """Jobs fail fast on a missing data file, after their folder is made: the names are what is tested."""
    from assistant.cli import main as arena_main
    from tests.conftest import make_lora
    from training.config import JobConfig
    from training.registry import AdapterRegistry

    root, data, train, flags = cli_root
    AdapterRegistry(data).register("good", make_lora(tiny_model, root / "lora", 1), {"method": "lora"}, [])
    missing = str(root / "missing.jsonl")

    def main(argv: list[str]) -> int:
        try:
            return arena_main(argv)
        except SystemExit as exc:  # argparse refusing e.g. "-rf" as a positional value: also safe
            return exc.code

    yamls = [root / f"job{n}.yaml" for n in range(len(HOSTILE))]
    for name, path in zip(HOSTILE, yamls, strict=True):
        JobConfig(name=name or "y", job_id=name, init_from=name, data=[{"path": missing}], max_steps=1).to_yaml(path)
    before = snapshot(root)
    for name, yaml_file in zip(HOSTILE, yamls, strict=True):
        assert main(["train", "--data", missing, f"--name={name}", "--max-steps", "1", *flags]) == 2
        err = capsys.readouterr().err
        assert "missing.jsonl" in err or "has no usable characters" in err, (name, err)
        assert main(["train", str(yaml_file), *flags]) == 2
        main(["train", name, "--resume", *flags])  # a job id on the command line
        if main(["adapters", "rename", "good", name, *flags]) == 0:
            assert main(["adapters", "rename", confine(data / "adapters", name, "").name, "good", *flags]) == 0
        main(["adapters", "delete", name, *flags])
        main(["compare", "--eval", str(train), f"--adapter={name}", "--variants", "finetuned", "--limit", "1",
              "--max-new-tokens", "2", "--no-forgetting", *flags])
        capsys.readouterr()
    assert outside(before, snapshot(root), "sandbox/data") == []
    assert AdapterRegistry(data).names() == ["good"]
    jobs = [p.name for p in (data / "jobs").iterdir() if p.is_dir()]
    assert len(jobs) >= 2 * len([n for n in HOSTILE if n.strip(" .")]) - 2 and all("/" not in j for j in jobs)
