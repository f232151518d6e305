"""How every subcommand prints: JSON with --json, else human text."""

from __future__ import annotations

import argparse
import json


def emit(args: argparse.Namespace, data, text: str | None = None) -> None:
    """Print JSON with --json, else the human text (or pretty JSON when there is none)."""
    if getattr(args, "json", False) or text is None:
        print(json.dumps(data, indent=None if args.json else 2, default=str))
    else:
        print(text)
