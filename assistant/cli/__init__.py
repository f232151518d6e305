"""The `arena` command line (top layer): one module per subcommand group; `output` prints for all."""

from assistant.cli.main import main

__all__ = ["main"]
