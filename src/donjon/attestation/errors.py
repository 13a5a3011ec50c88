"""The attestation library's exceptions: one root, one subclass per cause.

Every exception names the check that failed (``check``, a stable dotted name
such as ``"snp.signature"`` that tests, logs and the Steward's refusals use) and,
where it helps, the field, the expected value and the value found. Foreign
errors (``struct.error``, ``ValueError`` from ``cryptography``...) are wrapped
``from e`` at the library's boundary, never leaked.
"""

from __future__ import annotations

__all__ = [
    "AttestationError",
    "CollateralError",
    "MalformedEvidence",
    "VerificationFailed",
]


class AttestationError(Exception):
    """Root of every error the attestation library raises."""

    def __init__(
        self,
        check: str,
        reason: str,
        *,
        field: str | None = None,
        expected: object = None,
        got: object = None,
    ) -> None:
        self.check = check
        self.reason = reason
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.check}: {self.reason}"
        if self.field is not None:
            text += f" (field {self.field}"
            if self.expected is not None or self.got is not None:
                text += f": expected {_show(self.expected)}, got {_show(self.got)}"
            text += ")"
        elif self.expected is not None or self.got is not None:
            text += f" (expected {_show(self.expected)}, got {_show(self.got)})"
        return text

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form, for refusals and logs."""
        out: dict[str, object] = {"error": type(self).__name__, "check": self.check, "reason": self.reason}
        if self.field is not None:
            out["field"] = self.field
        if self.expected is not None:
            out["expected"] = _show(self.expected)
        if self.got is not None:
            out["got"] = _show(self.got)
        return out


class MalformedEvidence(AttestationError):
    """The bytes are not a well-formed report, quote, token or certificate."""


class VerificationFailed(AttestationError):
    """The evidence is well formed but a cryptographic or semantic check failed."""


class CollateralError(AttestationError):
    """Collateral (certificates, CRLs, TCB info, QE identity) is missing, malformed, expired or unsigned."""


def _show(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)
