"""Why collateral could not be had: the fetchers' exceptions.

They sit under the attestation library's :class:`CollateralError` (so a Steward
that refuses for missing collateral handles one family), and carry the URL,
the HTTP status and the number of attempts where those explain the failure.
"""

from __future__ import annotations

from donjon.attestation.errors import CollateralError

__all__ = [
    "CollateralUnavailable",
    "FetchError",
    "FetchFailed",
    "NotFetchable",
    "ResponseTooLarge",
]


class FetchError(CollateralError):
    """Root of the fetchers' errors: the collateral could not be obtained."""

    def __init__(
        self,
        check: str,
        reason: str,
        *,
        url: str | None = None,
        status: int | None = None,
        attempts: int | None = None,
        field: str | None = None,
        expected: object = None,
        got: object = None,
    ) -> None:
        self.url = url
        self.status = status
        self.attempts = attempts
        if url is not None:
            reason = f"{reason} [{url}]"
        super().__init__(check, reason, field=field, expected=expected, got=got)


class FetchFailed(FetchError):
    """The vendor service did not answer usefully (network error, timeout, HTTP error).

    Transient failures were retried a bounded number of times first.
    """


class ResponseTooLarge(FetchError):
    """The vendor's answer is larger than the configured limit; it was not read further."""


class CollateralUnavailable(FetchError):
    """Offline, and neither the cache nor an imported bundle holds current collateral."""


class NotFetchable(FetchError):
    """The document cannot be fetched by design (a VLEK: AMD issues it to the cloud provider)."""
