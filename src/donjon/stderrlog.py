"""A logging handler that writes to whatever ``sys.stderr`` is when a record is logged.

``logging.StreamHandler(sys.stderr)`` keeps the stream it was given. When a command's
``main()`` runs in-process (tests, ``donjon demo``), ``sys.stderr`` may be replaced and the
old stream closed afterwards; a handler holding it then fails with "Logging error" on the
next record, from any thread. Resolving ``sys.stderr`` at each record avoids that.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["CurrentStderrHandler"]


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` whose stream is always the current ``sys.stderr``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        # logging.StreamHandler.__init__ and setStream assign it; the current stderr wins.
        pass
