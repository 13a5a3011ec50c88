"""Exceptions of ``donjon.peer``: one root, one subclass per cause.

:class:`PeerRefused` means the peer answered but is not who it must be (exit code 1 of
``donjon peer verify``); :class:`PeerUnreachable` means no certificate could be obtained
from it at all (exit code 3). Each carries the stable name of the check that failed and,
where it helps, what was expected and what was found.
"""

from __future__ import annotations

__all__ = ["PeerError", "PeerRefused", "PeerUnreachable"]


class PeerError(Exception):
    """Root of every error ``donjon.peer`` raises."""


class PeerRefused(PeerError):
    """The peer's certificate does not verify or does not name the expected workload.

    ``check`` is a stable dotted name (``chain``, ``spiffe_id``, ``workload_digest``,
    ``claims``, ``simulated``, ``unattested``, ``key_usage``).
    """

    def __init__(self, check: str, reason: str, *, expected: object = None, got: object = None) -> None:
        self.check = check
        self.reason = reason
        self.expected = expected
        self.got = got
        text = f"{check}: {reason}"
        # Name only what is known: a refusal with nothing expected (e.g. ``simulated``) must not
        # read "expected None".
        parts = [
            f"{label} {value}" for label, value in (("expected", expected), ("got", got)) if value is not None
        ]
        if parts:
            text += f" ({', '.join(parts)})"
        super().__init__(text)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"check": self.check, "reason": self.reason}
        if self.expected is not None:
            out["expected"] = str(self.expected)
        if self.got is not None:
            out["got"] = str(self.got)
        return out


class PeerUnreachable(PeerError):
    """No certificate could be obtained: the connection or the TLS handshake failed."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"{address}: {reason}")
