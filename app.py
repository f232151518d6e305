"""`python app.py`: start the Strategy Arena web UI (ui/web.py builds it; `arena serve` starts the same)."""

from __future__ import annotations

import argparse

from foundation.errors import ArenaError
from foundation.settings import add_settings_flags, load_settings
from ui.web import launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Start the Strategy Arena web UI.")
    add_settings_flags(parser, server=True)
    try:
        launch(load_settings(parser.parse_args(argv)))
    except (ArenaError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
