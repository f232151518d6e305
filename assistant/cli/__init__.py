"""The `arena` command line (top layer): one module per subcommand group."""

from assistant.cli.main import VERSIONED, build_parser, cmd_info, cmd_serve, emit, info_data, main  # noqa: F401
