"""The Keep's secrets: fetched from its Steward over mutual TLS, held in memory only.

Right after the Steward issues the Keep's certificate, :func:`fetch_secrets` asks
``GET <steward>/secrets/<name>`` for each secret the config declares, presenting that
certificate (mutual TLS, TLS 1.3) and verifying the Steward's HTTPS certificate against
the pinned CA, as :mod:`donjon.keep.steward_client` does. The answer is the value
(``application/octet-stream``, at most 1 MiB) with its version and creation time in the
``Donjon-Secret-Version`` / ``Donjon-Secret-Created`` headers, or a refusal
``{"error": "refused", "check", "reason"}``.

The values live in :class:`SecretSet` (Python memory) and reach the guest through a
read-only in-memory directory (:class:`donjon.wasi.MemoryDir`): never a host file, never a
log line, never an environment variable unless the config asks for one. The TLS client
key has to reach OpenSSL through a file name (Python's ``ssl`` has no other way): it is
written to an anonymous memory file (``memfd_create(2)``), which has no path on any disk
and is closed as soon as OpenSSL has read it.

Other programs (the OCI package loader) use :func:`fetch_secrets` the same way: give it
the Steward endpoint and the Keep's current :class:`~donjon.tls.identity.Credentials`.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from cryptography.hazmat.primitives import serialization

from donjon.keep.errors import KeepError, StewardProtocolError
from donjon.keep.steward_client import StewardEndpoint
from donjon.tls.identity import Credentials

if TYPE_CHECKING:
    from donjon.wasi.memfs import MemoryEntry

__all__ = [
    "MAX_SECRET_BYTES",
    "FetchedSecret",
    "SecretRefused",
    "SecretRequest",
    "SecretSet",
    "SecretUnavailable",
    "fetch_secrets",
]

#: The Steward's limit (docs/secrets.md "Limits"); a larger answer is not a secret of its.
MAX_SECRET_BYTES = 1 << 20
_MAX_ERROR_BYTES = 16 * 1024


class SecretRefused(KeepError):
    """The Steward refused a secret: ``check`` is its named check (``secret.digest``...)."""

    def __init__(self, name: str, check: str, reason: str, *, status: int) -> None:
        self.name = name
        self.check = check
        self.reason = reason
        self.status = status
        super().__init__(f"secret {name}: refused by the Steward: {check}: {reason}")


class SecretUnavailable(KeepError):
    """The Steward could not be asked (transport, timeout, 5xx) or answered nonsense."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"secret {name}: {reason}")


@dataclass(frozen=True)
class SecretRequest:
    name: str
    optional: bool = False


@dataclass(frozen=True)
class FetchedSecret:
    name: str
    version: int
    #: When the Steward stored this version.
    created: datetime
    value: bytes

    def __repr__(self) -> str:  # never a value in a repr (and so in a log line or a traceback)
        return f"FetchedSecret({self.name!r}, version={self.version}, {len(self.value)} bytes)"


class SecretSet:
    """The Keep's current secrets by name; :meth:`replace` swaps them all at once (renewal)."""

    def __init__(self, secrets: Mapping[str, FetchedSecret] | None = None) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, FetchedSecret] = dict(secrets or {})

    def current(self) -> Mapping[str, FetchedSecret]:
        with self._lock:
            return dict(self._secrets)

    def replace(self, secrets: Mapping[str, FetchedSecret]) -> None:
        with self._lock:
            self._secrets = dict(secrets)

    def memory_entries(self) -> dict[str, MemoryEntry]:
        """The files of the guest's secrets directory (:class:`donjon.wasi.MemoryDir`)."""
        from donjon.wasi.memfs import MemoryEntry

        return {
            name: MemoryEntry(s.value, int(s.created.timestamp() * 1_000_000_000))
            for name, s in self.current().items()
        }

    def summary(self) -> str:
        """``name vN, ...`` for a log line (names and versions only)."""
        return ", ".join(
            f"{s.name} v{s.version}" for s in sorted(self.current().values(), key=lambda s: s.name)
        )


def _client_context(endpoint: StewardEndpoint, credentials: Credentials) -> ssl.SSLContext:
    """TLS 1.3, the Steward verified against the pinned CA, our certificate chain presented."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    anchors = endpoint.tls_anchors or endpoint.ca
    context.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in anchors)
    )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in credentials.chain)
    pem += credentials.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.memfd_create("donjon-keep-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


def _refusal(name: str, status: int, body: bytes) -> SecretRefused | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("check"), str):
        return SecretRefused(name, doc["check"][:200], str(doc.get("reason", ""))[:2000], status=status)
    return None


def _fetch_one(client: httpx.Client, base: str, name: str) -> FetchedSecret:
    url = f"{base}/secrets/{name}"
    try:
        with client.stream("GET", url) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_SECRET_BYTES:
                raise StewardProtocolError(url, f"answer of {declared} bytes exceeds {MAX_SECRET_BYTES}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_SECRET_BYTES:
                    raise StewardProtocolError(url, f"answer exceeds {MAX_SECRET_BYTES} bytes")
            status = response.status_code
            headers = response.headers
    except httpx.HTTPError as e:
        raise SecretUnavailable(name, f"cannot ask the Steward: {type(e).__name__}: {e}"[:400]) from e
    if status != 200:
        refused = _refusal(name, status, bytes(body[:_MAX_ERROR_BYTES])) if 400 <= status < 500 else None
        if refused is not None:
            raise refused
        raise SecretUnavailable(name, f"the Steward answered HTTP {status}")
    try:
        version = int(headers.get("donjon-secret-version", ""))
        created = datetime.fromisoformat(headers.get("donjon-secret-created", ""))
    except ValueError as e:
        raise SecretUnavailable(name, "the answer has no valid Donjon-Secret-Version/-Created") from e
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return FetchedSecret(name=name, version=version, created=created, value=bytes(body))


def fetch_secrets(
    endpoint: StewardEndpoint, credentials: Credentials, requests: Iterable[SecretRequest | str]
) -> tuple[dict[str, FetchedSecret], dict[str, SecretRefused]]:
    """Fetch each requested secret over one mutual-TLS connection.

    Returns the secrets released, and the refusals of *optional* ones (by name). A refused
    non-optional secret raises :class:`SecretRefused`; a Steward that cannot be asked raises
    :class:`SecretUnavailable` (or :class:`~donjon.keep.errors.StewardProtocolError`).
    """
    wanted = [SecretRequest(r) if isinstance(r, str) else r for r in requests]
    context = _client_context(endpoint, credentials)
    released: dict[str, FetchedSecret] = {}
    refused: dict[str, SecretRefused] = {}
    with httpx.Client(
        verify=context,
        timeout=httpx.Timeout(endpoint.timeout),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "donjon-keep/0.1", "Accept-Encoding": "identity"},
    ) as client:
        for request in wanted:
            try:
                released[request.name] = _fetch_one(client, endpoint.base, request.name)
            except SecretRefused as e:
                if not request.optional:
                    raise
                refused[request.name] = e
    return released, refused
