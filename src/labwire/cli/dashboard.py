"""The ``labwire dashboard`` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable

CommandFactory = Callable[..., argparse.ArgumentParser]


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
