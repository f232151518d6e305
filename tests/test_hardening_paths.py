"""Every user-supplied name that becomes a path stays inside the data folder (foundation.paths.confine).

The fuzz tests go through the real entry points: the `arena` CLI in a subprocess, job YAML files, and the
web UI's handlers called over HTTP on 127.0.0.1 against the running app. Each snapshots the whole temp
folder around the data folder before and after and asserts nothing appeared outside the data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foundation.errors import ArenaError
from foundation.paths import MAX_BYTES, confine

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
    from assistant.cli.main import main as arena_main
    from foundation.registry import AdapterRegistry
    from tests.conftest import make_lora
    from training.config import JobConfig

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


# ---- web UI: the real app on 127.0.0.1, public handlers through gradio_client, internal ones over HTTP ----

@pytest.fixture(scope="module")
def web(tmp_path_factory, tiny_model_dir):
    """The app on the tiny model with one registered adapter; (root, data, url) with root snapshotted."""
    from foundation.registry import AdapterRegistry
    from tests.browser_support import start_app, stop_app
    from tests.conftest import make_lora, make_tiny_model

    root = tmp_path_factory.mktemp("web")
    data = root / "sandbox" / "data"
    data.parent.mkdir()
    lora = make_lora(make_tiny_model(257), tmp_path_factory.mktemp("lora") / "lora", 1)
    AdapterRegistry(data).register("good", lora, {"method": "lora", "peft_type": "LORA",
                                                  "base_model": str(tiny_model_dir)}, [])
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(root / GRADIO_CACHE)
    try:
        proc, url = start_app(str(tiny_model_dir), data, tmp_path_factory.mktemp("logs") / "app.log")
    finally:
        os.environ.pop("GRADIO_TEMP_DIR") if old is None else os.environ.update(GRADIO_TEMP_DIR=old)
    yield root, data, url
    stop_app(proc)


# Gradio's own upload cache (GRADIO_TEMP_DIR): the web server's, not a place any name of ours decides.
GRADIO_CACHE = "gradio-cache"


def web_outside(root: Path, before: set[str]) -> list[str]:
    return [p for p in outside(before, snapshot(root), "sandbox/data") if not p.startswith(GRADIO_CACHE)]


class Page:
    """One browser-like session: internal handlers are reached by their index, as the page does."""

    def __init__(self, url: str):
        import httpx

        self.url, self.http, self.session = url, httpx.Client(timeout=120), os.urandom(6).hex()
        self.config = self.http.get(url + "config").json()

    def handler(self, label: str, event: str) -> int:
        """The id of the handler triggered by `event` on the component shown as `label` (or with that elem_id)."""
        ids = {c["id"] for c in self.config["components"] if label in (c.get("props", {}).get(key) for key in
                                                                        ("value", "label", "elem_id"))}
        [dep] = [d["id"] for d in self.config["dependencies"] if any(t[0] in ids and t[1] == event
                                                                      for t in d["targets"])]
        return dep

    def call(self, label: str, event: str, data: list) -> dict:
        fn = self.handler(label, event)
        self.http.post(self.url + "gradio_api/queue/join", json={
            "data": data, "fn_index": fn, "session_hash": self.session, "event_data": None}).raise_for_status()
        with self.http.stream("GET", self.url + f"gradio_api/queue/data?session_hash={self.session}") as stream:
            for line in stream.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed":
                    return msg
        raise AssertionError("the event stream ended without a result")

    def upload(self, name: str, text: str) -> dict | None:
        """A file uploaded under `name`, as the page sends it; None when Gradio's upload route refuses it."""
        sent = self.http.post(self.url + "gradio_api/upload", files=[("files", (name, text.encode()))])
        if sent.status_code == 400:  # e.g. "Invalid file name: .."
            return None
        [path] = sent.json()
        return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_internal_handlers_confine_hostile_names(web):
    root, data, url = web
    page = Page(url)
    before = snapshot(root)
    # Documents tab: every hostile name as an uploaded file name, in one upload.
    files = [page.upload(name or "empty", f"## Part {n}\nPart {n} is a bolt.") for n, name in enumerate(HOSTILE)]
    files = [f for f in files if f]
    assert len(files) >= len(HOSTILE) - 1
    done = page.call("Add to index", "click", [files, "recursive", None, None])
    assert done["success"], done
    written = list((data / "uploads" / "documents").iterdir())
    assert written and all(len(p.name.encode()) <= MAX_BYTES for p in written)
    # Adapters tab: rename to each hostile name and back; merge-export under each hostile export name.
    assert page.call("↻ Refresh", "click", [None])["success"]
    for name in HOSTILE:
        renamed = page.call("Rename", "click", ["good", name])
        if renamed["success"]:
            new = confine(data / "adapters", name, "").name
            assert page.call("↻ Refresh", "click", [None])["success"]
            assert page.call("Rename", "click", [new, "good"])["success"]
            assert page.call("↻ Refresh", "click", [None])["success"]
        else:
            assert "has no usable characters" in json.dumps(renamed), renamed
    for name in HOSTILE[:6] + ["..", "CON"]:
        page.call("Merge and export", "click", ["good", name])
    assert web_outside(root, before) == []
    assert sorted(p.name for p in (data / "adapters").iterdir()) == ["good"]
    assert (data / "exports").is_dir() and all(p.parent == data / "exports" for p in (data / "exports").iterdir())


