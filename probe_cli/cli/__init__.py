"""The ``probe`` command: Click parses, the library works, :mod:`.render` prints."""

from probe_cli.cli.commands import INTERRUPTED_MESSAGE, cli, main

__all__ = ["INTERRUPTED_MESSAGE", "cli", "main"]
