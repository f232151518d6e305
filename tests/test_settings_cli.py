"""Settings precedence, CLI info output, and the core/UI split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import build_parser, main
from foundation.settings import Settings, load_settings, parse_auth

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    s = load_settings(None, env={})
    assert s == Settings()
    assert s.host == "127.0.0.1" and s.port == 7860 and s.data_dir == Path("./arena_data")


def test_env_overrides_default_and_flag_overrides_env(tmp_path):
    env = {"ARENA_DATA_DIR": str(tmp_path / "env"), "ARENA_PORT": "9000", "ARENA_AUTH": "a:b,c:d"}
    s = load_settings(None, env=env)
    assert s.data_dir == tmp_path / "env" and s.port == 9000 and s.auth == (("a", "b"), ("c", "d"))
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path / "flag"), "--port", "9100"])
    s = load_settings(args, env=env)
    assert s.data_dir == tmp_path / "flag" and s.port == 9100
    assert s.auth == (("a", "b"), ("c", "d"))  # env still fills what the flags leave out


@pytest.mark.parametrize("env,message", [
    ({"ARENA_PORT": "http"}, "port must be a number"),
    ({"ARENA_PORT": "70000"}, "port must be 1-65535"),
    ({"ARENA_AUTH": "nopassword"}, "user:password"),
    ({"ARENA_DTYPE": "int3"}, "dtype must be"),
    ({"ARENA_DEVICE": "tpu"}, "device must be"),
])
def test_bad_settings_name_the_problem(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(None, env=env)


@pytest.mark.parametrize("command", [["adapters"], ["info"], ["ask", "hi"]])
def test_a_data_folder_that_is_a_file_is_refused_by_name(tmp_path, capsys, command):
    """Before: `arena adapters` said 'no adapters yet', `arena info` converted the model, then failed on
    'Not a directory'."""
    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder")
    assert main([*command, "--data-dir", str(taken)]) == 2
    assert f"data folder {taken} is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "not a folder"


def test_parse_auth_several_users():
    assert parse_auth("u1:p1, u2:p:2") == (("u1", "p1"), ("u2", "p:2"))


def test_info_json_parses(bundled_data_dir, capsys):
    assert main(["info", "--json", "--data-dir", str(bundled_data_dir)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "bundled:smollm2-135m"
    assert Path(data["model_path"], "model.safetensors").is_file()
    assert Path(data["embedder_path"]).is_dir() and data["embedder_backend"] == "auto"
    assert data["device"] == "cpu" and data["dtype"] in {"float32", "bfloat16"}
    assert data["versions"]["torch"]


def test_unknown_model_exits_nonzero_with_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "assistant", "info", "--json", "--data-dir", str(tmp_path),
                           "--model", "bundled:nope"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "unknown bundled model 'bundled:nope'" in proc.stderr


def test_core_packages_import_without_gradio():
    # Block gradio entirely, then import every core module: none may need it.
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'gradio' or name.startswith('gradio.'):\n"
        "            raise ImportError('gradio blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "for pkg in ('assistant', 'retrieval', 'training'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        if info.name != 'assistant.__main__':\n"
        "            importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
