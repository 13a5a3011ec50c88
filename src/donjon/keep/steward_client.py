"""The Keep's HTTP client for its Steward: the challenge, the CSR, the certificate chain.

Endpoints (``donjon.steward.app``): ``GET <url>/challenge`` answers
``{"nonce": <base64url>, "expires": <RFC 3339>}``; ``POST <url>/attest`` takes the DER CSR
(``application/pkcs10``) and answers the PEM chain (issued certificate, then the CA) or a
refusal ``{"error": "refused", "check", "reason"}`` with a 4xx status.

Transport: HTTPS, TLS 1.3, verifying the Steward's certificate against the CA the Keep
pins (from its configuration or a file) and the URL's host name; the environment's
proxies and CA bundles are ignored (the host that runs a Keep is not trusted). Plain
``http://`` is refused unless ``allow_insecure_http`` is set (a Steward behind a TLS
proxy on the same machine): the issued chain is still checked against the pinned CA, so
a man in the middle can deny service but cannot hand out an identity.

Every answer is bounded in size and every request in time. This module makes single
requests; retries (which need a fresh nonce) belong to :mod:`donjon.keep.attest`.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.keep.errors import AttestationRefused, KeepError, StewardProtocolError, StewardUntrusted
from donjon.tls.anchors import FOREIGN_ISSUER_ERRORS

__all__ = [
    "MAX_CHAIN_BYTES",
    "MAX_CHAIN_CERTS",
    "Challenge",
    "StewardBusy",
    "StewardClient",
    "StewardEndpoint",
]

PKCS10 = "application/pkcs10"
#: A challenge is ~100 bytes of JSON.
MAX_CHALLENGE_BYTES = 4096
#: Two P-256/P-384 certificates in PEM are ~2 KiB; leave room for longer chains.
MAX_CHAIN_BYTES = 64 * 1024
MAX_CHAIN_CERTS = 5
#: A refusal body (check, reason, details) is small.
MAX_ERROR_BYTES = 16 * 1024
#: A nonce longer than this is not one of a Steward's (donjon.binding.MAX_NONCE_SIZE).
MAX_NONCE_BYTES = 256
#: HTTP statuses worth another try: the Steward is overloaded, restarting or timed out.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class StewardBusy(KeepError):
    """A failure that another attempt may cure: transport error, timeout, 5xx, 429."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


@dataclass(frozen=True)
class StewardEndpoint:
    """Where the Steward is and what the Keep trusts it by.

    ``ca`` is the Steward CA: the issued chain must be signed by it, and (unless
    ``tls_anchors`` says otherwise) the Steward's HTTPS certificate must chain to it.
    ``tls_anchors``: other roots for the HTTPS connection (e.g. the CA of a TLS front end).
    ``ca_source``: where ``ca`` was read from (a file name), for the messages that say another
    CA issued a certificate.
    """

    url: str
    ca: tuple[x509.Certificate, ...]
    tls_anchors: tuple[x509.Certificate, ...] | None = None
    allow_insecure_http: bool = False
    timeout: float = 10.0
    ca_source: str | None = None
    base: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.ca:
            raise ValueError("the Steward CA must be pinned: no certificate given")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"the Steward URL must be https://host[:port][/path], not {self.url!r}")
        if parts.scheme == "http" and not self.allow_insecure_http:
            raise ValueError(
                f"the Steward URL {self.url!r} is plain HTTP; use https:// (or, UNSAFE, "
                "'donjon run --steward-insecure-http'; in Python allow_insecure_http=True)"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("the Steward URL may not carry user info, a query or a fragment")
        if not 0 < self.timeout <= 300:
            raise ValueError("timeout must be in (0, 300] seconds")
        object.__setattr__(self, "base", self.url.rstrip("/"))

    @classmethod
    def from_pem(cls, url: str, ca_pem: bytes, **kwargs: Any) -> StewardEndpoint:
        if len(ca_pem) > 1 << 20:
            raise ValueError("the Steward CA file is larger than 1 MiB")
        return cls(url=url, ca=tuple(x509.load_pem_x509_certificates(ca_pem)), **kwargs)


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    expires: datetime | None


def _ssl_context(anchors: Sequence[x509.Certificate]) -> ssl.SSLContext:
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in anchors)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cadata=pem)
    return context