def test_train_start_through_the_client_confines_the_job_name(web):
    import gradio_client

    root, data, url = web
    client = gradio_client.Client(url, verbose=False)
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train_start"]["parameters"]
    by_label = {p["label"]: p["parameter_name"] for p in params}
    before = snapshot(root)
    # Each accepted start runs a job process (~10 s to fail here): one name per kind of attack.
    names = ["../../../escaped", "/tmp/escaped-abs", "a\x00b/../../escaped-nul", "x" * 600, "‥/‥/‥/escaped-leader",
             "..／..／..／escaped-fullwidth", "CON", "..", "", "."]
    for name in names:
        # Preference pairs from votes with no votes: the job makes its folder, then fails fast in its process.
        kwargs = {p["parameter_name"]: None for p in params if not p["parameter_has_default"]}  # empty uploads
        kwargs |= {by_label["Adapter name"]: name, by_label["Preference pairs from chat votes (method dpo)"]: True}
        for _ in range(120):
            try:
                client.predict(**kwargs, api_name="/train_start")
                break
            except Exception as exc:  # noqa: BLE001 - gradio_client raises its AppError with our message
                if "still running" not in str(exc):
                    assert "has no usable characters" in str(exc), (name, exc)
                    break
                time.sleep(0.5)
        else:
            raise AssertionError(f"the previous job never finished ({name!r})")
    assert web_outside(root, before) == []
    jobs = [p for p in (data / "jobs").iterdir() if p.is_dir()]
    assert len(jobs) == 7 and all((p / "config.yaml").is_file() for p in jobs)
    assert any(p.name.endswith("-escaped") for p in jobs) and any(p.name.endswith("-_CON") for p in jobs)


def test_only_documented_handlers_are_callable_through_the_client(web):
    import gradio_client

    _, _, url = web
    client = gradio_client.Client(url, verbose=False)
    info = client.view_api(return_format="dict", print_info=False)
    assert sorted(info["named_endpoints"]) == ["/ask", "/compare", "/search", "/train_start", "/train_status"]
    assert info["unnamed_endpoints"] == {}
    status = client.predict(api_name="/train_status")
    assert isinstance(status, tuple | list) and status
    answer = client.predict("What is a bolt?", ["base"], None, False, api_name="/ask")
    assert any("tokens" in str(v) for v in answer)  # the base column's stats line
    page = Page(url)
    assert page.call("Add to index", "click", [[page.upload("bolts.md", "## Bolts\nThe M8 bolt takes 25 Nm.")],
                                               "recursive", None, None])["success"]
    hits = client.predict("M8 bolt", 3, "bm25", api_name="/search")
    assert "25 Nm" in json.dumps(hits, default=str)
    rename = page.handler("Rename", "click")
    for call in (lambda: client.predict("good", "x", api_name="/handler"),
                 lambda: client.predict("good", "x", fn_index=rename),
                 lambda: client.predict(api_name="/lambda")):
        with pytest.raises(ValueError, match="Cannot find a function|Invalid function index"):
            call()


def test_compare_tab_resume_button_finishes_an_interrupted_run(web):
    """A run stored as started (as a killed `arena compare` leaves it) is finished from the Compare tab."""
    from assistant.compare.config import CompareConfig
    from assistant.compare.evalset import EvalItem
    from assistant.compare.resume import plan_json
    from assistant.compare.runs import RunStore
    from foundation.variants import VariantConfig

    _, data, url = web
    runs = RunStore(data / "runs.sqlite")
    items = [EvalItem(f"What is part {i}?", f"part {i} is a bolt") for i in range(2)]
    compare_cfg = CompareConfig(variants=("base",), max_new_tokens=4, forgetting=False, label="killed run")
    run_id = runs.start(plan_json(items, compare_cfg, VariantConfig()), compare_cfg.label)
    page = Page(url)
    assert page.call("compare-unfinished", "focus", [])["success"]  # the page refreshes the list on focus
    done = page.call("compare-resume", "click", [run_id])
    assert done["success"], done
    assert runs.unfinished() == [] and runs.get(run_id).label == "killed run"
    assert [q.question for q in runs.get(run_id).result.per_question] == [it.question for it in items]
