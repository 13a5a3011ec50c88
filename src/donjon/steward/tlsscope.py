"""The client certificate of a TLS connection, in the ASGI scope: the ``tls`` extension.

The ASGI TLS extension (asgiref ``docs/specs/tls.rst``) puts what the TLS layer knows in
``scope["extensions"]["tls"]``: ``client_cert_chain`` (PEM strings, the client's first),
``client_cert_error``, ``tls_version``... uvicorn does not fill it in; :class:`TlsH11Protocol`,
uvicorn's h11 protocol with that one addition, does: it reads the peer certificate once per
connection (``SSLObject.getpeercert``, already verified by the handshake) and attaches it to
every request's scope on that connection. Selected with ``uvicorn.Config(http=TlsH11Protocol)``.

:func:`mtls_context_factory` makes the server ask for an optional client certificate,
verified against the Steward's CA. The certificate's *time* is not checked in the handshake
(``X509_V_FLAG_NO_CHECK_TIME``): the release endpoint checks it itself, so that an expired
certificate is a logged ``client.expired`` refusal instead of an anonymous TLS alert; every
other check of the chain stays in the handshake (another CA's certificate never gets a
connection).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["NO_CHECK_TIME", "TlsH11Protocol", "client_certificate", "mtls_context_factory"]

#: OpenSSL ``X509_V_FLAG_NO_CHECK_TIME`` (openssl/x509_vfy.h): Python's ``ssl.VerifyFlags`` has no name
#: for it, but ``verify_flags`` passes any OpenSSL flag through.
NO_CHECK_TIME = 0x200000


def _tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    version = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}.get(ssl_object.version() or "")
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": None,
    }


class TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the ASGI ``tls`` extension in every request's scope."""

    _tls: dict[str, Any] | None = None
    _scope: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = _tls_extension(transport)

    # H11Protocol builds each request's scope in handle_events and assigns it to self.scope:
    # the extension is added there, before the application sees the scope.
    @property
    def scope(self) -> Any:
        return self._scope

    @scope.setter
    def scope(self, value: Any) -> None:
        if isinstance(value, dict) and self._tls is not None:
            value.setdefault("extensions", {})["tls"] = self._tls
        self._scope = value


def client_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """The client's certificate (DER) from the scope's ``tls`` extension, or ``None``."""
    tls = scope.get("extensions", {}).get("tls")
    if not isinstance(tls, dict):
        return None
    chain = tls.get("client_cert_chain") or []
    if not chain or not isinstance(chain[0], str):
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except ValueError:
        return None


def mtls_context_factory(ca_file: str) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """A ``uvicorn.Config(ssl_context_factory=...)``: optional client certificates under ``ca_file``."""

    def factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= NO_CHECK_TIME
        return context

    return factory
