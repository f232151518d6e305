"""`arena export` (a strategy as a bundle) and `arena serve --api` (the OpenAI-compatible endpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.cli.output import emit
from assistant.decide.config import workspace
from assistant.ship.bundle import base_gguf, bundle_json, export_bundle, open_bundle
from assistant.ship.strategy import from_decision, from_flags
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings, check_bind_policy


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="the bundle folder to create (must not exist or be empty)")
    p.add_argument("--variant", default=None, help="base | prompt | rag | finetuned | rag+finetuned")
    p.add_argument("--adapter", default=None, help="the adapter of the finetuned variants")
    p.add_argument("--from-decision", dest="from_decision", default=None, metavar="NAME",
                   help="export the winner of `arena decide --name NAME` with the settings it was compared with")


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    registry = AdapterRegistry(settings.data_dir)
    if args.from_decision:
        strategy = from_decision(workspace(settings.data_dir, args.from_decision), registry, settings)
        if args.variant and args.variant != strategy.variant:
            raise ArenaError(f"decision {args.from_decision!r} chose {strategy.variant}, not {args.variant}; "
                             "drop --variant or --from-decision")
    elif args.variant:
        strategy = from_flags(args.variant, args.adapter, registry, settings)
    else:
        raise ArenaError("export needs --variant VARIANT (and --adapter NAME) or --from-decision NAME")
    bundle = export_bundle(strategy, settings, Path(args.out), base_gguf=base_gguf(settings.model),
                           on_step=None if args.json else lambda step: print(f"export: {step}", flush=True))
    emit(args, bundle_json(bundle), f"exported {bundle.strategy.model_name} to {bundle.folder} "
                                    f"(commands: {bundle.folder / 'SERVING.md'})")
    return 0


def serve_api(args: argparse.Namespace, settings: Settings) -> int:
    """The /v1 endpoint alone (--no-ui, or a --bundle) or with the Gradio app mounted at /."""
    import uvicorn

    from assistant.runtime import Runtime
    from assistant.ship.api import create_api
    from assistant.ship.service import BundleRuntime, ChatService

    check_bind_policy(settings)
    bundle = open_bundle(Path(args.bundle)) if args.bundle else None
    runtime = BundleRuntime(settings, bundle) if bundle else Runtime(settings)
    api = create_api(ChatService(runtime, bundle), settings.auth)
    if not (args.no_ui or bundle):
        from ui.web import mount_on  # deferred: gradio is imported only when the UI is served

        api = mount_on(api, settings, runtime)
    print(f"OpenAI-compatible API on http://{settings.host}:{settings.port}/v1", flush=True)
    uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")
    return 0