#: OpenSSL's reasons when the server's first bytes are not a TLS record: "HTTP/1.1 400 ..." from
#: a Steward serving plain HTTP (3.0: WRONG_VERSION_NUMBER; later releases may say the others).
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def _not_tls(e: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` in ``e``'s chain saying the peer did not answer in TLS, if any."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError) and getattr(current, "reason", None) in _NOT_TLS_REASONS:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _cert_verify_error(e: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class StewardClient:
    """Single requests to one Steward. Close it (or use ``with``)."""

    def __init__(self, endpoint: StewardEndpoint) -> None:
        self.endpoint = endpoint
        verify: ssl.SSLContext | bool = False
        if endpoint.base.startswith("https:"):
            verify = _ssl_context(endpoint.tls_anchors or endpoint.ca)
        self._client: httpx.Client | None = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(endpoint.timeout),
            trust_env=False,
            follow_redirects=False,
            # No compression: the size limits below then bound what is read off the wire.
            headers={"User-Agent": "donjon-keep/0.1", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> StewardClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, limit: int, **kwargs: Any) -> tuple[int, str, bytes]:
        if self._client is None:
            raise RuntimeError("the Steward client is closed")
        url = self.endpoint.base + path
        try:
            with self._client.stream(method, url, **kwargs) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise StewardProtocolError(url, f"answer of {declared} bytes exceeds {limit}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise StewardProtocolError(url, f"answer exceeds {limit} bytes")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                return response.status_code, ctype, bytes(body)
        except httpx.HTTPError as e:
            bad = _cert_verify_error(e)
            if bad is not None:
                raise StewardUntrusted(url, self._untrusted(bad)) from e
            plain = _not_tls(e)
            if plain is not None:
                # Not worth a retry: the Steward will answer the same way next time.
                raise StewardProtocolError(
                    url,
                    f"it does not speak TLS ([SSL: {plain.reason}]): the Steward serves plain HTTP. "
                    "Serve it over HTTPS (tls_cert and tls_key in its steward.toml, as 'donjon steward "
                    "init' writes them), or, UNSAFE, use an http:// URL with --steward-insecure-http",
                ) from e
            reason = f"{type(e).__name__}: {e}"[:300]
            if isinstance(e, httpx.RemoteProtocolError) and self.endpoint.base.startswith("http:"):
                # What an HTTPS server does with a plain HTTP request: it closes without a word.
                reason += "; if the Steward serves HTTPS (as 'donjon steward init' makes it), use https://"
            raise StewardBusy(url, reason) from e

    def _untrusted(self, bad: ssl.SSLCertVerificationError) -> str:
        """Why the Steward's HTTPS certificate was refused, in words that say what to fix."""
        endpoint = self.endpoint
        if bad.verify_code in FOREIGN_ISSUER_ERRORS and endpoint.tls_anchors is None:
            where = f"the CA in {endpoint.ca_source}" if endpoint.ca_source else "the pinned Steward CA"
            return (
                f"its HTTPS certificate was not issued by {where} ({bad.verify_message}): "
                "is this the Steward whose CA the Keep pins?"
            )
        return f"its HTTPS certificate does not verify to the pinned CA: {bad.verify_message}"

    def _failure(self, url: str, status: int, ctype: str, body: bytes) -> KeepError:
        if status in RETRY_STATUSES:
            return StewardBusy(url, f"HTTP {status}")
        if 400 <= status < 500 and ctype == "application/json":
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("check"), str):
                details = doc.get("details")
                return AttestationRefused(
                    doc["check"][:200],
                    str(doc.get("reason", ""))[:2000],
                    status=status,
                    details=details if isinstance(details, dict) else None,
                )
        return StewardProtocolError(url, f"HTTP {status} ({ctype or 'no content type'})")

    def challenge(self) -> Challenge:
        """A fresh nonce from ``GET /challenge``."""
        url = self.endpoint.base + "/challenge"
        status, ctype, body = self._request("GET", "/challenge", MAX_CHALLENGE_BYTES)
        if status != 200:
            raise self._failure(url, status, ctype, body)
        try:
            doc = json.loads(body)
            text = doc["nonce"]
            if not isinstance(text, str):
                raise TypeError("nonce is not a string")
            nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            expires_text = doc.get("expires")
            expires = datetime.fromisoformat(expires_text) if isinstance(expires_text, str) else None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StewardProtocolError(url, f"the challenge is not {{nonce, expires}} JSON: {e}") from e
        if not 0 < len(nonce) <= MAX_NONCE_BYTES:
            raise StewardProtocolError(url, f"a nonce of {len(nonce)} bytes")
        return Challenge(nonce=nonce, expires=expires)

    def attest(self, csr_der: bytes) -> tuple[x509.Certificate, ...]:
        """``POST /attest``: the issued chain (leaf first), or :class:`AttestationRefused`."""
        url = self.endpoint.base + "/attest"
        status, ctype, body = self._request(
            "POST",
            "/attest",
            max(MAX_CHAIN_BYTES, MAX_ERROR_BYTES),
            content=csr_der,
            headers={"Content-Type": PKCS10, "Accept": "application/pem-certificate-chain"},
        )
        if status != 200:
            raise self._failure(url, status, ctype, body)
        try:
            chain = tuple(x509.load_pem_x509_certificates(body))
        except ValueError as e:
            raise StewardProtocolError(url, f"the answer is not a PEM certificate chain: {e}") from e
        if len(chain) > MAX_CHAIN_CERTS:
            raise StewardProtocolError(url, f"a chain of {len(chain)} certificates")
        return chain
