"""Exceptions of the Keep's attestation flow: one root, one subclass per cause.

A Keep that gets any of these serves nothing (DESIGN.md: never a self-signed fall-back
for an attested backend). Each carries what a log line or the exit message needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from donjon.tls.errors import TLSConfigError

__all__ = [
    "AttestationRefused",
    "EvidenceUnavailable",
    "IdentityExpired",
    "IssuedCertificateInvalid",
    "KeepError",
    "StewardProtocolError",
    "StewardUnreachable",
    "StewardUntrusted",
]


class KeepError(Exception):
    """Root of the Keep's attestation errors."""


class AttestationRefused(KeepError):
    """The Steward refused to issue; ``check`` and ``reason`` are the Steward's own words.

    ``status`` is the HTTP status of the refusal; ``details`` what the Steward added
    (the verifier's expected/got values...).
    """

    def __init__(
        self, check: str, reason: str, *, status: int, details: Mapping[str, Any] | None = None
    ) -> None:
        self.check = check
        self.reason = reason
        self.status = status
        self.details = dict(details or {})
        super().__init__(f"the Steward refused attestation: {check}: {reason}")


class StewardUnreachable(KeepError):
    """The Steward did not answer usefully within the retry budget (transport errors, 5xx, 429)."""

    def __init__(self, url: str, reason: str, *, attempts: int, elapsed: float) -> None:
        self.url = url
        self.reason = reason
        self.attempts = attempts
        self.elapsed = elapsed
        super().__init__(
            f"the Steward at {url} is unreachable after {attempts} attempt(s) in {elapsed:.1f} s: {reason}"
        )


class StewardUntrusted(KeepError):
    """The Steward's HTTPS certificate does not verify to the pinned CA (never retried)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the Steward at {url} is not the pinned one: {reason}")


class StewardProtocolError(KeepError):
    """The Steward answered something that is not a challenge, a refusal or a certificate chain."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"unexpected answer from the Steward at {url}: {reason}")


class IssuedCertificateInvalid(KeepError):
    """The chain the Steward returned fails the Keep's own checks (issuer, key, validity...)."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"the issued certificate is unusable: {check}: {reason}")


class EvidenceUnavailable(KeepError):
    """The backend gave no usable evidence (a platform error, or a VLEK report without its VLEK)."""

    def __init__(self, backend: str, reason: str, *, fix: str | None = None) -> None:
        self.backend = backend
        self.reason = reason
        self.fix = fix
        super().__init__(f"{backend}: {reason}" + (f" ({fix})" if fix else ""))


class IdentityExpired(TLSConfigError):
    """The Keep's certificate expired without renewal: no new TLS connection may use it.

    A :class:`~donjon.tls.errors.TLSConfigError` so that the TLS layer (``ServerContext.wrap``,
    ``Listener.accept``) refuses the connection like any unusable identity.
    """

    def __init__(self, not_after: str) -> None:
        super().__init__("identity", f"the Keep's certificate expired at {not_after} and was not renewed")
        self.not_after = not_after
