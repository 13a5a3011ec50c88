"""The argument parser every ``donjon`` command uses, so that all of them speak alike.

- A usage error is one line naming the command, then where the help is::

      donjon peer verify: error: the following arguments are required: --ca
      try 'donjon peer verify --help'

  and exit code 2 (``EXIT_USAGE``), instead of argparse's usage block, which buries the error.
- Help keeps the description's and the epilog's line breaks (:class:`HelpFormatter`), so that an
  ``examples:`` epilog shows one command per line.

Subparsers made with ``add_subparsers()`` are of the same class (argparse's default is the
parent's class), so one class covers every level: ``donjon steward log verify`` included.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from donjon.cli import EXIT_USAGE, usage_error

__all__ = ["HelpFormatter", "Parser", "examples", "usage_error"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; subcommands listed like options, one per line.

    argparse puts the subcommands under a line of their own (the metavar, ``COMMAND``) and indents
    them once more; under a ``commands:`` title that line says nothing.
    """

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction) and not action.help:
            return "".join(self._format_action(choice) for choice in action._get_subactions())
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with Donjon's usage errors and help layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)
        raise SystemExit(EXIT_USAGE)


def examples(*lines: str) -> str:
    """An ``examples:`` epilog: one command (or ``# comment``) per line, indented as argparse's help is."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)
