"""Cache first, network second: the policy every vendor client shares.

``get`` returns the cached document while it is current at the given time;
otherwise it fetches (unless offline), checks that the answer parses as the
expected kind of document, records the document's own validity and stores it.
Offline, or when the network fails, there is no fallback to an expired copy:
the caller gets a :class:`CollateralUnavailable` / :class:`FetchFailed` that
says what is missing and since when, and the Steward refuses (fail closed).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.pki import load_certificates, require_aware
from donjon.collateral.cache import CacheEntry, CollateralCache
from donjon.collateral.errors import CollateralUnavailable, FetchFailed
from donjon.collateral.http import HttpFetcher
from donjon.collateral.validity import DocKind, chain_validity, document_validity

__all__ = ["ISSUER_CHAIN", "CollateralStore", "build_entry", "utc_now"]

#: The cache entry header under which an Intel document's issuer chain (PEM) is kept.
ISSUER_CHAIN = "issuer-chain"
#: Intel PCS URL-encodes a PEM chain into a header; refuse absurd ones.
_MAX_CHAIN_HEADER = 64 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


class CollateralStore:
    """A cache plus (unless offline) a fetcher. The vendor clients are built on one of these."""

    def __init__(
        self,
        cache: CollateralCache,
        fetcher: HttpFetcher | None = None,
        *,
        offline: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cache = cache
        self.fetcher = fetcher
        self.offline = offline or fetcher is None
        self._clock = clock

    def now(self) -> datetime:
        return require_aware(self._clock())

    def get(
        self,
        *,
        key: str,
        url: str,
        kind: DocKind,
        params: Mapping[str, str] | None = None,
        at: datetime | None = None,
        chain_headers: Sequence[str] = (),
        what: str,
    ) -> CacheEntry:
        """The document for ``key``, current at ``at`` (default: now).

        ``chain_headers`` names the response headers that may carry the
        document's issuer chain (Intel); the first one present is kept with the
        entry as ``headers[ISSUER_CHAIN]`` (PEM), and one of them is required.
        """
        at = require_aware(at) if at is not None else self.now()
        cached = self.cache.load(key)
        if cached is not None and cached.is_current(at):
            return cached
        if self.offline or self.fetcher is None:
            if cached is None:
                raise CollateralUnavailable(
                    "collateral.offline.missing",
                    f"offline and no {what} in the cache or an imported bundle (cache key {key})",
                )
            raise CollateralUnavailable(
                "collateral.offline.expired",
                f"offline and the cached {what} is no longer current (cache key {key})",
                expected=f"valid until after {at.isoformat()}",
                got="no validity"
                if cached.valid_until is None
                else f"valid until {cached.valid_until.isoformat()}",
            )
        try:
            resp = self.fetcher.get(url, params=params)
        except FetchFailed as e:
            if cached is None:
                raise
            stale = FetchFailed(
                e.check,
                f"{e.reason}; the cached copy is no longer current (valid until {cached.valid_until})",
                status=e.status,
                attempts=e.attempts,
            )
            stale.url = e.url
            raise stale from e
        chain_pem = _issuer_chain(resp.headers, chain_headers, resp.url) if chain_headers else None
        entry = build_entry(
            key=key, body=resp.body, kind=kind, chain_pem=chain_pem, source="network", fetched_at=self.now()
        )
        self.cache.store(entry)
        return entry


def build_entry(
    *, key: str, body: bytes, kind: DocKind, chain_pem: str | None, source: str, fetched_at: datetime
) -> CacheEntry:
    """A cache entry for ``body``, valid until the earliest end of the document's and its chain's validity.

    Raises :class:`CollateralError` when the document (or chain) does not parse
    as ``kind``: such bytes are never cached.
    """
    valid_until = document_validity(body, kind)
    headers: dict[str, str] = {}
    if chain_pem is not None:
        try:
            certs = load_certificates(chain_pem.encode(), what="issuer chain")
        except MalformedEvidence as e:
            raise CollateralError("collateral.issuer_chain", e.reason) from e
        headers[ISSUER_CHAIN] = chain_pem
        chain_end = chain_validity(certs)
        if valid_until is None or (chain_end is not None and chain_end < valid_until):
            valid_until = chain_end
    return CacheEntry(
        key=key, body=body, fetched_at=fetched_at, valid_until=valid_until, source=source, headers=headers
    )


def _issuer_chain(headers: Mapping[str, str], names: Sequence[str], url: str) -> str:
    for name in names:
        raw = headers.get(name.lower())
        if raw is None:
            continue
        if len(raw) > _MAX_CHAIN_HEADER:
            raise CollateralError("collateral.issuer_chain", f"{name} header is too large", got=len(raw))
        # Intel PCS API: "Issuer chain ... in PEM format, URL-encoded (RFC 3986)".
        pem = urllib.parse.unquote(raw)
        try:
            certs = load_certificates(pem.encode(), what="issuer chain")
        except MalformedEvidence as e:
            raise CollateralError(
                "collateral.issuer_chain", f"{name} header is not a PEM chain: {e.reason}"
            ) from e
        if len(certs) < 2 or "-----BEGIN" not in pem:
            raise CollateralError(
                "collateral.issuer_chain", f"{name} header must hold the signer and the root"
            )
        return pem
    raise CollateralError(
        "collateral.issuer_chain",
        f"the answer from {url} has no issuer chain header",
        expected=" or ".join(names),
    )
