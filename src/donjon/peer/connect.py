"""Reach a peer over TLS 1.3 and collect what it presents (the only I/O of ``donjon.peer``).

The handshake runs with OpenSSL's own verification off: the chain the peer sends is
captured and then verified by :func:`donjon.peer.verify.verify_peer`, which names the
exact check that fails (OpenSSL's verify callback can only abort). No application data
is sent or read; the connection is closed with ``close_notify`` right after the
handshake, so nothing is trusted before the checks run.

Wire policy as for a Keep's own sockets (``donjon.tls.context``): TLS 1.3 only, OpenSSL's
default key-exchange groups (hybrid ``X25519MLKEM768`` first with OpenSSL 3.5+); the
negotiated group is reported.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from dataclasses import dataclass, field

from cryptography import x509
from OpenSSL import SSL

from donjon.peer.errors import PeerUnreachable
from donjon.peer.verify import MAX_PEER_CHAIN
from donjon.tls.identity import Credentials
from donjon.tls.stream import format_peer

__all__ = ["TlsSession", "fetch_peer_chain", "format_address"]


@dataclass(frozen=True)
class TlsSession:
    """What one TLS handshake with the peer established."""

    address: str
    version: str
    cipher: str
    group: str | None
    chain: tuple[x509.Certificate, ...] = field(repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "version": self.version, "cipher": self.cipher, "group": self.group}


def format_address(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port``): the one formatting in :func:`donjon.tls.stream.format_peer`."""
    return format_peer((host, port))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ssl_reason(e: SSL.Error) -> str:
    """OpenSSL's reason strings from a pyOpenSSL error, in one short line."""
    if isinstance(e, SSL.SysCallError):
        return "the peer closed the connection"
    first = e.args[0] if e.args else None
    parts = (
        [str(item[-1]) for item in first if isinstance(item, tuple) and item]
        if isinstance(first, list)
        else []
    )
    return ("; ".join(p for p in parts if p) or str(e) or type(e).__name__)[:300]


def _wait(sock: socket.socket, *, write: bool, deadline: float, address: str) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PeerUnreachable(address, "the TLS handshake timed out")
    readable, writable, _ = select.select([] if write else [sock], [sock] if write else [], [], remaining)
    if not readable and not writable:
        raise PeerUnreachable(address, "the TLS handshake timed out")


def fetch_peer_chain(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    server_name: str | None = None,
    client: Credentials | None = None,
) -> TlsSession:
    """Connect to ``host``:``port``, complete a TLS 1.3 handshake, return the peer's chain.

    ``server_name`` is sent as SNI (default: ``host`` unless it is an address literal,
    RFC 6066 section 3). ``client`` is presented if the peer asks for a certificate
    (a Keep whose ``listen`` requires client authentication).
    Raises :class:`PeerUnreachable` when no chain could be obtained.
    """
    address = format_address(host, port)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise PeerUnreachable(address, f"cannot connect: {e.strerror or e}") from e
    try:
        sock.setblocking(False)
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_3_VERSION)
        context.set_max_proto_version(SSL.TLS1_3_VERSION)
        context.set_verify(SSL.VERIFY_NONE)
        if client is not None:
            context.use_certificate(client.leaf)
            for cert in client.chain[1:]:
                context.add_extra_chain_cert(cert)
            context.use_privatekey(client.key)
        conn = SSL.Connection(context, sock)
        conn.set_connect_state()
        sni = server_name if server_name is not None else (None if _is_address(host) else host)
        if sni:
            conn.set_tlsext_host_name(sni.encode("idna"))
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                _wait(sock, write=False, deadline=deadline, address=address)
            except SSL.WantWriteError:
                _wait(sock, write=True, deadline=deadline, address=address)
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        if not chain:
            raise PeerUnreachable(address, "the peer completed the handshake without a certificate")
        session = TlsSession(
            address=address,
            version=conn.get_protocol_version_name(),
            cipher=conn.get_cipher_name() or "?",
            group=conn.get_group_name(),
            chain=tuple(chain[: MAX_PEER_CHAIN + 1]),
        )
        # The peer may already be gone; we have what we came for.
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
        return session
    except SSL.Error as e:
        raise PeerUnreachable(address, f"TLS 1.3 handshake failed: {_ssl_reason(e)}") from e
    except OSError as e:
        raise PeerUnreachable(address, f"connection failed: {e.strerror or e}") from e
    finally:
        sock.close()
