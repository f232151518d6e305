"""The one exception type user-facing code catches: its message is shown as-is to the user."""


class ArenaError(Exception):
    """A problem with the user's input or environment, with a message that names it."""
