"""`python app.py`: start the Strategy Arena web UI; the same command as `arena serve` (ui/web.py builds it)."""

from __future__ import annotations

import sys

from assistant.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["serve", *sys.argv[1:]]))
