"""Application settings: one dataclass, read once (defaults < environment < CLI flags) and passed down."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from foundation.errors import ArenaError

DEFAULT_MODEL = "bundled:smollm2-135m"
DEFAULT_EMBEDDER = "bundled:all-minilm-l6-v2"
# Generation engines (assistant/inference); "openai" = a server the user runs (--engine-url), see docs/scale-out.md.
ENGINES = ("auto", "torch", "onnx", "onnx-int4", "onnx-fp32", "openai")

# The fields the environment can set, each from ARENA_<FIELD> (ARENA_DATA_DIR, ARENA_ENGINE_URL, ...).
ENV_VARS = {name: f"ARENA_{name.upper()}" for name in (
    "data_dir", "model", "embedder", "embedder_backend", "host", "port", "auth", "device", "dtype", "engine",
    "fast", "engine_url", "engine_key", "engine_concurrency")}


@dataclass(frozen=True)
class Settings:
    """Everything the app and CLI need to know about where they run and what they load."""

    data_dir: Path = Path("./arena_data")
    model: str = DEFAULT_MODEL
    embedder: str = DEFAULT_EMBEDDER
    embedder_backend: str = "auto"  # torch | onnx (int8 ONNX Runtime) | auto: onnx when it applies
    host: str = "127.0.0.1"
    port: int = 7860
    auth: tuple[tuple[str, str], ...] = field(default=())
    device: str = "auto"
    dtype: str = "auto"
    engine: str = "auto"  # generation: torch | onnx[-int4|-fp32] (onnxruntime-genai) | auto: onnx on CPU
    insecure_no_auth: bool = False
    trust_remote_code: bool = False
    fast: bool = True  # the measured CPU training speed path (training/speed); False = stock libraries only
    engine_url: str = ""  # --engine openai: the OpenAI-compatible server (nothing is sent anywhere without it)
    engine_key: str = ""  # name of the environment variable holding its API key (the key itself is never stored)
    engine_concurrency: int = 4  # requests in flight at once on that server

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


def parse_auth(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``user:pass[,user2:pass2]``; raise ValueError naming the bad entry."""
    pairs = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"auth entry {entry!r} must look like user:password")
        pairs.append((user, password))
    return tuple(pairs)


def _convert(name: str, raw: str):
    if name == "data_dir":
        path = Path(raw).expanduser()
        if path.exists() and not path.is_dir():  # else every command fails later, each in its own way
            raise ValueError(f"data folder {path} is a file, not a folder")
        return path
    if name == "port":
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"port must be a number, got {raw!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, got {port}")
        return port
    if name == "auth":
        return parse_auth(raw)
    if name == "device" and raw not in {"auto", "cpu", "cuda"} and not raw.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {raw!r}")
    if name == "dtype" and raw not in {"auto", "float32", "bfloat16", "float16"}:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {raw!r}")
    if name == "fast":
        if raw.lower() not in {"0", "1", "true", "false"}:
            raise ValueError(f"ARENA_FAST must be 0 or 1, got {raw!r}")
        return raw.lower() in {"1", "true"}
    if name == "engine" and raw not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {raw!r}")
    if name == "engine_concurrency":
        if not raw.isdigit() or not 1 <= int(raw) <= 256:
            raise ValueError(f"engine concurrency must be a number 1-256, got {raw!r}")
        return int(raw)
    if name == "engine_url" and not raw.startswith(("http://", "https://")):
        raise ValueError(f"engine URL must look like http://HOST:PORT/v1, got {raw!r}")
    if name == "engine_key" and not raw.replace("_", "").isalnum():
        raise ValueError(f"--engine-key takes the NAME of an environment variable holding the key, got {raw!r}")
    if name == "embedder_backend" and raw not in {"auto", "torch", "onnx"}:
        raise ValueError(f"embedder backend must be auto, torch or onnx, got {raw!r}")
    return raw


def load_settings(args: argparse.Namespace | None = None, env: dict | None = None) -> Settings:
    """Build Settings from defaults, then the environment, then parsed CLI flags (highest wins)."""
    env = os.environ if env is None else env
    values = {name: _convert(name, env[var]) for name, var in ENV_VARS.items() if env.get(var)}
    for f in fields(Settings):
        flag = getattr(args, f.name, None)  # None without args
        if flag is None or flag is False:
            continue
        values[f.name] = flag if isinstance(flag, bool) else _convert(f.name, str(flag))
    return replace(Settings(), **values)


def add_settings_flags(parser: argparse.ArgumentParser, server: bool = False) -> None:
    """Flags shared by every subcommand; an unset flag stays None (argparse's default), so the environment
    fills the gap."""
    parser.add_argument("--data-dir", help="data folder (default ./arena_data)")
    parser.add_argument("--model", help="base model: bundled:smollm2-135m, HF id or folder")
    parser.add_argument("--embedder", help="sentence-transformers id, folder or bundled:...")
    parser.add_argument("--embedder-backend",
                        help="auto | torch | onnx (int8 ONNX Runtime, exported once under data-dir/models)")
    parser.add_argument("--device", help="auto | cpu | cuda[:N]")
    parser.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--engine",
                        help="generation engine: auto | torch | onnx | onnx-int4 | onnx-fp32 (auto: onnx on CPU) | "
                             "openai (an OpenAI-compatible server at --engine-url)")
    parser.add_argument("--engine-url", metavar="URL",
                        help="--engine openai: base URL of the server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--engine-key", metavar="ENV_VAR_NAME",
                        help="--engine openai: environment variable holding the server's API key")
    parser.add_argument("--engine-concurrency", metavar="N",
                        help="--engine openai: requests in flight at once (default 4)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow model repos to run their own code (off by default)")
    if server:
        parser.add_argument("--host", help="bind address (default 127.0.0.1)")
        parser.add_argument("--port", help="port (default 7860)")
        parser.add_argument("--auth", help="user:password[,user2:pw2] (or ARENA_AUTH)")
        parser.add_argument("--insecure-no-auth", action="store_true",
                            help="allow a non-loopback host without auth")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_policy(settings: Settings) -> None:
    """Refuse to expose a server (the UI or the API) beyond this machine without a password, unless told to."""
    if not is_loopback(settings.host) and not settings.auth and not settings.insecure_no_auth:
        raise ArenaError(
            f"refusing to listen on {settings.host} without --auth user:password "
            "(or ARENA_AUTH); pass --insecure-no-auth to do it anyway")
