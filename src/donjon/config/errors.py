"""The workload config's exceptions: one root, one subclass per cause.

Every error names the key it is about as a path (``files[2].port``, ``env.HOME``,
``steward``) and, when the source text locates it, the 1-based line. ``str()``
renders ``<origin>:<line>: <key>: <reason>`` so the CLI prints it as is.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigSyntaxError",
    "ConfigWarning",
    "DuplicateName",
    "InvalidValue",
    "MissingKey",
    "UnknownKey",
    "type_name",
]


def type_name(value: object) -> str:
    """What a TOML value is, in an error's words: ``must be a string, got an integer``."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


class ConfigError(Exception):
    """Root of every error the workload config raises."""

    def __init__(self, key: str, reason: str, *, line: int | None = None, origin: str = "config") -> None:
        self.key = key
        self.reason = reason
        self.line = line
        self.origin = origin
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.origin if self.line is None else f"{self.origin}:{self.line}"
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class ConfigSyntaxError(ConfigError):
    """The text is not TOML (or not UTF-8, or too large); ``line`` is where the parser stopped."""


class UnknownKey(ConfigError):
    """A key Donjon does not know, top-level or inside a ``[[files]]`` entry (with a did-you-mean)."""


class MissingKey(ConfigError):
    """A required key is absent (``kind``; ``name`` for ``listen``; ``host`` for ``connect``...)."""


class InvalidValue(ConfigError):
    """A key has the wrong type or a value outside its range (a port of 0, a ``prot`` of ``"udp"``...)."""


class DuplicateName(ConfigError):
    """Two ``[[files]]`` entries carry the same explicit ``name``."""


@dataclass(frozen=True)
class ConfigWarning:
    """Something Donjon ignores but the user should hear about (unknown keys are errors, not this)."""

    key: str
    reason: str
    line: int | None
    origin: str

    def __str__(self) -> str:
        where = self.origin if self.line is None else f"{self.origin}:{self.line}"
        return f"{where}: {self.key}: {self.reason}"
