"""The Steward's refusals: one exception carrying the check that failed.

Every refusal names its check with a stable dotted name (``csr.signature``,
``nonce.expired``, ``evidence.<library check>``, ``binding``, ``policy.<rule>``);
the HTTP layer turns it into a 4xx JSON body ``{"error": "refused", "check":
..., "reason": ...}`` and the log records the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ConfigError", "Refused", "StewardError"]


class StewardError(Exception):
    """Root of the Steward's own errors."""


class Refused(StewardError):
    """A request was refused by one of the checks; ``status`` is the HTTP status to answer with.

    ``logged`` is set by the Steward once the refusal has its entry in the decision
    log (docs/steward.md "Outcomes": only requests that passed the ``csr.*`` and
    ``nonce.*`` checks get one; the others are counted in metrics).
    """

    def __init__(
        self, check: str, reason: str, *, status: int = 403, details: Mapping[str, Any] | None = None
    ) -> None:
        self.check = check
        self.reason = reason
        self.status = status
        self.details = dict(details or {})
        self.logged = False
        super().__init__(f"{check}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": "refused", "check": self.check, "reason": self.reason}
        if self.details:
            out["details"] = self.details
        return out


class ConfigError(StewardError):
    """A configuration or policy file is invalid; ``line`` is 1-based when known."""

    def __init__(self, path: str, reason: str, *, line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
